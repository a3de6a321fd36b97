package procnode

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	securejoin "github.com/cyphar/filepath-securejoin"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/swell-autoscaler/swell/internal/ociimage"
)

// imageStore unpacks the images a node was given (reference → archive) on
// first use, once per reference, under <WorkDir>/images/<digest>/rootfs.
// There is no chroot: a container runs as a host process whose executable
// is resolved inside the unpacked root, which suits static binaries (Swell's
// own image is one).
type imageStore struct {
	archives map[string]string
	dir      string

	mu       sync.Mutex
	unpacked map[string]*unpackedImage
}

// unpackedImage is an image's root filesystem and runtime config.
type unpackedImage struct {
	root   string
	digest string
	config v1.Config
}

func newImageStore(archives map[string]string, dir string) *imageStore {
	return &imageStore{archives: archives, dir: dir, unpacked: map[string]*unpackedImage{}}
}

// get returns the unpacked image for ref; ok is false when the node has no
// archive for it.
func (s *imageStore) get(ref string) (img *unpackedImage, ok bool, err error) {
	archive, ok := s.archives[ref]
	if !ok {
		return nil, false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.unpacked[ref]; u != nil {
		return u, true, nil
	}
	u, err := unpackArchive(archive, s.dir)
	if err != nil {
		return nil, true, fmt.Errorf("image %s: %w", ref, err)
	}
	s.unpacked[ref] = u
	return u, true, nil
}

func unpackArchive(archive, dir string) (*unpackedImage, error) {
	img, err := ociimage.Open(archive)
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("digest: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	root := filepath.Join(dir, digest.Hex, "rootfs")
	// A root left by an earlier, interrupted unpack is redone from scratch.
	if err := os.RemoveAll(root); err != nil {
		return nil, fmt.Errorf("clear image root: %w", err)
	}
	if err := ociimage.Unpack(img, root); err != nil {
		return nil, err
	}
	return &unpackedImage{root: root, digest: digest.String(), config: cf.Config}, nil
}

// imageArgv applies Kubernetes' rules for command and args over an image's
// entrypoint and cmd: command replaces the entrypoint and drops cmd; args
// alone replace cmd.
func imageArgv(c *corev1.Container, cfg v1.Config) []string {
	if len(c.Command) > 0 {
		return append(append([]string{}, c.Command...), c.Args...)
	}
	rest := cfg.Cmd
	if len(c.Args) > 0 {
		rest = c.Args
	}
	return append(append([]string{}, cfg.Entrypoint...), rest...)
}

// imageEnv is the image's environment except PATH: the process runs on the
// host, where the image's PATH directories mean nothing.
func imageEnv(cfg v1.Config) [][2]string {
	var out [][2]string
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "PATH" || k == "" {
			continue
		}
		out = append(out, [2]string{k, v})
	}
	return out
}

// resolveInImage finds an executable inside the image root: an absolute or
// relative path is joined to the root (symlinks resolved inside it), a bare
// name is searched on the image's PATH.
func resolveInImage(img *unpackedImage, name string) (string, error) {
	if strings.Contains(name, "/") {
		p, err := securejoin.SecureJoin(img.root, name)
		if err != nil {
			return "", fmt.Errorf("resolve %s in image: %w", name, err)
		}
		return p, nil
	}
	for _, kv := range img.config.Env {
		if path, ok := strings.CutPrefix(kv, "PATH="); ok {
			return lookPathIn(img.root, name, path)
		}
	}
	return lookPathIn(img.root, name, "/usr/local/bin:/usr/bin:/bin")
}

// lookPathIn is lookPath over the image's PATH, each directory inside root.
func lookPathIn(root, name, pathEnv string) (string, error) {
	dirs := strings.Split(pathEnv, ":")
	for i, d := range dirs {
		p, err := securejoin.SecureJoin(root, d)
		if err != nil {
			return "", err
		}
		dirs[i] = p
	}
	return lookPath(name, strings.Join(dirs, ":"))
}
