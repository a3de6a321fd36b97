package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// permission is one thing the worker's ServiceAccount must be allowed.
type permission struct {
	group, resource, verb, name string
}

func (p permission) String() string {
	r := p.resource
	if p.group != "" {
		r += "." + p.group
	}
	if p.name != "" {
		r += "/" + p.name
	}
	return p.verb + " " + r
}

// requiredPermissions are what a worker does through the API: watch its
// pod and QWorker, write its task stats on its pod, and leave (drop its
// owner reference, delete its pod).
func requiredPermissions(id Identity) []permission {
	return []permission{
		{resource: "pods", verb: "get", name: id.Pod},
		{resource: "pods", verb: "list"},
		{resource: "pods", verb: "watch"},
		{resource: "pods", verb: "patch", name: id.Pod},
		{resource: "pods", verb: "delete", name: id.Pod},
		{group: QWorkerResource.Group, resource: QWorkerResource.Resource, verb: "get", name: id.QWorker},
		{group: QWorkerResource.Group, resource: QWorkerResource.Resource, verb: "list"},
		{group: QWorkerResource.Group, resource: QWorkerResource.Resource, verb: "watch"},
	}
}

// errAccessUnknown means the API could not answer an access review (it may
// not serve them); the watches' own errors are the check then.
var errAccessUnknown = errors.New("access review unavailable")

// checkAccess asks the API (SelfSubjectAccessReview, which every
// authenticated identity may create) whether the worker may do all it
// needs, and fails naming every missing permission. When the API cannot
// answer, it lets the worker go on: the watch error handler still catches
// a refused watch.
func checkAccess(ctx context.Context, kube kubernetes.Interface, id Identity) error {
	var missing []string
	for i, delay := range accessRecheckDelays {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("check permissions: %w", ctx.Err())
			case <-time.After(delay):
			}
		}
		var err error
		missing, err = missingPermissions(ctx, kube, id)
		if errors.Is(err, errAccessUnknown) {
			return nil
		}
		if err != nil || len(missing) == 0 {
			return err
		}
	}
	return missingError(id, missing)
}

// accessRecheckDelays space the access checks: the apiserver's RBAC
// authorizer learns of a new Role or RoleBinding from its own watch, so a
// worker started together with its Role (one kubectl apply) may be refused
// for a moment. Refusals that last through these ~3.5 s are reported.
var accessRecheckDelays = []time.Duration{0, 500 * time.Millisecond, time.Second, 2 * time.Second}

// missingPermissions names what the worker's ServiceAccount may not do.
func missingPermissions(ctx context.Context, kube kubernetes.Interface, id Identity) ([]string, error) {
	var missing []string
	for _, p := range requiredPermissions(id) {
		ok, err := allowed(ctx, kube, id.Namespace, p)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, p.String())
		}
	}
	return missing, nil
}

// missingError names the permissions a worker lacks, or is nil.
func missingError(id Identity, missing []string) error {
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("the worker's ServiceAccount may not %s in namespace %s: grant them with the worker Role (docs/qworker.md, config/rbac/qworker-worker)",
		strings.Join(missing, ", "), id.Namespace)
}

func allowed(ctx context.Context, kube kubernetes.Interface, ns string, p permission) (bool, error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Group: p.group, Resource: p.resource, Verb: p.verb, Name: p.name},
	}}
	res, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("check permission %s: %w", p, err)
		}
		return false, fmt.Errorf("%w: %w", errAccessUnknown, err)
	}
	return res.Status.Allowed, nil
}
