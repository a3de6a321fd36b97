#!/usr/bin/env bash
# Installs kwok (fake nodes whose pods turn Running) and writes the stage
# configuration kwok needs: the node/fast, node/heartbeat-with-lease and
# pod/fast stages its module ships, concatenated into one file.
source "$(dirname "$0")/lib.sh"

if stamp_ok kwok "$KWOK_VERSION" && [[ -s "$SWELL_TESTBIN/kwok-stages.yaml" ]]; then
  log "kwok $KWOK_VERSION cached"; exit 0
fi
log "building kwok $KWOK_VERSION"
GOBIN="$SWELL_TESTBIN" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
dir="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
out="$SWELL_TESTBIN/kwok-stages.yaml"
: >"$out"
for d in node/fast node/heartbeat-with-lease pod/fast; do
  for f in "$dir/$d"/*.yaml; do
    [[ "$(basename "$f")" == kustomization.yaml ]] && continue
    cat "$f" >>"$out"
    printf '\n---\n' >>"$out"
  done
done
stamp kwok "$KWOK_VERSION"
log "kwok done"
