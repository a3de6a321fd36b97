#!/usr/bin/env bash
# Regenerates api/quickube/v1alpha1's deepcopy code and config/crd/bases from
# the kubebuilder markers (run by `make generate` through go:generate in that
# package). Never edit the generated files by hand: change the types and rerun.
source "$(dirname "$0")/lib.sh"
root="$(cd "$(dirname "$0")/.." && pwd)"
cg="$SWELL_TESTBIN/controller-gen"
if ! stamp_ok controller-gen "$CONTROLLER_TOOLS_VERSION"; then
  log "controller-gen $CONTROLLER_TOOLS_VERSION is not in $SWELL_TESTBIN; run: bash hack/build-tools.sh"
  exit 1
fi
cd "$root/api/quickube/v1alpha1"
"$cg" object paths=.
# scalingFactor is a float64, a "dangerous type" to controller-gen, on
# purpose: only a number schema takes QScaler's integers and Swell's fractions.
"$cg" crd:allowDangerousTypes=true paths=. output:crd:artifacts:config="$root/config/crd/bases"
# The HPA behavior type comes from k8s.io/api; bound its policy lists so the
# CEL rules that check each policy fit the apiserver's cost budget.
go run "$root/hack/crdpatch" "$root/config/crd/bases/quickube.com_qworkers.yaml" \
  spec.scaleConfig.behavior.scaleUp.policies=10 \
  spec.scaleConfig.behavior.scaleDown.policies=10
