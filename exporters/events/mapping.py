"""The declarative events -> metrics mapping: load, validate, compile, apply to one event."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, FormatChecker

HERE = Path(__file__).resolve().parent
DEFAULT_MAPPING = HERE / "mapping.yml"
MAPPING_SCHEMA = HERE / "schemas" / "mapping.schema.json"
OTHER = "other"
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class MappingError(Exception):
    """Every problem of a mapping file, each with its location."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"]
        lines += [f"  {where or '<root>'}: {what}" for where, what in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class MetricDef:
    """One metric the mapping produces."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    max_series: int = 200
    # Label sets exported as 0 before their first event (see `known_series`).
    initial: tuple[tuple[str, ...], ...] = ()

    def capped(self, labels: tuple[str, ...], series: int) -> tuple[str, ...]:
        """The labels a new series is counted under when the metric already has `series`.

        Within max_series, its own; beyond, the all-`other` overflow series (one place of
        the cap is kept for it), so one noisy label cannot grow memory or Prometheus.
        """
        folded = (OTHER,) * len(labels)
        if labels != folded and series >= self.max_series - 1:
            return folded
        return labels


@dataclass
class Rule:
    """A compiled rule: how one matching event feeds one metric."""

    name: str
    metric: MetricDef
    event_types: frozenset[str] | None
    has: tuple[Any, ...]
    value: Any  # getter or None
    labels: list[tuple[Any, Any]] = field(default_factory=list)  # (getter, chooser)


def _getter(path: str):
    head, _, key = path.partition(".")
    if not key:
        return lambda ev: ev.get(head)

    def get(ev: dict):
        inner = ev.get(head)
        return inner.get(key) if isinstance(inner, dict) else None
    return get


def looks_like_pii(value: str, patterns: Iterable[re.Pattern]) -> bool:
    """True when the value matches one of the PII patterns (email, phone, card...)."""
    return any(p.search(value) for p in patterns)


def _chooser(spec: dict, pii: tuple[re.Pattern, ...]):
    if "values" in spec:
        allowed = frozenset(spec["values"])
        return lambda v: v if v.__class__ is str and v in allowed else OTHER
    pattern = re.compile(spec["pattern"])

    def choose(v):
        if v.__class__ is not str or not pattern.match(v) or looks_like_pii(v, pii):
            return OTHER
        return v
    return choose


def load_mapping_document(path: str | Path | None) -> tuple[dict, str]:
    """Read a mapping YAML file (the shipped default when path is empty)."""
    source = Path(path) if path else DEFAULT_MAPPING
    try:
        doc = yaml.safe_load(source.read_text())
    except OSError as exc:
        raise MappingError(str(source), [("", f"cannot read: {exc.strerror}")]) from None
    except yaml.YAMLError as exc:
        raise MappingError(str(source), [("", f"not valid YAML: {exc}")]) from None
    return doc, str(source)


def validate_mapping(doc: Any, source: str = "mapping") -> list[tuple[str, str]]:
    """Every problem of a mapping document: schema first, then cross-references."""
    schema = json.loads(MAPPING_SCHEMA.read_text())
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    problems = [("/".join(str(p) for p in err.absolute_path), err.message)
                for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path))]
    if problems:
        return problems
    for name, metric in doc["metrics"].items():
        where = f"metrics/{name}"
        if metric["type"] in ("counter", "sum") and not name.endswith("_total"):
            problems.append((where, "counter and sum metrics must end in _total"))
        if metric["type"] == "histogram":
            buckets = metric.get("buckets")
            if not buckets:
                problems.append((where, "a histogram needs buckets"))
            elif list(buckets) != sorted(set(buckets)) or not all(map(math.isfinite, buckets)):
                problems.append((where, "buckets must be finite and strictly increasing"))
        elif "buckets" in metric:
            problems.append((where, "only histograms have buckets"))
        if "le" in metric["labels"]:
            problems.append((where, "`le` is reserved"))
    for i, rule in enumerate(doc["rules"]):
        where = f"rules/{i}" + (f" ({rule['name']})" if "name" in rule else "")
        metric = doc["metrics"].get(rule["metric"])
        if metric is None:
            problems.append((where, f"metric {rule['metric']!r} is not defined under metrics"))
            continue
        given, wanted = set(rule.get("labels", {})), set(metric["labels"])
        if given != wanted:
            problems.append((where, f"labels {sorted(given)} must be exactly the metric's "
                                    f"{sorted(wanted)}"))
        if metric["type"] in ("sum", "histogram") and "value" not in rule:
            problems.append((where, f"a {metric['type']} rule needs `value`"))
        if metric["type"] == "counter" and "value" in rule:
            problems.append((where, "a counter rule counts events; use type sum to add values"))
    return problems


class Mapping:
    """A compiled mapping: `observe(event)` -> the (metric, label values, amount) it feeds."""

    def __init__(self, doc: dict, pii_patterns: Iterable[str] = ()):
        pii = tuple(re.compile(p) for p in pii_patterns)
        default_cap = doc.get("max_series", 200)
        self.metrics: dict[str, MetricDef] = {
            name: MetricDef(name, m["type"], m["help"], tuple(m["labels"]),
                            tuple(float(b) for b in m.get("buckets", ())),
                            m.get("max_series", default_cap))
            for name, m in doc["metrics"].items()}
        self.index: dict[tuple[str, str], list[Rule]] = {}
        for i, spec in enumerate(doc["rules"]):
            metric = self.metrics[spec["metric"]]
            match = spec["match"]
            types = match.get("eventType")
            rule = Rule(
                name=spec.get("name", f"rule{i}"), metric=metric,
                event_types=frozenset(_listify(types)) if types else None,
                has=tuple(_getter(p) for p in match.get("has", ())),
                value=_getter(spec["value"]) if "value" in spec else None)
            label_specs = spec.get("labels", {})
            for label in metric.labels:
                ls = label_specs[label]
                if "const" in ls:
                    const = ls["const"]
                    rule.labels.append((None, const))
                else:
                    rule.labels.append((_getter(ls["from"]), _chooser(ls, pii)))
            for category in _listify(match["category"]):
                for action in _listify(match["action"]):
                    self.index.setdefault((category, action), []).append(rule)
        for name, series in known_series(doc).items():
            self.metrics[name] = replace(self.metrics[name], initial=series)

    def observe(self, event: dict) -> list[tuple[str, tuple[str, ...], float]]:
        """What one valid event feeds: [(metric name, label values, amount)]."""
        rules = self.index.get((event["category"], event["action"]))
        if not rules:
            return []
        out = []
        for rule in rules:
            if rule.event_types is not None and event["eventType"] not in rule.event_types:
                continue
            if rule.has and any(get(event) is None for get in rule.has):
                continue
            if rule.value is None:
                amount = 1.0
            else:
                amount = rule.value(event)
                if amount.__class__ not in (int, float) or not math.isfinite(amount):
                    continue
                if rule.metric.type == "sum" and amount < 0:
                    continue
            labels = tuple(chooser if get is None else chooser(get(event))
                           for get, chooser in rule.labels)
            out.append((rule.metric.name, labels, amount))
        return out


MAX_INITIAL_SERIES = 64


def known_series(doc: dict, limit: int = MAX_INITIAL_SERIES) -> dict[str, tuple]:
    """Counter/sum metrics whose every label is fixed or allow-listed -> all their label sets.

    Prometheus's advice: export the known label values of a counter as 0 before the first
    event, so `rate()` and `increase()` see it start rather than appear (an `increase` over
    a window in which a series first appears reads 0). Only when every rule feeding the
    metric has `const` or `values` labels and the product stays within `limit` series
    (and within the metric's max_series); pattern-checked labels are left to real events.
    """
    out: dict[str, tuple] = {}
    by_metric: dict[str, list[dict]] = {}
    for spec in doc["rules"]:
        by_metric.setdefault(spec["metric"], []).append(spec)
    for name, specs in by_metric.items():
        metric = doc["metrics"][name]
        if metric["type"] not in ("counter", "sum"):
            continue
        series: set[tuple[str, ...]] = set()
        for spec in specs:
            choices = []
            for label in metric["labels"]:
                ls = spec["labels"][label]
                if "const" in ls:
                    choices.append((ls["const"],))
                elif "values" in ls:
                    choices.append(tuple(ls["values"]))
                else:
                    choices = None
                    break
            if choices is None:
                series = set()
                break
            count = math.prod(len(c) for c in choices)
            if count > limit:
                series = set()
                break
            series.update(itertools.product(*choices))
        cap = min(limit, metric.get("max_series", doc.get("max_series", 200)))
        if series and len(series) <= cap:
            out[name] = tuple(sorted(series))
    return out


def _listify(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def load_mapping(path: str | Path | None, pii_patterns: Iterable[str] = ()) -> Mapping:
    """Load, validate and compile a mapping file; raise MappingError listing every problem."""
    doc, source = load_mapping_document(path)
    problems = validate_mapping(doc, source)
    if problems:
        raise MappingError(source, problems)
    return Mapping(doc, pii_patterns)
