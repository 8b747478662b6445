"""Rendering alertmanager.yml: the bridge address and the optional webhook token."""

from pulse.config import validate
from pulse.launcher.render import alertmanager_config


def config(**bridge):
    return validate({"bridge": {"listen": "127.0.0.1:18080", **bridge},
                     "privacy": {"salt": "s" * 32}}, "test", {})


def hooks(doc):
    return [h for r in doc["receivers"] for h in r["webhook_configs"]]


def test_every_webhook_points_at_the_configured_bridge_without_a_token():
    doc = alertmanager_config(config())
    assert {h["url"] for h in hooks(doc)} == {"http://127.0.0.1:18080/hooks/alertmanager"}
    assert all("http_config" not in h for h in hooks(doc))


def test_a_webhook_token_is_sent_as_bearer_by_every_webhook():
    doc = alertmanager_config(config(webhook_token="hook-token-0123456789"))
    for hook in hooks(doc):
        assert hook["http_config"]["authorization"] == {
            "type": "Bearer", "credentials": "hook-token-0123456789"}


def test_the_rendered_config_with_a_token_passes_amtool(tmp_path):
    import subprocess

    from pulse.launcher.render import dump
    from tests.harness import require_binary

    path = tmp_path / "alertmanager.yml"
    path.write_text(dump(alertmanager_config(config(webhook_token="hook-token-0123456789"))))
    result = subprocess.run([require_binary("amtool"), "check-config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
