package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestDemoLiveViewScalesUpAndDown runs the README's demo command (swell-dev,
// which `make demo` runs, with the product binary swell next to it)
// in a tmux session, as a person would, and reads the live view with
// capture-pane: the desired replicas must rise under load and fall after it.
func TestDemoLiveViewScalesUpAndDown(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Fatal("tmux not installed: run make testbin")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "swell-dev")
	for _, cmd := range []string{"swell", "swell-dev"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "../../cmd/"+cmd).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", cmd, err, out)
		}
	}
	session := "swell-demo-test"
	_ = exec.Command(tmux, "kill-session", "-t", session).Run()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	cmd := exec.Command(tmux, "new-session", "-d", "-s", session, "-x", "160", "-y", "40",
		bin, "--phase-scale", "0.3", "--kubeconfig-out", kubeconfig)
	cmd.Env = os.Environ()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start tmux: %v\n%s", err, out)
	}
	capture := func() string {
		out, _ := exec.Command(tmux, "capture-pane", "-p", "-t", session).Output()
		return string(out)
	}
	t.Cleanup(func() {
		// Ctrl-C, as a person would; then make sure the session is gone.
		_ = exec.Command(tmux, "send-keys", "-t", session, "C-c").Run()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && exec.Command(tmux, "has-session", "-t", session).Run() == nil {
			time.Sleep(200 * time.Millisecond)
		}
		_ = exec.Command(tmux, "kill-session", "-t", session).Run()
		if t.Failed() {
			t.Logf("last view:\n%s", capture())
		}
	})
	desiredRe := regexp.MustCompile(`desired (\d+)\s+current (\d+)\s+ready (\d+)`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	peak := 0
	waitFor(ctx, t, "the live view to show at least 5 ready workers under load", func() (bool, error) {
		m := desiredRe.FindStringSubmatch(capture())
		if m == nil {
			return false, nil
		}
		ready, _ := strconv.Atoi(m[3])
		peak = max(peak, ready)
		return ready >= 5, nil
	})
	waitFor(ctx, t, "the live view to show the pool shrinking after the load", func() (bool, error) {
		m := desiredRe.FindStringSubmatch(capture())
		if m == nil {
			return false, nil
		}
		desired, _ := strconv.Atoi(m[1])
		current, _ := strconv.Atoi(m[2])
		return desired <= 1 && current <= 1, nil
	})
	t.Logf("peak ready workers in the live view: %d", peak)
}
