"""Metric gathering (per-resource) from kubernetesMetrics, in CPA's shape.

stdin is {"resource": ..., "runType": ..., "kubernetesMetrics": [...]}, one
entry per kubernetesMetricSpecs item, each with "current_replicas", "spec"
and one of "resource", "pods", "object", "external". Values are in milli
units, as in CPA. Prints {"pods_average", "object", "external"} in units.
"""
import json
import os
import sys


def main():
    raw = sys.stdin.read()
    state = os.environ.get("SWELL_CPA_EXAMPLE_DIR", "/tmp/swell-cpa-example")
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, "metric.json.tmp"), "w") as f:
        f.write(raw)
    os.replace(os.path.join(state, "metric.json.tmp"), os.path.join(state, "metric.json"))

    out = {"pods_average": 0, "object": 0, "external": 0}
    for m in json.loads(raw).get("kubernetesMetrics") or []:
        if m.get("pods"):
            values = [p["Value"] for p in m["pods"]["pod_metrics_info"].values()]
            out["pods_average"] = sum(values) / len(values) / 1000 if values else 0
        elif m.get("object"):
            out["object"] = m["object"]["current"]["value"] / 1000
        elif m.get("external"):
            out["external"] = m["external"]["current"]["value"] / 1000
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
