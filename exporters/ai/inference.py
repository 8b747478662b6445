"""Inference latency: `ai_inference_duration_seconds{model}` on a registry of your choice.

    hist = inference_histogram(registry)
    with observe_inference("workout_gen", hist):
        plan = model.generate(...)

    @observe_inference("nutrition", hist)
    def suggest(...): ...
"""

from __future__ import annotations

import functools
import time
from contextlib import ContextDecorator

from prometheus_client import CollectorRegistry, Histogram

METRIC = "ai_inference_duration_seconds"
# Model calls range from a few ms (ranking) to tens of seconds (generation).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def inference_histogram(registry: CollectorRegistry) -> Histogram:
    """The ai_inference_duration_seconds{model} histogram, registered on registry."""
    return Histogram(METRIC, "Duration of AI model inference calls.", ["model"],
                     buckets=BUCKETS, registry=registry)


class observe_inference(ContextDecorator):  # noqa: N801 (used like a function)
    """Context manager and decorator timing one inference call of model into histogram."""

    def __init__(self, model: str, histogram: Histogram, clock=time.perf_counter):
        self.child = histogram.labels(model=model)
        self.clock = clock
        self._starts: list[float] = []

    def __enter__(self):
        self._starts.append(self.clock())
        return self

    def __exit__(self, *exc):
        # Failed calls are timed too: a timing-out model is what latency alerts are for.
        self.child.observe(self.clock() - self._starts.pop())
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self:
                return func(*args, **kwargs)
        return wrapper
