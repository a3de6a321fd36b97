package rabbitmq

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// management reads queue statistics from RabbitMQ's management HTTP API.
type management struct {
	base     string
	user     string
	password string
	hc       *http.Client
}

func newManagement(cfg Config) (*management, error) {
	u, _ := url.Parse(cfg.ManagementURL) // checked by Validate
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.Dial != nil {
		tr.DialContext, tr.Proxy = cfg.Dial, nil
	}
	if u.Scheme == "https" {
		tlsCfg, err := cfg.TLS.Config(u.Hostname())
		if err != nil {
			return nil, fmt.Errorf("rabbitmq config: tls: %w", err)
		}
		tr.TLSClientConfig = tlsCfg
	}
	user, pw := cfg.ManagementUsername, cfg.ManagementPassword.Reveal()
	if user == "" {
		user, pw = cfg.Username, cfg.Password.Reveal()
	}
	if user == "" {
		user, pw = "guest", "guest"
	}
	return &management{
		base:     strings.TrimRight(cfg.ManagementURL, "/"),
		user:     user,
		password: pw,
		hc:       &http.Client{Transport: tr, Timeout: cfg.timeout()},
	}, nil
}

// queueStats is the part of GET /api/queues/<vhost>/<name> Swell reads.
// RabbitMQ omits the counters until it first collects the queue's
// statistics (one collect_statistics_interval after the queue appears).
type queueStats struct {
	Unacked *int64 `json:"messages_unacknowledged"`
}

// unacked returns the queue's unacknowledged message count.
func (m *management) unacked(ctx context.Context, vhost, name string) (int64, error) {
	endpoint := m.base + "/api/queues/" + url.PathEscape(vhost) + "/" + url.PathEscape(name)
	what := fmt.Sprintf("rabbitmq management GET queue %q in vhost %q", name, vhost)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	req.SetBasicAuth(m.user, m.password)
	resp, err := m.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		// The answer is drained, never quoted: a body must not reach a
		// status or an event.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return 0, fmt.Errorf("%s: %s", what, resp.Status)
	}
	var st queueStats
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return 0, fmt.Errorf("%s: decode: %w", what, err)
	}
	if st.Unacked == nil {
		return 0, nil // not collected yet: nothing known to be in flight
	}
	return *st.Unacked, nil
}
