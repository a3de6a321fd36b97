package demo

import (
	"fmt"
	"strings"
	"time"
)

// Snapshot is what the live view shows at one moment.
type Snapshot struct {
	Elapsed     time.Duration
	Phase       Phase
	Sent        int64
	ArrivalRate float64
	Backlog     int64
	Desired     int32
	Current     int32
	Ready       int32
	Decision    string
	Events      []string
	// History holds recent (desired, backlog) pairs, oldest first, for the
	// sparkline.
	History []Point
	Err     string
}

// Point is one moment of the sparkline.
type Point struct {
	Desired int32
	Backlog int64
}

const clearScreen = "\x1b[H\x1b[2J"

// Render draws the view as plain text with ANSI clear-screen, so it works
// in any terminal (and in tmux capture-pane for tests).
func Render(s Snapshot) string {
	var b strings.Builder
	b.WriteString(clearScreen)
	fmt.Fprintf(&b, "Swell demo — QWorker %q on Redis   (%s elapsed, Ctrl-C to stop)\n\n", "demo", s.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "  load phase     %-8s  target %.0f tasks/s   measured %.1f tasks/s   sent %d\n", s.Phase.Name, s.Phase.Rate, s.ArrivalRate, s.Sent)
	fmt.Fprintf(&b, "  backlog        %d\n", s.Backlog)
	fmt.Fprintf(&b, "  replicas       desired %d   current %d   ready %d\n", s.Desired, s.Current, s.Ready)
	fmt.Fprintf(&b, "  last decision  %s\n\n", orDash(s.Decision))
	fmt.Fprintf(&b, "  desired  %s\n", spark(s.History, func(p Point) float64 { return float64(p.Desired) }))
	fmt.Fprintf(&b, "  backlog  %s\n\n", spark(s.History, func(p Point) float64 { return float64(p.Backlog) }))
	b.WriteString("  recent events\n")
	if len(s.Events) == 0 {
		b.WriteString("    -\n")
	}
	for _, e := range s.Events {
		fmt.Fprintf(&b, "    %s\n", e)
	}
	if s.Err != "" {
		fmt.Fprintf(&b, "\n  ! %s\n", s.Err)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// spark draws values as a one-line bar chart scaled to its maximum.
func spark(h []Point, value func(Point) float64) string {
	const bars = "▁▂▃▄▅▆▇█"
	runes := []rune(bars)
	maxV := 0.0
	for _, p := range h {
		maxV = max(maxV, value(p))
	}
	var b strings.Builder
	for _, p := range h {
		i := 0
		if maxV > 0 {
			i = int(value(p) / maxV * float64(len(runes)-1))
		}
		b.WriteRune(runes[i])
	}
	fmt.Fprintf(&b, "  (max %.0f)", maxV)
	return b.String()
}
