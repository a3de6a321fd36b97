// Package proc supervises local processes that must never outlive the
// program that started them: test components and the process node's
// containers. Each runs in its own process group (so stopping it reaches its
// children) and is paired with a watchdog that kills that group once the
// starting program is gone, whether it exited, panicked or was SIGKILLed.
package proc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Spec describes a process to start.
type Spec struct {
	// Path is the executable; Args exclude it.
	Path string
	Args []string
	// Env is the complete environment (nothing is inherited).
	Env []string
	// Dir is the working directory.
	Dir string
	// Output receives stdout and stderr.
	Output io.Writer
}

// Process is a started, supervised process group.
type Process struct {
	cmd   *exec.Cmd
	guard *os.File
	done  chan struct{}
	err   error
	once  sync.Once
}

// watchdogScript waits for its stdin to close, then stops process group $1:
// SIGTERM first, SIGKILL two seconds later.
const watchdogScript = `read -r _; kill -TERM -"$1" 2>/dev/null; sleep 2; kill -KILL -"$1" 2>/dev/null; exit 0`

// Start starts the process and its watchdog.
func Start(s Spec) (*Process, error) {
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Dir = s.Dir
	cmd.Env = s.Env
	cmd.Stdout = s.Output
	cmd.Stderr = s.Output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Path, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := p.startWatchdog(); err != nil {
		p.Stop(0)
		return nil, err
	}
	return p, nil
}

func (p *Process) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("watchdog pipe: %w", err)
	}
	wd := exec.Command("/bin/sh", "-c", watchdogScript, "watchdog", fmt.Sprint(p.cmd.Process.Pid))
	wd.Stdin = r
	// Its own session: the watchdog must survive both the group it guards
	// and the death of the program that started it.
	wd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := wd.Start(); err != nil {
		_ = r.Close()
		_ = w.Close()
		return fmt.Errorf("start watchdog: %w", err)
	}
	_ = r.Close()
	go func() { _ = wd.Wait() }()
	p.guard = w
	return nil
}

// Pid is the process (and process group) id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit status once Done is closed, using the shell's
// convention of 128+signal for a process ended by a signal (as kubelet does).
func (p *Process) ExitCode() int {
	<-p.done
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		if p.err != nil {
			return 128
		}
		return 0
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}

// Signal sends sig to the whole process group.
func (p *Process) Signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Stop sends SIGTERM to the group, waits up to grace for the leader to
// exit, then SIGKILLs the group (children may outlive the leader). It waits
// for the exit and releases the watchdog. Safe to call more than once.
func (p *Process) Stop(grace time.Duration) {
	p.once.Do(func() {
		if grace > 0 {
			p.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(grace):
			}
		}
		p.Signal(syscall.SIGKILL)
		<-p.done
		p.Release()
	})
}

// Release closes the watchdog's pipe once the process has exited on its own;
// the watchdog then tries to kill an empty group and ends.
func (p *Process) Release() {
	if p.guard != nil {
		_ = p.guard.Close()
	}
}
