package crd

import (
	"io/fs"
	"slices"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func load(t *testing.T, name string) apiextensionsv1.CustomResourceDefinitionVersion {
	t.Helper()
	b, err := fs.ReadFile(Bases, "bases/"+name)
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(b, &crd); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Group != "quickube.com" || crd.Spec.Versions[0].Name != "v1alpha1" {
		t.Fatalf("%s: want one version quickube.com/v1alpha1, got %s %+v", name, crd.Spec.Group, crd.Spec.Versions)
	}
	return crd.Spec.Versions[0]
}

func columns(v apiextensionsv1.CustomResourceDefinitionVersion) []string {
	var out []string
	for _, c := range v.AdditionalPrinterColumns {
		if c.Priority == 0 {
			out = append(out, c.Name)
		}
	}
	return out
}

// The generated CRDs keep what kubectl users and scale clients rely on; a
// marker lost in a refactor fails here, without an apiserver.
func TestGeneratedCRDs(t *testing.T) {
	qw := load(t, "quickube.com_qworkers.yaml")
	if got, want := columns(qw), []string{"Desired", "Current", "Ready", "Backlog", "Age"}; !slices.Equal(got, want) {
		t.Errorf("QWorker columns %v, want %v", got, want)
	}
	s := qw.Subresources
	if s == nil || s.Status == nil || s.Scale == nil {
		t.Fatalf("QWorker subresources %+v, want status and scale", s)
	}
	if s.Scale.SpecReplicasPath != ".spec.scaleConfig.minReplicas" || s.Scale.StatusReplicasPath != ".status.currentReplicas" ||
		s.Scale.LabelSelectorPath == nil || *s.Scale.LabelSelectorPath != ".status.selector" {
		t.Errorf("QWorker scale subresource %+v", s.Scale)
	}
	behavior := qw.Schema.OpenAPIV3Schema.Properties["spec"].Properties["scaleConfig"].Properties["behavior"]
	for _, dir := range []string{"scaleUp", "scaleDown"} {
		if p := behavior.Properties[dir].Properties["policies"]; p.MaxItems == nil {
			t.Errorf("behavior.%s.policies has no maxItems: regenerate with `make generate` (hack/generate-api.sh runs hack/crdpatch)", dir)
		}
	}

	sc := load(t, "quickube.com_scalerconfigs.yaml")
	if got, want := columns(sc), []string{"Type", "Healthy", "Age"}; !slices.Equal(got, want) {
		t.Errorf("ScalerConfig columns %v, want %v", got, want)
	}
	if sc.Subresources == nil || sc.Subresources.Status == nil {
		t.Errorf("ScalerConfig has no status subresource")
	}
}
