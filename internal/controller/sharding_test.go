package controller

import (
	"strings"
	"testing"
)

func TestValidateRoles(t *testing.T) {
	for name, tc := range map[string]struct {
		o       Options
		wantErr string // "" = valid
	}{
		"everything":                   {o: Options{}},
		"leader-elected":               {o: Options{LeaderElect: true}},
		"shard of the queue kinds":     {o: Options{ShardRing: "swell", DisableNodePools: true}},
		"node pools only, leader":      {o: Options{NodePoolsOnly: true, LeaderElect: true}},
		"ring with node pools":         {o: Options{ShardRing: "swell"}, wantErr: "--node-pools=false"},
		"ring and leader election":     {o: Options{ShardRing: "swell", LeaderElect: true, DisableNodePools: true}, wantErr: "--leader-elect"},
		"node pools only in a ring":    {o: Options{ShardRing: "swell", NodePoolsOnly: true}, wantErr: "--node-pools-only excludes --shard-ring"},
		"node pools only and disabled": {o: Options{NodePoolsOnly: true, DisableNodePools: true}, wantErr: "nothing to run"},
	} {
		t.Run(name, func(t *testing.T) {
			err := validateRoles(tc.o)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}
