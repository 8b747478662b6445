"""Bridge fixtures: an app on a temporary data dir, its test client, tokens per role."""

import pytest

from bridge import create_app
from pulse.config import validate

TOKENS = {
    role: f"{role}-token-0123456789abcdef"
    for role in ("admin", "engineer", "analyst", "executive", "coach", "auditor")
}


def token_entries() -> list[dict]:
    """bridge.tokens entries: one token per role (TOKENS), as every Pulse process reads them."""
    return [{"name": f"{role}-user", "role": role, "token": token,
             **({"coach_id": "coach-1"} if role == "coach" else {}),
             **({"expires": "2099-01-01T00:00:00Z"} if role == "auditor" else {})}
            for role, token in TOKENS.items()]


def bridge_config(tmp_path, extra_tokens=(), **sections):
    """A validated Config for the bridge with one token per role (plus extra_tokens)."""
    raw = {
        "data_dir": str(tmp_path / "data"),
        "bridge": {"tokens": token_entries() + list(extra_tokens)},
        "privacy": {"salt": "s" * 32},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return validate(raw, "test", {})


@pytest.fixture
def app(tmp_path):
    """The bridge app on a temporary data dir (Prometheus/Alertmanager URLs unreachable)."""
    return create_app(bridge_config(tmp_path, prometheus={"url": "http://127.0.0.1:9"},
                                    alertmanager={"url": "http://127.0.0.1:9"}))


@pytest.fixture
def client(app):
    """A Flask test client."""
    return app.test_client()


def auth(role: str) -> dict:
    """Headers carrying the bearer token of a role."""
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def step_up(client, role: str = "admin", reason: str = "test: a person's data") -> dict:
    """Headers carrying a fresh step-up token (personal_data scope) of a role's token."""
    resp = client.post("/api/analytics/access/step-up", json={"reason": reason},
                       headers=auth(role))
    assert resp.status_code == 201, resp.get_json()
    return {"Authorization": f"Bearer {resp.get_json()['token']}"}
