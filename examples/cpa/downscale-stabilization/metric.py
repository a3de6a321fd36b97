"""Metric gathering (per-pod): stdin is {"resource": <a Pod>, ...}.

Prints {"value": v, "available": 5 - v, "min": 0, "max": 5} for the pod,
where v is its annotation swell.dev/example-value (0 when unset).
"""
import json
import sys

MAX = 5


def main():
    pod = json.load(sys.stdin)["resource"]
    annotations = pod["metadata"].get("annotations") or {}
    value = min(max(int(annotations.get("swell.dev/example-value", "0")), 0), MAX)
    json.dump({"value": value, "available": MAX - value, "min": 0, "max": MAX}, sys.stdout)


if __name__ == "__main__":
    main()
