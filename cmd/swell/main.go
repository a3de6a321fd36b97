// Command swell is Swell's single binary: each of Swell's jobs (queue workers,
// custom pod autoscaling, the KEDA external scaler, node pools), the simulator
// and the SDK's sample worker are subcommands of it. The local demo is a
// separate command, swell-dev (cmd/swell-dev), so that this binary, and the
// controller image built from it, links no test environment.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "swell:", err)
		os.Exit(1)
	}
}

// newRootCmd assembles the command tree; each subcommand lives in its own file.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "swell",
		Short:         "Swell scales queue workers, custom autoscalers, KEDA external metrics and node pools",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(subcommands()...)
	return root
}
