package nodepool

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPendingEmptySince: a clock the scaler wrote stands in for the
// annotation until the cache shows it, and is then forgotten, so a clock
// someone else removes later starts afresh.
func TestPendingEmptySince(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	node := func(ann map[string]string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: ann}}
	}
	stale, seen := node(nil), node(map[string]string{EmptySinceAnnotation: at.Format(time.RFC3339Nano)})

	st := NewState()
	if _, ok := st.pendingEmptySince(stale); ok {
		t.Fatal("nothing written yet, but a pending clock was reported")
	}
	st.wroteEmptySince("n1", at)
	for range 2 {
		if got, ok := st.pendingEmptySince(stale); !ok || !got.Equal(at) {
			t.Fatalf("stale cache: pending = %v, %v; want %v", got, ok, at)
		}
	}
	if _, ok := st.pendingEmptySince(seen); ok {
		t.Fatal("the cache shows the clock, yet it is still reported pending")
	}
	if _, ok := st.pendingEmptySince(stale); ok {
		t.Fatal("the record outlived the cache showing it: a later removal would be ignored")
	}

	st.wroteEmptySince("n1", at)
	st.wroteEmptySince("n1", time.Time{})
	if _, ok := st.pendingEmptySince(stale); ok {
		t.Fatal("a cleared clock is still pending")
	}

	st.wroteEmptySince("n1", at)
	st.forgetGone(map[string]*corev1.Node{})
	if _, ok := st.pendingEmptySince(stale); ok {
		t.Fatal("a node gone from the cache kept its pending clock")
	}
}
