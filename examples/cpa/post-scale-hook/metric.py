"""Metric gathering (per-resource): stdin is {"resource": <the target>, ...}.

Prints the value of the target's label numPods. A target without that label
fails the pass (exit 1), so nothing is scaled on a guess.
"""
import json
import sys


def main():
    spec = json.load(sys.stdin)
    labels = spec["resource"]["metadata"].get("labels") or {}
    if "numPods" not in labels:
        sys.stderr.write("the managed resource has no numPods label\n")
        sys.exit(1)
    sys.stdout.write(labels["numPods"])


if __name__ == "__main__":
    main()
