package cpa

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/swell-autoscaler/swell/internal/bindaddr"
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

// APIAccess guards the REST API beyond CPA's apiConfig: who may call it
// and how often it may run user logic. CPA has neither; both are Swell's.
type APIAccess struct {
	// Token, when set, is the bearer token every request must carry
	// (Authorization: Bearer <token>); others get 401. It comes from a file
	// or the environment, never from config.yaml.
	Token string
	// Rate limits requests that run user logic (both routes gather
	// metrics, evaluation also scales), per second across all callers;
	// 0 leaves them unlimited. Over the limit a request gets 429.
	Rate rate.Limit
	// Burst is how many such requests may come at once (at least 1).
	Burst int
}

// Wrap puts the token check and the rate limit in front of h. The token
// is compared in constant time (over its SHA-256, so neither its content
// nor its length leaks through timing); an unauthenticated request never
// uses up the rate limit.
func (o APIAccess) Wrap(h http.Handler) http.Handler {
	var limiter *rate.Limiter
	if o.Rate > 0 {
		limiter = rate.NewLimiter(o.Rate, max(o.Burst, 1))
	}
	want := sha256.Sum256([]byte(o.Token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.Token != "" && !bearerMatches(r, want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="swell-cpa"`)
			writeError(w, http.StatusUnauthorized, "Unauthorized: a valid bearer token is required")
			return
		}
		if limiter != nil && !limiter.Allow() {
			w.Header().Set("Retry-After", strconv.Itoa(retryAfter(o.Rate)))
			writeError(w, http.StatusTooManyRequests, fmt.Sprintf("Too many requests: at most %g per second", float64(o.Rate)))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearerMatches reports whether r carries the bearer token hashed as want.
func bearerMatches(r *http.Request, want [sha256.Size]byte) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// retryAfter is the whole seconds until one more request is allowed.
func retryAfter(l rate.Limit) int {
	return max(1, int(math.Ceil(1/float64(l))))
}

// ServeAPI serves h, behind access, as apiConfig says (HTTP or HTTPS with
// certFile/keyFile) until ctx ends. A disabled API returns at once. It
// warns when the API is reachable from other hosts without a token, or
// in plaintext.
func ServeAPI(ctx context.Context, c APIConfig, h http.Handler, access APIAccess, log *slog.Logger) error {
	if !c.Enabled {
		return nil
	}
	ln, err := net.Listen("tcp", c.Addr())
	if err != nil {
		return fmt.Errorf("apiConfig %s: %w", c.Addr(), err)
	}
	srv := &http.Server{Handler: access.Wrap(h), ReadHeaderTimeout: 10 * time.Second}
	if c.UseHTTPS {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	warnExposure(log, c, access)
	log.Info("REST API listening", "addr", ln.Addr().String(), "https", c.UseHTTPS, "auth", access.Token != "", "ratePerSecond", float64(access.Rate))
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

// warnExposure says, once at start, what a network peer can do with an
// API bound off loopback.
func warnExposure(log *slog.Logger, c APIConfig, access APIAccess) {
	if bindaddr.IsLoopback(c.Addr()) {
		return
	}
	if access.Token == "" {
		log.Warn("REST API listens on a non-loopback address WITHOUT authentication: anyone who can reach it can run the metric and evaluate logic and scale the target; set a bearer token (--api-token-file or $SWELL_CPA_API_TOKEN) or apiConfig.host 127.0.0.1",
			"addr", c.Addr())
		return
	}
	if !c.UseHTTPS {
		log.Warn("REST API listens on a non-loopback address over plain HTTP: its bearer token crosses the network in clear text; set apiConfig.useHTTPS with certFile and keyFile",
			"addr", c.Addr())
	}
}
