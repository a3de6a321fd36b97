package nodepool

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/policy"
)

// kubescalerExample is kubescaler's config.yaml.example with values filled in.
const kubescalerExample = `cloud-provider: "digitalocean"
cloud-provider-token: "dop_v1_secret"
cluster-name: "games"
node-pool-name: "servers"
node-selector: "role=scalable"
cluster-kube-config-master-url:
cluster-kube-config-path:
minimum-node-pool-size: 2
maximum-node-pool-size: 4
server-pod-label-name: "session"
server-pod-label-value: "dedicated-server"
buffer-slot-size: 4
scale-loop-tick-sec: 1
server-cpu-resource-request: 1000
empty-node-expiration-sec: 120
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLoadKubescalerFile(t *testing.T) {
	c, err := Load(writeConfig(t, kubescalerExample), env(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.CloudProvider != ProviderDigitalOcean || c.ClusterName != "games" || c.NodePoolName != "servers" {
		t.Errorf("provider fields = %q %q %q", c.CloudProvider, c.ClusterName, c.NodePoolName)
	}
	if c.NodeSelector.String() != "role=scalable" || c.MinNodes != 2 || c.MaxNodes != 4 {
		t.Errorf("pool fields = %s %d %d", c.NodeSelector, c.MinNodes, c.MaxNodes)
	}
	if c.Buffer != (policy.Buffer{Absolute: 4}) || c.Tick != time.Second || c.EmptyNodeExpiration != 2*time.Minute {
		t.Errorf("timing fields = %+v %s %s", c.Buffer, c.Tick, c.EmptyNodeExpiration)
	}
	if c.Slot["cpu"] != 1000 || c.ServerPodSelector().String() != "session=dedicated-server" {
		t.Errorf("slot = %v, selector %s", c.Slot, c.ServerPodSelector())
	}
	if c.CloudProviderToken.Reveal() != "dop_v1_secret" {
		t.Errorf("token not read")
	}
}

func TestLoadEnvOverridesFile(t *testing.T) {
	c, err := Load(writeConfig(t, kubescalerExample), env(map[string]string{
		"BUFFER_SLOT_SIZE":            "10%",
		"MAXIMUM_NODE_POOL_SIZE":      "9",
		"SERVER_CPU_RESOURCE_REQUEST": "1500m",
		"EMPTY_NODE_EXPIRATION_SEC":   "2.5",
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Buffer != (policy.Buffer{Percent: 10}) || c.MaxNodes != 9 || c.Slot["cpu"] != 1500 || c.EmptyNodeExpiration != 2500*time.Millisecond {
		t.Fatalf("env not applied: %+v %d %v %s", c.Buffer, c.MaxNodes, c.Slot, c.EmptyNodeExpiration)
	}
}

func TestLoadEnvOnly(t *testing.T) {
	c, err := Load("", env(map[string]string{
		"CLOUD_PROVIDER":                 "kwok",
		"NODE_SELECTOR":                  "pool=a",
		"SERVER_POD_LABEL_NAME":          "app",
		"SERVER_POD_LABEL_VALUE":         "game",
		"SERVER_MEMORY_RESOURCE_REQUEST": "2Gi",
		"SERVER_RESOURCE_REQUESTS":       "nvidia.com/gpu=1",
		"BUFFER_SLOT_PERCENT":            "25",
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := policy.Resources{"memory": 2 << 30, "nvidia.com/gpu": 1}
	if fmt.Sprint(c.Slot) != fmt.Sprint(want) {
		t.Errorf("slot = %v, want %v", c.Slot, want)
	}
	if c.Buffer != (policy.Buffer{Absolute: 4, Percent: 25}) || c.MinNodes != 2 || c.ResizeCooldown != 0 {
		t.Errorf("defaults not applied: %+v %d %s", c.Buffer, c.MinNodes, c.ResizeCooldown)
	}
	if c.KwokNode["cpu"] != 4000 || c.KwokNodeRaw["memory"] != "16Gi" {
		t.Errorf("kwok node = %v %v", c.KwokNode, c.KwokNodeRaw)
	}
}

func TestLoadErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		want []string
	}{
		{"unknown key", kubescalerExample + "buffer-slots: 3\n", nil, []string{`unknown key "buffer-slots"`}},
		{"nested value", kubescalerExample + "server-resource-requests: {gpu: 1}\n", nil, []string{"server-resource-requests", "single value"}},
		{"not a number", kubescalerExample, map[string]string{"MINIMUM_NODE_POOL_SIZE": "two"}, []string{"minimum-node-pool-size (env MINIMUM_NODE_POOL_SIZE)", `"two"`}},
		{"min above max", kubescalerExample, map[string]string{"MINIMUM_NODE_POOL_SIZE": "5"}, []string{"maximum-node-pool-size", ">= minimum-node-pool-size (5)"}},
		{"bad buffer", kubescalerExample, map[string]string{"BUFFER_SLOT_SIZE": "lots"}, []string{"buffer-slot-size", "percentage"}},
		{"negative buffer", kubescalerExample, map[string]string{"BUFFER_SLOT_SIZE": "-1"}, []string{"buffer-slot-size"}},
		{"bad cpu", kubescalerExample, map[string]string{"SERVER_CPU_RESOURCE_REQUEST": "fast"}, []string{"server-cpu-resource-request", "millicores"}},
		{"zero tick", kubescalerExample, map[string]string{"SCALE_LOOP_TICK_SEC": "0"}, []string{"scale-loop-tick-sec", "> 0"}},
		{"bad provider", kubescalerExample, map[string]string{"CLOUD_PROVIDER": "aws"}, []string{"cloud-provider", `"aws"`, "digitalocean or kwok"}},
		{"bad selector", kubescalerExample, map[string]string{"NODE_SELECTOR": "role in (a"}, []string{"node-selector"}},
		{"bad pod label", kubescalerExample, map[string]string{"SERVER_POD_LABEL_NAME": "not a label"}, []string{"server-pod-label-name"}},
		{"missing everything", "", nil, []string{"node-selector", "server-pod-label-name", "server-cpu-resource-request", "cloud-provider-token", "cluster-name", "node-pool-name"}},
		{"kwok needs an equality selector", "", map[string]string{"CLOUD_PROVIDER": "kwok", "NODE_SELECTOR": "role!=x", "SERVER_POD_LABEL_NAME": "a", "SERVER_CPU_RESOURCE_REQUEST": "1"}, []string{"node-selector", "key=value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.file), env(tt.env))
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "dop_v1_secret") {
				t.Errorf("error leaks the token: %q", err)
			}
		})
	}
}

func TestTokenFileAndRedaction(t *testing.T) {
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte("dop_v1_fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(kubescalerExample, `cloud-provider-token: "dop_v1_secret"`, "cloud-provider-token-file: "+tokFile, 1)
	c, err := Load(writeConfig(t, body), env(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.CloudProviderToken.Reveal() != "dop_v1_fromfile" {
		t.Fatalf("token from file = %q", c.CloudProviderToken.Reveal())
	}
	js, _ := json.Marshal(c)
	for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), string(js)} {
		if strings.Contains(s, "dop_v1") {
			t.Fatalf("config output leaks the token: %s", s)
		}
	}
	if _, err := Load(writeConfig(t, body+"cloud-provider-token: x\n"), env(nil)); err == nil {
		t.Fatal("token and token file together were accepted")
	}
}

// TestLoadMixedCaseKeys: kubescaler (viper) matches keys without regard to
// case, so a file written for it with capitals means the same to Swell;
// a key that matches nothing is still refused by name, and two spellings
// of one key are an error rather than a silent pick.
func TestLoadMixedCaseKeys(t *testing.T) {
	body := strings.NewReplacer(
		"buffer-slot-size: 4", "Buffer-Slot-Size: 6",
		"minimum-node-pool-size: 2", "MINIMUM-NODE-POOL-SIZE: 1",
		"node-selector:", "Node-Selector:",
	).Replace(kubescalerExample)
	c, err := Load(writeConfig(t, body), env(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Buffer.Absolute != 6 || c.MinNodes != 1 || c.NodeSelector.String() != "role=scalable" {
		t.Fatalf("mixed-case keys not read: buffer %+v min %d selector %s", c.Buffer, c.MinNodes, c.NodeSelector)
	}
	keys, err := ReadKeys(writeConfig(t, body))
	if err != nil || keys[KeyBufferSlotSize] != "6" || keys["Buffer-Slot-Size"] != "" {
		t.Fatalf("ReadKeys = %v, %v; want canonical lower-case keys", keys, err)
	}

	for _, tc := range []struct{ name, extra, want string }{
		{"unknown key keeps its spelling", "Buffer-Slots: 3\n", `unknown key "Buffer-Slots"`},
		{"two spellings of one key", "BUFFER-SLOT-SIZE: 5\n", `keys "BUFFER-SLOT-SIZE" and "Buffer-Slot-Size" both set buffer-slot-size`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, body+tc.extra), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestLoadSourcesPrecedence: kubescaler binds every key as a --<key> flag
// through viper, whose order is flag given > environment > file >
// default. Each layer is checked against the ones below it.
func TestLoadSourcesPrecedence(t *testing.T) {
	file := writeConfig(t, kubescalerExample) // buffer 4, max 4, expiry 120, tick 1
	envVars := map[string]string{"BUFFER_SLOT_SIZE": "5", "MAXIMUM_NODE_POOL_SIZE": "7"}
	flags := map[string]string{"buffer-slot-size": "6", "Empty-Node-Expiration-Sec": "30", "resize-cooldown-sec": "2"}
	c, err := LoadSources(Sources{File: file, Flags: flags, Getenv: env(envVars)})
	if err != nil {
		t.Fatalf("LoadSources: %v", err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"flag over env and file (buffer-slot-size)", c.Buffer.Absolute, int64(6)},
		{"env over file (maximum-node-pool-size)", c.MaxNodes, 7},
		{"mixed-case flag over file (empty-node-expiration-sec)", c.EmptyNodeExpiration, 30 * time.Second},
		{"file over default (scale-loop-tick-sec)", c.Tick, time.Second},
		{"flag over default (resize-cooldown-sec)", c.ResizeCooldown, 2 * time.Second},
		{"default (kwok-node-pods)", c.KwokNode["pods"], int64(110)},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %v, want %v", ch.what, ch.got, ch.want)
		}
	}

	// Flags alone configure a pool, as kubescaler's do.
	c, err = LoadSources(Sources{Flags: map[string]string{
		"cloud-provider": "kwok", "node-selector": "pool=a", "server-pod-label-name": "app", "server-cpu-resource-request": "500m",
	}})
	if err != nil || c.CloudProvider != ProviderKwok || c.Slot["cpu"] != 500 {
		t.Fatalf("flags only: %+v, %v", c, err)
	}

	// A flag that is no key is refused by name; a bad flag value names
	// the key like any other source.
	_, err = LoadSources(Sources{File: file, Flags: map[string]string{"buffer-slots": "3"}})
	if err == nil || !strings.Contains(err.Error(), `--buffer-slots: unknown key "buffer-slots"`) {
		t.Fatalf("unknown flag key: %v", err)
	}
	_, err = LoadSources(Sources{File: file, Flags: map[string]string{"minimum-node-pool-size": "two"}})
	if err == nil || !strings.Contains(err.Error(), "minimum-node-pool-size") || !strings.Contains(err.Error(), `"two"`) {
		t.Fatalf("bad flag value: %v", err)
	}
}
