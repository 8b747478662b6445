"""Demo time: the demo stack's rules, routing and config overlay."""

import subprocess

import yaml

from pulse.config import validate
from pulse.launcher import demotime
from pulse.launcher.render import alertmanager_config, dump, prometheus_config
from pulse.paths import ROOT
from tests import harness

ENV = {"PULSE_ADMIN_TOKEN": "a" * 32, "PULSE_PRIVACY_SALT": "s" * 32}


def test_time_scale_follows_the_simulated_day():
    assert demotime.time_scale("1h") == 24
    assert demotime.time_scale("24h") == 1
    assert demotime.time_scale("48h") == 1


def test_ranges_offsets_and_for_are_compressed_with_a_floor():
    text = ("expr: rate(x[5m]) / (y offset 1w) > predict_linear(z[6h], 4 * 3600)\n"
            "  and max_over_time(w[1h:1m]) > 0\nfor: 15m\n")
    out = demotime.compress_rules(text, 24)
    assert "rate(x[20s])" in out  # 300/24 = 12.5 s, below the 20 s floor
    assert "offset 25200s" in out
    assert "z[900s]" in out and "4 * 3600" in out
    assert "w[150s:1m]" in out
    assert out.endswith("for: 38s\n")


def test_shipped_rules_compressed_still_pass_promtool(tmp_path):
    promtool = harness.require_binary("promtool")
    out = demotime.write_rules(tmp_path / "rules", 24)
    files = sorted(str(p) for p in out.glob("*.rules.yml"))
    assert len(files) == len(list((ROOT / "rules").glob("*.rules.yml")))
    result = subprocess.run([promtool, "check", "rules", *files], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_overlay_adds_fast_scrapes_and_the_payment_probe(tmp_path):
    source = ROOT / "pulse.yml"
    out = demotime.write_config(source, tmp_path / "demo" / "pulse.yml")
    raw = yaml.safe_load(out.read_text())
    assert raw["prometheus"]["scrape_interval"] == "5s"
    assert {"name": "payments", "url": "http://127.0.0.1:9798/health"} in \
        raw["exporters"]["integrations"]["targets"]
    # Secrets stay references: the overlay never writes their values to disk.
    assert "${PULSE_ADMIN_TOKEN}" in out.read_text()
    cfg = validate(raw, str(out), ENV)
    assert [t.name for t in cfg.exporters.integrations.targets][-2:] == ["payments",
                                                                          "payments_tls"]
    secure = cfg.exporters.integrations.targets[-1]
    assert secure.url == "https://127.0.0.1:9797/health" and secure.tls_verify
    assert secure.ca_file == f"{tmp_path}/demo/payments-tls/cert.pem"
    # The drift window is one simulated day.
    assert cfg.exporters.ai.drift.window == "1h"
    again = demotime.overlay(raw)
    names = [t["name"] for t in again["exporters"]["integrations"]["targets"]]
    assert names.count("payments") == 1 and names.count("payments_tls") == 1


def test_demo_render_uses_the_demo_rules_and_unmuted_routing(tmp_path):
    amtool = harness.require_binary("amtool")
    cfg = validate({"data_dir": str(tmp_path)}, "x", ENV)
    prom = prometheus_config(cfg, demo=True)
    assert prom["rule_files"][0] == f"{tmp_path}/demo/rules/*.rules.yml"
    assert prometheus_config(cfg)["rule_files"][0] == f"{tmp_path}/prometheus/rules/*.rules.yml"
    am = alertmanager_config(cfg, demo=True)
    assert "active_time_intervals" not in dump(am)
    assert "active_time_intervals" in dump(alertmanager_config(cfg))
    path = tmp_path / "am.yml"
    path.write_text(dump(am))
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_keep_firing_for_is_on_demo_time_like_for():
    from pulse.launcher.demotime import compress_rules

    text = "      for: 15m\n      keep_firing_for: 15m\n"
    out = compress_rules(text, 60)
    assert out == "      for: 15s\n      keep_firing_for: 15s\n"
