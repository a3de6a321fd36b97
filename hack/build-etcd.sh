#!/usr/bin/env bash
# Builds etcd 3.6 from its Go module. Debian's etcd 3.4 lacks
# RequestWatchProgress, which the apiserver and client-go >= 0.35 rely on.
# `go install` refuses the server module (it has replace lines), so a
# throw-away module requires it and builds its main package.
source "$(dirname "$0")/lib.sh"

if stamp_ok etcd "$ETCD_VERSION"; then log "etcd $ETCD_VERSION cached"; exit 0; fi
work="$SWELL_CACHE/build/etcd-$ETCD_VERSION"
mkdir -p "$work"
cd "$work"
log "building etcd $ETCD_VERSION"
cat >go.mod <<MOD
module swell.local/etcdbuild

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
cat >tools.go <<'GO'
//go:build tools

// Package tools pins the etcd server module for hack/build-etcd.sh.
package tools

import _ "go.etcd.io/etcd/server/v3"
GO
go mod tidy
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$SWELL_TESTBIN/etcd" go.etcd.io/etcd/server/v3
stamp etcd "$ETCD_VERSION"
log "etcd done"
