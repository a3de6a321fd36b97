#!/usr/bin/env bash
# Installs the Go tools the Makefile runs (golangci-lint, controller-gen,
# protoc-gen-go, protoc-gen-go-grpc) and metrics-server into the cache, each
# pinned and built once per version.
source "$(dirname "$0")/lib.sh"

PROTOC_GEN_GO_VERSION="${PROTOC_GEN_GO_VERSION:-v1.36.12}"
PROTOC_GEN_GO_GRPC_VERSION="${PROTOC_GEN_GO_GRPC_VERSION:-v1.6.0}"

install_tool() { # name version package
  local name=$1 version=$2 pkg=$3
  if stamp_ok "$name" "$version"; then log "$name $version cached"; return; fi
  log "installing $name $version"
  GOBIN="$SWELL_TESTBIN" CGO_ENABLED=0 go install -trimpath "$pkg@$version"
  stamp "$name" "$version"
}

install_tool golangci-lint "$GOLANGCI_LINT_VERSION" github.com/golangci/golangci-lint/v2/cmd/golangci-lint
install_tool controller-gen "$CONTROLLER_TOOLS_VERSION" sigs.k8s.io/controller-tools/cmd/controller-gen
install_tool protoc-gen-go "$PROTOC_GEN_GO_VERSION" google.golang.org/protobuf/cmd/protoc-gen-go
install_tool protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION" google.golang.org/grpc/cmd/protoc-gen-go-grpc
install_tool metrics-server "$METRICS_SERVER_VERSION" sigs.k8s.io/metrics-server/cmd/metrics-server
