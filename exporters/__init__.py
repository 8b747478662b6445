"""Exporters: each turns one part of the platform into Prometheus series."""
