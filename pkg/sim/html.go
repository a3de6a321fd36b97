package sim

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// policyColors gives each policy the same colour in every plot.
var policyColors = map[string]string{
	PolicySwell:     "#0b7a75",
	PolicySwellWait: "#7b2cbf",
	PolicyKeda:      "#d1495b",
	PolicyHPACPU:    "#e09f3e",
	PolicyOracle:    "#6c757d",
}

// maxPlotPoints bounds each plotted series; longer ones are reduced to the
// maximum of each bucket so peaks stay visible.
const maxPlotPoints = 1200

// ReportScenario is what the HTML report shows for one scenario.
type ReportScenario struct {
	Name        string
	Description string
	Results     []Result
	// Sweep, when set, adds the frontier chart and the equal-wait table.
	Sweep *Sweep
}

// WriteHTML writes one self-contained HTML file (inline CSS and SVG, no
// scripts, no external resources) with a table and two plots per scenario:
// pods alive and tasks queued over time, one line per policy.
func WriteHTML(w io.Writer, scs []ReportScenario) error {
	type view struct {
		ReportScenario
		Rows     []htmlRow
		Pods     template.HTML
		Backlog  template.HTML
		Frontier template.HTML
		Equal    []equalRow
		Verdict  string
		RefP95   float64
	}
	views := make([]view, 0, len(scs))
	for _, sc := range scs {
		base := baseline(sc.Results, sc.Name)
		v := view{ReportScenario: sc,
			Pods:    plot(sc.Results, "pods alive", func(p Point) float64 { return float64(p.Pods) }),
			Backlog: plot(sc.Results, "tasks queued", func(p Point) float64 { return float64(p.Backlog) })}
		for _, r := range sc.Results {
			v.Rows = append(v.Rows, htmlRow{Result: r, Color: policyColors[r.Policy], VsKeda: vsKeda(r, base)})
		}
		if sw := sc.Sweep; sw != nil {
			v.Frontier, v.Verdict, v.RefP95 = frontierPlot(sw, len(views)), Verdict(sw), sw.RefP95
			for _, p := range equalWaitPolicies {
				v.Equal = append(v.Equal, equalRow{Policy: p, Color: policyColors[p], PodHours: fmtHours(sw.AtRef[p]),
					VsKeda: fmtChange(sw.AtRef[p], sw.AtRef[PolicyKeda]), Settings: len(sw.Points[p]), OnFrontier: len(sw.Frontier[p])})
			}
		}
		views = append(views, v)
	}
	if err := reportTemplate.Execute(w, views); err != nil {
		return fmt.Errorf("write html report: %w", err)
	}
	return nil
}

// equalRow is one policy's line in the equal-wait table.
type equalRow struct {
	Policy, Color, PodHours, VsKeda string
	Settings, OnFrontier            int
}

type htmlRow struct {
	Result
	Color  string
	VsKeda string
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"hours": func(s float64) string { return fmt.Sprintf("%.1f", s/3600) },
	"secs":  func(s float64) string { return fmt.Sprintf("%.1f", s) },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>swell simulate report</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{padding:.25em .7em;text-align:right;border-bottom:1px solid #ddd}
th:first-child,td:first-child{text-align:left}.sw{display:inline-block;width:.8em;height:.8em;margin-right:.4em;border-radius:2px}
svg{display:block;margin-bottom:1em}p.note{color:#555;max-width:50em}
</style></head><body>
<h1>swell simulate</h1>
<p class="note">Pod-hours bill every pod from creation to deletion. Waits are queue time before a worker starts a task;
tasks never started count until the end. "vs keda" is the change in pod-hours against the keda policy.
The oracle starts pods instantly and moves work freely: a lower bound, not a real policy.
Each policy's knob is swept (keda: listLength 1–20 × pollingInterval 15/30 s × cooldownPeriod 60/300 s;
swell: scalingFactor; swell-wait: targetWaitSeconds; hpa-cpu: target utilisation). The frontier chart joins
each policy's Pareto-optimal settings (fewest pod-hours for their p95 wait); the equal-wait table reads each
frontier at the p95 wait keda reaches on its defaults, interpolating linearly between settings.</p>
{{range .}}<section><h2>{{.Name}}</h2><p class="note">{{.Description}}</p>
{{if .Equal}}<h3>Pod-hours at equal p95 wait ({{secs .RefP95}} s, keda's default)</h3>
<table><tr><th>policy</th><th>pod-hours</th><th>vs keda</th><th>settings run</th><th>on frontier</th></tr>
{{range .Equal}}<tr><td><span class="sw" style="background:{{.Color}}"></span>{{.Policy}}</td><td>{{.PodHours}}</td><td>{{.VsKeda}}</td><td>{{.Settings}}</td><td>{{.OnFrontier}}</td></tr>
{{end}}</table><p class="note">{{.Verdict}}</p>
{{.Frontier}}<h3>Default settings over time</h3>{{end}}
<table><tr><th>policy</th><th>pod-hours</th><th>vs keda</th><th>p50 wait s</th><th>p95 wait s</th><th>p99 wait s</th><th>max backlog</th><th>max pods</th><th>scale events</th></tr>
{{range .Rows}}<tr><td><span class="sw" style="background:{{.Color}}"></span>{{.Policy}}</td><td>{{hours .PodSeconds}}</td><td>{{.VsKeda}}</td><td>{{secs .WaitP50}}</td><td>{{secs .WaitP95}}</td><td>{{secs .WaitP99}}</td><td>{{.MaxBacklog}}</td><td>{{.MaxPods}}</td><td>{{.ScaleEvents}}</td></tr>
{{end}}</table>
{{.Pods}}{{.Backlog}}</section>
{{end}}</body></html>
`))

// plot renders one SVG line chart of value(point) over time per policy.
func plot(results []Result, label string, value func(Point) float64) template.HTML {
	const w, h, left, right, top, bottom = 900.0, 240.0, 50.0, 110.0, 20.0, 30.0
	var tMax, vMax float64
	for _, r := range results {
		for _, p := range r.Series {
			tMax, vMax = math.Max(tMax, p.T), math.Max(vMax, value(p))
		}
	}
	if tMax == 0 {
		tMax = 1
	}
	vMax = niceCeil(vMax)
	x := func(t float64) float64 { return left + (w-left-right)*t/tMax }
	y := func(v float64) float64 { return top + (h-top-bottom)*(1-v/vMax) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-size="11" role="img" aria-label="%s over time">`, w, h, w, h, template.HTMLEscapeString(label))
	axes(&b, label, tMax, vMax, x, y, w-right, h-bottom)
	for i, r := range results {
		color := policyColors[r.Policy]
		dash := ""
		if r.Policy == PolicyOracle {
			dash = ` stroke-dasharray="4 3"`
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.4"%s points="`, color, dash)
		prev := math.NaN()
		for _, p := range downsample(r.Series, value) {
			if !math.IsNaN(prev) {
				fmt.Fprintf(&b, "%.1f,%.1f ", x(p.t), y(prev)) // step: hold the last value
			}
			fmt.Fprintf(&b, "%.1f,%.1f ", x(p.t), y(p.v))
			prev = p.v
		}
		fmt.Fprintf(&b, `"/><text x="%.0f" y="%.0f" fill="%s">%s</text>`, w-right+10, top+14*float64(i+1), color, template.HTMLEscapeString(r.Policy))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// axes draws the frame, horizontal grid lines and tick labels.
func axes(b *strings.Builder, label string, tMax, vMax float64, x, y func(float64) float64, xEnd, yEnd float64) {
	fmt.Fprintf(b, `<text x="%.0f" y="12" fill="#333">%s</text>`, x(0), template.HTMLEscapeString(label))
	for i := 0; i <= 4; i++ {
		v := vMax * float64(i) / 4
		fmt.Fprintf(b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/><text x="%.0f" y="%.1f" text-anchor="end" fill="#666">%g</text>`,
			x(0), xEnd, y(v), y(v), x(0)-4, y(v)+4, v)
	}
	unit, div := "min", 60.0
	if tMax > 3*3600 {
		unit, div = "h", 3600
	}
	for i := 0; i <= 6; i++ {
		t := tMax * float64(i) / 6
		fmt.Fprintf(b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#666">%.0f%s</text>`, x(t), yEnd+16, t/div, unit)
	}
	fmt.Fprintf(b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#999"/>`, x(0), xEnd, yEnd, yEnd)
}

type xy struct{ t, v float64 }

// downsample reduces a series to maxPlotPoints, keeping each bucket's max.
func downsample(series []Point, value func(Point) float64) []xy {
	bucket := (len(series) + maxPlotPoints - 1) / maxPlotPoints
	bucket = max(bucket, 1)
	out := make([]xy, 0, len(series)/bucket+1)
	for i := 0; i < len(series); i += bucket {
		end := min(i+bucket, len(series))
		peak := value(series[i])
		for _, p := range series[i+1 : end] {
			peak = math.Max(peak, value(p))
		}
		out = append(out, xy{series[i].T, peak})
	}
	return out
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (at least 1).
func niceCeil(v float64) float64 {
	if v <= 1 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= v {
			return m * mag
		}
	}
	return 10 * mag
}

// frontierPlot draws pod-hours against p95 wait, one line per policy
// through its frontier, the oracle as a dashed floor and the comparison
// wait as a dotted vertical line.
func frontierPlot(sw *Sweep, id int) template.HTML {
	const w, h, left, right, top, bottom = 900.0, 300.0, 50.0, 110.0, 20.0, 34.0
	xMax := niceCeil(3 * math.Max(sw.RefP95, 1))
	var yMax float64
	for _, pts := range sw.Frontier {
		for _, p := range pts {
			if p.P95 <= xMax {
				yMax = math.Max(yMax, p.PodHours)
			}
		}
	}
	if k := sw.AtRef[PolicyKeda]; !math.IsNaN(k) {
		yMax = math.Min(yMax, 3*k) // keep the comparison readable; steeper ends are clipped
	}
	yMax = niceCeil(math.Max(yMax, sw.Oracle.PodHours))
	x := func(v float64) float64 { return left + (w-left-right)*math.Min(v, xMax)/xMax }
	y := func(v float64) float64 { return top + (h-top-bottom)*(1-v/yMax) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-size="11" role="img" aria-label="pod-hours against p95 wait">`, w, h, w, h)
	fmt.Fprintf(&b, `<text x="%.0f" y="12" fill="#333">pod-hours (y) against p95 wait in seconds (x): each policy's frontier</text>`, left)
	for i := 0; i <= 4; i++ {
		v := yMax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/><text x="%.0f" y="%.1f" text-anchor="end" fill="#666">%g</text>`,
			left, w-right, y(v), y(v), left-4, y(v)+4, v)
	}
	for i := 0; i <= 5; i++ {
		v := xMax * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle" fill="#666">%gs</text>`, x(v), h-bottom+16, v)
	}
	fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#999"/>`, left, w-right, h-bottom, h-bottom)
	fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#999" stroke-dasharray="2 3"/>`, x(sw.RefP95), x(sw.RefP95), top, h-bottom)
	for i, p := range equalWaitPolicies {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="%s">%s</text>`, w-right+10, top+14*float64(i+1), policyColors[p], template.HTMLEscapeString(p))
	}
	fmt.Fprintf(&b, `<clipPath id="frontier-%d"><rect x="%.0f" y="%.0f" width="%.0f" height="%.0f"/></clipPath><g clip-path="url(#frontier-%d)">`,
		id, left, top-4, w-right-left+4, h-bottom-top+8, id)
	for _, p := range equalWaitPolicies {
		color := policyColors[p]
		if p == PolicyOracle {
			fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4 3"/>`, left, w-right, y(sw.Oracle.PodHours), y(sw.Oracle.PodHours), color)
			continue
		}
		if len(sw.Frontier[p]) == 0 {
			continue
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="`, color)
		var dots strings.Builder
		for _, q := range sw.Frontier[p] {
			if q.P95 > xMax {
				fmt.Fprintf(&b, "%.1f,%.1f ", x(xMax), y(PodHoursAt(sw.Frontier[p], xMax)))
				break
			}
			fmt.Fprintf(&b, "%.1f,%.1f ", x(q.P95), y(q.PodHours))
			fmt.Fprintf(&dots, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s: %.1f pod-hours, p95 %.1f s</title></circle>`,
				x(q.P95), y(q.PodHours), color, template.HTMLEscapeString(q.Label), q.PodHours, q.P95)
		}
		b.WriteString(`"/>`)
		b.WriteString(dots.String())
	}
	b.WriteString(`</g></svg>`)
	return template.HTML(b.String())
}
