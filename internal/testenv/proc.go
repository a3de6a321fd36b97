package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/swell-autoscaler/swell/internal/proc"
)

// process is one component the environment started, with its log file.
type process struct {
	name    string
	p       *proc.Process
	logPath string
	log     *os.File
	// dir, bin, args and env let Restart start the same component again.
	dir, bin  string
	args, env []string
	stopped   bool
}

// startProcess starts bin with args in dir, logging to dir/<name>.log. The
// component inherits the environment plus env.
func startProcess(name, dir, bin string, args []string, env []string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", name, err)
	}
	p, err := proc.Start(proc.Spec{Path: bin, Args: args, Env: append(os.Environ(), env...), Dir: dir, Output: logFile})
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &process{name: name, p: p, logPath: logPath, log: logFile, dir: dir, bin: bin, args: args, env: env}, nil
}

func (p *process) stop(grace time.Duration) {
	p.p.Stop(grace)
	_ = p.log.Close()
	p.stopped = true
}

// tail returns the last n bytes of the process log, for error messages.
func (p *process) tail(n int64) string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	if st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// waitFor polls ready until it returns nil, the process exits, or ctx ends.
func (p *process) waitFor(ctx context.Context, what string, ready func(context.Context) error) error {
	var last error
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if last = ready(ctx); last == nil {
			return nil
		}
		if p.p.Exited() {
			return fmt.Errorf("%s exited (code %d) before it was %s; log tail:\n%s", p.name, p.p.ExitCode(), what, p.tail(4000))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not %s: %w (last check: %w); log tail:\n%s", p.name, what, ctx.Err(), last, p.tail(4000))
		case <-tick.C:
		}
	}
}
