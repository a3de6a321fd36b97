// Package rbac holds the controller's RBAC manifests. role.yaml is generated
// by controller-gen from the +kubebuilder:rbac markers in internal/controller
// (see gen-role.sh); the other files are written by hand.
package rbac

//go:generate sh gen-role.sh
