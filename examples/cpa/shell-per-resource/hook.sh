#!/bin/sh
# Hook: keeps the JSON it was given as $SWELL_CPA_EXAMPLE_DIR/<hook>.json, so
# you can see exactly what each hook receives. $1 names the hook.
set -eu
dir=${SWELL_CPA_EXAMPLE_DIR:-/tmp/swell-cpa-example}
mkdir -p "$dir"
cat >"$dir/$1.json.tmp"
mv "$dir/$1.json.tmp" "$dir/$1.json"
