"""Metric gathering (per-resource) from kubernetesMetrics.

Finds the cpu Resource metric by its spec (not by position: with
requireKubernetesMetrics false, specs that failed are left out of the list)
and prints {"utilization": percent of the requests in use, "replicas": N}.
A missing cpu metric is an error (exit 1), so the count holds.
"""
import json
import sys


def cpu_metric(kubernetes_metrics):
    for m in kubernetes_metrics:
        spec = m.get("spec", {})
        if spec.get("type") == "Resource" and spec.get("resource", {}).get("name") == "cpu":
            return m
    return None


def main():
    spec = json.load(sys.stdin)
    m = cpu_metric(spec.get("kubernetesMetrics") or [])
    if m is None:
        sys.stderr.write("no cpu metric in kubernetesMetrics\n")
        sys.exit(1)
    block = m["resource"]
    used = sum(p["Value"] for p in block["pod_metrics_info"].values())
    requested = sum(block["requests"].get(name, 0) for name in block["pod_metrics_info"])
    if requested <= 0:
        sys.stderr.write("no cpu requests for the measured pods\n")
        sys.exit(1)
    json.dump({"utilization": 100 * used / requested, "replicas": m["current_replicas"]}, sys.stdout)


if __name__ == "__main__":
    main()
