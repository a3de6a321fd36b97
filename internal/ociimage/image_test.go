package ociimage

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestArchiveRoundTrip builds a static binary the way the product is built
// (BuildBinary: same flags, same version stamp; a small stand-in package so
// the unit test does not compile the whole product — `make image` and the
// chart e2e build the real one), packs it into an archive and reads the
// archive back both ways a loader would (Docker's manifest.json and the OCI
// layout), checking config, layer contents and that the unpacked binary runs.
func TestArchiveRoundTrip(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "swell")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := BuildBinary(ctx, Binary{ModuleDir: "../..", Version: "v0.0.0-test", Out: bin, Package: "./internal/ociimage/testdata/versionbin"}); err != nil {
		t.Fatal(err)
	}
	created := time.Unix(1700000000, 0).UTC()
	spec := Spec{Binary: bin, Version: "v0.0.0-test", Revision: "abc123", Created: created, CABundle: []byte("-----BEGIN CERTIFICATE-----\n")}
	img, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "swell.oci.tar")
	const ref = "ghcr.io/swell-autoscaler/swell:v0.0.0-test"
	if err := WriteArchive(img, ref, archive); err != nil {
		t.Fatal(err)
	}

	docker, err := Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, docker, spec)
	checkLayer(t, docker)

	layoutDir := filepath.Join(dir, "layout")
	untar(t, archive, layoutDir)
	oci, annotations, err := OpenLayout(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	if annotations[AnnotationContainerdName] != ref || annotations[AnnotationRefName] != "v0.0.0-test" {
		t.Errorf("index annotations = %v, want %s=%s and %s=v0.0.0-test", annotations, AnnotationContainerdName, ref, AnnotationRefName)
	}
	if mt, _ := oci.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type = %s, want %s", mt, types.OCIManifestSchema1)
	}
	m, err := oci.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
		t.Errorf("manifest config %s, layers %+v; want one %s layer and an %s config", m.Config.MediaType, m.Layers, types.OCILayer, types.OCIConfigJSON)
	}
	want, _ := img.Digest()
	if got, _ := oci.Digest(); got != want {
		t.Errorf("digest read back = %s, built %s", got, want)
	}
	checkConfig(t, oci, spec)

	root := filepath.Join(dir, "rootfs")
	if err := Unpack(oci, root); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, filepath.Join(root, Entrypoint), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("unpacked /swell version: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "swell v0.0.0-test (") || !strings.Contains(string(out), "linux/amd64") {
		t.Errorf("unpacked /swell version printed %q", out)
	}
}

// TestBuildIsReproducible: equal inputs give the same image digest.
func TestBuildIsReproducible(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "swell")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Binary: bin, Version: "v1", Created: time.Unix(1, 0)}
	a, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Errorf("two builds of the same input: %s != %s", da, db)
	}
	spec.Version = "v2"
	c, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if dc, _ := c.Digest(); dc == da {
		t.Error("a different version label gave the same digest")
	}
}

func checkConfig(t *testing.T, img v1.Image, spec Spec) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform = %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if strings.Join(cf.Config.Entrypoint, " ") != "/swell" || len(cf.Config.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [/swell] and none", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user = %q, want 65532:65532", cf.Config.User)
	}
	if !cf.Created.Equal(spec.Created) {
		t.Errorf("created = %s, want %s", cf.Created.Time, spec.Created)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.title":    "swell",
		"org.opencontainers.image.version":  spec.Version,
		"org.opencontainers.image.revision": spec.Revision,
		"org.opencontainers.image.source":   Source,
		"org.opencontainers.image.created":  spec.Created.Format(time.RFC3339),
	} {
		if cf.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], v)
		}
	}
	if len(cf.RootFS.DiffIDs) != 1 || len(cf.History) != 1 {
		t.Errorf("rootfs diff_ids %d, history %d; want 1 and 1", len(cf.RootFS.DiffIDs), len(cf.History))
	}
}

// checkLayer reads the single layer: /swell is an executable ELF owned by
// root, the user exists in /etc/passwd, the CA bundle is there.
func checkLayer(t *testing.T, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	files := map[string]*tar.Header{}
	contents := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = hdr
		head := make([]byte, 4)
		n, _ := io.ReadFull(tr, head)
		contents[hdr.Name] = string(head[:n])
		if hdr.Name == "etc/passwd" {
			rest, _ := io.ReadAll(tr)
			contents[hdr.Name] += string(rest)
		}
	}
	sw := files["swell"]
	if sw == nil || sw.Typeflag != tar.TypeReg || sw.Mode&0o111 != 0o111 || sw.Uid != 0 {
		t.Fatalf("layer swell entry = %+v, want a root-owned file executable by all", sw)
	}
	if contents["swell"] != "\x7fELF" {
		t.Errorf("swell starts with %q, want an ELF header", contents["swell"])
	}
	if !strings.Contains(contents["etc/passwd"], "nonroot:x:65532:65532:") {
		t.Errorf("etc/passwd = %q, want the nonroot user", contents["etc/passwd"])
	}
	if files["etc/ssl/certs/ca-certificates.crt"] == nil {
		t.Error("layer has no CA bundle")
	}
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
