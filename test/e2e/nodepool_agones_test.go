package e2e

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// TestNodePoolAgonesOccupancy runs a `swell nodepool` scaler with
// occupancy-source: agones against a GameServer CRD stand-in in the test
// API server (testdata/agones-standin). The pool's one node is surplus
// (minimum 0, buffer 0) and carries a server-labelled pod backing GameServer
// gs-1. While gs-1 is Allocated the node is never deleted, over passes that
// each had every chance to; once Agones (here: the test) marks it Ready, it
// is a free slot: the scaler evicts its pod through the Eviction API and
// deletes the node. With occupancy-source: pods the same server-labelled
// pod would keep the node forever.
func TestNodePoolAgonesOccupancy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := env.InstallCRDs(ctx, "testdata/agones-standin"); err != nil {
		t.Fatalf("install the GameServer stand-in CRD: %v", err)
	}
	dyn, err := dynamic.NewForConfig(env.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(ctx, t)
	p := newAgonesPool(ctx, t, ns, dyn)
	p.workload("gs-1", map[string]string{safetyServerLabel: "agones"}, nil)
	gs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "agones.dev/v1", "kind": "GameServer",
		"metadata": map[string]any{"name": "gs-1", "namespace": ns},
		"spec":     map[string]any{},
		"status":   map[string]any{"state": "Allocated", "nodeName": p.node},
	}}
	if _, err := dyn.Resource(nodepool.GameServerGVR).Namespace(ns).Create(ctx, gs, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create GameServer gs-1: %v", err)
	}

	mon := safetyWatchDeletions(ctx, t, p.selector)
	p.start()
	// Allocated: the slot is in use, the node stays. Wait until the
	// scaler's informer has seen gs-1, then count passes.
	waitFor(ctx, t, "the scaler counting gs-1 as a slot in use", func() (bool, error) {
		d, err := p.scaler.Pass(ctx)
		return err == nil && d.InUse == 1, err
	})
	const held = 10
	p.passes(held, func(i int, d nodepool.Decision) {
		if d.InUse != 1 {
			t.Errorf("pass %d: in use %d, want 1 (gs-1 Allocated)", i, d.InUse)
		}
		if len(d.Delete) != 0 {
			t.Errorf("pass %d deleted %v while gs-1 is Allocated", i, d.Delete)
		}
	})
	if _, err := env.Clientset.CoreV1().Nodes().Get(ctx, p.node, metav1.GetOptions{}); err != nil {
		t.Fatalf("node %s after %d passes with gs-1 Allocated: %v", p.node, held, err)
	}
	t.Logf("gs-1 Allocated: node %s kept over %d passes, each counting 1 slot in use", p.node, held)

	// Ready: a free slot. The node drains (gs-1's pod evicted) and goes.
	patch := []byte(`{"status":{"state":"Ready"}}`)
	if _, err := dyn.Resource(nodepool.GameServerGVR).Namespace(ns).Patch(ctx, "gs-1", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("mark gs-1 Ready: %v", err)
	}
	evictionsBefore := safetyEvictionRequests(ctx, t)
	passes := p.passUntilDeleted("the node with only a Ready GameServer drained and deleted")
	evictions := safetyEvictionRequests(ctx, t) - evictionsBefore
	deleted := mon.expectOnly(t, p.node)
	t.Logf("gs-1 Ready: node %s deleted after %d passes; eviction requests: %.0f; deletions seen: %v", p.node, passes, evictions, deleted)
	if evictions < 1 {
		t.Errorf("%.0f eviction requests, want gs-1's pod evicted through the Eviction API", evictions)
	}
	if _, err := env.Clientset.CoreV1().Pods(ns).Get(ctx, "gs-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod gs-1 after the drain: %v, want it gone", err)
	}
}

// newAgonesPool is newSafetyPool (expiry 0) with occupancy-source: agones
// and the dynamic client that reads GameServers.
func newAgonesPool(ctx context.Context, t *testing.T, ns string, dyn dynamic.Interface) *safetyPool {
	t.Helper()
	return newSafetyPoolWith(ctx, t, ns, "agones", 0, "occupancy-source: agones\n", dyn)
}
