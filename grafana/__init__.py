"""Grafana dashboards as code: house style (lib), dashboards/, the generator and the checks."""
