// Package burrow measures a Kafka consumer group's lag through Burrow's HTTP
// API (v3): GET /v3/kafka/<cluster>/consumer/<group>/lag answers the group's
// status with status.totallag, the records the group has not consumed
// summed over its partitions, as Burrow last evaluated it.
//
// Burrow computes lag from the offsets it reads from the cluster itself, so
// a Swell source built on it needs no Kafka credentials, only Burrow's URL:
// the reason to use it where Burrow already runs (the Azul scaler reads
// Burrow too). A Burrow error answer ({"error": true, ...}) and an HTTP
// status other than 200 are errors, never a lag of zero.
package burrow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/swell-autoscaler/swell/pkg/egress"
	"github.com/swell-autoscaler/swell/pkg/source"
	"github.com/swell-autoscaler/swell/pkg/source/brokerconn"
)

const defaultTimeout = 5 * time.Second

// maxBody bounds what is read of one answer (a group with tens of thousands
// of partitions stays well below it).
const maxBody = 32 << 20

// Config says how to reach one Burrow and which of its clusters to ask.
type Config struct {
	// URL is Burrow's HTTP base, http[s]://host:port, without credentials.
	URL string
	// Cluster is the cluster name in Burrow's configuration (required).
	Cluster string
	// Username and Password are HTTP basic auth, for a Burrow behind a
	// proxy that asks for it; both or neither.
	Username string
	Password brokerconn.Secret
	// Timeout bounds one request (default 5s).
	Timeout time.Duration
	// HTTPClient overrides the client (tests, custom TLS); nil means a
	// client with Timeout.
	HTTPClient *http.Client
}

// Validate reports every invalid field, each message naming it, never
// repeating the URL (it might hold credentials).
func (c Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		errs = append(errs, errors.New("burrow config: url is required (http://host:8000)"))
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs = append(errs, errors.New("burrow config: url must be http://host:port or https://host:port"))
	case u.User != nil:
		errs = append(errs, errors.New("burrow config: url must not hold credentials; use username and password"))
	}
	if c.Cluster == "" {
		errs = append(errs, errors.New("burrow config: cluster is required (a cluster name from Burrow's configuration)"))
	}
	if (c.Username == "") != (c.Password == "") {
		errs = append(errs, errors.New("burrow config: username and password must be set together"))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("burrow config: timeout %s is negative", c.Timeout))
	}
	return errors.Join(errs...)
}

// Client asks one Burrow. Safe for concurrent use.
type Client struct {
	cfg  Config
	base string
	http *http.Client
}

// New validates cfg and returns a client; it does not contact Burrow.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		t := cfg.Timeout
		if t == 0 {
			t = defaultTimeout
		}
		// Basic auth stays with Burrow's origin on a redirect.
		hc = &http.Client{Timeout: t, CheckRedirect: egress.CheckRedirect}
	}
	return &Client{cfg: cfg, base: strings.TrimRight(cfg.URL, "/"), http: hc}, nil
}

// GroupStatus is the part of Burrow's consumer status Swell uses.
type GroupStatus struct {
	// Cluster and Group echo the request.
	Cluster string `json:"cluster"`
	Group   string `json:"group"`
	// Status is Burrow's evaluation: NOTFOUND, OK, WARN, ERR, STOP, STALL.
	Status string `json:"status"`
	// Complete is how much of Burrow's evaluation window is filled (0..1).
	Complete float64 `json:"complete"`
	// PartitionCount is the number of partitions the group consumes.
	PartitionCount int `json:"partition_count"`
	// TotalLag is the group's lag summed over its partitions.
	TotalLag int64 `json:"totallag"`
}

// lagResponse is Burrow's answer envelope.
type lagResponse struct {
	Error   bool         `json:"error"`
	Message string       `json:"message"`
	Status  *GroupStatus `json:"status"`
}

// Lag asks Burrow for one group's status.
func (c *Client) Lag(ctx context.Context, group string) (GroupStatus, error) {
	what := fmt.Sprintf("burrow cluster %q group %q", c.cfg.Cluster, group)
	u := fmt.Sprintf("%s/v3/kafka/%s/consumer/%s/lag", c.base, url.PathEscape(c.cfg.Cluster), url.PathEscape(group))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return GroupStatus{}, fmt.Errorf("%s: build request: %w", what, err)
	}
	if c.cfg.Username != "" {
		req.SetBasicAuth(c.cfg.Username, c.cfg.Password.Reveal())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return GroupStatus{}, fmt.Errorf("%s: %w", what, redactURL(err))
	}
	defer func() { _ = resp.Body.Close() }()
	return decodeLag(what, resp)
}

func decodeLag(what string, resp *http.Response) (GroupStatus, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return GroupStatus{}, fmt.Errorf("%s: read answer: %w", what, err)
	}
	var r lagResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return GroupStatus{}, fmt.Errorf("%s: HTTP %d, answer is not Burrow JSON: %w", what, resp.StatusCode, err)
	}
	switch {
	case r.Error:
		// Burrow's message is not quoted: what an answer says never
		// reaches a status or an event, only that it was an error.
		return GroupStatus{}, fmt.Errorf("%s: HTTP %d: burrow answered an error (its message is not shown)", what, resp.StatusCode)
	case r.Status != nil && r.Status.Status == "NOTFOUND":
		// Burrow 1.x answers an unknown group with 404, error false and
		// this status: name the cause rather than the bare HTTP code.
		return GroupStatus{}, fmt.Errorf("%s: burrow does not know the group (NOTFOUND)", what)
	case resp.StatusCode != http.StatusOK:
		return GroupStatus{}, fmt.Errorf("%s: HTTP %d", what, resp.StatusCode)
	case r.Status == nil:
		return GroupStatus{}, fmt.Errorf("%s: answer has no status", what)
	}
	return *r.Status, nil
}

// redactURL drops the URL from a *url.Error, which could repeat a query or
// a user the caller did not mean to log.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// Group returns the source measuring one consumer group.
func (c *Client) Group(group string) (source.Source, error) {
	if group == "" {
		return nil, errors.New("burrow: consumer group is required")
	}
	return &groupSource{c: c, group: group, now: time.Now}, nil
}

// groupSource measures one group's total lag.
type groupSource struct {
	c     *Client
	group string
	now   func() time.Time
}

var _ source.Source = (*groupSource)(nil)

// Measure returns the group's total lag; Kafka keeps no count of records
// handed out and not committed, so it is all Ready.
func (s *groupSource) Measure(ctx context.Context) (source.Sample, error) {
	now := s.now()
	st, err := s.c.Lag(ctx, s.group)
	if err != nil {
		return source.Sample{}, err
	}
	return source.Sample{Backlog: st.TotalLag, Ready: st.TotalLag, Time: now}, nil
}

// Close releases nothing: the HTTP client belongs to the Client.
func (s *groupSource) Close() error { return nil }
