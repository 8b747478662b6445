"""Reports: build (build.py), render (excel.py, pdf.py, charts.py), deliver (deliver.py), and
the scheduled reports, sent by a bridge thread (scheduler.py) that init_app starts."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

from flask import Flask

from bridge.services import PROMETHEUS, REPORT_SCHEDULER, now, service
from bridge.services.analytics import k_anonymity
from bridge.services.churn import churn_model
from bridge.services.reports.build import ReportRequest, build_report, default_granularity
from bridge.services.reports.deliver import render, send_email
from bridge.services.reports.scheduler import ReportScheduler, interval_of
from pulse.profiles.store import connect, db_path

# The reports with a retention section get the churn model (bridge.services.churn).
CHURN_REPORTS = ("executive", "business")


def _settings(cfg) -> dict:
    reports = cfg.bridge.reports.to_dict() if hasattr(cfg.bridge.reports, "to_dict") \
        else dict(cfg.bridge.reports)
    # The intake's bound of a late event, named beside the report's late share.
    reports["late_after"] = cfg.exporters.events.late_after
    return reports


def generate(app, req: ReportRequest, now: float | None = None) -> tuple[dict, bytes]:
    """Build and render a report with the app's Prometheus and configuration."""
    cfg = app.config["PULSE"]
    report = build_report(service(app, PROMETHEUS), req, _settings(cfg), k_anonymity(cfg),
                          now)
    if req.report_type in CHURN_REPORTS:
        report["churnModel"] = _churn(cfg, now if now is not None else time.time())
    return report, render(report, req.format)


def _churn(cfg, at: float) -> dict:
    """The churn model on the profile store the intake writes (read-only)."""
    path = db_path(cfg.data_dir)
    if not path.exists():
        return {"status": "not_enough_data", "note": "no profile store (profiling is off)"}
    conn = connect(path, readonly=True)
    try:
        return churn_model(conn, at, k_anonymity(cfg))
    except sqlite3.OperationalError as exc:  # a store without its tables yet
        return {"status": "not_enough_data", "note": f"profile store unreadable: {exc}"}
    finally:
        conn.close()


def outbox(cfg) -> Path:
    return Path(cfg.data_dir) / "reports" / "outbox"


def init_app(app: Flask) -> ReportScheduler | None:
    """Start the scheduled-reports thread when schedules are configured."""
    cfg = app.config["PULSE"]
    schedules = cfg.bridge.reports.schedules
    if not schedules or not cfg.bridge.get("enabled", True):
        return None

    def send(sched: Mapping, start: float, end: float) -> None:
        req = ReportRequest(sched["report_type"], start, end, default_granularity(end - start),
                            sched["include_comparisons"], sched["format"], "email",
                            sched["channel"])
        report, data = generate(app, req, now=time.time())
        send_email(report, data, req.format, sched["channel"], cfg.bridge.channels,
                   outbox(cfg))

    scheduler = ReportScheduler(schedules, Path(cfg.data_dir) / "reports" / "schedules.json",
                                interval_of(cfg), send,
                                lambda: now(app))
    app.extensions[REPORT_SCHEDULER] = scheduler
    return scheduler.start()
