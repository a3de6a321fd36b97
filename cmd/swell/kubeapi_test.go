package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/swell-autoscaler/swell/pkg/nodepool"
)

// writeKubeconfig writes a kubeconfig for a made-up server; building a
// client config never contacts it.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:6443"}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestKubeAPILimitsLandInRESTConfig parses each command's real flags and
// builds its client config the way its RunE does.
func TestKubeAPILimitsLandInRESTConfig(t *testing.T) {
	kubeconfig := writeKubeconfig(t)
	commands := map[string]func(args []string) (*rest.Config, error){
		"controller": func(args []string) (*rest.Config, error) {
			o := &controllerOptions{}
			if err := newControllerCmdWith(o).ParseFlags(append([]string{"--kubeconfig", kubeconfig}, args...)); err != nil {
				return nil, err
			}
			return o.clientConfig()
		},
		"cpa": func(args []string) (*rest.Config, error) {
			o := &cpaOptions{}
			if err := newCPACmdWith(o).ParseFlags(append([]string{"--kubeconfig", kubeconfig}, args...)); err != nil {
				return nil, err
			}
			return o.clientConfig()
		},
		"nodepool": func(args []string) (*rest.Config, error) {
			o := &nodePoolOptions{}
			if err := newNodePoolCmdWith(o).ParseFlags(args); err != nil {
				return nil, err
			}
			return o.clientConfig(nodepool.Config{KubeConfigPath: kubeconfig})
		},
	}
	cases := []struct {
		name      string
		args      []string
		wantQPS   float32
		wantBurst int
		wantErr   string
	}{
		{"defaults", nil, 50, 100, ""},
		{"flags", []string{"--kube-api-qps=7.5", "--kube-api-burst=15"}, 7.5, 15, ""},
		{"zero qps refused", []string{"--kube-api-qps=0"}, 0, 0, "--kube-api-qps"},
		{"zero burst refused", []string{"--kube-api-burst=0"}, 0, 0, "--kube-api-burst"},
	}
	for name, build := range commands {
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				cfg, err := build(tc.args)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want one naming %s", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if cfg.QPS != tc.wantQPS || cfg.Burst != tc.wantBurst {
					t.Fatalf("QPS/Burst = %v/%d, want %v/%d", cfg.QPS, cfg.Burst, tc.wantQPS, tc.wantBurst)
				}
			})
		}
	}
}

// TestListenerDefaults pins each listener's documented default address:
// loopback, except the controller's probes (kubelet probes the pod IP).
func TestListenerDefaults(t *testing.T) {
	root := newRootCmd()
	for _, tc := range []struct {
		cmd, flag, want string
	}{
		{"controller", "metrics-bind-address", "127.0.0.1:8080"},
		{"controller", "health-probe-bind-address", ":8081"},
		{"cpa", "metrics-bind-address", "127.0.0.1:8080"},
		{"cpa", "health-probe-bind-address", "127.0.0.1:8081"},
		{"external-scaler", "metrics-addr", "127.0.0.1:9090"},
	} {
		sub, _, err := root.Find([]string{tc.cmd})
		if err != nil {
			t.Fatal(err)
		}
		f := sub.Flags().Lookup(tc.flag)
		if f == nil {
			t.Fatalf("%s has no --%s", tc.cmd, tc.flag)
		}
		if f.DefValue != tc.want {
			t.Errorf("%s --%s default %q, want %q", tc.cmd, tc.flag, f.DefValue, tc.want)
		}
	}
}

func TestCPAAPIAccess(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		args      []string
		env       string
		wantToken string
		wantErr   string
	}{
		{"none", nil, "", "", ""},
		{"file", []string{"--api-token-file", tokenFile}, "", "from-file", ""},
		{"environment", nil, "from-env", "from-env", ""},
		{"both refused", []string{"--api-token-file", tokenFile}, "from-env", "", "both set"},
		{"empty file refused", []string{"--api-token-file", empty}, "", "", "empty"},
		{"missing file", []string{"--api-token-file", filepath.Join(dir, "nope")}, "", "", "--api-token-file"},
		{"negative rate", []string{"--api-rate=-1"}, "", "", "--api-rate"},
		{"zero burst", []string{"--api-burst=0"}, "", "", "--api-burst"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &cpaOptions{}
			if err := newCPACmdWith(o).ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			access, err := o.apiAccess(func(k string) string {
				if k == cpaAPITokenEnv {
					return tc.env
				}
				return ""
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if access.Token != tc.wantToken || access.Rate != 1 || access.Burst != 5 {
				t.Fatalf("access = %+v, want token %q, rate 1, burst 5", access, tc.wantToken)
			}
		})
	}
}

// TestCPAEgressPolicyFlags: swell cpa's http methods are unrestricted unless
// --egress-restrict; allow/deny without it is a start-up error, not a
// silently ignored flag; with it, the API server from the kubeconfig is
// refused.
func TestCPAEgressPolicyFlags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		o          cpaOptions
		wantErr    string
		wantPolicy bool
	}{
		{name: "default: none"},
		{name: "allow without restrict", o: cpaOptions{egressAllow: []string{"10.0.0.0/8"}}, wantErr: "need --egress-restrict"},
		{name: "restricted", o: cpaOptions{egressRestrict: true, egressAllow: []string{"10.0.0.0/8"}}, wantPolicy: true},
		{name: "bad entry", o: cpaOptions{egressRestrict: true, egressDeny: []string{"nope"}}, wantErr: "egress deny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.o.egressPolicy(context.Background(), "https://10.1.2.3:6443")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("egressPolicy error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (p != nil) != tc.wantPolicy {
				t.Fatalf("policy = %v, want one: %v", p, tc.wantPolicy)
			}
			if p != nil {
				if err := p.Check("", netip.MustParseAddrPort("10.1.2.3:6443")); err == nil {
					t.Error("the API server was allowed through an allowed range")
				}
			}
		})
	}
}
