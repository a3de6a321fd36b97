package main

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/swell-autoscaler/swell/pkg/egress"
)

// TestExternalScalerEgressRefusesAPIServer: an operator who allows the
// service CIDR for in-cluster brokers must not open the Kubernetes API
// server's Service address with it; outside a cluster there is no API
// server entry and the allowed range is open.
func TestExternalScalerEgressRefusesAPIServer(t *testing.T) {
	inCluster := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	hostOnly := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
	v6 := map[string]string{"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"}
	cases := []struct {
		name    string
		env     map[string]string
		allow   []string
		dest    string
		refused bool
	}{
		{name: "service cidr allowed, apiserver refused", env: inCluster, allow: []string{"10.96.0.0/12"}, dest: "10.96.0.1:443", refused: true},
		{name: "service cidr allowed, broker reachable", env: inCluster, allow: []string{"10.96.0.0/12"}, dest: "10.96.0.20:6379"},
		{name: "apiserver host other port stays open under the allowed range", env: inCluster, allow: []string{"10.96.0.0/12"}, dest: "10.96.0.1:6379"},
		{name: "exact entry re-opens the apiserver", env: inCluster, allow: []string{"10.96.0.1:443"}, dest: "10.96.0.1:443"},
		{name: "port unset refuses every port", env: hostOnly, allow: []string{"10.96.0.0/12"}, dest: "10.96.0.1:6443", refused: true},
		{name: "ipv6 service address", env: v6, allow: []string{"fd00:10:96::/112"}, dest: "[fd00:10:96::1]:443", refused: true},
		{name: "outside a cluster the range is open", env: nil, allow: []string{"10.96.0.0/12"}, dest: "10.96.0.1:443"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := externalScalerOptions{egressAllow: tc.allow}
			p, err := o.egressPolicy(context.Background(), func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatalf("egressPolicy: %v", err)
			}
			err = p.Check("", netip.MustParseAddrPort(tc.dest))
			var refused *egress.RefusedError
			if got := errors.As(err, &refused); got != tc.refused {
				t.Fatalf("Check(%s) = %v, want refused=%v", tc.dest, err, tc.refused)
			}
		})
	}
}

// TestInClusterAPIServer: the entry is built from the pod environment the
// kubelet sets, with IPv6 hosts bracketed.
func TestInClusterAPIServer(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want []string
	}{
		{env: nil, want: nil},
		{env: map[string]string{"KUBERNETES_SERVICE_PORT": "443"}, want: nil},
		{env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, want: []string{"10.96.0.1"}},
		{env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}, want: []string{"10.96.0.1:443"}},
		{env: map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}, want: []string{"[fd00::1]:443"}},
	}
	for _, tc := range cases {
		got := inClusterAPIServer(func(k string) string { return tc.env[k] })
		if len(got) != len(tc.want) || (len(got) == 1 && got[0] != tc.want[0]) {
			t.Errorf("inClusterAPIServer(%v) = %q, want %q", tc.env, got, tc.want)
		}
	}
}
