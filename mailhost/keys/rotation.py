"""Staged DKIM key rotation: pure state, advanced by ordinary deploys (mailhost.keys.dkim wires it).

Each key has a selector derived from ``dkim_selector`` and its creation day
(``mail-20261125``; a key from before rotation keeps its plain selector). A domain's rotation
state is the list of its keys and which one signs. A deploy calls ``advance`` once per domain
with the time and whether each published selector is visible at every authoritative server:

1. **publish**: the signing key is ``dkim_rotate_days`` old (or a rotation is forced) -> a next
   key is generated and published beside it; signing does not change.
2. **switch**: once the next key's record has been seen at every authoritative server for at
   least twice the record's TTL -> signing switches to it; the old key is retired (still
   published, so mail signed in flight still verifies).
3. **remove**: ``dkim_retire_days`` after retiring -> the old record is removed and its private
   key deleted. Removing it (rather than publishing ``p=`` revoked) is what RFC 6376 3.6.1
   allows both ways; an absent selector and a revoked one fail a signature alike, and the
   removed record leaves nothing to maintain.

Every step waits for a later deploy: a run never goes through two phases at once, so each is
visible in ``--dry`` before it happens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

STEADY, PUBLISHED, RETIRING = "steady", "next key published", "old key retiring"


@dataclass(frozen=True)
class Key:
    """One key of a domain: its selector, when it was made, first seen published everywhere,
    and when signing moved away from it."""

    selector: str
    created: datetime
    seen: datetime | None = None
    retired: datetime | None = None


@dataclass(frozen=True)
class Rotation:
    """A domain's keys and the one that signs."""

    keys: tuple[Key, ...]
    signing: str

    @property
    def signer(self) -> Key:
        return next(k for k in self.keys if k.selector == self.signing)

    @property
    def next_key(self) -> Key | None:
        """The key published beside the signing one, waiting to sign."""
        return next((k for k in self.keys if k.retired is None and k.selector != self.signing),
                    None)

    @property
    def retiring(self) -> list[Key]:
        return [k for k in self.keys if k.retired is not None]

    @property
    def published(self) -> list[str]:
        """Every selector whose public key is in DNS."""
        return [k.selector for k in self.keys]

    @property
    def phase(self) -> str:
        if self.next_key is not None:
            return PUBLISHED
        return RETIRING if self.retiring else STEADY


@dataclass(frozen=True)
class Policy:
    """The settings a rotation follows."""

    base_selector: str
    rotate_days: int  # 0: never
    retire_days: int
    ttl: int  # seconds: the DKIM record's


@dataclass(frozen=True)
class Step:
    """What one deploy does to a domain's rotation."""

    rotation: Rotation
    generate: str | None = None  # a selector to generate and publish
    switch_to: str | None = None  # the selector signing moves to
    remove: tuple[str, ...] = ()  # selectors to unpublish and whose private key goes
    waiting: str = ""  # what the next step waits for, said in --dry


def start(selector: str, now: datetime) -> Rotation:
    """The state of a domain whose only key is ``selector`` (a key from before rotation)."""
    return Rotation((Key(selector, now),), selector)


def selector_on(policy: Policy, day: datetime, taken: list[str]) -> str:
    """The selector of a key made on ``day``: base-YYYYMMDD, then -2, -3... if taken."""
    name, number = f"{policy.base_selector}-{day:%Y%m%d}", 1
    while name in taken:
        number += 1
        name = f"{policy.base_selector}-{day:%Y%m%d}-{number}"
    return name


def advance(rotation: Rotation, policy: Policy, now: datetime, visible: set[str],
            force: bool = False) -> Step:
    """One deploy's step: at most one of remove / switch / generate happens per key.

    + visible: the selectors whose record every authoritative server answers now
    + force: start a rotation now, whatever the signing key's age (a compromised key)
    """
    keys = {k.selector: k for k in rotation.keys}
    removed = tuple(k.selector for k in rotation.retiring
                    if now >= k.retired + timedelta(days=policy.retire_days))
    for selector in removed:
        del keys[selector]
    for selector in visible:  # only a waiting next key's sighting matters (and is kept)
        key = keys.get(selector)
        if key and key.seen is None and key.retired is None and selector != rotation.signing:
            keys[selector] = replace(key, seen=now)
    state = Rotation(tuple(keys.values()), rotation.signing)
    waiting, switch_to, generate = "", None, None

    upcoming = state.next_key
    if upcoming is not None:
        ready = upcoming.seen and now >= upcoming.seen + timedelta(seconds=2 * policy.ttl)
        if ready:
            switch_to = upcoming.selector
            keys[state.signing] = replace(keys[state.signing], retired=now)
            state = Rotation(tuple(keys.values()), switch_to)
            waiting = (f"{rotation.signing} stays published until "
                       f"{now + timedelta(days=policy.retire_days):%Y-%m-%d %H:%M} UTC")
        elif upcoming.seen is None:
            waiting = f"{upcoming.selector} to be answered by every authoritative server"
        else:
            until = upcoming.seen + timedelta(seconds=2 * policy.ttl)
            waiting = f"signing switches to {upcoming.selector} after {until:%Y-%m-%d %H:%M} UTC"
    else:
        due = state.signer.created + timedelta(days=policy.rotate_days)
        if force or (policy.rotate_days and now >= due):
            generate = selector_on(policy, now, list(keys))
            keys[generate] = Key(generate, now)
            state = Rotation(tuple(keys.values()), state.signing)
            waiting = f"{generate} to be answered by every authoritative server"
        elif state.retiring:
            first = min(k.retired for k in state.retiring)
            waiting = (f"{', '.join(k.selector for k in state.retiring)} removed after "
                       f"{first + timedelta(days=policy.retire_days):%Y-%m-%d %H:%M} UTC")
        elif policy.rotate_days:
            waiting = f"the next key is made after {due:%Y-%m-%d} UTC"
    return Step(state, generate, switch_to, removed, waiting)


def describe(domain: str, step: Step) -> str:
    """The --dry line of a domain's rotation."""
    done = ([f"remove {', '.join(step.remove)}"] if step.remove else []) + (
        [f"sign with {step.switch_to}"] if step.switch_to else []) + (
        [f"publish new key {step.generate}"] if step.generate else [])
    now = f"; now: {', '.join(done)}" if done else ""
    then = f"; next: {step.waiting}" if step.waiting else ""
    return (f"DKIM {domain}: {step.rotation.phase}, signing with {step.rotation.signing}"
            f"{now}{then}")


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def to_json(rotation: Rotation, rotate_now: bool = False) -> str:
    """The state file's text (stable: the same state is the same text)."""
    keys = [{"selector": k.selector, "created": k.created.isoformat(),
             "seen": k.seen and k.seen.isoformat(), "retired": k.retired and k.retired.isoformat()}
            for k in rotation.keys]
    return json.dumps({"signing": rotation.signing, "keys": keys, "rotate_now": rotate_now},
                      indent=1) + "\n"


def from_json(text: str) -> tuple[Rotation, bool]:
    """A state file's rotation and whether a rotation was asked for (scripts/rotate-dkim)."""
    data = json.loads(text)
    keys = tuple(Key(k["selector"], _time(k["created"]), _time(k.get("seen")),
                     _time(k.get("retired"))) for k in data["keys"])
    if data["signing"] not in {k.selector for k in keys}:
        raise ValueError(f"the signing selector {data['signing']} is not one of its keys")
    return Rotation(keys, data["signing"]), bool(data.get("rotate_now"))
