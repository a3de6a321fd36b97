package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Task is one unit of work: when it is enqueued and how long a worker
// needs for it, both in simulated seconds.
type Task struct {
	Arrival float64
	Service float64
}

// Workload describes arrivals. Components add up: a base Poisson rate, a
// diurnal wave, spikes, heavy-tailed bursts and a CSV trace can be combined.
type Workload struct {
	// Rate is a steady Poisson arrival rate in tasks per second.
	Rate    float64  `json:"rate,omitempty"`
	Diurnal *Diurnal `json:"diurnal,omitempty"`
	Spikes  []Spike  `json:"spikes,omitempty"`
	Bursts  *Bursts  `json:"bursts,omitempty"`
	Trace   *Trace   `json:"trace,omitempty"`
	Service Service  `json:"service"`
}

// Diurnal is a sinusoidal daily wave between TroughRate and PeakRate tasks/s,
// starting at the trough (midnight) and peaking half a period later.
type Diurnal struct {
	Period     Duration `json:"period"`
	PeakRate   float64  `json:"peakRate"`
	TroughRate float64  `json:"troughRate"`
}

// Spike adds Rate tasks/s from At for Duration.
type Spike struct {
	At       Duration `json:"at"`
	Duration Duration `json:"duration"`
	Rate     float64  `json:"rate"`
}

// Bursts are batches arriving as a Poisson process (Rate batches/s), each
// of a Pareto-distributed size (shape Alpha, minimum MinSize, capped at
// MaxSize): most batches are small, a few are huge.
type Bursts struct {
	Rate    float64 `json:"rate"`
	Alpha   float64 `json:"alpha"`
	MinSize float64 `json:"minSize"`
	MaxSize float64 `json:"maxSize,omitempty"`
}

// Trace replays a CSV file of arrivals: timestamp, tasks[, service seconds].
// Timestamps are seconds from the start or RFC 3339 times (relative to the
// first row). A header row is skipped.
type Trace struct {
	File string `json:"file"`
}

// Service is the service-time distribution of a task.
type Service struct {
	// Dist is exponential, constant or lognormal (default lognormal).
	Dist string   `json:"dist,omitempty"`
	Mean Duration `json:"mean"`
	// CV is the coefficient of variation for lognormal (default 1).
	CV float64 `json:"cv,omitempty"`
}

func (w *Workload) validate() error {
	if w.Rate < 0 || math.IsNaN(w.Rate) {
		return fmt.Errorf("rate %v: must be >= 0", w.Rate)
	}
	if d := w.Diurnal; d != nil && (d.Period <= 0 || d.PeakRate < d.TroughRate || d.TroughRate < 0) {
		return fmt.Errorf("diurnal %+v: want period > 0 and 0 <= troughRate <= peakRate", *d)
	}
	for i, s := range w.Spikes {
		if s.Duration <= 0 || s.Rate < 0 || s.At < 0 {
			return fmt.Errorf("spikes[%d] %+v: want at >= 0, duration > 0, rate >= 0", i, s)
		}
	}
	if b := w.Bursts; b != nil && (b.Rate <= 0 || b.Alpha <= 0 || b.MinSize < 1 || (b.MaxSize != 0 && b.MaxSize < b.MinSize)) {
		return fmt.Errorf("bursts %+v: want rate > 0, alpha > 0, minSize >= 1, maxSize 0 or >= minSize", *b)
	}
	if w.Service.Dist == "" {
		w.Service.Dist = "lognormal"
	}
	if w.Service.CV == 0 {
		w.Service.CV = 1
	}
	switch w.Service.Dist {
	case "exponential", "constant", "lognormal":
	default:
		return fmt.Errorf("service.dist %q: want exponential, constant or lognormal", w.Service.Dist)
	}
	if w.Service.Mean <= 0 || w.Service.CV < 0 {
		return fmt.Errorf("service mean %v cv %v: want mean > 0 and cv >= 0", time.Duration(w.Service.Mean), w.Service.CV)
	}
	if w.Rate == 0 && w.Diurnal == nil && len(w.Spikes) == 0 && w.Bursts == nil && w.Trace == nil {
		return errors.New("no arrivals: set rate, diurnal, spikes, bursts or trace")
	}
	return nil
}

// rate is the instantaneous Poisson rate at t (without bursts and trace).
func (w *Workload) rate(t float64) float64 {
	r := w.Rate
	if d := w.Diurnal; d != nil {
		phase := 2 * math.Pi * t / d.Period.Seconds()
		r += d.TroughRate + (d.PeakRate-d.TroughRate)*(1-math.Cos(phase))/2
	}
	for _, s := range w.Spikes {
		if t >= s.At.Seconds() && t < s.At.Seconds()+s.Duration.Seconds() {
			r += s.Rate
		}
	}
	return r
}

// peakRate bounds rate(t) for thinning.
func (w *Workload) peakRate() float64 {
	r := w.Rate
	if d := w.Diurnal; d != nil {
		r += d.PeakRate
	}
	for _, s := range w.Spikes {
		r += s.Rate
	}
	return r
}

// newRand returns a PCG generator for one stream of one seed, so adding a
// workload component never shifts the draws of another.
func newRand(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x5357454c4c00+stream))
}

// Generate draws the task list for a scenario, sorted by arrival.
func Generate(s *Scenario, seed uint64) ([]Task, error) {
	horizon := s.Duration.Seconds()
	w := &s.Workload
	svc := newRand(seed, 1)
	tasks := poissonArrivals(w, horizon, newRand(seed, 2))
	if w.Bursts != nil {
		tasks = append(tasks, burstArrivals(w.Bursts, horizon, newRand(seed, 3))...)
	}
	for i := range tasks {
		tasks[i].Service = w.Service.draw(svc)
	}
	if w.Trace != nil {
		traced, err := readTrace(filepath.Join(s.dir, w.Trace.File), horizon, w.Service, newRand(seed, 4))
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, traced...)
	}
	sort.SliceStable(tasks, func(i, j int) bool { return tasks[i].Arrival < tasks[j].Arrival })
	return tasks, nil
}

// poissonArrivals draws a non-homogeneous Poisson process by thinning.
func poissonArrivals(w *Workload, horizon float64, r *rand.Rand) []Task {
	peak := w.peakRate()
	if peak <= 0 {
		return nil
	}
	tasks := make([]Task, 0, int(peak*horizon/2)+16)
	for t := r.ExpFloat64() / peak; t < horizon; t += r.ExpFloat64() / peak {
		if r.Float64()*peak <= w.rate(t) {
			tasks = append(tasks, Task{Arrival: t})
		}
	}
	return tasks
}

func burstArrivals(b *Bursts, horizon float64, r *rand.Rand) []Task {
	var tasks []Task
	for t := r.ExpFloat64() / b.Rate; t < horizon; t += r.ExpFloat64() / b.Rate {
		// Pareto by inversion: xm / U^(1/alpha).
		size := b.MinSize / math.Pow(1-r.Float64(), 1/b.Alpha)
		if b.MaxSize > 0 {
			size = min(size, b.MaxSize)
		}
		for range int(size) {
			tasks = append(tasks, Task{Arrival: t})
		}
	}
	return tasks
}

// draw returns one service time in seconds.
func (s Service) draw(r *rand.Rand) float64 {
	mean := s.Mean.Seconds()
	switch s.Dist {
	case "constant":
		return mean
	case "exponential":
		return r.ExpFloat64() * mean
	}
	sigma2 := math.Log(1 + s.CV*s.CV)
	mu := math.Log(mean) - sigma2/2
	return math.Exp(mu + math.Sqrt(sigma2)*r.NormFloat64())
}

// readTrace loads a CSV trace. Rows after the horizon are dropped.
func readTrace(path string, horizon float64, svc Service, r *rand.Rand) ([]Task, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	defer f.Close()
	return parseTrace(f, path, horizon, svc, r)
}

func parseTrace(in io.Reader, name string, horizon float64, svc Service, r *rand.Rand) ([]Task, error) {
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	var tasks []Task
	var origin *time.Time
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return tasks, nil
		}
		if err != nil {
			return nil, fmt.Errorf("trace %s: %w", name, err)
		}
		at, err := traceTime(strings.TrimSpace(rec[0]), &origin)
		if err != nil {
			if line == 1 {
				continue // header
			}
			return nil, fmt.Errorf("trace %s line %d: timestamp %q: want seconds or RFC 3339", name, line, rec[0])
		}
		row, err := traceRow(rec, at, svc, r)
		if err != nil {
			return nil, fmt.Errorf("trace %s line %d: %w", name, line, err)
		}
		if at < horizon {
			tasks = append(tasks, row...)
		}
	}
}

func traceTime(field string, origin **time.Time) (float64, error) {
	if secs, err := strconv.ParseFloat(field, 64); err == nil && secs >= 0 {
		return secs, nil
	}
	ts, err := time.Parse(time.RFC3339, field)
	if err != nil {
		return 0, err
	}
	if *origin == nil {
		*origin = &ts
	}
	return ts.Sub(**origin).Seconds(), nil
}

func traceRow(rec []string, at float64, svc Service, r *rand.Rand) ([]Task, error) {
	if len(rec) < 2 {
		return nil, errors.New("want timestamp,tasks[,service seconds]")
	}
	n, err := strconv.Atoi(strings.TrimSpace(rec[1]))
	if err != nil || n < 0 {
		return nil, fmt.Errorf("tasks %q: want an integer >= 0", rec[1])
	}
	fixed := -1.0
	if len(rec) > 2 && strings.TrimSpace(rec[2]) != "" {
		fixed, err = strconv.ParseFloat(strings.TrimSpace(rec[2]), 64)
		if err != nil || fixed < 0 {
			return nil, fmt.Errorf("service %q: want seconds >= 0", rec[2])
		}
	}
	row := make([]Task, n)
	for i := range row {
		row[i] = Task{Arrival: at, Service: fixed}
		if fixed < 0 {
			row[i].Service = svc.draw(r)
		}
	}
	return row, nil
}
