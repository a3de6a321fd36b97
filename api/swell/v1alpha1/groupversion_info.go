// Package v1alpha1 is Swell's own API (group swell.dev, version v1alpha1).
// It holds NodePoolScaler, the in-cluster form of `swell nodepool`: the
// same kubescaler keys in camelCase, run by the controller for each object.
// The package depends only on apimachinery so any client can import it.
//
// +kubebuilder:object:generate=true
// +groupName=swell.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The *Sec fields and bufferSlotPercent are floats (a "dangerous type" to
// controller-gen) on purpose: kubescaler's seconds accept fractions ("0.5"),
// and only a number schema takes both integers and fractions.
//
//go:generate sh -c "$SWELL_TESTBIN/controller-gen object paths=. && $SWELL_TESTBIN/controller-gen crd:allowDangerousTypes=true paths=. output:crd:artifacts:config=../../../config/crd/bases"

var (
	// GroupVersion is Swell's group and version.
	GroupVersion = schema.GroupVersion{Group: "swell.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this group.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this group to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &NodePoolScaler{}, &NodePoolScalerList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
