package procnode

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/swell-autoscaler/swell/internal/proc"
)

// Readiness probes, as kubelet runs them: httpGet (2xx and 3xx pass) and
// tcpSocket against the pod's address, which on a process node is
// 127.0.0.1; initialDelaySeconds, periodSeconds, timeoutSeconds and the
// success/failure thresholds apply with Kubernetes' defaults. exec and grpc
// probes are not run: a container with one counts as ready once started.
// Liveness and startup probes are not run either.

// probeReadiness probes container i's process p until it exits, and
// publishes each change of its readiness.
func (r *podRunner) probeReadiness(ctx context.Context, i int, c *corev1.Container, p *proc.Process) {
	pr := c.ReadinessProbe
	check := probeCheck(pr, c)
	if check == nil {
		r.setReady(ctx, i, p, true)
		return
	}
	period := secondsOr(pr.PeriodSeconds, 10)
	timeout := secondsOr(pr.TimeoutSeconds, 1)
	successes, failures := int32(0), int32(0)
	wait := time.Duration(pr.InitialDelaySeconds) * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.Done():
			return
		case <-time.After(wait):
		}
		wait = period
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := check(pctx)
		cancel()
		if err != nil {
			successes, failures = 0, failures+1
			if failures >= max(pr.FailureThreshold, 1) {
				r.setReady(ctx, i, p, false)
			}
			continue
		}
		successes, failures = successes+1, 0
		if successes >= max(pr.SuccessThreshold, 1) {
			r.setReady(ctx, i, p, true)
		}
	}
}

// setReady records container i's readiness while p is still its process,
// writing the pod status when it changed.
func (r *podRunner) setReady(ctx context.Context, i int, p *proc.Process, ready bool) {
	r.mu.Lock()
	c := r.containers[i]
	changed := c.proc == p && c.ready != ready
	if changed {
		c.ready = ready
	}
	r.mu.Unlock()
	if changed {
		r.writeStatus(ctx)
	}
}

// probeCheck returns the check a probe performs, or nil when there is
// nothing this node runs.
func probeCheck(pr *corev1.Probe, c *corev1.Container) func(context.Context) error {
	if pr == nil {
		return nil
	}
	switch {
	case pr.HTTPGet != nil:
		return httpCheck(pr.HTTPGet, c)
	case pr.TCPSocket != nil:
		return tcpCheck(pr.TCPSocket, c)
	}
	return nil
}

func httpCheck(g *corev1.HTTPGetAction, c *corev1.Container) func(context.Context) error {
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	// Kubelet does not verify a probed pod's certificate either.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // as kubelet probes
	return func(ctx context.Context) error {
		port, err := probePort(g.Port, c)
		if err != nil {
			return err
		}
		url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(probeHost(g.Host), strconv.Itoa(port)), g.Path)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for _, h := range g.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = res.Body.Close()
		if res.StatusCode < 200 || res.StatusCode >= 400 {
			return fmt.Errorf("GET %s: %s", url, res.Status)
		}
		return nil
	}
}

func tcpCheck(s *corev1.TCPSocketAction, c *corev1.Container) func(context.Context) error {
	return func(ctx context.Context) error {
		port, err := probePort(s.Port, c)
		if err != nil {
			return err
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(probeHost(s.Host), strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	}
}

// probePort resolves a probe's port: a number, or a container port's name.
func probePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, p.StrVal)
}

// probeHost is the probe's host, else the pod's address (loopback here).
func probeHost(h string) string {
	if h == "" {
		return "127.0.0.1"
	}
	return h
}

func secondsOr(s, def int32) time.Duration {
	if s <= 0 {
		s = def
	}
	return time.Duration(s) * time.Second
}
