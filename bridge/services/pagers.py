"""PagerDuty (Events API v2) and Opsgenie (Alert API): one incident per Alertmanager group.

The bridge sends these itself, not Alertmanager, because only the bridge hears
every peer of a cluster and can drop a peer's late firing after the resolve
(sent natively, that trigger would open a second incident).

The incident key is sha256(receiver + "\\n" + groupKey): stable for the group's
whole life (repeats and alerts joining update the same incident; the resolve
closes it), and two receivers paging the same group keep apart. A firing
notification triggers (PagerDuty) or creates (Opsgenie, which deduplicates an
open alias) and, when the group already paged, updates Opsgenie's message and
description; a resolved one resolves / closes.

Answers: 2xx delivered; 429, 5xx and network errors are failures (the webhook
answers 5xx so Alertmanager retries); any other 4xx is a permanent rejection,
logged and counted, never retried. Keys never appear in logs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping

import requests

from bridge.services.templates import Rendered, truncate

log = logging.getLogger(__name__)

KINDS = ("pagerduty", "opsgenie")
PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info", "none": "info"}
OG_PRIORITY = {"critical": "P1", "error": "P2", "warning": "P3", "info": "P5", "none": "P5"}
PD_SUMMARY_MAX = 1024
OG_MESSAGE_MAX = 130
OG_DESCRIPTION_MAX = 15000
SOURCE = "pulse"


def incident_key(receiver: str, group_key: str) -> str:
    """The incident's identity: the same for every notification of one group to one receiver."""
    return hashlib.sha256(f"{receiver}\n{group_key}".encode()).hexdigest()


def severity_of(payload: Mapping) -> str:
    """The worst severity label among the firing alerts (else the common one)."""
    order = ["critical", "error", "warning", "info", "none"]
    found = [(a.get("labels") or {}).get("severity", "") for a in payload.get("alerts") or []
             if a.get("status") == "firing"]
    found = [s for s in found if s in order] or [
        (payload.get("commonLabels") or {}).get("severity", "")]
    known = [s for s in found if s in order]
    return min(known, key=order.index) if known else "error"


def pagerduty_event(routing_key: str, key: str, payload: Mapping, page: Rendered) -> dict:
    """The Events API v2 body for a notification."""
    if payload.get("status") == "resolved":
        return {"routing_key": routing_key, "dedup_key": key, "event_action": "resolve"}
    labels = dict(payload.get("commonLabels") or {})
    labels.pop("channels", None)
    return {
        "routing_key": routing_key,
        "dedup_key": key,
        "event_action": "trigger",
        "payload": {
            "summary": truncate(page.summary or page.title, PD_SUMMARY_MAX),
            "source": labels.get("instance") or labels.get("job") or SOURCE,
            "severity": PD_SEVERITY.get(severity_of(payload), "error"),
            "component": labels.get("job"),
            "group": labels.get("team"),
            "class": labels.get("alertname"),
            "custom_details": {"text": truncate(page.text, 16000), "labels": labels,
                               "firing": sum(a.get("status") == "firing"
                                             for a in payload.get("alerts") or [])},
        },
        "client": "Pulse",
        "links": [{"href": url, "text": name} for name, url in page.links],
    }


def opsgenie_alert(key: str, payload: Mapping, page: Rendered) -> dict:
    """The Alert API create body for a firing notification."""
    labels = dict(payload.get("commonLabels") or {})
    labels.pop("channels", None)
    details = {k: v for k, v in labels.items()}
    details.update({name: url for name, url in page.links})
    tags = [v for k, v in sorted(labels.items()) if k in ("severity", "team", "job")]
    return {
        "alias": key,
        "message": truncate(page.summary or page.title, OG_MESSAGE_MAX),
        "description": truncate(page.text, OG_DESCRIPTION_MAX),
        "details": details,
        "source": SOURCE,
        "tags": tags,
        "priority": OG_PRIORITY.get(severity_of(payload), "P3"),
    }


class Pagers:
    """Sends notifications to PagerDuty and Opsgenie targets over one HTTP session."""

    def __init__(self, timeout: float = 10.0):
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "Pulse-bridge"

    def _post(self, method: str, url: str, body: dict, headers: dict | None = None) -> str:
        """'success', 'failure' (retry) or 'rejected' (permanent)."""
        try:
            resp = self.session.request(method, url, json=body, headers=headers,
                                        timeout=self.timeout)
        except requests.RequestException as exc:
            log.warning("incident tool unreachable: %s", type(exc).__name__)
            return "failure"
        if resp.status_code < 300:
            return "success"
        if resp.status_code == 429 or resp.status_code >= 500:
            return "failure"
        log.error("incident tool refused the event (HTTP %d): %s", resp.status_code,
                  resp.text[:300])
        return "rejected"

    def send(self, kind: str, url: str, secret: str, key: str, payload: Mapping,
             page: Rendered, update: bool) -> str:
        """Deliver one notification; 'success', 'failure' or 'rejected'."""
        if kind == "pagerduty":
            return self._post("POST", url, pagerduty_event(secret, key, payload, page))
        base = url.rstrip("/") + "/v2/alerts"
        auth = {"Authorization": f"GenieKey {secret}"}
        if payload.get("status") == "resolved":
            return self._post("POST", f"{base}/{key}/close?identifierType=alias",
                              {"source": SOURCE, "note": "Resolved in Alertmanager"}, auth)
        body = opsgenie_alert(key, payload, page)
        result = self._post("POST", base, body, auth)
        if result == "success" and update:
            # A create with an open alias only counts; the text is updated explicitly.
            for part in ("message", "description"):
                outcome = self._post("PUT", f"{base}/{key}/{part}?identifierType=alias",
                                     {part: body[part]}, auth)
                if outcome != "success":
                    return outcome
        return result
