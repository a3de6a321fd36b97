"""Evaluation: keep between 1 and 5 units available across the pods.

More than 5 available in total: one pod fewer than now. None available:
one pod more. Otherwise: as many as now.
"""
import json
import sys


def main():
    spec = json.load(sys.stdin)
    available = sum(json.loads(m["value"])["available"] for m in spec["metrics"])
    replicas = int(spec["resource"]["spec"]["replicas"])
    if available > 5:
        replicas -= 1
    elif available <= 0:
        replicas += 1
    json.dump({"targetReplicas": replicas}, sys.stdout)


if __name__ == "__main__":
    main()
