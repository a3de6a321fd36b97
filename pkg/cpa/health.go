package cpa

import (
	"net/http"
	"sync"
)

// health is what /readyz reports: whether the latest pass succeeded.
type health struct {
	mu     sync.Mutex
	passes int
	err    error
}

func (h *health) set(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.passes++
	h.err = err
}

func (h *health) get() (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.passes, h.err
}

// HealthHandler serves /healthz (the process is up) and /readyz (the latest
// pass succeeded; 503 with the error before the first pass or after a failed
// one), so a failing autoscaler shows in `kubectl get pods`.
func (a *Autoscaler) HealthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		passes, err := a.health.get()
		switch {
		case passes == 0:
			http.Error(w, "no pass has run yet", http.StatusServiceUnavailable)
		case err != nil:
			http.Error(w, "last pass failed: "+err.Error(), http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n"))
		}
	})
	return mux
}
