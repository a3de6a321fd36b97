package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Duration is a time.Duration that reads from YAML/JSON either as a Go
// duration string ("90s", "1h30m") or as a number of seconds, so scenario
// files stay readable.
type Duration time.Duration

// UnmarshalJSON accepts "1m30s" or 90.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w (want e.g. \"90s\" or a number of seconds)", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration %s: want a string like \"90s\" or a number of seconds", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Seconds is d in (simulated) seconds.
func (d Duration) Seconds() float64 { return time.Duration(d).Seconds() }

// Scenario is one reproducible experiment: a workload, a worker model and
// the settings of each policy under test.
type Scenario struct {
	// Name labels the scenario in reports; defaults to the file name.
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Seed makes the workload reproducible; the --seed flag overrides it.
	Seed     uint64   `json:"seed"`
	Duration Duration `json:"duration"`
	// SampleEvery is the time-series resolution of the plots (default 10s).
	SampleEvery Duration     `json:"sampleEvery,omitempty"`
	Workload    Workload     `json:"workload"`
	Workers     Workers      `json:"workers"`
	Nodes       *Nodes       `json:"nodes,omitempty"`
	Policies    PolicyConfig `json:"policies,omitempty"`

	// dir is where the scenario file lives; trace paths are relative to it.
	dir string
}

// Workers is the worker pool model shared by all policies.
type Workers struct {
	// Concurrency is how many tasks one pod runs at once (default 1).
	Concurrency int `json:"concurrency,omitempty"`
	// StartLatency is create-to-ready: schedule, image pull, start, probes.
	StartLatency Duration `json:"startLatency,omitempty"`
	MinReplicas  int32    `json:"minReplicas"`
	MaxReplicas  int32    `json:"maxReplicas"`
}

// Nodes adds node provisioning: pods wait for a node with room, and a new
// node takes ProvisionLatency to join. Omit it to assume room is always there.
type Nodes struct {
	PodsPerNode      int      `json:"podsPerNode"`
	ProvisionLatency Duration `json:"provisionLatency"`
	// IdleTimeout is how long an empty node lives before it is removed
	// (default 10m, like the cluster autoscaler's scale-down-unneeded-time).
	IdleTimeout Duration `json:"idleTimeout,omitempty"`
	// Warm nodes exist from the start and are never removed.
	Warm int `json:"warm,omitempty"`
}

// PolicyConfig holds each policy's settings; zero values mean defaults.
type PolicyConfig struct {
	Swell     SwellConfig     `json:"swell,omitempty"`
	SwellWait SwellWaitConfig `json:"swell-wait,omitempty"`
	Keda      KedaConfig      `json:"keda,omitempty"`
	HPACPU    HPACPUConfig    `json:"hpa-cpu,omitempty"`
}

// LoadScenario reads a YAML or JSON scenario file and validates it.
func LoadScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	var s Scenario
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	s.dir = filepath.Dir(path)
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	return &s, nil
}

// LoadScenarios loads every path; a directory stands for all *.yaml, *.yml
// and *.json files in it, in name order.
func LoadScenarios(paths []string) ([]*Scenario, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("scenario path: %w", err)
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("scenario directory: %w", err)
		}
		var found []string
		for _, e := range entries {
			switch filepath.Ext(e.Name()) {
			case ".yaml", ".yml", ".json":
				found = append(found, filepath.Join(p, e.Name()))
			}
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	if len(files) == 0 {
		return nil, errors.New("no scenario files given (want --scenario FILE or a directory of .yaml files)")
	}
	out := make([]*Scenario, 0, len(files))
	for _, f := range files {
		s, err := LoadScenario(f)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Validate checks the scenario and fills defaults, naming any bad field.
func (s *Scenario) Validate() error {
	if s.Duration <= 0 {
		return fmt.Errorf("duration %v: must be > 0", time.Duration(s.Duration))
	}
	if s.SampleEvery <= 0 {
		s.SampleEvery = Duration(10 * time.Second)
	}
	w := &s.Workers
	if w.Concurrency == 0 {
		w.Concurrency = 1
	}
	switch {
	case w.Concurrency < 0:
		return fmt.Errorf("workers.concurrency %d: must be >= 1", w.Concurrency)
	case w.StartLatency < 0:
		return fmt.Errorf("workers.startLatency %v: must be >= 0", time.Duration(w.StartLatency))
	case w.MinReplicas < 0 || w.MaxReplicas < 1 || w.MinReplicas > w.MaxReplicas:
		return fmt.Errorf("workers.minReplicas %d / maxReplicas %d: want 0 <= min <= max and max >= 1", w.MinReplicas, w.MaxReplicas)
	}
	if n := s.Nodes; n != nil {
		if n.PodsPerNode < 1 || n.ProvisionLatency < 0 || n.Warm < 0 {
			return fmt.Errorf("nodes %+v: podsPerNode must be >= 1, provisionLatency and warm >= 0", *n)
		}
		if n.IdleTimeout <= 0 {
			n.IdleTimeout = Duration(10 * time.Minute)
		}
	}
	if err := s.Workload.validate(); err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	return s.Policies.validate()
}
