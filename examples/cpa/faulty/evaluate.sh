#!/bin/sh
# An evaluator that misbehaves on demand, to see how Swell reports failures.
# $SWELL_CPA_EXAMPLE_DIR/mode selects: sleep (hangs past any timeout), fail
# (exit 3), garbage (not JSON), empty ({} without targetReplicas); anything
# else behaves like shell-per-resource/evaluate.sh.
set -eu
dir=${SWELL_CPA_EXAMPLE_DIR:-/tmp/swell-cpa-example}
mode=$(cat "$dir/mode" 2>/dev/null || echo ok)
case $mode in
sleep) sleep 30 ;;
fail)
	echo "evaluation failed on purpose" >&2
	exit 3
	;;
garbage) echo "this is not JSON" ;;
empty) echo '{}' ;;
*) exec /bin/sh "$(dirname "$0")/../shell-per-resource/evaluate.sh" ;;
esac
