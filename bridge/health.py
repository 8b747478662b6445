"""Health of the bridge itself (the full SystemHealthResponse grows here)."""

from flask import Blueprint

bp = Blueprint("health", __name__, url_prefix="/api/analytics")


@bp.get("/health")
def health():
    """SystemHealthResponse: overall status and per-component detail."""
    return {"status": "healthy", "components": [], "metrics": {}, "incidents": []}
