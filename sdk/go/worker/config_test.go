package worker

import (
	"strings"
	"testing"
	"time"
)

func TestIdentityFromEnv(t *testing.T) {
	full := map[string]string{
		EnvQWorkerName: "qw", EnvHostname: "qw-abc", EnvPodNamespace: "ns", EnvPodSpecHash: "h1", EnvPullingInterval: "2",
	}
	cases := []struct {
		name      string
		drop      string
		set       map[string]string
		wantErr   string
		want      time.Duration
		wantLeave bool
	}{
		{name: "all set", want: 2 * time.Second},
		{name: "fractional interval", set: map[string]string{EnvPullingInterval: "0.5"}, want: 500 * time.Millisecond},
		{name: "default interval", drop: EnvPullingInterval, want: 5 * time.Second},
		{name: "missing qworker", drop: EnvQWorkerName, wantErr: EnvQWorkerName},
		{name: "missing hash", drop: EnvPodSpecHash, wantErr: EnvPodSpecHash},
		{name: "bad interval", set: map[string]string{EnvPullingInterval: "soon"}, wantErr: EnvPullingInterval},
		{name: "zero interval", set: map[string]string{EnvPullingInterval: "0"}, wantErr: EnvPullingInterval},
		{name: "bad stats interval", set: map[string]string{"SWELL_STATS_INTERVAL": "-1"}, wantErr: "SWELL_STATS_INTERVAL"},
		{name: "leave when outdated", set: map[string]string{EnvLeaveWhenOutdated: "true"}, want: 2 * time.Second, wantLeave: true},
		{name: "bad leave when outdated", set: map[string]string{EnvLeaveWhenOutdated: "yes please"}, wantErr: EnvLeaveWhenOutdated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range full {
				env[k] = v
			}
			delete(env, c.drop)
			for k, v := range c.set {
				env[k] = v
			}
			id, err := IdentityFromEnv(func(k string) string { return env[k] })
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want it to name %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.QWorker != "qw" || id.Pod != "qw-abc" || id.Namespace != "ns" || id.PodSpecHash != "h1" || id.PullingInterval != c.want || id.LeaveWhenOutdated != c.wantLeave {
				t.Fatalf("identity %+v", id)
			}
		})
	}
}
