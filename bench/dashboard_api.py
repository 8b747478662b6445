"""Time for GET /api/analytics/dashboards/{id} to answer a standard dashboard.

Against a real Prometheus holding the recorded fixture (4 h of demo-style traffic, the
repository's recording rules backfilled; PULSE_RULES_DIR overrides the rules directory).
The floor, measured in the same run: the same expanded queries sent straight to
Prometheus with the same parallelism and no bridge. Target < 1 s; the seed allows 3-5 s.

    .venv/bin/python bench/dashboard_api.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge import create_app  # noqa: E402
from bridge.api.dashboards import WORKERS  # noqa: E402
from pulse import dashboards as gq  # noqa: E402
from pulse.promapi import PrometheusClient  # noqa: E402
from tests.bridge.conftest import auth, bridge_config  # noqa: E402
from tests.grafana.fixture import STEP, fixture_prometheus  # noqa: E402

TARGET_S, SEED_S = 1.0, 3.0
CASES = [("executive", "now-30d"), ("system", "now-6h"), ("product", "now-24h")]


def _timed(fn, rounds: int) -> list[float]:
    fn()  # warm caches and connections once
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> int:
    """Build the fixture, time the API and the floor per dashboard, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as tmp:
        end = int(time.time()) // STEP * STEP
        t0 = time.perf_counter()
        prom = fixture_prometheus(Path(tmp) / "prom", end)
        print(f"fixture Prometheus ready in {time.perf_counter() - t0:.1f} s ({prom.url})")
        try:
            app = create_app(bridge_config(Path(tmp), prometheus={
                "url": prom.url, "scrape_interval": f"{STEP}s"}))
            client = app.test_client()
            direct = PrometheusClient(prom.url, timeout=30.0)
            print(f"{'dashboard':<10} {'range':<8} {'queries':>7} {'api p50':>9} "
                  f"{'api max':>9} {'floor p50':>9} {'api/floor':>9} {'vs 1 s':>7}")
            worst = 0.0
            for name, since in CASES:
                doc = gq.load_all()[name]
                targets = [t["expr"] for p in gq.panels(doc) for t in p["targets"]]
                now = time.time()
                start = now - float(since[4:-1]) * (86400 if since.endswith("d") else 3600)
                step = max(STEP, -(-(now - start) // 240))
                exprs = [gq.expand(e, range_s=now - start, step_s=step, scrape_s=STEP)
                         for e in targets]

                def api(name=name, since=since):
                    resp = client.get(f"/api/analytics/dashboards/{name}?from={since}",
                                      headers=auth("admin"))
                    assert resp.status_code == 200, resp.json

                def floor(exprs=exprs, start=start, now=now, step=step):
                    def one(expr, start=start, now=now, step=step):
                        return direct.query_range(expr, start, now, step)

                    with ThreadPoolExecutor(WORKERS) as pool:
                        list(pool.map(one, exprs))

                a = _timed(api, args.rounds)
                f = _timed(floor, args.rounds)
                p50, fp50 = statistics.median(a), statistics.median(f)
                worst = max(worst, p50)
                print(f"{name:<10} {since[4:]:<8} {len(exprs):>7} {p50 * 1000:>7.0f}ms "
                      f"{max(a) * 1000:>7.0f}ms {fp50 * 1000:>7.0f}ms {p50 / fp50:>9.2f} "
                      f"{p50 / TARGET_S:>7.2f}")
            verdict = "reached" if worst < TARGET_S else "NOT reached"
            print(f"slowest median {worst * 1000:.0f} ms: target < {TARGET_S:.0f} s {verdict}; "
                  f"{SEED_S / worst:.0f}x inside the seed's {SEED_S:.0f} s")
        finally:
            prom.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
