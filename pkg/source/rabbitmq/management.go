package rabbitmq

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/swell-autoscaler/swell/pkg/egress"
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
		// The management password stays with its origin on a redirect.
		hc: &http.Client{Transport: tr, Timeout: cfg.timeout(), CheckRedirect: egress.CheckRedirect},
	}, nil
}

// queueStats is the part of GET /api/queues/<vhost>/<name> Swell reads.
// RabbitMQ omits the counters until it first collects the queue's
// statistics (one collect_statistics_interval after the queue appears).
type queueStats struct {
	Unacked *int64 `json:"messages_unacknowledged"`
	// HeadTimestamp is the timestamp property (Unix seconds) of the
	// message at the queue's head, when it has one; RabbitMQ reports it
	// for classic queues only and writes "" otherwise.
	HeadTimestamp json.RawMessage `json:"head_message_timestamp"`
}

// queueFigures is what the management API adds to the AMQP ready count.
type queueFigures struct {
	// Unacked is the queue's unacknowledged message count.
	Unacked int64
	// Head is the head message's timestamp property; zero when unknown.
	Head time.Time
}

// stats reads the queue's unacknowledged count and head timestamp.
func (m *management) stats(ctx context.Context, vhost, name string) (queueFigures, error) {
	endpoint := m.base + "/api/queues/" + url.PathEscape(vhost) + "/" + url.PathEscape(name)
	var st queueStats
	if err := m.get(ctx, endpoint, fmt.Sprintf("rabbitmq management GET queue %q in vhost %q", name, vhost), 1<<20, &st); err != nil {
		return queueFigures{}, err
	}
	return st.figures(), nil
}

// vhostStats reads the figures of every queue of vhost in one request,
// only the columns Swell reads.
func (m *management) vhostStats(ctx context.Context, vhost string) (map[string]queueFigures, error) {
	endpoint := m.base + "/api/queues/" + url.PathEscape(vhost) + "?columns=name,messages_unacknowledged,head_message_timestamp"
	var list []struct {
		Name string `json:"name"`
		queueStats
	}
	if err := m.get(ctx, endpoint, fmt.Sprintf("rabbitmq management GET queues of vhost %q", vhost), 64<<20, &list); err != nil {
		return nil, err
	}
	out := make(map[string]queueFigures, len(list))
	for _, q := range list {
		out[q.Name] = q.figures()
	}
	return out, nil
}

// get decodes the JSON answer to GET endpoint into v, reading at most limit
// bytes; what names the request in errors.
func (m *management) get(ctx context.Context, endpoint, what string, limit int64, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	req.SetBasicAuth(m.user, m.password)
	resp, err := m.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		// The answer is drained, never quoted: a body must not reach a
		// status or an event.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return fmt.Errorf("%s: %s", what, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, limit)).Decode(v); err != nil {
		return fmt.Errorf("%s: decode: %w", what, err)
	}
	return nil
}

// figures is what Swell reads of a queue's statistics.
func (st queueStats) figures() queueFigures {
	var f queueFigures
	if st.Unacked != nil { // nil: not collected yet, nothing known to be in flight
		f.Unacked = *st.Unacked
	}
	var sec int64
	if json.Unmarshal(st.HeadTimestamp, &sec) == nil && sec > 0 {
		f.Head = time.Unix(sec, 0)
	}
	return f
}
