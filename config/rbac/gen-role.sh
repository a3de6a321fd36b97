#!/bin/sh
# Writes the controller's generated ClusterRoles from the +kubebuilder:rbac
# markers in internal/controller, one role per job so an install grants only
# the jobs it runs:
#
#   config/rbac/role.yaml            swell-controller: QWorkers, ScalerConfigs,
#                                    PodAutoscalers, metrics authentication
#   config/rbac/nodepools/role.yaml  swell-controller-nodepools: the
#                                    NodePoolScaler reconciler
#
# The other roles (secrets, kwok, any-scale-target) are written by hand: they
# are options an operator chooses, not something a reconciler's code implies.
#
# controller-gen only reads rbac markers that are not part of a declaration's
# doc comment, and the reconcilers keep theirs in the Reconciler type's doc,
# so the markers are copied into scratch packages (skipped by ./... because
# of their leading underscore) and controller-gen runs on those.
set -eu
cd "$(dirname "$0")/../.."
cg="${SWELL_TESTBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/swell/bin}/controller-gen"
scratch=config/rbac/_markers
rm -rf "$scratch"
trap 'rm -rf "$scratch"' EXIT

# gen ROLE OUTDIR FILE... writes OUTDIR/role.yaml from the markers in FILEs.
gen() {
	role=$1 out=$2
	shift 2
	dir="$scratch/$role"
	mkdir -p "$dir"
	{
		echo '// Package markers is a scratch copy of the reconcilers'"'"' RBAC markers.'
		echo 'package markers'
		echo
		grep -h '^// +kubebuilder:rbac:' "$@" | sort -u
	} >"$dir/markers.go"
	"$cg" rbac:roleName="$role" paths="./$dir" output:rbac:artifacts:config="$out"
}

base=$(find internal/controller -name '*.go' ! -name '*_test.go' ! -path 'internal/controller/nodepoolscaler/*')
nodepools=$(find internal/controller/nodepoolscaler -name '*.go' ! -name '*_test.go')
# shellcheck disable=SC2086 # word splitting of the file lists is intended
gen swell-controller config/rbac $base
# shellcheck disable=SC2086
gen swell-controller-nodepools config/rbac/nodepools $nodepools
