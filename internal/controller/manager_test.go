package controller

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
)

func TestMetricsOptionsFilterOffLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		filtered bool
	}{
		{"127.0.0.1:8080", false},
		{"[::1]:8080", false},
		{"0", false},
		{":8080", true},
		{"0.0.0.0:8443", true},
		{"10.0.0.7:8080", true},
	} {
		m := metricsOptions(Options{MetricsAddr: tc.addr})
		if got := m.FilterProvider != nil; got != tc.filtered {
			t.Errorf("%s: authn/authz filter %v, want %v", tc.addr, got, tc.filtered)
		}
		if m.BindAddress != tc.addr {
			t.Errorf("%s: bind address %q", tc.addr, m.BindAddress)
		}
	}
}

func TestValidateElectionTimings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"defaults", Options{LeaderElect: true}, ""},
		{"off ignores timings", Options{LeaseDuration: time.Second, RenewDeadline: 5 * time.Second}, ""},
		{"short e2e timings", Options{LeaderElect: true, LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond}, ""},
		{"lease not longer than renew", Options{LeaderElect: true, LeaseDuration: 10 * time.Second, RenewDeadline: 10 * time.Second}, "--leader-elect-lease-duration"},
		{"renew too close to retry", Options{LeaderElect: true, RenewDeadline: 2 * time.Second, RetryPeriod: 2 * time.Second}, "--leader-elect-renew-deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.withDefaults().validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}

// termManager is one term's manager: Start returns err (or waits for ctx
// when err is nil).
type termManager struct {
	ctrl.Manager
	err error
}

func (m termManager) Start(ctx context.Context) error {
	if m.err == nil {
		<-ctx.Done()
	}
	return m.err
}

func TestCampaignerStartsANewTermAfterALostLease(t *testing.T) {
	for _, tc := range []struct {
		name      string
		terms     []error // what each term's Start returns; nil waits for ctx
		buildErrs int     // failed builds before each later term
		wantTerms int
		wantErr   string
	}{
		{"lost twice, then runs until stopped", []error{errors.New(errLeaderElectionLost), errors.New(errLeaderElectionLost), nil}, 0, 3, ""},
		{"another error ends the process", []error{errors.New("cache sync timeout")}, 0, 1, "cache sync timeout"},
		{"builds retried while the API is away", []error{errors.New(errLeaderElectionLost), nil}, 2, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			built, failed := 0, 0
			c := &campaigner{log: logr.Discard(), retry: time.Millisecond, build: func(context.Context) (ctrl.Manager, error) {
				if built > 0 && failed < tc.buildErrs*built {
					failed++
					return nil, errors.New("discovery: connection refused")
				}
				err := tc.terms[built]
				built++
				if err == nil {
					go func() { time.Sleep(10 * time.Millisecond); cancel() }()
				}
				return termManager{err: err}, nil
			}}
			if err := c.newTerm(ctx); err != nil {
				t.Fatal(err)
			}
			err := c.Start(ctx)
			if built != tc.wantTerms {
				t.Errorf("%d terms, want %d", built, tc.wantTerms)
			}
			if failed != tc.buildErrs*(tc.wantTerms-1) {
				t.Errorf("%d failed builds, want %d", failed, tc.buildErrs*(tc.wantTerms-1))
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Start = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
