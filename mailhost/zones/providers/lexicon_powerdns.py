"""lexicon's powerdns provider, reading only the names a plan owns.

dns-lexicon 3.25's powerdns provider builds every list, create and delete on ``zone_data()``:
one ``GET /servers/localhost/zones/ZONE``, which returns the whole zone (10,000 records: about
1.4 MB of JSON and 270 ms per plan). PowerDNS (4.7 included) also answers
``GET .../zones/ZONE?rrset_name=NAME``: the zone's metadata and only the RRsets at NAME, found
through its (name, type) index, in the same JSON form; the time does not grow with the zone.
``PowerDnsByName`` is lexicon's provider with only ``zone_data()`` replaced: with ``names`` set
it is made of one such GET per name, and lexicon's own ``list_records``, ``create_record`` and
``delete_record`` run on it unchanged (the same contents, the same quoting, the same writes).

What PowerDNS 4.7's ``rrset_name`` answer differs in, and how it is made whole:

- It leaves out disabled records (the whole zone has them). A plan reads what the server
  serves, so reads go without them; but lexicon's writes replace a whole RRset, so before
  writing (``writing=True``) the disabled records at each name are found with
  ``GET .../search-data?q=NAME&object_type=record`` (which lists them, flagged) and put back
  in their RRsets: a write keeps them as they are. That search is a scan of PowerDNS's
  records table (a few ms at 10,000 records), made once per name per apply, never in a plan.
- It adds, for each comment elsewhere in the zone, an RRset of that name with no records:
  only RRsets at the name asked for, with records, are kept.

``names = None`` is lexicon's own whole-zone read (counting the zone for the safety check).
Only the powerdns provider is read this way; every other lexicon provider keeps lexicon's own.
"""

from __future__ import annotations

from collections import Counter
from types import MappingProxyType

from lexicon._private.providers.powerdns import Provider as LexiconPowerDns

SEARCH_MAX = 1000  # results per search-data call; a full answer is asked again, bigger
KINDS = MappingProxyType({"GET": "read", "PATCH": "write"})  # PUT: NOTIFY of secondaries


class PowerDnsByName(LexiconPowerDns):
    """lexicon's powerdns provider whose zone data holds only the RRsets at ``names``.

    + config: lexicon's ConfigResolver, as for lexicon's own provider
    """

    def __init__(self, config):
        super().__init__(config)
        self.names: tuple[str, ...] | None = ()
        self.writing = False
        self.requests: Counter[str] = Counter()  # HTTP requests: read, write, put
        self._disabled: list[dict] | None = None

    def scope(self, names, writing: bool = False) -> None:
        """Read only the RRsets at ``names`` from now on (None: the whole zone), with the
        disabled records too when ``writing``; what was read before is dropped."""
        self.names = None if names is None else tuple(sorted({_fqdn(n) for n in names}))
        self.writing = writing
        self._disabled = None
        self._zone_data = None

    def zone_data(self):
        if self._zone_data is None and self.names is not None:
            zone = _fqdn(self.domain)
            asked = [(name, {"rrset_name": name}) for name in self.names] or \
                [(zone, {"rrset_name": zone, "rrset_type": "SOA"})]  # the zone exists
            data, rrsets = {}, []
            for name, query in asked:
                data = self._get(f"/zones/{zone}", query_params=query).json()
                rrsets += [rrset for rrset in data.get("rrsets", [])
                           if _fqdn(rrset["name"]) == name and rrset["records"]]
            if self.writing:
                _add_disabled(rrsets, self._disabled_records(zone))
            self._zone_data = {**data, "rrsets": rrsets}
        return super().zone_data()

    def _disabled_records(self, zone: str) -> list[dict]:
        """The disabled records at ``names`` (search-data lists them; rrset_name does not)."""
        if self._disabled is None:
            self._disabled = []
            for name in self.names:
                limit = SEARCH_MAX
                while True:
                    found = self._get("/search-data", query_params={
                        "q": name.rstrip("."), "object_type": "record", "max": limit}).json()
                    if len(found) < limit:
                        break
                    limit *= 10
                self._disabled += [r for r in found
                                   if r.get("object_type") == "record" and r.get("disabled")
                                   and _fqdn(r.get("zone", "")) == zone
                                   and _fqdn(r["name"]) == name]
        return self._disabled

    def _request(self, action="GET", url="/", data=None, query_params=None):
        self.requests[KINDS.get(action, action.lower())] += 1
        return super()._request(action, url, data=data, query_params=query_params)


def _add_disabled(rrsets: list[dict], disabled: list[dict]) -> None:
    """Put each disabled record into its RRset (a new one if none is enabled)."""
    for record in disabled:
        key = (_fqdn(record["name"]), record["type"])
        rrset = next((r for r in rrsets if (_fqdn(r["name"]), r["type"]) == key), None)
        if rrset is None:
            rrset = {"name": key[0], "type": key[1], "ttl": record["ttl"], "records": []}
            rrsets.append(rrset)
        if all(r["content"] != record["content"] for r in rrset["records"]):
            rrset["records"].append({"content": record["content"], "disabled": True})


def _fqdn(name: str) -> str:
    return name.lower().rstrip(".") + "."
