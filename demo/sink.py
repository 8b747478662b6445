"""The demo notification channel (`python -m demo.sink`): where the demo's pages arrive.

apprise delivers channel `demo` to ``json://127.0.0.1:9799/notify``; this sink
prints each notification readably on the console of `make run` (``--console``
names the supervisor's terminal, since the supervisor keeps children's output in
log files) and appends it, one JSON object a line, to
``<data_dir>/demo/notifications.jsonl``. ``GET /notifications`` lists them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from demo.httpjson import JSONHandler, serve_until_term
from pulse.config import split_listen
from pulse.log import setup
from pulse.service import load_or_exit

COMPONENT = "demo.sink"
MAX_BODY = 1 << 20
log = logging.getLogger(COMPONENT)
MARKS = {"failure": "!!", "warning": "! ", "success": "ok", "info": "i "}


def notifications_path(data_dir: str | Path) -> Path:
    """The file every received notification is appended to."""
    return Path(data_dir) / "demo" / "notifications.jsonl"


def render(note: dict) -> str:
    """A notification as the newcomer sees it on the console."""
    kind = str(note.get("type") or "info")
    stamp = time.strftime("%H:%M:%S", time.localtime(note.get("received", time.time())))
    title = str(note.get("title") or "(no title)")
    bar = "=" * 72
    lines = [bar, f"[{MARKS.get(kind, '  ')}] {stamp} demo channel: {title}"]
    message = str(note.get("message") or "").strip()
    lines += [f"    {line}" for line in message.splitlines()[:30]]
    lines.append(bar)
    return "\n".join(lines) + "\n"


class Sink:
    """Records notifications to a file and writes them to a console stream."""

    def __init__(self, data_dir: str | Path, console=None):
        self.path = notifications_path(data_dir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.console = console or sys.stdout
        self._lock = threading.Lock()

    def record(self, body: dict) -> dict:
        """Store and print one notification; return what was stored."""
        note = {"received": time.time(), "title": body.get("title"),
                "message": body.get("message"), "type": body.get("type")}
        line = json.dumps(note) + "\n"
        with self._lock:
            with open(self.path, "a") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                self.console.write(render(note))
                self.console.flush()
            except (OSError, ValueError):
                pass
        return note

    def read(self, limit: int = 100) -> list[dict]:
        """The last `limit` notifications, oldest first."""
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return []
        out = []
        for line in lines[-limit:]:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def make_server(listen: str, sink: Sink) -> ThreadingHTTPServer:
    """The sink's HTTP server (not started)."""

    class Handler(JSONHandler):
        def do_GET(self):
            if self.path in ("/-/ready", "/-/healthy"):
                self._send(200, {"status": "ok", "component": COMPONENT})
            elif self.path.split("?")[0] == "/notifications":
                self._send(200, {"notifications": sink.read()})
            else:
                self._send(404, {"error": {"code": "not_found", "message": "no such path",
                                           "details": []}})

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._send(413 if length > MAX_BODY else 400, {"error": {
                    "code": "invalid_length", "message": "bad Content-Length",
                    "details": [{"field": "Content-Length",
                                 "problem": f"must be 0..{MAX_BODY}"}]}})
                return
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            if not isinstance(body, dict):
                self._send(400, {"error": {"code": "invalid_body",
                                           "message": "expected a JSON object",
                                           "details": [{"field": "body",
                                                        "problem": "not a JSON object"}]}})
                return
            sink.record(body)
            self._send(200, {"status": "received"})

    host, port = split_listen(listen)
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog=f"python -m {COMPONENT}")
    parser.add_argument("--config")
    parser.add_argument("--listen")
    parser.add_argument("--console", help="a file (e.g. the supervisor's terminal) to print to")
    args = parser.parse_args(argv)
    cfg = load_or_exit(args.config)
    setup(COMPONENT, cfg.log_level)
    console = None
    if args.console:
        try:
            # Append mode: when the terminal is really a log file, never write over it.
            console = open(args.console, "a", buffering=1)
        except OSError as exc:
            log.warning("cannot open console %s (%s); printing to stdout", args.console, exc)
    sink = Sink(cfg.data_dir, console)
    listen = args.listen or cfg.demo.sink_listen
    server = make_server(listen, sink)
    log.info("demo notification sink on http://%s/notify; file %s", listen, sink.path)
    serve_until_term(server)

if __name__ == "__main__":
    main()
