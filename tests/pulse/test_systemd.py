"""`pulse render --systemd DIR`: one unit per component with `pulse up`'s command lines,
started at boot through pulse.target, restarted on failure, logging to journald."""

import configparser
import os
import shlex
import stat
import subprocess

import yaml

from pulse.config import load_config
from pulse.launcher import cli
from pulse.launcher.supervisor import plan
from tests import harness


def _unit(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def test_units_carry_the_config_data_dir_and_the_stack_command_lines(tmp_path, capsys,
                                                                    monkeypatch):
    config = tmp_path / "pulse.yml"
    harness.write_pulse_config(config, tmp_path / "data",
                               prometheus={"external_url": "https://prometheus.fit.example"})
    env = harness.pulse_env(tmp_path / "data")
    # As on a fresh machine: the admin token and salt are generated into the data dir.
    for name in ("PULSE_ADMIN_TOKEN", "PULSE_PRIVACY_SALT", "PULSE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "units"
    assert cli.main(["render", "--config", str(config), "--systemd", str(out)]) == 0
    secrets = tmp_path / "data" / "secrets" / "pulse.env"
    generated = dict(line.split("=", 1) for line in secrets.read_text().split())
    assert set(generated) == {"PULSE_ADMIN_TOKEN", "PULSE_PRIVACY_SALT"}
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    cfg = load_config(config, env=env)
    comps = plan(cfg, config_path=str(config))
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"pulse-{c.name}.service" for c in comps] + ["pulse.target"])
    target = _unit(out / "pulse.target")
    assert target["Install"]["WantedBy"] == "multi-user.target"
    assert set(target["Unit"]["Wants"].split()) == {f"pulse-{c.name}.service" for c in comps}
    for comp in comps:
        text = (out / f"pulse-{comp.name}.service").read_text()
        unit = _unit(out / f"pulse-{comp.name}.service")
        service = unit["Service"]
        assert service["Restart"] == "on-failure"
        assert service["StandardOutput"] == service["StandardError"] == "journal"
        assert unit["Install"]["WantedBy"] == "pulse.target"
        assert f"Environment=PULSE_CONFIG={config}" in text
        assert f"Environment=PULSE_DATA_DIR={cfg.data_dir}" in text
        argv = shlex.split(service["ExecStart"])
        assert os.path.isabs(argv[0])
        assert argv[1:] == comp.argv[1:]
        # No secret in any unit: they come from the environment files.
        assert not any(value in text for value in generated.values())
    assert "--web.external-url=https://prometheus.fit.example" in \
        (out / "pulse-prometheus.service").read_text()
    assert "ExecStartPre=" in (out / "pulse-prometheus.service").read_text()
    analyze = harness.require_binary("systemd-analyze")
    result = subprocess.run([analyze, "verify", *map(str, sorted(out.iterdir()))],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "systemctl enable --now pulse.target" in capsys.readouterr().out
    assert yaml.safe_load(config.read_text())  # the config itself is untouched
