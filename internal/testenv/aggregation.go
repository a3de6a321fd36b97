package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
)

// aggregatedService is an extension apiserver listening at IP:Port, reached
// by the aggregator through the Service Namespace/Name. CABundle pins its
// serving certificate; empty skips verification (metrics-server makes its
// own certificate at start, so there is nothing to pin).
type aggregatedService struct {
	Namespace, Name string
	IP              net.IP
	Port            int
	CABundle        []byte
}

// aggregatedAPI is one group/version an APIService routes to a Service.
type aggregatedAPI struct{ Group, Version string }

// registerAggregatedAPI creates the Service, its EndpointSlice and one
// APIService per group/version, routing them to the extension apiserver.
func (e *Env) registerAggregatedAPI(ctx context.Context, s aggregatedService, apis ...aggregatedAPI) error {
	if err := e.routeToService(ctx, s); err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(e.RESTConfig)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	for _, api := range apis {
		if _, err := dyn.Resource(apiServiceGVR).Create(ctx, apiService(s, api), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s.%s APIService: %w", api.Version, api.Group, err)
		}
	}
	return nil
}

// routeToService creates the Service s names and (re)places its
// EndpointSlice, so the aggregator reaches s.IP:s.Port; nothing else in the
// test cluster maintains endpoints for a process outside it.
func (e *Env) routeToService(ctx context.Context, s aggregatedService) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(int32(s.Port)),
		}}},
	}
	if _, err := e.Clientset.CoreV1().Services(s.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create %s service: %w", s.Name, err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.Name, Namespace: s.Namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: s.Name,
				discoveryv1.LabelManagedBy:   "swell-testenv",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{s.IP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(s.Port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	slices := e.Clientset.DiscoveryV1().EndpointSlices(s.Namespace)
	if err := slices.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("replace %s endpoint slice: %w", s.Name, err)
	}
	if _, err := slices.Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create %s endpoint slice: %w", s.Name, err)
	}
	return nil
}

func apiService(s aggregatedService, api aggregatedAPI) *unstructured.Unstructured {
	spec := map[string]any{
		"group":                api.Group,
		"version":              api.Version,
		"service":              map[string]any{"namespace": s.Namespace, "name": s.Name, "port": int64(443)},
		"groupPriorityMinimum": int64(100),
		"versionPriority":      int64(100),
	}
	if len(s.CABundle) > 0 {
		spec["caBundle"] = s.CABundle
	} else {
		// Test environment only: see aggregatedService.
		spec["insecureSkipTLSVerify"] = true
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]any{"name": api.Version + "." + api.Group},
		"spec":       spec,
	}}
}

// apiserverClient is an HTTP client trusting the apiserver's CA, for
// readiness checks through it.
func (e *Env) apiserverClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(e.RESTConfig.CAData) {
		return nil, fmt.Errorf("the apiserver CA in the REST config is not PEM")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}, nil
}
