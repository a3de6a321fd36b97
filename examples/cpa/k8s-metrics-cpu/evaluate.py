"""Evaluation: as many replicas as keep average CPU utilization at 50 %."""
import json
import math
import sys

TARGET_UTILIZATION = 50


def main():
    spec = json.load(sys.stdin)
    metric = json.loads(spec["metrics"][0]["value"])
    replicas = math.ceil(metric["replicas"] * metric["utilization"] / TARGET_UTILIZATION)
    json.dump({"targetReplicas": max(replicas, 1)}, sys.stdout)


if __name__ == "__main__":
    main()
