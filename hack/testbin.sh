#!/usr/bin/env bash
# Fills the test-binary cache. With no argument: everything the tests need
# (Debian packages, the Kubernetes control plane, etcd, kwok, the Go tools and
# KEDA's operator and metrics adapter). With `demo`: only what `make demo`
# needs (Redis and tmux, etcd, the control plane, kwok), so a first demo does
# not wait for KEDA, metrics-server or the lint tools. Every step is
# idempotent and skips cached work, so a warm run takes seconds. Each step's
# time is printed.
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
profile="${1:-all}"
case "$profile" in
  all) steps=(install-deps build-etcd build-kube build-kwok build-tools build-keda) ;;
  demo) steps=(install-deps build-etcd build-kube build-kwok); export SWELL_DEPS=demo ;;
  *) echo "usage: $0 [all|demo]" >&2; exit 2 ;;
esac
for step in "${steps[@]}"; do
  start=$(date +%s)
  bash "$here/$step.sh"
  log "$step: $(( $(date +%s) - start ))s"
done
log "test binaries ($profile) in $SWELL_TESTBIN"
