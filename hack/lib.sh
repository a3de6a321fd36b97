#!/usr/bin/env bash
# Shared settings for the hack/ scripts: pinned versions and the cache folder.
# The cache lives outside the clone so a fresh clone (CI) reuses binaries that
# an earlier run built on the same machine.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
METRICS_SERVER_VERSION="${METRICS_SERVER_VERSION:-v0.8.0}"
GOLANGCI_LINT_VERSION="${GOLANGCI_LINT_VERSION:-v2.15.0}"
CONTROLLER_TOOLS_VERSION="${CONTROLLER_TOOLS_VERSION:-v0.23.0}"

SWELL_CACHE="${SWELL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/swell}"
# SWELL_TESTBIN is where internal/testenv looks for binaries.
SWELL_TESTBIN="${SWELL_TESTBIN:-$SWELL_CACHE/bin}"
mkdir -p "$SWELL_TESTBIN"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# stamp_ok NAME VERSION: true when NAME was already built at VERSION.
stamp_ok() { [[ -x "$SWELL_TESTBIN/$1" && "$(cat "$SWELL_TESTBIN/.$1.version" 2>/dev/null)" == "$2" ]]; }
stamp() { echo "$2" >"$SWELL_TESTBIN/.$1.version"; }
