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
	hetzner := filepath.Join(t.TempDir(), "hetzner.yaml")
	write(t, hetzner, `cloud-provider: hetzner
cloud-provider-token-file: /var/run/secrets/hcloud/token
node-pool-name: game
node-selector: swell.dev/pool=game
server-pod-label-name: app
server-pod-label-value: game-server
server-cpu-resource-request: 1000
hcloud-server-type: cpx31
hcloud-image: ubuntu-24.04
hcloud-location: fsn1
hcloud-network: k8s
hcloud-ssh-key: ops
hcloud-cloud-init-file: /var/run/secrets/join/user-data
capacity-buffer: games/slots
`)
	hetznerMount := TokenMount{SecretName: "hcloud", Dir: "/var/run/secrets/hcloud",
		CloudInit: SecretMount{SecretName: "join", Dir: "/var/run/secrets/join"}}
	cloud := func(provider string) string {
		f := filepath.Join(t.TempDir(), provider+".yaml")
		write(t, f, `cloud-provider: `+provider+`
cloud-provider-token-file: /var/run/secrets/`+provider+`/api-token
cluster-name: prod
node-pool-name: "pool-1234"
node-selector: pool=game
server-pod-label-name: app
server-cpu-resource-request: 500m
`)
		return f
	}
	clusterAPI := filepath.Join(t.TempDir(), "clusterapi.yaml")
	write(t, clusterAPI, `cloud-provider: clusterapi
cluster-name: prod
node-pool-name: capi-system/game-md-0
node-selector: pool=game
server-pod-label-name: app
server-cpu-resource-request: 500m
`)
	none := filepath.Join(t.TempDir(), "none.yaml")
	write(t, none, `cloud-provider: none
node-selector: pool=game
server-pod-label-name: app
server-cpu-resource-request: 500m
buffer-slot-size: 6
capacity-buffer: games/headroom
`)
	for _, tc := range []struct {
		name  string
		file  string
		mount TokenMount
	}{
		{"kubescaler sample (digitalocean)", "../../../examples/nodepool/config.yaml", doMount},
		{"kwok sample", "../../../examples/nodepool/kwok.yaml", TokenMount{}},
		{"every Swell addition", extended, TokenMount{}},
		{"hetzner, every hcloud key and capacity-buffer", hetzner, hetznerMount},
		{"linode", cloud("linode"), TokenMount{SecretName: "linode", Dir: "/var/run/secrets/linode"}},
		{"vultr", cloud("vultr"), TokenMount{SecretName: "vultr", Dir: "/var/run/secrets/vultr"}},
		{"clusterapi (namespace/name)", clusterAPI, TokenMount{}},
		{"none (publish a CapacityBuffer only)", none, TokenMount{}},
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
	var sec Secrets
	if _, ok := keys[nodepool.KeyCloudProviderTokenFile]; ok {
		sec.Token = "dop_v1_example"
		delete(keys, nodepool.KeyCloudProviderTokenFile)
		keys[nodepool.KeyCloudProviderToken] = sec.Token
	}
	if _, ok := keys[nodepool.KeyHcloudCloudInitFile]; ok {
		sec.CloudInit = []byte("#cloud-config\nruncmd: [kubeadm join --token abc.def]\n")
		f := filepath.Join(t.TempDir(), "user-data")
		write(t, f, string(sec.CloudInit))
		keys[nodepool.KeyHcloudCloudInitFile] = f
	}
	fromFile, err := nodepool.FromKeys(keys)
	if err != nil {
		t.Fatalf("file config: %v", err)
	}
	fromSpec, err := ConfigFromSpec(spec, sec)
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
		{"cloud-init file without its Secret", map[string]string{nodepool.KeyHcloudCloudInitFile: "/run/join/user-data"}, TokenMount{}, "hcloud-cloud-init-file: \"/run/join/user-data\": name the Secret mounted there to translate it into hcloudCloudInitSecretRef"},
		{"cloud-init file outside the mount", map[string]string{nodepool.KeyHcloudCloudInitFile: "/run/join/user-data"}, TokenMount{CloudInit: SecretMount{SecretName: "join", Dir: "/var/run/join"}}, "is not under the Secret's mount"},
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
	if _, err := ConfigFromSpec(spec, Secrets{}); err == nil || !strings.Contains(err.Error(), nodepool.KeyPodLabelName) {
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

// TestEveryKeyTranslates walks every key `swell nodepool` accepts
// (nodepool.Keys) and fails for one SpecFromKeys does not translate or
// KeysFromSpec does not give back, so the kind and the file cannot drift
// apart again when a key is added.
func TestEveryKeyTranslates(t *testing.T) {
	mount := TokenMount{SecretName: "tok", Dir: "/run/tok", CloudInit: SecretMount{SecretName: "init", Dir: "/run/init"}}
	// A valid value per key whose text round-trips; keys missing here fail.
	values := map[string]string{
		nodepool.KeyCloudProvider: "hetzner", nodepool.KeyCloudProviderTokenFile: "/run/tok/token",
		nodepool.KeyClusterName: "prod", nodepool.KeyNodePoolName: "ns/md-0", nodepool.KeyNodeSelector: "pool=a",
		nodepool.KeyMinNodes: "1", nodepool.KeyMaxNodes: "9", nodepool.KeyPodLabelName: "app",
		nodepool.KeyPodLabelValue: "server", nodepool.KeyBufferSlotSize: "10%", nodepool.KeyScaleLoopTick: "5",
		nodepool.KeyServerCPURequest: "1000", nodepool.KeyEmptyNodeExpiration: "60", nodepool.KeyBufferSlotPercent: "5",
		nodepool.KeyServerMemoryRequest: "2Gi", nodepool.KeyServerResourceRequests: "nvidia.com/gpu=1",
		nodepool.KeyResizeCooldown: "3", nodepool.KeyKwokNodeCPU: "8", nodepool.KeyKwokNodeMemory: "32Gi",
		nodepool.KeyKwokNodePods: "50", nodepool.KeyCapacityBuffer: "games/slots",
		nodepool.KeyHcloudServerType: "cpx31", nodepool.KeyHcloudImage: "ubuntu-24.04", nodepool.KeyHcloudLocation: "fsn1",
		nodepool.KeyHcloudNetwork: "k8s", nodepool.KeyHcloudSSHKey: "ops", nodepool.KeyHcloudCloudInitFile: "/run/init/user-data",
	}
	literal := map[string]bool{nodepool.KeyCloudProviderToken: true} // refused on purpose: Secrets only
	for _, k := range nodepool.Keys() {
		t.Run(k, func(t *testing.T) {
			switch {
			case isProcessOnly(k):
				spec, err := SpecFromKeys(map[string]string{k: "x"}, mount)
				if err != nil || !reflect.DeepEqual(spec, swellv1.NodePoolScalerSpec{}) {
					t.Fatalf("process-only key %s: spec %+v, err %v; want it dropped", k, spec, err)
				}
				return
			case literal[k]:
				if _, err := SpecFromKeys(map[string]string{k: "secret"}, mount); err == nil || !strings.Contains(err.Error(), "Secret") {
					t.Fatalf("%s: want a refusal pointing at a Secret, got %v", k, err)
				}
				return
			}
			v, ok := values[k]
			if !ok {
				t.Fatalf("key %s has no test value: add its NodePoolScaler field, translation and a value here", k)
			}
			spec, err := SpecFromKeys(map[string]string{k: v}, mount)
			if err != nil {
				t.Fatalf("SpecFromKeys(%s=%s): %v", k, v, err)
			}
			if reflect.DeepEqual(spec, swellv1.NodePoolScalerSpec{}) {
				t.Fatalf("%s set no spec field", k)
			}
			if got := KeysFromSpec(spec, mount); !reflect.DeepEqual(got, map[string]string{k: v}) {
				t.Fatalf("%s=%s came back as %v", k, v, got)
			}
		})
	}
}

// TestConfigFromSpecSecrets shows the Secrets reaching the decoder: the
// cloud-init as hetzner's user data, the token as the token, and a
// missing cloud-init refused naming the key.
func TestConfigFromSpecSecrets(t *testing.T) {
	spec := swellv1.NodePoolScalerSpec{
		CloudProvider: swellv1.ProviderHetzner, NodePoolName: "game", NodeSelector: "pool=game",
		ServerPodLabelName: "app", ServerCPUResourceRequest: intOrString("1000"),
		CloudProviderTokenSecretRef: &swellv1.SecretKeyRef{Name: "hcloud"},
		HcloudServerType:            "cpx31", HcloudImage: "ubuntu-24.04",
		HcloudCloudInitSecretRef: &swellv1.CloudInitSecretRef{Name: "join"},
	}
	cfg, err := ConfigFromSpec(spec, Secrets{Token: "hc-token", CloudInit: []byte("#cloud-config\n")})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CloudProviderToken.Reveal() != "hc-token" || cfg.Hcloud.CloudInit.Reveal() != "#cloud-config\n" {
		t.Fatalf("token %q, cloud-init %q", cfg.CloudProviderToken.Reveal(), cfg.Hcloud.CloudInit.Reveal())
	}
	_, err = ConfigFromSpec(spec, Secrets{Token: "hc-token"})
	if err == nil || !strings.Contains(err.Error(), nodepool.KeyHcloudCloudInitFile) {
		t.Fatalf("empty cloud-init: want an error naming %s, got %v", nodepool.KeyHcloudCloudInitFile, err)
	}
}

// TestFingerprintFollowsEverySecret: a rotated token or cloud-init means a
// new runner (the provider holds both), the same values the same runner.
func TestFingerprintFollowsEverySecret(t *testing.T) {
	base := Secrets{Token: "a", CloudInit: []byte("#cloud-config\n")}
	same := fingerprint(3, Secrets{Token: "a", CloudInit: []byte("#cloud-config\n")})
	if fingerprint(3, base) != same {
		t.Fatal("equal secrets gave different fingerprints")
	}
	for name, other := range map[string]string{
		"token rotated":      fingerprint(3, Secrets{Token: "b", CloudInit: base.CloudInit}),
		"cloud-init changed": fingerprint(3, Secrets{Token: "a", CloudInit: []byte("#cloud-config\nx\n")}),
		"bytes moved across": fingerprint(3, Secrets{Token: "a#", CloudInit: []byte("cloud-config\n")}),
		"new generation":     fingerprint(4, base),
	} {
		if other == same {
			t.Errorf("%s: fingerprint unchanged", name)
		}
	}
	if strings.Contains(same, "cloud-config") {
		t.Errorf("fingerprint %q holds a secret", same)
	}
}
