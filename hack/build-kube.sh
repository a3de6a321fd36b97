#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from the
# k8s.io/kubernetes Go module. That module replaces every k8s.io staging module
# with a local path, so a throw-away module pins each of them to the matching
# published v0.x.y instead. Idempotent: skips work when the cache is current.
source "$(dirname "$0")/lib.sh"

bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
all_ok=1
for b in "${bins[@]}"; do stamp_ok "$b" "$KUBE_VERSION" || all_ok=0; done
if [[ $all_ok == 1 ]]; then log "kube binaries $KUBE_VERSION cached"; exit 0; fi

staging_version="v0.${KUBE_VERSION#v1.}"
work="$SWELL_CACHE/build/kube-$KUBE_VERSION"
mkdir -p "$work"
cd "$work"
log "building kube binaries $KUBE_VERSION in $work"

modfile="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
go_line="$(grep -E '^go ' "$modfile")"
{
  echo "module swell.local/kubebuild"
  echo
  echo "$go_line"
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  grep -E '=> \./staging/src/' "$modfile" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
} >go.mod
cat >main.go <<'GO'
// Package main only exists so that go mod tidy records the dependencies of
// the three control-plane commands built by hack/build-kube.sh.
package main

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	_ "k8s.io/kubernetes/cmd/kube-scheduler/app"
	_ "k8s.io/kubectl/pkg/cmd"
)

func main() {}
GO
go mod tidy
for b in "${bins[@]}"; do
  log "go build $b"
  CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$SWELL_TESTBIN/$b" "k8s.io/kubernetes/cmd/$b"
  stamp "$b" "$KUBE_VERSION"
done
log "kube binaries done"
