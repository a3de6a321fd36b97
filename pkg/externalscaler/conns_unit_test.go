package externalscaler

import (
	"context"
	"errors"
	"io"
	"testing"
)

// countingCloser counts its Close calls.
type countingCloser struct{ closes int }

func (c *countingCloser) Close() error { c.closes++; return nil }

// TestSharedConnsRefCounting: targets of one fingerprint share one dial;
// the client closes once, with the last release (a second release of the
// same holder changes nothing); a failed dial is not kept.
func TestSharedConnsRefCounting(t *testing.T) {
	ctx := context.Background()
	s := newSharedConns()
	dials := 0
	var made []*countingCloser
	dial := func(context.Context) (io.Closer, error) {
		dials++
		c := &countingCloser{}
		made = append(made, c)
		return c, nil
	}
	var releases []func() error
	for range 3 {
		_, release, err := s.acquire(ctx, "a", dial)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	if _, rel, err := s.acquire(ctx, "b", dial); err != nil {
		t.Fatal(err)
	} else {
		releases = append(releases, rel)
	}
	if dials != 2 || s.len() != 2 {
		t.Fatalf("3 targets on a and 1 on b: %d dials, %d clients; want 2 and 2", dials, s.len())
	}
	_ = releases[0]()
	_ = releases[0]()
	_ = releases[1]()
	if made[0].closes != 0 {
		t.Fatalf("client a closed while a target still holds it")
	}
	_ = releases[2]()
	if made[0].closes != 1 || s.len() != 1 {
		t.Fatalf("after the last release of a: %d closes, %d clients; want 1 and 1", made[0].closes, s.len())
	}

	broken := errors.New("refused")
	if _, _, err := s.acquire(ctx, "c", func(context.Context) (io.Closer, error) { return nil, broken }); !errors.Is(err, broken) {
		t.Fatalf("failed dial: %v, want %v", err, broken)
	}
	if s.len() != 1 {
		t.Fatalf("a failed dial is kept: %d clients, want 1", s.len())
	}
	if _, rel, err := s.acquire(ctx, "c", dial); err != nil || dials != 3 {
		t.Fatalf("acquire after a failed dial: %v, %d dials; want a new dial", err, dials)
	} else {
		_ = rel()
	}
	_ = releases[3]()
	if s.len() != 0 {
		t.Fatalf("%d clients left after every release, want 0", s.len())
	}
}
