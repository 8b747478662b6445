"""Prometheus instrumentation for the fitness platform's own WSGI services (Flask or any WSGI app).

Usage with Flask::

    instr = Instrumentation()              # or Instrumentation(registry=my_registry)
    instr.instrument_flask(app)            # middleware + route templates + /metrics
    with instr.db_query("select"):         # or @instr.db_query("select") on a function
        rows = db.execute(...)
    instr.cache_result(hit=value is not None)

With any other WSGI app: ``app = instr.middleware(app, routes=["/users/{id}"])``.

Under gunicorn (several worker processes) set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
directory before the server starts and use ``gunicorn_child_exit`` as the ``child_exit``
hook of the gunicorn config: every worker writes its samples there and ``/metrics``
(whichever worker answers) aggregates all of them.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Fine steps around the 1.5 s / 2 s alert thresholds so histogram_quantile is exact there.
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5,
                   5.0, 7.5, 10.0)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT",
                     "TRACE"})
DB_OPERATIONS = frozenset({"select", "insert", "update", "delete", "upsert", "transaction"})
EXCLUDED_PATHS = frozenset({"/metrics", "/-/healthy", "/-/ready", "/favicon.ico"})
OTHER = "other"
# The key under which a framework integration leaves the matched route template.
ROUTE_KEY = "pulse.http_route"

_FLASK_VAR = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_TEMPLATE_VAR = re.compile(r"\{([^{}/]+)\}")


def multiprocess_dir() -> str | None:
    """The prometheus_client multiprocess directory, when this process runs in that mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


@functools.lru_cache(maxsize=1024)
def flask_rule_template(rule: str) -> str:
    """'/users/<int:user_id>' -> '/users/{user_id}' (the OpenTelemetry http.route form)."""
    return _FLASK_VAR.sub(lambda m: "{" + m.group(1) + "}", rule)


def compile_routes(routes: Iterable[str]) -> Callable[[str], str | None]:
    """A matcher from templates like '/users/{id}' to the template a raw path belongs to."""
    compiled = []
    for template in routes:
        parts = _TEMPLATE_VAR.split(template)
        # split() alternates literal text and variable names.
        pattern = "".join(re.escape(p) if i % 2 == 0 else "[^/]+" for i, p in enumerate(parts))
        compiled.append((re.compile(f"^{pattern}/?$"), template))

    @functools.lru_cache(maxsize=4096)
    def match(path: str) -> str | None:
        for regex, template in compiled:
            if regex.match(path):
                return template
        return None

    return match


class _QueryTimer:
    """Times one database query (context manager) or every call of a function (decorator)."""

    __slots__ = ("_child", "_start")

    def __init__(self, child):
        self._child = child
        self._start = 0.0

    def __enter__(self) -> _QueryTimer:
        self._start = perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._child.observe(perf_counter() - self._start)

    def __call__(self, fn: Callable) -> Callable:
        child = self._child

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start = perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                child.observe(perf_counter() - start)

        return timed


class _Body:
    """Wraps a WSGI response body so the request is measured when the server closes it."""

    __slots__ = ("_body", "_done")

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]):
        self._body = body
        self._done = done

    def __iter__(self):
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._done()


class Instrumentation:
    """The metrics of one service and the tools that feed them (middleware, db, cache)."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 buckets: Iterable[float] = DEFAULT_BUCKETS,
                 db_operations: Iterable[str] = DB_OPERATIONS,
                 exclude_paths: Iterable[str] = EXCLUDED_PATHS,
                 metrics_path: str = "/metrics"):
        self.multiprocess = multiprocess_dir() is not None
        # In multiprocess mode samples live in the shared directory and are read back by a
        # MultiProcessCollector; registering them as well would export every series twice.
        self.registry = registry if registry is not None else CollectorRegistry()
        target = None if self.multiprocess else self.registry
        self.requests = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, by method, route template and status code.",
            ["http_request_method", "http_route", "http_response_status_code"],
            buckets=tuple(buckets), registry=target)
        self.active = Gauge(
            "http_server_active_requests", "HTTP server requests being handled right now.",
            ["http_request_method"], registry=target, multiprocess_mode="livesum")
        self.db = Histogram(
            "app_db_query_duration_seconds", "Duration of database queries, by operation.",
            ["operation"], buckets=DB_BUCKETS, registry=target)
        self.cache = Counter(
            "app_cache_requests_total", "Cache lookups, by result (hit or miss).",
            ["result"], registry=target)
        self._cache_hit = self.cache.labels("hit")
        self._cache_miss = self.cache.labels("miss")
        self.db_operations = frozenset(db_operations)
        self.exclude_paths = frozenset(exclude_paths)
        self.metrics_path = metrics_path
        self._children: dict[tuple[str, str, str], Any] = {}
        self._active: dict[str, Any] = {}

    # --- database and cache -------------------------------------------------------------

    def db_query(self, operation: str) -> _QueryTimer:
        """Time a query: `with instr.db_query("select"):` or `@instr.db_query("insert")`."""
        op = operation if operation in self.db_operations else OTHER
        return _QueryTimer(self.db.labels(op))

    def cache_result(self, hit: bool) -> None:
        """Count one cache lookup as a hit or a miss."""
        (self._cache_hit if hit else self._cache_miss).inc()

    def cache_hit(self) -> None:
        """Count one cache hit."""
        self._cache_hit.inc()

    def cache_miss(self) -> None:
        """Count one cache miss."""
        self._cache_miss.inc()

    # --- exposition ---------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text exposition of this service (all workers in multiprocess mode)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

    def metrics_app(self, environ: dict, start_response: Callable) -> list[bytes]:
        """A WSGI app answering with the exposition (mount it wherever you like)."""
        body = self.exposition()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                  ("Content-Length", str(len(body)))])
        return [body]

    # --- HTTP ---------------------------------------------------------------------------

    def _child(self, method: str, route: str, status: str):
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(method, route, status)
        return child

    def middleware(self, app: Callable, routes: Iterable[str] | None = None,
                   route_of: Callable[[dict], str | None] | None = None,
                   serve_metrics: bool = True) -> Callable:
        """Wrap a WSGI app so every request is measured (and /metrics is served)."""
        match = compile_routes(routes) if routes else None
        exclude = self.exclude_paths
        metrics_path = self.metrics_path if serve_metrics else None
        active = self._active
        gauge = self.active
        child_of = self._child

        def wsgi(environ: dict, start_response: Callable):
            path = environ.get("PATH_INFO") or "/"
            if path == metrics_path:
                return self.metrics_app(environ, start_response)
            if path in exclude:
                return app(environ, start_response)
            method = environ.get("REQUEST_METHOD", "GET")
            if method not in METHODS:
                method = OTHER
            inflight = active.get(method)
            if inflight is None:
                inflight = active[method] = gauge.labels(method)
            status = ["500"]

            def capture(line: str, headers, exc_info=None):
                status[0] = line[:3]
                return start_response(line, headers, exc_info)

            def done() -> None:
                elapsed = perf_counter() - start
                route = environ.get(ROUTE_KEY)
                if route is None:
                    route = (route_of(environ) if route_of else None) or \
                        (match(path) if match else None) or OTHER
                child_of(method, route, status[0]).observe(elapsed)
                inflight.dec()

            inflight.inc()
            start = perf_counter()
            try:
                body = app(environ, capture)
            except BaseException:
                status[0] = "500"
                done()
                raise
            return _Body(body, done)

        wsgi.__wrapped__ = app
        return wsgi

    def instrument_flask(self, app, serve_metrics: bool = True):
        """Measure every request of a Flask app by its route template; mount /metrics."""
        from flask import request

        def _pulse_route() -> None:
            # url_rule is None when routing failed (404/405): the route stays 'other'.
            rule = request.url_rule
            if rule is not None:
                request.environ[ROUTE_KEY] = flask_rule_template(rule.rule)

        # First in line: a later before_request hook that answers early (auth, rate limit)
        # must still leave its route template, not 'other'.
        app.before_request_funcs.setdefault(None, []).insert(0, _pulse_route)
        app.wsgi_app = self.middleware(app.wsgi_app, serve_metrics=serve_metrics)
        return app


def gunicorn_child_exit(server, worker) -> None:
    """gunicorn `child_exit` hook: drop a dead worker's live gauges from the shared files."""
    from prometheus_client import multiprocess

    if multiprocess_dir():
        multiprocess.mark_process_dead(worker.pid)
