"""Evaluation: the numPods value the metric read is the replica count wanted.

A value that is not a whole number fails the pass (exit 1).
"""
import json
import sys


def main():
    spec = json.load(sys.stdin)
    raw = spec["metrics"][0]["value"].strip()
    try:
        wanted = int(raw)
    except ValueError:
        sys.stderr.write(f"numPods is not a whole number: {raw!r}\n")
        sys.exit(1)
    json.dump({"targetReplicas": wanted}, sys.stdout)


if __name__ == "__main__":
    main()
