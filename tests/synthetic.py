"""The one synthetic history of the tests, named and labelled from the code's own tables.

The dashboard fixture (tests/grafana/fixture.py), the report history (tests/bridge/reportdata.py)
and the rules' live target (tests/rules/fixture_metrics.py) each choose their own numbers, but
every series they write goes through `series()` here, which knows from the code which metric
names exist, which labels each carries and which values the code can emit:

- the events intake: `exporters/events/mapping.yml` run through the real `Mapping` (a value is
  accepted only if an example event carrying it comes out of `Mapping.observe` unchanged), the
  intake's own counters and rejection reasons;
- the profile gauges: `pulse.profiles.aggregates` (names and labels of a computed empty store,
  windows, streak buckets, churn days, engagement levels);
- each exporter's collector table (`pulse_scrape_collector_success{collector}` by job);
- the scrape jobs and ports of `pulse.launcher.render.targets`;
- the recording rules in rules/ (`rules_dir`, `rule_files`, `recording_rules`).

A fixture asking for a label the code never emits fails at once, naming it, instead of proving
a dashboard or a rule against series production never has.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import yaml

from exporters.events.examples import example_event
from exporters.events.mapping import DEFAULT_MAPPING, OTHER, Mapping
from exporters.events.store import REJECT_REASONS, SELF_METRICS
from exporters.integrations.email import STATUSES as EMAIL_STATUSES
from exporters.integrations.probe import REASONS as PROBE_REASONS
from pulse.profiles import aggregates
from pulse.profiles.store import DEFAULT_FUNNELS, GOALS, PLANS

ROOT = Path(__file__).resolve().parents[1]

# ---- the code's tables ------------------------------------------------------------------------

MAPPING_DOC: dict = yaml.safe_load(DEFAULT_MAPPING.read_text())
MAPPING = Mapping(MAPPING_DOC)


def mapping_values(metric: str, label: str) -> tuple[str, ...]:
    """The allow-listed (or const) values of a mapped metric's label, in mapping order."""
    out: list[str] = []
    for rule in MAPPING_DOC["rules"]:
        if rule["metric"] != metric:
            continue
        spec = rule["labels"][label]
        for v in spec.get("values", [spec["const"]] if "const" in spec else []):
            if v not in out:
                out.append(v)
    if not out:
        raise AssertionError(f"{metric}{{{label}}} has no allow-list in {DEFAULT_MAPPING.name} "
                             "(a pattern label: choose values and let series() check them)")
    return tuple(out)


def _set_path(event: dict, path: str, value: str) -> None:
    *parents, last = path.split(".")
    node = event
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


@functools.cache
def _mapped(metric: str, values: tuple[str, ...]) -> bool:
    """True when some rule of the mapping, fed an event carrying these values, emits them."""
    labels = dict(zip(MAPPING.metrics[metric].labels, values, strict=True))
    for rule in MAPPING_DOC["rules"]:
        if rule["metric"] != metric:
            continue
        event = copy.deepcopy(example_event(rule["name"], fresh_id=False))
        if any(spec.get("const", labels[label]) != labels[label]
               for label, spec in rule["labels"].items()):
            continue
        for label, spec in rule["labels"].items():
            if "from" in spec:
                _set_path(event, spec["from"], labels[label])
        if any(name == metric and got == values for name, got, _ in MAPPING.observe(event)):
            return True
    return False


def _profile_families() -> dict[str, tuple[str, ...]]:
    """Name -> labels of every gauge the profile aggregates export (an empty store computed)."""
    import tempfile

    from pulse.profiles.store import ProfileStore
    with tempfile.TemporaryDirectory(prefix="pulse-synthetic-") as tmp:
        path = Path(tmp) / "profiles.db"
        ProfileStore(path, "synthetic").close()
        conn = sqlite3.connect(path)
        try:
            fams = aggregates.compute(conn, 1_800_000_000.0, DEFAULT_FUNNELS, 10)
        finally:
            conn.close()
    # The scraped families (a gauge histogram as its _bucket/_gcount/_gsum series), and the
    # series rules/profiles.rules.yml publishes from them.
    names = {f.name: tuple(f.labels) for f in fams if f.kind == "gauge"}
    for f in fams:
        if f.kind == "gaugehistogram":
            names[f"{f.name}_bucket"] = (*f.labels, "le")
            names[f"{f.name}_gcount"] = names[f"{f.name}_gsum"] = tuple(f.labels)
    names[aggregates.K_GAUGE] = ()
    return {**names, **aggregates.PUBLISHED}


def _integrations_collectors() -> tuple[str, ...]:
    """The collectors the integrations exporter registers (its app built in process)."""
    import tempfile

    from prometheus_client import CollectorRegistry

    from exporters.integrations import create_app
    from pulse.config import validate

    registry = CollectorRegistry()
    with tempfile.TemporaryDirectory(prefix="pulse-synthetic-") as tmp:
        create_app(validate({"data_dir": tmp}, env={}), registry, start=False)
        return tuple(sorted({s.labels["collector"] for m in registry.collect()
                             for s in m.samples if s.name == "pulse_scrape_collector_success"}))


def _events_collectors() -> tuple[str, ...]:
    """The collectors the intake registers (its app built in process, profiles on)."""
    import tempfile

    from prometheus_client import CollectorRegistry

    from exporters.events import create_app
    from pulse.config import validate

    registry = CollectorRegistry()
    with tempfile.TemporaryDirectory(prefix="pulse-synthetic-") as tmp:
        salt = {"salt": "synthetic-history-salt-0123456789"}
        cfg = validate({"data_dir": tmp, "privacy": salt}, env={})
        app = create_app(cfg, registry)
        names = tuple(sorted({s.labels["collector"] for m in registry.collect()
                              for s in m.samples if s.name == "pulse_scrape_collector_success"}))
        app.extensions["pulse.events"].store.close()
    return names


@functools.cache
def collectors() -> dict[str, tuple[str, ...]]:
    """Job -> the collector names its exporter reports in pulse_scrape_collector_success."""
    from exporters.ai import COLLECTORS as AI
    from exporters.infrastructure import COLLECTORS as INFRA

    return {"events": _events_collectors(), "infrastructure": tuple(INFRA),
            "integrations": _integrations_collectors(), "ai": tuple(AI)}


@functools.cache
def jobs() -> dict[str, int]:
    """Scrape job -> default port, as pulse/launcher/render.py configures Prometheus."""
    from pulse.config import validate
    from pulse.launcher.render import targets

    return {t.job: t.port for t in targets(validate({}, env={}), demo=True)}


def instance(job: str) -> dict[str, str]:
    """The job/instance labels Prometheus attaches to a series scraped from that job."""
    return {"job": job, "instance": f"127.0.0.1:{jobs()[job]}"}


# Enumerated label values of the profile gauges, from pulse.profiles.aggregates.
PROFILE_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("fitness_active_users", "window"): tuple(w for w, _ in aggregates.WINDOWS),
    ("fitness_active_users", "platform"): (*mapping_values("fitness_sessions_total", "platform"),
                                           "all"),
    ("fitness_streak_users", "streak"): tuple(b for _, b in aggregates.STREAK_BUCKETS),
    ("fitness_churn_risk_users", "inactive_days"): tuple(str(d) for d in aggregates.CHURN_DAYS),
    ("fitness_segment_users", "engagement"): tuple(e for _, e in aggregates.ENGAGEMENT),
    # No plan event yet is 'free', no goal yet 'none' (the COALESCE of SEGMENTS_SQL).
    ("fitness_segment_users", "plan"): ("free", *PLANS),
    ("fitness_segment_users", "goal_category"): ("none", *GOALS),
    ("business_subscriptions_active", "plan"): PLANS,
    ("fitness_funnel_conversion_ratio", "funnel"): tuple(DEFAULT_FUNNELS),
    ("fitness_funnel_conversion_ratio", "step"): tuple(s for steps in DEFAULT_FUNNELS.values()
                                                       for s in steps),
}
# The scraped families they are recorded from take the same values.
PROFILE_VALUES.update({
    (raw, label): PROFILE_VALUES[(published, label)] for raw, published, labels in (
        ("pulse_profiles_active_users", "fitness_active_users", ("window", "platform")),
        ("pulse_profiles_streak_users", "fitness_streak_users", ("streak",)),
        ("pulse_profiles_churn_risk_users", "fitness_churn_risk_users", ("inactive_days",)),
        ("pulse_profiles_segment_users", "fitness_segment_users",
         ("engagement", "plan", "goal_category")),
        ("pulse_profiles_subscriptions_active", "business_subscriptions_active", ("plan",)),
        ("pulse_profiles_funnel_users", "fitness_funnel_conversion_ratio", ("funnel", "step")),
        ("pulse_profiles_funnel_entered_users", "fitness_funnel_conversion_ratio",
         ("funnel",)))
    for label in labels})

# Series of the other exporters, the demo, the bridge and Prometheus itself: name -> labels,
# with the values where the code has a table. (Their exporters are covered by golden scrapes in
# tests/exporters; here only the names and labels the fixtures may use.)
OTHER_SERIES: dict[str, tuple[str, ...]] = {
    "up": (),
    "node_cpu_seconds_total": ("cpu", "mode"),
    "node_memory_MemTotal_bytes": (), "node_memory_MemAvailable_bytes": (),
    "node_filesystem_size_bytes": ("device", "fstype", "mountpoint"),
    "node_filesystem_avail_bytes": ("device", "fstype", "mountpoint"),
    **{f"node_network_{d}_{what}_total": ("device",) for d in ("receive", "transmit")
       for what in ("bytes", "errs")},
    "node_load1": (),
    "pulse_process_num_procs": ("groupname",),
    "integration_probe_success": ("integration",),
    "integration_probe_duration_seconds": ("integration",),
    "integration_probe_failures_total": ("integration", "reason"),
    "integration_tls_cert_expiry_timestamp_seconds": ("integration",),
    "integration_email_messages_total": ("status",),
    "ai_model_accuracy_ratio": ("model", "model_version"),
    "ai_model_drift_psi": ("model", "feature"),
    "ai_inference_duration_seconds": ("model",),
    "http_server_request_duration_seconds": ("http_request_method", "http_route",
                                             "http_response_status_code"),
    "app_db_query_duration_seconds": ("operation",),
    "app_cache_requests_total": ("result",),
    "pulse_events_dead_letters": (),
    "pulse_ingest_batch_duration_seconds": (),
    "pulse_scrape_collector_success": ("collector",),
    "pulse_bridge_rule_reloads_total": ("result",),
    "pulse_notifications_total": ("channel", "result"),
    "alertmanager_notifications_failed_total": ("integration",),
}
OTHER_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("integration_probe_failures_total", "reason"): PROBE_REASONS,
    ("integration_email_messages_total", "status"): EMAIL_STATUSES,
    ("app_cache_requests_total", "result"): ("hit", "miss"),
    ("node_cpu_seconds_total", "mode"): ("user", "nice", "system", "idle", "iowait", "irq",
                                         "softirq", "steal"),
}
SELF_VALUES = {("pulse_events_rejected_total", "reason"): REJECT_REASONS}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@functools.cache
def label_names() -> dict[str, tuple[str, ...]]:
    """Every metric name a fixture may write -> the labels the code gives it."""
    names = {d.name: d.labels for d in SELF_METRICS}
    names.update({m.name: m.labels for m in MAPPING.metrics.values()})
    names.update(_profile_families())
    names.update(OTHER_SERIES)
    return names


def _histograms() -> set[str]:
    hist = {m.name for m in (*MAPPING.metrics.values(), *SELF_METRICS) if m.type == "histogram"}
    return hist | {"http_server_request_duration_seconds", "app_db_query_duration_seconds",
                   "ai_inference_duration_seconds", "pulse_ingest_batch_duration_seconds"}


def problems(name: str, labels: dict[str, str]) -> list[str]:
    """Why the code never emits this series (empty when it can)."""
    labels = {k: v for k, v in labels.items() if k not in ("job", "instance")}
    base = name
    if name not in label_names():
        base = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES
                     if name.endswith(s) and name.removesuffix(s) in _histograms()), name)
        if base == name:
            return [f"{name}: no exporter emits this metric"]
        if name.endswith("_bucket"):
            if "le" not in labels:
                return [f"{name}: a bucket without le"]
            labels = {k: v for k, v in labels.items() if k != "le"}
    want = label_names()[base]
    if set(labels) != set(want):
        return [f"{name}: labels {sorted(labels)}, the code gives {sorted(want)}"]
    out = []
    for label, value in labels.items():
        allowed = (SELF_VALUES.get((base, label)) or PROFILE_VALUES.get((base, label))
                   or OTHER_VALUES.get((base, label)))
        if allowed is not None and value not in allowed:
            out.append(f"{name}{{{label}={value!r}}}: the code emits only {list(allowed)}")
    if base in MAPPING.metrics and not out:
        values = tuple(labels[k] for k in MAPPING.metrics[base].labels)
        if OTHER in values or not _mapped(base, values):
            out.append(f"{name}{labels}: {DEFAULT_MAPPING.name} maps no event to these values")
    return out


def series(name: str, job: str | None = None, /, **labels: str) -> dict[str, str]:
    """The labels of one series after checking the code emits it (job adds job/instance)."""
    found = problems(name, labels)
    if job is not None and name == "pulse_scrape_collector_success":
        allowed = collectors().get(job, ())
        if labels.get("collector") not in allowed:
            found.append(f"{name}{{job={job!r}, collector={labels.get('collector')!r}}}: "
                         f"that exporter's collectors are {list(allowed)}")
    if found:
        raise AssertionError("synthetic series the code never emits:\n  " + "\n  ".join(found))
    return {**labels, **(instance(job) if job else {})}


def check_all(items: Iterable[tuple[str, dict[str, str]]]) -> list[str]:
    """Every problem over (name, labels incl. job) pairs, e.g. a whole fixture's series."""
    out = []
    for name, labels in items:
        job = labels.get("job")
        try:
            series(name, job if job in jobs() else None,
                   **{k: v for k, v in labels.items() if k not in ("job", "instance")})
        except AssertionError as exc:
            out.append(str(exc).split("\n", 1)[1].strip())
    return sorted(set(out))


# ---- exposition -------------------------------------------------------------------------------

def format_labels(labels: dict[str, str]) -> str:
    """`{a="1",b="2"}` in sorted order, or "" for no labels."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


_SAMPLE = re.compile(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? ')
_PAIR = re.compile(r'(\w+)="([^"]*)"')


def parse_series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """(name, sorted label pairs) of every sample line of an exposition / OpenMetrics text."""
    out = set()
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out.add((m.group(1), tuple(sorted(_PAIR.findall(m.group(2) or "")))))
    return out


# ---- the recording rules ----------------------------------------------------------------------

def rules_dir() -> Path:
    """The rule files: $PULSE_RULES_DIR (a rules branch before its merge) or rules/."""
    return Path(os.environ.get("PULSE_RULES_DIR") or ROOT / "rules")


def rule_files(directory: Path | None = None) -> list[Path]:
    """Every *.rules.yml of the rules directory; fails (never skips) when there is none."""
    directory = directory or rules_dir()
    files = sorted(p for p in directory.glob("*.rules.yml") if p.is_file())
    if not files:
        raise AssertionError(f"no *.rules.yml in {directory}: the dashboards, reports and "
                             "alerts read recording rules; set PULSE_RULES_DIR or restore rules/")
    return files


def recording_rules(paths: list[Path] | None = None) -> dict[str, dict]:
    """Recorded name -> {group name, interval, rules recording it} over the rule files."""
    found: dict[str, dict] = {}
    for path in rule_files() if paths is None else paths:
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            for rule in group.get("rules", []):
                if "record" in rule:
                    entry = found.setdefault(rule["record"], {
                        "name": f"{path.stem}/{group['name']}",
                        "interval": group.get("interval"), "rules": []})
                    entry["rules"].append(rule)
    return found
