"""The traffic simulator (`python -m demo.simulate`): a population using the demo fitness app.

Simulated users on iOS, Android and the web open sessions with a daily rhythm,
call the demo API (so its latency metrics are real) and send analytics events to
the intake (`POST /api/analytics/events`) in batches with idempotent batch ids,
retried with backoff. Event shapes follow the intake's default mapping
(exporters/events/mapping.yml). The active incident scenario (demo/scenarios.py)
changes what they do.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import queue
import random
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import requests

from demo.disk import DiskFiller
from demo.modelops import ModelOps
from demo.scenarios import CRASHING, DEGRADED_MODEL, LATENCY_ROUTE, ScenarioWatch
from pulse.access import token_for
from pulse.config import Config, parse_duration
from pulse.log import setup
from pulse.service import load_or_exit

COMPONENT = "demo.simulate"
log = logging.getLogger(COMPONENT)

PLATFORMS = (("ios", 0.45), ("android", 0.40), ("web", 0.15))
APP_VERSIONS = {"ios": ("5.2.1", "5.3.0"), "android": ("5.2.0", "5.3.0"), "web": ("2026.11",)}
OS_VERSIONS = {"ios": ("17.6", "18.1"), "android": ("13", "14"), "web": ("chrome-131",)}
DEVICES = {"ios": ("iPhone15,2", "iPhone16,1"), "android": ("Pixel 8", "SM-S918B"),
           "web": ("desktop",)}
VENDORS = ("apple_health", "google_fit", "garmin", "fitbit", "oura", "whoop", None)
GOALS = ("weight_loss", "muscle_gain", "endurance", "flexibility", "consistency")
WORKOUT_TYPES = ("strength", "cardio", "yoga", "hiit", "running", "mobility")
EXERCISES = {"strength": ("squat", "deadlift", "bench_press", "row"),
             "cardio": ("bike", "burpee"), "yoga": ("stretch", "plank"),
             "hiit": ("burpee", "push_up", "lunge"), "running": ("run",),
             "mobility": ("stretch", "lunge")}
COACHES = tuple(f"coach-{i:02d}" for i in range(1, 7))
COACHED_SHARE = 0.6
FEATURES = ("workout_player", "nutrition_tracker", "ai_coach", "progress_charts", "marketplace",
            "challenges", "wearable_sync", "meal_planner", "recovery")
MEALS = ("breakfast", "lunch", "dinner", "snack")
PROGRAM_CATEGORIES = ("strength", "hiit", "running", "yoga", "nutrition", "rehab")
PLAN_PRICES = {"monthly": 12.99, "annual": 99.0}
MODELS = {"workout": "2.3.1", "nutrition": "1.8.0", "recovery": "1.2.4"}
# Outcome probabilities (accepted, modified, rejected, ignored) per model: accuracy
# accepted / (accepted + modified + rejected) is 0.85 / 0.86 / 0.88 in normal times, far
# enough above the 0.75 alert threshold that a quiet night's small samples stay above it.
OUTCOMES = ("accepted", "modified", "rejected", "ignored")
OUTCOME_P = {"workout": (0.76, 0.07, 0.06, 0.11), "nutrition": (0.72, 0.07, 0.05, 0.16),
             "recovery": (0.78, 0.06, 0.05, 0.11)}
DEGRADED_P = (0.54, 0.18, 0.18, 0.10)  # accuracy 0.60
EXPERIMENT = ("workout-ranker-v2", ("control", "treatment"))
# Users with a recorded injury: the models' safety rails step in on most of their plans
# (kind safety_rail: the guard worked, shown on the AI dashboard; real violations page).
INJURED_SHARE = 0.08
# Share of users whose previous session (before the simulation) crashed (about 0.4 % of
# sessions crash). They reopen the app first, one every RELAUNCH_GAP seconds (at speed
# 1): spread out, as a handful of crashes is not an incident.
PENDING_CRASH_SHARE = 0.01
RELAUNCH_GAP = 45.0
SESSION_GAP = 180.0  # seconds of real time between a user's sessions at peak, speed 1
MAX_BATCH = 100


def outcome_probabilities(model: str, scenario: str) -> tuple[float, ...]:
    """P(accepted, modified, rejected, ignored) of a model's recommendation in a scenario."""
    if scenario == "ai-accuracy-drop" and model == DEGRADED_MODEL:
        return DEGRADED_P
    return OUTCOME_P[model]


def iso(ts: float | None = None) -> str:
    """RFC 3339 UTC timestamp."""
    return datetime.fromtimestamp(ts or time.time(), UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


@dataclass
class User:
    """One simulated user and the device they use."""

    key: str
    platform: str
    app_version: str
    os_version: str
    device: str
    can_track: bool
    can_profile: bool
    goal: str
    vendor: str | None
    onboarded: bool
    plan: str | None = None
    injured: bool = False
    # The app crashed in the user's last session before the simulation began: like real
    # crash reporters, the app sends the report when it is next opened.
    crash_report_pending: bool = False
    # Pseudonymous id of the user's coach (marketplace trainers), if they have one.
    coach: str | None = None
    goal_progress: float = 0.0
    api_id: int | None = None
    consent_date: str = field(default_factory=iso)

    def device_info(self) -> dict:
        """The seed's DeviceInfo."""
        return {"platform": self.platform, "appVersion": self.app_version,
                "osVersion": self.os_version, "deviceModel": self.device,
                "connectionType": "wifi"}

    def privacy(self) -> dict:
        """The seed's PrivacyFlags."""
        return {"canTrack": self.can_track, "canProfile": self.can_profile,
                "canShare": False, "consentDate": self.consent_date, "consentVersion": "2.1"}


def make_population(n: int, rng: random.Random) -> list[User]:
    """n users: platform mix, app versions, consent (2 % refuse tracking), wearables."""
    users = []
    names, weights = zip(*PLATFORMS, strict=True)
    for i in range(n):
        platform = rng.choices(names, weights)[0]
        users.append(User(
            key=f"u{i:06d}-{rng.getrandbits(32):08x}", platform=platform,
            app_version=rng.choice(APP_VERSIONS[platform]),
            os_version=rng.choice(OS_VERSIONS[platform]), device=rng.choice(DEVICES[platform]),
            can_track=rng.random() >= 0.02, can_profile=rng.random() >= 0.15,
            goal=rng.choice(GOALS), vendor=rng.choice(VENDORS), onboarded=rng.random() < 0.7,
            plan=rng.choice(("monthly", "annual")) if rng.random() < 0.25 else None,
            injured=rng.random() < INJURED_SHARE,
            coach=rng.choice(COACHES) if rng.random() < COACHED_SHARE else None))
    if users:
        for user in rng.sample(users, max(1, round(n * PENDING_CRASH_SHARE))):
            user.crash_report_pending = True
    return users


def activity(day_fraction: float) -> float:
    """The daily rhythm: 0.25 at night, peaks in the morning (7 h) and evening (18 h)."""
    hour = (day_fraction % 1.0) * 24
    morning = math.exp(-((hour - 7) ** 2) / 4)
    evening = math.exp(-((hour - 18.5) ** 2) / 6)
    return 0.25 + 0.75 * min(1.0, morning + evening)


class Sender:
    """Posts event batches to the intake from a background thread, retrying with backoff.

    A batch keeps its batchId through every retry, so the intake counts a batch it
    already acknowledged (but whose answer was lost) only once.
    """

    def __init__(self, url: str, retries: int = 5, backoff: float = 0.5, max_pending: int = 200):
        self.url = url
        self.retries = retries
        self.backoff = backoff
        self.pending: queue.Queue = queue.Queue(max_pending)
        self.http = requests.Session()
        self.stats = {"batches": 0, "events": 0, "retries": 0, "failed": 0, "dropped": 0,
                      "rejected": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)

    def start(self) -> Sender:
        """Start the background thread."""
        self._thread.start()
        return self

    def submit(self, events: list[dict], raw: bytes | None = None) -> None:
        """Queue events in batches of at most 100 (or one raw body, for the garbage client)."""
        if raw is not None:
            self._put(("raw", uuid.uuid4().hex, raw))
        for i in range(0, len(events), MAX_BATCH):
            self._put(("events", str(uuid.uuid4()), events[i:i + MAX_BATCH]))

    def _put(self, item) -> None:
        try:
            self.pending.put_nowait(item)
        except queue.Full:
            # Bounded memory while the intake is down: the oldest batch goes first.
            try:
                self.pending.get_nowait()
                self.pending.task_done()
                self.stats["dropped"] += 1
            except queue.Empty:
                pass
            self.pending.put_nowait(item)

    def body(self, batch_id: str, events: list[dict]) -> bytes:
        """The seed's AnalyticsEventRequest."""
        return json.dumps({"events": events, "batchId": batch_id,
                           "clientTimestamp": iso()}).encode()

    def post(self, batch_id: str, payload: bytes) -> dict | None:
        """Post one body with retries; the response JSON, or None after the last retry."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, 10.0)
            try:
                resp = self.http.post(self.url, data=payload, timeout=10,
                                      headers={"Content-Type": "application/json"})
            except requests.RequestException:
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                continue
            try:
                return resp.json()
            except ValueError:
                return {}
        self.stats["failed"] += 1
        log.warning("batch %s not delivered after %d attempts", batch_id, self.retries + 1)
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                kind, batch_id, data = self.pending.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                payload = data if kind == "raw" else self.body(batch_id, data)
                answer = self.post(batch_id, payload)
                self.stats["batches"] += 1
                if kind == "events":
                    self.stats["events"] += len(data)
                if isinstance(answer, dict):
                    self.stats["rejected"] += int(answer.get("rejected") or 0)
            finally:
                self.pending.task_done()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued batch was answered (or given up); True when all were."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.pending.unfinished_tasks == 0:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
        self._thread.join(5)


class Simulator:
    """The population, the clock of its daily rhythm, and what a session does."""

    def __init__(self, users: list[User], api_url: str, sender: Sender,
                 scenario: ScenarioWatch, speed: float = 1.0, day_length: float = 3600.0,
                 rng: random.Random | None = None, disk: DiskFiller | None = None,
                 workers: int = 4):
        self.users = users
        self.api_url = api_url.rstrip("/")
        self.sender = sender
        self.scenario = scenario
        self.speed = speed
        self.day_length = day_length
        self.rng = rng or random.Random()
        self.disk = disk
        self.started = time.time()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="session")
        self.backlog = 0
        self.max_backlog = workers * 4
        self._lock = threading.Lock()
        self._local = threading.local()
        self.stats = {"sessions": 0, "api_calls": 0, "api_errors": 0, "shed": 0, "garbage": 0,
                      "recommendations": 0}
        self.relaunch = [u for u in users if u.crash_report_pending]
        self.next_relaunch = 0.0

    # --- plumbing ---------------------------------------------------------------------

    def http(self) -> requests.Session:
        """This thread's HTTP session to the demo API."""
        sess = getattr(self._local, "http", None)
        if sess is None:
            sess = self._local.http = requests.Session()
        return sess

    def event(self, user: User, session_id: str, event_type: str, category: str, action: str,
              value: float | None = None, **props) -> dict:
        """One AnalyticsEvent in the seed's shape."""
        if user.coach:
            props.setdefault("coachId", user.coach)
        ev = {"id": str(uuid.uuid4()), "timestamp": iso(), "userId": user.key,
              "sessionId": session_id, "eventType": event_type, "category": category,
              "action": action, "properties": props, "deviceInfo": user.device_info(),
              "privacyFlags": user.privacy()}
        if value is not None:
            ev["value"] = value
        return ev

    def call(self, user: User, session_id: str, events: list, method: str, route: str,
             path: str, **kwargs) -> requests.Response | None:
        """Call the demo API and record the latency the app saw as an event."""
        start = time.perf_counter()
        try:
            resp = self.http().request(method, self.api_url + path, timeout=15, **kwargs)
        except requests.RequestException:
            resp = None
        elapsed = time.perf_counter() - start
        self.stats["api_calls"] += 1
        if resp is None or resp.status_code >= 500:
            self.stats["api_errors"] += 1
        events.append(self.event(user, session_id, "system_event", "api", "request",
                                 round(elapsed, 4), endpoint=route, method=method,
                                 status=resp.status_code if resp is not None else 0))
        return resp

    # --- what users do ----------------------------------------------------------------

    def ensure_registered(self, user: User, sid: str, events: list) -> bool:
        """Create the user in the demo API on first use."""
        if user.api_id is not None:
            return True
        resp = self.call(user, sid, events, "POST", "/api/users", "/api/users",
                         json={"platform": user.platform, "goal": user.goal})
        if resp is None or resp.status_code != 201:
            return False
        user.api_id = resp.json()["id"]
        return True

    def session(self, user: User) -> list[dict]:
        """One app session of one user: API calls and the events they produce."""
        rng = self.rng
        sid = str(uuid.uuid4())
        ev: list[dict] = []
        scenario = self.scenario.name
        ev.append(self.event(user, sid, "user_action", "session", "start"))
        if user.crash_report_pending:
            user.crash_report_pending = False
            ev.append(self.event(user, sid, "system_event", "app", "crash",
                                 screen="workout_player", reportedAtLaunch=True))
        if not user.onboarded:
            ev += self.onboarding(user, sid)
            if not user.onboarded:
                return ev
        if not self.ensure_registered(user, sid, ev):
            return ev
        uid = user.api_id
        if scenario == "crash-spike" and (user.platform, user.app_version) == CRASHING \
                and rng.random() < 0.5:
            ev.append(self.event(user, sid, "system_event", "app", "crash",
                                 screen=rng.choice(("workout_player", "home"))))
            return ev
        if rng.random() < 0.004:
            ev.append(self.event(user, sid, "system_event", "app", "crash", screen="home"))
            return ev
        self.call(user, sid, ev, "GET", "/api/users/{user_id}", f"/api/users/{uid}")
        for feature in rng.sample(FEATURES, rng.randint(1, 3)):
            ev.append(self.event(user, sid, "user_action", "feature", "use", feature=feature))
        roll = rng.random()
        if roll < 0.5:
            ev += self.workout(user, sid, uid)
        elif roll < 0.75:
            ev += self.nutrition(user, sid, uid)
        if rng.random() < 0.6:
            ev += self.recommendation(user, sid, uid, scenario)
        if user.vendor and rng.random() < 0.5:
            ok = rng.random() < 0.97
            ev.append(self.event(user, sid, "system_event", "wearable", "sync", vendor=user.vendor,
                                 result="success" if ok else "failure"))
        ev += self.business(user, sid, uid)
        if rng.random() < 0.02:
            ev.append(self.event(user, sid, "user_action", "goal", "achieve",
                                 goalCategory=user.goal))
        elif rng.random() < 0.2:
            # Progress towards the goal, as the app reports it after a workout or a weigh-in.
            user.goal_progress = min(0.99, user.goal_progress + rng.uniform(0.02, 0.12))
            ev.append(self.event(user, sid, "user_action", "goal", "progress",
                                 round(user.goal_progress, 3), goalCategory=user.goal))
        ev.append(self.event(user, sid, "user_action", "session", "end",
                             round(rng.lognormvariate(5.8, 0.6), 1)))
        return ev

    def onboarding(self, user: User, sid: str) -> list[dict]:
        """The onboarding funnel, with drop-off at each step."""
        ev = []
        for step, keep in (("app_open", 1.0), ("sign_up", 0.8), ("profile", 0.85),
                           ("goals", 0.9), ("first_workout", 0.75)):
            if self.rng.random() > keep:
                return ev
            ev.append(self.event(user, sid, "user_action", "funnel", "step",
                                 funnel="onboarding", step=step))
            if step == "sign_up":
                ev.append(self.event(user, sid, "user_action", "account", "sign_up"))
        user.onboarded = True
        return ev

    def workout(self, user: User, sid: str, uid: int) -> list[dict]:
        """List workouts (the latency-spike route), start one, maybe complete it."""
        rng = self.rng
        ev: list[dict] = []
        self.call(user, sid, ev, "GET", LATENCY_ROUTE, f"/api/users/{uid}/workouts")
        kind = rng.choice(WORKOUT_TYPES)
        resp = self.call(user, sid, ev, "POST", "/api/users/{user_id}/workouts",
                         f"/api/users/{uid}/workouts", json={"type": kind})
        ev.append(self.event(user, sid, "user_action", "workout", "start", workoutType=kind))
        if resp is None or resp.status_code != 201 or rng.random() > 0.8:
            return ev
        for exercise in rng.sample(EXERCISES[kind], min(2, len(EXERCISES[kind]))):
            ev.append(self.event(user, sid, "user_action", "workout", "exercise_complete",
                                 exerciseType=exercise))
            if rng.random() < 0.003:
                ev.append(self.event(user, sid, "user_action", "workout", "injury_report",
                                     exerciseType=exercise))
        wid = resp.json()["id"]
        self.call(user, sid, ev, "POST", "/api/workouts/{workout_id}/complete",
                  f"/api/workouts/{wid}/complete")
        ev.append(self.event(user, sid, "user_action", "workout", "complete", workoutType=kind,
                             durationSeconds=rng.randint(600, 3600)))
        return ev

    def nutrition(self, user: User, sid: str, uid: int) -> list[dict]:
        """Log a meal and look at the day."""
        ev: list[dict] = []
        meal = self.rng.choice(MEALS)
        self.call(user, sid, ev, "POST", "/api/users/{user_id}/nutrition",
                  f"/api/users/{uid}/nutrition",
                  json={"meal": meal, "calories": self.rng.randint(150, 900)})
        self.call(user, sid, ev, "GET", "/api/users/{user_id}/nutrition",
                  f"/api/users/{uid}/nutrition")
        ev.append(self.event(user, sid, "user_action", "nutrition", "log", meal=meal))
        return ev

    def recommendation(self, user: User, sid: str, uid: int, scenario: str) -> list[dict]:
        """Ask one of the three models; react with that model's outcome probabilities."""
        rng = self.rng
        ev: list[dict] = []
        model = rng.choice(tuple(MODELS))
        resp = self.call(user, sid, ev, "GET", "/api/recommendations/{model}",
                         f"/api/recommendations/{model}", params={"user_id": uid})
        if resp is None or resp.status_code != 200:
            return ev
        self.stats["recommendations"] += 1
        version = resp.json().get("modelVersion", MODELS[model])
        outcome = rng.choices(OUTCOMES, outcome_probabilities(model, scenario))[0]
        ev.append(self.event(user, sid, "ai_interaction", "recommendation", outcome,
                             model=model, modelVersion=version))
        if outcome != "ignored" and rng.random() < 0.3:
            base = {"accepted": 4.3, "modified": 3.3, "rejected": 1.8}[outcome]
            score = max(1, min(5, round(rng.gauss(base, 0.7))))
            ev.append(self.event(user, sid, "ai_interaction", "recommendation", "feedback",
                                 score, model=model, modelVersion=version))
        # The safety rail steps in on most plans for an injured user, rarely for anyone else.
        if (user.injured and rng.random() < 0.8) or rng.random() < 0.003:
            ev.append(self.event(user, sid, "ai_interaction", "safety", "flag", model=model,
                                 kind="safety_rail"))
        if model == "workout":
            name, variants = EXPERIMENT
            variant = variants[int(user.key[-8:], 16) % 2]
            ev.append(self.event(user, sid, "ai_interaction", "experiment", "exposure",
                                 experiment=name, variant=variant))
            if outcome == "accepted" and rng.random() < (0.5 if variant == "control" else 0.58):
                ev.append(self.event(user, sid, "ai_interaction", "experiment", "conversion",
                                     experiment=name, variant=variant, metric="workout_started"))
        return ev

    def business(self, user: User, sid: str, uid: int) -> list[dict]:
        """Subscription funnel, renewals, cancellations and marketplace purchases."""
        rng = self.rng
        ev: list[dict] = []
        if user.plan and rng.random() < 0.01:
            ev.append(self.event(user, sid, "business_event", "subscription", "cancel",
                                 plan=user.plan))
            user.plan = None
        elif user.plan is None and rng.random() < 0.08:
            ev.append(self.event(user, sid, "user_action", "funnel", "step",
                                 funnel="subscription", step="paywall_view"))
            if rng.random() < 0.4:
                plan = rng.choice(tuple(PLAN_PRICES))
                ev.append(self.event(user, sid, "user_action", "funnel", "step",
                                     funnel="subscription", step="plan_select"))
                ev.append(self.event(user, sid, "user_action", "funnel", "step",
                                     funnel="subscription", step="checkout"))
                resp = self.call(user, sid, ev, "POST", "/api/purchases", "/api/purchases",
                                 json={"user_id": uid, "kind": "subscription", "item": plan})
                if resp is not None and resp.status_code == 201:
                    user.plan = plan
                    ev.append(self.event(user, sid, "user_action", "funnel", "step",
                                         funnel="subscription", step="subscribed"))
                    ev.append(self.event(user, sid, "business_event", "subscription", "start",
                                         PLAN_PRICES[plan], plan=plan, currency="USD"))
        if rng.random() < 0.03:
            category = rng.choice(PROGRAM_CATEGORIES)
            resp = self.call(user, sid, ev, "POST", "/api/purchases", "/api/purchases",
                             json={"user_id": uid, "kind": "program", "item": category})
            if resp is not None and resp.status_code == 201:
                price = resp.json().get("amount", 29.0)
                ev.append(self.event(user, sid, "business_event", "marketplace", "purchase",
                                     price, programCategory=category, currency="USD",
                                     trainerCommission=round(price * 0.7, 2)))
        return ev

    # --- the broken client of ingest-garbage --------------------------------------------

    def garbage(self, n: int) -> list[dict]:
        """n malformed events, each wrong in a different way a buggy client gets it wrong."""
        rng = self.rng
        out = []
        for _ in range(n):
            user = rng.choice(self.users)
            ev = self.event(user, "garbage", "user_action", "workout", "start",
                            workoutType="strength")
            flaw = rng.randrange(5)
            if flaw == 0:
                del ev["deviceInfo"]
            elif flaw == 1:
                ev["eventType"] = "click"
            elif flaw == 2:
                ev["timestamp"] = "yesterday"
            elif flaw == 3:
                ev["deviceInfo"]["platform"] = "blackberry"
            else:
                ev["properties"] = "workoutType=strength"
            out.append(ev)
        self.stats["garbage"] += n
        return out

    # --- the clock ----------------------------------------------------------------------

    def day_fraction(self, now: float | None = None) -> float:
        """Where in its simulated day the population is."""
        return ((now or time.time()) - self.started) / self.day_length + 0.3

    def sessions_due(self, seconds: float) -> int:
        """How many sessions start in the next `seconds` (Poisson, daily rhythm, speed)."""
        lam = len(self.users) / SESSION_GAP * activity(self.day_fraction()) * self.speed * seconds
        # Knuth's method is fine for the small means of one tick.
        limit, k, p = math.exp(-min(lam, 50)), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k if lam <= 50 else int(round(lam))
            k += 1

    def _run_session(self, user: User) -> None:
        try:
            events = self.session(user)
            self.stats["sessions"] += 1
            # Users without tracking consent send too: the intake must count and drop them.
            self.sender.submit(events)
        except Exception:  # noqa: BLE001 - one bad session never stops the population
            log.exception("session of %s failed", user.platform)
        finally:
            with self._lock:
                self.backlog -= 1

    def _start_session(self, user: User) -> None:
        with self._lock:
            if self.backlog >= self.max_backlog:
                self.stats["shed"] += 1
                return
            self.backlog += 1
        self.pool.submit(self._run_session, user)

    def tick(self, seconds: float) -> None:
        """Advance the simulation by `seconds` of real time."""
        scenario = self.scenario.name
        now = time.monotonic()
        if self.relaunch and now >= self.next_relaunch:
            # A user whose app crashed reopens it (and the crash report goes out).
            self.next_relaunch = now + RELAUNCH_GAP / self.speed
            self._start_session(self.relaunch.pop())
        for _ in range(self.sessions_due(seconds)):
            self._start_session(self.rng.choice(self.users))
        if scenario == "ingest-garbage":
            n = max(5, int(len(self.users) / SESSION_GAP * 20 * self.speed * seconds))
            self.sender.submit(self.garbage(n))
            if self.rng.random() < 0.2:
                self.sender.submit([], raw=b'{"events": [{"id": "1", "timestamp": ')
        if self.disk is not None:
            if scenario == "disk-filling":
                if self.disk.mode == "none":
                    # Mounted on first use only: most runs never need the small disk.
                    log.info("disk-filling: demo disk mode %s", self.disk.prepare())
                self.disk.step(seconds * self.speed)
            elif self.disk.mode != "none":
                self.disk.clear()

    def run(self, stop: threading.Event, tick: float = 1.0, duration: float | None = None):
        """Tick until stop is set (or duration elapsed)."""
        end = time.monotonic() + duration if duration else None
        last = time.monotonic()
        last_report = last
        while not stop.is_set() and (end is None or time.monotonic() < end):
            stop.wait(tick)
            now = time.monotonic()
            self.tick(now - last)
            last = now
            if now - last_report >= 60:
                last_report = now
                log.info("scenario=%s activity=%.2f %s %s", self.scenario.name,
                         activity(self.day_fraction()), self.stats, self.sender.stats)

    def close(self) -> None:
        """Stop the session threads."""
        self.pool.shutdown(wait=True, cancel_futures=True)


def urls(cfg: Config) -> tuple[str, str]:
    """(intake events URL, demo API base URL) of a configuration."""
    intake = cfg.demo.intake_url or f"http://{cfg.exporters.events.listen}/api/analytics/events"
    return intake, cfg.demo.api_url or f"http://{cfg.demo.listen}"


def ai_url(cfg: Config) -> str:
    """The AI exporter's base URL the model-ops jobs post to."""
    return cfg.demo.ai_url or f"http://{cfg.exporters.ai.listen}"


def serve_in_thread(server) -> None:
    """Run an HTTP server (the sink or the payment provider) beside the simulator."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                     daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """Run the simulator until SIGTERM."""
    parser = argparse.ArgumentParser(prog=f"python -m {COMPONENT}")
    parser.add_argument("--config")
    parser.add_argument("--users", type=int, help="population size (default: demo.users)")
    parser.add_argument("--speed", type=float, help="rate multiplier (default: demo.speed)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--with-sink", action="store_true",
                        help="also serve the demo channel sink (one container in compose)")
    parser.add_argument("--with-payments", action="store_true",
                        help="also serve the fake payment provider (one container in compose)")
    args = parser.parse_args(argv)
    cfg = load_or_exit(args.config)
    setup(COMPONENT, cfg.log_level)
    if args.with_sink:
        from demo import sink

        serve_in_thread(sink.make_server(cfg.demo.sink_listen, sink.Sink(cfg.data_dir)))
    if args.with_payments:
        from demo import payments

        serve_in_thread(payments.make_server(cfg.demo.payments_listen, cfg.data_dir))
        serve_in_thread(payments.make_server(cfg.demo.payments_tls_listen, cfg.data_dir,
                                             tls=True))
    rng = random.Random(cfg.demo.seed)
    users = make_population(args.users or cfg.demo.users, rng)
    intake, api = urls(cfg)
    sender = Sender(intake).start()
    disk = DiskFiller(cfg.data_dir, cfg.demo.disk_size_mb,
                      parse_duration(cfg.demo.disk_fill))
    sim = Simulator(users, api, sender, ScenarioWatch(cfg.data_dir),
                    speed=args.speed or cfg.demo.speed,
                    day_length=parse_duration(cfg.demo.day_length), rng=rng, disk=disk)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda s, f: stop.set())
    # The back office: evaluations, drift monitoring and cost booking per simulated hour.
    ModelOps(ai_url(cfg), sender, sim.scenario, sim.stats, period=sim.day_length / 24,
             rng=random.Random(rng.random()),
             token=token_for(cfg.bridge.tokens, "ai:write")).start(stop)
    log.info("simulating %d users (speed %s, day %s) -> %s and %s", len(users), sim.speed,
             cfg.demo.day_length, api, intake)
    try:
        sim.run(stop, duration=args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        sim.close()
        sender.flush(5)
        sender.stop()
        disk.close()
        log.info("stopped: %s %s", sim.stats, sender.stats)


if __name__ == "__main__":
    main()
