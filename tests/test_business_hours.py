"""Business hours: the schedule, what a customer handed off after hours is told, and the config's errors."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.app import App, build_app
from bot.config import BusinessHoursSettings, ConfigError, load_settings
from bot.desk.hours import BusinessHours
from bot.domain.types import Inbound
from bot.prompts.texts import load_texts
from tests.conftest import REPO, Recorder, make_settings

MSK = ZoneInfo("Europe/Moscow")  # UTC+3 all year: no DST since 2014
TEXTS = load_texts(REPO / "prompts" / "texts.yaml")
_ids = itertools.count(1)


def office(**overrides: object) -> BusinessHours:
    spec: dict[str, object] = {
        "timezone": "Europe/Moscow",
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "open": "09:00",
        "close": "18:00",
    }
    return BusinessHours(BusinessHoursSettings.model_validate(spec | overrides))


def msk(day: int, hour: int, minute: int = 0, second: int = 0, month: int = 3) -> datetime:
    """A moment in March 2026, Moscow time; 2 March 2026 is a Monday."""
    return datetime(2026, month, day, hour, minute, second, tzinfo=MSK)


# -- the schedule -------------------------------------------------------------------------------------


def test_no_hours_means_always_open() -> None:
    hours = BusinessHours(BusinessHoursSettings())
    sunday_night = msk(8, 3)
    assert hours.always_open and hours.is_open(sunday_night) and hours.next_open(sunday_night) == sunday_night
    assert hours.notice(TEXTS, "en", sunday_night) is None


@pytest.mark.parametrize(
    ("now", "is_open", "back"),
    [
        (msk(2, 9), True, msk(2, 9)),  # opening minute
        (msk(6, 17, 59, 59), True, msk(6, 17, 59, 59)),  # last second of Friday
        (msk(6, 18), False, msk(9, 9)),  # Friday closing time: back on Monday
        (msk(7, 12), False, msk(9, 9)),  # Saturday
        (msk(8, 23, 59, 59), False, msk(9, 9)),  # Sunday, a second before midnight
        (msk(9, 0), False, msk(9, 9)),  # Monday midnight: the same morning
        (msk(9, 8, 59), False, msk(9, 9)),  # a minute before opening
        (msk(10, 23, 30), False, msk(11, 9)),  # Tuesday night: Wednesday morning
    ],
)
def test_open_and_next_open_around_midnight_and_weekends(now: datetime, is_open: bool, back: datetime) -> None:
    hours = office()
    assert hours.is_open(now) is is_open
    assert hours.next_open(now) == back


def test_moments_in_another_zone_are_read_on_the_office_clock() -> None:
    hours = office()
    monday_late_utc = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # already Tuesday 01:30 in Moscow
    assert hours.next_open(monday_late_utc) == msk(3, 9)
    assert hours.next_open(monday_late_utc).utcoffset() == timedelta(hours=3)
    assert hours.is_open(datetime(2026, 3, 2, 6, 0, tzinfo=UTC))  # 09:00 in Moscow
    assert not hours.is_open(datetime(2026, 3, 2, 8, 0, tzinfo=timezone(timedelta(hours=5))))  # 06:00 Moscow


def test_holidays_are_skipped() -> None:
    hours = office(holidays=[date(2026, 3, 9)])  # a Monday off
    assert not hours.is_open(msk(9, 12))
    assert hours.next_open(msk(6, 19)) == msk(10, 9)
    new_year = office(holidays=[date(2026, 1, d) for d in range(1, 9)])
    assert new_year.next_open(datetime(2025, 12, 31, 18, 30, tzinfo=MSK)) == msk(9, 9, month=1)  # Friday 9 Jan


def test_24_00_closes_at_midnight_and_every_day_can_be_a_working_day() -> None:
    hours = office(open="00:00", close="24:00", days=["sat", "sun"])
    assert hours.is_open(msk(7, 23, 59, 59)) and hours.is_open(msk(8, 0))
    assert not hours.is_open(msk(9, 0)) and hours.next_open(msk(9, 0)) == msk(14, 0)


def test_a_zone_with_dst_keeps_the_local_opening_time() -> None:
    berlin = office(timezone="Europe/Berlin")  # clocks go forward on Sunday 29 March 2026
    before = berlin.next_open(datetime(2026, 3, 26, 20, 0, tzinfo=UTC))
    after = berlin.next_open(datetime(2026, 3, 28, 12, 0, tzinfo=UTC))
    assert before == datetime(2026, 3, 27, 8, 0, tzinfo=UTC)  # 09:00 CET
    assert after == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # 09:00 CEST
    assert (before.hour, after.hour) == (9, 9)


# -- what the customer is told ------------------------------------------------------------------------


def test_the_notice_says_when_operators_are_back_in_the_customers_language() -> None:
    hours = office()
    assert hours.notice(TEXTS, "en", msk(3, 12)) is None  # open
    friday_night = hours.notice(TEXTS, "en", msk(6, 19))
    assert friday_night is not None and "from 09:00 on Monday (Moscow time, UTC+3)" in friday_night
    assert "offline" in friday_night
    assert "from 09:00 today" in (hours.notice(TEXTS, "en", msk(3, 7)) or "")
    assert "from 09:00 tomorrow" in (hours.notice(TEXTS, "en", msk(3, 21)) or "")
    russian = hours.notice(TEXTS, "ru", msk(6, 19))
    assert russian is not None and "в понедельник с 09:00 (по времени UTC+3)" in russian
    tuesday = office(holidays=[date(2026, 3, 9)]).notice(TEXTS, "ru", msk(7, 10))  # the Monday is a holiday
    assert tuesday is not None and "во вторник с 09:00" in tuesday


def test_a_wait_longer_than_a_week_names_the_date() -> None:
    hours = office(holidays=[date(2026, 1, d) for d in range(1, 12)])
    notice = hours.notice(TEXTS, "en", datetime(2025, 12, 31, 20, 0, tzinfo=MSK))
    assert notice is not None and "from 09:00 on Monday 2026-01-12" in notice


# -- the desk -----------------------------------------------------------------------------------------


@pytest.fixture
async def office_app(tmp_path: Path) -> AsyncIterator[App]:
    settings = make_settings(tmp_path)
    settings.business_hours = BusinessHoursSettings(
        timezone="Europe/Moscow", days=["mon", "tue", "wed", "thu", "fri"], open="09:00", close="18:00"
    )
    app = await build_app(settings)
    yield app
    await app.close()


async def handed_off(app: App, text: str, now: datetime) -> tuple[Recorder, Recorder]:
    customers, queue = Recorder(), Recorder()
    app.outbox.register("test", customers)
    app.outbox.register(app.desk.queue_channel, queue)
    app.desk.clock = lambda: now
    decision = await app.desk.receive(Inbound("test", f"h{next(_ids)}", f"hm{next(_ids)}", text, name="Anna"))
    await app.outbox.deliver_due()
    assert decision.action == "handoff"
    return customers, queue


async def test_after_hours_the_customer_hears_when_and_operators_still_get_the_card(office_app: App) -> None:
    customers, queue = await handed_off(office_app, "I want to talk to a person", msk(7, 11))  # Saturday
    assert customers.texts() == [
        TEXTS.render("handoff_offline", "en", time="09:00", day="on Monday", zone="Moscow", utc_offset="UTC+3")
    ]
    assert [d.kind for d in queue.sent] == ["handoff"]  # nothing waits for Monday
    assert queue.sent[0].payload["reasons"] == ["asked_for_human"]


async def test_after_hours_in_russian(office_app: App) -> None:
    customers, _ = await handed_off(office_app, "Хочу поговорить с живым человеком", msk(5, 22))  # Thursday night
    assert len(customers.texts()) == 1 and "завтра с 09:00" in customers.texts()[0]


async def test_during_hours_the_usual_notice(office_app: App) -> None:
    customers, queue = await handed_off(office_app, "I want to talk to a person", msk(4, 11))  # Wednesday
    assert customers.texts() == [TEXTS.render("handoff", "en")] and len(queue.sent) == 1


# -- config -------------------------------------------------------------------------------------------


def load(tmp_path: Path, text: str) -> BusinessHoursSettings:
    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    return load_settings(tmp_path / "config.yaml", environ={}).business_hours


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("timezone: Mars/Olympus", "business_hours.timezone", "an IANA time zone name"),
        ("timezone: ../etc/passwd", "business_hours.timezone", "an IANA time zone name"),
        ("open: '9am'\n  close: '18:00'", "business_hours.open", "a time as HH:MM"),
        ("open: '09:00'\n  close: '18:60'", "business_hours.close", "a time as HH:MM"),
        ("open: 25:00\n  close: '18:00'", "business_hours.open", "YAML read 25:00 as the number 1500"),
        ("open: '18:00'\n  close: '09:00'", "business_hours.close", "a time after open (18:00)"),
        ("open: '09:00'\n  close: '09:00'", "business_hours.close", "a time after open (09:00)"),
        ("open: '09:00'", "business_hours.close", "both open and close, or neither"),
        ("days: [mon, funday]\n  open: '09:00'\n  close: '18:00'", "business_hours.days.1", "'mon', 'tue'"),
        ("days: []\n  open: '09:00'\n  close: '18:00'", "business_hours.days", "at least one of mon"),
        ("holidays: [soon]", "business_hours.holidays.0", "date"),
    ],
)
def test_bad_business_hours_name_the_key_the_value_and_what_is_expected(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"business_hours:\n  {text}\n")
    line = next(line for line in str(caught.value).splitlines() if line.strip().startswith(key + ":"))
    assert "got" in line and expected in line


def test_unquoted_times_and_dates_from_yaml_are_read_as_meant(tmp_path: Path) -> None:
    # YAML 1.1 reads 18:00 as the number 1080 and 2026-01-01 as a date.
    hours = load(tmp_path, "business_hours:\n  open: 9:30\n  close: 18:00\n  holidays: [2026-01-01]\n")
    assert (hours.open, hours.close, hours.holidays) == ("09:30", "18:00", [date(2026, 1, 1)])
    assert hours.enabled and load(tmp_path, "business_hours:\n").enabled is False


def test_an_impossible_date_in_yaml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML: month must be in 1\.\.12"):
        load(tmp_path, "business_hours:\n  holidays: [2026-13-01]\n")


def test_the_zone_database_is_available() -> None:
    # zoneinfo needs the system's zone files or the tzdata package (a dependency for slim images).
    assert ZoneInfo("Europe/Moscow").utcoffset(datetime(2026, 1, 1)) == timedelta(hours=3)
