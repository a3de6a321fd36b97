package controller

import (
	"context"
	"net/netip"
	"testing"

	"github.com/swell-autoscaler/swell/pkg/egress"
)

// TestBrokerEgress: ScalerConfig brokers reach the private ranges unless
// strict; loopback, link-local (cloud metadata) and the API server stay
// refused either way, and the allow list re-opens a private address under
// strict.
func TestBrokerEgress(t *testing.T) {
	base := egress.Config{APIServer: []string{"https://10.96.0.1:443"}, Allow: []string{"10.20.0.0/16"}}
	cases := []struct {
		dest    string
		strict  bool
		refused bool
	}{
		{dest: "10.0.0.5:6379", strict: false, refused: false},
		{dest: "10.0.0.5:6379", strict: true, refused: true},
		{dest: "192.168.1.10:5672", strict: true, refused: true},
		{dest: "10.20.3.4:9092", strict: true, refused: false},
		{dest: "169.254.169.254:80", strict: false, refused: true},
		{dest: "127.0.0.1:6379", strict: false, refused: true},
		{dest: "10.96.0.1:443", strict: false, refused: true},
		{dest: "[fd00:ec2::254]:80", strict: false, refused: true},
		{dest: "203.0.113.7:6379", strict: true, refused: false},
	}
	for _, tc := range cases {
		p, err := egress.New(context.Background(), brokerEgress(base, tc.strict))
		if err != nil {
			t.Fatal(err)
		}
		err = p.Check("", netip.MustParseAddrPort(tc.dest))
		if (err != nil) != tc.refused {
			t.Errorf("strict=%t: Check(%s) = %v, want refused=%t", tc.strict, tc.dest, err, tc.refused)
		}
	}
	if base.AllowPrivate {
		t.Error("brokerEgress changed the http methods' configuration")
	}
}
