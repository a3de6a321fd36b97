"""Evaluation: the HTTP metric's body is a plain integer; scale to it."""
import json
import sys


def main():
    spec = json.load(sys.stdin)
    body = spec["metrics"][0]["value"].strip()
    try:
        replicas = int(body)
    except ValueError:
        sys.stderr.write(f"metric body is not an integer: {body[:80]!r}\n")
        sys.exit(1)
    json.dump({"targetReplicas": replicas}, sys.stdout)


if __name__ == "__main__":
    main()
