"""TEMPORARY stand-in for hermes_cron.schedules until the real module lands."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Optional

import attrs

import hermes_cron.schedules as real
import hermes_cron.store as store_mod
from hermes_cron.errors import ScheduleError
from hermes_cron.timeutil import UTC, get_zone, parse_iso, to_iso


@attrs.frozen
class Schedule:
    kind: str
    text: str
    tz: str
    expr: Optional[str] = None
    seconds: Optional[int] = None
    anchor: Optional[datetime] = None
    at: Optional[datetime] = None

    @property
    def recurring(self) -> bool:
        return self.kind != "once"

    def next_after(self, after):
        if self.kind == "once":
            return self.at if self.at > after else None
        if self.kind == "interval":
            k = int((after - self.anchor).total_seconds() // self.seconds) + 1
            k = max(k, 1)
            return self.anchor + timedelta(seconds=k * self.seconds)
        from cronsim import CronSim

        z = get_zone(self.tz)
        return next(CronSim(self.expr, after.astimezone(z))).astimezone(UTC)

    def latest_at_or_before(self, when):
        if self.kind == "once":
            return self.at if self.at <= when else None
        if self.kind == "interval":
            k = int((when - self.anchor).total_seconds() // self.seconds)
            if k < 1:
                return None
            return self.anchor + timedelta(seconds=k * self.seconds)
        from cronsim import CronSim

        z = get_zone(self.tz)
        return next(
            CronSim(self.expr, (when + timedelta(seconds=1)).astimezone(z), reverse=True)
        ).astimezone(UTC)

    def to_record(self):
        rec: dict = {"kind": self.kind, "text": self.text, "tz": self.tz}
        if self.kind == "cron":
            rec["expr"] = self.expr
        if self.kind == "interval":
            rec["seconds"] = self.seconds
            rec["anchor"] = to_iso(self.anchor)
        if self.kind == "once":
            rec["at"] = to_iso(self.at)
        return rec

    @classmethod
    def from_record(cls, record: Any):
        if not isinstance(record, dict):
            raise ScheduleError("schedule record must be an object")
        kind = record.get("kind")
        if kind not in ("cron", "interval", "once"):
            raise ScheduleError(f"unknown schedule kind {kind!r}")
        try:
            if kind == "interval":
                return cls(
                    kind,
                    record["text"],
                    record["tz"],
                    seconds=int(record["seconds"]),
                    anchor=parse_iso(record["anchor"]),
                )
            if kind == "once":
                return cls(kind, record["text"], record["tz"], at=parse_iso(record["at"]))
            return cls(kind, record["text"], record["tz"], expr=record["expr"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ScheduleError(f"bad schedule record: {exc}") from None


def parse_schedule(text, *, tz=None, now):
    tz = tz or "UTC"
    m = re.fullmatch(r"every (\d+)([smhd])", text)
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if m:
        return Schedule("interval", text, tz, seconds=int(m[1]) * unit[m[2]], anchor=now)
    m = re.fullmatch(r"\+?(\d+)([smhd])", text)
    if m:
        return Schedule("once", text, tz, at=now + timedelta(seconds=int(m[1]) * unit[m[2]]))
    if len(text.split()) == 5:
        return Schedule("cron", text, tz, expr=text)
    try:
        return Schedule("once", text, tz, at=parse_iso(text))
    except ValueError:
        raise ScheduleError(f"bad schedule {text!r}") from None


def install_if_needed() -> None:
    try:
        real.parse_schedule("every 1m", now=datetime(2026, 1, 1, tzinfo=UTC))
        return
    except NotImplementedError:
        pass
    real.Schedule = Schedule
    real.parse_schedule = parse_schedule
    store_mod.Schedule = Schedule
