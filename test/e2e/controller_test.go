package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	qv1 "github.com/swell-autoscaler/swell/api/quickube/v1alpha1"
	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/internal/controller"
)

// The Swell controller runs in this test process against the shared
// environment, started by the first test that needs it and stopped by
// TestMain.
var (
	controllerOnce sync.Once
	controllerErr  error
	stopController = func() {}
	kube           client.Client
)

// startController installs the CRDs, starts Swell's manager (the same
// assembly `swell controller` runs) and returns a client for Swell's kinds.
func startController(t *testing.T) client.Client {
	t.Helper()
	controllerOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if controllerErr = env.InstallCRDs(ctx, "../../config/crd/bases"); controllerErr != nil {
			return
		}
		logFile, err := os.Create(filepath.Join(env.Dir, "swell-controller.log"))
		if err != nil {
			controllerErr = err
			return
		}
		ctrl.SetLogger(zap.New(zap.WriteTo(logFile), zap.UseDevMode(true)))
		runCtx, stop := context.WithCancel(context.Background())
		mgr, err := controller.New(runCtx, env.RESTConfig, controller.Options{MetricsAddr: "0", ProbeAddr: "0", GracefulShutdown: 5 * time.Second})
		if err != nil {
			stop()
			controllerErr = err
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := mgr.Start(runCtx); err != nil {
				fmt.Printf("e2e: controller stopped: %v\n", err)
			}
		}()
		stopController = func() { stop(); <-done }
		scheme, err := controller.NewScheme(qv1.AddToScheme, swellv1.AddToScheme)
		if err != nil {
			controllerErr = err
			return
		}
		kube, controllerErr = client.New(env.RESTConfig, client.Options{Scheme: scheme})
	})
	if controllerErr != nil {
		t.Fatalf("start Swell controller: %v", controllerErr)
	}
	return kube
}
