"""Evaluation: the number the metric read is the replica count wanted.

A target without a numPods label is an error (exit 1), so the count holds
rather than dropping to zero by accident.
"""
import json
import sys


def main():
    spec = json.load(sys.stdin)
    value = spec["metrics"][0]["value"].strip()
    if not value.isdigit():
        sys.stderr.write(f"numPods label missing or not a number: {value!r}\n")
        sys.exit(1)
    json.dump({"targetReplicas": int(value)}, sys.stdout)


if __name__ == "__main__":
    main()
