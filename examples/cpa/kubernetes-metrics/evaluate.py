"""Evaluation: each metric asks for a replica count (the Pods metric's
average per pod read as a count, one replica per 20 of the Object metric,
one per 10 of the External metric); the largest wins, as in an HPA with
several metrics. Answers {"targetReplicas": N}.
"""
import json
import math
import sys


def main():
    spec = json.load(sys.stdin)
    m = json.loads(spec["metrics"][0]["value"])
    want = max(
        math.ceil(m["pods_average"] / 1),
        math.ceil(m["object"] / 20),
        math.ceil(m["external"] / 10),
    )
    json.dump({"targetReplicas": want}, sys.stdout)


if __name__ == "__main__":
    main()
