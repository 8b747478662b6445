"""Rule apply by API against its floor, in one session with one real Prometheus.

  floor          write the same rule file (temp + fsync + rename) in the rule directory,
                 POST /-/reload, poll /api/v1/rules until the group shows
  api            POST /api/analytics/alerts/rules to a live bridge process (it validates,
                 writes, reloads and confirms the group in /api/v1/rules before answering)
  floor+promtool the floor plus `promtool check rules` on the file (what a raw-PromQL rule
                 must also pay)
  api expr       the API with a raw `expr` (the bridge runs promtool for it)
  in process     the same create through the app in this process (the bridge's own work,
                 without the HTTP hop to it)

Prints medians of interleaved runs and the ratios api/floor (target <= 1.3) and
api-expr/(floor+promtool), then the throughput of sequential creates; then 40 creates from
8 concurrent clients (the bridge commits concurrent changes in batches, one reload each)
against 40 sequential API creates (target >= 4x) and the sequential floor of one file + one
reload each (target >= 3x); then the floor and the API side by side with 200 and 1,000
groups loaded (the reload's cost grows with the rule set).
Run: .venv/bin/python bench/rules_api.py [--runs 25] [--scale 200,1000]
"""

from __future__ import annotations

import argparse
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

from bridge.services.rule_compiler import compile_rule, render_groups, validate_request  # noqa: E402
from pulse import fileio  # noqa: E402
from tests import harness  # noqa: E402

TOKEN = "bench-admin-token-0123456789"


def request_body(i: int, expr: bool = False) -> dict:
    body = {
        "name": f"BenchRule{i}", "description": "Bench rule.",
        "metric": "up",
        "condition": {"operator": "<", "aggregation": "min", "window": "1m", "for": "1m",
                      "groupBy": ["job"]},
        "thresholds": [{"severity": "warning", "value": 1}],
        "notificationChannels": ["bench"],
    }
    if expr:
        del body["metric"]
        body["expr"] = 'min by (job) (up{job!="nothing"})'
    return body


def static_groups(directory: Path, count: int) -> None:
    """count rule groups like a real installation's, so reloads cost what they would."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        group = {"name": f"static-{i}", "rules": [
            {"record": f"bench:static_{i}:sum", "expr": f"sum(up) + {i}"},
            {"alert": f"BenchStatic{i}", "expr": f"sum(up) < -{i}", "for": "5m",
             "labels": {"severity": "info", "team": "oncall"}}]}
        (directory / f"static-{i}.rules.yml").write_text(yaml.safe_dump({"groups": [group]}))


def floor_once(prom_url: str, rules_dir: Path, i: int, promtool: bool) -> float:
    """Seconds for write + (promtool) + reload + poll until the group is listed."""
    req = validate_request(request_body(i), {"bench"})
    group = compile_rule(f"f{i:012x}", req)
    text = render_groups([group])
    path = rules_dir / f"floor-{i}.yml"
    start = time.perf_counter()
    tmp = fileio.write_temp(path, text)
    if promtool:
        subprocess.run(["promtool", "check", "rules", str(tmp)], check=True,
                       capture_output=True)
    fileio.replace(tmp, path)
    resp = requests.post(f"{prom_url}/-/reload", timeout=30)
    resp.raise_for_status()
    while True:
        groups = requests.get(f"{prom_url}/api/v1/rules", timeout=30).json()["data"]["groups"]
        if any(g["name"] == group["name"] for g in groups):
            return time.perf_counter() - start
        time.sleep(0.005)


def api_once(bridge_url: str, i: int, expr: bool) -> float:
    """Seconds for the API create (answered only once Prometheus lists the group)."""
    start = time.perf_counter()
    resp = requests.post(f"{bridge_url}/api/analytics/alerts/rules",
                         json=request_body(i, expr),
                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    elapsed = time.perf_counter() - start
    if resp.status_code != 201:
        raise SystemExit(f"create failed: {resp.status_code} {resp.text}")
    return elapsed


def concurrent(args, prom_url: str, rules_dir: Path, bridge_url: str) -> None:
    """40 creates from 8 clients vs 40 sequential creates vs the sequential floor."""
    from concurrent.futures import ThreadPoolExecutor

    n = args.concurrent
    start = time.perf_counter()
    for i in range(n):
        floor_once(prom_url, rules_dir, 60_000 + i, False)
    floor_rate = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(n):
        api_once(bridge_url, 70_000 + i, False)
    seq_rate = n / (time.perf_counter() - start)
    def batches() -> tuple[float, float]:
        text = requests.get(f"{bridge_url}/metrics", timeout=10).text
        values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                  if line.startswith("pulse_bridge_rule_batch_changes_")}
        return (values.get("pulse_bridge_rule_batch_changes_sum", 0),
                values.get("pulse_bridge_rule_batch_changes_count", 0))

    before = batches()
    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(lambda i: api_once(bridge_url, 80_000 + i, False), range(n)))
    conc_rate = n / (time.perf_counter() - start)
    after = batches()
    reloads = after[1] - before[1]
    print(f"{n} creates from {args.clients} concurrent clients: {conc_rate:.1f} rules/s; "
          f"sequential API {seq_rate:.1f} rules/s (ratio {conc_rate / seq_rate:.2f}x, target "
          f">= 4); sequential floor {floor_rate:.1f} files/s (ratio "
          f"{conc_rate / floor_rate:.2f}x, target >= 3); {reloads:g} batches, "
          f"{(after[0] - before[0]) / max(reloads, 1):.1f} changes per reload")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--static-groups", type=int, default=60)
    parser.add_argument("--throughput", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--scale", default="200,1000",
                        help="loaded group counts for the reload-cost comparison")
    parser.add_argument("--scale-runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmpdir:
        tmp = Path(tmpdir)
        data_dir = tmp / "data"
        rules_dir = data_dir / "rules"
        rules_dir.mkdir(parents=True)
        static_groups(tmp / "static", args.static_groups)
        prom = harness.PrometheusServer(
            tmp / "prometheus", evaluation_interval="15s", scrape_interval="15s",
            rule_files=[tmp / "static" / "*.rules.yml", rules_dir / "*.yml"])
        prom.start()
        bridge = None
        try:
            cfg_path = tmp / "pulse.yml"
            cfg = harness.write_pulse_config(
                cfg_path, data_dir, prometheus={"url": prom.url},
                bridge={"channels": {"bench": ["json://127.0.0.1:9/x"]}})
            env = harness.pulse_env(data_dir, PULSE_ADMIN_TOKEN=TOKEN, PULSE_LOG_LEVEL="warning")
            listen = cfg["bridge"]["listen"]
            bridge = harness.start_service("bridge", cfg_path, env, listen, tmp / "bridge.log")
            bridge_url = f"http://{listen}"
            # Warm up both paths (connections, imports, first compile).
            floor_once(prom.url, rules_dir, 10_000, False)
            api_once(bridge_url, 10_000, False)

            # The same app in this process (no HTTP hop to the bridge): its own overhead.
            from bridge import create_app
            from pulse.config import load_config
            client = create_app(load_config(cfg_path, env)).test_client()

            def inproc_once(i: int) -> float:
                start = time.perf_counter()
                resp = client.post("/api/analytics/alerts/rules", json=request_body(i),
                                   headers={"Authorization": f"Bearer {TOKEN}"})
                elapsed = time.perf_counter() - start
                if resp.status_code != 201:
                    raise SystemExit(f"create failed: {resp.status_code} {resp.json}")
                return elapsed

            inproc_once(20_000)
            floor, floor_pt, api, api_expr, inproc = [], [], [], [], []
            for i in range(args.runs):
                floor.append(floor_once(prom.url, rules_dir, i, False))
                api.append(api_once(bridge_url, i, False))
                inproc.append(inproc_once(2000 + i))
                floor_pt.append(floor_once(prom.url, rules_dir, 1000 + i, True))
                api_expr.append(api_once(bridge_url, 1000 + i, True))

            def ms(xs):
                return statistics.median(xs) * 1000

            groups = len(prom.rule_groups())
            print(f"rule apply, {args.runs} interleaved runs each, Prometheus with "
                  f"{groups} groups at the end (medians, ms)")
            print(f"  floor (write + reload + poll)         {ms(floor):7.1f}")
            print(f"  api (structured rule)                 {ms(api):7.1f}   "
                  f"ratio {ms(api) / ms(floor):.2f}x (target <= 1.30)")
            print(f"  api in process (no HTTP hop)          {ms(inproc):7.1f}   "
                  f"ratio {ms(inproc) / ms(floor):.2f}x")
            print(f"  floor + promtool                      {ms(floor_pt):7.1f}")
            print(f"  api (raw expr, runs promtool)         {ms(api_expr):7.1f}   "
                  f"ratio {ms(api_expr) / ms(floor_pt):.2f}x vs floor+promtool, "
                  f"{ms(api_expr) / ms(floor):.2f}x vs floor")

            start = time.perf_counter()
            for i in range(args.throughput):
                floor_once(prom.url, rules_dir, 5000 + i, False)
            floor_rate = args.throughput / (time.perf_counter() - start)
            start = time.perf_counter()
            for i in range(args.throughput):
                api_once(bridge_url, 5000 + i, False)
            elapsed = time.perf_counter() - start
            rate = args.throughput / elapsed
            print(f"sequential creates: {args.throughput} in {elapsed:.2f} s = {rate:.1f} rules/s "
                  f"(floor {floor_rate:.1f} files/s, ratio {rate / floor_rate:.2f})")
            concurrent(args, prom.url, rules_dir, bridge_url)
            for count in [int(c) for c in args.scale.split(",") if c]:
                static_groups(tmp / "static", count)
                prom.reload()
                runs = args.scale_runs
                fl = [floor_once(prom.url, rules_dir, 30_000 + count + i, False)
                      for i in range(runs)]
                ap = [api_once(bridge_url, 40_000 + count + i, False) for i in range(runs)]
                print(f"with {len(prom.rule_groups())} groups loaded ({runs} runs): floor "
                      f"{ms(fl):7.1f} ms, api {ms(ap):7.1f} ms, ratio {ms(ap) / ms(fl):.2f}x")
        finally:
            if bridge is not None:
                bridge.stop()
            prom.stop()


if __name__ == "__main__":
    main()
