package nodepool

import (
	"strings"
	"testing"
)

func TestCapacityBufferKeys(t *testing.T) {
	base := func() map[string]string {
		return map[string]string{
			KeyCloudProvider: ProviderNone, KeyNodeSelector: "role=servers", KeyPodLabelName: "app",
			KeyPodLabelValue: "gs", KeyServerCPURequest: "1000",
		}
	}
	for _, tc := range []struct {
		name string
		set  map[string]string
		want string
	}{
		{"none publishes the buffer", map[string]string{KeyCapacityBuffer: "games/servers"}, ""},
		{"bare name is in default", map[string]string{KeyCapacityBuffer: "servers"}, ""},
		{"none without a buffer does nothing", map[string]string{}, KeyCapacityBuffer + " (env CAPACITY_BUFFER): is required for cloud-provider none"},
		{"bad name", map[string]string{KeyCapacityBuffer: "Games/servers"}, KeyCapacityBuffer + " (env CAPACITY_BUFFER): \"Games/servers\""},
		{"set-based selector cannot be a nodeSelector", map[string]string{KeyCapacityBuffer: "games/servers", KeyNodeSelector: "role in (a,b)"}, KeyNodeSelector + " (env NODE_SELECTOR): with capacity-buffer"},
		{"kwok pool may publish too", map[string]string{KeyCloudProvider: ProviderKwok, KeyCapacityBuffer: "games/servers"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := base()
			for k, v := range tc.set {
				keys[k] = v
			}
			cfg, err := FromKeys(keys)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("FromKeys: %v", err)
				}
				if cfg.CapacityBuffer != keys[KeyCapacityBuffer] {
					t.Errorf("CapacityBuffer %q", cfg.CapacityBuffer)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
