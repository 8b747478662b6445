"""`pulse backup DIR` and `pulse restore DIR`: the whole state of a stack, checksummed.

A backup holds the configuration, every file of the data dir that is Pulse's own state
(bridge rule files and history, delivery and incident state, experiments, profiles, the
intake's log and snapshot, Alertmanager's silences), a consistent snapshot of each store
(Prometheus's TSDB snapshot API, `vmbackup` per managed VictoriaMetrics tier; a plain
copy when the store is stopped) and manifest.json with the sha256 of every file.
Restore checks every checksum first, then fills an empty data dir: the same rules are
loaded and the same queries give the same answers (tests/longterm).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import requests

from pulse.config import Config, prometheus_urls
from pulse.fileio import write_atomic
from pulse.launcher.render import long_term_tiers

MANIFEST = "manifest.json"
FORMAT = 1
# Data-dir entries that are stores (snapshotted separately), generated, or runtime only.
SKIP_TOP = {"prometheus", "victoria", "logs", "pulse.pid", "secrets", "demo"}


class BackupError(Exception):
    """A backup or restore could not be made; the message says which part and why."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_state(data: Path, dest: Path, skip: set[str]) -> None:
    """Pulse's own files; SQLite databases through SQLite's online backup (consistent)."""
    for src in sorted(data.rglob("*")):
        rel = src.relative_to(data)
        # prometheus-<i>: a replica's rendered config and TSDB (restore fills it per replica).
        if (rel.parts[0] in SKIP_TOP | skip or re.fullmatch(r"prometheus-\d+", rel.parts[0])
                or not src.is_file()
                or src.name.endswith((".tmp", "-wal", "-shm"))):
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".db":
            with sqlite3.connect(src) as live, sqlite3.connect(out) as copy:
                live.backup(copy)
            copy.close()
        else:
            shutil.copy2(src, out)


def _prometheus_snapshot(cfg: Config, dest: Path) -> str:
    """Copy a TSDB snapshot of the first replica that answers; 'snapshot' or 'copy'."""
    from pulse.launcher.supervisor import prometheus_paths

    for i, url in enumerate(prometheus_urls(cfg)):
        tsdb = prometheus_paths(cfg, i)[1]
        try:
            resp = requests.post(f"{url}/api/v1/admin/tsdb/snapshot", timeout=120)
        except requests.RequestException:
            continue
        body = resp.json() if resp.headers.get("content-type", "").startswith(
            "application/json") else {}
        if resp.status_code != 200 or body.get("status") != "success":
            raise BackupError(f"Prometheus at {url} refused a snapshot: {resp.text[:200]} "
                              "(it needs --web.enable-admin-api, which `pulse up` passes)")
        snap = tsdb / "snapshots" / body["data"]["name"]
        try:
            shutil.copytree(snap, dest)
        finally:
            # Prometheus has no API to delete a snapshot: it is a directory of hard links.
            shutil.rmtree(snap, ignore_errors=True)
        return "snapshot"
    tsdb = prometheus_paths(cfg, 0)[1]
    if tsdb.exists():
        # No replica answers: the stack is stopped, so its TSDB on disk is consistent.
        shutil.copytree(tsdb, dest, ignore=shutil.ignore_patterns("lock", "snapshots"))
        return "copy"
    return "none"


def _vmbackup(tier, storage: Path, dest: Path) -> str:
    """vmbackup of a running tier (it snapshots through the server), else a copy."""
    try:
        running = requests.get(f"{tier.url.rstrip('/')}/health", timeout=5).ok
    except requests.RequestException:
        running = False
    if not running:
        if storage.exists():
            shutil.copytree(storage, dest, ignore=shutil.ignore_patterns("flock.lock"))
            return "copy"
        return "none"
    dest.mkdir(parents=True, exist_ok=True)
    # -httpListenAddr: vmbackup's own default (:8420) is every interface and a fixed port.
    argv = ["vmbackup", f"-storageDataPath={storage}",
            f"-snapshot.createURL={tier.url.rstrip('/')}/snapshot/create",
            f"-dst=fs://{dest.resolve()}", "-httpListenAddr=127.0.0.1:0", "-loggerLevel=ERROR"]
    _run(argv, f"vmbackup of tier {tier.name}")
    return "vmbackup"


def _run(argv: list[str], what: str) -> None:
    if shutil.which(argv[0]) is None:
        raise BackupError(f"{argv[0]} not found (Debian package victoria-metrics): "
                          f"needed for the {what}")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise BackupError(f"{what} failed (exit {proc.returncode}): "
                          f"{(proc.stderr or proc.stdout)[-500:]}")


def backup(cfg: Config, config_path: Path, dest: Path) -> dict:
    """Write a backup of the stack into dest (a new or empty directory); its manifest."""
    from pulse.launcher.supervisor import tier_storage

    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: a backup goes into a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    data = Path(cfg.data_dir)
    shutil.copy2(config_path, dest / "pulse.yml")
    # Backups kept inside the data dir (scheduled ones, or dest itself) are not state.
    inside = {p.relative_to(data).parts[0] for p in (scheduled_dir(cfg), dest.resolve())
              if p.resolve().is_relative_to(data)}
    _copy_state(data, dest / "state", inside)
    stores = {"prometheus": _prometheus_snapshot(cfg, dest / "prometheus")}
    for tier in long_term_tiers(cfg):
        if tier.manage:
            stores[f"victoria-{tier.name}"] = _vmbackup(tier, tier_storage(cfg, tier),
                                                        dest / "victoria" / tier.name)
    files = {str(p.relative_to(dest)): {"sha256": _sha256(p), "bytes": p.stat().st_size}
             for p in sorted(dest.rglob("*")) if p.is_file()}
    manifest = {"format": FORMAT, "created": time.time(), "data_dir": str(data),
                "stores": stores, "files": files}
    write_atomic(dest / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def verify(src: Path) -> dict:
    """The manifest of the backup at src after checking every file's checksum."""
    src = Path(src)
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{src / MANIFEST}: not a Pulse backup ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{src}: backup format {manifest.get('format')!r}, expected {FORMAT}")
    bad = []
    for rel, meta in manifest["files"].items():
        path = src / rel
        if not path.is_file():
            bad.append(f"{rel}: missing")
        elif _sha256(path) != meta["sha256"]:
            bad.append(f"{rel}: checksum differs")
    if bad:
        raise BackupError(f"{src}: {len(bad)} damaged file(s): " + "; ".join(bad[:10]))
    return manifest


def restore(cfg: Config, src: Path) -> dict:
    """Fill cfg's (empty) data dir from the backup at src; its manifest."""
    from pulse.launcher.supervisor import prometheus_paths, read_state, tier_storage

    src = Path(src)
    manifest = verify(src)
    data = Path(cfg.data_dir)
    if read_state(cfg):
        raise BackupError(f"a stack runs on {data}: stop it (`pulse down`) before a restore")
    leftover = [p.name for p in data.iterdir() if p.name != "secrets"] if data.exists() else []
    if leftover:
        raise BackupError(f"{data} is not empty ({', '.join(sorted(leftover)[:5])}): "
                          "restore into an empty data dir")
    data.mkdir(parents=True, exist_ok=True)
    if (src / "state").exists():
        shutil.copytree(src / "state", data, dirs_exist_ok=True)
    if (src / "prometheus").exists():
        # Every replica starts from the same snapshot; the pair then scrapes on its own.
        for i in range(cfg.prometheus.replicas):
            shutil.copytree(src / "prometheus", prometheus_paths(cfg, i)[1])
    for tier in long_term_tiers(cfg):
        how = manifest["stores"].get(f"victoria-{tier.name}")
        backup_dir = src / "victoria" / tier.name
        if not tier.manage or how in (None, "none"):
            continue
        storage = tier_storage(cfg, tier)
        if how == "copy":
            shutil.copytree(backup_dir, storage)
            continue
        storage.mkdir(parents=True, exist_ok=True)
        _run(["vmrestore", f"-src=fs://{backup_dir.resolve()}", f"-storageDataPath={storage}",
              "-httpListenAddr=127.0.0.1:0", "-loggerLevel=ERROR"],
             f"vmrestore of tier {tier.name}")
    os.utime(data)
    return manifest


def scheduled_dir(cfg: Config) -> Path:
    """Where scheduled backups go (backup.dir, relative to the data dir)."""
    return Path(cfg.data_dir) / cfg.backup.dir


def take_scheduled(cfg: Config, config_path: Path, now: float | None = None) -> Path:
    """One scheduled backup into backup.dir/<UTC time>; older ones beyond backup.keep go."""
    root = scheduled_dir(cfg)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now if now is not None else time.time()))
    dest = root / stamp
    backup(cfg, config_path, dest)
    done = sorted(p for p in root.iterdir() if (p / MANIFEST).exists())
    for old in done[:-cfg.backup.keep]:
        shutil.rmtree(old, ignore_errors=True)
    return dest
