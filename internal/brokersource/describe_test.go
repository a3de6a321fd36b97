package brokersource

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/swell-autoscaler/swell/pkg/egress"
)

// replyErr is a Redis error reply as go-redis returns it (redis.Error).
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

// notABroker answers every line it reads with first, standing in for an
// internal service at an address a ScalerConfig names.
func notABroker(t *testing.T, first string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := c.Write([]byte(first)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return lis.Addr().String()
}

// TestDescribe: errors that quote what a server answered lose the quote
// (keeping Swell's context before it) and say what kind of answer it was;
// errors that only say what failed pass unchanged.
func TestDescribe(t *testing.T) {
	const secretLine = "HTTP/1.1 200 OK internal-admin-token=abc123"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := notABroker(t, secretLine+"\r\n")
	rc := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DisableIdentity: true})
	t.Cleanup(func() { _ = rc.Close() })
	realInvalid := rc.Ping(ctx).Err()
	if realInvalid == nil {
		t.Fatal("go-redis accepted an HTTP answer")
	}
	refusedLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := refusedLis.Addr().String()
	_ = refusedLis.Close()
	_, connRefused := net.DialTimeout("tcp", closedAddr, time.Second)
	if connRefused == nil {
		t.Fatal("a closed port accepted")
	}
	refusal := &egress.RefusedError{Addr: netip.MustParseAddrPort("169.254.169.254:80"), Reason: "link-local", Flag: "--egress-allow"}

	cases := []struct {
		name        string
		err         error
		want        string // the whole message, when exact
		contains    []string
		notContains []string
	}{
		{name: "nil", err: nil, want: ""},
		{name: "go-redis invalid reply from an HTTP server", err: fmt.Errorf("ScalerConfig team/q: redis %s: ping: %w", addr, realInvalid),
			want: "ScalerConfig team/q: redis " + addr + ": ping: " + notRedis, notContains: []string{"HTTP", "abc123"}},
		{name: "go-redis can't parse", err: fmt.Errorf("redis x:6379: %w", errors.New(`redis: can't parse "SSH-2.0-OpenSSH_9.6"`)),
			want: "redis x:6379: " + notRedis, notContains: []string{"SSH"}},
		{name: "redis wrong password", err: fmt.Errorf("redis x:6379: auth: %w", replyErr("WRONGPASS invalid username-password pair or user is disabled.")),
			want: "redis x:6379: auth: authentication failed: the broker refused the credentials (Redis WRONGPASS)"},
		{name: "redis no auth", err: fmt.Errorf("redis x:6379: %w", replyErr("NOAUTH Authentication required.")),
			contains: []string{"authentication failed", "NOAUTH"}},
		{name: "redis other error reply keeps only its code", err: fmt.Errorf("redis x:6379: %w", replyErr("WRONGTYPE Operation against a key holding the wrong kind of value")),
			want: "redis x:6379: the broker answered with an error reply (Redis WRONGTYPE)"},
		{name: "error reply from a non-redis line", err: fmt.Errorf("redis x:6379: %w", replyErr("- internal secret page")),
			want: "redis x:6379: the broker answered with an error reply"},
		{name: "redis nil is not a reply", err: fmt.Errorf("redis x: %w", redis.Nil), want: "redis x: redis: nil"},
		{name: "unexpected reply shape", err: errors.New(`redis queue "q": unexpected reply [secret-value 3]`),
			want: `redis queue "q": the broker answered with an unexpected reply`, notContains: []string{"secret-value"}},
		{name: "kafka answered by HTTP", err: fmt.Errorf("kafka k:9092: %w", errors.New("invalid large response size 1213486160 > limit 104857600; the four size bytes are 'HTTP' in ascii")),
			want: "kafka k:9092: " + notKafka, notContains: []string{"1213486160"}},
		{name: "nats", err: fmt.Errorf("nats n:4222: %w", errors.New("nats: expected 'PONG', got 'HTTP/1.1 400'")), want: "nats n:4222: " + notNATS},
		{name: "amqp frame", err: fmt.Errorf("rabbitmq r:5672: %w", errors.New("Exception (501) Reason: \"frame could not be parsed\"")),
			want: "rabbitmq r:5672: " + notAMQP},
		{name: "connection refused kept", err: fmt.Errorf("redis %s: %w", closedAddr, connRefused), contains: []string{"connection refused", closedAddr}},
		{name: "timeout kept", err: fmt.Errorf("redis x:6379: ping: %w", context.DeadlineExceeded), want: "redis x:6379: ping: context deadline exceeded"},
		{name: "egress refusal kept", err: fmt.Errorf("redis: %w", refusal), contains: []string{"169.254.169.254:80", "--egress-allow"}},
		{name: "missing secret kept", err: errors.New(`Secret team/broker-password not found`), want: "Secret team/broker-password not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Describe(tc.err)
			if tc.want != "" || tc.err == nil {
				if got != tc.want {
					t.Errorf("Describe = %q, want %q", got, tc.want)
				}
			}
			for _, s := range tc.contains {
				if !strings.Contains(got, s) {
					t.Errorf("Describe = %q, want it to contain %q", got, s)
				}
			}
			for _, s := range append(tc.notContains, "abc123") {
				if strings.Contains(got, s) {
					t.Errorf("Describe = %q quotes %q", got, s)
				}
			}
		})
	}
}
