// Package version carries the build's version string, set at link time, so
// every subcommand and every log line can say which Swell is running.
package version

// Version is overwritten by -ldflags "-X .../internal/version.Version=..." in
// the Makefile; "dev" marks an unversioned local build.
var Version = "dev"
