"""A synthetic population whose true distinct counts, retention and funnels are known."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday
TODAY = NOW.date()
PLATFORMS = ("ios", "android", "web")
ONBOARDING = ("app_open", "sign_up", "profile", "goals", "first_workout")


def event(user: str | None, when: datetime, category: str, action: str, *,
          platform: str = "ios", etype: str = "user_action", props: dict | None = None,
          value: float | None = None, can_profile: bool = True, consent: str | None = None,
          event_id: str | None = None) -> dict:
    """One valid AnalyticsEvent."""
    e = {"id": event_id or str(uuid.uuid4()),
         "timestamp": when.isoformat().replace("+00:00", "Z"),
         "sessionId": "s-1", "eventType": etype, "category": category, "action": action,
         "properties": props or {},
         "deviceInfo": {"platform": platform, "appVersion": "4.12.0", "osVersion": "18.1"},
         "privacyFlags": {"canTrack": True, "canProfile": can_profile, "canShare": False,
                          "consentDate": consent or "2026-01-03T09:00:00Z",
                          "consentVersion": "2.1"}}
    if user is not None:
        e["userId"] = user
    if value is not None:
        e["value"] = value
    return e


@dataclass
class User:
    """What a synthetic user truly did."""

    name: str
    active: dict[date, set[str]] = field(default_factory=dict)
    funnel: dict[int, datetime] = field(default_factory=dict)
    coach: str | None = None
    plan: str | None = None


def at(day: date, seconds: int = 36000) -> datetime:
    """A moment of a day."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=seconds)


def population(n: int = 120, seed: int = 7) -> tuple[list[User], list[dict]]:
    """Users and the events that describe them (shuffled: order must not matter)."""
    rng = random.Random(seed)
    users, events = [], []
    for i in range(n):
        u = User(f"user-{i:04d}@example.com" if i % 2 else f"u-{i:04d}")
        first = TODAY - timedelta(days=rng.randrange(0, 84))
        home = rng.sample(PLATFORMS, rng.choice((1, 1, 2)))
        end = min(TODAY, first + timedelta(days=rng.randrange(0, 84)))
        if i % 11 == 0:
            end = TODAY  # every day up to today: long current streaks
        day = first
        while day <= end:
            if day == first or i % 11 == 0 or rng.random() < 0.2:  # some users every day
                u.active[day] = {rng.choice(home)}
            day += timedelta(days=1)
        for d, plats in u.active.items():
            for p in plats:
                events.append(event(u.name, at(d, rng.randrange(0, 86000)), "session", "start",
                                    platform=p))
        if i % 10 < 8:
            u.coach = "coach-a" if i % 2 else "coach-b"
        if i % 40 == 0:
            u.coach = "coach-small"  # 3 clients: under k, never exported
        if u.coach:
            events.append(event(u.name, at(first, 100), "coach", "assign", etype="system_event",
                                props={"coachId": u.coach}))
        if rng.random() < 0.6:
            start = NOW - timedelta(days=rng.randrange(0, 25), seconds=rng.randrange(0, 40000))
            step_time = start
            for s in range(len(ONBOARDING)):
                if s and rng.random() > 0.75:
                    break
                step_time = step_time + timedelta(seconds=rng.randrange(10, 600)) if s else start
                if step_time > NOW:
                    break
                u.funnel[s] = step_time
                u.active.setdefault(step_time.date(), set()).add(home[0])
                events.append(event(u.name, step_time, "funnel", "step", platform=home[0],
                                    props={"funnel": "onboarding", "step": ONBOARDING[s]}))
        if i % 3 == 0:
            u.plan = "monthly"
            events.append(event(u.name, at(first, 200), "subscription", "start",
                                etype="business_event", props={"plan": "monthly"}))
        users.append(u)
    rng.shuffle(events)
    return users, events
