"""Grants and step-up on live processes: a real bridge and a real intake on one data dir.

A grant made on the bridge works on the intake's dead letters at once; revoked or expired, it
gets 401 from both at the next request, without a restart; it survives kill -9 of the bridge.
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta

import pytest
import requests

from pulse.grants import grants_path
from tests import harness

pytestmark = pytest.mark.integration

GRANTS = "/api/analytics/access/grants"
REJECTED = "/api/analytics/events/rejected"
RULES = "/api/analytics/alerts/rules"
WITHDRAW = "/api/analytics/privacy/withdraw"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def stamp(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def stack(tmp_path, service):
    """(bridge host:port, intake host:port, admin headers, data dir) of live processes."""
    data_dir = tmp_path / "data"
    path = tmp_path / "pulse.yml"
    raw = harness.write_pulse_config(path, data_dir,
                                     exporters={"events": {"profiles": {"enabled": False}}})
    env = harness.pulse_env(data_dir)
    bridge, intake = raw["bridge"]["listen"], raw["exporters"]["events"]["listen"]
    service("exporters.events", path, env, intake)
    procs = {"bridge": service("bridge", path, env, bridge)}

    def restart_bridge():
        procs["bridge"].kill(signal.SIGKILL)
        procs["bridge"] = service("bridge", path, env, bridge)

    yield {"bridge": f"http://{bridge}", "bridge_listen": bridge, "intake": f"http://{intake}",
           "admin": bearer(env["PULSE_ADMIN_TOKEN"]), "token": env["PULSE_ADMIN_TOKEN"],
           "data_dir": data_dir, "restart_bridge": restart_bridge}


def grant(stack, role: str, subject: str, ahead: timedelta) -> dict:
    resp = requests.post(stack["bridge"] + GRANTS, timeout=30, headers=stack["admin"],
                         json={"role": role, "subject": subject,
                               "expiresAt": stamp(datetime.now(UTC) + ahead)})
    assert resp.status_code == 201, resp.text
    return resp.json()


def status(url: str, token: str) -> int:
    return requests.get(url, headers=bearer(token), timeout=30).status_code


def test_a_grant_works_everywhere_until_revoked_then_401_at_once(stack):
    made = grant(stack, "engineer", "consultant-ann", timedelta(days=7))
    token = made["token"]
    # Made on the bridge, honoured by the intake (another process) at its next request.
    assert status(stack["intake"] + REJECTED, token) == 200
    assert status(stack["bridge"] + RULES, token) == 200

    # The grant survives kill -9 of the bridge that wrote it.
    stack["restart_bridge"]()
    assert status(stack["bridge"] + RULES, token) == 200

    listed = requests.get(stack["bridge"] + GRANTS, headers=stack["admin"], timeout=30)
    assert listed.status_code == 200
    assert [(g["subject"], g["status"]) for g in listed.json()["grants"]] == [
        ("consultant-ann", "active")]
    assert token not in listed.text and "hash" not in listed.text
    assert token not in grants_path(stack["data_dir"]).read_text()

    revoked = requests.delete(f"{stack['bridge']}{GRANTS}/{made['id']}",
                              headers=stack["admin"], timeout=30)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    # Refused at once, by both processes, with no restart.
    assert status(stack["intake"] + REJECTED, token) == 401
    assert status(stack["bridge"] + RULES, token) == 401
    unknown = requests.delete(f"{stack['bridge']}{GRANTS}/g-unknown", headers=stack["admin"],
                              timeout=30)
    assert unknown.status_code == 404


def test_a_short_grant_expires_without_a_restart(stack):
    token = grant(stack, "engineer", "consultant-bob", timedelta(seconds=2))["token"]
    harness.wait_until(lambda: status(stack["intake"] + REJECTED, token) == 401,
                       message="the intake to refuse the expired grant")
    assert status(stack["bridge"] + RULES, token) == 401
    listed = requests.get(stack["bridge"] + GRANTS, headers=stack["admin"], timeout=30).json()
    assert [g["status"] for g in listed["grants"]] == ["expired"]


def test_personal_data_needs_a_fresh_step_up_token(stack):
    url = stack["bridge"] + WITHDRAW
    refused = requests.post(url, json={"userId": "u-1"}, headers=stack["admin"], timeout=30)
    assert refused.status_code == 403
    assert refused.json()["error"]["details"][0]["field"] == "scope"
    assert "personal_data" in refused.json()["error"]["message"]

    headers = harness.step_up(stack["bridge_listen"], stack["token"], "erasure request 17")
    allowed = requests.post(url, json={"userId": "u-1"}, headers=headers, timeout=30)
    assert allowed.status_code == 200, allowed.text
    audit = requests.get(stack["bridge"] + "/api/analytics/audit", headers=stack["admin"],
                         params={"path": "/api/analytics/access/step-up"}, timeout=30).json()
    assert audit["entries"][0]["reason"] == "erasure request 17"

    # A step-up token issued more than an hour ago is refused by its age, naming the scope
    # (its issue time set back in the file: the bridge re-reads the file when it changes).
    path = grants_path(stack["data_dir"])
    doc = json.loads(path.read_text())
    for record in doc["grants"]:
        record["issued_at"] -= 3601
    path.write_text(json.dumps(doc))
    old = requests.post(url, json={"userId": "u-1"}, headers=headers, timeout=30)
    assert old.status_code == 403
    assert old.json()["error"]["details"][0]["field"] == "scope"
