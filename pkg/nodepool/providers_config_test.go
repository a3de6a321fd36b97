package nodepool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCloudProviderKeys checks what each HTTP cloud requires, that every
// missing key is named, and that the Hetzner cloud-init (a join
// credential) is read from its file and never printed.
func TestCloudProviderKeys(t *testing.T) {
	dir := t.TempDir()
	cloudInit := filepath.Join(dir, "cloud-init")
	if err := os.WriteFile(cloudInit, []byte("#cloud-config\nruncmd: [kubeadm join --token abcdef.0123456789abcdef]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"NODE_SELECTOR": "pool=games", "SERVER_POD_LABEL_NAME": "app", "SERVER_CPU_RESOURCE_REQUEST": "1000",
	}
	cases := []struct {
		name    string
		vars    map[string]string
		missing []string // keys the error must name; none = valid
	}{
		{"linode complete", map[string]string{"CLOUD_PROVIDER": "linode", "CLOUD_PROVIDER_TOKEN": "t", "CLUSTER_NAME": "games", "NODE_POOL_NAME": "servers"}, nil},
		{"linode bare", map[string]string{"CLOUD_PROVIDER": "linode"}, []string{KeyCloudProviderToken, KeyClusterName, KeyNodePoolName}},
		{"vultr complete", map[string]string{"CLOUD_PROVIDER": "vultr", "CLOUD_PROVIDER_TOKEN": "t", "CLUSTER_NAME": "games", "NODE_POOL_NAME": "servers"}, nil},
		{"vultr without pool", map[string]string{"CLOUD_PROVIDER": "vultr", "CLOUD_PROVIDER_TOKEN": "t", "CLUSTER_NAME": "games"}, []string{KeyNodePoolName}},
		{"hetzner complete", map[string]string{"CLOUD_PROVIDER": "hetzner", "CLOUD_PROVIDER_TOKEN": "t", "NODE_POOL_NAME": "servers",
			"HCLOUD_SERVER_TYPE": "cpx31", "HCLOUD_IMAGE": "ubuntu-24.04", "HCLOUD_CLOUD_INIT_FILE": cloudInit}, nil},
		{"hetzner bare", map[string]string{"CLOUD_PROVIDER": "hetzner"},
			[]string{KeyCloudProviderToken, KeyNodePoolName, KeyHcloudServerType, KeyHcloudImage, KeyHcloudCloudInitFile}},
		{"hetzner unreadable cloud-init", map[string]string{"CLOUD_PROVIDER": "hetzner", "CLOUD_PROVIDER_TOKEN": "t", "NODE_POOL_NAME": "servers",
			"HCLOUD_SERVER_TYPE": "cpx31", "HCLOUD_IMAGE": "ubuntu-24.04", "HCLOUD_CLOUD_INIT_FILE": filepath.Join(dir, "nope")}, []string{KeyHcloudCloudInitFile}},
		{"unknown cloud", map[string]string{"CLOUD_PROVIDER": "aws"}, []string{KeyCloudProvider}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vars := map[string]string{}
			for k, v := range base {
				vars[k] = v
			}
			for k, v := range c.vars {
				vars[k] = v
			}
			cfg, err := Load("", env(vars))
			if len(c.missing) == 0 {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				if printed := fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg); strings.Contains(printed, "abcdef") {
					t.Fatalf("printing the config shows the cloud-init: %s", printed)
				}
				return
			}
			if err == nil {
				t.Fatalf("config missing %v accepted", c.missing)
			}
			for _, k := range c.missing {
				if !strings.Contains(err.Error(), k+" (env "+EnvName(k)+")") {
					t.Errorf("error does not name %s: %v", k, err)
				}
			}
			if strings.Contains(err.Error(), "abcdef") {
				t.Fatalf("error shows the cloud-init: %v", err)
			}
		})
	}
	cfg, err := Load("", env(map[string]string{"CLOUD_PROVIDER": "hetzner", "CLOUD_PROVIDER_TOKEN": "t", "NODE_POOL_NAME": "servers",
		"HCLOUD_SERVER_TYPE": "cpx31", "HCLOUD_IMAGE": "ubuntu-24.04", "HCLOUD_CLOUD_INIT_FILE": cloudInit, "HCLOUD_LOCATION": "fsn1",
		"NODE_SELECTOR": "pool=games", "SERVER_POD_LABEL_NAME": "app", "SERVER_CPU_RESOURCE_REQUEST": "1000"}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg.Hcloud.CloudInit.Reveal(), "kubeadm join") || cfg.Hcloud.Location != "fsn1" {
		t.Fatalf("hcloud keys not read: %+v", cfg.Hcloud)
	}
}
