package cpa

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/swell-autoscaler/swell/pkg/egress"
)

// maxOutput bounds what Swell keeps of a method's stdout, stderr or HTTP
// body, so a runaway script cannot exhaust the runner's memory.
const maxOutput = 4 << 20

// Executor runs methods: user logic as a command or an HTTP request. It is
// safe for concurrent use; HTTP clients are built once per TLS setting.
type Executor struct {
	mu      sync.Mutex
	clients map[tlsFiles]*http.Client
	log     *slog.Logger
	// egress, when set, decides which addresses http methods may dial
	// (see SetEgress); nil allows every address, as CPA does.
	egress *egress.Policy
}

// SetEgress makes every http method dial under p (checked on the resolved
// address, redirects included). `swell cpa --egress-restrict` sets it; the
// default is none, because the operator, not a tenant, writes swell cpa's
// config. Call it before the first Run.
func (e *Executor) SetEgress(p *egress.Policy) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.egress = p
	e.clients = map[tlsFiles]*http.Client{}
}

// NewExecutor returns an Executor that logs nothing.
func NewExecutor() *Executor { return NewExecutorWithLogger(nil) }

// NewExecutorWithLogger returns an Executor that logs to log (nil: nowhere):
// the stderr of a successful command whose shell.logStderr is true at info
// level, as CPA does, and at debug level otherwise.
func NewExecutorWithLogger(log *slog.Logger) *Executor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Executor{clients: map[tlsFiles]*http.Client{}, log: log}
}

// Run calls m with input (JSON) and returns what it answered, bounded by
// the method's timeout (DefaultMethodTimeout when unset).
func (e *Executor) Run(ctx context.Context, m *Method, input []byte) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, m.TimeoutDuration())
	defer cancel()
	switch m.Type {
	case MethodShell:
		return e.runShell(ctx, m.Shell, input, m.TimeoutDuration())
	case MethodHTTP:
		return e.runHTTP(ctx, m.HTTP, input, m.TimeoutDuration())
	default:
		return "", fmt.Errorf("method type %q: want %q or %q", m.Type, MethodShell, MethodHTTP)
	}
}

// runShell executes entrypoint with its arguments directly, never through
// /bin/sh, so nothing in an argument is interpreted. The JSON goes to stdin;
// stdout is the answer. The whole process group is killed on timeout, so a
// script's children cannot keep it alive. A failure's error carries the end
// of stderr; a success logs stderr (see logStderr).
func (e *Executor) runShell(ctx context.Context, s *Shell, input []byte, timeout time.Duration) (string, error) {
	cmd := exec.CommandContext(ctx, s.Entrypoint, s.Command...)
	cmd.Stdin = bytes.NewReader(input)
	var stdout, stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("command %s: %s (stderr: %q)", describe(s), stopped(ctx, timeout), stderr.tail())
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return "", fmt.Errorf("command %s: exit code %d (stderr: %q)", describe(s), exit.ExitCode(), stderr.tail())
	}
	if err != nil {
		return "", fmt.Errorf("command %s: %w", describe(s), err)
	}
	if stdout.truncated {
		return "", fmt.Errorf("command %s: output larger than %d bytes (%d MiB), refused", describe(s), maxOutput, maxOutput>>20)
	}
	e.logStderr(ctx, s, &stderr)
	return stdout.String(), nil
}

// logStderr logs a successful command's stderr: at info level with
// shell.logStderr true (CPA logs it then, and only then), at debug level
// otherwise, and not at all when it is empty.
func (e *Executor) logStderr(ctx context.Context, s *Shell, stderr *limitedBuffer) {
	if stderr.buf.Len() == 0 {
		return
	}
	level := slog.LevelDebug
	if s.LogStderr != nil && *s.LogStderr {
		level = slog.LevelInfo
	}
	e.log.Log(ctx, level, "command stderr", "command", describe(s), "stderr", stderr.String(), "truncated", stderr.truncated)
}

// stopped says why a method's context ended: its timeout, or the caller
// giving up (shutdown), which is not the user logic's fault.
func stopped(ctx context.Context, timeout time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("timed out after %s", timeout)
	}
	return "stopped: " + ctx.Err().Error()
}

func describe(s *Shell) string {
	return fmt.Sprintf("%q", append([]string{s.Entrypoint}, s.Command...))
}

// runHTTP makes the request with the JSON as the `value` query parameter or
// as the body; a status outside successCodes is an error.
func (e *Executor) runHTTP(ctx context.Context, h *HTTP, input []byte, timeout time.Duration) (string, error) {
	client, err := e.client(*h)
	if err != nil {
		return "", err
	}
	req, err := NewRequest(ctx, h, input)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("http %s %s: %s", h.Method, h.URL, stopped(ctx, timeout))
		}
		return "", fmt.Errorf("http %s %s: %w", h.Method, h.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOutput+1))
	if err != nil {
		return "", fmt.Errorf("http %s %s: read body: %w", h.Method, h.URL, err)
	}
	if len(body) > maxOutput {
		return "", fmt.Errorf("http %s %s: body larger than %d bytes (%d MiB), refused", h.Method, h.URL, maxOutput, maxOutput>>20)
	}
	for _, code := range h.SuccessCodes {
		if resp.StatusCode == code {
			return string(body), nil
		}
	}
	return "", fmt.Errorf("http %s %s: status %d not in successCodes %v (body: %q)", h.Method, h.URL, resp.StatusCode, h.SuccessCodes, truncate(string(body), 512))
}

// NewRequest builds the request an http method sends, as CPA does: the
// input as the `value` query parameter or as the body, with the method's
// headers. Swell's controller sends PodAutoscaler methods with it too, over
// its own client.
func NewRequest(ctx context.Context, h *HTTP, input []byte) (*http.Request, error) {
	u, err := url.Parse(h.URL)
	if err != nil {
		return nil, fmt.Errorf("http url %q: %w", h.URL, err)
	}
	var body io.Reader
	if h.ParameterMode == ParameterQuery {
		q := u.Query()
		q.Set("value", string(input))
		u.RawQuery = q.Encode()
	} else {
		body = bytes.NewReader(input)
	}
	req, err := http.NewRequestWithContext(ctx, h.Method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("http %s %s: %w", h.Method, h.URL, err)
	}
	for k, v := range h.Headers {
		req.Header.Set(k, v)
	}
	return req, nil
}

// client returns the HTTP client for h's TLS settings, building it once.
func (e *Executor) client(h HTTP) (*http.Client, error) {
	key := tlsFiles{ca: h.CACert, cert: h.ClientCert, key: h.ClientKey}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.clients[key]; ok {
		return c, nil
	}
	tlsCfg, err := clientTLS(key)
	if err != nil {
		return nil, err
	}
	c := &http.Client{Transport: e.egress.Transport(tlsCfg)}
	if e.egress != nil {
		c.CheckRedirect = egress.CheckRedirect
	}
	e.clients[key] = c
	return c, nil
}

// clientTLS builds the TLS config from PEM files; nil means system defaults.
func clientTLS(h tlsFiles) (*tls.Config, error) {
	if h.ca == "" && h.cert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if h.ca != "" {
		pem, err := os.ReadFile(h.ca)
		if err != nil {
			return nil, fmt.Errorf("http.caCert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http.caCert %s: no PEM certificate found", h.ca)
		}
		cfg.RootCAs = pool
	}
	if h.cert != "" {
		cert, err := tls.LoadX509KeyPair(h.cert, h.key)
		if err != nil {
			return nil, fmt.Errorf("http.clientCert/clientKey: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// tlsFiles are the PEM files of one HTTP method's TLS settings.
type tlsFiles struct{ ca, cert, key string }

// limitedBuffer keeps at most maxOutput bytes and notes what it dropped.
// The buffer is a field, not embedded: an embedded bytes.Buffer would give
// limitedBuffer its ReadFrom method, and io.Copy (which os/exec uses to
// copy a command's output in) would call that instead of Write, filling the
// buffer without any limit.
type limitedBuffer struct {
	buf       bytes.Buffer
	truncated bool
}

// Write keeps what fits and drops the rest; it never fails, so the command
// is not stopped by a broken pipe and its exit status stays meaningful.
func (b *limitedBuffer) Write(p []byte) (int, error) {
	room := maxOutput - b.buf.Len()
	if len(p) > room {
		b.truncated = true
		b.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitedBuffer) String() string { return b.buf.String() }

// tail is the end of the buffer, for error messages.
func (b *limitedBuffer) tail() string { return truncateHead(strings.TrimSpace(b.String()), 512) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func truncateHead(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
