// Package externalscalerpb is the Go code generated from KEDA's
// externalscaler.proto, kept in the repository so a build needs no protoc.
// `make generate` regenerates it with protoc, protoc-gen-go and
// protoc-gen-go-grpc from $SWELL_TESTBIN (default ~/.cache/swell/bin).
package externalscalerpb

//go:generate sh gen.sh
