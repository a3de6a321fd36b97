package nodepool

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/swell-autoscaler/swell/pkg/nodepool/agones"
)

// Occupancy sources (occupancy-source).
const (
	// OccupancyPods counts server pods by label (the default).
	OccupancyPods = "pods"
	// OccupancyAgones reads Agones GameServer states: Allocated and
	// Reserved servers are slots in use, Ready ones are free slots.
	OccupancyAgones = "agones"
)

// GameServerGVR is the Agones resource occupancy-source=agones watches.
var GameServerGVR = schema.GroupVersionResource{Group: "agones.dev", Version: "v1", Resource: "gameservers"}

// occupancyErrors checks occupancy-source.
func (c Config) occupancyErrors() []error {
	switch c.OccupancySource {
	case "", OccupancyPods, OccupancyAgones:
		return nil
	}
	return []error{fmt.Errorf("%s (env %s): %q is not an occupancy source; want %s or %s",
		KeyOccupancySource, EnvName(KeyOccupancySource), c.OccupancySource, OccupancyPods, OccupancyAgones)}
}

// UsesAgones reports whether the pool reads occupancy from GameServers.
func (c Config) UsesAgones() bool { return c.OccupancySource == OccupancyAgones }

// gameServerWatch is the GameServer informer of an agones pool, on the
// dynamic client so Swell needs no Agones Go module.
type gameServerWatch struct {
	factory dynamicinformer.DynamicSharedInformerFactory
	inf     cache.SharedIndexInformer
}

func newGameServerWatch(client dynamic.Interface) *gameServerWatch {
	f := dynamicinformer.NewDynamicSharedInformerFactory(client, 0)
	return &gameServerWatch{factory: f, inf: f.ForResource(GameServerGVR).Informer()}
}

// start runs the informer, waits for its first list and triggers a pass
// on every change; the returned function stops it.
func (w *gameServerWatch) start(ctx context.Context, trigger func()) (func(), error) {
	reg, err := w.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { trigger() },
		UpdateFunc: func(any, any) { trigger() },
		DeleteFunc: func(any) { trigger() },
	})
	if err != nil {
		return func() {}, fmt.Errorf("nodepool: GameServer handler: %w", err)
	}
	stop := func() {
		_ = w.inf.RemoveEventHandler(reg)
		w.factory.Shutdown()
	}
	w.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), w.inf.HasSynced) {
		return stop, fmt.Errorf("nodepool: %s cache did not sync (is Agones installed?): %w", GameServerGVR.GroupResource(), ctx.Err())
	}
	return stop, nil
}

// gameServersServed checks that the API server serves GameServers, so a
// cluster without Agones gets an error naming the resource rather than a
// cache that waits forever.
func gameServersServed(d discovery.DiscoveryInterface) error {
	list, err := d.ServerResourcesForGroupVersion(GameServerGVR.GroupVersion().String())
	if err != nil {
		return fmt.Errorf("%s not served (is Agones installed?): %w", GameServerGVR.GroupResource(), err)
	}
	for _, r := range list.APIResources {
		if r.Name == GameServerGVR.Resource {
			return nil
		}
	}
	return fmt.Errorf("%s not served by %s (is Agones installed?)", GameServerGVR.Resource, GameServerGVR.GroupVersion())
}

// list decodes the cached GameServers. One that cannot be decoded (no
// state yet) is kept with its state empty, which the classifier counts as
// unknown: it blocks its node rather than risk a session.
func (w *gameServerWatch) list() []agones.GameServer {
	objs := w.inf.GetStore().List()
	out := make([]agones.GameServer, 0, len(objs))
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		gs, _ := agones.FromObject(u.Object)
		out = append(out, gs)
	}
	return out
}

// byNode groups GameServers by status.nodeName.
func byNode(servers []agones.GameServer) map[string][]agones.GameServer {
	out := map[string][]agones.GameServer{}
	for _, gs := range servers {
		out[gs.Node] = append(out[gs.Node], gs)
	}
	return out
}

// busy reports whether a GameServer holds a session (or might): the
// classifier's in-use and unknown states.
func busy(gs agones.GameServer) bool {
	gs.Node = "" // classify it alone, as if unscheduled
	return agones.Count([]agones.GameServer{gs}).Unscheduled.Busy()
}

// AgonesNodeState is NodeStateOf for occupancy-source=agones: the node's
// occupied slots are its Allocated, Reserved and unknown-state
// GameServers, and the pods of its other GameServers (Ready, starting,
// stopping) do not count against free slots: for players a Ready server is
// a free slot. Pods that are not GameServers count as usual.
func AgonesNodeState(node *corev1.Node, pods []*corev1.Pod, servers []agones.GameServer) NodeState {
	free := map[string]bool{}
	occupied := 0
	for _, gs := range servers {
		if busy(gs) {
			occupied++
			continue
		}
		free[gs.Namespace+"/"+gs.Name] = true
	}
	kept := make([]*corev1.Pod, 0, len(pods))
	for _, p := range pods {
		if !free[p.Namespace+"/"+p.Name] {
			kept = append(kept, p)
		}
	}
	s := NodeStateOf(node, kept, labels.Nothing())
	s.ServerPods = occupied
	if at, ok := timeAnnotation(node, EmptySinceAnnotation); ok && emptyCandidate(s) {
		s.EmptySince = at
	} else {
		s.EmptySince = time.Time{}
	}
	return s
}

// AssessAgonesDrain is AssessDrain for occupancy-source=agones: each
// Allocated, Reserved or unknown-state GameServer on the node blocks it;
// the pods of its other GameServers are evicted like any pod (Agones'
// Fleet replaces a Ready server elsewhere); other pods follow AssessDrain
// with the server-pod selector.
func AssessAgonesDrain(pods []*corev1.Pod, servers labels.Selector, gameServers []agones.GameServer) DrainVerdict {
	gsPods := map[string]bool{}
	inUse := map[string]bool{}
	var blockers []Blocker
	for _, gs := range gameServers {
		key := gs.Namespace + "/" + gs.Name
		if busy(gs) {
			inUse[key] = true
			state := gs.State
			if state == "" {
				state = "no state yet"
			}
			blockers = append(blockers, Blocker{Pod: key, Reason: "Agones GameServer " + state})
			continue
		}
		gsPods[key] = true
	}
	var rest, free []*corev1.Pod
	for _, p := range pods {
		switch key := p.Namespace + "/" + p.Name; {
		case inUse[key]: // already a blocker, as its GameServer
		case gsPods[key]:
			free = append(free, p)
		default:
			rest = append(rest, p)
		}
	}
	v := AssessDrain(rest, servers)
	f := AssessDrain(free, labels.Nothing())
	sort.Slice(blockers, func(i, j int) bool { return blockers[i].Pod < blockers[j].Pod })
	v.Blockers = append(blockers, append(v.Blockers, f.Blockers...)...)
	v.Evict = append(v.Evict, f.Evict...)
	v.Terminating = append(v.Terminating, f.Terminating...)
	return v
}
