// Command image builds Swell's container image without a Docker daemon and
// writes it as an OCI archive (`make image` → dist/swell-<version>.oci.tar):
// a static linux/amd64 swell binary as one layer, entrypoint /swell, user
// 65532. No registry is needed: the base is empty unless --base names an
// OCI layout directory fetched beforehand on a machine with registry access,
// e.g. `crane pull --platform=linux/amd64 --format=oci
// gcr.io/distroless/static:nonroot dist/distroless`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/swell-autoscaler/swell/internal/ociimage"
)

// defaultCABundle is Debian's trust store, copied into the image when present.
const defaultCABundle = "/etc/ssl/certs/ca-certificates.crt"

type options struct {
	version, revision, out, ref, base, baseName, caBundle string
	created                                               time.Time
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	o, err := parseFlags(os.Args[1:])
	if err == nil {
		err = run(ctx, o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	o := options{}
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.StringVar(&o.version, "version", "dev", "version linked into the binary and labelled on the image")
	fs.StringVar(&o.revision, "revision", gitOutput("rev-parse", "HEAD"), "git commit labelled on the image")
	fs.StringVar(&o.out, "out", "", "archive to write (default dist/swell-<version>.oci.tar)")
	fs.StringVar(&o.ref, "ref", "", "image reference recorded in the archive (default ghcr.io/swell-autoscaler/swell:<version>)")
	fs.StringVar(&o.base, "base", "", "OCI layout directory of a base image (default: empty base)")
	fs.StringVar(&o.baseName, "base-name", "", "reference of --base for the base.name label")
	fs.StringVar(&o.caBundle, "ca-bundle", defaultCABundle, "CA bundle to include when there is no base (empty: none)")
	created := fs.String("created", "", "creation time, unix seconds (default $SOURCE_DATE_EPOCH, else the commit time)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.out == "" {
		o.out = filepath.Join("dist", "swell-"+o.version+".oci.tar")
	}
	if o.ref == "" {
		o.ref = "ghcr.io/swell-autoscaler/swell:" + o.version
	}
	t, err := createdTime(*created)
	o.created = t
	return o, err
}

// createdTime picks a reproducible creation time.
func createdTime(flagValue string) (time.Time, error) {
	for _, s := range []string{flagValue, os.Getenv("SOURCE_DATE_EPOCH"), gitOutput("log", "-1", "--format=%ct")} {
		if s == "" {
			continue
		}
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("creation time %q: %w", s, err)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	return time.Unix(0, 0).UTC(), nil
}

func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return fmt.Errorf("output dir: %w", err)
	}
	tmp, err := os.MkdirTemp("", "swell-image-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	bin := filepath.Join(tmp, "swell")
	if err := ociimage.BuildBinary(ctx, ociimage.Binary{ModuleDir: ".", Version: o.version, Out: bin}); err != nil {
		return err
	}
	spec := ociimage.Spec{Binary: bin, Version: o.version, Revision: o.revision, Created: o.created, BaseName: o.baseName}
	if err := loadBase(&spec, o); err != nil {
		return err
	}
	img, err := ociimage.Build(spec)
	if err != nil {
		return err
	}
	if err := ociimage.WriteArchive(img, o.ref, o.out); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("image digest: %w", err)
	}
	fmt.Printf("%s %s@%s\n", o.out, o.ref, digest)
	return nil
}

// loadBase reads --base, or the CA bundle an empty base needs.
func loadBase(spec *ociimage.Spec, o options) error {
	if o.base != "" {
		img, _, err := ociimage.OpenLayout(o.base)
		spec.Base = img
		return err
	}
	if o.caBundle == "" {
		return nil
	}
	b, err := os.ReadFile(o.caBundle)
	if errors.Is(err, os.ErrNotExist) && o.caBundle == defaultCABundle {
		return nil
	}
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	spec.CABundle = b
	return nil
}

// gitOutput runs git in the current directory; "" when git or the repo is
// missing (a source tarball builds too).
func gitOutput(args ...string) string {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
