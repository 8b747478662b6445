"""Event ingest: events/s and batch latency of the intake against the HTTP floor, one run.

Starts the real intake (`python -m exporters.events`, waitress, default mapping, durable log on
the data disk, per-user profiles and experiment units on; every batch is one user's, from a
pool of 20,000) and, in the same run, the same waitress server answering a bare endpoint that
reads the body and returns `{}` (the floor). `wrk` posts 100-event batches (~50 KB, every
request with fresh event ids, so nothing is deduplicated away) over keep-alive connections to
each, then keeps posting to the intake until it has counted 1 million events and reads its RSS.

    .venv/bin/python bench/ingest.py [--seconds 10] [--connections 4] [--total 1000000]
                                     [--segment]

--segment adds, in the same rounds, the Segment-compatible POST /v1/batch with 100-message
batches (~45 KB, a fresh messageId each) that translate into the same mapped events.

    .venv/bin/python bench/ingest.py --log jetstream [--seconds 10]

`--log jetstream` (issue 19) instead compares, in one run on one nats-server: one intake on
the JetStream log against one on the local log, then two JetStream intakes (posted to at the
same time) against one, with the p99 latency of an acknowledged batch; one aggregator counts.

Needs `wrk` (apt-get install -y wrk). Prints medians over the rounds and the ratio.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporters.events.examples import EXAMPLES, example_event  # noqa: E402
from exporters.events.segment import load_table  # noqa: E402

WRITE_KEY = "bench-write-key-01"
JSON_HEADER = '["Content-Type"] = "application/json"'
from pulse.launcher.supervisor import service_argv  # noqa: E402
from tests.harness import free_port, wait_until  # noqa: E402

PLACEHOLDER = "@@@@@@@@@@"
# Every batch is one user's (a device sends its own user's events), drawn from a pool: the
# profile store sees many users, as it would in production.
USER, POOL = "##USER##", 20_000
# The one wrk script of the benchmarks: POST the body file with every event id made
# unique per run, thread and request (a repeated id would not be counted); optionally
# a user placeholder too, spread over a pool of users.
LUA = r"""
local template = io.open("%(body)s", "rb"):read("*a")
local counter = 0
local tid = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
end
request = function()
  counter = counter + 1
  local tag = string.format("%%03d%%02d%%05d", %(run)d, tid, counter)
  local body = template:gsub("%(placeholder)s", tag)
%(users)s  return wrk.format("POST", "%(path)s", {%(headers)s}, body)
end
"""
USERS_LUA = """\
  local user = string.format("%%08d", (counter * 7919 + %(run)d * 131) %% %(pool)d)
  body = body:gsub("%(user)s", user)
"""


def floor_app(environ, start_response):
    """The HTTP floor: read the whole body, answer {}."""
    stream = environ["wsgi.input"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    stream.read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def serve_floor(listen: str, threads: int) -> None:
    """Run the floor on the same waitress setup as the intake."""
    from pulse.service import serve
    serve(floor_app, listen, "bench-floor", threads=threads)


def make_body(path: Path, user: str | None = None, users_per_batch: int = 1,
              stamp: str = "2026-11-25T10:00:00Z") -> int:
    """A 100-event batch mixing every mapped event shape, ids made unique by a placeholder.

    With user (a placeholder the wrk script replaces), event i belongs to
    user-<user>-<i % users_per_batch> and is stamped stamp (bench/profiling.py).
    """
    rules = list(EXAMPLES)
    events = []
    for i in range(100):
        event = example_event(rules[i % len(rules)])
        event["id"] = f"bench-{PLACEHOLDER}-{i:03d}"
        if user is not None:
            event["userId"] = f"user-{user}-{i % users_per_batch}"
            event["timestamp"] = stamp
        events.append(event)
    body = orjson.dumps({"events": events, "clientTimestamp": stamp})
    path.write_bytes(body)
    return len(body)


def make_segment_body(path: Path, user: str | None = None) -> int:
    """A 100-message Segment batch of track events feeding the same rules as make_body
    (with user: of user-<user>, a placeholder the wrk script replaces)."""
    names = {(r.event_type, r.category, r.action): name
             for name, r in load_table().track.items()}
    table = load_table().track
    ctx = {"device": {"type": "ios", "model": "iPhone15,2"},
           "os": {"name": "iOS", "version": "18.1"}, "app": {"version": "4.12.0"},
           "library": {"name": "analytics-python", "version": "2.4.0"}}
    rules = list(EXAMPLES)
    batch = []
    for i in range(100):
        fields = EXAMPLES[rules[i % len(rules)]][1]
        name = names[(fields["eventType"], fields["category"], fields["action"])]
        props = dict(fields["properties"])
        if "value" in fields:
            path_ = table[name].value or ("properties", "value")
            props[path_[1]] = fields["value"]
        batch.append({"type": "track", "event": name,
                      "userId": "u-10293" if user is None else f"user-{user}-0",
                      "anonymousId": None, "messageId": f"bench-{PLACEHOLDER}-{i:03d}",
                      "timestamp": "2026-11-25T10:15:00.000+00:00", "properties": props,
                      "context": ctx, "integrations": {}})
    body = orjson.dumps({"batch": batch, "sentAt": "2026-11-25T10:15:01.000+00:00",
                         "writeKey": WRITE_KEY})
    path.write_bytes(body)
    return len(body)
def wrk_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The wrk options the ingest benchmarks share: seconds per round, rounds, connections."""
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4)
    return parser


def start(argv: list[str], url: str, log: Path, env: dict) -> subprocess.Popen:
    """Start a server process and wait until url answers."""
    proc = subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            env=env, cwd=ROOT, start_new_session=True)

    def answers() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"{argv} exited:\n{log.read_text()}")
        requests.get(url, timeout=1)
        return True

    wait_until(answers, 60, 0.1, url)
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Stop a server process (its group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


RUNS = iter(range(1000))


def script_for(work: Path, user: str | None = None, pool: int = 0,
               segment: bool = False) -> Path:
    """A wrk script posting work/body.json (segment: work/segment.json to /v1/batch with the
    write key) with event ids no other run uses.

    user: a placeholder in the body replaced by one of pool user numbers per request.
    """
    run = next(RUNS)
    path = work / f"run-{run}.lua"
    users = USERS_LUA % {"run": run, "pool": pool, "user": user} if user else ""
    headers = JSON_HEADER
    if segment:
        token = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        headers += f', ["Authorization"] = "Basic {token}"'
    path.write_text(LUA % {
        "body": work / ("segment.json" if segment else "body.json"),
        "path": "/v1/batch" if segment else "/api/analytics/events", "headers": headers,
        "placeholder": PLACEHOLDER, "run": run, "users": users})
    return path


def run_wrk(script: Path, url: str, seconds: float, connections: int) -> dict:
    """One wrk run: requests/s, p50 and p99 latency in ms, non-2xx count."""
    duration = f"-d{max(1, round(seconds))}s"
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", duration, "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    lat = {m.group(1): _ms(m.group(2), m.group(3))
           for m in re.finditer(r"^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", out)
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"),
            "non2xx": int(bad.group(1)) if bad else 0}


def alternate(args: argparse.Namespace, script, ports: dict[str, int]) -> dict[str, list[dict]]:
    """args.rounds rounds of wrk against each port in turn (so drift touches every endpoint);
    script(name) makes each run's fresh script. name -> the runs' results."""
    results: dict[str, list[dict]] = {name: [] for name in ports}
    for _ in range(args.rounds):
        for name, port in ports.items():
            results[name].append(run_wrk(script(name), f"http://127.0.0.1:{port}",
                                         args.seconds, args.connections))
    return results


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def counter(url: str, name: str) -> float:
    """A sample value from a /metrics page."""
    text = requests.get(url, timeout=10).text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def median(values: list[float]) -> float:
    """The median."""
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = wrk_arguments(argparse.ArgumentParser())
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--segment", action="store_true",
                        help="also measure POST /v1/batch (Segment batches) in the same rounds")
    parser.add_argument("--log", choices=["local", "jetstream"], default="local")
    parser.add_argument("--floor-server", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        serve_floor(args.floor_server, args.threads)
        return
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    if args.log == "jetstream":
        bench_jetstream(args)
        return

    work = Path(tempfile.mkdtemp(prefix="pulse-bench-ingest-"))
    size = make_body(work / "body.json", USER)
    segment_size = make_segment_body(work / "segment.json", USER)
    intake_port, floor_port = free_port(), free_port()
    (work / "pulse.yml").write_text(
        f"data_dir: {work / 'data'}\nlog_level: warning\n"
        # The salt turns per-user profiling (and experiment units) on: the target is with
        # profiles on.
        "privacy: {salt: '${PULSE_PRIVACY_SALT}'}\n"
        f"exporters:\n  events:\n    listen: 127.0.0.1:{intake_port}\n"
        f"    sources:\n      - {{name: bench, write_key: {WRITE_KEY}, platform: ios}}\n")
    env = dict(os.environ, PULSE_PRIVACY_SALT="bench-salt-0123456789",
               PULSE_ADMIN_TOKEN="bench-token-0123456789")
    intake = start(service_argv("exporters.events", work / "pulse.yml"),
                   f"http://127.0.0.1:{intake_port}/-/ready", work / "intake.log", env)
    floor = start([sys.executable, str(Path(__file__).resolve()), "--floor-server",
                   f"127.0.0.1:{floor_port}"], f"http://127.0.0.1:{floor_port}/",
                  work / "floor.log", env)
    names = ("floor", "intake", "segment") if args.segment else ("floor", "intake")
    ports = {"floor": floor_port, "intake": intake_port, "segment": intake_port}
    try:
        results = alternate(args, lambda name: script_for(work, USER, POOL,
                                                          segment=name == "segment"),
                            {name: ports[name] for name in names})
        metrics = f"http://127.0.0.1:{intake_port}/metrics"
        counted = counter(metrics, "pulse_events_accepted_total")
        rate = median([r["rps"] for r in results["intake"]]) * 100
        while counted < args.total:
            remaining = (args.total - counted) / max(rate, 1000)
            run_wrk(script_for(work, USER, POOL), f"http://127.0.0.1:{intake_port}",
                    max(2, min(60, remaining * 1.1)), args.connections)
            counted = counter(metrics, "pulse_events_accepted_total")
        rss = rss_mb(intake.pid)
        received = counter(metrics, "pulse_events_received_total")
        duplicates = counter(metrics, "pulse_events_duplicates_total")
    finally:
        stop(intake)
        stop(floor)
        shutil.rmtree(work, ignore_errors=True)

    print(f"body: 100 events, {size} bytes (segment: 100 messages, {segment_size} bytes); "
          f"wrk 1 thread, {args.connections} connections, "
          f"{args.rounds} rounds x {args.seconds:.0f} s each, medians")
    print(f"{'endpoint':<10}{'batches/s':>12}{'events/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'non-2xx':>9}")
    summary = {}
    p99s = {}
    for name in names:
        rows = results[name]
        rps = median([r["rps"] for r in rows])
        p50 = median([r["p50"] for r in rows])
        p99 = median([r["p99"] for r in rows])
        summary[name] = rps
        p99s[name] = p99
        print(f"{name:<10}{rps:>12.0f}{rps * 100:>12.0f}{p50:>9.2f}{p99:>9.2f}"
              f"{sum(r['non2xx'] for r in rows):>9}")
    ratio = summary["intake"] / summary["floor"]
    events_s = summary["intake"] * 100
    print(f"intake / floor throughput ratio: {ratio:.2f}  (target >= 0.22: "
          f"{'reached' if ratio >= 0.22 else 'NOT reached'})")
    print(f"intake events/s: {events_s:.0f}  (target >= 40000: "
          f"{'reached' if events_s >= 40000 else 'NOT reached'})")
    print(f"intake p99 batch latency at {args.connections} connections: "
          f"{p99s['intake']:.2f} ms  (target <= 20 ms: "
          f"{'reached' if p99s['intake'] <= 20 else 'NOT reached'})")
    if args.segment:
        slower = summary["intake"] / summary["segment"]
        print(f"seed / segment throughput: {slower:.2f}x  (target: segment within 1.2x: "
              f"{'reached' if slower <= 1.2 else 'NOT reached'})")
    print(f"intake RSS after {counted:.0f} counted events ({received:.0f} received, "
          f"{duplicates:.0f} duplicates): "
          f"{rss:.1f} MB  (target < 150 MB: {'reached' if rss < 150 else 'NOT reached'})")


def bench_jetstream(args) -> None:
    """One JetStream intake vs the local log, two JetStream intakes vs one; p99 of a batch."""
    from concurrent.futures import ThreadPoolExecutor

    from pulse.launcher.render import nats_config, nats_nodes
    from pulse.launcher.supervisor import nats_argv

    if not shutil.which("nats-server"):
        raise SystemExit("nats-server is not installed: apt-get install -y nats-server")
    work = Path(tempfile.mkdtemp(prefix="pulse-bench-js-"))
    make_body(work / "body.json")
    port = free_port()
    while any(p >= 65536 for p in (port + 2000, port + 4000)):
        port = free_port()
    nodes = nats_nodes([f"nats://127.0.0.1:{port}"])
    (work / "n1.conf").write_text(nats_config(nodes, 0, work / "nats"))
    env = dict(os.environ, PULSE_PRIVACY_SALT="bench-salt-0123456789",
               PULSE_ADMIN_TOKEN="bench-token-0123456789")
    procs = [start(nats_argv(work / "n1.conf"), nodes[0].ready_url, work / "nats.log", env)]
    ports = {"local": free_port(), "js1": free_port(), "js2": free_port(), "agg": free_port()}
    local_cfg = work / "local.yml"
    local_cfg.write_text(f"data_dir: {work / 'local'}\nlog_level: warning\n"
                         f"exporters:\n  events:\n    listen: 127.0.0.1:{ports['local']}\n")
    js_cfg = work / "js.yml"
    js_cfg.write_text(
        f"data_dir: {work / 'js'}\nlog_level: warning\nexporters:\n  events:\n"
        f"    listen: [127.0.0.1:{ports['js1']}, 127.0.0.1:{ports['js2']}]\n"
        f"    log: {{kind: jetstream, servers: ['nats://127.0.0.1:{port}'], partitions: 8}}\n"
        f"    aggregators: {{listen: ['127.0.0.1:{ports['agg']}']}}\n")
    try:
        for name, module, cfg in (("agg", "exporters.events.aggregator", js_cfg),
                                  ("local", "exporters.events", local_cfg),
                                  ("js1", "exporters.events", js_cfg),
                                  ("js2", "exporters.events", js_cfg)):
            procs.append(start([sys.executable, "-m", module, "--config", str(cfg), "--listen",
                                f"127.0.0.1:{ports[name]}"],
                               f"http://127.0.0.1:{ports[name]}/-/ready", work / f"{name}.log",
                               env))
        rows: dict[str, list[dict]] = {"local": [], "js1": [], "js1+js2": []}
        for _ in range(args.rounds):
            for name in ("local", "js1"):
                rows[name].append(run_wrk(script_for(work), f"http://127.0.0.1:{ports[name]}",
                                          args.seconds, args.connections))
            with ThreadPoolExecutor(2) as pool:
                both = list(pool.map(lambda n: run_wrk(
                    script_for(work), f"http://127.0.0.1:{ports[n]}", args.seconds,
                    args.connections), ("js1", "js2")))
            rows["js1+js2"].append({"rps": sum(r["rps"] for r in both),
                                    "p50": max(r["p50"] for r in both),
                                    "p99": max(r["p99"] for r in both),
                                    "non2xx": sum(r["non2xx"] for r in both)})
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    print(f"100-event batches; wrk 1 thread x {args.connections} connections per intake, "
          f"{args.rounds} rounds x {args.seconds:.0f} s, medians; one nats-server, 8 partitions")
    print(f"{'setup':<22}{'batches/s':>11}{'events/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'non-2xx':>9}")
    rate = {}
    for name, label in (("local", "1 intake, local log"), ("js1", "1 intake, jetstream"),
                        ("js1+js2", "2 intakes, jetstream")):
        r = rows[name]
        rate[name] = median([x["rps"] for x in r])
        print(f"{label:<22}{rate[name]:>11.0f}{rate[name] * 100:>11.0f}"
              f"{median([x['p50'] for x in r]):>9.2f}{median([x['p99'] for x in r]):>9.2f}"
              f"{sum(x['non2xx'] for x in r):>9}")
    one, two = rate["js1"] / rate["local"], rate["js1+js2"] / rate["js1"]
    print(f"jetstream / local (1 intake): {one:.2f}  (target >= 0.6: "
          f"{'reached' if one >= 0.6 else 'NOT reached'})")
    print(f"2 intakes / 1 intake (jetstream): {two:.2f}  (target >= 1.3: "
          f"{'reached' if two >= 1.3 else 'NOT reached'}; NATS, both intakes and wrk share "
          f"{os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
