"""The demo platform's back office: model ops (evaluations, drift) and cost booking.

A real platform runs jobs beside its apps: an evaluation job scores each model version
on a held-out set, a monitoring job compares the inputs the models see against the
training distribution (PSI), and finance books what running the platform costs. This
loop plays those jobs once per simulated hour (`demo.day_length` / 24):

- `POST /api/analytics/ai/evaluations` to the AI exporter for each model version;
- `POST /api/analytics/ai/drift/reference` once per model feature (kept across restarts),
  then `.../drift/observations` with a sample of the inputs served;
- analytics events `business_event` / `cost` / `incurred` to the intake (infrastructure,
  AI processing per recommendation served, support tickets), through the simulator's
  Sender (retries, idempotent batch ids).

In `ai-accuracy-drop` the degraded model's evaluation falls to about 0.62 and its input
distribution shifts moderately (PSI about 0.1-0.15, below the drift alert's 0.2), as a
model does when its population changes under it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid

import requests

from demo.scenarios import DEGRADED_MODEL

log = logging.getLogger("demo.modelops")

MODEL_VERSIONS = {"workout": "2.3.1", "nutrition": "1.8.0", "recovery": "1.2.4"}
TASKS = {"workout": "workout_generation", "nutrition": "nutrition", "recovery": "recovery"}
# Held-out accuracy of each model version in normal times (close to the online accuracy).
EVAL_ACCURACY = {"workout": 0.86, "nutrition": 0.85, "recovery": 0.88}
DEGRADED_ACCURACY = 0.62
# Input features per model: (name, bin edges, mean, sd) of a normal distribution.
FEATURES = {
    "workout": (("session_minutes", (0, 10, 20, 30, 45, 60, 90, 180), 38.0, 16.0),
                ("workouts_per_week", (0, 1, 2, 3, 4, 5, 7, 14), 3.2, 1.4)),
    "nutrition": (("daily_calories", (0, 1200, 1600, 2000, 2400, 2800, 3500, 6000),
                   2150.0, 420.0),),
    "recovery": (("sleep_hours", (0, 5, 6, 7, 8, 9, 12), 7.1, 0.9),
                 ("resting_heart_rate", (30, 50, 55, 60, 65, 70, 80, 120), 61.0, 6.5)),
}
SHIFT_SD = 0.35  # the degraded model's inputs move by this many standard deviations
REFERENCE_SIZE = 5000
SAMPLE_SIZE = 400
# Costs in USD per simulated hour (infrastructure), per recommendation served (AI
# processing) and per support ticket (tickets: about 1 per 150 sessions).
INFRA_PER_HOUR = 18.0
AI_PER_RECOMMENDATION = 0.004
SUPPORT_PER_TICKET = 6.5
TICKETS_PER_SESSION = 1 / 150


def bin_counts(edges, values) -> list[int]:
    """Counts of values per bin (first and last bins open-ended, as the exporter bins)."""
    counts = [0] * (len(edges) - 1)
    for v in values:
        i = 0
        while i < len(counts) - 1 and v >= edges[i + 1]:
            i += 1
        counts[i] += 1
    return counts


class ModelOps:
    """Plays the evaluation, drift-monitoring and cost-booking jobs once per simulated hour."""

    def __init__(self, ai_url: str, sender, scenario, sim_stats: dict,
                 period: float, rng: random.Random | None = None, token: str | None = None):
        self.ai_url = ai_url.rstrip("/")
        self.sender = sender
        self.scenario = scenario
        self.sim_stats = sim_stats
        self.period = period
        self.rng = rng or random.Random()
        self.http = requests.Session()
        if token:
            # The exporter's API needs ai:write (pulse.access); the token is never logged.
            self.http.headers["Authorization"] = f"Bearer {token}"
        self.references: set[tuple[str, str]] = set()
        self._last = {"recommendations": 0, "sessions": 0}
        self._thread: threading.Thread | None = None
        self.stats = {"evaluations": 0, "observations": 0, "costs": 0, "errors": 0}

    # --- the AI exporter ---------------------------------------------------------------

    def _post(self, path: str, body: dict) -> bool:
        try:
            resp = self.http.post(f"{self.ai_url}{path}", json=body, timeout=10)
        except requests.RequestException:
            self.stats["errors"] += 1
            return False
        if resp.status_code >= 300:
            self.stats["errors"] += 1
            log.warning("%s answered %s: %s", path, resp.status_code, resp.text[:200])
            return False
        return True

    def _known_references(self) -> set[tuple[str, str]]:
        try:
            resp = self.http.get(f"{self.ai_url}/api/analytics/ai/drift", timeout=10)
            return {(d["model"], d["feature"]) for d in resp.json().get("drift", [])}
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return set()

    def _sample(self, mean: float, sd: float, n: int, shift: float = 0.0) -> list[float]:
        return [round(self.rng.gauss(mean + shift * sd, sd), 3) for _ in range(n)]

    def evaluate(self) -> None:
        """One evaluation report per model version (the degraded one during the scenario)."""
        degraded = self.scenario.name == "ai-accuracy-drop"
        for model, version in MODEL_VERSIONS.items():
            base = DEGRADED_ACCURACY if degraded and model == DEGRADED_MODEL \
                else EVAL_ACCURACY[model]
            acc = min(0.99, max(0.01, self.rng.gauss(base, 0.006)))
            metrics = {"accuracy": round(acc, 4), "precision": round(min(0.99, acc + 0.02), 4),
                       "recall": round(max(0.01, acc - 0.03), 4),
                       "f1": round(acc - 0.005, 4), "auc": round(min(0.99, acc + 0.06), 4)}
            if self._post("/api/analytics/ai/evaluations",
                          {"model": model, "modelVersion": version, "task": TASKS[model],
                           "metrics": metrics, "sampleSize": 2000}):
                self.stats["evaluations"] += 1

    def monitor_drift(self) -> None:
        """Register missing references, then post a sample of the inputs served."""
        degraded = self.scenario.name == "ai-accuracy-drop"
        if len(self.references) < sum(len(f) for f in FEATURES.values()):
            self.references = self._known_references()
        for model, features in FEATURES.items():
            for name, edges, mean, sd in features:
                if (model, name) not in self.references:
                    counts = bin_counts(edges, self._sample(mean, sd, REFERENCE_SIZE))
                    if self._post("/api/analytics/ai/drift/reference",
                                  {"model": model, "feature": name, "bins": list(edges),
                                   "counts": counts}):
                        self.references.add((model, name))
                    else:
                        continue
                shift = SHIFT_SD if degraded and model == DEGRADED_MODEL else 0.0
                if self._post("/api/analytics/ai/drift/observations",
                              {"model": model, "feature": name,
                               "values": self._sample(mean, sd, SAMPLE_SIZE, shift)}):
                    self.stats["observations"] += SAMPLE_SIZE

    # --- costs -------------------------------------------------------------------------

    def cost_event(self, category: str, amount: float, **props) -> dict:
        """One cost booking as an analytics event (no user: a cost belongs to nobody)."""
        now = time.time()
        return {"id": str(uuid.uuid4()),
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                + f".{int(now % 1 * 1000):03d}Z",
                "sessionId": "finance-job", "eventType": "business_event",
                "category": "cost", "action": "incurred", "value": round(amount, 4),
                "properties": {"category": category, "currency": "USD", **props},
                "deviceInfo": {"platform": "web", "appVersion": "backoffice-1.0",
                               "osVersion": "linux"},
                "privacyFlags": {"canTrack": True, "canProfile": False, "canShare": False,
                                 "consentDate": "2026-01-01T00:00:00Z",
                                 "consentVersion": "2.1"}}

    def book_costs(self) -> None:
        """The simulated hour's costs: infrastructure, AI processing, support tickets."""
        recs = self.sim_stats.get("recommendations", 0)
        sessions = self.sim_stats.get("sessions", 0)
        served = recs - self._last["recommendations"]
        new_sessions = sessions - self._last["sessions"]
        self._last = {"recommendations": recs, "sessions": sessions}
        tickets = sum(1 for _ in range(new_sessions) if self.rng.random() < TICKETS_PER_SESSION)
        events = [self.cost_event("infrastructure", INFRA_PER_HOUR * self.rng.uniform(0.9, 1.1),
                                  source="compute"),
                  self.cost_event("ai_processing", AI_PER_RECOMMENDATION * max(served, 1),
                                  source="inference")]
        if tickets:
            events.append(self.cost_event("support", SUPPORT_PER_TICKET * tickets,
                                          source="helpdesk", tickets=tickets))
        self.sender.submit(events)
        self.stats["costs"] += len(events)

    # --- the loop ----------------------------------------------------------------------

    def run_once(self) -> None:
        """One simulated hour of back-office work."""
        for job in (self.evaluate, self.monitor_drift, self.book_costs):
            try:
                job()
            except Exception:  # noqa: BLE001 - one failing job never stops the others
                log.exception("%s failed", job.__name__)

    def run(self, stop: threading.Event) -> None:
        """Run once now, then once per period until stop is set."""
        while True:
            self.run_once()
            if stop.wait(self.period):
                return

    def start(self, stop: threading.Event) -> ModelOps:
        """Run in a background thread."""
        self._thread = threading.Thread(target=self.run, args=(stop,), name="modelops",
                                        daemon=True)
        self._thread.start()
        return self
