"""The real infrastructure exporter process: promtool, real Prometheus, flags, check-config."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from pulse.launcher.supervisor import service_argv
from tests import harness
from tests.exporters.infrastructure.test_collectors import fixture_scrape

# Our exporter's own process is one of the watched groups, so the group is never empty.
GROUPS = [{"name": "infrastructure", "cmdline": [r"-m exporters\.infrastructure"]},
          {"name": "absent_service", "names": ["no-such-process-name"]}]


@pytest.fixture(scope="module")
def exporter(tmp_path_factory):
    """The exporter as a real process, listening on a free port, `time` switched off by flag."""
    tmp = tmp_path_factory.mktemp("infrastructure")
    path = tmp / "pulse.yml"
    cfg = harness.write_pulse_config(
        path, tmp / "data", exporters={"infrastructure": {"processes": {"groups": GROUPS}}})
    listen = cfg["exporters"]["infrastructure"]["listen"]
    proc = harness.start_service("exporters.infrastructure", path, harness.pulse_env(tmp / "data"),
                                 listen, tmp / "exporter.log", timeout=60,
                                 args=["--no-collector.time"])
    yield listen
    proc.stop()


def scrape_text(listen: str) -> str:
    resp = requests.get(f"http://{listen}/metrics", timeout=30)
    assert resp.status_code == 200
    return resp.text


def test_real_output_is_promtool_clean(exporter):
    promtool = harness.require_binary("promtool")
    result = subprocess.run([promtool, "check", "metrics"], input=scrape_text(exporter),
                            capture_output=True, text=True, timeout=60)
    problems = (result.stdout + result.stderr).strip().splitlines()
    # node_memory_MemTotal_bytes and friends are node_exporter's names (the contract):
    # promtool says the same about node_exporter's own output. Nothing else may appear.
    others = [p for p in problems if not (p.startswith("node_memory_") and "camelCase" in p)]
    assert others == [], "\n".join(problems)


def test_real_output_has_the_golden_families_and_labels(exporter, tmp_path):
    def shapes(text: str) -> set[str]:
        return {f"{s.name}{{{','.join(s.labels)}}}"
                for f in text_string_to_metric_families(text) for s in f.samples}

    real, golden = shapes(scrape_text(exporter)), shapes(fixture_scrape(tmp_path))
    assert real <= golden, f"series the golden scrape does not know: {real - golden}"
    core = {"node_cpu_seconds_total{cpu,mode}", "node_load1{}", "node_memory_MemAvailable_bytes{}",
            "node_filesystem_avail_bytes{device,fstype,mountpoint}",
            "node_network_receive_bytes_total{device}", "node_boot_time_seconds{}",
            "pulse_process_num_procs{groupname}", "pulse_scrape_collector_success{collector}"}
    assert core <= real
    assert "node_time_seconds{}" not in real  # switched off by --no-collector.time


def test_no_pseudo_filesystems_in_real_output(exporter):
    text = scrape_text(exporter)
    for fstype in ("proc", "sysfs", "devpts", "cgroup", "cgroup2", "devtmpfs"):
        assert f'fstype="{fstype}"' not in text


def test_node_exporter_expressions_against_real_prometheus(exporter, prometheus):
    prometheus.configure(targets={"infrastructure": [exporter]})
    prometheus.wait_for_targets_up(["infrastructure"], timeout=60)
    job = 'job="infrastructure"'
    cpu = prometheus.wait_for_value(
        f'1 - avg without (cpu, mode) (rate(node_cpu_seconds_total{{{job},mode="idle"}}[5s]))',
        lambda v: 0 <= v <= 1, timeout=60)
    assert 0 <= cpu <= 1
    ratio = prometheus.wait_for_value(
        f"node_memory_MemAvailable_bytes{{{job}}} / node_memory_MemTotal_bytes{{{job}}}")
    assert 0 < ratio <= 1
    prediction = prometheus.wait_for_value(
        f"predict_linear(node_filesystem_avail_bytes{{{job}}}[10s], 4 * 3600)",
        timeout=60)
    assert prediction == prediction  # a number, not NaN
    prometheus.wait_for_value(
        f'rate(node_network_receive_bytes_total{{{job},device="lo"}}[5s])', lambda v: v > 0,
        timeout=60)
    prometheus.wait_for_value(f'pulse_process_num_procs{{{job},groupname="infrastructure"}}',
                              lambda v: v >= 1)
    assert prometheus.query_value(
        f'pulse_process_num_procs{{{job},groupname="absent_service"}} == 0') == 0
    assert prometheus.query_value(f"min(pulse_scrape_collector_success{{{job}}})") == 1


def test_unknown_collector_flag_exits_with_its_name(tmp_path):
    result = subprocess.run(service_argv("exporters.infrastructure", None, ["--collector.gpu"]),
                            capture_output=True, text=True, timeout=60, cwd=harness.ROOT)
    assert result.returncode == 2
    assert "unknown collector 'gpu'" in result.stderr


def test_check_config_names_bad_infrastructure_settings(tmp_path):
    path = tmp_path / "pulse.yml"
    harness.write_pulse_config(path, tmp_path / "data", exporters={"infrastructure": {
        "collectors": {"cpu": True, "gpu": True},
        "filesystem": {"mount_points_exclude": "^(/proc"},
        "processes": {"groups": [{"name": "a", "names": ["x"]}, {"name": "a", "names": ["y"]},
                                 {"name": "b"}]},
    }})
    result = subprocess.run([sys.executable, "-m", "pulse", "check-config", str(path)],
                            capture_output=True, text=True, timeout=60, cwd=harness.ROOT,
                            env=harness.pulse_env(tmp_path / "data"))
    assert result.returncode == 1
    assert "exporters.infrastructure.collectors.gpu: unknown key" in result.stderr
    assert "exporters.infrastructure.filesystem.mount_points_exclude" in result.stderr
    assert "duplicate name 'a'" in result.stderr
    assert "processes.groups[2].names: required key is missing" in result.stderr

