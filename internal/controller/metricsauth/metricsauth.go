// Package metricsauth puts Kubernetes authentication and authorization in
// front of the controller's /metrics when it listens off loopback: the
// caller's bearer token is checked with a TokenReview and its identity's
// right to get the URL with a SubjectAccessReview, as kube-rbac-proxy and
// kubebuilder's secure metrics do. It uses client-go's typed clients only,
// so the controller links none of k8s.io/apiserver.
package metricsauth

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// reviewTimeout bounds each review so a slow apiserver cannot pile up
// scrapes.
const reviewTimeout = 10 * time.Second

// Reviewer asks the apiserver who a token belongs to and what it may do.
type Reviewer struct {
	Tokens authenticationv1client.TokenReviewInterface
	Access authorizationv1client.SubjectAccessReviewInterface
}

// FilterProvider is a metricsserver.Options.FilterProvider: it builds the
// review clients from the manager's config and HTTP client.
func FilterProvider(c *rest.Config, hc *http.Client) (metricsserver.Filter, error) {
	authn, err := authenticationv1client.NewForConfigAndClient(c, hc)
	if err != nil {
		return nil, fmt.Errorf("metrics auth: authentication client: %w", err)
	}
	authz, err := authorizationv1client.NewForConfigAndClient(c, hc)
	if err != nil {
		return nil, fmt.Errorf("metrics auth: authorization client: %w", err)
	}
	r := Reviewer{Tokens: authn.TokenReviews(), Access: authz.SubjectAccessReviews()}
	return r.Filter, nil
}

// Filter wraps next: 401 without a valid bearer token, 403 when the
// token's identity may not <method> the path, next otherwise.
func (r Reviewer) Filter(log logr.Logger, next http.Handler) (http.Handler, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		code, err := r.check(req)
		if err != nil {
			log.V(1).Info("metrics request refused", "remote", req.RemoteAddr, "code", code, "reason", err.Error())
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="swell-metrics"`)
			}
			http.Error(w, http.StatusText(code), code)
			return
		}
		next.ServeHTTP(w, req)
	}), nil
}

// check returns the status to answer and why when the request is refused.
func (r Reviewer) check(req *http.Request) (int, error) {
	token, ok := bearer(req)
	if !ok {
		return http.StatusUnauthorized, fmt.Errorf("no bearer token")
	}
	ctx, cancel := context.WithTimeout(req.Context(), reviewTimeout)
	defer cancel()
	tr, err := r.Tokens.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return http.StatusInternalServerError, fmt.Errorf("token review: %w", err)
	}
	if !tr.Status.Authenticated {
		return http.StatusUnauthorized, fmt.Errorf("token not authenticated: %s", tr.Status.Error)
	}
	u := tr.Status.User
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := r.Access.Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Username, Groups: u.Groups, UID: u.UID, Extra: extra,
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: req.URL.Path, Verb: strings.ToLower(req.Method)},
	}}, metav1.CreateOptions{})
	if err != nil {
		return http.StatusInternalServerError, fmt.Errorf("subject access review: %w", err)
	}
	if !sar.Status.Allowed {
		return http.StatusForbidden, fmt.Errorf("%s may not %s %s", u.Username, strings.ToLower(req.Method), req.URL.Path)
	}
	return http.StatusOK, nil
}

// bearer returns the request's bearer token.
func bearer(req *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(req.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != ""
}
