"""Collectors of the AI exporter: evaluations and drift, each switchable in the config.

They run through the one scrape wrapper (`exporters.scrape`), which names them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters.ai.psi import compare
from exporters.ai.store import AiStore
from exporters.ai.validate import EVAL_METRICS


class EvaluationsCollector:
    """ai_model_<metric>_ratio{model,model_version} and friends from the latest evaluations."""

    def __init__(self, store: AiStore):
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """One gauge per evaluation metric, plus sample size, time and model info."""
        labels = ["model", "model_version"]
        ratios = {m: GaugeMetricFamily(f"ai_model_{m}_ratio",
                                       f"Offline evaluation {m} of the model version (0-1).",
                                       labels=labels) for m in EVAL_METRICS}
        samples = GaugeMetricFamily("ai_model_evaluation_samples",
                                    "Sample size of the latest evaluation.", labels=labels)
        when = GaugeMetricFamily("ai_model_evaluation_timestamp_seconds",
                                 "When the latest evaluation ran (Unix time).", labels=labels)
        info = GaugeMetricFamily("ai_model_info", "Model versions known from evaluations (1).",
                                 labels=[*labels, "task"])
        for model, versions in sorted(self.store.evaluations().items()):
            for version, ev in sorted(versions.items()):
                for metric, value in ev["metrics"].items():
                    ratios[metric].add_metric([model, version], value)
                samples.add_metric([model, version], ev["sampleSize"])
                when.add_metric([model, version], ev["evaluatedAt"])
                info.add_metric([model, version, ev["task"]], 1)
        yield from ratios.values()
        yield from (samples, when, info)


class DriftCollector:
    """ai_model_drift_psi{model,feature} over the window, with reference age and counts."""

    def __init__(self, store: AiStore, min_observations: int,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.min_observations = min_observations
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """PSI (only with enough observations), window observations and reference age."""
        labels = ["model", "feature"]
        psi = GaugeMetricFamily(
            "ai_model_drift_psi", "Population Stability Index of current observations against "
            "the reference (absent below the minimum observation count).", labels=labels)
        observed = GaugeMetricFamily(
            "ai_model_drift_window_observations",
            "Observations in the drift window (PSI needs at least the configured minimum).",
            labels=labels)
        age = GaugeMetricFamily("ai_model_drift_reference_age_seconds",
                                "Age of the registered reference distribution.", labels=labels)
        registered = GaugeMetricFamily("ai_model_drift_reference_timestamp_seconds",
                                       "When the reference distribution was captured.",
                                       labels=labels)
        now = self.clock()
        for ref in sorted(self.store.references(),
                          key=lambda r: (r["model"], r["feature"])):
            key = [ref["model"], ref["feature"]]
            current = self.store.window_counts(ref["model"], ref["feature"], now)
            result = compare(ref["counts"], current, self.min_observations)
            observed.add_metric(key, result.observations)
            if result.sufficient:
                psi.add_metric(key, result.psi)
            age.add_metric(key, max(now - ref["registeredAt"], 0.0))
            registered.add_metric(key, ref["registeredAt"])
        yield from (psi, observed, age, registered)
