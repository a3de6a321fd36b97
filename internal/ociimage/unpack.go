package ociimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	securejoin "github.com/cyphar/filepath-securejoin"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Unpack writes img's flattened filesystem (layers applied in order,
// whiteouts honoured) under root. Paths, symlinks and hard links are
// resolved inside root, so an entry cannot write outside it; device nodes,
// FIFOs and ownership are skipped (the caller is not root), and
// setuid/setgid bits are dropped.
func Unpack(img v1.Image, root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("image root: %w", err)
	}
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read image filesystem: %w", err)
		}
		if err := unpackEntry(root, hdr, tr); err != nil {
			return fmt.Errorf("unpack %s: %w", hdr.Name, err)
		}
	}
}

func unpackEntry(root string, hdr *tar.Header, r io.Reader) error {
	dst, err := securejoin.SecureJoin(root, hdr.Name)
	if err != nil {
		return err
	}
	mode := os.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		return os.Chmod(dst, mode|0o700)
	case tar.TypeReg:
		return writeFile(dst, mode, r)
	case tar.TypeSymlink:
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		_ = os.Remove(dst)
		return os.Symlink(hdr.Linkname, dst)
	case tar.TypeLink:
		target, err := securejoin.SecureJoin(root, hdr.Linkname)
		if err != nil {
			return err
		}
		_ = os.Remove(dst)
		return os.Link(target, dst)
	}
	return nil
}

func writeFile(dst string, mode os.FileMode, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	_ = os.Remove(dst)
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
