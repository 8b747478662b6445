"""Scrape latency and RSS of the infrastructure exporter against Debian's node_exporter.

Both run on this host in the same run, on free loopback ports, and are scraped
alternately (keep-alive, like Prometheus) so machine noise hits both alike.
Ours runs twice: default collectors with no process groups, and with the shipped
pulse.yml's process groups (which walk the process table each scrape).
Prints p50/p99 per scrape, series counts, RSS and the ratios (ours / node_exporter).
Target: no slower than node_exporter per scrape (p50 ratio <= 1).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pulse.launcher.supervisor import service_argv  # noqa: E402
from tests.harness import free_port, wait_until  # noqa: E402

SCRAPES = int(os.environ.get("BENCH_SCRAPES", "200"))
WARMUP = 20


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until url answers 200 or fail if the process exits."""
    def ready() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with {proc.returncode}")
        return requests.get(url, timeout=2).status_code == 200

    wait_until(ready, timeout, 0.1, url)


def shipped_groups() -> list:
    """The process groups of the shipped pulse.yml."""
    doc = yaml.safe_load((ROOT / "pulse.yml").read_text())
    return doc["exporters"]["infrastructure"]["processes"]["groups"]


def start_ours(tmp: Path, groups: list) -> tuple[subprocess.Popen, str]:
    """The infrastructure exporter with its default collectors and the given process groups."""
    listen = f"127.0.0.1:{free_port()}"
    config = tmp / f"pulse-{len(groups)}.yml"
    section = {"listen": listen, "processes": {"groups": groups}}
    config.write_text(yaml.safe_dump({"data_dir": str(tmp / "data"), "log_level": "warning",
                                      "exporters": {"infrastructure": section}}))
    env = dict(os.environ, PULSE_ADMIN_TOKEN="bench-token-0123456789",
               PULSE_PRIVACY_SALT="bench-salt-0123456789")
    proc = subprocess.Popen(service_argv("exporters.infrastructure", config), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://{listen}"


def start_node_exporter() -> tuple[subprocess.Popen, str]:
    """Debian's prometheus-node-exporter with its default collectors."""
    binary = shutil.which("prometheus-node-exporter")
    if binary is None:
        raise SystemExit("prometheus-node-exporter is not installed: "
                         "apt-get install -y prometheus-node-exporter")
    listen = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([binary, f"--web.listen-address={listen}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://{listen}"


def series_count(text: str) -> int:
    """Samples in an exposition."""
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def main() -> int:
    """Run both exporters, scrape them alternately, print figures and ratios."""
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as tmp:
        procs = {"pulse": start_ours(Path(tmp), []),
                 "pulse+groups": start_ours(Path(tmp), shipped_groups()),
                 "node_exporter": start_node_exporter()}
        try:
            for proc, url in procs.values():
                wait_ready(f"{url}/metrics", proc)
            sessions = {name: requests.Session() for name in procs}
            urls = {name: f"{url}/metrics" for name, (_, url) in procs.items()}
            times: dict[str, list[float]] = {name: [] for name in urls}
            texts: dict[str, str] = {}
            for i in range(WARMUP + SCRAPES):
                for name, url in urls.items():
                    start = time.perf_counter()
                    resp = sessions[name].get(url, timeout=30)
                    elapsed = time.perf_counter() - start
                    resp.raise_for_status()
                    if i >= WARMUP:
                        times[name].append(elapsed)
                    texts[name] = resp.text
            rss = {name: psutil.Process(proc.pid).memory_info().rss
                   for name, (proc, _) in procs.items()}
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(10)
    print(f"scrapes per exporter: {SCRAPES} (after {WARMUP} warm-up), alternating")
    print(f"{'exporter':<15}{'series':>8}{'p50 ms':>9}{'p99 ms':>9}{'RSS MB':>9}"
          f"{'us/series (p50)':>17}")
    for name in urls:
        p50, p99 = percentile(times[name], 0.5), percentile(times[name], 0.99)
        n = series_count(texts[name])
        print(f"{name:<15}{n:>8}{p50 * 1e3:>9.2f}{p99 * 1e3:>9.2f}{rss[name] / 2**20:>9.1f}"
              f"{p50 / n * 1e6:>17.1f}")
    med = {name: statistics.median(t) for name, t in times.items()}
    p99 = {name: percentile(t, 0.99) for name, t in times.items()}
    for name in ("pulse", "pulse+groups"):
        ratio = med[name] / med["node_exporter"]
        print(f"ratio {name}/node_exporter: p50 {ratio:.2f}, "
              f"p99 {p99[name] / p99['node_exporter']:.2f}, "
              f"RSS {rss[name] / rss['node_exporter']:.2f}  -> target (p50 ratio <= 1) "
              f"{'reached' if ratio <= 1 else 'NOT reached'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
