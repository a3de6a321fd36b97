package credbind

import (
	"reflect"
	"testing"
)

// TestAllowed: host:port entries match that port only, bare hosts any
// port; case, brackets and a trailing dot do not matter, names are not
// resolved.
func TestAllowed(t *testing.T) {
	cases := []struct {
		name    string
		allowed []string
		dest    string
		want    bool
	}{
		{name: "exact", allowed: []string{"redis.tenant.svc:6379"}, dest: "redis.tenant.svc:6379", want: true},
		{name: "other port", allowed: []string{"redis.tenant.svc:6379"}, dest: "redis.tenant.svc:6380", want: false},
		{name: "other host", allowed: []string{"redis.tenant.svc:6379"}, dest: "evil.example:6379", want: false},
		{name: "bare host any port", allowed: []string{"redis.tenant.svc"}, dest: "redis.tenant.svc:16379", want: true},
		{name: "bare host is not a suffix", allowed: []string{"tenant.svc"}, dest: "redis.tenant.svc:6379", want: false},
		{name: "case and trailing dot", allowed: []string{"Redis.Tenant.SVC.:6379"}, dest: "redis.tenant.svc:6379", want: true},
		{name: "second entry", allowed: []string{"a:1", "b:2"}, dest: "b:2", want: true},
		{name: "ipv6 with port", allowed: []string{"[fd00::1]:6379"}, dest: "[FD00::1]:6379", want: true},
		{name: "ipv6 bare", allowed: []string{"fd00::1"}, dest: "[fd00::1]:9092", want: true},
		{name: "ipv6 bracketed bare", allowed: []string{"[fd00::1]"}, dest: "[fd00::1]:9092", want: true},
		{name: "name is not its address", allowed: []string{"10.0.0.5:6379"}, dest: "redis:6379", want: false},
		{name: "empty list", allowed: nil, dest: "redis:6379", want: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Allowed(tc.allowed, tc.dest); got != tc.want {
				t.Errorf("Allowed(%q, %q) = %t, want %t", tc.allowed, tc.dest, got, tc.want)
			}
		})
	}
}

// TestParseList: entries are host or host:port with a real port, spaces
// and empty entries are ignored, the result is normalized.
func TestParseList(t *testing.T) {
	cases := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "redis.tenant.svc:6379", want: []string{"redis.tenant.svc:6379"}},
		{in: " Kafka-0.kafka:9092 , kafka-1.kafka:9092,", want: []string{"kafka-0.kafka:9092", "kafka-1.kafka:9092"}},
		{in: "rabbitmq.tenant.svc", want: []string{"rabbitmq.tenant.svc"}},
		{in: "[fd00::1]:6379,fd00::2", want: []string{"[fd00::1]:6379", "fd00::2"}},
		{in: "", wantErr: true},
		{in: " , ", wantErr: true},
		{in: "redis:", wantErr: true},
		{in: "redis:0", wantErr: true},
		{in: "redis:65536", wantErr: true},
		{in: "redis:port", wantErr: true},
		{in: ":6379", wantErr: true},
		{in: "http://redis:6379", wantErr: true},
		{in: "user@redis:6379", wantErr: true},
		{in: "a:b:c", wantErr: true},
	}
	for _, tc := range cases {
		got, err := ParseList(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseList(%q) error %v, want error %t", tc.in, err, tc.wantErr)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
