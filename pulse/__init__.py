"""Pulse: Prometheus-native analytics, monitoring and alerting for a fitness platform."""

__version__ = "0.1.0"
