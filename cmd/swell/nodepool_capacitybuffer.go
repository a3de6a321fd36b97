package main

import (
	"context"
	"log/slog"

	"k8s.io/client-go/kubernetes"

	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// startCapacityBuffer runs the capacity-buffer publisher next to the
// node-pool scaler when the key is set. With cloud-provider none it is
// all `swell nodepool` does: stop then waits for it until ctx ends and
// returns its error. Otherwise stop cancels it and waits.
func startCapacityBuffer(ctx context.Context, cfg nodepool.Config, client kubernetes.Interface, log *slog.Logger) (stop func() error, err error) {
	syncer, err := nodepool.NewCapacityBufferSyncer(cfg, client, log)
	if err != nil || syncer == nil {
		return func() error { return nil }, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- syncer.Run(runCtx) }()
	log.Info("publishing the buffer as a CapacityBuffer", "capacityBuffer", cfg.CapacityBuffer, "cloudProvider", cfg.CloudProvider)
	if cfg.CloudProvider == nodepool.ProviderNone {
		return func() error { defer cancel(); return <-done }, nil
	}
	return func() error { cancel(); return <-done }, nil
}
