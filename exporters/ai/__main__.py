"""Run the ai exporter."""

from exporters.ai import COMPONENT, create_app
from pulse.service import run_service

if __name__ == "__main__":
    run_service(COMPONENT, create_app, lambda cfg: cfg.exporters.ai.listen)
