package brokersource

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// countingReader serves Secrets from a map and counts its reads, as the
// API server would count GETs.
type countingReader struct {
	client.Reader
	data  map[string]string // namespace/name → password
	reads int
}

func (r *countingReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	r.reads++
	v, ok := r.data[key.String()]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, key.Name)
	}
	s := obj.(*corev1.Secret)
	s.Name, s.Namespace = key.Name, key.Namespace
	s.Data = map[string][]byte{"password": []byte(v)}
	return nil
}

func TestSecretCache(t *testing.T) {
	key := types.NamespacedName{Namespace: "tenant", Name: "broker"}
	type step struct {
		after     time.Duration // clock advance before the read
		set       string        // the Secret's value from now on ("" keeps it)
		delete    bool          // the Secret is gone from now on
		want      string        // password read ("" expects NotFound)
		wantReads int           // reader GETs so far
	}
	for name, steps := range map[string][]step{
		"reads within the TTL are served from the cache": {
			{want: "v1", wantReads: 1},
			{after: 10 * time.Second, want: "v1", wantReads: 1},
			{after: 19 * time.Second, want: "v1", wantReads: 1},
		},
		"a rotated Secret takes effect after the TTL": {
			{want: "v1", wantReads: 1},
			{after: 5 * time.Second, set: "v2", want: "v1", wantReads: 1},
			{after: 25 * time.Second, want: "v2", wantReads: 2},
		},
		"a missing Secret is read again on the next pass": {
			{delete: true, wantReads: 1},
			{after: time.Second, set: "v3", want: "v3", wantReads: 2},
			{after: time.Second, want: "v3", wantReads: 2},
		},
	} {
		t.Run(name, func(t *testing.T) {
			now := time.Unix(1_000, 0)
			r := &countingReader{data: map[string]string{key.String(): "v1"}}
			c := NewSecretCache(r, 30*time.Second, func() time.Time { return now })
			for i, st := range steps {
				now = now.Add(st.after)
				if st.set != "" {
					r.data[key.String()] = st.set
				}
				if st.delete {
					delete(r.data, key.String())
				}
				got := &corev1.Secret{}
				err := c.Get(context.Background(), key, got)
				switch {
				case st.want == "" && !apierrors.IsNotFound(err):
					t.Fatalf("step %d: err %v, want NotFound", i, err)
				case st.want != "" && err != nil:
					t.Fatalf("step %d: %v", i, err)
				case st.want != "" && string(got.Data["password"]) != st.want:
					t.Fatalf("step %d: read %q, want %q", i, got.Data["password"], st.want)
				}
				if r.reads != st.wantReads {
					t.Fatalf("step %d: %d GETs, want %d", i, r.reads, st.wantReads)
				}
			}
		})
	}
}

func TestSecretCacheCopiesOut(t *testing.T) {
	key := types.NamespacedName{Namespace: "tenant", Name: "broker"}
	c := NewSecretCache(&countingReader{data: map[string]string{key.String(): "v1"}}, 0, nil)
	first := &corev1.Secret{}
	if err := c.Get(context.Background(), key, first); err != nil {
		t.Fatal(err)
	}
	first.Data["password"] = []byte("changed by a caller")
	second := &corev1.Secret{}
	if err := c.Get(context.Background(), key, second); err != nil {
		t.Fatal(err)
	}
	if got := string(second.Data["password"]); got != "v1" {
		t.Fatalf("a caller's edit reached the cache: read %q", got)
	}
}

func TestSecretCacheDropsStaleEntries(t *testing.T) {
	now := time.Unix(1_000, 0)
	r := &countingReader{data: map[string]string{"a/one": "1", "a/two": "2"}}
	c := NewSecretCache(r, 30*time.Second, func() time.Time { return now })
	ctx := context.Background()
	if err := c.Get(ctx, types.NamespacedName{Namespace: "a", Name: "one"}, &corev1.Secret{}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if err := c.Get(ctx, types.NamespacedName{Namespace: "a", Name: "two"}, &corev1.Secret{}); err != nil {
		t.Fatal(err)
	}
	if _, kept := c.entries[types.NamespacedName{Namespace: "a", Name: "one"}]; kept || len(c.entries) != 1 {
		t.Fatalf("entries after a TTL with one Secret unread: %v, want only a/two", c.entries)
	}
	if err := c.List(ctx, &corev1.SecretList{}); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("List: %v, want an error (Secrets are read by name only)", err)
	}
}
