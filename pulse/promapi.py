"""The one HTTP client of Pulse for the Prometheus and Alertmanager APIs.

Failures are plain exceptions, not HTTP answers: `PromUnavailable` when the
server does not answer, `PromError` when it answers with a refusal. Whoever
serves HTTP (the bridge) decides what they become for its clients.
"""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass
from typing import Any

import requests


class PromError(Exception):
    """Prometheus or Alertmanager answered with a refusal.

    code names the failure (prometheus_error, alertmanager_error, reload_failed,
    unavailable); invalid is True when the request itself was at fault (the server
    answered 400, or refused a reload), False when the server is in trouble.
    """

    def __init__(self, code: str, message: str, invalid: bool = False,
                 error_type: str = "", detail: str = "", status: int = 0):
        super().__init__(message)
        self.code = code
        self.message = message
        self.invalid = invalid
        self.error_type = error_type
        self.detail = detail
        self.status = status  # the HTTP status the server answered (0: none)


class PromUnavailable(PromError):
    """Prometheus or Alertmanager did not answer (why: the exception or status)."""

    def __init__(self, what: str, url: str, why: str):
        super().__init__("unavailable", f"{what} at {url} is unavailable: {why}")
        self.what = what
        self.url = url
        self.why = why


def is_ready(url: str, timeout: float = 1.0, session: requests.Session | None = None) -> bool:
    """True when url (a `/-/ready` endpoint, as Prometheus, Alertmanager and Pulse serve) is 200."""
    try:
        return (session or requests).get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


class PrometheusClient:
    """GET queries, rules and targets; POST /-/reload."""

    def __init__(self, url: str, timeout: float = 10.0, session: requests.Session | None = None,
                 params: dict[str, str] | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.params = dict(params or {})

    def _get(self, path: str, **params) -> Any:
        try:
            resp = self.session.get(f"{self.url}{path}", params={**self.params, **params},
                                    timeout=self.timeout)
        except requests.RequestException as exc:
            raise PromUnavailable("Prometheus", self.url, type(exc).__name__) from None
        try:
            body = resp.json()
        except ValueError:
            raise PromUnavailable("Prometheus", self.url, f"HTTP {resp.status_code}") from None
        if body.get("status") != "success":
            detail = body.get("error", resp.text[:200])
            # 400 bad_data and 422 execution are the query's fault; 503 and the rest are not.
            raise PromError("prometheus_error", f"Prometheus refused the query: {detail}",
                            invalid=resp.status_code in (400, 422),
                            error_type=body.get("errorType", ""), detail=detail,
                            status=resp.status_code)
        return body["data"]

    def read(self, path: str, params: dict) -> Any:
        """The `data` of a read API answer as Prometheus gives it (path: /api/v1/series...;
        params: values or lists of values, e.g. match[])."""
        return self._get(path, **params)

    def query(self, expr: str, time: float | None = None) -> list[dict]:
        """Instant query; the result vector (a scalar becomes one sample without labels)."""
        params = {"query": expr}
        if time is not None:
            params["time"] = f"{time:.3f}"
        data = self._get("/api/v1/query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        """Range query; the result matrix."""
        return self._get("/api/v1/query_range", query=expr, start=f"{start:.3f}",
                         end=f"{end:.3f}", step=f"{step:g}")["result"]

    def series_exists(self, selector: str) -> bool:
        """True when at least one series matches the selector now."""
        return bool(self.query(f"count({selector})"))

    def rules(self, **params) -> list[dict]:
        """Loaded rule groups (params: the API's filters, e.g. type="alert")."""
        return self._get("/api/v1/rules", **params)["groups"]

    def runtimeinfo(self) -> dict:
        """/api/v1/status/runtimeinfo: reloadConfigSuccess, lastConfigTime, ..."""
        return self._get("/api/v1/status/runtimeinfo")

    def buildinfo(self) -> dict:
        """/api/v1/status/buildinfo: version, revision, ... (a cheap "does it answer")."""
        return self._get("/api/v1/status/buildinfo")

    def alerts(self) -> list[dict]:
        """Pending and firing alerts."""
        return self._get("/api/v1/alerts")["alerts"]

    def targets(self) -> list[dict]:
        """Active scrape targets."""
        return self._get("/api/v1/targets")["activeTargets"]

    def reload(self) -> None:
        """POST /-/reload; raise when Prometheus is down or refuses the new config."""
        try:
            resp = self.session.post(f"{self.url}/-/reload", timeout=self.timeout)
        except requests.RequestException as exc:
            raise PromUnavailable("Prometheus", self.url, type(exc).__name__) from None
        if resp.status_code != 200:
            detail = resp.text.strip()[:500]
            raise PromError("reload_failed", f"Prometheus refused the reload: {detail}",
                            invalid=True, detail=detail)

    def ready(self) -> bool:
        """True when /-/ready answers 200."""
        return is_ready(f"{self.url}/-/ready", self.timeout, self.session)


class AlertmanagerClient:
    """Alerts and silences through Alertmanager's v2 API."""

    def __init__(self, url: str, timeout: float = 10.0, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def _call(self, method: str, path: str, **kwargs) -> Any:
        try:
            resp = self.session.request(method, f"{self.url}/api/v2{path}",
                                        timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise PromUnavailable("Alertmanager", self.url, type(exc).__name__) from None
        if resp.status_code >= 400:
            detail = resp.text[:300]
            raise PromError("alertmanager_error",
                            f"Alertmanager answered {resp.status_code}: {detail}",
                            invalid=resp.status_code == 400, detail=detail)
        return resp.json() if resp.content else None

    def alerts(self, active: bool = True) -> list[dict]:
        """Current alerts (active only by default)."""
        return self._call("GET", "/alerts", params={"active": str(active).lower(),
                                                    "silenced": "false", "inhibited": "false"})

    def silences(self) -> list[dict]:
        """Every silence Alertmanager knows."""
        return self._call("GET", "/silences")

    def create_silence(self, silence: dict) -> str:
        """Create a silence; its id."""
        return self._call("POST", "/silences", json=silence)["silenceID"]

    def delete_silence(self, silence_id: str) -> None:
        """Expire a silence."""
        self._call("DELETE", f"/silence/{silence_id}")

    def ready(self) -> bool:
        """True when /-/ready answers 200."""
        return is_ready(f"{self.url}/-/ready", self.timeout, self.session)


class PrometheusReplicas:
    """Several identical Prometheus servers (an HA pair) read as one: whichever answers.

    Reads only: rule reloads go to each replica through the rule store (one client per
    replica, each confirmed; bridge/services/rule_store.py), never through this.

    Each call tries the replicas in order and moves to the next only when one does not
    answer (PromUnavailable); a refusal (bad query) is the answer. The replica that
    answered last is tried first next time, so a dead one costs one timeout, not one per call.
    """

    def __init__(self, urls: list[str], timeout: float = 10.0,
                 session: requests.Session | None = None):
        if not urls:
            raise ValueError("at least one Prometheus URL is needed")
        session = session or requests.Session()
        self.clients = [PrometheusClient(u, timeout=timeout, session=session) for u in urls]
        self.url = self.clients[0].url
        self._first = 0

    def _each(self, method: str, *args, **kwargs):
        order = self.clients[self._first:] + self.clients[:self._first]
        last: PromUnavailable | None = None
        for client in order:
            try:
                result = getattr(client, method)(*args, **kwargs)
            except PromUnavailable as exc:
                last = exc
                continue
            self._first = self.clients.index(client)
            return result
        assert last is not None
        if len(self.clients) > 1:
            raise PromUnavailable("Prometheus", ", ".join(c.url for c in self.clients),
                                  f"no replica answers (last: {last.why})")
        raise last

    def query(self, expr: str, time: float | None = None) -> list[dict]:
        """Instant query on the first replica that answers."""
        return self._each("query", expr, time=time)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        """Range query on the first replica that answers."""
        return self._each("query_range", expr, start, end, step)

    def series_exists(self, selector: str) -> bool:
        """True when at least one series matches the selector now."""
        return bool(self.query(f"count({selector})"))

    def read(self, path: str, params: dict) -> Any:
        """A read API answer's `data` from the first replica that answers."""
        return self._each("read", path, params)

    def rules(self, **params) -> list[dict]:
        """Loaded rule groups of the first replica that answers."""
        return self._each("rules", **params)

    def runtimeinfo(self) -> dict:
        """/api/v1/status/runtimeinfo of the first replica that answers."""
        return self._each("runtimeinfo")

    def buildinfo(self) -> dict:
        """/api/v1/status/buildinfo of the first replica that answers."""
        return self._each("buildinfo")

    def alerts(self) -> list[dict]:
        """Pending and firing alerts of the first replica that answers."""
        return self._each("alerts")

    def targets(self) -> list[dict]:
        """Active scrape targets of the first replica that answers."""
        return self._each("targets")

    def ready(self) -> bool:
        """True when any replica is ready."""
        return any(c.ready() for c in self.clients)


# Names in PromQL that are not metric names.
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                 "offset", "and", "or", "unless", "inf", "nan", "atan2", "start", "end"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _PROMQL_WORDS:
            continue
        names.add(name)
    names |= set(re.findall(r'__name__\s*=\s*"([^"]+)"', expr))
    return names


@dataclass(frozen=True)
class Tier:
    """A long-term store: its name, query URL, retention (seconds) and kept metric names."""

    name: str
    url: str
    retention: float
    keep: tuple[str, ...]

    def holds(self, names: set[str]) -> bool:
        """True when every name is kept by this tier (anchored, as relabelling matches)."""
        return bool(names) and all(any(re.fullmatch(k, n) for k in self.keep) for n in names)


_SOURCES: contextvars.ContextVar[list | None] = contextvars.ContextVar("pulse_read_sources",
                                                                       default=None)


class ReadRouter:
    """Reads follow the range: Prometheus within its retention, the right tier beyond it.

    Same PromQL either way. A range that starts before now - retention goes to a tier that
    keeps every metric the expression reads and still covers the start (the shortest such
    retention; else the longest one); without such a tier it stays on Prometheus. Which
    source answered is recorded for whoever opened `recording()` (the response's `source`).
    """

    def __init__(self, prom, retention: float, tiers: list[Tier] = (),
                 clock=None, session: requests.Session | None = None, timeout: float = 30.0):
        import time as _time

        self.prom = prom
        self.retention = retention
        self.tiers = list(tiers)
        self.clock = clock or _time.time
        # nocache=1: VictoriaMetrics otherwise rounds start and end to multiples of the
        # step (for its cache), and the points would not fall on the times asked for.
        self._clients = {t.name: PrometheusClient(t.url, timeout=timeout, session=session,
                                                  params={"nocache": "1"})
                         for t in self.tiers}

    def __getattr__(self, name: str):
        # Everything that is not a time-ranged read (rules, reload, targets) is Prometheus's.
        return getattr(self.prom, name)

    def tier_for(self, expr: str, start: float) -> Tier | None:
        """The tier a read starting at start should use, or None for Prometheus."""
        now = self.clock()
        if not self.tiers or start >= now - self.retention:
            return None
        names = metric_names(expr)
        holding = [t for t in self.tiers if t.holds(names)]
        covering = sorted((t for t in holding if start >= now - t.retention),
                          key=lambda t: t.retention)
        if covering:
            return covering[0]
        return max(holding, key=lambda t: t.retention, default=None)

    def _note(self, source: str) -> None:
        seen = _SOURCES.get()
        if seen is not None and source not in seen:
            seen.append(source)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        """Range query on Prometheus or on the tier the range needs."""
        tier = self.tier_for(expr, start)
        if tier is None:
            self._note("prometheus")
            return self.prom.query_range(expr, start, end, step)
        self._note(f"long_term:{tier.name}")
        return self._clients[tier.name].query_range(expr, start, end, step)

    def query(self, expr: str, time: float | None = None) -> list[dict]:
        """Instant query: a time before Prometheus's retention reads a tier (as query_range)."""
        at = self.clock() if time is None else time
        tier = self.tier_for(expr, at - _longest_range(expr))
        if tier is None:
            self._note("prometheus")
            return self.prom.query(expr, time=time)
        self._note(f"long_term:{tier.name}")
        return self._clients[tier.name].query(expr, time=time)

    def read(self, path: str, params: dict, expr: str | None = None,
             start: float | None = None) -> Any:
        """A read API answer's `data` (Prometheus's shape); a query whose start (or instant
        minus its longest range) is past Prometheus's retention reads the tier it needs."""
        tier = None
        if expr is not None:
            at = self.clock() if start is None else start
            if path.endswith("/query"):
                at -= _longest_range(expr)
            tier = self.tier_for(expr, at)
        if tier is None:
            self._note("prometheus")
            return self.prom.read(path, params)
        self._note(f"long_term:{tier.name}")
        return self._clients[tier.name].read(path, params)

    @staticmethod
    def recording():
        """A context manager collecting the sources read inside it (a list, in order)."""
        return _Recording()


class _Recording:
    def __enter__(self) -> list[str]:
        self.seen: list[str] = []
        self._token = _SOURCES.set(self.seen)
        return self.seen

    def __exit__(self, *exc) -> None:
        _SOURCES.reset(self._token)


def read_router(cfg, session: requests.Session | None = None) -> ReadRouter:
    """The reads of a Pulse configuration: its Prometheus replicas and long-term tiers."""
    from pulse.config import parse_duration, prometheus_urls

    lt = cfg["long_term"]
    tiers = [Tier(t["name"], t["url"], parse_duration(t["retention"]), tuple(t["keep"]))
             for t in (lt["tiers"] if lt["enabled"] else ())]
    prom = PrometheusReplicas(prometheus_urls(cfg), session=session)
    return ReadRouter(prom, parse_duration(cfg["prometheus"]["retention"]), tiers,
                      session=session)


def source_note(seen: list[str]) -> str:
    """The `source` of a response: the one source read, or several joined with '+'."""
    return "+".join(seen) if seen else "prometheus"


def _longest_range(expr: str) -> float:
    """The longest range ([5m], [1h:1m]) of an expression, in seconds (0 without one)."""
    return max((_seconds(w) for w in re.findall(r"\[([0-9a-z]+)(?::[0-9a-z]*)?\]", expr)),
               default=0.0)


def _seconds(text: str) -> float:
    from pulse.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        return 0.0
