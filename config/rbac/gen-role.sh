#!/bin/sh
# Writes config/rbac/role.yaml (ClusterRole swell-controller) from the
# +kubebuilder:rbac markers in internal/controller, with controller-gen:
#
#   controller-gen rbac:roleName=swell-controller paths=./internal/controller/... \
#     output:rbac:artifacts:config=config/rbac
#
# controller-gen only reads rbac markers that are not part of a declaration's
# doc comment, and the reconcilers keep theirs in the Reconciler type's doc.
# Until they are moved above a blank line, the markers are copied into a
# scratch package (skipped by ./... because of its leading underscore) and
# controller-gen runs on both.
set -eu
cd "$(dirname "$0")/../.."
cg="${SWELL_TESTBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/swell/bin}/controller-gen"
scratch=config/rbac/_markers
rm -rf "$scratch"
mkdir -p "$scratch"
trap 'rm -rf "$scratch"' EXIT
{
	echo '// Package markers is a scratch copy of the reconcilers'"'"' RBAC markers.'
	echo 'package markers'
	echo
	grep -rh --include='*.go' --exclude='*_test.go' '^// +kubebuilder:rbac:' internal/controller | sort -u
} >"$scratch/markers.go"
"$cg" rbac:roleName=swell-controller paths=./internal/controller/... paths=./$scratch output:rbac:artifacts:config=config/rbac
