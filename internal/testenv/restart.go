package testenv

import (
	"context"
	"fmt"
	"time"
)

// StopComponent stops one component process (by name, e.g. "redis") so a
// test can watch how Swell behaves while a broker is down.
func (e *Env) StopComponent(name string) error {
	p, err := e.find(name)
	if err != nil {
		return err
	}
	p.stop(5 * time.Second)
	return nil
}

// RestartComponent starts a stopped component again with the same binary,
// arguments, ports and data directory, and waits until ready says it
// answers (nil: no wait).
func (e *Env) RestartComponent(ctx context.Context, name string, ready func(context.Context) error) error {
	old, err := e.find(name)
	if err != nil {
		return err
	}
	if !old.stopped {
		old.stop(5 * time.Second)
	}
	p, err := startProcess(name, old.dir, old.bin, old.args, old.env)
	if err != nil {
		return err
	}
	e.mu.Lock()
	for i, q := range e.procs {
		if q == old {
			e.procs[i] = p
		}
	}
	e.mu.Unlock()
	if ready == nil {
		return nil
	}
	return p.waitFor(ctx, "ready after restart", ready)
}

// RedisReady is a readiness check for RestartComponent("redis", ...).
func (e *Env) RedisReady() func(context.Context) error {
	return redisPing(e.RedisAddr, e.auth.redisPassword())
}

func (e *Env) find(name string) (*process, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.procs) - 1; i >= 0; i-- {
		if e.procs[i].name == name {
			return e.procs[i], nil
		}
	}
	return nil, fmt.Errorf("no component %q in this environment", name)
}
