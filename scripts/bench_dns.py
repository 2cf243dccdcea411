"""Benchmark of DNS planning and applying (run it as ``scripts/bench-dns``; not a test).

For zones holding N records besides ours (N = 10, 1,000, 10,000 by default), on both
providers, it measures:

- the first plan (records missing): time, provider read calls, peak memory;
- the apply of that plan: time, provider write calls;
- a second plan (nothing to change): time, read calls; it must be empty, an apply of it must
  make 0 provider write calls, and the server must see no write either (Knot: SOA serial
  unchanged; Cloudflare emulator: no POST/PUT/PATCH/DELETE request);
- side by side, on the same Knot zone and the same desired records, octoDNS
  (octodns + octodns-bind, benchmark-only extras from requirements-bench.txt) planning the
  same change, and our plan time as a ratio of its.

Where the providers run:

- rfc2136: a real knotd on 127.0.0.1 (lab.knot.KnotServer), its zone file holding
  the filler records; knotd is a child process, stopped by its PID;
- powerdns: a real pdns_server 4.7 (sqlite3) on 127.0.0.1 (lab.powerdns.PowerDnsWorld), its
  zone loaded with the filler records by pdnsutil, reached through dns-lexicon's powerdns
  provider (mailhost.zones.providers.lexicon), whose zone read is one request per owned name
  (lexicon_powerdns); its reads and writes are HTTP requests (GET, PATCH); the server sees a
  write as a serial increase;
- cloudflare: the CloudflareEmulator, seeded with the filler records through its Python API
  (``add_records``), run in a child process (``python -m lab.worlds
  serve-emulator``), so that neither its memory nor its CPU (the GIL) is counted in our
  plan; stopped by its PID.

Method: each timed step is repeated ``--repeat`` times (default 3) and the median is
reported; the zone is put back between repeats (our records deleted, untimed) and one
untimed plan warms up imports and caches first. Every plan gets a fresh provider (no cache
survives between repeats); building the provider is not timed. Peak memory is tracemalloc's
peak over one extra plan, traced alone (tracemalloc slows code down: nothing is timed while
it traces). octoDNS runs in its own phase after ours, never between our steps (see
bench_ours), with ``octodns_bind.Rfc2136Provider.plan(desired_zone)``: it reads the whole
zone by AXFR. Its desired zone is the whole zone as an octoDNS config would hold it (the
zone's records plus ours), so that it plans exactly our change (8 creates) and nothing else;
what it plans when given only our records is reported too (it deletes everything else, and
its own safety check refuses that). knotd runs with ``tcp-io-timeout`` raised to 10 s (see
KNOT_IO_TIMEOUT_MS). Both worlds are lab.worlds, the ones the tests use.

Usage: scripts/bench-dns [--sizes 10,1000,10000] [--repeat 3] [--json PATH]
       [--providers rfc2136,cloudflare,powerdns]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import dns.zone

from lab.knot import KNOTD, filler_records, knot_program, minimal_zone
from lab.powerdns import PDNS_SERVER, PowerDnsWorld
from lab.worlds import SAMPLE_HOST, CloudflareWorld, KnotWorld
from mailhost.keys.dkim import DkimPublicKeys, generate_key, public_value
from mailhost.settings import load_settings
from mailhost.zones.desired import MailHost, ZoneRecords, desired_by_zone
from mailhost.zones.plan import DELETE, Change, ZonePlan
from mailhost.zones.providers.rfc2136 import value_rdata
from mailhost.zones.sync import ZoneSync

ROOT = Path(__file__).resolve().parent.parent

ZONE = "example.test"
DEFAULT_SIZES = (10, 1000, 10000)
DEFAULT_JSON = ROOT / "bench-results" / "dns.json"
PROVIDERS = ("rfc2136", "cloudflare", "powerdns")
# knotd drops a TCP peer that lags 500 ms behind; octoDNS parsing a 10,000-record AXFR can
KNOT_IO_TIMEOUT_MS = 10_000


# ----- measuring -----


@dataclass
class Samples:
    """Repeated measures of one step."""

    ms: list[float] = field(default_factory=list)
    reads: list[int] = field(default_factory=list)
    writes: list[int] = field(default_factory=list)

    def add(self, seconds: float, calls) -> None:
        self.ms.append(seconds * 1000)
        self.reads.append(calls["read"])
        self.writes.append(calls["write"])

    def summary(self) -> dict:
        return {
            "median_ms": round(statistics.median(self.ms), 3),
            "min_ms": round(min(self.ms), 3),
            "max_ms": round(max(self.ms), 3),
            "samples_ms": [round(m, 3) for m in self.ms],
            "read_calls": _one(self.reads),
            "write_calls": _one(self.writes),
        }


def _one(values: list[int]):
    """The call count, the same on every repeat (else the list, which would be a finding)."""
    return values[0] if len(set(values)) == 1 else values


def timed(function):
    """Run ``function``; return its result and wall time. No gc.collect() first: a full
    collection frees pydantic's weakly cached generic page models, which the Cloudflare SDK
    then rebuilds (~25 ms), a cost a run pays once, not on every plan."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def traced_peak(function) -> float:
    """tracemalloc's peak, in MiB, of allocations made while ``function`` runs."""
    gc.collect()
    tracemalloc.start()
    try:
        function()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def records_read(world, function) -> int:
    """How many records the provider parsed from the server's answers while ``function`` ran
    (untimed: counted by wrapping the provider module's per-record conversion)."""
    module = sys.modules[type(world.provider()).__module__]
    name = {"rfc2136": "canonical", "cloudflare": "_found_record", "lexicon": "_value"}[world.kind]
    original, count = getattr(module, name), [0]

    def counting(*args):
        count[0] += 1
        return original(*args)

    setattr(module, name, counting)
    try:
        function()
    finally:
        setattr(module, name, original)
    return count[0]


def revert(world, records: ZoneRecords) -> None:
    """Delete our records again (untimed), back to the zone the run started with."""
    provider = world.provider()
    found = provider.read(ZONE, records.ownership.keys)  # only ours: the zone holds no other
    provider.apply(ZonePlan(ZONE, [Change(DELETE, rr.name, rr.rtype, rr, None, rr)
                                   for rr in found]))
    leftover = world.provider().read(ZONE, records.ownership.keys)
    if leftover:
        raise RuntimeError(f"{world.kind}: could not put the zone back: {leftover}")


def bench_ours(world, records: ZoneRecords, repeat: int, octo=None) -> dict:
    """First plan, apply, no-change plan, ``repeat`` times; then octoDNS's plans.

    octoDNS runs in its own phase, never between our steps: knotd answers an update that
    follows an outgoing AXFR of a 1,000+ record zone within about a second some 0.7 s late,
    which would charge octoDNS's AXFR to our apply.
    """
    first, apply, second = Samples(), Samples(), Samples()
    no_change_server_writes = []
    ZoneSync(records, world.provider()).plan()  # warm-up: lazy imports, first connections
    for _ in range(repeat):
        sync = ZoneSync(records, world.provider())
        plan, seconds = timed(sync.plan)
        first.add(seconds, sync.provider.calls)
        if [c.action for c in plan.changes] != ["create"] * len(records.desired):
            raise RuntimeError(f"{world.kind}: unexpected first plan:\n{plan.format()}")
        sync.provider.calls.clear()
        _, seconds = timed(partial(sync.apply, plan))
        apply.add(seconds, sync.provider.calls)

        before = world.server_writes()
        again = ZoneSync(records, world.provider())
        plan2, seconds = timed(again.plan)
        second.add(seconds, again.provider.calls)
        if not plan2.empty:
            raise RuntimeError(f"{world.kind}: second plan not empty:\n{plan2.format()}")
        again.apply(plan2)  # must make no write call
        if again.provider.calls["write"]:
            raise RuntimeError(f"{world.kind}: a no-change apply made a write call")
        no_change_server_writes.append(world.server_writes() - before)
        revert(world, records)

    peak = traced_peak(ZoneSync(records, world.provider()).plan)
    read_first = records_read(world, ZoneSync(records, world.provider()).plan)
    converge(world, records)
    read_second = records_read(world, ZoneSync(records, world.provider()).plan)
    revert(world, records)
    result = {
        "provider": world.kind,
        "zone_records": world.size,
        "first_plan": first.summary(),
        "apply": apply.summary(),
        "no_change_plan": second.summary(),
        "no_change_apply_write_calls": 0,
        "no_change_server_writes": _one(no_change_server_writes),
        "plan_peak_mib": round(peak, 3),
        "records_read": {"first_plan": read_first, "no_change_plan": read_second},
    }
    if octo:
        result["octodns"] = bench_octodns(octo, world, records, repeat)
        result["octodns"]["ratio_first_plan"] = round(
            result["first_plan"]["median_ms"] / result["octodns"]["first_plan"]["median_ms"], 4)
        result["octodns"]["ratio_no_change_plan"] = round(
            result["no_change_plan"]["median_ms"]
            / result["octodns"]["no_change_plan"]["median_ms"], 4)
    return result


def bench_octodns(octo: OctoDns, world, records: ZoneRecords, repeat: int) -> dict:
    """octoDNS's plan of the same change from the same state, then its no-change plan."""
    octo.plan()  # warm-up
    first = [octo.timed_plan(expect_creates=len(records.desired)) for _ in range(repeat)]
    peak = octo.traced_plan_peak()
    ours_only = octo.ours_only()
    converge(world, records)
    second = [octo.timed_plan(expect_creates=0) for _ in range(repeat)]
    revert(world, records)
    return {
        "first_plan": _ms_summary(first),
        "no_change_plan": _ms_summary(second),
        "plan_peak_mib": round(peak, 3),
        "ours_only_desired": ours_only,
    }


def converge(world, records: ZoneRecords) -> None:
    sync = ZoneSync(records, world.provider())
    sync.apply(sync.plan())


def _ms_summary(ms: list[float]) -> dict:
    return {"median_ms": round(statistics.median(ms), 3), "min_ms": round(min(ms), 3),
            "max_ms": round(max(ms), 3), "samples_ms": [round(m, 3) for m in ms]}


# ----- octoDNS on the same Knot zone -----


class OctoDns:
    """octoDNS's RFC 2136 provider planning our desired records on the same Knot zone."""

    def __init__(self, world: KnotWorld, records: ZoneRecords):
        from octodns.record import Record
        from octodns.record.rr import Rrset
        from octodns.zone import Zone

        self.world = world
        self.Zone, self.Record = Zone, Record
        ours = [
            Rrset(r.name + ".", r.rtype, r.ttl,
                  [value_rdata(r.rtype, v).to_text() for v in r.values])
            for r in records.desired
        ]
        # What the zone holds before our records: the same text Knot loaded, SOA aside
        # (octoDNS does not manage SOA).
        zone_text = minimal_zone(ZONE) + filler_records(ZONE, world.size)
        parsed = dns.zone.from_text(zone_text, ZONE + ".", relativize=False)
        theirs = [
            Rrset(name.to_text(), dns.rdatatype.to_text(rdataset.rdtype), rdataset.ttl,
                  [rdata.to_text() for rdata in rdataset])
            for name, rdataset in parsed.iterate_rdatasets()
            if rdataset.rdtype != dns.rdatatype.SOA
        ]
        self.desired = self._zone(theirs + ours)  # the whole zone, as an octoDNS config has it
        self.desired_ours_only = self._zone(ours)

    def _zone(self, rrsets):
        zone = self.Zone(ZONE + ".", [])
        for record in self.Record.from_rrsets(zone, rrsets):
            zone.add_record(record)
        return zone

    def provider(self):
        from octodns_bind import Rfc2136Provider as OctoRfc2136Provider

        key = self.world.server.key
        return OctoRfc2136Provider(
            "knot", host=self.world.server.address, port=self.world.server.port,
            key_name=key.name, key_secret=key.secret, key_algorithm=key.algorithm,
        )

    def plan(self, desired=None):
        return self.provider().plan(self.desired if desired is None else desired)

    def traced_plan_peak(self) -> float:
        provider = self.provider()
        return traced_peak(lambda: provider.plan(self.desired))

    def timed_plan(self, expect_creates: int) -> float:
        provider = self.provider()
        plan, seconds = timed(lambda: provider.plan(self.desired))
        counts = plan.change_counts if plan else {"Create": 0, "Update": 0, "Delete": 0}
        if dict(counts) != {"Create": expect_creates, "Update": 0, "Delete": 0}:
            raise RuntimeError(f"octoDNS planned {dict(counts)}, expected "
                               f"{expect_creates} creates and nothing else")
        return seconds * 1000

    def ours_only(self) -> dict:
        """What octoDNS plans when its desired zone holds only our records (no ownership)."""
        from octodns.provider.plan import UnsafePlan

        plan = self.plan(self.desired_ours_only)
        result = {key.lower(): value for key, value in plan.change_counts.items()}
        try:
            plan.raise_if_unsafe()
            result["refused"] = None
        except UnsafePlan as error:
            result["refused"] = f"{type(error).__name__}: {error}"
        return result


# ----- the run -----


def desired_records() -> ZoneRecords:
    """The sample host's records for example.test, with one RSA DKIM key made for this run."""
    rsa_key = public_value(generate_key("rsa", 2048))
    settings = load_settings(dict(SAMPLE_HOST))
    (records,) = desired_by_zone([MailHost(settings, {ZONE: DkimPublicKeys(rsa_key)})])
    return records


def run(sizes: list[int], providers: list[str], repeat: int) -> dict:
    records = desired_records()
    results = []
    for kind in providers:
        for size in sizes:
            if kind == "rfc2136":
                world = KnotWorld(size, io_timeout_ms=KNOT_IO_TIMEOUT_MS)
            elif kind == "powerdns":
                world = PowerDnsWorld(size)
            else:
                world = CloudflareWorld(size, own_process=True)
            started = time.perf_counter()
            world.start()
            try:
                octo = OctoDns(world, records) if kind == "rfc2136" else None
                result = bench_ours(world, records, repeat, octo)
            finally:
                world.stop()
            result["wall_s"] = round(time.perf_counter() - started, 2)
            if kind == "powerdns":
                result["provider"] = "lexicon/powerdns"
            results.append(result)
            print(f"  {kind:<10} {size:>6} records: done in {result['wall_s']} s",
                  file=sys.stderr, flush=True)
    return {
        "benchmark": "dns",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "versions": _versions(),
        "repeat": repeat,
        "zone": ZONE,
        "desired_records": len(records.desired),
        "owned_keys": len(records.ownership.keys),
        "method": "median of `repeat` runs; zone_records = records besides ours; "
                  "peak = tracemalloc peak over one plan (emulator in a child process)",
        "results": results,
    }


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("dnspython", "cloudflare", "octodns", "octodns-bind", "dns-lexicon"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    try:
        knot = subprocess.run([knot_program(KNOTD) or KNOTD, "--version"],
                              capture_output=True, text=True, timeout=10).stdout.split()
        found["knotd"] = knot[-1] if knot else None
    except OSError:
        found["knotd"] = None
    try:
        pdns = subprocess.run([PDNS_SERVER, "--version"], capture_output=True, text=True,
                              timeout=10)
        words = (pdns.stdout + pdns.stderr).split()
        found["pdns_server"] = next((w for w in words if w[:1].isdigit() and "." in w), None)
    except OSError:
        found["pdns_server"] = None
    return found


# ----- output -----

COLUMNS = (
    ("provider", "<"), ("zone", ">"), ("plan ms", ">"), ("reads", ">"), ("RRs read", ">"),
    ("apply ms", ">"),
    ("writes", ">"), ("no-chg plan ms", ">"), ("reads", ">"), ("writes", ">"),
    ("peak MiB", ">"), ("octoDNS plan ms", ">"), ("octoDNS MiB", ">"), ("ours/octoDNS", ">"),
)


def table(report: dict) -> str:
    rows = []
    for r in report["results"]:
        octo = r.get("octodns")
        rows.append((
            r["provider"],
            f"{r['zone_records']:,}",
            f"{r['first_plan']['median_ms']:.1f}",
            str(r["first_plan"]["read_calls"]),
            f"{r['records_read']['first_plan']:,}",
            f"{r['apply']['median_ms']:.1f}",
            str(r["apply"]["write_calls"]),
            f"{r['no_change_plan']['median_ms']:.1f}",
            str(r["no_change_plan"]["read_calls"]),
            str(r["no_change_plan"]["write_calls"]),
            f"{r['plan_peak_mib']:.2f}",
            f"{octo['first_plan']['median_ms']:.1f}" if octo else "-",
            f"{octo['plan_peak_mib']:.2f}" if octo else "-",
            f"{octo['ratio_first_plan']:.3f}" if octo else "-",
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, (h, _) in enumerate(COLUMNS)]

    def line(cells):
        return "| " + " | ".join(
            f"{c:{align}{w}}" for c, (_, align), w in zip(cells, COLUMNS, widths, strict=True)
        ) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + (":" if align == ">" else "-") for (_, align), w in zip(COLUMNS, widths,
                                                                              strict=True)
    ) + "|"
    return "\n".join([line([h for h, _ in COLUMNS]), rule, *(line(row) for row in rows)])


def notes(report: dict) -> str:
    lines = [
        f"{report['desired_records']} desired RRsets, {report['owned_keys']} owned keys; "
        f"median of {report['repeat']} runs; zone = records besides ours.",
        "plan = first plan (8 creates); reads/writes = provider calls; RRs read = records "
        "the provider parsed; no-chg = plan after the apply: empty, its apply makes 0 writes.",
        "octoDNS = octodns-bind Rfc2136Provider.plan() of the same change on the same Knot "
        "zone: it reads the WHOLE zone by AXFR, so its plan grows with the zone; ours reads "
        "only the owned keys.",
    ]
    growth = []
    for kind in dict.fromkeys(r["provider"] for r in report["results"]):
        rows = sorted((r for r in report["results"] if r["provider"] == kind),
                      key=lambda r: r["zone_records"])
        if len(rows) < 2:
            continue
        small, big = rows[0], rows[-1]
        span = f"{small['zone_records']:,} -> {big['zone_records']:,} records"
        growth.append(f"{kind} ours x{_growth(small, big, 'first_plan'):.1f}")
        if small.get("octodns") and big.get("octodns"):
            growth.append(f"octoDNS x{_growth(small['octodns'], big['octodns'], 'first_plan'):.1f}")
    if growth:
        lines.append(f"plan time growth, {span}: " + ", ".join(growth) + ".")
    if all(r["no_change_server_writes"] == 0 for r in report["results"]):
        lines.append("no-change runs: 0 write calls, and the servers saw no write (Knot and "
                     "PowerDNS: SOA serial unchanged; emulator: no POST/PUT/PATCH/DELETE).")
    for r in report["results"]:
        if r["no_change_server_writes"] != 0:
            lines.append(f"WARNING: {r['provider']} {r['zone_records']}: the server saw "
                         f"{r['no_change_server_writes']} writes during a no-change run")
        octo = r.get("octodns")
        if octo and octo["ours_only_desired"]["refused"]:
            only = octo["ours_only_desired"]
            lines.append(
                f"octoDNS with only our records as desired ({r['zone_records']:,}): plans "
                f"{only['create']} creates, {only['delete']} deletes -> {only['refused']}"
            )
    return "\n".join(lines)


def _growth(small: dict, big: dict, step: str) -> float:
    return big[step]["median_ms"] / small[step]["median_ms"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-dns",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="records besides ours in the zone, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed step (median)")
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    if args.repeat < 1 or not sizes or any(s < 0 for s in sizes):
        parser.error("--repeat must be >= 1 and --sizes non-negative integers")
    if unknown := set(providers) - set(PROVIDERS):
        parser.error(f"unknown providers: {', '.join(sorted(unknown))}")
    for variable in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_BASE_URL"):
        os.environ.pop(variable, None)
    logging.disable(logging.WARNING)  # octoDNS logs every plan
    warnings.simplefilter("ignore")  # octodns-bind 1.1 uses octoDNS's deprecated Rr API

    started = time.perf_counter()
    report = run(sizes, providers, args.repeat)
    report["total_s"] = round(time.perf_counter() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print()
    print(notes(report))
    print(f"\n{report['total_s']} s in all; figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
