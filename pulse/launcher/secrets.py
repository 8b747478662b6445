"""Secrets that a fresh stack needs and nobody has set yet: generated once, kept in the data dir."""

from __future__ import annotations

import os
import secrets
from collections.abc import MutableMapping
from pathlib import Path

GENERATED = ("PULSE_ADMIN_TOKEN", "PULSE_PRIVACY_SALT")


def ensure_generated(data_dir: str | os.PathLike,
                     env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set each generated secret in env from <data_dir>/secrets/, creating it (0600) if absent."""
    env = os.environ if env is None else env
    folder = Path(data_dir) / "secrets"
    made = {}
    for name in GENERATED:
        if env.get(name):
            continue
        path = folder / name
        if path.exists():
            value = path.read_text().strip()
        else:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            value = secrets.token_urlsafe(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(value + "\n")
        env[name] = value
        made[name] = value
    return made
