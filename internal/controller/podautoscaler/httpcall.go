package podautoscaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/swell-autoscaler/swell/pkg/cpa"
	"github.com/swell-autoscaler/swell/pkg/egress"
)

// maxAnswer bounds what a pass reads of a method's answer, as cpa does.
const maxAnswer = 4 << 20

// httpRunner calls a PodAutoscaler's http methods. It is the controller's
// own, not cpa.Executor, for two reasons: every connection goes through
// the operator's egress policy (a tenant's URL must not reach the cloud
// metadata service, Swell's host or the cluster's internals unless the
// operator allows it), and its errors say what failed (status, refusal,
// timeout) but never quote what came back, since they become the
// PodAutoscaler's condition and events, which the tenant reads. The
// request itself is CPA's: the JSON input as the `value` query parameter
// or as the body, the headers set, a status outside successCodes an error.
type httpRunner struct {
	client *http.Client
}

// newHTTPRunner returns a runner dialling under p (nil: no restriction).
func newHTTPRunner(p *egress.Policy) *httpRunner {
	return &httpRunner{client: p.HTTPClient(0, nil)}
}

// Run calls m (an http method) with input, bounded by its timeout.
func (h *httpRunner) Run(ctx context.Context, m *cpa.Method, input []byte) (string, error) {
	if m.Type != cpa.MethodHTTP || m.HTTP == nil {
		return "", fmt.Errorf("method type %q: a PodAutoscaler runs only http methods", m.Type)
	}
	ctx, cancel := context.WithTimeout(ctx, m.TimeoutDuration())
	defer cancel()
	req, err := cpa.NewRequest(ctx, m.HTTP, input)
	if err != nil {
		return "", err
	}
	what := fmt.Sprintf("http %s %s", m.HTTP.Method, m.HTTP.URL)
	resp, err := h.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, callError(ctx, m, err))
	}
	defer func() { _ = resp.Body.Close() }()
	if !successful(resp.StatusCode, m.HTTP.SuccessCodes) {
		// The body is drained for the connection's reuse, never quoted.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		return "", fmt.Errorf("%s: status %d not in successCodes %v (the answer is not shown)", what, resp.StatusCode, m.HTTP.SuccessCodes)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return "", fmt.Errorf("%s: read the answer: %w", what, callError(ctx, m, err))
	}
	if len(body) > maxAnswer {
		return "", fmt.Errorf("%s: answer larger than %d bytes, refused", what, maxAnswer)
	}
	return string(body), nil
}

// callError strips what a transport error repeats of the request (a
// *url.Error quotes the full URL, whose `value` parameter holds the input
// JSON) and says why a context ended.
func callError(ctx context.Context, m *cpa.Method, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %s", m.TimeoutDuration())
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func successful(code int, codes []int) bool {
	for _, c := range codes {
		if c == code {
			return true
		}
	}
	return false
}

// parseEvaluation reads {"targetReplicas": N} as cpa.ParseEvaluation does,
// but its errors describe the answer (its size, what is missing) instead of
// quoting it: the evaluator's answer is a response body, and the error
// lands in the condition and events.
func parseEvaluation(out string) (int32, error) {
	var raw struct {
		TargetReplicas *int32 `json:"targetReplicas"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&raw); err != nil {
		return 0, fmt.Errorf("evaluation answer (%d bytes) is not a JSON object like {\"targetReplicas\": 3}", len(out))
	}
	if rest := strings.Trim(out[dec.InputOffset():], " \t\r\n"); rest != "" {
		return 0, fmt.Errorf("evaluation answer (%d bytes) has data after its JSON object; want exactly one object like {\"targetReplicas\": 3}", len(out))
	}
	if raw.TargetReplicas == nil {
		return 0, errors.New("evaluation answer has no targetReplicas; want {\"targetReplicas\": N}")
	}
	if *raw.TargetReplicas < 0 {
		return 0, fmt.Errorf("evaluation answer: targetReplicas %d must be >= 0", *raw.TargetReplicas)
	}
	return *raw.TargetReplicas, nil
}
