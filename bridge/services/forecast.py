"""Forecasts with prediction intervals, chosen and scored by a rolling-origin backtest.

Candidates: Holt-Winters exponential smoothing (statsmodels; additive damped trend, additive
seasonality when the series covers two seasons: 24 for hourly, 7 for daily points) and the
baseline, seasonal naive (naive without a season). Each is backtested from rolling origins
(the last `FOLDS` windows of the forecast's length); the model is used only when its MASE
is below the baseline's, and the forecast says which one won. Intervals (80 % and 95 %):
for the model, quantiles of `SIMULATIONS` simulated future paths with normal errors of the
fitted residual spread; for seasonal naive, the textbook sigma * sqrt(seasons ahead + 1).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats as sps
from statsmodels.tsa.holtwinters import ExponentialSmoothing
from threadpoolctl import threadpool_limits

FOLDS = 3
SIMULATIONS = 400
MIN_POINTS = 8
SEASONS = {3600: 24, 86400: 7}
Z80, Z95 = float(sps.norm.ppf(0.9)), float(sps.norm.ppf(0.975))


def season_of(step: int, n: int) -> int | None:
    """The season length for this step when the series holds two seasons and a bit."""
    m = SEASONS.get(int(step))
    return m if m and n >= 2 * m + 2 else None


def _fill(values: list[float | None]) -> np.ndarray | None:
    """Trim leading/trailing gaps, interpolate inner ones; None when too few points."""
    y = np.array([np.nan if v is None else float(v) for v in values])
    known = np.flatnonzero(np.isfinite(y))
    if known.size < MIN_POINTS:
        return None
    y = y[known[0]:known[-1] + 1]
    idx = np.arange(y.size)
    ok = np.isfinite(y)
    return np.interp(idx, idx[ok], y[ok])


def _holt_winters(y: np.ndarray, m: int | None):
    # One BLAS thread: on these tiny problems the thread pool's start-up costs more than
    # the fit (0.15 s against 0.02 s per fit, measured on 2 cores).
    with warnings.catch_warnings(), threadpool_limits(1):
        # Convergence chatter on short series; the backtest judges the fit, not the optimiser.
        warnings.simplefilter("ignore")
        # Heuristic initial states (from the first two seasons) and no brute-force start
        # search: a fit takes ~0.1 s instead of ~0.5 s on a report's 30 to 200 points.
        init = "heuristic" if y.size >= max(10, 2 * (m or 0)) else "estimated"
        return ExponentialSmoothing(
            y, trend="add", damped_trend=True, seasonal="add" if m else None,
            seasonal_periods=m, initialization_method=init).fit(use_brute=False)


def _naive(y: np.ndarray, m: int | None, h: int) -> np.ndarray:
    lag = m or 1
    last = y[-lag:]
    return np.array([last[i % lag] for i in range(h)])


def _mase_scale(y: np.ndarray, m: int | None) -> float:
    lag = m or 1
    diffs = np.abs(y[lag:] - y[:-lag])
    return float(diffs.mean()) if diffs.size else float("nan")


def backtest(y: np.ndarray, m: int | None, h: int) -> dict:
    """Rolling-origin errors of the model and the baseline over the last FOLDS windows."""
    min_train = 2 * m if m else 10
    model_err, base_err, actual = [], [], []
    origins = [y.size - h * (i + 1) for i in range(FOLDS)]
    origins = [o for o in origins if o >= min_train]
    for o in origins:
        train, test = y[:o], y[o:o + h]
        base_err.append(test - _naive(train, m, test.size))
        try:
            model_err.append(test - _holt_winters(train, m).forecast(test.size))
        except (ValueError, np.linalg.LinAlgError):
            model_err.append(np.full(test.size, np.nan))
        actual.append(test)
    if not origins:
        return {"origins": 0}
    scale = _mase_scale(y, m)
    e_m, e_b, a = (np.concatenate(x) for x in (model_err, base_err, actual))

    def score(e):
        mae = float(np.mean(np.abs(e)))
        return {"mae": mae, "mase": mae / scale if scale > 0 else None,
                "mape": float(np.mean(np.abs(e / a))) if np.all(a != 0) else None}
    return {"origins": len(origins), "horizonPoints": h, "model": score(e_m),
            "baseline": score(e_b)}


def forecast_series(values: list[float | None], timestamps: list[float], step: int,
                    horizon_seconds: float) -> dict:
    """Forecast of one series: method, path with 80/95 % intervals, backtest, the verdict."""
    y = _fill(values)
    if y is None:
        known = sum(v is not None for v in values)
        return {"method": None, "points": [],
                "note": f"{known} points: a forecast with a backtest needs at least "
                        f"{MIN_POINTS}"}
    m = season_of(step, y.size)
    h = max(1, min(int(round(horizon_seconds / step)), 4 * (m or 7)))
    h_bt = max(1, min(h, y.size // (FOLDS + 1)))
    bt = backtest(y, m, h_bt)
    base_name = "seasonal naive" if m else "naive"
    model_name = (f"Holt-Winters (additive damped trend, season {m})" if m
                  else "Holt (additive damped trend)")
    # bool(): numpy comparisons give numpy.bool_, which no report writer serialises.
    use_model = bool(bt.get("origins") and bt["model"]["mae"] is not None and (
        np.isfinite(bt["model"]["mae"]) and bt["model"]["mae"] < bt["baseline"]["mae"]))
    last_t = timestamps[-1] if timestamps else 0.0
    times = [last_t + step * (i + 1) for i in range(h)]
    if use_model:
        fit = _holt_winters(y, m)
        mean = np.asarray(fit.forecast(h), float)
        sims = np.asarray(fit.simulate(h, repetitions=SIMULATIONS, error="add",
                                       rng=np.random.default_rng(0)), float)
        sims = sims.reshape(h, -1)
        q = np.quantile(sims, [0.025, 0.1, 0.9, 0.975], axis=1)
        method = model_name
    else:
        mean = _naive(y, m, h)
        lag = m or 1
        resid = y[lag:] - y[:-lag]
        sigma = float(np.std(resid, ddof=1)) if resid.size > 1 else 0.0
        k = np.arange(h) // lag
        sd = sigma * np.sqrt(k + 1)
        q = np.array([mean - Z95 * sd, mean - Z80 * sd, mean + Z80 * sd, mean + Z95 * sd])
        method = base_name
    points = [{"t": t, "value": float(v), "low95": float(a), "low80": float(b),
               "high80": float(c), "high95": float(d)}
              for t, v, a, b, c, d in zip(times, mean, *q, strict=True)]
    if not bt.get("origins"):
        note = "too short for a backtest: the baseline is shown, its error unknown"
    elif use_model:
        note = (f"{model_name} beats the {base_name} baseline in the backtest "
                f"(MASE {bt['model']['mase']:.2f} vs {bt['baseline']['mase']:.2f})")
    else:
        note = (f"{model_name} does not beat the {base_name} baseline in the backtest "
                f"(MAE {bt['model']['mae']:.4g} vs {bt['baseline']['mae']:.4g}); "
                f"the baseline is shown")
    return {"method": method, "baseline": base_name, "season": m, "usedPoints": int(y.size),
            "horizonPoints": h, "beatsBaseline": use_model, "backtest": bt, "note": note,
            "points": points}


def crossing(points: list[dict], threshold: float, start: float) -> dict:
    """Days from `start` until the forecast crosses `threshold`, with an interval.

    The expected day is where the mean path crosses; the early end where the upper 95 %
    bound crosses; the late end where the lower bound does (None: not within the horizon).
    """
    def first(key: str) -> float | None:
        for p in points:
            if p[key] >= threshold:
                return (p["t"] - start) / 86400
        return None
    expected, early, late = first("value"), first("high95"), first("low95")
    horizon = (points[-1]["t"] - start) / 86400 if points else 0.0
    return {"threshold": threshold, "days": expected, "earliestDays": early,
            "latestDays": late, "horizonDays": horizon, "interval": "95 %",
            "note": ("not expected to cross within the horizon" if expected is None else
                     f"expected in {expected:.1f} days (95 %: {early:.1f} to "
                     f"{'beyond the horizon' if late is None else f'{late:.1f}'} days)")}

