#!/bin/sh
# Metric gathering (per-resource): stdin is {"resource": <the Deployment>,
# "runType": ...}. Prints the count the annotation swell.dev/example-replicas
# asks for; a missing annotation is an error (non-zero exit).
set -eu
n=$(sed -n 's/.*"swell\.dev\/example-replicas":"\([0-9][0-9]*\)".*/\1/p' | head -n 1)
if [ -z "$n" ]; then
	echo "annotation swell.dev/example-replicas missing or not a number" >&2
	exit 1
fi
echo "$n"
