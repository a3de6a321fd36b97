package qworker

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestPodSpecHashIsSHA256OfTheSpecJSON(t *testing.T) {
	spec := &corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "w:1"}}}
	// The JSON QScaler hashes for this spec, written out by hand.
	const js = `{"containers":[{"name":"worker","image":"w:1","resources":{}}]}`
	sum := sha256.Sum256([]byte(js))
	want := hex.EncodeToString(sum[:])
	got, err := PodSpecHash(spec)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("PodSpecHash = %s, want %s (sha256 of %s)", got, want, js)
	}
	spec.Containers[0].Image = "w:2"
	changed, _ := PodSpecHash(spec)
	if changed == got {
		t.Fatal("hash did not change when the image changed")
	}
}
