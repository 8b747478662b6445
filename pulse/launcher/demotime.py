"""Demo time: `pulse up --demo` runs the stack on the simulator's clock.

The simulator plays a whole day in `demo.day_length` (1 h by default, 24x). So
that its incidents page within minutes, the demo stack evaluates the shipped
rules on the same clock: every range and every `for` is divided by the time
scale (a recording rule named `..._1h` then covers one simulated hour), with a
floor of a few scrapes so rates stay defined. Alertmanager's business-hours
muting is dropped and its group timers shortened, and the fake payment provider
becomes a probe target. `pulse up` without --demo loads rules/ as they are, with
only this stack's links filled in (pulse.links).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path

import yaml

from pulse.config import parse_duration
from pulse.fileio import write_atomic
from pulse.paths import RULES_DIR

DEMO_SCRAPE_INTERVAL = "5s"
RANGE = re.compile(r"\[((?:\d+(?:ms|s|m|h|d|w|y))+)(:[^\]]*)?\]")
FOR = re.compile(r"(\b(?:keep_firing_)?for:\s*)((?:\d+(?:ms|s|m|h|d|w|y))+)")
OFFSET = re.compile(r"(\boffset\s+)((?:\d+(?:ms|s|m|h|d|w|y))+)")


def time_scale(day_length: str) -> float:
    """How much faster than real time the simulator's day runs (86400 s / day_length)."""
    return max(1.0, 86400 / parse_duration(day_length))


def _seconds(text: str, scale: float, floor: float) -> str:
    return f"{max(floor, round(parse_duration(text) / scale))}s"


def compress_rules(text: str, range_scale: float, for_scale: float | None = None,
                   min_range: float = 20, min_for: float = 0) -> str:
    """A rule file with every range and offset divided by range_scale and `for` by for_scale."""
    for_scale = range_scale if for_scale is None else for_scale
    text = RANGE.sub(lambda m: f"[{_seconds(m.group(1), range_scale, min_range)}"
                               f"{m.group(2) or ''}]", text)
    text = OFFSET.sub(lambda m: m.group(1) + _seconds(m.group(2), range_scale, min_range), text)
    return FOR.sub(lambda m: m.group(1) + _seconds(m.group(2), for_scale, min_for), text)


def write_rules(out_dir: Path, scale: float, rules_dir: Path = RULES_DIR,
                min_for: float = 30, fill: Callable[[str], str] | None = None) -> Path:
    """Write copies of rules_dir/*.rules.yml into out_dir, on demo time when scale > 1.

    fill: what else to change in each file (pulse.links fills the link bases).
    `for` keeps a floor of 30 s: long enough that nothing pages while the stack's first
    scrapes come in, short enough that every scenario pages within minutes.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.rules.yml"):
        old.unlink()
    for path in sorted(rules_dir.glob("*.rules.yml")):
        text = fill(path.read_text()) if fill else path.read_text()
        if scale > 1:
            header = (f"# Demo time ({scale:g}x) copy of rules/{path.name}, written by "
                      "`pulse up --demo`; edit the source.\n")
            text = compress_rules(text, scale, min_for=min_for)
        else:
            header = (f"# Copy of rules/{path.name} with this stack's links, written by "
                      "`pulse up`/`pulse render`; edit the source.\n")
        write_atomic(out_dir / path.name, header + text)
    return out_dir


def compress_routing(node, group_wait: str = "1s", group_interval: str = "5s"):
    """Alertmanager routing with short group timers and no time-interval muting."""
    if isinstance(node, dict):
        out = {k: compress_routing(v, group_wait, group_interval) for k, v in node.items()
               if k not in ("active_time_intervals", "mute_time_intervals")}
        if "receiver" in out and ("group_wait" in out or "routes" in out or "matchers" in out):
            out.update(group_wait=group_wait, group_interval=group_interval)
        return out
    if isinstance(node, list):
        return [compress_routing(v, group_wait, group_interval) for v in node]
    return node


def overlay(raw: dict, data_dir: str | None = None) -> dict:
    """The raw (unexpanded) pulse.yml plus what the demo adds: fast scrapes, the payment
    probes (HTTP and HTTPS; data_dir: where the provider's certificate is), a drift window
    of one simulated day."""
    doc = copy.deepcopy(raw or {})
    prom = doc.setdefault("prometheus", {})
    for key in ("scrape_interval", "evaluation_interval"):
        current = prom.get(key, "15s")
        if parse_duration(current) > parse_duration(DEMO_SCRAPE_INTERVAL):
            prom[key] = DEMO_SCRAPE_INTERVAL
    demo = doc.get("demo") or {}
    payments = demo.get("payments_listen", "127.0.0.1:9798")
    integrations = doc.setdefault("exporters", {}).setdefault("integrations", {})
    targets = integrations.setdefault("targets", [])
    if not any(t.get("name") == "payments" for t in targets):
        targets.append({"name": "payments", "url": f"http://{payments}/health"})
    # The provider's HTTPS side, verified against its self-signed certificate (demo.payments
    # writes it at start): TLS probing and certificate expiry.
    secure = demo.get("payments_tls_listen", "127.0.0.1:9797")
    if not any(t.get("name") == "payments_tls" for t in targets):
        data_dir = data_dir or doc.get("data_dir", "${PULSE_DATA_DIR:-.pulse}")
        targets.append({"name": "payments_tls", "url": f"https://{secure}/health",
                        "tls_verify": True,
                        "ca_file": f"{data_dir}/demo/payments-tls/cert.pem"})
    # The simulated day is the drift window: the PSI compares one (simulated) day's inputs.
    drift = doc["exporters"].setdefault("ai", {}).setdefault("drift", {})
    drift.setdefault("window", demo.get("day_length", "1h"))
    drift.setdefault("bucket", "10s")
    # Per-user aggregates (active users, cohorts, coaches) recomputed on demo time too.
    profiles = doc["exporters"].setdefault("events", {}).setdefault("profiles", {})
    profiles.setdefault("refresh_interval", "10s")
    return doc


def write_config(config_path: Path, out_path: Path, data_dir: str | Path | None = None) -> Path:
    """Write the demo overlay of config_path to out_path (secrets stay as ${ENV} references).

    data_dir: the resolved data directory (default: out_path's grandparent, where
    `pulse up --demo` writes it).
    """
    raw = yaml.safe_load(Path(config_path).read_text()) or {}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Demo overlay of {config_path}, written by `pulse up --demo`: the same "
              "configuration plus\n# 5 s scrapes and the fake payment provider as a probe "
              "target. Edit the source.\n")
    data_dir = str(data_dir or Path(out_path).resolve().parent.parent)
    out_path.write_text(header + yaml.safe_dump(overlay(raw, data_dir), sort_keys=False))
    return out_path
