// Command versionbin is a stand-in for swell in the image tests: it prints
// its version line the way `swell version` does, from the same link-time
// variable, but builds in a second because it links nothing else.
package main

import (
	"fmt"
	"os"
	"runtime"

	"github.com/swell-autoscaler/swell/internal/version"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] != "version" {
		fmt.Fprintln(os.Stderr, "usage: versionbin version")
		os.Exit(2)
	}
	fmt.Printf("swell %s (%s %s/%s)\n", version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
