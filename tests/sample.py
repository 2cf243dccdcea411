"""Sample host data for example.test, as an inventory would give it."""

from mailhost.lab.worlds import SAMPLE_HOST
from mailhost.settings import load_settings

BASE = SAMPLE_HOST  # one definition, shared with scripts/bench_dns.py


def sample_settings(**overrides):
    return load_settings({**BASE, **overrides})
