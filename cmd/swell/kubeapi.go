package main

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
)

// Client-side rate limits of Swell's Kubernetes clients. client-go's
// default (5 requests/s, bursts of 10) turns a QWorker scale-up of 100 pods
// into 20 s of throttled creates; 50/100 is kube-scheduler's default, and
// the apiserver's priority and fairness still queue Swell fairly behind
// other clients.
const (
	defaultKubeAPIQPS   = 50
	defaultKubeAPIBurst = 100
)

// kubeAPILimits are the --kube-api-qps and --kube-api-burst flags.
type kubeAPILimits struct {
	qps   float32
	burst int
}

func (l *kubeAPILimits) addFlags(f *pflag.FlagSet) {
	f.Float32Var(&l.qps, "kube-api-qps", defaultKubeAPIQPS, "requests per second to the Kubernetes API (client-side limit)")
	f.IntVar(&l.burst, "kube-api-burst", defaultKubeAPIBurst, "requests allowed in a burst above --kube-api-qps")
}

// apply sets the limits on cfg, refusing values client-go would ignore or
// turn into a blocked client.
func (l kubeAPILimits) apply(cfg *rest.Config) error {
	if l.qps <= 0 {
		return fmt.Errorf("--kube-api-qps %g: must be > 0", l.qps)
	}
	if l.burst < 1 {
		return fmt.Errorf("--kube-api-burst %d: must be >= 1", l.burst)
	}
	cfg.QPS, cfg.Burst = l.qps, l.burst
	return nil
}
