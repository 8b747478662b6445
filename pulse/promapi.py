"""The one HTTP client of Pulse for the Prometheus and Alertmanager APIs.

Failures are plain exceptions, not HTTP answers: `PromUnavailable` when the
server does not answer, `PromError` when it answers with a refusal. Whoever
serves HTTP (the bridge) decides what they become for its clients.
"""

from __future__ import annotations

from typing import Any

import requests


class PromError(Exception):
    """Prometheus or Alertmanager answered with a refusal.

    code names the failure (prometheus_error, alertmanager_error, reload_failed,
    unavailable); invalid is True when the request itself was at fault (the server
    answered 400, or refused a reload), False when the server is in trouble.
    """

    def __init__(self, code: str, message: str, invalid: bool = False,
                 error_type: str = "", detail: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.invalid = invalid
        self.error_type = error_type
        self.detail = detail


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

    def __init__(self, url: str, timeout: float = 10.0, session: requests.Session | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def _get(self, path: str, **params) -> Any:
        try:
            resp = self.session.get(f"{self.url}{path}", params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise PromUnavailable("Prometheus", self.url, type(exc).__name__) from None
        try:
            body = resp.json()
        except ValueError:
            raise PromUnavailable("Prometheus", self.url, f"HTTP {resp.status_code}") from None
        if body.get("status") != "success":
            detail = body.get("error", resp.text[:200])
            raise PromError("prometheus_error", f"Prometheus refused the query: {detail}",
                            invalid=resp.status_code == 400,
                            error_type=body.get("errorType", ""), detail=detail)
        return body["data"]

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
