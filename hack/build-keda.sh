#!/usr/bin/env bash
# Builds KEDA's operator (keda-operator) and metrics adapter (keda-adapter)
# from the github.com/kedacore/keda/v2 Go module, so the e2e suite can show
# KEDA itself scaling through `swell external-scaler`. The build runs inside
# the downloaded module, with KEDA's own go.mod and go.sum (its replace
# directive rules out `go install mod@version`), so the binaries are the
# dependency set KEDA released. Idempotent: skips work when the cache is
# current. internal/testenv reads the .keda-operator.version stamp to load
# the CRDs of the same version from the module cache.
source "$(dirname "$0")/lib.sh"

KEDA_VERSION="${KEDA_VERSION:-v2.21.0}"
keda_module=github.com/kedacore/keda/v2

bins=(keda-operator keda-adapter)
all_ok=1
for b in "${bins[@]}"; do stamp_ok "$b" "$KEDA_VERSION" || all_ok=0; done
if [[ $all_ok == 1 ]]; then log "keda binaries $KEDA_VERSION cached"; exit 0; fi

dir="$(GOFLAGS=-mod=mod go mod download -json "$keda_module@$KEDA_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
if [[ -z $dir || ! -d $dir/cmd/operator ]]; then
  log "cannot find $keda_module@$KEDA_VERSION in the module cache"
  exit 1
fi
cd "$dir"
log "building keda binaries $KEDA_VERSION from $dir"
ldflags="-s -w -X $keda_module/version.Version=$KEDA_VERSION"
build() { # binary package
  log "go build $1"
  GOWORK=off GOFLAGS=-mod=readonly CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$SWELL_TESTBIN/$1" "./$2"
  stamp "$1" "$KEDA_VERSION"
}
build keda-operator cmd/operator
build keda-adapter cmd/adapter
log "keda binaries done"
