// Package v1alpha1 is QScaler's API (group quickube.com, version v1alpha1),
// served by Swell so that QScaler manifests apply unchanged: QWorker (a pool
// of queue workers) and ScalerConfig (how to reach the broker). Field names
// and meanings are QScaler's; Swell's additions are optional fields.
//
// +kubebuilder:object:generate=true
// +groupName=quickube.com
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Generated code (zz_generated.deepcopy.go, config/crd/bases) comes from the
// markers in this package; `make generate` reruns it.
//
//go:generate bash ../../../hack/generate-api.sh

var (
	// GroupVersion is QScaler's group and version.
	GroupVersion = schema.GroupVersion{Group: "quickube.com", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this group; the package depends
	// only on apimachinery so any client can import it.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this group to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &QWorker{}, &QWorkerList{}, &ScalerConfig{}, &ScalerConfigList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
