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
}

// BuildBinary runs `go build` for a static linux/amd64 binary: CGO off (no
// libc needed, so an empty base works), -trimpath and stripped symbols.
func BuildBinary(ctx context.Context, b Binary) error {
	ldflags := fmt.Sprintf("-s -w -X %s=%s", VersionVar, b.Version)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", b.Out, "./cmd/swell")
	cmd.Dir = b.ModuleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build swell: %w\n%s", err, out)
	}
	return nil
}
