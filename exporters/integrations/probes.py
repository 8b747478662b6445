"""Series of probe results: the scheduled targets' collector and the one-shot /probe output."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.integrations.probe import PHASES, REASONS, ProbeResult
from exporters.integrations.scheduler import Scheduler, reason_counts


def result_families(results: dict[tuple[str, ...], ProbeResult],
                    labels: list[str]) -> list[Metric]:
    """Gauges describing last results, keyed by label values (one key per target)."""
    def gauge(name, text, extra=()):
        return GaugeMetricFamily(name, text, labels=[*labels, *extra])

    success = gauge("integration_probe_success", "Whether the last probe succeeded.")
    duration = gauge("integration_probe_duration_seconds", "How long the last probe took.")
    phases = gauge("integration_probe_phase_duration_seconds",
                   "Duration of each phase of the last probe (those it reached).", ["phase"])
    status = gauge("integration_probe_http_status_code",
                   "HTTP status code of the last probe's response (0: no response).")
    expiry = gauge("integration_tls_cert_expiry_timestamp_seconds",
                   "When the certificate the service presented expires, in unixtime.")
    reason = gauge("integration_probe_failure_reason",
                   "Why the last probe failed: 1 for its reason, 0 for the others.", ["reason"])
    finished = gauge("integration_probe_last_run_timestamp_seconds",
                     "When the last probe finished, in unixtime.")
    for key, result in sorted(results.items()):
        key = list(key)
        success.add_metric(key, 1.0 if result.success else 0.0)
        duration.add_metric(key, result.duration)
        for phase in PHASES:
            if phase in result.phases:
                phases.add_metric([*key, phase], result.phases[phase])
        status.add_metric(key, result.status_code)
        if result.cert_expiry is not None:
            expiry.add_metric(key, result.cert_expiry)
        for r in REASONS:
            reason.add_metric([*key, r], 1.0 if result.reason == r else 0.0)
        finished.add_metric(key, result.finished_at)
    return [success, duration, phases, status, expiry, reason, finished]


class ProbesCollector:
    """The scheduled targets' last results and their failure counters."""

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        """Read the scheduler's last results (never probes)."""
        results, probes, failures = self.scheduler.snapshot()
        yield from result_families({(n,): r for n, r in results.items()}, ["integration"])
        total = CounterMetricFamily("integration_probes_total", "Probes run.",
                                    labels=["integration"])
        failed = CounterMetricFamily("integration_probe_failures_total",
                                     "Failed probes by reason.", labels=["integration", "reason"])
        for target in self.scheduler.targets:
            total.add_metric([target.name], probes.get(target.name, 0))
            for reason, count in reason_counts(target.name, failures).items():
                failed.add_metric([target.name, reason], count)
        yield total
        yield failed


class OneShotCollector:
    """One /probe result, without the `integration` label (Prometheus relabelling adds it)."""

    def __init__(self, result: ProbeResult):
        self.result = result

    def collect(self) -> Iterator[Metric]:
        """The families of a single result."""
        yield from result_families({(): self.result}, [])
