"""Times in requests (RFC 3339 or Unix seconds), parsed once: Invalid names the field."""

from __future__ import annotations

import math
from datetime import datetime

from bridge.services.errors import invalid


def parse_time(raw, field_name: str) -> float:
    """RFC 3339 (with a zone) or Unix seconds -> Unix seconds (Invalid otherwise)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise invalid(f"{field_name} is invalid", field_name,
                          "must be RFC 3339 or Unix seconds")
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0 or value > 32503680000:
            raise invalid(f"{field_name} is invalid", field_name,
                              "must be a finite Unix time")
        return value
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(f"{field_name} is invalid", field_name,
                          "must be RFC 3339 (2026-11-25T10:00:00Z) or Unix seconds") from None
    if parsed.tzinfo is None:
        raise invalid(f"{field_name} is invalid", field_name, "must carry a time zone")
    return parsed.timestamp()
