package nodepoolscaler

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	swellv1 "github.com/swell-autoscaler/swell/api/swell/v1alpha1"
	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// TestTranslateRoundTrip proves that the sample config files, and one that
// uses every Swell addition, become a NodePoolScaler spec and come back as
// the same keys, and that the spec decodes to the same nodepool.Config the
// file does: the same file works for `swell nodepool` and, translated, for
// the NodePoolScaler kind.
func TestTranslateRoundTrip(t *testing.T) {
	extended := filepath.Join(t.TempDir(), "extended.yaml")
	write(t, extended, `cloud-provider: kwok
node-pool-name: gpu
node-selector: "pool=gpu,tier=game"
minimum-node-pool-size: 0
maximum-node-pool-size: 12
server-pod-label-name: swell.dev/server
server-pod-label-value: ""
buffer-slot-size: "10%"
buffer-slot-percent: 12.5
scale-loop-tick-sec: 0.5
server-cpu-resource-request: 500m
server-memory-resource-request: 1536Mi
server-resource-requests: "ephemeral-storage=10Gi,nvidia.com/gpu=1"
empty-node-expiration-sec: 2
resize-cooldown-sec: 1
kwok-node-cpu: "8"
kwok-node-memory: 32Gi
kwok-node-pods: "50"
`)
	doMount := TokenMount{SecretName: "digitalocean", Dir: "/var/run/secrets/digitalocean"}
	for _, tc := range []struct {
		name  string
		file  string
		mount TokenMount
	}{
		{"kubescaler sample (digitalocean)", "../../../examples/nodepool/config.yaml", doMount},
		{"kwok sample", "../../../examples/nodepool/kwok.yaml", TokenMount{}},
		{"every Swell addition", extended, TokenMount{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := nodepool.ReadKeys(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			want := withoutProcessOnly(keys)
			spec, err := SpecFromKeys(keys, tc.mount)
			if err != nil {
				t.Fatalf("SpecFromKeys: %v", err)
			}
			if got := KeysFromSpec(spec, tc.mount); !reflect.DeepEqual(got, want) {
				t.Errorf("keys did not round-trip:\n got %v\nwant %v", got, want)
			}
			assertSameConfig(t, want, spec)
		})
	}
}

// assertSameConfig decodes the file's keys and the spec with the one
// decoder; a token file is swapped for the token the controller would read.
func assertSameConfig(t *testing.T, keys map[string]string, spec swellv1.NodePoolScalerSpec) {
	t.Helper()
	token := ""
	if _, ok := keys[nodepool.KeyCloudProviderTokenFile]; ok {
		token = "dop_v1_example"
		delete(keys, nodepool.KeyCloudProviderTokenFile)
		keys[nodepool.KeyCloudProviderToken] = token
	}
	fromFile, err := nodepool.FromKeys(keys)
	if err != nil {
		t.Fatalf("file config: %v", err)
	}
	fromSpec, err := ConfigFromSpec(spec, token)
	if err != nil {
		t.Fatalf("spec config: %v", err)
	}
	if !reflect.DeepEqual(fromFile, fromSpec) {
		t.Errorf("spec decodes differently from the file:\nfile %+v\nspec %+v", fromFile, fromSpec)
	}
}

func TestSpecFromKeysErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keys  map[string]string
		mount TokenMount
		want  string
	}{
		{"literal token", map[string]string{nodepool.KeyCloudProviderToken: "dop_v1_x"}, TokenMount{}, "cloud-provider-token: a NodePoolScaler never holds the token"},
		{"token file without its Secret", map[string]string{nodepool.KeyCloudProviderTokenFile: "/run/tok/token"}, TokenMount{}, "cloud-provider-token-file: \"/run/tok/token\": name the Secret"},
		{"token file outside the mount", map[string]string{nodepool.KeyCloudProviderTokenFile: "/run/tok/token"}, TokenMount{SecretName: "do", Dir: "/var/run/do"}, "is not under the Secret's mount"},
		{"size not a number", map[string]string{nodepool.KeyMinNodes: "two"}, TokenMount{}, "minimum-node-pool-size: \"two\" is not a whole number"},
		{"tick not a number", map[string]string{nodepool.KeyScaleLoopTick: "10s"}, TokenMount{}, "scale-loop-tick-sec: \"10s\" is not a number"},
		{"bad quantity", map[string]string{nodepool.KeyKwokNodeMemory: "lots"}, TokenMount{}, "kwok-node-memory: \"lots\" is not a quantity"},
		{"bad resource list", map[string]string{nodepool.KeyServerResourceRequests: "gpu"}, TokenMount{}, "server-resource-requests: \"gpu\""},
		{"unknown key", map[string]string{"buffer-size": "4"}, TokenMount{}, "buffer-size: unknown key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SpecFromKeys(tc.keys, tc.mount)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigFromSpecReportsInvalidValues(t *testing.T) {
	spec, err := SpecFromKeys(map[string]string{
		nodepool.KeyCloudProvider: "kwok", nodepool.KeyNodeSelector: "pool=a",
		nodepool.KeyPodLabelName: "bad label!", nodepool.KeyServerCPURequest: "1000",
	}, TokenMount{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ConfigFromSpec(spec, ""); err == nil || !strings.Contains(err.Error(), nodepool.KeyPodLabelName) {
		t.Fatalf("want an error naming %s, got %v", nodepool.KeyPodLabelName, err)
	}
}

func withoutProcessOnly(keys map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range keys {
		if v != "" && !isProcessOnly(k) {
			out[k] = v
		}
	}
	return out
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
