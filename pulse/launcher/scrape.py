"""The platform's own scrape jobs (`prometheus.scrape`): checks and Prometheus scrape configs.

Credentials never reach prometheus.yml: a bearer token or basic-auth password is
written to a 0600 file under the data dir and Prometheus reads it through its
`*_file` options, so the rendered configuration can be shown, logged and diffed.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from pulse.config import Config
from pulse.fileio import write_atomic

# Pulse's own jobs with the key that names each (a user job may not take one of them).
PULSE_JOBS = {
    "prometheus": "prometheus.url",
    "alertmanager": "alertmanager.url",
    "events": "exporters.events.listen",
    "infrastructure": "exporters.infrastructure.listen",
    "integrations": "exporters.integrations.listen",
    "ai": "exporters.ai.listen",
    "bridge": "bridge.listen",
    "demo": "demo.listen, with pulse up --demo",
}


def secrets_dir(data_dir: str | os.PathLike) -> Path:
    """Where the scrape credentials are kept for Prometheus (0700, files 0600)."""
    return Path(data_dir) / "prometheus" / "secrets"


def _secret_file(data_dir: str | os.PathLike, job: str, kind: str) -> Path:
    return secrets_dir(data_dir) / f"{job}.{kind}"


def problems(cfg: Config, pulse_jobs: Iterable[str] = PULSE_JOBS) -> list[tuple[str, str]]:
    """(path, message) for each scrape entry Prometheus would refuse or could never scrape."""
    found = []
    own = set(pulse_jobs)
    for i, entry in enumerate(cfg.prometheus.scrape):
        at = f"prometheus.scrape[{i}]"
        if entry.job in own:
            found.append((f"{at}.job", f"job {entry.job!r} collides with Pulse's own scrape job "
                          f"{entry.job!r} (which scrapes {PULSE_JOBS.get(entry.job, entry.job)}); "
                          "choose another name"))
        has_static, has_files = bool(entry.get("targets")), bool(entry.get("file_sd"))
        if has_static == has_files:
            found.append((at, "give either targets or file_sd (exactly one of them)"))
        for j, target in enumerate(entry.get("targets") or ()):
            port = int(target.rsplit(":", 1)[1])
            if not 1 <= port <= 65535:
                found.append((f"{at}.targets[{j}]", f"port {port} is out of range 1-65535"))
        for j, pattern in enumerate(entry.get("file_sd") or ()):
            found.extend(_file_sd_problems(f"{at}.file_sd[{j}]", pattern))
        if entry.get("bearer_token") and entry.get("basic_auth"):
            found.append((at, "give either bearer_token or basic_auth, not both"))
        tls = entry.get("tls") or {}
        if bool(tls.get("cert_file")) != bool(tls.get("key_file")):
            found.append((f"{at}.tls", "cert_file and key_file go together (client certificate)"))
        for key in ("ca_file", "cert_file", "key_file"):
            if tls.get(key) and not os.access(tls[key], os.R_OK):
                found.append((f"{at}.tls.{key}", f"cannot read {tls[key]}"))
    return found


def _file_sd_problems(at: str, pattern: str) -> list[tuple[str, str]]:
    folder, name = os.path.split(pattern)
    if glob.has_magic(folder):
        # Prometheus expands a wildcard only in the file name.
        return [(at, f"{pattern!r}: a wildcard is allowed only in the file name")]
    if not os.path.isdir(folder or "."):
        return [(at, f"directory {folder!r} does not exist (create it; Prometheus watches it "
                     "for target files)")]
    if not os.access(folder or ".", os.R_OK | os.X_OK):
        return [(at, f"directory {folder!r} is not readable")]
    return []


def scrape_configs(cfg: Config) -> list[dict]:
    """One Prometheus scrape config per prometheus.scrape entry (credentials as *_file)."""
    return [_scrape_config(entry, cfg.data_dir) for entry in cfg.prometheus.scrape]


def _scrape_config(entry: Mapping, data_dir: str) -> dict:
    doc: dict = {"job_name": entry["job"], "metrics_path": entry["metrics_path"],
                 "scheme": entry["scheme"]}
    if entry.get("interval"):
        doc["scrape_interval"] = entry["interval"]
    labels = dict(entry.get("labels") or {})
    if entry.get("targets"):
        static: dict = {"targets": list(entry["targets"])}
        if labels:
            static["labels"] = labels
        doc["static_configs"] = [static]
    else:
        doc["file_sd_configs"] = [{"files": list(entry["file_sd"])}]
        if labels:
            # file_sd has no labels of its own beside the files': add ours to each target.
            doc["relabel_configs"] = [{"target_label": k, "replacement": v}
                                      for k, v in sorted(labels.items())]
    if entry.get("bearer_token"):
        doc["authorization"] = {
            "type": "Bearer",
            "credentials_file": str(_secret_file(data_dir, entry["job"], "bearer_token"))}
    if entry.get("basic_auth"):
        doc["basic_auth"] = {
            "username": entry["basic_auth"]["username"],
            "password_file": str(_secret_file(data_dir, entry["job"], "password"))}
    if entry.get("tls"):
        doc["tls_config"] = dict(entry["tls"])
    return doc


def write_secrets(cfg: Config) -> list[Path]:
    """Write each scrape credential to its 0600 file (and remove stale ones); return them."""
    folder = secrets_dir(cfg.data_dir)
    wanted: dict[Path, str] = {}
    for entry in cfg.prometheus.scrape:
        if entry.get("bearer_token"):
            wanted[_secret_file(cfg.data_dir, entry.job, "bearer_token")] = entry.bearer_token
        if entry.get("basic_auth"):
            wanted[_secret_file(cfg.data_dir, entry.job, "password")] = entry.basic_auth.password
    if wanted:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path, value in wanted.items():
        write_atomic(path, value, mode=0o600)
    for old in folder.glob("*") if folder.is_dir() else ():
        if old not in wanted:
            old.unlink()
    return list(wanted)
