"""Alert delivery: what the bridge adds on top of apprise and of a bare HTTP POST.

One webhook notification (one alert, a fresh groupKey each time so nothing is
deduplicated) delivered to one or two json:// channels on a local HTTP sink.
Peers measured in the same run, medians of N:
  floor   - requests.post of the same JSON to the sink (the HTTP floor)
  apprise - apprise's json:// plugin notify() to the sink (what delivery costs)
  bridge  - POST /hooks/alertmanager in process: validate, key, fsynced state,
            render, apprise, history, incidents, answer
Targets: the bridge within 2x apprise alone for one channel on a local sink;
and with services 20 ms away (a sink that waits 20 ms, like a real remote
API), two channels (sent in parallel) within 1.3x one channel. On a local sink
two channels cost about two of one: the sink shares this process's GIL and
each in-flight target's success is fsynced so a kill -9 cannot duplicate it.

Condition true -> notification received, through real Alertmanagers: an alert
posted to every peer (as Prometheus does) until the bridge (a real process) has
delivered it to the sink, one Alertmanager and a 3-peer gossip cluster side by
side (target: the cluster within 1.2x of one), and the throughput of a burst of
distinct alerts through each. The bridge renders each page with amtool
(alertmanager/templates), which the in-process figures above include.

Usage: .venv/bin/python bench/alert_delivery.py [N]
       .venv/bin/python bench/alert_delivery.py --cluster [N]   (the Alertmanager part only)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
warnings.filterwarnings("ignore", message="'imghdr' is deprecated", category=DeprecationWarning)

import requests  # noqa: E402

from bridge import create_app  # noqa: E402
from bridge.services.delivery_log import DeliveryState  # noqa: E402
from bridge.services.notifier import Notifier, NotifyType, Target  # noqa: E402
from pulse.config import validate  # noqa: E402
from tests.harness import WebhookSink  # noqa: E402


class SlowSink:
    """An HTTP sink that answers 200 after `delay` seconds (a remote service)."""

    def __init__(self, delay: float):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def bridge_median(urls: dict[str, str], receivers: list[str], n: int) -> float:
    """Median seconds of a webhook delivered by an in-process bridge to receivers."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = validate({"data_dir": tmp, "privacy": {"salt": "s" * 32},
                        "bridge": {"channels": {k: [v] for k, v in urls.items()},
                                   "receivers": {"oncall-pager": receivers}}}, "bench", {})
        client = create_app(cfg).test_client()

        def post(i):
            resp = client.post("/hooks/alertmanager", json=payload(i))
            assert resp.status_code == 200, resp.get_json()
        return timed(post, n)


def payload(i: int) -> dict:
    """A one-alert version 4 webhook payload, unique per i."""
    return {
        "version": "4", "groupKey": f"{{}}:{{alertname=\"Bench{i}\"}}", "status": "firing",
        "receiver": "oncall-pager", "groupLabels": {"alertname": f"Bench{i}"},
        "commonLabels": {"alertname": f"Bench{i}", "severity": "warning"},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
        "alerts": [{"status": "firing",
                    "labels": {"alertname": f"Bench{i}", "severity": "warning", "team": "oncall",
                               "http_route": "/api/workouts"},
                    "annotations": {"summary": "API p95 latency is above 1.5 s.",
                                    "description": "p95 of /api/workouts is 1.7 s.",
                                    "runbook_url": "http://127.0.0.1:8080/runbooks#x"},
                    "startsAt": "2026-11-25T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": f"{i:016x}"}],
    }


def timed(fn, n: int) -> float:
    """Median seconds of n calls of fn(i) (after 10 warm-up calls)."""
    for i in range(10):
        fn(-1 - i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def through_alertmanagers(size: int, n: int, burst: int, work: Path) -> tuple[float, float]:
    """(median seconds alert posted -> delivered, notifications/s of a burst) via size peers."""
    from datetime import UTC, datetime, timedelta

    from tests import harness

    sink = WebhookSink().start()
    listen = f"127.0.0.1:{harness.free_port()}"
    config = {"route": {"receiver": "oncall-pager", "group_by": ["alertname"],
                        "group_wait": "0s", "group_interval": "10s", "repeat_interval": "1h"},
              "receivers": [{"name": "oncall-pager", "webhook_configs": [
                  {"url": f"http://{listen}/hooks/alertmanager", "send_resolved": True}]}]}
    if size == 1:
        peers = [harness.AlertmanagerServer(work / "am", config)]
    else:
        peers = harness.alertmanager_cluster(work, config, size)
    cfg_path = work / "pulse.yml"
    harness.write_pulse_config(cfg_path, work / "data", alertmanager={"url": peers[0].url},
                               bridge={"listen": listen, "receivers": {"oncall-pager": ["a"]},
                                       "channels": {"a": [f"json://127.0.0.1:{sink.port}/n"]}})
    bridge = harness.start_service("bridge", cfg_path, harness.pulse_env(work / "data"),
                                   listen, work / "bridge.log")
    try:
        for peer in peers:
            peer.start()
        if size > 1:
            harness.wait_until(lambda: all(p.cluster_peers() == size for p in peers), 30)
            time.sleep(6)  # past --cluster.settle-timeout: notifications wait for it

        def alert(name: str) -> dict:
            now = datetime.now(UTC)
            return {"labels": {"alertname": name, "severity": "warning"},
                    "annotations": {"summary": "bench"}, "startsAt": now.isoformat(),
                    "endsAt": (now + timedelta(minutes=10)).isoformat()}

        pool = ThreadPoolExecutor(max_workers=size)

        def fire(alerts: list[dict]) -> None:
            # Prometheus sends every alert to every peer, concurrently.
            for future in [pool.submit(p.post_alerts, alerts) for p in peers]:
                future.result()

        def delivered(names: set[str]) -> bool:
            titles = " ".join(str(b.get("title")) for b in sink.json_bodies()
                              if isinstance(b, dict))
            return all(f"] {name} " in titles + " " for name in names)

        samples = []
        for i in range(n):
            name = f"BenchOne{size}x{i}"
            start = time.perf_counter()
            fire([alert(name)])
            harness.wait_until(lambda name=name: delivered({name}), 60, interval=0.005)
            samples.append(time.perf_counter() - start)
        names = {f"BenchBurst{size}x{i}" for i in range(burst)}
        start = time.perf_counter()
        fire([alert(name) for name in sorted(names)])
        harness.wait_until(lambda: delivered(names), 120, interval=0.02)
        rate = burst / (time.perf_counter() - start)
        return statistics.median(samples), rate
    finally:
        for peer in peers:
            peer.stop()
        bridge.stop()
        sink.stop()


def cluster_main(n: int) -> None:
    """Alertmanager -> bridge -> channel: one Alertmanager and a 3-peer cluster."""
    results = {}
    for size in (1, 3):
        with tempfile.TemporaryDirectory() as tmp:
            results[size] = through_alertmanagers(size, n, 50, Path(tmp))
    (one, rate1), (three, rate3) = results[1], results[3]
    print(f"condition true -> notification received, median of {n} (ms)")
    print(f"  1 Alertmanager                          {one * 1e3:7.1f}")
    print(f"  3-peer cluster                          {three * 1e3:7.1f}  {three / one:5.2f}x "
          f"(target <= 1.2x: {'met' if three <= 1.2 * one else 'NOT met'})")
    print(f"  throughput, burst of 50 alerts: 1 Alertmanager {rate1:6.1f}/s, "
          f"3 peers {rate3:6.1f}/s")


def main() -> None:
    if "--cluster" in sys.argv:
        args = [a for a in sys.argv[1:] if a != "--cluster"]
        cluster_main(int(args[0]) if args else 20)
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    sink_a, sink_b = WebhookSink().start(), WebhookSink().start()
    url_a = f"json://127.0.0.1:{sink_a.port}/notify"
    url_b = f"json://127.0.0.1:{sink_b.port}/notify"
    session = requests.Session()
    body = {"version": "1.0", "title": "t", "message": "m" * 300, "type": "warning"}

    floor = timed(lambda i: session.post(f"{sink_a.url}/notify", json=body, timeout=10), n)
    notifier = Notifier()
    target = Target("a", "a#0", url_a)
    direct = timed(lambda i: notifier.send(target, "t", "m" * 300, NotifyType.WARNING), n)

    with tempfile.TemporaryDirectory() as tmp:
        state = DeliveryState(Path(tmp) / "state.jsonl")
        fsync = timed(lambda i: state.record_done(f"k{i}"), n)
    from bridge.services.templates import Renderer

    renderer = Renderer("http://127.0.0.1:9093")
    render = timed(lambda i: renderer.render(payload(i)), max(20, n // 4))
    urls = {"a": url_a, "b": url_b}
    one = bridge_median(urls, ["a"], n)
    two = bridge_median(urls, ["a", "b"], n)
    slow_a, slow_b = SlowSink(0.02), SlowSink(0.02)
    slow = {"a": f"json://127.0.0.1:{slow_a.port}/notify",
            "b": f"json://127.0.0.1:{slow_b.port}/notify"}
    m = max(20, n // 4)
    slow_one = bridge_median(slow, ["a"], m)
    slow_two = bridge_median(slow, ["a", "b"], m)
    slow_a.stop()
    slow_b.stop()
    sink_a.stop()
    sink_b.stop()

    print(f"alert delivery, median of {n} (ms)")
    print(f"  floor: requests.post to the sink        {floor * 1e3:7.2f}")
    print(f"  apprise json:// notify (1 target)       {direct * 1e3:7.2f}  "
          f"{direct / floor:5.2f}x floor")
    print(f"  bridge webhook -> 1 channel             {one * 1e3:7.2f}  "
          f"{one / direct:5.2f}x apprise  {one / floor:5.2f}x floor  (target <= 2x apprise: "
          f"{'met' if one <= 2 * direct else 'NOT met'})")
    print(f"    of which the fsynced state record     {fsync * 1e3:7.2f}  "
          f"(the durability price; it varies with the disk's load)")
    print(f"    of which the page rendered by amtool  {render * 1e3:7.2f}  "
          f"(one template source: a process per notification)")
    print(f"  bridge webhook -> 2 channels            {two * 1e3:7.2f}  "
          f"{two / one:5.2f}x 1 channel (local sink, no target)")
    print(f"  services 20 ms away, median of {m}:")
    print(f"  bridge webhook -> 1 remote channel      {slow_one * 1e3:7.2f}")
    print(f"  bridge webhook -> 2 remote channels     {slow_two * 1e3:7.2f}  "
          f"{slow_two / slow_one:5.2f}x 1 channel  (target <= 1.3x: "
          f"{'met' if slow_two <= 1.3 * slow_one else 'NOT met'})")
    print(f"  bridge throughput, 1 channel            {1 / one:7.0f} notifications/s")
    cluster_main(max(10, n // 20))


if __name__ == "__main__":
    main()
