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
    has: tuple[tuple[str, str], ...]  # fields that must be present: (head, key or "")
    value: tuple[str, str] | None  # the amount's field, or None (count 1)
    # One step per label, in the metric's order: (head, key or "", allowed values or None,
    # chooser or None); a const label is (const, "", None, None).
    labels: list[tuple[str, str, frozenset | None, Any]] = field(default_factory=list)


def _path(path: str) -> tuple[str, str]:
    """A field path as (head, key): 'deviceInfo.platform' or ('action', '')."""
    head, _, key = path.partition(".")
    return head, key


def _field(ev: dict, head: str, key: str):
    """The value at (head, key) of an event, None when absent."""
    value = ev.get(head)
    if key:
        return value.get(key) if value.__class__ is dict else None
    return value


def looks_like_pii(value: str, patterns: Iterable[re.Pattern]) -> bool:
    """True when the value matches one of the PII patterns (email, phone, card...)."""
    return any(p.search(value) for p in patterns)


CHOICES_CACHED = 4096  # distinct values remembered per pattern label


def _chooser(pattern: re.Pattern, pii: tuple[re.Pattern, ...]):
    """The label value of a pattern-checked field: itself, or other. A pure function of the
    value, remembered (the same app versions, endpoints and models come again and again; one
    regex and every PII pattern per event was a tenth of the mapping's time)."""
    cache: dict[str, str] = {}

    def choose(v):
        if v.__class__ is not str:
            return OTHER
        chosen = cache.get(v)
        if chosen is None:
            chosen = OTHER if not pattern.match(v) or looks_like_pii(v, pii) else v
            if len(cache) >= CHOICES_CACHED:
                cache.clear()  # bounded: a flood of distinct values cannot grow memory
            cache[v] = chosen
        return chosen
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
                has=tuple(_path(p) for p in match.get("has", ())),
                value=_path(spec["value"]) if "value" in spec else None)
            label_specs = spec.get("labels", {})
            for label in metric.labels:
                ls = label_specs[label]
                if "const" in ls:
                    rule.labels.append((ls["const"], "", None, None))
                elif "values" in ls:
                    rule.labels.append((*_path(ls["from"]), frozenset(ls["values"]), None))
                else:
                    rule.labels.append((*_path(ls["from"]), None,
                                        _chooser(re.compile(ls["pattern"]), pii)))
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
        get = event.get
        # The hot path of the mapping (once per accepted event): field lookups are inlined
        # rather than made by one small function per field.
        for rule in rules:
            if rule.event_types is not None and event["eventType"] not in rule.event_types:
                continue
            if rule.has and any(_field(event, h, k) is None for h, k in rule.has):
                continue
            if rule.value is None:
                amount = 1.0
            else:
                amount = _field(event, *rule.value)
                if amount.__class__ not in (int, float) or not math.isfinite(amount):
                    continue
                if rule.metric.type == "sum" and amount < 0:
                    continue
            labels = []
            for head, key, allowed, choose in rule.labels:
                if allowed is None and choose is None:
                    labels.append(head)  # const
                    continue
                v = get(head)
                if key:
                    v = v.get(key) if v.__class__ is dict else None
                if allowed is not None:
                    labels.append(v if v.__class__ is str and v in allowed else OTHER)
                else:
                    labels.append(choose(v))
            out.append((rule.metric.name, tuple(labels), amount))
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
