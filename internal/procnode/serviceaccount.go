package procnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// A pod's ServiceAccount credentials, handed to its processes the way a
// process can use them. Kubelet mounts a projected token, the CA and the
// namespace at /var/run/secrets/kubernetes.io/serviceaccount, where
// client-go's in-cluster config looks; that path is fixed and a process node
// has no mount namespaces to give each pod its own. So the node requests the
// token through the TokenRequest API (bound to the pod, as kubelet does),
// writes token, ca.crt and namespace into the pod's directory with a
// kubeconfig naming them, and sets KUBECONFIG, which `swell controller`,
// kubectl and every client-go program read. The kubeconfig names the token
// by file, and the node rewrites that file before the token expires;
// client-go re-reads it.

// ServiceAccountMountPath is where the ServiceAccount admission plugin mounts
// the token; a container that mounts it gets credentials.
const ServiceAccountMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// tokenTTL is the lifetime requested for a pod's token (kubelet's default is
// one hour too); it is refreshed at 80%.
const tokenTTL = time.Hour

// APIServer is how pods on the node reach the apiserver with their own
// ServiceAccount's token.
type APIServer struct {
	// Host is the apiserver URL, e.g. https://127.0.0.1:6443.
	Host string
	// CAData is the PEM CA bundle that verifies the apiserver.
	CAData []byte
}

// mountsServiceAccount reports whether the container asked for a token.
func mountsServiceAccount(c *corev1.Container) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == ServiceAccountMountPath {
			return true
		}
	}
	return false
}

// serviceAccountKubeconfig writes the pod's credentials once and returns the
// kubeconfig path; later calls return the same path.
func (r *podRunner) serviceAccountKubeconfig(ctx context.Context) (string, error) {
	r.credsMu.Lock()
	defer r.credsMu.Unlock()
	if r.kubeconfig != "" {
		return r.kubeconfig, nil
	}
	dir := filepath.Join(r.n.cfg.WorkDir, "pods", string(r.pod.UID), "serviceaccount")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("serviceaccount dir: %w", err)
	}
	expires, err := r.writeToken(ctx, dir)
	if err != nil {
		return "", err
	}
	api := r.n.cfg.ServiceAccounts
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), api.CAData, 0o600); err != nil {
		return "", fmt.Errorf("write ca.crt: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "namespace"), []byte(r.pod.Namespace), 0o600); err != nil {
		return "", fmt.Errorf("write namespace: %w", err)
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(podKubeconfig(api.Host, dir, r.pod.Namespace), path); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	r.kubeconfig = path
	go r.refreshToken(ctx, dir, expires)
	return path, nil
}

// podKubeconfig names the files in dir, so a refreshed token is picked up.
func podKubeconfig(host, dir, namespace string) clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["apiserver"] = &clientcmdapi.Cluster{Server: host, CertificateAuthority: filepath.Join(dir, "ca.crt")}
	cfg.AuthInfos["serviceaccount"] = &clientcmdapi.AuthInfo{TokenFile: filepath.Join(dir, "token")}
	cfg.Contexts["pod"] = &clientcmdapi.Context{Cluster: "apiserver", AuthInfo: "serviceaccount", Namespace: namespace}
	cfg.CurrentContext = "pod"
	return *cfg
}

// writeToken requests a token for the pod's ServiceAccount, bound to the pod
// (it stops working once the pod is deleted), and replaces dir/token.
func (r *podRunner) writeToken(ctx context.Context, dir string) (time.Time, error) {
	sa := r.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	ttl := int64(tokenTTL / time.Second)
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: &ttl,
		BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: r.pod.Name, UID: r.pod.UID},
	}}
	res, err := r.n.cfg.Client.CoreV1().ServiceAccounts(r.pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("token for serviceaccount %s/%s: %w", r.pod.Namespace, sa, err)
	}
	tmp := filepath.Join(dir, ".token.tmp")
	if err := os.WriteFile(tmp, []byte(res.Status.Token), 0o600); err != nil {
		return time.Time{}, fmt.Errorf("write token: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "token")); err != nil {
		return time.Time{}, fmt.Errorf("replace token: %w", err)
	}
	return res.Status.ExpirationTimestamp.Time, nil
}

// refreshToken renews the token at 80% of its life until the pod's runner
// ends; a failed renewal is retried after a short wait.
func (r *podRunner) refreshToken(ctx context.Context, dir string, expires time.Time) {
	for {
		wait := time.Until(expires) * 4 / 5
		select {
		case <-ctx.Done():
			return
		case <-r.done:
			return
		case <-time.After(wait):
		}
		next, err := r.writeToken(ctx, dir)
		if err != nil {
			fmt.Fprintf(os.Stderr, "procnode: refresh token of pod %s/%s: %v\n", r.pod.Namespace, r.pod.Name, err)
			expires = time.Now().Add(10 * time.Second)
			continue
		}
		expires = next
	}
}
