// Package ociimage builds Swell's container image without a Docker daemon
// and reads such images back. The image is one layer holding the static
// `swell` binary (plus /etc/passwd, /etc/group and, when given, a CA bundle)
// on an empty base, or on a base image read from an OCI layout when one is
// available offline (e.g. distroless/static pulled with `crane pull
// --format=oci` on a machine with registry access).
//
// The archive written by WriteArchive is an OCI image layout in a tar that
// also carries Docker's manifest.json, so `docker load`, `ctr import`, `kind
// load image-archive` and go-containerregistry's tarball reader all accept
// it; the process node (internal/procnode) runs pods from it.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image runs /swell as the distroless "nonroot" user, so the chart's
// runAsNonRoot/runAsUser settings hold whichever base is used.
const (
	Entrypoint = "/swell"
	UserID     = 65532
	User       = "65532:65532"
	// Source is the repository the image's source label points at.
	Source = "https://github.com/swell-autoscaler/swell"
)

// Spec says what goes into the image.
type Spec struct {
	// Binary is a static linux/amd64 swell binary (see BuildBinary).
	Binary string
	// Version and Revision (a git commit) become labels.
	Version, Revision string
	// Created is the image's creation time and every file's mtime; a fixed
	// value (the commit time) keeps builds reproducible.
	Created time.Time
	// Base is the image to build on; nil means an empty base.
	Base v1.Image
	// BaseName names Base in the org.opencontainers.image.base.name label.
	BaseName string
	// CABundle, when non-empty, is written to /etc/ssl/certs/ca-certificates.crt
	// (an empty base has no trust store; cloud providers' APIs need one).
	CABundle []byte
}

// file is one entry of the image's layer.
type file struct {
	path string
	mode int64
	data []byte
}

// Build assembles the image: one layer on the base, the entrypoint, the
// non-root user, OCI media types and org.opencontainers.image.* labels.
func Build(spec Spec) (v1.Image, error) {
	bin, err := os.ReadFile(spec.Binary)
	if err != nil {
		return nil, fmt.Errorf("read swell binary: %w", err)
	}
	layerTar, err := layerBytes(spec.Created, layerFiles(spec, bin))
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	base := spec.Base
	if base == nil {
		base = empty.Image
	}
	base = mutate.MediaType(base, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	created := v1.Time{Time: spec.Created.UTC()}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: created, CreatedBy: "swell hack/image: COPY swell /swell", Comment: "static swell binary"},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	return configure(img, spec, created)
}

// configure sets the runtime config on top of whatever the base had.
func configure(img v1.Image, spec Spec, created v1.Time) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = created
	cf.Config.Entrypoint = []string{Entrypoint}
	cf.Config.Cmd = nil
	cf.Config.User = User
	cf.Config.WorkingDir = "/"
	if len(cf.Config.Env) == 0 {
		cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	for k, v := range Labels(spec) {
		cf.Config.Labels[k] = v
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set image config: %w", err)
	}
	return img, nil
}

// Labels are the org.opencontainers.image.* annotations of the image.
func Labels(spec Spec) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "swell",
		"org.opencontainers.image.description": "Swell autoscaling operator: queue workers, custom pod autoscaling, KEDA external scaler, node pools",
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.url":         Source,
		"org.opencontainers.image.version":     spec.Version,
		"org.opencontainers.image.created":     spec.Created.UTC().Format(time.RFC3339),
	}
	if spec.Revision != "" {
		l["org.opencontainers.image.revision"] = spec.Revision
	}
	if spec.BaseName != "" {
		l["org.opencontainers.image.base.name"] = spec.BaseName
	}
	return l
}

// layerFiles lists the layer's files: the binary, a passwd and group naming
// the non-root user, and the CA bundle when given.
func layerFiles(spec Spec, bin []byte) []file {
	files := []file{
		{path: strings.TrimPrefix(Entrypoint, "/"), mode: 0o755, data: bin},
		{path: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
	}
	if len(spec.CABundle) > 0 {
		files = append(files, file{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: spec.CABundle})
	}
	return files
}

// layerBytes writes files (and their parent directories) as a tar with
// fixed owners and times, sorted, so equal inputs give equal digests.
func layerBytes(mtime time.Time, files []file) ([]byte, error) {
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		if err := writeParents(tw, dirs, f.path, mtime); err != nil {
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.path, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer header %s: %w", f.path, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", f.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer: %w", err)
	}
	return buf.Bytes(), nil
}

// writeParents adds the directories above path that were not written yet.
func writeParents(tw *tar.Writer, done map[string]bool, path string, mtime time.Time) error {
	parts := strings.Split(path, "/")
	for i := 1; i < len(parts); i++ {
		dir := strings.Join(parts[:i], "/") + "/"
		if done[dir] {
			continue
		}
		done[dir] = true
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layer dir %s: %w", dir, err)
		}
	}
	return nil
}
