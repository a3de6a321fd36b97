package qworker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// PodSpecHash is QScaler's pod-spec hash: the hex SHA-256 of the JSON
// encoding of spec.podSpec. Workers compare it with status.currentPodSpecHash
// to learn they are outdated, so it must stay byte-for-byte what QScaler
// computes for the same spec.
func PodSpecHash(spec *corev1.PodSpec) (string, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("encode podSpec: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
