"""Local servers speaking PagerDuty's Events API v2 and Opsgenie's Alert API, with their
incident semantics: one open incident per key, a trigger/create on an open key only
adds to it, resolve/close closes it, a trigger after the resolve opens a NEW one.

`opened` counts incidents ever opened per key; `events` keeps every request.
Set `fail_status` (e.g. 503) to make every request fail for a while.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PD_SEVERITIES = ("critical", "error", "warning", "info")


class IncidentTool:
    """The shared part: a loopback server, the incident store, the request log."""

    def __init__(self):
        self.incidents: dict[str, dict] = {}   # key -> {state, opened, updates, last}
        self.events: list[dict] = []
        self.fail_status: int | None = None
        self._lock = threading.Lock()
        tool = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                url = urlsplit(self.path)
                with tool._lock:
                    if tool.fail_status:
                        status, answer = tool.fail_status, {"message": "unavailable"}
                    else:
                        status, answer = tool.handle(self.command, url.path,
                                                     parse_qs(url.query), self.headers, body)
                    tool.events.append({"method": self.command, "path": url.path,
                                        "body": body, "status": status, "time": time.time()})
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def _open_or_add(self, key: str, body: dict) -> None:
        inc = self.incidents.get(key)
        if inc is None or inc["state"] == "resolved":
            opened = (inc or {}).get("opened", 0) + 1
            self.incidents[key] = {"state": "open", "opened": opened, "updates": 0,
                                   "last": body}
        else:
            inc["updates"] += 1
            inc["last"] = body

    def _close(self, key: str) -> bool:
        inc = self.incidents.get(key)
        if inc is None or inc["state"] != "open":
            return False
        inc["state"] = "resolved"
        return True

    def handle(self, method, path, query, headers, body) -> tuple[int, dict]:
        """(status, answer) for one request; subclasses speak their API."""
        raise NotImplementedError

    def successful(self) -> list[dict]:
        """Every request answered 2xx."""
        with self._lock:
            return [e for e in self.events if e["status"] < 300]


class PagerDutyServer(IncidentTool):
    """POST /v2/enqueue: trigger / acknowledge / resolve by dedup_key (202 or 400)."""

    def handle(self, method, path, query, headers, body):
        if method != "POST" or path != "/v2/enqueue":
            return 404, {"status": "not found"}
        errors = []
        if not isinstance(body, dict):
            return 400, {"status": "invalid event", "message": "Event object is invalid",
                         "errors": ["body is not a JSON object"]}
        if not isinstance(body.get("routing_key"), str) or len(body["routing_key"]) != 32:
            errors.append("'routing_key' must be 32 characters")
        action = body.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is invalid")
        key = body.get("dedup_key") or uuid.uuid4().hex
        if len(key) > 255:
            errors.append("'dedup_key' is longer than 255 characters")
        if action == "trigger":
            p = body.get("payload") or {}
            if not p.get("summary") or len(p["summary"]) > 1024:
                errors.append("'payload.summary' is missing or longer than 1024")
            if not p.get("source"):
                errors.append("'payload.source' is missing")
            if p.get("severity") not in PD_SEVERITIES:
                errors.append("'payload.severity' is invalid")
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid",
                         "errors": errors}
        if action == "trigger":
            self._open_or_add(key, body)
        elif action == "resolve":
            self._close(key)  # unknown or resolved: dropped, still 202
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}


class OpsgenieServer(IncidentTool):
    """/v2/alerts: create (dedup by open alias), close and message/description by alias."""

    def __init__(self, api_key: str):
        self.api_key = api_key
        super().__init__()

    def handle(self, method, path, query, headers, body):
        if headers.get("Authorization") != f"GenieKey {self.api_key}":
            return 401, {"message": "Key format is not valid!"}
        accepted = {"result": "Request will be processed", "took": 0.01,
                    "requestId": str(uuid.uuid4())}
        parts = path.strip("/").split("/")
        if method == "POST" and parts == ["v2", "alerts"]:
            message = (body or {}).get("message")
            if not isinstance(message, str) or not message or len(message) > 130:
                return 422, {"message": "Request body is not processable",
                             "errors": {"message": "missing or longer than 130"}}
            alias = body.get("alias") or str(uuid.uuid4())
            self._open_or_add(alias, body)
            return 202, accepted
        if len(parts) == 4 and parts[:2] == ["v2", "alerts"] and query.get(
                "identifierType") == ["alias"]:
            alias, action = parts[2], parts[3]
            if method == "POST" and action == "close":
                self._close(alias)  # a closed/unknown alias fails later, in request status
                return 202, accepted
            if method == "PUT" and action in ("message", "description"):
                inc = self.incidents.get(alias)
                if inc and inc["state"] == "open":
                    inc["last"] = {**inc["last"], action: (body or {}).get(action)}
                return 202, accepted
        return 404, {"message": "not found"}
