"""Forecasts: model choice by backtest, honest baseline verdicts, intervals, crossings."""

import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from bridge.services.forecast import crossing, forecast_series

DAY = 86400.0


def series(n, rng, season=10.0, trend=0.5, noise=2.0):
    t = np.arange(n)
    return 100 + trend * t + season * np.sin(2 * np.pi * t / 7) + rng.normal(0, noise, n)


def test_seasonal_series_model_beats_baseline_with_ordered_intervals():
    rng = np.random.default_rng(1)
    y = series(60, rng)
    f = forecast_series(list(y), [i * DAY for i in range(60)], int(DAY), 7 * DAY)
    assert f["season"] == 7 and f["beatsBaseline"] is True
    assert f["backtest"]["origins"] == 3
    assert f["backtest"]["model"]["mase"] < f["backtest"]["baseline"]["mase"]
    assert "beats the seasonal naive baseline" in f["note"]
    assert len(f["points"]) == 7 and f["points"][0]["t"] == 60 * DAY
    for p in f["points"]:
        assert p["low95"] < p["low80"] < p["value"] < p["high80"] < p["high95"]
    widths = [p["high95"] - p["low95"] for p in f["points"]]
    assert widths[-1] > widths[0]  # uncertainty grows with the horizon


def test_a_model_that_does_not_beat_the_baseline_says_so():
    # An exactly repeating week: seasonal naive is perfect, no smoother can beat it.
    y = [10, 12, 30, 31, 29, 5, 4] * 6
    f = forecast_series(y, [i * DAY for i in range(len(y))], int(DAY), 7 * DAY)
    assert f["beatsBaseline"] is False and f["method"] == "seasonal naive"
    assert "does not beat the seasonal naive baseline" in f["note"]
    assert [p["value"] for p in f["points"]] == [10, 12, 30, 31, 29, 5, 4]


def test_too_few_points_gives_no_forecast():
    f = forecast_series([1.0, None, 2.0], [0, DAY, 2 * DAY], int(DAY), 7 * DAY)
    assert f["points"] == [] and "at least 8" in f["note"]


def test_intervals_agree_with_statsmodels_analytic_ets():
    rng = np.random.default_rng(3)
    y = 50 + np.cumsum(rng.normal(0.2, 1.0, 80))  # trend, no season (weekly step)
    f = forecast_series(list(y), [i * 7 * DAY for i in range(80)], int(7 * DAY), 28 * DAY)
    assert f["season"] is None
    if f["beatsBaseline"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = ETSModel(pd.Series(y), error="add", trend="add", damped_trend=True).fit(
                disp=False)
        frame = ref.get_prediction(start=80, end=83).summary_frame(alpha=0.05)
        ours = np.array([p["high95"] - p["low95"] for p in f["points"]])
        theirs = (frame["pi_upper"] - frame["pi_lower"]).to_numpy()
        assert ours == pytest.approx(theirs, rel=0.3)
    else:
        sd = np.std(np.diff(y), ddof=1)
        assert f["points"][0]["high95"] - f["points"][0]["value"] == pytest.approx(1.96 * sd,
                                                                                  rel=1e-3)


def test_interval_coverage_on_simulated_series():
    rng = np.random.default_rng(11)
    covered = total = 0
    for _ in range(30):
        y = series(49, rng)
        f = forecast_series(list(y[:42]), [i * DAY for i in range(42)], int(DAY), 7 * DAY)
        for p, actual in zip(f["points"], y[42:], strict=True):
            covered += p["low95"] <= actual <= p["high95"]
            total += 1
    assert covered / total >= 0.85


def test_crossing_days_with_interval():
    points = [{"t": d * DAY, "value": 0.5 + 0.05 * d, "low95": 0.45 + 0.04 * d,
               "high95": 0.55 + 0.06 * d, "low80": 0, "high80": 0} for d in range(1, 15)]
    c = crossing(points, 0.8, 0.0)
    assert c["days"] == 6 and c["earliestDays"] == 5 and c["latestDays"] == 9
    assert crossing(points, 5.0, 0.0)["days"] is None


def test_numpy_scalars_reach_every_report_writer_as_plain_values():
    """A backtest over numpy values once put numpy.bool_ into beatsBaseline: the JSON writer
    refused it and the report was a 500 (long-term history, issue 22's test)."""
    import json

    from bridge.services.reports.build import clean
    report = {"beatsBaseline": np.bool_(True), "mae": np.float64(1.25), "n": [np.int64(3)]}
    assert json.loads(json.dumps(clean(report))) == {"beatsBaseline": True, "mae": 1.25,
                                                     "n": [3]}
    assert type(clean(np.bool_(False))) is bool
