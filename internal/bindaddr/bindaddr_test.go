package bindaddr

import "testing"

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"127.0.0.2:8080", true},
		{"[::1]:8080", true},
		{"localhost:5000", true},
		{"LOCALHOST:5000", true},
		{":8080", false},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"10.1.2.3:8080", false},
		{"swell.example:8080", false},
		{"garbage", false},
	} {
		if got := IsLoopback(tc.addr); got != tc.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

func TestDisabled(t *testing.T) {
	for addr, want := range map[string]bool{"": true, "0": true, ":0": false, "127.0.0.1:8080": false} {
		if got := Disabled(addr); got != want {
			t.Errorf("Disabled(%q) = %v, want %v", addr, got, want)
		}
	}
}
