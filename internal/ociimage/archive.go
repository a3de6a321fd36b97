package ociimage

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Annotations a loader reads the image's name from: containerd (`ctr
// import`, kind) takes the full reference, the OCI spec's ref.name the tag.
const (
	AnnotationContainerdName = "io.containerd.image.name"
	AnnotationRefName        = "org.opencontainers.image.ref.name"
)

// dockerManifest is one entry of the manifest.json `docker load` reads.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// WriteArchive writes img, named ref, to out as an OCI image layout in a tar
// (oci-layout, index.json, blobs/sha256/...) with Docker's manifest.json
// beside it pointing at the same blobs. out is replaced atomically.
func WriteArchive(img v1.Image, ref, out string) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(out), ".oci-layout-")
	if err != nil {
		return fmt.Errorf("layout dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write OCI layout: %w", err)
	}
	err = p.AppendImage(img, layout.WithAnnotations(map[string]string{
		AnnotationContainerdName: tag.Name(),
		AnnotationRefName:        tag.TagStr(),
	}))
	if err != nil {
		return fmt.Errorf("write image to layout: %w", err)
	}
	if err := writeDockerManifest(img, tag, dir); err != nil {
		return err
	}
	return tarDir(dir, out)
}

// writeDockerManifest adds manifest.json so `docker load` (before Docker 25
// read OCI layouts) and go-containerregistry's tarball reader accept it.
func writeDockerManifest(img v1.Image, tag name.Tag, dir string) error {
	cfg, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("config digest: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("image layers: %w", err)
	}
	m := dockerManifest{Config: blobPath(cfg), RepoTags: []string{tag.String()}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return fmt.Errorf("layer digest: %w", err)
		}
		m.Layers = append(m.Layers, blobPath(d))
	}
	b, err := json.Marshal([]dockerManifest{m})
	if err != nil {
		return fmt.Errorf("encode manifest.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
		return fmt.Errorf("write manifest.json: %w", err)
	}
	return nil
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// tarDir packs dir's regular files and directories into out, relative to
// dir, in lexical order with zeroed times and owners.
func tarDir(dir, out string) error {
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("create archive: %w", err)
	}
	defer func() { _ = os.Remove(tmp) }()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		return addToTar(tw, dir, path, d)
	})
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := tw.Close(); err != nil {
		_ = f.Close()
		return fmt.Errorf("close archive: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close archive: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("move archive into place: %w", err)
	}
	return nil
}

func addToTar(tw *tar.Writer, root, path string, d fs.DirEntry) error {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return err
	}
	rel = filepath.ToSlash(rel)
	if d.IsDir() {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755})
	}
	info, err := d.Info()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: 0o644, Size: info.Size()}); err != nil {
		return err
	}
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = src.Close() }()
	_, err = io.Copy(tw, src)
	return err
}

// Open reads the single image of an archive that has Docker's manifest.json:
// one WriteArchive wrote, or `docker save` output.
func Open(archive string) (v1.Image, error) {
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return nil, fmt.Errorf("open image archive %s: %w", archive, err)
	}
	return img, nil
}

// OpenLayout reads the first image of an OCI image layout directory (an
// unpacked archive, or `crane pull --format=oci` output used as a base).
func OpenLayout(dir string) (v1.Image, map[string]string, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("open OCI layout %s: %w", dir, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, nil, fmt.Errorf("OCI layout index: %w", err)
	}
	if len(m.Manifests) == 0 {
		return nil, nil, fmt.Errorf("OCI layout %s holds no image", dir)
	}
	desc := m.Manifests[0]
	img, err := idx.Image(desc.Digest)
	if err != nil {
		return nil, nil, fmt.Errorf("OCI layout image %s: %w", desc.Digest, err)
	}
	return img, desc.Annotations, nil
}
