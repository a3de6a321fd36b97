"""Metric gathering (per-pod): stdin is {"resource": <a Pod>, "runType": ...}.

Prints {"pod": <name>, "load": <shared load>} for that pod.
"""
import json
import os
import sys


def main():
    spec = json.load(sys.stdin)
    pod = spec["resource"]["metadata"]["name"]
    path = os.path.join(os.environ.get("SWELL_CPA_EXAMPLE_DIR", "/tmp/swell-cpa-example"), "load")
    try:
        with open(path) as f:
            load = int(f.read().strip() or 0)
    except FileNotFoundError:
        load = 0
    json.dump({"pod": pod, "load": load}, sys.stdout)


if __name__ == "__main__":
    main()
