package procnode

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/swell-autoscaler/swell/internal/ociimage"
)

func TestImageArgv(t *testing.T) {
	cfg := v1.Config{Entrypoint: []string{"/swell"}, Cmd: []string{"--help"}}
	cases := []struct {
		name          string
		command, args []string
		want          []string
	}{
		{"image defaults", nil, nil, []string{"/swell", "--help"}},
		{"args replace cmd", nil, []string{"controller", "--leader-elect"}, []string{"/swell", "controller", "--leader-elect"}},
		{"command drops cmd", []string{"/bin/other"}, nil, []string{"/bin/other"}},
		{"command and args", []string{"/bin/other"}, []string{"x"}, []string{"/bin/other", "x"}},
	}
	for _, tc := range cases {
		got := imageArgv(&corev1.Container{Command: tc.command, Args: tc.args}, cfg)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: argv = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestImageEnvDropsPath(t *testing.T) {
	got := imageEnv(v1.Config{Env: []string{"PATH=/bin", "A=1", "B=x=y"}})
	want := [][2]string{{"A", "1"}, {"B", "x=y"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("imageEnv = %q, want %q", got, want)
	}
}

// TestImageStoreRunsEntrypoint builds an image whose entrypoint is a script,
// lets the store unpack it and runs the resolved entrypoint.
func TestImageStoreRunsEntrypoint(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "swell")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho from-image \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := ociimage.Build(ociimage.Spec{Binary: script, Version: "t", Created: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "img.tar")
	const ref = "example.test/swell:t"
	if err := ociimage.WriteArchive(img, ref, archive); err != nil {
		t.Fatal(err)
	}
	store := newImageStore(map[string]string{ref: archive}, filepath.Join(dir, "images"))
	if _, ok, err := store.get("example.test/other:1"); ok || err != nil {
		t.Fatalf("unknown image: ok=%v err=%v, want not found", ok, err)
	}
	u, ok, err := store.get(ref)
	if !ok || err != nil {
		t.Fatalf("get %s: ok=%v err=%v", ref, ok, err)
	}
	again, _, _ := store.get(ref)
	if again != u {
		t.Error("second get unpacked the image again")
	}
	argv := imageArgv(&corev1.Container{Args: []string{"version"}}, u.config)
	path, err := resolveInImage(u, argv[0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(path, u.root+string(filepath.Separator)) {
		t.Errorf("entrypoint %s resolved outside the image root %s", path, u.root)
	}
	out, err := exec.Command(path, argv[1:]...).Output()
	if err != nil || strings.TrimSpace(string(out)) != "from-image version" {
		t.Errorf("running %s: %q, %v", path, out, err)
	}
	escaped, err := resolveInImage(u, "/../../../etc/passwd")
	if err != nil || !strings.HasPrefix(escaped, u.root) {
		t.Errorf("a path climbing out of the root resolved to %s, %v", escaped, err)
	}
}

func TestPodKubeconfig(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"token": "tok-1", "ca.crt": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(podKubeconfig("https://127.0.0.1:6443", dir, "team-a"), path); err != nil {
		t.Fatal(err)
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(&clientcmd.ClientConfigLoadingRules{ExplicitPath: path}, nil)
	cfg, err := loader.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || cfg.BearerTokenFile != filepath.Join(dir, "token") || cfg.CAFile != filepath.Join(dir, "ca.crt") {
		t.Errorf("rest config host %s token file %s CA %s", cfg.Host, cfg.BearerTokenFile, cfg.CAFile)
	}
	if ns, _, err := loader.Namespace(); err != nil || ns != "team-a" {
		t.Errorf("namespace = %q, %v; want team-a", ns, err)
	}
}

func TestMountsServiceAccount(t *testing.T) {
	with := &corev1.Container{VolumeMounts: []corev1.VolumeMount{{Name: "kube-api-access-x", MountPath: ServiceAccountMountPath}}}
	without := &corev1.Container{VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}
	if !mountsServiceAccount(with) || mountsServiceAccount(without) {
		t.Error("mountsServiceAccount does not follow the token mount")
	}
}

func TestProbeChecks(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	_, portStr, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	port, _ := strconv.Atoi(portStr)
	c := &corev1.Container{Name: "c", Ports: []corev1.ContainerPort{{Name: "probes", ContainerPort: int32(port)}}}
	ctx := context.Background()
	byName := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("probes")}}}
	if err := probeCheck(byName, c)(ctx); err != nil {
		t.Errorf("httpGet /readyz on a named port: %v", err)
	}
	healthy.Store(false)
	if err := probeCheck(byName, c)(ctx); err == nil {
		t.Error("httpGet passed on a 503")
	}
	tcp := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}}}
	if err := probeCheck(tcp, c)(ctx); err != nil {
		t.Errorf("tcpSocket: %v", err)
	}
	exec := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	if probeCheck(exec, c) != nil {
		t.Error("exec probes are not run by this node, want no check")
	}
	if _, err := probePort(intstr.FromString("missing"), c); err == nil {
		t.Error("an unknown port name resolved")
	}
}
