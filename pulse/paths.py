"""Where the source tree's data folders are, wherever Pulse runs from."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "rules"
ALERTMANAGER_DIR = ROOT / "alertmanager"
GRAFANA_DIR = ROOT / "grafana"
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
DEFAULT_CONFIG = ROOT / "pulse.yml"


def bridge_rules_dir(data_dir: str | Path) -> Path:
    """Where the bridge keeps the rule files it writes (watched by Prometheus)."""
    return Path(data_dir) / "rules"
