package policy

import (
	"cmp"
	"slices"
	"time"
)

// WorkerPod is what the pool planner needs to know about one worker pod.
// Pods that ended (Succeeded, Failed) are not WorkerPods: the caller removes
// or replaces them before planning.
type WorkerPod struct {
	Name string
	// Hash is the pod-spec hash the pod was created from.
	Hash string
	// Ready is the pod's Ready condition.
	Ready bool
	// Retiring marks a pod already chosen to retire: it may still be
	// finishing a task, but it no longer counts toward the pool.
	Retiring bool
	// Terminating marks a pod with a deletion timestamp.
	Terminating bool
	// NeverStarted marks a pod whose worker never ran (Pending, image
	// pull failing, never ready): it retires before pods that did, as
	// retiring it loses no work and frees what it holds at once.
	NeverStarted bool
	// Created orders pods: among equals the newest retires first, so
	// long-lived (warm) workers stay.
	Created time.Time
}

// PoolTarget is what the pool should become.
type PoolTarget struct {
	// Desired is the number of active workers wanted.
	Desired int32
	// Hash is the current pod-spec hash; pods with another hash are rolled.
	Hash string
	// MaxSurge bounds a rollout: active plus still-running retiring pods
	// never exceed Desired+MaxSurge because of replacement pods.
	MaxSurge int32
}

// PoolPlan is what to do now. Creations and retirements are exact: the
// controller creates Create pods and retires exactly the pods in Retire.
type PoolPlan struct {
	// Create is how many new pods (with the current hash) to create.
	Create int32
	// Retire names the pods chosen to retire, in the order chosen.
	Retire []string
	// Active is the number of pods counting toward the pool before the plan.
	Active int32
	// Outdated is how many active pods run an old hash.
	Outdated int32
}

// PlanPool decides which pods to create and which to retire so the pool
// converges on target without ever retiring more pods than asked:
//
//   - Pods that are retiring or terminating do not count as active, but
//     while they still run they count against the rollout's surge room.
//   - Excess active pods retire in this order: outdated before current,
//     not-ready before ready, newest before oldest. A ready pod retires only
//     while enough other ready pods remain to keep Desired ready, so a
//     rollout never trades a serving worker for one still starting.
//   - A current-hash pod never retires while outdated pods remain active.
//   - New pods fill the gap to Desired at once (scaling up is never held back
//     by a rollout), and replace outdated pods within MaxSurge.
func PlanPool(pods []WorkerPod, t PoolTarget) PoolPlan {
	desired := max(t.Desired, 0)
	var active []WorkerPod
	var draining int32
	for _, p := range pods {
		if p.Retiring || p.Terminating {
			draining++
			continue
		}
		active = append(active, p)
	}
	plan := PoolPlan{Active: int32(len(active))}
	for _, p := range active {
		if p.Hash != t.Hash {
			plan.Outdated++
		}
	}
	plan.Retire = chooseRetirees(active, t.Hash, desired)
	plan.Create = creations(active, t, desired, draining, int32(len(plan.Retire)))
	return plan
}

// chooseRetirees picks exactly the excess pods, within the readiness rule.
func chooseRetirees(active []WorkerPod, hash string, desired int32) []string {
	excess := int32(len(active)) - desired
	if excess <= 0 {
		return nil
	}
	ranked := slices.Clone(active)
	slices.SortStableFunc(ranked, func(a, b WorkerPod) int {
		return retireOrder(a, b, hash)
	})
	ready, outdatedLeft := int32(0), int32(0)
	for _, p := range active {
		if p.Ready {
			ready++
		}
		if p.Hash != hash {
			outdatedLeft++
		}
	}
	var out []string
	for _, p := range ranked {
		if int32(len(out)) == excess {
			break
		}
		if p.Hash == hash && outdatedLeft > 0 {
			continue
		}
		if p.Ready && ready-1 < desired {
			continue
		}
		out = append(out, p.Name)
		if p.Ready {
			ready--
		}
		if p.Hash != hash {
			outdatedLeft--
		}
	}
	return out
}

// retireOrder ranks pods for retirement: outdated, then never started,
// then not ready, then newest.
func retireOrder(a, b WorkerPod, hash string) int {
	if c := cmp.Compare(boolRank(a.Hash != hash), boolRank(b.Hash != hash)); c != 0 {
		return c
	}
	if c := cmp.Compare(boolRank(a.NeverStarted), boolRank(b.NeverStarted)); c != 0 {
		return c
	}
	if c := cmp.Compare(boolRank(!a.Ready), boolRank(!b.Ready)); c != 0 {
		return c
	}
	if c := b.Created.Compare(a.Created); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// boolRank sorts true first.
func boolRank(b bool) int {
	if b {
		return 0
	}
	return 1
}

// creations is how many current-hash pods to create: the gap to Desired at
// once, plus replacements for outdated pods within the surge room.
func creations(active []WorkerPod, t PoolTarget, desired, draining, retiring int32) int32 {
	var current int32
	for _, p := range active {
		if p.Hash == t.Hash {
			current++
		}
	}
	need := desired - current
	if need <= 0 {
		return 0
	}
	stillActive := int32(len(active)) - retiring
	gap := max(desired-stillActive, 0)
	alive := int32(len(active)) + draining
	room := desired + max(t.MaxSurge, 0) - alive
	return min(need, max(room, gap))
}
