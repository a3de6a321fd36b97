package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/cpa"
)

// TestCPAExamplePostScaleHook runs examples/cpa/post-scale-hook, written
// from CPA's post-scale-hook README: the getting-started autoscaler (scale
// a Deployment to its label numPods) plus a postScale hook that stores the
// JSON it gets on stdin. README — the Deployment starts at 1 with numPods
// "3" and ends at 3; changing the label changes the count. Here the label
// goes 3 → 12 (above maxReplicas 10, so 10) → 3, and after each step the
// hook's file must hold CPA's postScale input for that decision:
// evaluation (the count applied), resource, scaleTargetRef, namespace,
// minReplicas, maxReplicas, targetReplicas (what evaluation asked for) and
// runType, and nothing else.
func TestCPAExamplePostScaleHook(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := newNamespace(ctx, t)
	dir := exampleStateDir(t)
	const name = "hello-kubernetes"
	createLabelledDeployment(ctx, t, ns, name, 1, map[string]string{"numPods": "3"})
	seen := watchReplicas(ctx, t, ns, name)
	startCPA(t, loadCPAExample(t, "post-scale-hook", ns, name, nil))

	for _, step := range []struct {
		numPods       string
		asked, scaled int32
	}{
		{"3", 3, 3},    // the README's count
		{"12", 12, 10}, // clamped to maxReplicas; the hook sees both numbers
		{"3", 3, 3},    // back down: the README's count again
	} {
		relabel(ctx, t, ns, name, step.numPods)
		waitReplicas(ctx, t, ns, name, step.scaled)
		info := waitPostScaleData(ctx, t, dir, step.scaled)
		t.Logf("post-scale-hook: numPods %s -> %d replicas; postScale input keys %v", step.numPods, replicasOf(ctx, t, ns, name), sortedKeys(info))
		checkPostScaleInput(t, info, ns, name, step.numPods, step.asked, step.scaled)
	}
	seen.expect(t, 1, 3, 10, 3)
}

// waitPostScaleData waits until the hook's file holds the input of a
// decision that applied scaled replicas, and returns it decoded.
func waitPostScaleData(ctx context.Context, t *testing.T, dir string, scaled int32) map[string]any {
	t.Helper()
	path := filepath.Join(dir, "post_scale_data.json")
	var info map[string]any
	waitFor(ctx, t, fmt.Sprintf("%s with evaluation.targetReplicas %d", path, scaled), func() (bool, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, err // not written yet
		}
		info = nil
		if err := json.Unmarshal(b, &info); err != nil {
			return false, fmt.Errorf("post_scale_data.json is not JSON: %w", err)
		}
		eval, _ := info["evaluation"].(map[string]any)
		return eval["targetReplicas"] == float64(scaled), nil
	})
	return info
}

// checkPostScaleInput compares one postScale input with what CPA gives
// that hook (its scale.Info): the same keys, and values for this decision.
func checkPostScaleInput(t *testing.T, info map[string]any, ns, name, numPods string, asked, scaled int32) {
	t.Helper()
	wantKeys := []string{"evaluation", "maxReplicas", "minReplicas", "namespace", "resource", "runType", "scaleTargetRef", "targetReplicas"}
	if got := sortedKeys(info); !slices.Equal(got, wantKeys) {
		t.Errorf("postScale input keys %v, want exactly CPA's %v", got, wantKeys)
	}
	for key, want := range map[string]any{
		"minReplicas":    float64(1),
		"maxReplicas":    float64(10),
		"targetReplicas": float64(asked),
		"namespace":      ns,
		"runType":        cpa.RunTypeScaler,
	} {
		if info[key] != want {
			t.Errorf("postScale input %s = %v, want %v", key, info[key], want)
		}
	}
	if eval, _ := info["evaluation"].(map[string]any); len(eval) != 1 || eval["targetReplicas"] != float64(scaled) {
		t.Errorf("postScale input evaluation = %v, want {targetReplicas: %d}", info["evaluation"], scaled)
	}
	ref, _ := info["scaleTargetRef"].(map[string]any)
	if ref["apiVersion"] != "apps/v1" || ref["kind"] != "Deployment" || ref["name"] != name {
		t.Errorf("postScale input scaleTargetRef = %v, want apps/v1 Deployment %s", ref, name)
	}
	res, _ := info["resource"].(map[string]any)
	meta, _ := res["metadata"].(map[string]any)
	labels, _ := meta["labels"].(map[string]any)
	if res["apiVersion"] != "apps/v1" || res["kind"] != "Deployment" || meta["name"] != name || meta["namespace"] != ns || labels["numPods"] != numPods {
		t.Errorf("postScale input resource = kind %v apiVersion %v metadata %v, want the Deployment %s/%s labelled numPods %s",
			res["kind"], res["apiVersion"], meta, ns, name, numPods)
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
