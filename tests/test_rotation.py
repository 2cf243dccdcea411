"""DKIM rotation's state machine (mailhost.rotation), walked with the clock advanced."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailhost.rotation import (
    PUBLISHED,
    RETIRING,
    STEADY,
    Policy,
    advance,
    describe,
    start,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = Policy(base_selector="mail", rotate_days=180, retire_days=7, ttl=3600)


def test_a_rotation_walks_every_phase_one_deploy_at_a_time():
    state = start("mail", T0)
    step = advance(state, POLICY, T0 + timedelta(days=179), visible={"mail"})
    assert (step.rotation.phase, step.generate) == (STEADY, None)
    assert step.waiting == "the next key is made after 2026-06-30 UTC"

    day = T0 + timedelta(days=180)
    step = advance(step.rotation, POLICY, day, visible={"mail"})
    assert step.generate == "mail-20260630" and step.switch_to is None
    assert step.rotation.phase == PUBLISHED
    assert step.rotation.signing == "mail"
    assert step.rotation.published == ["mail", "mail-20260630"]

    # published but not yet answered everywhere: nothing moves
    step = advance(step.rotation, POLICY, day + timedelta(hours=1), visible={"mail"})
    assert step.switch_to is None and step.waiting.startswith("mail-20260630 to be answered")
    # seen everywhere: the clock for twice the TTL starts
    seen = day + timedelta(hours=2)
    step = advance(step.rotation, POLICY, seen, visible={"mail", "mail-20260630"})
    assert step.switch_to is None
    assert step.waiting == "signing switches to mail-20260630 after 2026-06-30 16:00 UTC"
    step = advance(step.rotation, POLICY, seen + timedelta(seconds=7199),
                   visible={"mail", "mail-20260630"})
    assert step.switch_to is None
    # twice the TTL later: signing switches, the old key stays published
    switched = seen + timedelta(seconds=7200)
    step = advance(step.rotation, POLICY, switched, visible={"mail", "mail-20260630"})
    assert step.switch_to == "mail-20260630"
    assert step.rotation.signing == "mail-20260630"
    assert step.rotation.phase == RETIRING
    assert step.rotation.published == ["mail", "mail-20260630"]

    step = advance(step.rotation, POLICY, switched + timedelta(days=6), visible=set())
    assert step.remove == () and step.rotation.published == ["mail", "mail-20260630"]
    step = advance(step.rotation, POLICY, switched + timedelta(days=7), visible=set())
    assert step.remove == ("mail",)
    assert step.rotation.published == ["mail-20260630"] and step.rotation.phase == STEADY


def test_a_forced_rotation_starts_now_and_never_two_phases_in_one_run():
    state = start("mail", T0)
    step = advance(state, POLICY, T0 + timedelta(days=1), visible={"mail"}, force=True)
    assert step.generate == "mail-20260102" and step.switch_to is None
    # even if the new record is visible and the TTL long past, the switch is a later run
    later = T0 + timedelta(days=30)
    step = advance(step.rotation, POLICY, later, visible={"mail", "mail-20260102"})
    assert step.switch_to is None
    step = advance(step.rotation, POLICY, later + timedelta(hours=2),
                   visible={"mail", "mail-20260102"})
    assert step.switch_to == "mail-20260102"


def test_never_rotates_with_zero_days_and_a_second_key_the_same_day_gets_a_suffix():
    never = Policy("mail", rotate_days=0, retire_days=7, ttl=300)
    step = advance(start("mail", T0), never, T0 + timedelta(days=5000), visible={"mail"})
    assert step.generate is None and step.waiting == ""
    first = advance(start("mail-20260101", T0), POLICY, T0, visible=set(), force=True)
    assert first.generate == "mail-20260101-2"


def test_the_dry_run_line_says_the_phase_and_the_next_step():
    step = advance(start("mail", T0), POLICY, T0 + timedelta(days=180), visible={"mail"})
    assert describe("example.com", step) == (
        "DKIM example.com: next key published, signing with mail; now: publish new key "
        "mail-20260630; next: mail-20260630 to be answered by every authoritative server")
