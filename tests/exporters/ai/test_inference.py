"""observe_inference as a context manager and a decorator."""

import pytest
from prometheus_client import CollectorRegistry

from exporters.ai.inference import inference_histogram, observe_inference


class Ticks:
    """A clock advancing 0.25 s per reading."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        self.t += 0.25
        return self.t


def test_context_manager_and_decorator_record_durations():
    registry = CollectorRegistry()
    hist = inference_histogram(registry)
    with observe_inference("workout_gen", hist, clock=Ticks()):
        pass

    @observe_inference("nutrition", hist, clock=Ticks())
    def suggest():
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        suggest()
    for model in ("workout_gen", "nutrition"):
        labels = {"model": model}
        assert registry.get_sample_value("ai_inference_duration_seconds_count", labels) == 1
        assert registry.get_sample_value("ai_inference_duration_seconds_sum", labels) == 0.25
