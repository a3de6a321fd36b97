#!/bin/sh
# Regenerates the Go code from externalscaler.proto (run by `go generate`).
set -eu
PATH="${SWELL_TESTBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/swell/bin}:$PATH"
export PATH
protoc --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  externalscaler.proto
