"""AI monitoring hot paths against floors measured in the same run (medians).

1. Experiment assignment: stats.assign vs a bare SHA-256 (floor); the HTTP view vs the
   bridge's /-/healthy through the same Flask stack (floor).
2. AI exporter scrape with 50 models x 3 versions and 50 x 5 drift features (PSI computed
   per scrape) vs Debian's prometheus-node-exporter scraped over HTTP (peer).
3. Drift observations POST (1 000 raw values, binned, state fsynced) vs write_atomic of the
   same state file (floor).
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge import create_app as bridge_app  # noqa: E402
from bridge.services.stats import assign  # noqa: E402
from exporters.ai import create_app as ai_app  # noqa: E402
from pulse.config import validate  # noqa: E402
from pulse.fileio import write_atomic  # noqa: E402
from tests.harness import free_port  # noqa: E402

# The AI exporter's API needs a token with ai:write (pulse.access), as model-ops jobs send.
BENCH_TOKENS = {"tokens": [{"name": "bench", "role": "engineer",
                            "token": "bench-token-0123456789"}]}


def ai_client(cfg):
    """The AI exporter in process and a test client sending the bench's token."""
    app = ai_app(cfg)
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = "Bearer bench-token-0123456789"
    return app, client


def median_us(fn, n: int) -> float:
    """Median microseconds of fn over n calls (after a short warm-up)."""
    for _ in range(min(n, 20)):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def report(name: str, ours: float, floor: float, floor_name: str) -> None:
    """Print one line: our median, the floor's, and the ratio."""
    print(f"{name:<42} {ours:10.1f} us   {floor_name:<28} {floor:10.1f} us   "
          f"ratio {ours / floor:6.2f}x")


def bench_assignment(tmp: Path) -> None:
    split = [("control", 50.0), ("b", 30.0), ("c", 20.0)]
    counter = iter(range(10**9))
    ours = median_us(lambda: assign("exp", f"unit-{next(counter)}", split), 20000)
    floor = median_us(lambda: hashlib.sha256(f"exp:unit-{next(counter)}".encode()).digest(),
                      20000)
    report("stats.assign (3 variants)", ours, floor, "sha256 alone")

    token = "admin-token-0123456789abcdef"
    cfg = validate({"data_dir": str(tmp / "bridge"), "privacy": {"salt": "s" * 32},
                    "bridge": {"tokens": [{"name": "a", "role": "admin", "token": token}]}},
                   "bench", {})
    client = bridge_app(cfg).test_client()
    headers = {"Authorization": f"Bearer {token}"}
    resp = client.post("/api/analytics/ai-experiments", headers=headers, json={
        "name": "bench", "description": "", "duration": "14d",
        "modelVariants": [{"name": n, "model": "m", "modelVersion": "1"} for n, _ in split],
        "trafficSplit": [{"variant": n, "percentage": w} for n, w in split],
        "successMetrics": ["workout_completed"]})
    assert resp.status_code == 201, resp.json
    ours = median_us(lambda: client.get("/api/analytics/ai-experiments/bench/assignment",
                                        query_string={"unit": f"u{next(counter)}"},
                                        headers=headers), 1000)
    floor = median_us(lambda: client.get("/-/healthy"), 1000)
    report("GET .../assignment (Flask test client)", ours, floor, "GET /-/healthy")


def serve(app, port: int):
    from waitress.server import create_server
    server = create_server(app, host="127.0.0.1", port=port, threads=4)
    threading.Thread(target=server.run, daemon=True).start()
    return server


def bench_scrape(tmp: Path) -> None:
    cfg = validate({"data_dir": str(tmp / "ai"), "privacy": {"salt": "s" * 32},
                    "bridge": BENCH_TOKENS,
                    "exporters": {"ai": {"drift": {"min_observations": 10}}}}, "bench", {})
    app, c = ai_client(cfg)
    edges = [i / 10 for i in range(11)]
    for m in range(50):
        model = f"model_{m}"
        for v in range(3):
            c.post("/api/analytics/ai/evaluations", json={
                "model": model, "modelVersion": f"1.{v}", "task": "other",
                "metrics": {"accuracy": 0.8, "precision": 0.7, "recall": 0.6}, "sampleSize": 100})
        for f in range(5):
            c.post("/api/analytics/ai/drift/reference", json={
                "model": model, "feature": f"f{f}", "bins": edges, "counts": [10] * 10})
            c.post("/api/analytics/ai/drift/observations", json={
                "model": model, "feature": f"f{f}", "counts": [5, 10, 15, 20, 5, 10, 15, 20, 5, 5]})
    port = free_port()
    server = serve(app, port)
    url = f"http://127.0.0.1:{port}/metrics"
    series = sum(1 for line in requests.get(url, timeout=10).text.splitlines()
                 if line and not line.startswith("#"))
    session = requests.Session()
    ours = median_us(lambda: session.get(url, timeout=10), 100)
    session.close()
    # The server thread is a daemon and dies with the process; closing waitress while its
    # task threads still hold the keep-alive channel only prints a spurious traceback.
    del server
    binary = shutil.which("prometheus-node-exporter")
    if not binary:
        print("prometheus-node-exporter missing: apt-get install -y prometheus-node-exporter")
        return
    nport = free_port()
    proc = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{nport}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        nurl = f"http://127.0.0.1:{nport}/metrics"
        deadline = time.monotonic() + 30
        while True:
            try:
                text = session.get(nurl, timeout=5).text
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        nseries = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        session = requests.Session()
        peer = median_us(lambda: session.get(nurl, timeout=10), 100)
        session.close()
    finally:
        proc.terminate()
        proc.wait(10)
    report(f"AI exporter scrape ({series} series)", ours, peer,
           f"node-exporter ({nseries} series)")


def bench_observations(tmp: Path) -> None:
    cfg = validate({"data_dir": str(tmp / "obs"), "privacy": {"salt": "s" * 32},
                    "bridge": BENCH_TOKENS}, "bench", {})
    app, c = ai_client(cfg)
    edges = [i / 10 for i in range(11)]
    c.post("/api/analytics/ai/drift/reference", json={
        "model": "m", "feature": "score", "bins": edges, "counts": [10] * 10})
    values = [(i % 997) / 997 for i in range(1000)]
    ours = median_us(lambda: c.post("/api/analytics/ai/drift/observations", json={
        "model": "m", "feature": "score", "values": values}), 200)
    state = tmp / "obs" / "ai" / "state.json"
    text = state.read_text()
    floor = median_us(lambda: write_atomic(state.with_name("floor.json"), text), 200)
    report("POST drift/observations (1000 values)", ours, floor, "write_atomic of the state")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_assignment(tmp)
        bench_scrape(tmp)
        bench_observations(tmp)
