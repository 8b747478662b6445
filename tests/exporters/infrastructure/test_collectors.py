"""Unit tests of the infrastructure collectors against a fixture psutil."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters.infrastructure import COLLECTORS, build_collectors, create_app, enabled_collectors
from exporters.infrastructure.__main__ import split_collector_flags
from pulse.config import validate
from tests.exporters.infrastructure.fakes import (
    BOOT,
    PAGE,
    PROCESSES,
    fake_clock,
    fake_proc,
    fake_psutil,
    fake_statvfs,
    fake_uname,
)

GROUPS = [{"name": "prometheus", "names": ["prometheus"]},
          {"name": "bridge", "cmdline": [r"-m bridge\b"]},
          {"name": "alertmanager", "names": ["prometheus-alertmanager"]},
          {"name": "absent", "names": ["no-such-service"]}]


def section(**infra):
    """The validated exporters.infrastructure section (schema defaults filled in)."""
    return validate({"exporters": {"infrastructure": infra}}, env={}).exporters.infrastructure


def scrape(ps=None, overrides=None, proc_root="/nonexistent", **infra):
    """A fresh registry holding the exporter's collectors over the fixtures."""
    registry = CollectorRegistry()
    registry.register(build_collectors(section(**infra), overrides, psutil=ps or fake_psutil(),
                                       clock=fake_clock, statvfs=fake_statvfs,
                                       proc_root=proc_root, uname=fake_uname))
    return registry


def test_cpu_seconds_by_cpu_and_mode():
    reg = scrape()
    assert reg.get_sample_value("node_cpu_seconds_total", {"cpu": "0", "mode": "idle"}) == 1000
    assert reg.get_sample_value("node_cpu_seconds_total", {"cpu": "1", "mode": "user"}) == 200
    assert reg.get_sample_value("node_cpu_seconds_total", {"cpu": "1", "mode": "softirq"}) == 0.25
    assert reg.get_sample_value("node_cpu_guest_seconds_total",
                                {"cpu": "0", "mode": "nice"}) == 0


def test_load_memory_and_stat():
    reg = scrape()
    assert reg.get_sample_value("node_load1") == 0.5
    assert reg.get_sample_value("node_load15") == 0.125
    assert reg.get_sample_value("node_memory_MemTotal_bytes") == 8e9
    assert reg.get_sample_value("node_memory_MemAvailable_bytes") == 6e9
    assert reg.get_sample_value("node_memory_Cached_bytes") == 1.5e9
    assert reg.get_sample_value("node_memory_SwapFree_bytes") == 2e9
    assert reg.get_sample_value("node_boot_time_seconds") == 1_700_000_000
    assert reg.get_sample_value("node_context_switches_total") == 12345
    assert reg.get_sample_value("node_time_seconds") == fake_clock()
    assert reg.get_sample_value("node_uname_info", {
        "domainname": "(none)", "machine": "x86_64", "nodename": "fit-node-1",
        "release": "6.1.0-13-amd64", "sysname": "Linux",
        "version": "#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1"}) == 1


def test_filesystem_excludes_pseudo_filesystems_and_duplicates():
    reg = scrape()
    root = {"device": "/dev/vda1", "fstype": "ext4", "mountpoint": "/"}
    assert reg.get_sample_value("node_filesystem_size_bytes", root) == 25_000_000 * 4096
    assert reg.get_sample_value("node_filesystem_avail_bytes", root) == 9_000_000 * 4096
    assert reg.get_sample_value("node_filesystem_free_bytes", root) == 10_000_000 * 4096
    assert reg.get_sample_value("node_filesystem_files", root) == 6_000_000
    assert reg.get_sample_value("node_filesystem_files_free", root) == 5_000_000
    assert reg.get_sample_value("node_filesystem_readonly", root) == 0
    boot = {"device": "/dev/vda2", "fstype": "ext4", "mountpoint": "/boot"}
    assert reg.get_sample_value("node_filesystem_readonly", boot) == 1
    assert reg.get_sample_value("node_filesystem_device_error", boot) == 1
    assert reg.get_sample_value("node_filesystem_size_bytes", boot) is None
    mounts = {s.labels["mountpoint"] for s in _samples(reg, "node_filesystem_readonly")}
    assert mounts == {"/", "/boot"}


def test_filesystem_exclusion_pattern_is_configurable():
    reg = scrape(filesystem={"mount_points_exclude": "^/boot$", "fs_types_exclude": "^proc$"})
    mounts = {s.labels["mountpoint"] for s in _samples(reg, "node_filesystem_readonly")}
    assert mounts == {"/", "/dev/shm", "/sys/fs/cgroup"}


def test_disk_and_network_counters():
    reg = scrape()
    assert reg.get_sample_value("node_disk_read_bytes_total", {"device": "vda"}) == 4096
    assert reg.get_sample_value("node_disk_written_bytes_total", {"device": "vda"}) == 8192
    assert reg.get_sample_value("node_disk_reads_completed_total", {"device": "vda"}) == 10
    assert reg.get_sample_value("node_disk_io_time_seconds_total", {"device": "vda"}) == 3.0
    assert reg.get_sample_value("node_disk_read_bytes_total", {"device": "vda1"}) is None
    assert reg.get_sample_value("node_disk_read_bytes_total", {"device": "loop0"}) is None
    assert reg.get_sample_value("node_network_receive_bytes_total", {"device": "eth0"}) == 1000
    assert reg.get_sample_value("node_network_transmit_bytes_total", {"device": "eth0"}) == 2000
    assert reg.get_sample_value("node_network_transmit_errs_total", {"device": "eth0"}) == 2
    assert reg.get_sample_value("node_network_speed_bytes", {"device": "eth0"}) == 125_000_000
    assert reg.get_sample_value("node_network_speed_bytes", {"device": "lo"}) is None
    assert scrape(netdev={"device_exclude": "^lo$"}).get_sample_value(
        "node_network_receive_bytes_total", {"device": "lo"}) is None


def test_process_groups_by_name_and_cmdline(tmp_path):
    reg = scrape(proc_root=fake_proc(tmp_path), processes={"groups": GROUPS})
    assert reg.get_sample_value("pulse_process_num_procs", {"groupname": "prometheus"}) == 1
    assert reg.get_sample_value("pulse_process_num_procs", {"groupname": "bridge"}) == 2
    assert reg.get_sample_value("pulse_process_num_procs", {"groupname": "alertmanager"}) == 1
    assert reg.get_sample_value("pulse_process_num_procs", {"groupname": "absent"}) == 0
    assert reg.get_sample_value("pulse_process_cpu_seconds_total",
                                {"groupname": "bridge", "mode": "user"}) == pytest.approx(3.0)
    assert reg.get_sample_value("pulse_process_cpu_seconds_total",
                                {"groupname": "prometheus", "mode": "system"}) == 1.0
    assert reg.get_sample_value("pulse_process_resident_memory_bytes",
                                {"groupname": "bridge"}) == 100 * PAGE
    # One bridge process's fd directory cannot be read: it still counts, with 0 fds.
    assert reg.get_sample_value("pulse_process_open_fds", {"groupname": "bridge"}) == 10
    assert reg.get_sample_value("pulse_process_threads", {"groupname": "prometheus"}) == 12
    assert reg.get_sample_value("pulse_process_oldest_start_time_seconds",
                                {"groupname": "bridge"}) == BOOT + 200
    assert reg.get_sample_value("pulse_process_oldest_start_time_seconds",
                                {"groupname": "absent"}) is None


def test_process_cpu_counter_survives_an_exiting_process(tmp_path):
    import shutil

    root = fake_proc(tmp_path)
    reg = scrape(proc_root=root, processes={"groups": GROUPS})
    labels = {"groupname": "bridge", "mode": "user"}
    assert reg.get_sample_value("pulse_process_cpu_seconds_total", labels) == pytest.approx(3.0)
    shutil.rmtree(root / "12")
    assert reg.get_sample_value("pulse_process_cpu_seconds_total", labels) == pytest.approx(3.0)
    assert reg.get_sample_value("pulse_process_num_procs", {"groupname": "bridge"}) == 1
    # A new process under a reused pid is a new member, decided afresh.
    fake_proc(root, {12: ("python3", ["python3", "-m", "bridge"], 0.5, 0.0, 1, 900, PAGE, 1)})
    assert reg.get_sample_value("pulse_process_cpu_seconds_total", labels) == pytest.approx(3.5)
    assert reg.get_sample_value("pulse_process_num_procs", {"groupname": "bridge"}) == 2


def test_parse_proc_stat_with_parentheses_in_the_name(tmp_path):
    from exporters.infrastructure.processes import parse_proc_stat

    root = fake_proc(tmp_path)
    stat = parse_proc_stat((root / "15" / "stat").read_text())
    assert stat.comm == PROCESSES[15][0] and stat.threads == 1


def test_failing_collector_does_not_fail_the_scrape():
    ps = fake_psutil()

    def broken(perdisk=False):
        raise OSError("diskstats unreadable")

    ps.disk_io_counters = broken
    reg = scrape(ps)
    assert reg.get_sample_value("pulse_scrape_collector_success", {"collector": "diskstats"}) == 0
    assert reg.get_sample_value("pulse_scrape_collector_duration_seconds",
                                {"collector": "diskstats"}) >= 0
    assert reg.get_sample_value("pulse_scrape_collector_success", {"collector": "cpu"}) == 1
    assert reg.get_sample_value("node_load1") == 0.5
    assert "node_disk_read_bytes_total" not in generate_latest(reg).decode()


def test_collectors_switched_by_config_and_flags():
    assert enabled_collectors(section()) == list(COLLECTORS)
    off = section(collectors={"cpu": False, "processes": False})
    assert "cpu" not in enabled_collectors(off)
    assert enabled_collectors(off, {"cpu": True})[0] == "cpu"
    reg = scrape(collectors={"loadavg": False})
    assert reg.get_sample_value("node_load1") is None
    assert reg.get_sample_value("pulse_scrape_collector_success", {"collector": "loadavg"}) is None
    flags, rest = split_collector_flags(["--no-collector.cpu", "--config", "x",
                                         "--collector.loadavg"])
    assert flags == {"cpu": False, "loadavg": True} and rest == ["--config", "x"]
    with pytest.raises(SystemExit) as exc:
        split_collector_flags(["--collector.gpu"])
    assert exc.value.code == 2


# The golden scrape: every series of the fixture host, name and labels, exactly.
GOLDEN = {
    *(f"node_cpu_seconds_total{{cpu={c},mode={m}}}" for c in "01"
      for m in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")),
    *(f"node_cpu_guest_seconds_total{{cpu={c},mode={m}}}" for c in "01" for m in ("user", "nice")),
    "node_load1{}", "node_load5{}", "node_load15{}",
    *(f"node_memory_{f}_bytes{{}}" for f in ("MemTotal", "MemAvailable", "MemFree", "Buffers",
                                             "Cached", "Shmem", "Active", "Inactive", "Slab",
                                             "SwapTotal", "SwapFree")),
    *(f"node_filesystem_{k}{{device=/dev/vda1,fstype=ext4,mountpoint=/}}"
      for k in ("size_bytes", "free_bytes", "avail_bytes", "files", "files_free", "readonly",
                "device_error")),
    *(f"node_filesystem_{k}{{device=/dev/vda2,fstype=ext4,mountpoint=/boot}}"
      for k in ("readonly", "device_error")),
    *(f"node_disk_{k}_total{{device=vda}}"
      for k in ("reads_completed", "writes_completed", "read_bytes", "written_bytes",
                "read_time_seconds", "write_time_seconds", "reads_merged", "writes_merged",
                "io_time_seconds")),
    *(f"node_network_{d}_{k}_total{{device={n}}}" for n in ("eth0", "lo")
      for d in ("receive", "transmit") for k in ("bytes", "packets", "errs", "drop")),
    "node_network_speed_bytes{device=eth0}",
    "node_network_mtu_bytes{device=eth0}", "node_network_mtu_bytes{device=lo}",
    "node_boot_time_seconds{}", "node_context_switches_total{}", "node_intr_total{}",
    "node_time_seconds{}",
    "node_uname_info{domainname=(none),machine=x86_64,nodename=fit-node-1,"
    "release=6.1.0-13-amd64,sysname=Linux,version=#1 SMP PREEMPT_DYNAMIC Debian 6.1.55-1}",
    *(f"pulse_process_cpu_seconds_total{{groupname={g},mode={m}}}"
      for g in ("prometheus", "bridge", "alertmanager", "absent") for m in ("user", "system")),
    *(f"pulse_process_{k}{{groupname={g}}}"
      for g in ("prometheus", "bridge", "alertmanager", "absent")
      for k in ("num_procs", "resident_memory_bytes", "open_fds", "threads")),
    *(f"pulse_process_oldest_start_time_seconds{{groupname={g}}}"
      for g in ("prometheus", "bridge", "alertmanager")),
    *(f"pulse_scrape_collector_{k}{{collector={c}}}" for c in COLLECTORS
      for k in ("success", "duration_seconds")),
    "pulse_build_info{component=exporters.infrastructure,version=0.1.0}",
}


def fixture_scrape(tmp_path) -> str:
    """The exposition of the exporter over the fixture host (the golden scrape's source)."""
    cfg = validate({"exporters": {"infrastructure": {"processes": {"groups": GROUPS}}}}, env={})
    app = create_app(cfg, psutil=fake_psutil(), clock=fake_clock, statvfs=fake_statvfs,
                     proc_root=str(fake_proc(tmp_path)), uname=fake_uname)
    resp = app.test_client().get("/metrics")
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def test_golden_scrape(tmp_path):
    assert series_of(fixture_scrape(tmp_path)) == GOLDEN


def series_of(text: str) -> set[str]:
    """Each sample as name{label=value,...}, labels in the order the exposition has them."""
    out = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            out.add(s.name + "{" + ",".join(f"{k}={v}" for k, v in s.labels.items()) + "}")
    return out


def _samples(reg, name):
    return [s for f in reg.collect() for s in f.samples if s.name == name]


def test_collector_table_and_schema_name_the_same_collectors():
    import json

    from pulse.paths import SCHEMA_DIR

    schema = json.loads((SCHEMA_DIR / "infrastructure.schema.json").read_text())
    assert set(schema["properties"]["collectors"]["properties"]) == set(COLLECTORS)
