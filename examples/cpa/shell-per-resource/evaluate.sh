#!/bin/sh
# Evaluation: stdin is {"metrics": [{"resource": ..., "value": ...}], ...}.
# Answers {"targetReplicas": N} with N taken from the first metric value.
set -eu
n=$(sed -n 's/.*"metrics":\[{"resource":"[^"]*","value":"\([0-9][0-9]*\)[^"]*".*/\1/p' | head -n 1)
if [ -z "$n" ]; then
	echo "no numeric metric in the evaluation input" >&2
	exit 1
fi
printf '{"targetReplicas": %s}\n' "$n"
