"""postScale hook: keeps the scale information it was given on stdin.

It runs after each scaling decision has been applied and stores the JSON,
re-encoded, as post_scale_data.json in $SWELL_CPA_EXAMPLE_DIR (default
/tmp/swell-cpa-example). The file is replaced in one step, so a reader
never sees half of it. Input that is not JSON fails the hook (exit 1).
"""
import json
import os
import sys


def main():
    info = json.load(sys.stdin)
    folder = os.environ.get("SWELL_CPA_EXAMPLE_DIR", "/tmp/swell-cpa-example")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "post_scale_data.json")
    with open(path + ".tmp", "w", encoding="utf-8") as out:
        json.dump(info, out)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
