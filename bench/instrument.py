"""Per-request cost of exporters/instrument.py: the same apps with and without it, one run.

Each request is a direct WSGI call (environ in, body consumed, close() called, as a
server does), so the figure is the middleware's own cost with no network noise.
Rounds alternate bare and instrumented; medians of the rounds are reported.
Usage: .venv/bin/python bench/instrument.py [--requests N] [--rounds R]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from exporters.instrument import Instrumentation  # noqa: E402


def flask_app() -> Flask:
    """A small Flask API with a templated route."""
    app = Flask(__name__)

    @app.get("/users/<int:user_id>")
    def user(user_id: int):
        return {"id": user_id, "name": "x"}

    return app


def plain_app(environ, start_response):
    """The smallest WSGI app: the floor against which overhead is most visible."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def environ_for(path: str) -> dict:
    """A GET request's environ."""
    return {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0), "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False}


def per_request(app, n: int) -> float:
    """Seconds per request over n calls."""
    def start_response(status, headers, exc_info=None):
        return None

    paths = [f"/users/{i % 500}" for i in range(n)]
    start = time.perf_counter()
    for path in paths:
        body = app(environ_for(path), start_response)
        for _ in body:
            pass
        close = getattr(body, "close", None)
        if close:
            close()
    return (time.perf_counter() - start) / n


def compare(name: str, bare, instrumented, n: int, rounds: int) -> tuple[float, float]:
    """Median per-request time of both, alternating rounds; print and return them."""
    per_request(bare, n // 10)
    per_request(instrumented, n // 10)
    a, b = [], []
    for _ in range(rounds):
        a.append(per_request(bare, n))
        b.append(per_request(instrumented, n))
    base, inst = statistics.median(a), statistics.median(b)
    print(f"{name:<34} bare {base * 1e6:8.1f} us   instrumented {inst * 1e6:8.1f} us   "
          f"overhead {(inst - base) * 1e6:6.1f} us/request   ratio {inst / base:5.2f}x")
    return base, inst


def main() -> None:
    """Run the comparisons and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only-flask", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    print(f"exporters/instrument.py per-request overhead ({args.requests} requests x "
          f"{args.rounds} rounds, medians)")
    if args.only_flask:
        bare, inst = flask_app(), flask_app()
        Instrumentation(CollectorRegistry()).instrument_flask(inst)
        compare("Flask app, /users/<int:user_id>", bare.wsgi_app, inst.wsgi_app,
                args.requests, args.rounds)
        return
    bare = flask_app()
    inst = flask_app()
    Instrumentation(CollectorRegistry()).instrument_flask(inst)
    base, with_mw = compare("Flask app, /users/<int:user_id>", bare.wsgi_app, inst.wsgi_app,
                            args.requests, args.rounds)
    instr = Instrumentation(CollectorRegistry())
    compare("plain WSGI app, route table", plain_app,
            instr.middleware(plain_app, routes=["/users/{id}"]), args.requests, args.rounds)
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Multiprocess mode is chosen at import time, so it is measured in a child process.
        with tempfile.TemporaryDirectory() as mp:
            env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=mp)
            child = subprocess.run([sys.executable, __file__, "--requests", str(args.requests),
                                    "--rounds", str(args.rounds), "--only-flask"],
                                   env=env, capture_output=True, text=True, check=True)
            line = child.stdout.strip().splitlines()[-1]
            print(line.replace("Flask app, /users/<int:user_id>",
                               "Flask app, multiprocess mode   "))
    budget = 50e-6
    verdict = "within" if with_mw - base <= budget else "ABOVE"
    print(f"target: overhead on the Flask app <= {budget * 1e6:.0f} us/request "
          f"(< 5 % of a 1 ms request): {verdict} target")


if __name__ == "__main__":
    main()
