"""Long-term storage in one run: reports from the VictoriaMetrics tier, Prometheus's CPU cost.

1. A 365-day executive report (with the previous 365 days) from the tier, loaded with two
   years of the demo's hourly history (demo.history): target <= 5 s (seed allows 30 s).
2. A 30-day executive report (with the previous 30 days) from Prometheus (the same 61
   days of history as blocks) and from the tier, side by side. Same PromQL, same samples.
3. Prometheus's CPU (utime + stime from /proc) with remote write to two tiers on and off:
   the same scrape load (prometheus-node-exporter as N targets at 1 s) and an hourly-style
   recording rule set; target <= 1.15x. The ratio and the absolute cores are both printed.
4. Bytes per sample in the tier and the projected size at 2 and 7 years for the demo's
   series count (the series the history writes).

Run: PULSE_RULES_DIR=rules .venv/bin/python bench/longterm.py [--cpu-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge import create_app  # noqa: E402
from demo import history  # noqa: E402
from tests import harness  # noqa: E402
from tests.bridge.conftest import auth, bridge_config  # noqa: E402

DAY = 86400
TARGET_365 = 5.0
CPU_TARGET = 1.15
KEEP = (".+:.+", "fitness_.+_(users|ratio)", "fitness_coach_.+", "business_subscriptions_active")


def prometheus_with_history(work: Path, end: float, days: int) -> harness.PrometheusServer:
    """A Prometheus holding the same hourly history as the tier (promtool blocks).

    The same series and samples on both sides, so the comparison is of the engines.
    promtool's rule backfill (bench/reports.py) did not finish in 10 min on the shared
    machine; the history's series are the recording rules' output already. Hourly samples
    need --query.lookback-delta=1h (Prometheus's default 5 m would see none between them).
    """
    work.mkdir(parents=True, exist_ok=True)
    stamps = history.hours(end, days)
    lines = []
    for labels, values in history.series(end, days):
        name = labels["__name__"]
        inner = ",".join(f'{k}="{v}"' for k, v in sorted({**labels, "stack": "pulse"}.items())
                         if k != "__name__")
        lines += [f"{name}{{{inner}}} {v} {t}" for t, v in zip(stamps, values, strict=True)]
    text = work / "history.om"
    text.write_text("\n".join(lines) + "\n# EOF\n")
    promtool = harness.require_binary("promtool")
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(text),
                    str(work / "data")], check=True, capture_output=True, timeout=600)
    return harness.PrometheusServer(work, extra_args=[
        "--storage.tsdb.retention.time=400d", "--query.lookback-delta=1h"]).start()


def timed_report(client, start: float, end: float, runs: int) -> tuple[float, dict]:
    """Median seconds of POST /api/analytics/reports/generate (json) and the last report."""
    body = {"reportType": "executive", "timeRange": {"start": start, "end": end},
            "includeComparisons": True, "deliveryMethod": "download", "format": "json"}
    times, report = [], {}
    for _ in range(runs):
        t0 = time.perf_counter()
        resp = client.post("/api/analytics/reports/generate", json=body, headers=auth("analyst"))
        times.append(time.perf_counter() - t0)
        assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
        report = resp.get_json()
    return statistics.median(times), report


def vm_size(url: str) -> tuple[float, float]:
    """(bytes on disk, rows) of a VictoriaMetrics from its /metrics."""
    size = rows = 0.0
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith('vm_data_size_bytes{type="storage/'):
            size += float(line.rsplit(" ", 1)[1])
        if line.startswith('vm_rows{type="storage/'):
            rows += float(line.rsplit(" ", 1)[1])
    return size, rows


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_round(work: Path, node: str, tiers: list[str], seconds: float, targets: int) -> float:
    """Cores Prometheus uses over `seconds` of steady scraping (remote write to tiers)."""
    work.mkdir(parents=True, exist_ok=True)
    rules = work / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "bench", "rules": [
        {"record": "instance:node_cpu:rate1m", "expr": "sum by (instance, job) "
         "(rate(node_cpu_seconds_total[1m]))"},
        {"record": "job:node_network_receive_bytes:rate1m",
         "expr": "sum by (job) (rate(node_network_receive_bytes_total[1m]))"},
        {"record": "job:up:sum", "expr": "sum by (job) (up)"}]}]}))
    prom = harness.PrometheusServer(work / ("on" if tiers else "off"), rule_files=[rules],
                                    targets={f"node{i}": [node] for i in range(targets)})
    doc = prom.config()
    if tiers:
        doc["remote_write"] = [{"url": f"{t}/api/v1/write", "metadata_config": {"send": False},
                                "write_relabel_configs": [{"source_labels": ["__name__"],
                                                           "regex": "|".join(KEEP),
                                                           "action": "keep"}]}
                               for t in tiers]
    prom.config = lambda: doc  # the same settings plus remote_write
    prom.start()
    try:
        time.sleep(15)  # warm up: WAL, first compaction of the head, queues started
        pid = prom.process.pid
        t0, c0 = time.monotonic(), cpu_ticks(pid)
        time.sleep(seconds)
        used = (cpu_ticks(pid) - c0) / os.sysconf("SC_CLK_TCK")
        return used / (time.monotonic() - t0)
    finally:
        prom.stop()


def main() -> None:
    """Run the four measurements and print them with their targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu-seconds", type=float, default=60)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--cpu-only", action="store_true", help="only measurement 3")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pulse-bench-longterm-"))
    end = (int(time.time()) // 3600) * 3600 - 3600
    usage = harness.VictoriaServer(work / "usage", retention="2y").start()
    business = harness.VictoriaServer(work / "business", retention="7y").start()
    try:
        if args.cpu_only:
            return cpu_part(work, usage.url, business.url, args)
        t0 = time.perf_counter()
        n = history.load(usage.url, end=end, days=730, keep=KEEP)
        history.load(business.url, end=end, days=730, keep=(".*business_.*",))
        series = sum(1 for _ in history.series(end, 1))
        print(f"setup: 730 days of hourly history, {series} series, {n} samples in the usage "
              f"tier ({time.perf_counter() - t0:.1f} s)", flush=True)
        t0 = time.perf_counter()
        prom = prometheus_with_history(work / "prom", end, 61)
        print(f"setup: Prometheus backfilled with the same 61 days ({time.perf_counter() - t0:.0f}"
              " s)", flush=True)
        tiers = {"enabled": True, "tiers": [
            {"name": "usage", "url": usage.url, "retention": "2y"},
            {"name": "business", "url": business.url, "retention": "7y",
             "keep": [".*business_.*"]}]}
        # Prometheus's retention is 15 d: a 30-day report (and its previous 30) reads the tier.
        with_tier = create_app(bridge_config(work / "b1", prometheus={"url": prom.url},
                                             alertmanager={"url": "http://127.0.0.1:9"},
                                             long_term=tiers)).test_client()
        prom_only = create_app(bridge_config(work / "b2", prometheus={
            "url": prom.url, "retention": "90d"},
            alertmanager={"url": "http://127.0.0.1:9"})).test_client()
        s365, rep = timed_report(with_tier, end - 365 * DAY, end, args.runs)
        heads = {h["metric"]: h for h in rep["headlines"]}
        print(f"365-day executive report (with previous 365 d) from the tier: {s365:.2f} s "
              f"median (target <= {TARGET_365:.0f} s: {'met' if s365 <= TARGET_365 else 'MISSED'}"
              f"); source {rep['metadata']['source']}; revenue {heads['revenue']['value']:.0f} "
              f"vs {heads['revenue']['previous']:.0f}", flush=True)
        s30p, rp = timed_report(prom_only, end - 30 * DAY, end, args.runs)
        s30t, rt = timed_report(with_tier, end - 30 * DAY, end, args.runs)
        print(f"30-day executive report (with previous 30 d): Prometheus {s30p:.2f} s "
              f"(source {rp['metadata']['source']}), tier {s30t:.2f} s "
              f"(source {rt['metadata']['source']}), ratio tier/Prometheus {s30t / s30p:.2f}")
        size, rows = vm_size(usage.url)
        per = size / rows if rows else float("nan")
        year = 8760 * series * per
        print(f"usage tier: {size / 1e6:.1f} MB for {rows:.0f} rows = {per:.2f} bytes/sample; "
              f"projected for the demo's {series} hourly series: {2 * year / 1e6:.1f} MB "
              f"(2 y), {7 * year / 1e6:.1f} MB (7 y)")
        prom.stop()
        cpu_part(work, usage.url, business.url, args)
    finally:
        usage.stop()
        business.stop()
        harness.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def cpu_part(work: Path, usage: str, business: str, args) -> None:
    """Measurement 3: Prometheus's CPU with remote write to both tiers on and off."""
    node_bin = shutil.which("prometheus-node-exporter")
    if not node_bin:
        print("CPU: prometheus-node-exporter missing (apt-get install -y "
              "prometheus-node-exporter); skipped")
        return
    port = harness.free_port()
    node = subprocess.Popen([node_bin, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        harness.wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/metrics",
                                                timeout=2).ok, timeout=30)
        addr = f"127.0.0.1:{port}"
        off = cpu_round(work / "cpu", addr, [], args.cpu_seconds, args.targets)
        on = cpu_round(work / "cpu", addr, [usage, business], args.cpu_seconds,
                       args.targets)
        print(f"Prometheus CPU, {args.targets} node-exporter targets at 1 s: remote write off "
              f"{off:.3f} cores, on (2 tiers) {on:.3f} cores, ratio {on / off:.2f}x "
              f"(target <= {CPU_TARGET}x: {'met' if on / off <= CPU_TARGET else 'MISSED'}; "
              f"+{on - off:.3f} cores absolute)")
    finally:
        node.terminate()
        node.wait(10)


if __name__ == "__main__":
    main()
