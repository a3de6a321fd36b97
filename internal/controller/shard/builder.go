package shard

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// DefaultSettle is how long a replica waits after acquiring an object
// before acting on it: its cache then holds what the previous owner wrote
// last (a watch event reaches every replica within milliseconds on a
// healthy apiserver).
const DefaultSettle = 2 * time.Second

// Complete finishes a kind's controller: with ring nil it registers inner
// as is (one replica, or leader election); otherwise inner wrapped in a
// Reconciler, plus a source that enqueues every object of the kind when
// the ring's members change.
func Complete(b *builder.Builder, mgr ctrl.Manager, ring Membership, inner reconcile.Reconciler, newObj func() client.Object, newList func() client.ObjectList) error {
	if ring == nil {
		return b.Complete(inner)
	}
	r := &Reconciler{Inner: inner, Client: mgr.GetClient(), New: newObj, Ring: ring, Settle: DefaultSettle}
	c := mgr.GetClient()
	list := func(ctx context.Context) ([]types.NamespacedName, error) {
		l := newList()
		if err := c.List(ctx, l); err != nil {
			return nil, fmt.Errorf("list for sharding: %w", err)
		}
		var keys []types.NamespacedName
		err := meta.EachListItem(l, func(o runtime.Object) error {
			if m, ok := o.(client.Object); ok {
				keys = append(keys, types.NamespacedName{Namespace: m.GetNamespace(), Name: m.GetName()})
			}
			return nil
		})
		return keys, err
	}
	return b.WatchesRawSource(r.Source(list)).Complete(r)
}

// OwnerChanged lets through updates that move an object's owner label, for
// kinds whose controllers otherwise filter updates (by generation): the new
// owner must hear of a hand-over.
func OwnerChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectOld != nil && e.ObjectNew != nil &&
				e.ObjectOld.GetLabels()[LabelOwner] != e.ObjectNew.GetLabels()[LabelOwner]
		},
	}
}
