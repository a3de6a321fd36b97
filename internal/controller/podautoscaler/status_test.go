package podautoscaler

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/cpa"
)

// redisReply is a Redis error reply as go-redis returns it (redis.Error).
type redisReply string

func (e redisReply) Error() string { return string(e) }
func (redisReply) RedisError()     {}

// TestFailedSourceConditionNamesTheFailureNotTheReply: what a server at a
// ScalerConfig's address answered stays out of the Ready condition (a
// tenant could point a ScalerConfig at an internal service and read its
// answer there); Swell's own context stays.
func TestFailedSourceConditionNamesTheFailureNotTheReply(t *testing.T) {
	secret := "ERR internal-service-banner v1.2 token=abc123"
	err := fmt.Errorf("ScalerConfig ns/redis: measure queue %q: %w", "jobs", redisReply(secret))
	res := &result{HaveTarget: true, Current: 3}
	res.fail(cpa.ReasonFailedGetMetrics, err)
	st := buildStatus(&swellv1.PodAutoscaler{}, res)
	cond := meta.FindStatusCondition(st.Conditions, ConditionReady)
	if cond == nil {
		t.Fatal("no Ready condition")
	}
	if strings.Contains(cond.Message, "token=abc123") || strings.Contains(cond.Message, "banner") {
		t.Errorf("condition quotes the server's reply: %q", cond.Message)
	}
	if !strings.Contains(cond.Message, `measure queue "jobs"`) || cond.Reason != cpa.ReasonFailedGetMetrics {
		t.Errorf("condition %s %q lost what failed", cond.Reason, cond.Message)
	}
}
