package metricsauth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// reviewer answers TokenReviews from tokens (token → user name) and allows
// the SubjectAccessReviews of users in allowed, recording what it was asked.
func reviewer(tokens map[string]string, allowed map[string]bool, fail error) (Reviewer, *[]authorizationv1.SubjectAccessReviewSpec) {
	cs := fake.NewClientset()
	var asked []authorizationv1.SubjectAccessReviewSpec
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if fail != nil {
			return true, nil, fail
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenReview)
		if user, ok := tokens[tr.Spec.Token]; ok {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: user, Groups: []string{"system:authenticated"}}}
		}
		return true, tr, nil
	})
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
		asked = append(asked, sar.Spec)
		sar.Status.Allowed = allowed[sar.Spec.User]
		return true, sar, nil
	})
	return Reviewer{Tokens: cs.AuthenticationV1().TokenReviews(), Access: cs.AuthorizationV1().SubjectAccessReviews()}, &asked
}

func TestFilter(t *testing.T) {
	tokens := map[string]string{"prom-token": "system:serviceaccount:monitoring:prometheus", "other-token": "system:serviceaccount:default:other"}
	allowed := map[string]bool{"system:serviceaccount:monitoring:prometheus": true}
	for _, tc := range []struct {
		name, authorization string
		fail                error
		want                int
	}{
		{"no header", "", nil, http.StatusUnauthorized},
		{"basic auth", "Basic cHJvbTp4", nil, http.StatusUnauthorized},
		{"empty bearer", "Bearer ", nil, http.StatusUnauthorized},
		{"unknown token", "Bearer nope", nil, http.StatusUnauthorized},
		{"token without the right", "Bearer other-token", nil, http.StatusForbidden},
		{"token with get on /metrics", "Bearer prom-token", nil, http.StatusOK},
		{"apiserver unreachable", "Bearer prom-token", errors.New("connection refused"), http.StatusInternalServerError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, asked := reviewer(tokens, allowed, tc.fail)
			reached := false
			h, err := r.Filter(logr.Discard(), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				reached = true
				_, _ = w.Write([]byte("metrics"))
			}))
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tc.authorization != "" {
				req.Header.Set("Authorization", tc.authorization)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d", rec.Code, tc.want)
			}
			if reached != (tc.want == http.StatusOK) {
				t.Fatalf("handler reached = %v with status %d", reached, rec.Code)
			}
			if tc.want == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without a WWW-Authenticate challenge")
			}
			if tc.want == http.StatusForbidden || tc.want == http.StatusOK {
				if len(*asked) != 1 {
					t.Fatalf("%d access reviews, want 1", len(*asked))
				}
				spec := (*asked)[0]
				if spec.NonResourceAttributes == nil || spec.NonResourceAttributes.Path != "/metrics" || spec.NonResourceAttributes.Verb != "get" || len(spec.Groups) == 0 {
					t.Fatalf("access review %+v: want get /metrics with the token's user and groups", spec)
				}
			}
		})
	}
}
