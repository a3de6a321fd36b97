#!/usr/bin/env bash
# Fills the test-binary cache: Debian packages, the Kubernetes control plane,
# etcd, kwok, the Go tools and KEDA (operator and metrics adapter). Every
# step is idempotent and skips cached work, so a warm run takes seconds.
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
for step in install-deps build-etcd build-kube build-kwok build-tools build-keda; do
  start=$(date +%s)
  bash "$here/$step.sh"
  log "$step: $(( $(date +%s) - start ))s"
done
log "test binaries in $SWELL_TESTBIN"
