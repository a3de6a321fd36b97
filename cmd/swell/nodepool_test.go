package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// kubescalerConfig is kubescaler's example config with values filled in.
const kubescalerConfig = `cloud-provider: kwok
node-selector: "role=scalable"
minimum-node-pool-size: 2
maximum-node-pool-size: 4
server-pod-label-name: "session"
server-pod-label-value: "dedicated-server"
buffer-slot-size: 4
scale-loop-tick-sec: 1
server-cpu-resource-request: 1000
empty-node-expiration-sec: 120
`

// TestNodePoolFlagsAsKubescaler: every config key is also a --<key> flag,
// as in kubescaler, in either spelling pflag accepts and in any case; a
// flag given wins over the env and the file, a flag not given hides
// neither; a flag that is no key is refused by name; without --config,
// ./config.yaml is read when it exists, as kubescaler's viper does.
func TestNodePoolFlagsAsKubescaler(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("config.yaml", []byte(kubescalerConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	envVars := map[string]string{"MAXIMUM_NODE_POOL_SIZE": "7", "BUFFER_SLOT_SIZE": "5"}
	getenv := func(k string) string { return envVars[k] }

	load := func(t *testing.T, args ...string) (nodepool.Config, nodepool.Sources, error) {
		t.Helper()
		o := &nodePoolOptions{}
		if err := newNodePoolCmdWith(o).ParseFlags(args); err != nil {
			return nodepool.Config{}, nodepool.Sources{}, err
		}
		src := o.sources(getenv, fileExists)
		cfg, err := nodepool.LoadSources(src)
		return cfg, src, err
	}

	cfg, src, err := load(t, "--buffer-slot-size", "6", "--Empty-Node-Expiration-Sec=30", "--scale-loop-tick-sec=2.5")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if src.File != "config.yaml" {
		t.Errorf("file = %q, want kubescaler's default config.yaml", src.File)
	}
	if cfg.Buffer.Absolute != 6 || cfg.EmptyNodeExpiration != 30*time.Second || cfg.Tick != 2500*time.Millisecond {
		t.Errorf("flags not applied: buffer %+v expiry %s tick %s", cfg.Buffer, cfg.EmptyNodeExpiration, cfg.Tick)
	}
	if cfg.MaxNodes != 7 || cfg.MinNodes != 2 || cfg.ServerPodLabelValue != "dedicated-server" {
		t.Errorf("env/file under the flags lost: max %d min %d label %q", cfg.MaxNodes, cfg.MinNodes, cfg.ServerPodLabelValue)
	}
	if len(src.Flags) != 3 {
		t.Errorf("flags passed on = %v, want only the 3 given", src.Flags)
	}

	// No flags: env over file.
	if cfg, _, err = load(t); err != nil || cfg.Buffer.Absolute != 5 || cfg.Tick != time.Second {
		t.Errorf("no flags: buffer %+v tick %s err %v", cfg.Buffer, cfg.Tick, err)
	}

	// --config names another file; ./config.yaml is then not read.
	other := dir + "/other.yaml"
	if err := os.WriteFile(other, []byte(strings.Replace(kubescalerConfig, "minimum-node-pool-size: 2", "minimum-node-pool-size: 3", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, src, err = load(t, "--config", other); err != nil || cfg.MinNodes != 3 || src.File != other {
		t.Errorf("--config: min %d file %q err %v", cfg.MinNodes, src.File, err)
	}

	// A flag that is no key is refused, naming it.
	if _, _, err = load(t, "--buffer-slots=3"); err == nil || !strings.Contains(err.Error(), "buffer-slots") {
		t.Errorf("unknown flag: err %v, want it named", err)
	}
	// A bad value names the key.
	if _, _, err = load(t, "--minimum-node-pool-size", "two"); err == nil || !strings.Contains(err.Error(), "minimum-node-pool-size") {
		t.Errorf("bad value: err %v", err)
	}
}

// TestNodePoolNoDefaultFile: without --config and without ./config.yaml,
// the env and flags alone configure the pool.
func TestNodePoolNoDefaultFile(t *testing.T) {
	t.Chdir(t.TempDir())
	o := &nodePoolOptions{}
	if err := newNodePoolCmdWith(o).ParseFlags([]string{"--cloud-provider=kwok", "--node-selector=pool=a", "--server-pod-label-name=app", "--server-cpu-resource-request=500m"}); err != nil {
		t.Fatal(err)
	}
	src := o.sources(func(string) string { return "" }, fileExists)
	cfg, err := nodepool.LoadSources(src)
	if err != nil || src.File != "" || cfg.Slot["cpu"] != 500 {
		t.Fatalf("flags only: file %q cfg %+v err %v", src.File, cfg, err)
	}
}
