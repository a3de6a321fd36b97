package sim

// eventKind says what happens at an event.
type eventKind uint8

const (
	evArrival eventKind = iota
	evPodReady
	evTaskDone
	evTick
	evSample
)

// event is one scheduled happening. seq breaks ties in insertion order so
// simultaneous events always run in the same order.
type event struct {
	at   float64
	seq  uint64
	kind eventKind
	pod  *pod
	// task is the task a evTaskDone finishes.
	task int32
}

// eventQueue is a binary min-heap of events by (at, seq), hand-rolled to
// avoid container/heap's interface boxing on the hot path.
type eventQueue struct {
	items []event
	seq   uint64
}

func (q *eventQueue) less(i, j int) bool {
	a, b := &q.items[i], &q.items[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

func (q *eventQueue) push(e event) {
	q.seq++
	e.seq = q.seq
	q.items = append(q.items, e)
	for i := len(q.items) - 1; i > 0; {
		parent := (i - 1) / 2
		if !q.less(i, parent) {
			break
		}
		q.items[i], q.items[parent] = q.items[parent], q.items[i]
		i = parent
	}
}

func (q *eventQueue) len() int { return len(q.items) }

func (q *eventQueue) peek() float64 { return q.items[0].at }

func (q *eventQueue) pop() event {
	top := q.items[0]
	last := len(q.items) - 1
	q.items[0] = q.items[last]
	q.items = q.items[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < last && q.less(l, m) {
			m = l
		}
		if r < last && q.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top
}
