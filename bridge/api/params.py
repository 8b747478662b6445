"""Request parameters several resources share, parsed once: 400s name the field."""

from __future__ import annotations

import math
from datetime import datetime

from bridge.errors import bad_request


def parse_time(raw, field_name: str) -> float:
    """RFC 3339 (with a zone) or Unix seconds -> Unix seconds (400 otherwise)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise bad_request(f"{field_name} is invalid", field_name,
                          "must be RFC 3339 or Unix seconds")
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(value) or value < 0 or value > 32503680000:
            raise bad_request(f"{field_name} is invalid", field_name,
                              "must be a finite Unix time")
        return value
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"{field_name} is invalid", field_name,
                          "must be RFC 3339 (2026-11-25T10:00:00Z) or Unix seconds") from None
    if parsed.tzinfo is None:
        raise bad_request(f"{field_name} is invalid", field_name, "must carry a time zone")
    return parsed.timestamp()
