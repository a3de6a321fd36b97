package waittime

import (
	"math"
	"time"
)

const (
	// sustainedWindows is how many consecutive windows a rate must be
	// seen in to count as sustained.
	sustainedWindows = 3
	// sustainedSteps is how many marks a window holds at most: marks
	// closer than window/sustainedSteps are not kept, so the history stays
	// small however often the queue is polled.
	sustainedSteps = 12
)

// sustained keeps the arrivals of the last few windows, for the rate that
// was seen in each of them. Arrived and covered count only intervals whose
// arrivals are known; marks are their running totals at past observations,
// oldest first.
type sustained struct {
	arrived, covered float64
	at               time.Time
	marks            []mark
}

// mark is the running totals at one observation.
type mark struct {
	at               time.Time
	arrived, covered float64
}

// add counts one interval ending at now, dt seconds long, with arrived
// tasks (unknown when ok is false: neither tasks nor time count).
func (s *sustained) add(now time.Time, arrived, dt float64, ok bool, w time.Duration) {
	if len(s.marks) == 0 {
		s.marks = append(s.marks, mark{at: now.Add(-seconds(dt))})
	}
	if ok {
		s.arrived += arrived
		s.covered += dt
	}
	s.at = now
	if now.Sub(s.marks[len(s.marks)-1].at) >= w/sustainedSteps {
		s.marks = append(s.marks, mark{at: now, arrived: s.arrived, covered: s.covered})
	}
	horizon := now.Add(-sustainedWindows * w)
	drop := 0
	for drop+1 < len(s.marks) && !s.marks[drop+1].at.After(horizon) {
		drop++
	}
	s.marks = append(s.marks[:0], s.marks[drop:]...)
}

// rate is the lowest arrival rate over the sustainedWindows consecutive
// windows of length w ending at the newest observation; 0 while the history
// is shorter or a window is less than half covered by known intervals.
func (s *sustained) rate(w time.Duration) float64 {
	lowest := math.Inf(1)
	end := mark{at: s.at, arrived: s.arrived, covered: s.covered}
	for j := 1; j <= sustainedWindows; j++ {
		start, ok := s.before(s.at.Add(-time.Duration(j) * w))
		if !ok || end.covered-start.covered < w.Seconds()/2 {
			return 0
		}
		lowest = math.Min(lowest, (end.arrived-start.arrived)/(end.covered-start.covered))
		end = start
	}
	if math.IsInf(lowest, 0) || math.IsNaN(lowest) || lowest < 0 {
		return 0
	}
	return lowest
}

// before is the newest mark at or before t.
func (s *sustained) before(t time.Time) (mark, bool) {
	for i := len(s.marks) - 1; i >= 0; i-- {
		if !s.marks[i].at.After(t) {
			return s.marks[i], true
		}
	}
	return mark{}, false
}
