package nodepoolscaler

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// TestSampleIsTheConfigFile keeps the documented sample honest: the
// NodePoolScaler in config/samples translates back to exactly the keys of
// examples/nodepool/config.yaml (less the process-only ones).
func TestSampleIsTheConfigFile(t *testing.T) {
	b, err := os.ReadFile("../../../config/samples/swell_v1alpha1_nodepoolscaler.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var nps *swellv1.NodePoolScaler
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		var obj swellv1.NodePoolScaler
		if err := yaml.UnmarshalStrict(doc, &obj); err == nil && obj.Kind == "NodePoolScaler" {
			nps = &obj
		}
	}
	if nps == nil {
		t.Fatal("no NodePoolScaler in the sample")
	}
	keys, err := nodepool.ReadKeys("../../../examples/nodepool/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mount := TokenMount{SecretName: "digitalocean", Dir: "/var/run/secrets/digitalocean"}
	if got, want := KeysFromSpec(nps.Spec, mount), withoutProcessOnly(keys); !reflect.DeepEqual(got, want) {
		t.Errorf("sample differs from the config file:\n got %v\nwant %v", got, want)
	}
}
