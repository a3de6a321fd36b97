package controller

import (
	"strings"
	"testing"
	"time"
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
