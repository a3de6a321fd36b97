package main

import "github.com/spf13/cobra"

// subcommands lists every subcommand of swell, one constructor per file.
// Add a new job here and nowhere else.
func subcommands() []*cobra.Command {
	return []*cobra.Command{
		newVersionCmd(),
		newControllerCmd(),
		newDemoWorkerCmd(),
		newSimulateCmd(),
		newNodePoolCmd(),
		newCPACmd(),
		newExternalScalerCmd(),
	}
}
