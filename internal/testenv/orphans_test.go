package testenv

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/swell-autoscaler/swell/internal/procnode"
)

// childEnvVar makes the test binary act as a doomed test process: it starts
// an environment, prints its directory, and then dies as asked.
const childEnvVar = "SWELL_TESTENV_ORPHAN_CHILD"

// TestNoOrphansWhenTestProcessDies starts an environment (control plane,
// process node running a pod, Redis, RabbitMQ, NATS) in a child test binary,
// kills that binary without any cleanup, and checks that every process it
// started goes away.
func TestNoOrphansWhenTestProcessDies(t *testing.T) {
	if err := CheckBinaries(); err != nil {
		t.Fatal(err)
	}
	for _, death := range []string{"sigkill", "panic"} {
		t.Run(death, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestOrphanChild$", "-test.v")
			cmd.Env = append(os.Environ(), childEnvVar+"="+death)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			defer func() {
				if t.Failed() {
					t.Logf("child stderr:\n%s", stderr.String())
				}
			}()
			if err := cmd.Start(); err != nil {
				t.Fatalf("start child: %v", err)
			}
			dir := readChildDir(t, stdout)
			defer func() { _ = os.RemoveAll(dir) }()
			if n := len(processesUnder(dir)); n < 5 {
				t.Fatalf("child environment in %s runs %d processes, want at least 5 before it dies", dir, n)
			}
			if death == "sigkill" {
				_ = cmd.Process.Signal(syscall.SIGKILL)
			}
			_ = cmd.Wait()
			deadline := time.Now().Add(20 * time.Second)
			for {
				left := processesUnder(dir)
				if len(left) == 0 {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("processes left running after the test process died (%s): %s", death, strings.Join(left, "; "))
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

// TestOrphanChild is the child half of TestNoOrphansWhenTestProcessDies; it
// does nothing in a normal run.
func TestOrphanChild(t *testing.T) {
	death := os.Getenv(childEnvVar)
	if death == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := Options{ControllerManager: true, Scheduler: true, ProcessNode: &NodeSpec{Name: "process-node"}, Redis: true, RabbitMQ: true, NATS: true}
	e, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper", Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeName:    e.ProcessNodeName,
			Tolerations: []corev1.Toleration{{Key: procnode.Taint, Operator: corev1.TolerationOpExists}},
			Containers:  []corev1.Container{{Name: "main", Image: "local", Command: []string{"sleep", "300"}}},
		},
	}
	if _, err := e.Clientset.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = pollUntil(ctx, func(ctx context.Context) error {
		p, err := e.Clientset.CoreV1().Pods("default").Get(ctx, "sleeper", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("pod is %s", p.Status.Phase)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ENVDIR=%s\n", e.Dir)
	if death == "panic" {
		panic("the test process dies without cleaning up")
	}
	time.Sleep(time.Minute) // the parent SIGKILLs us
}

func readChildDir(t *testing.T, stdout interface{ Read([]byte) (int, error) }) string {
	t.Helper()
	sc := bufio.NewScanner(stdout)
	var seen []string
	for sc.Scan() {
		seen = append(seen, sc.Text())
		if dir, ok := strings.CutPrefix(sc.Text(), "ENVDIR="); ok {
			go func() {
				for sc.Scan() { // drain so the child never blocks on a full pipe
				}
			}()
			return dir
		}
	}
	t.Fatalf("child exited before printing its environment directory; it printed:\n%s", strings.Join(seen, "\n"))
	return ""
}

// processesUnder lists processes whose command line or working directory
// mentions dir: every component and pod process of an environment does.
func processesUnder(dir string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
		cwd, _ := os.Readlink(filepath.Join("/proc", pid, "cwd"))
		args := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if strings.Contains(args, dir) || strings.HasPrefix(cwd, dir) {
			out = append(out, fmt.Sprintf("pid %s: %.120s", pid, args))
		}
	}
	return out
}
