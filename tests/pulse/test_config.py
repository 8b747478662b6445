"""The configuration loader: schema, defaults, ${ENV}, one error listing every problem."""

import subprocess
import sys

import pytest
import yaml

from pulse.config import Config, ConfigError, load_config, parse_duration, validate
from pulse.paths import DEFAULT_CONFIG

ENV = {"PULSE_ADMIN_TOKEN": "a" * 32, "PULSE_PRIVACY_SALT": "s" * 32}


def problems(raw, env=ENV):
    with pytest.raises(ConfigError) as info:
        validate(raw, "test.yml", env)
    return dict(info.value.problems), str(info.value)


def test_shipped_config_is_valid_and_fills_defaults():
    cfg = load_config(DEFAULT_CONFIG, env=ENV)
    assert cfg.exporters.events.listen == "127.0.0.1:9701"
    assert cfg.exporters.events.enabled is True
    assert cfg.prometheus.resend_delay == "1s"
    assert cfg.bridge.tokens[0].token == "a" * 32
    assert cfg.privacy.k_anonymity == 5
    assert "email" in cfg.privacy.pii_patterns


def test_empty_document_gets_every_default():
    cfg = validate({}, "x", ENV)
    assert cfg.prometheus.url == "http://127.0.0.1:9090"
    assert cfg.bridge.listen == "127.0.0.1:8080"
    assert cfg.demo.users == 300


def test_unknown_key_is_named_with_its_path():
    found, text = problems({"prometheus": {"url": "http://x:1", "scrape_intervall": "5s"}})
    assert "prometheus.scrape_intervall" in found
    assert "unknown key" in found["prometheus.scrape_intervall"]
    assert "scrape_interval" in found["prometheus.scrape_intervall"]


def test_unknown_top_level_section():
    found, _ = problems({"graphite": {}})
    assert "unknown key" in found["graphite"]


def test_wrong_type_is_named():
    found, _ = problems({"exporters": {"events": {"enabled": "yes"}}})
    assert found["exporters.events.enabled"].startswith("expected boolean")


def test_missing_env_var_is_named_once():
    found, _ = problems({"bridge": {"tokens": [{"name": "a", "role": "admin",
                                                 "token": "${NOT_SET_ANYWHERE}"}]}})
    assert found == {"bridge.tokens[0].token": "environment variable NOT_SET_ANYWHERE is not set"}


def test_env_default_and_expansion():
    cfg = validate({"bridge": {"channels": {"ops": ["${OPS_URL:-json://127.0.0.1:1/}",
                                                    "mailto://${SMTP_USER}@x"]}}},
                   "x", {**ENV, "SMTP_USER": "me"})
    assert cfg.bridge.channels.ops == ("json://127.0.0.1:1/", "mailto://me@x")


def test_every_problem_in_one_error():
    found, text = problems({
        "prometheus": {"scrape_interval": "15 seconds", "bogus": 1},
        "exporters": {"events": {"listen": "127.0.0.1:99999"}},
        "privacy": {"salt": "${NOPE}"},
        "log_level": "loud",
    })
    assert set(found) == {"prometheus.scrape_interval", "prometheus.bogus",
                          "exporters.events.listen", "privacy.salt", "log_level"}
    assert text.startswith("test.yml: 5 problem(s)")
    assert "port 99999 is out of range" in found["exporters.events.listen"]


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "p.yml"
    path.write_text("prometheus:\n  url: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env=ENV)
    assert "line" in info.value.problems[0][0]


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "nope.yml", env=ENV)


def test_config_is_frozen():
    cfg = validate({}, "x", ENV)
    assert isinstance(cfg.prometheus, Config)
    with pytest.raises(TypeError):
        cfg.data_dir = "/elsewhere"
    with pytest.raises(TypeError):
        cfg.bridge["listen"] = "x"
    assert isinstance(cfg.bridge.tokens, tuple)
    assert cfg.to_dict()["prometheus"]["url"] == cfg.prometheus.url


def test_data_dir_env_override_is_absolute(tmp_path):
    cfg = validate({"data_dir": "relative"}, "x", {**ENV, "PULSE_DATA_DIR": str(tmp_path)})
    assert cfg.data_dir == str(tmp_path)
    assert validate({"data_dir": "rel"}, "x", ENV).data_dir.startswith("/")


@pytest.mark.parametrize("text,seconds", [("15s", 15), ("1h30m", 5400), ("250ms", 0.25),
                                          ("7d", 604800)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "1x", "s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_check_config_cli(tmp_path):
    good = subprocess.run([sys.executable, "-m", "pulse", "check-config", str(DEFAULT_CONFIG)],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    assert "valid" in good.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"prometheus": {"bogus": 1}, "exporters": {"ai": {
        "enabled": 3}}}))
    out = subprocess.run([sys.executable, "-m", "pulse", "check-config", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "prometheus.bogus: unknown key" in out.stderr
    assert "exporters.ai.enabled: expected boolean" in out.stderr


def test_check_config_also_checks_the_events_mapping(tmp_path):
    mapping = tmp_path / "mapping.yml"
    mapping.write_text("metrics: 3\n")
    cfg = tmp_path / "pulse.yml"
    cfg.write_text(yaml.safe_dump({"exporters": {"events": {"mapping": str(mapping)}}}))
    out = subprocess.run([sys.executable, "-m", "pulse", "check-config", str(cfg)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "exporters.events.mapping:" in out.stderr
    assert str(mapping) in out.stderr


def test_check_config_checks_channel_entries_without_showing_keys(tmp_path):
    cfg = tmp_path / "pulse.yml"
    cfg.write_text(yaml.safe_dump({"bridge": {"channels": {
        "pager": [{"pagerduty": {"routing_key": "short-secret-key"}}, "nosuchscheme://x"],
        "ai": [{"opsgenie": {"api_key": "k", "url": "ftp://x"}}],
        "odd": [{"slack": {"url": "x"}}]}}}))
    out = subprocess.run([sys.executable, "-m", "pulse", "check-config", str(cfg)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "bridge.channels.ai[0].opsgenie.url: 'ftp://x' does not match" in out.stderr
    assert "bridge.channels.odd[0]: expected one of: a string; {pagerduty: ...}; " \
           "{opsgenie: ...}" in out.stderr
    cfg.write_text(yaml.safe_dump({"bridge": {"channels": {
        "pager": [{"pagerduty": {"routing_key": "short-secret-key"}}, "nosuchscheme://x"]}}}))
    out = subprocess.run([sys.executable, "-m", "pulse", "check-config", str(cfg)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "bridge.channels.pager[0].pagerduty.routing_key: a PagerDuty Events API v2 " \
           "routing key has 32 characters, this one has 16" in out.stderr
    assert "bridge.channels.pager[1]: apprise does not understand this URL" in out.stderr
    assert "short-secret-key" not in out.stderr
