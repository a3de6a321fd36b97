"""Hook: keeps its JSON input as $SWELL_CPA_EXAMPLE_DIR/<hook>.json."""
import json
import os
import sys


def main():
    data = json.load(sys.stdin)
    out = os.environ.get("SWELL_CPA_EXAMPLE_DIR", "/tmp/swell-cpa-example")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, sys.argv[1] + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
