#!/usr/bin/env bash
# Runs make targets in order, stopping at the first failure, and prints how
# long each took. `make test` and .ci/run use it so every run reports its
# phase times.
set -uo pipefail
declare -a summary
status=0
for target in "$@"; do
  start=$(date +%s)
  echo "==> make $target"
  make --no-print-directory "$target"
  rc=$?
  summary+=("$(printf '%-10s %4ss  %s' "$target" "$(( $(date +%s) - start ))" "$([[ $rc == 0 ]] && echo ok || echo FAILED)")")
  if [[ $rc != 0 ]]; then status=$rc; break; fi
done
echo "==> phase times"
printf '    %s\n' "${summary[@]}"
exit $status
