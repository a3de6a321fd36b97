// Package egress is the policy for outbound calls whose destination a user
// chose: the http methods of a PodAutoscaler, the HTTP JSON and Prometheus
// sources and broker addresses in external-scaler metadata, and (when the
// operator turns it on) `swell cpa`'s http methods.
//
// Swell runs next to the cluster's internals with its own network identity,
// so a URL written by a tenant must not become a way to reach what the
// tenant cannot: the cloud metadata service on a link-local address, the
// node's and Swell's own loopback listeners, pods and services on the
// cluster's private ranges, and the Kubernetes API server. A Policy refuses
// those unless the operator allows them (a flag of the binary, never a field
// of a namespaced object).
//
// The check runs in the dialer's Control hook, on the address actually
// being connected after name resolution, so a name that resolves to a
// refused address, a redirect to one, and a DNS answer that changes between
// a check and a connect (rebinding) are all refused the same way.
package egress
