"""Small clients for the Prometheus and Alertmanager HTTP APIs, as the bridge uses them."""

from __future__ import annotations

from typing import Any

import requests

from bridge.errors import ApiError


class Unavailable(ApiError):
    """Prometheus or Alertmanager did not answer: a 503 naming which one and why."""

    def __init__(self, what: str, url: str, why: str):
        super().__init__(503, "unavailable", f"{what} at {url} is unavailable: {why}")


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
            raise Unavailable("Prometheus", self.url, type(exc).__name__) from None
        try:
            body = resp.json()
        except ValueError:
            raise Unavailable("Prometheus", self.url, f"HTTP {resp.status_code}") from None
        if body.get("status") != "success":
            raise ApiError(422 if resp.status_code == 400 else 503, "prometheus_error",
                           f"Prometheus refused the query: {body.get('error', resp.text[:200])}")
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
            raise Unavailable("Prometheus", self.url, type(exc).__name__) from None
        if resp.status_code != 200:
            raise ApiError(422, "reload_failed",
                           f"Prometheus refused the reload: {resp.text.strip()[:500]}")


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
            raise Unavailable("Alertmanager", self.url, type(exc).__name__) from None
        if resp.status_code >= 400:
            raise ApiError(422 if resp.status_code == 400 else 503, "alertmanager_error",
                           f"Alertmanager answered {resp.status_code}: {resp.text[:300]}")
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
        try:
            return self.session.get(f"{self.url}/-/ready", timeout=self.timeout).ok
        except requests.RequestException:
            return False
