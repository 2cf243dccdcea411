"""Which keys host data may hold, checked before any value is: the model's settings (its
fields: a setting added to the model is known at once), and pyinfra's own keys, read from
pyinfra (its connectors' data such as ``ssh_hostname``, its operations' global arguments such as
``_sudo``). Any other key stops the run in one line, with a "did you mean" when one is close;
a key that looks secret never shows its value. group_data/, the inventory and ``--data`` all
reach load_settings through host.data (mailhost.run.per_host).
"""

from __future__ import annotations

import re
from functools import cache

from mailhost.settings.messages import (
    SettingsError,
    closest,
    line_without_value,
    secret_in_inventory,
    unknown_setting,
)

# the longest text any setting holds (an SSH host key of 16384 bits is about 2,800 characters)
MAX_TEXT = 4096
# a key whose name says it holds a secret: its value is never shown
_SECRET_NAME = re.compile(r"secret|token|pass|pwd|credential|private|api_?key|access_?key|tsig|"
                          r"auth")
MAX_KEY = 64  # a longer key is not shown either


@cache
def pyinfra_keys() -> frozenset[str]:
    """The keys pyinfra itself reads from host data: every installed connector's data
    (``ssh_hostname``, ``ssh_port``, ``docker_identifier``...) and every global argument of
    operations (``_sudo``, ``_su_user``, ``_env``...), as pyinfra lists them."""
    from pyinfra.api.arguments import all_argument_meta
    from pyinfra.api.connectors import get_all_connectors

    keys = set(all_argument_meta)
    for connector in get_all_connectors().values():
        keys |= set(getattr(connector, "data_meta", {}))
    return frozenset(keys)


def looks_secret(key: str) -> bool:
    return bool(_SECRET_NAME.search(key.lower()))


def refuse_unknown_keys(data: dict, settings: frozenset[str], secrets) -> None:
    """Every key of DATA is a setting or pyinfra's; a secret (SECRETS: key -> where it goes) is
    refused naming where it goes instead. Raises SettingsError with one line."""
    for key in data:
        if not isinstance(key, str):
            raise SettingsError(f"settings: a key {_short(key)} of type {type(key).__name__}: "
                                "expected a setting's name (text), e.g. 'dmarc_policy'")
        if len(key) > MAX_KEY or not key.isprintable():
            raise SettingsError(f"settings: a key {_short(key)} ({len(key)} characters): "
                                "unknown setting; expected a setting's name, e.g. "
                                "'dmarc_policy'")
    for key in data:
        if key in secrets:
            raise SettingsError(secret_in_inventory(key, secrets[key]))
    foreign = pyinfra_keys()
    for key, value in data.items():
        if key in settings or key in foreign:
            continue
        near = closest(key, [*settings, *foreign, *secrets])
        if near in secrets:
            raise SettingsError(secret_in_inventory(key, secrets[near], near))
        if looks_secret(key):
            raise SettingsError(line_without_value(
                key, "unknown setting (its name looks secret: its value is not shown; secrets "
                     "go in the environment or the secrets file)"
                     + (f"; did you mean {near}?" if near else "")))
        raise SettingsError(unknown_setting(key, value, near))


def refuse_long_values(data: dict, settings: frozenset[str]) -> None:
    """No text in a setting's value (lists and mappings walked, without recursion) is longer
    than MAX_TEXT: refused with its length, never echoed."""
    for key in settings & data.keys():
        stack = [data[key]]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                stack.extend(value.keys())
                stack.extend(value.values())
            elif isinstance(value, list | tuple | set | frozenset):
                stack.extend(value)
            elif isinstance(value, str | bytes) and len(value) > MAX_TEXT:
                raise SettingsError(line_without_value(
                    key, f"a text of {len(value)} characters (not shown); expected at most "
                         f"{MAX_TEXT}"))


def _short(key) -> str:
    text = repr(key) if not isinstance(key, int) or key.bit_length() < 64 else "(a large int)"
    return text if len(text) <= 40 else text[:37] + "..."
