"""Warm-up pacing (mailhost.warmup) as Postfix's main.cf, master.cf and transport table carry
it, week by week; the read-back from a real postconf is a lab test in tests/test_mail_lab.py."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sample import sample_settings
from test_hostile_input import settings_lines

from mailhost.host import postfix
from mailhost.settings import SettingsError
from mailhost.warmup import PROVIDERS, pace_on, transport_map

START = date(2026, 11, 2)


@pytest.mark.parametrize(("days", "week", "delay"), [
    (-1, 0, 0), (0, 1, 60), (6, 1, 60), (7, 2, 30), (14, 3, 15), (27, 4, 5), (28, 0, 0),
])
def test_the_pace_halves_each_week_and_ends_after_four(days, week, delay):
    pace = pace_on(START, START + timedelta(days=days))
    assert (pace.week, pace.delay_seconds) == (week, delay)


def test_no_warmup_without_a_start():
    assert not pace_on(None, START).active
    assert transport_map(pace_on(None, START)) == ""


def test_week_two_paces_each_provider_through_its_own_transport():
    settings = sample_settings(warmup_start=START.isoformat())
    day = START + timedelta(days=8)
    main = dict(line.split(" = ", 1) for line in
                settings_lines(postfix.rendered("main.cf", settings, day)) if " = " in line)
    assert main["transport_maps"] == "hash:/etc/postfix/transport"
    for name in PROVIDERS:
        assert main[f"{name}_destination_concurrency_limit"] == "1"
        assert main[f"{name}_destination_rate_delay"] == "30s"
    master = postfix.rendered("master.cf", settings, day)
    assert [line.split()[0] for line in master.splitlines() if " smtp" in line
            and line.startswith("warmup")] == list(PROVIDERS)
    table = transport_map(pace_on(settings.warmup_start, day))
    assert "gmail.com warmupgoogle:\n" in table and "hotmail.com warmupmicrosoft:\n" in table


def test_after_the_warmup_nothing_of_it_is_left_but_an_empty_table():
    settings = sample_settings(warmup_start=START.isoformat())
    day = START + timedelta(days=40)
    main = postfix.rendered("main.cf", settings, day)
    assert "warmupgoogle" not in main and "transport_maps = hash:/etc/postfix/transport" in main
    assert "warmupgoogle" not in postfix.rendered("master.cf", settings, day)
    assert transport_map(pace_on(settings.warmup_start, day)) == ""
    assert postfix.rendered("main.cf", sample_settings(), day) == main  # as if never set


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-11-02\ndefault_destination_rate_delay = 0", "expected a day such as 2026-11-25"),
    (20261102, "expected a day such as 2026-11-25"),
    ("2026-02-30", "expected a day such as 2026-11-25"),
])
def test_bad_warmup_days_are_refused_with_one_line(value, expected):
    with pytest.raises(SettingsError) as refused:
        sample_settings(warmup_start=value)
    assert expected in str(refused.value) and "\n" not in str(refused.value)


def test_chasquid_cannot_pace_and_says_so():
    with pytest.raises(SettingsError, match="no per-destination rate or concurrency setting"):
        sample_settings(warmup_start=START.isoformat(), mta="chasquid")
