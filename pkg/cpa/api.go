package cpa

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// APIError is CPA's JSON error body.
type APIError struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
}

// APIHandler serves CPA's REST API v1:
//
//	GET  /api/v1/metrics[?dry_run=bool]     run metric gathering, answer the metrics
//	POST /api/v1/evaluation[?dry_run=bool]  gather, evaluate and (unless dry run) scale
//
// Errors are JSON {message, code}: 400 for a bad dry_run, 404 for an unknown
// path, 405 for a wrong method, 500 when a stage fails.
func (a *Autoscaler) APIHandler() http.Handler {
	routes := map[string]map[string]http.HandlerFunc{
		"/api/v1/metrics":    {http.MethodGet: a.getMetrics},
		"/api/v1/evaluation": {http.MethodPost: a.postEvaluation},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		methods, ok := routes[r.URL.Path]
		if !ok {
			writeError(w, http.StatusNotFound, fmt.Sprintf("Resource '%s' not found", r.URL.Path))
			return
		}
		h, ok := methods[r.Method]
		if !ok {
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("Method '%s' not allowed on resource '%s'", r.Method, r.URL.Path))
			return
		}
		h(w, r)
	})
}

// runType reads ?dry_run; ok is false after a 400 was written.
func runType(w http.ResponseWriter, r *http.Request) (string, bool) {
	v := r.URL.Query().Get("dry_run")
	if v == "" {
		return RunTypeAPI, true
	}
	dry, err := strconv.ParseBool(v)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid format for 'dry_run' query parameter; '%s' is not a valid boolean value", v))
		return "", false
	}
	if dry {
		return RunTypeAPIDryRun, true
	}
	return RunTypeAPI, true
}

func (a *Autoscaler) getMetrics(w http.ResponseWriter, r *http.Request) {
	rt, ok := runType(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st, err := a.target.Get(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	metrics, err := a.gather(r.Context(), st, rt)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, metrics)
}

func (a *Autoscaler) postEvaluation(w http.ResponseWriter, r *http.Request) {
	rt, ok := runType(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	eval, err := a.apiEvaluate(r.Context(), rt)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, eval)
}

// apiEvaluate runs a pass for the API; a dry run stops before scaling and
// touches neither the target nor the stabilisation history.
func (a *Autoscaler) apiEvaluate(ctx context.Context, rt string) (Evaluation, error) {
	st, err := a.target.Get(ctx)
	if err != nil {
		return Evaluation{}, err
	}
	metrics, err := a.gather(ctx, st, rt)
	if err != nil {
		return Evaluation{}, err
	}
	eval, err := a.evaluate(ctx, st, metrics, rt)
	if err != nil || rt == RunTypeAPIDryRun {
		return eval, err
	}
	return a.scale(ctx, st, eval, rt)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(APIError{Message: msg, Code: code})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// ServeAPI serves h as apiConfig says (HTTP or HTTPS with certFile/keyFile)
// until ctx ends. A disabled API returns at once.
func ServeAPI(ctx context.Context, c APIConfig, h http.Handler, log *slog.Logger) error {
	if !c.Enabled {
		return nil
	}
	ln, err := net.Listen("tcp", c.Addr())
	if err != nil {
		return fmt.Errorf("apiConfig %s: %w", c.Addr(), err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if c.UseHTTPS {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("REST API listening", "addr", ln.Addr().String(), "https", c.UseHTTPS)
	if c.UseHTTPS {
		err = srv.ServeTLS(ln, c.CertFile, c.KeyFile)
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("REST API %s: %w", c.Addr(), err)
}
