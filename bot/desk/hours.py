"""Business hours: when operators work, and when they are back if they are not.

A handoff outside the hours still goes to the operator queue (nothing waits on a clock); only what the
customer is told changes: not "a person will reply shortly" but "we'll reply from 09:00 on Monday".
Times are wall-clock times in the configured zone, so a DST change moves them with the local clock.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.config import DAYS, BusinessHoursSettings
from bot.prompts.texts import Texts


def _clock(value: str) -> time | None:
    """HH:MM as a time; 24:00 (the end of the day) as None."""
    hours, minutes = (int(part) for part in value.split(":"))
    return None if hours == 24 else time(hours, minutes)


class BusinessHours:
    def __init__(self, settings: BusinessHoursSettings) -> None:
        self.always_open = not settings.enabled
        self.zone = ZoneInfo(settings.timezone)
        self._days = {DAYS.index(day) for day in settings.days}
        self._holidays = set(settings.holidays)
        # open is before close, so never 24:00
        self._open = (_clock(settings.open) or time(0)) if settings.enabled else time(0)
        self._close = _clock(settings.close) if settings.enabled else None

    def _working(self, day: date) -> bool:
        return day.weekday() in self._days and day not in self._holidays

    def is_open(self, now: datetime) -> bool:
        if self.always_open:
            return True
        local = now.astimezone(self.zone)
        after_open = local.time() >= self._open
        before_close = self._close is None or local.time() < self._close
        return self._working(local.date()) and after_open and before_close

    def next_open(self, now: datetime) -> datetime:
        """`now` when operators are at work, else the moment they start next (in the schedule's zone)."""
        if self.is_open(now):
            return now
        local = now.astimezone(self.zone)
        # Every week has a working weekday and each holiday removes one day: this many days always reach one.
        for ahead in range(7 * (len(self._holidays) + 2)):
            day = local.date() + timedelta(days=ahead)
            if not self._working(day):
                continue
            opening = datetime.combine(day, self._open, tzinfo=self.zone)
            if opening > local:
                # A wall-clock time skipped by DST (e.g. 02:30) comes out as the same instant it maps to.
                return opening.astimezone(ZoneInfo("UTC")).astimezone(self.zone)
        raise AssertionError("unreachable: a working day is always found")

    def notice(self, texts: Texts, language: str, now: datetime) -> str | None:
        """What a customer handed off now is told about the wait; None during business hours."""
        if self.is_open(now):
            return None
        opening = self.next_open(now)
        today = now.astimezone(self.zone).date()
        ahead = (opening.date() - today).days
        if ahead == 0:
            day = texts.render("offline_today", language)
        elif ahead == 1:
            day = texts.render("offline_tomorrow", language)
        else:
            names = texts.render("offline_weekdays", language).split("|")
            day = names[opening.weekday()].strip() if len(names) == 7 else opening.strftime("%A")
            if ahead > 6:  # a weekday name alone would point to the wrong week
                day += f" {opening.date().isoformat()}"
        return texts.render(
            "handoff_offline",
            language,
            time=opening.strftime("%H:%M"),
            day=day,
            zone=_city(self.zone.key),
            utc_offset=_offset(opening),
        )


def _city(key: str) -> str:
    """Europe/Moscow -> Moscow, America/New_York -> New York, UTC -> UTC."""
    return key.rsplit("/", 1)[-1].replace("_", " ")


def _offset(moment: datetime) -> str:
    """UTC+3, UTC-4, UTC+5:30, UTC+0."""
    delta = moment.utcoffset() or timedelta(0)
    minutes = int(delta.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")
