"""Metric gathering (per-resource): stdin is {"resource": <the target>, ...}.

Prints the target's label numPods (empty when it has none).
"""
import json
import sys


def main():
    spec = json.load(sys.stdin)
    labels = spec["resource"]["metadata"].get("labels") or {}
    sys.stdout.write(labels.get("numPods", ""))


if __name__ == "__main__":
    main()
