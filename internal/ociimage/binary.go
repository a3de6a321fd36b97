package ociimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// VersionVar is the variable the Makefile and BuildBinary stamp the version
// into at link time.
const VersionVar = "github.com/swell-autoscaler/swell/internal/version.Version"

// Binary says how to build the swell binary that goes into the image.
type Binary struct {
	// ModuleDir is the root of the swell module.
	ModuleDir string
	// Version is linked into the binary (`swell version` prints it).
	Version string
	// Out is the path of the binary to write.
	Out string
	// Package is the main package to build, relative to ModuleDir; empty
	// means DefaultPackage, the product. Tests pass a small stand-in so that
	// no unit test compiles the whole product.
	Package string
}

// DefaultPackage is the main package of the product binary.
const DefaultPackage = "./cmd/swell"

// BuildBinary runs `go build` for a static linux/amd64 binary: CGO off (no
// libc needed, so an empty base works), -trimpath and stripped symbols.
func BuildBinary(ctx context.Context, b Binary) error {
	ldflags := fmt.Sprintf("-s -w -X %s=%s", VersionVar, b.Version)
	pkg := b.Package
	if pkg == "" {
		pkg = DefaultPackage
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", b.Out, pkg)
	cmd.Dir = b.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return nil
}
