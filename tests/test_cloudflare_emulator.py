"""The Cloudflare emulator, driven through the unmodified official SDK."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cloudflare
import pytest
from cloudflare import Cloudflare

from lab.cloudflare.emulator import CloudflareEmulator, Rfc2136Mirror

TOKEN = "emulator-test-token"
ZONE = "example.test"


@pytest.fixture
def emulator(monkeypatch):
    for variable in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY"):
        monkeypatch.delenv(variable, raising=False)
    server = CloudflareEmulator(TOKEN, zones=[ZONE]).start()
    yield server
    server.stop()


@pytest.fixture
def client(emulator):
    return Cloudflare(api_token=TOKEN, base_url=emulator.base_url, max_retries=2, timeout=5)


@pytest.fixture
def zone_id(emulator):
    return emulator.zone_id(ZONE)


def raw_request(url, method="GET", body=None, headers=None):
    """(status, decoded JSON) of one plain HTTP request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_zone_lookup_by_name(client, emulator, zone_id):
    emulator.add_zone("other.test")
    page = client.zones.list(name=ZONE)
    assert [z.name for z in page.result] == [ZONE]
    assert page.result[0].id == zone_id
    assert client.zones.list(name="missing.test").result == []
    assert len(client.zones.list().result) == 2
    assert client.zones.get(zone_id=zone_id).name == ZONE


def test_unknown_zone_id_is_a_cloudflare_style_error(client):
    with pytest.raises(cloudflare.NotFoundError) as caught:
        client.zones.get(zone_id="0" * 32)
    assert caught.value.body["success"] is False
    assert caught.value.body["errors"][0]["code"] == 1003


def test_pagination_and_filters(client, emulator, zone_id):
    emulator.add_records(ZONE, [
        {"name": f"host{i}", "type": "A", "content": f"198.51.100.{i % 200}"} for i in range(250)
    ])
    emulator.add_record(ZONE, "host7", "TXT", "hello")
    emulator.reset_stats()

    first = client.dns.records.list(zone_id=zone_id, per_page=100)
    info = first.result_info
    assert (info.page, info.per_page, info.count) == (1, 100, 100)
    assert (info.total_count, info.total_pages) == (251, 3)
    last = client.dns.records.list(zone_id=zone_id, per_page=100, page=3)
    assert last.result_info.count == 51

    emulator.reset_stats()
    names = [r.name for r in client.dns.records.list(zone_id=zone_id, per_page=100)]
    assert len(names) == 251 and len(set(names)) == 250  # host7 has A and TXT
    assert emulator.stats["GET"] == 4  # three pages, then the empty page that ends the SDK loop

    by_name = client.dns.records.list(zone_id=zone_id, name={"exact": "host7.example.test"})
    assert sorted(r.type for r in by_name.result) == ["A", "TXT"]
    assert "name.exact=host7.example.test" in emulator.request_log[-1][2]
    by_type = client.dns.records.list(zone_id=zone_id, name={"exact": "host7.example.test"},
                                      type="TXT")
    assert [r.content for r in by_type.result] == ["hello"]
    by_content = client.dns.records.list(zone_id=zone_id, content={"exact": "198.51.100.3"})
    assert sorted(r.name for r in by_content.result) == ["host203.example.test",
                                                         "host3.example.test"]
    assert client.dns.records.list(zone_id=zone_id, name="host1.example.test").result_info \
        .total_count == 1


def test_create_returns_full_records(client, emulator, zone_id):
    mx = client.dns.records.create(zone_id=zone_id, name=ZONE, type="MX",
                                   content="mail.example.test", priority=10, ttl=300)
    assert isinstance(mx, cloudflare.types.dns.record_response.MXRecord)
    assert (mx.content, mx.priority, mx.proxiable, mx.zone_name) == (
        "mail.example.test", 10, False, ZONE)
    assert mx.created_on is not None and mx.modified_on is not None and mx.meta is not None
    txt = client.dns.records.create(zone_id=zone_id, name="_dmarc", type="TXT",
                                    content='"v=DMARC1; p=none"', ttl=300)
    assert (txt.name, txt.content) == ("_dmarc.example.test", '"v=DMARC1; p=none"')
    a = client.dns.records.create(zone_id=zone_id, name="www", type="A", content="192.0.2.80",
                                  ttl=1, proxied=True)
    assert (a.proxied, a.proxiable, a.ttl) == (True, True, 1)
    assert {r["id"] for r in emulator.records(ZONE)} == {mx.id, txt.id, a.id}


@pytest.mark.parametrize("body, code", [
    ({"name": "a", "type": "A", "content": "not-an-ip", "ttl": 300}, 9005),
    ({"name": "a", "type": "AAAA", "content": "10.0.0.1", "ttl": 300}, 9006),
    ({"name": "a", "type": "TXT", "content": "x", "ttl": 300, "proxied": True}, 9004),
    ({"name": "a", "type": "TXT", "content": "x", "ttl": 5}, 9021),
    ({"name": "a", "type": "MX", "content": "mail.example.test", "ttl": 300}, 9101),
    ({"name": "www.elsewhere.test", "type": "A", "content": "10.0.0.1", "ttl": 300}, 9007),
])
def test_invalid_records_are_refused(client, emulator, zone_id, body, code):
    with pytest.raises(cloudflare.BadRequestError) as caught:
        client.dns.records.create(zone_id=zone_id, **body)
    assert caught.value.body["errors"][0]["code"] == code
    assert emulator.records(ZONE) == []


def test_identical_record_is_refused(client, zone_id):
    client.dns.records.create(zone_id=zone_id, name="a", type="A", content="10.0.0.1", ttl=300)
    with pytest.raises(cloudflare.BadRequestError) as caught:
        client.dns.records.create(zone_id=zone_id, name="a.example.test", type="A",
                                  content="10.0.0.1", ttl=600)
    assert caught.value.body["errors"] == [
        {"code": 81058, "message": "An identical record already exists."}
    ]


def test_edit_update_get_delete(client, emulator, zone_id):
    record = client.dns.records.create(zone_id=zone_id, name="a", type="A", content="10.0.0.1",
                                       ttl=300, proxied=True)
    edited = client.dns.records.edit(record.id, zone_id=zone_id, name="a.example.test",
                                     type="A", content="10.0.0.2", ttl=300, proxied=False)
    assert (edited.id, edited.content, edited.ttl, edited.proxied) == (
        record.id, "10.0.0.2", 300, False)
    replaced = client.dns.records.update(record.id, zone_id=zone_id, name="b", type="A",
                                         content="10.0.0.3", ttl=600)
    assert (replaced.name, replaced.content, replaced.ttl) == ("b.example.test", "10.0.0.3", 600)
    assert client.dns.records.get(record.id, zone_id=zone_id).content == "10.0.0.3"
    assert client.dns.records.delete(record.id, zone_id=zone_id).id == record.id
    assert emulator.records(ZONE) == []
    with pytest.raises(cloudflare.NotFoundError) as caught:
        client.dns.records.get(record.id, zone_id=zone_id)
    assert caught.value.body["errors"][0]["code"] == 81044


def test_batch_applies_deletes_patches_posts(client, emulator, zone_id):
    old = emulator.add_record(ZONE, "old", "A", "10.0.0.1")
    keep = emulator.add_record(ZONE, "keep", "TXT", "before")
    result = client.dns.records.batch(
        zone_id=zone_id,
        deletes=[{"id": old["id"]}],
        patches=[{"id": keep["id"], "content": "after", "ttl": 600}],
        posts=[{"name": "old", "type": "A", "content": "10.0.0.1", "ttl": 300},
               {"name": ZONE, "type": "MX", "content": "mail.example.test", "priority": 5,
                "ttl": 300}],
    )
    assert [r.id for r in result.deletes] == [old["id"]]
    assert [(r.id, r.content, r.ttl) for r in result.patches] == [(keep["id"], "after", 600)]
    assert len(result.posts) == 2
    contents = sorted((r["name"], r["content"]) for r in emulator.records(ZONE))
    assert contents == [("example.test", "mail.example.test"), ("keep.example.test", "after"),
                        ("old.example.test", "10.0.0.1")]


def test_batch_is_all_or_nothing(client, emulator, zone_id):
    first = emulator.add_record(ZONE, "a", "A", "10.0.0.1")
    before = emulator.records(ZONE)
    writes = []
    emulator.on_write = lambda *args: writes.append(args)
    with pytest.raises(cloudflare.NotFoundError) as caught:
        client.dns.records.batch(
            zone_id=zone_id,
            deletes=[{"id": first["id"]}],
            posts=[{"name": "b", "type": "A", "content": "10.0.0.2", "ttl": 300}],
            patches=[{"id": "f" * 32, "content": "10.0.0.3"}],
        )
    assert caught.value.body["errors"][0]["code"] == 81044
    with pytest.raises(cloudflare.BadRequestError):
        client.dns.records.batch(zone_id=zone_id, posts=[
            {"name": "c", "type": "A", "content": "10.0.0.4", "ttl": 300},
            {"name": "a", "type": "A", "content": "10.0.0.1", "ttl": 300},
        ])
    assert emulator.records(ZONE) == before
    assert writes == []


def test_bad_or_missing_token_gives_403(emulator):
    bad = Cloudflare(api_token="not-the-token", base_url=emulator.base_url, max_retries=0)
    with pytest.raises(cloudflare.PermissionDeniedError) as caught:
        bad.zones.list()
    expected = {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}],
                "messages": [], "result": None}
    assert caught.value.body == expected
    assert raw_request(emulator.base_url + "/zones") == (403, expected)


def test_legacy_key_headers_are_refused(emulator):
    client = Cloudflare(api_email="me@example.test", api_key="k", base_url=emulator.base_url,
                        max_retries=0)
    with pytest.raises(cloudflare.PermissionDeniedError):
        client.zones.list()


def test_429_with_retry_after_then_success(client, emulator):
    emulator.add_fault("GET", r"^/zones$", status=429, count=2, retry_after=0.05)
    started = time.monotonic()
    assert client.zones.list(name=ZONE).result[0].name == ZONE
    assert time.monotonic() - started >= 0.1
    assert emulator.stats["GET"] == 3


def test_500_beyond_the_retries_fails(client, emulator):
    emulator.add_fault("*", "/zones", status=500, count=3, retry_after=0.01)
    with pytest.raises(cloudflare.InternalServerError):
        client.zones.list()
    assert emulator.stats["GET"] == 3
    assert client.zones.list().result  # the fault is used up


def test_fault_matches_method_and_path_only(client, emulator, zone_id):
    emulator.add_fault("POST", "dns_records/batch", status=500, count=1)
    client.zones.list()
    client.dns.records.list(zone_id=zone_id)
    assert emulator.faults[0].count == 1


def test_delay_fault(client, emulator):
    emulator.add_fault("GET", "/zones", status=None, delay=0.3)
    started = time.monotonic()
    client.zones.list()
    assert time.monotonic() - started >= 0.3


def test_after_write_fault_commits_then_answers_500(emulator, zone_id):
    client = Cloudflare(api_token=TOKEN, base_url=emulator.base_url, max_retries=0)
    emulator.add_fault("POST", "dns_records$", status=500, after_write=True)
    with pytest.raises(cloudflare.InternalServerError):
        client.dns.records.create(zone_id=zone_id, name="a", type="A", content="10.0.0.1",
                                  ttl=300)
    assert [r["content"] for r in emulator.records(ZONE)] == ["10.0.0.1"]


def test_admin_http_endpoints(client, emulator):
    admin = emulator.url + "/__emulator"
    assert raw_request(admin + "/faults", "POST", {"method": "GET", "path": "^/zones$",
                                                   "status": 429, "count": 1,
                                                   "retry_after": 0.01})[0] == 200
    client.zones.list()
    assert raw_request(admin + "/stats") == (200, {"requests": {"GET": 2}, "total": 2})
    status, record = raw_request(admin + "/records", "POST", {
        "zone": ZONE, "name": "mail", "type": "MX", "content": "mx.example.test",
        "priority": 10})
    assert status == 200 and record["priority"] == 10
    status, records = raw_request(admin + f"/records?zone={ZONE}")
    assert [r["id"] for r in records] == [record["id"]]
    assert raw_request(admin + "/stats", "DELETE")[0] == 200
    assert raw_request(admin + "/stats")[1]["total"] == 0


def test_state_file_keeps_records(tmp_path):
    state = str(tmp_path / "state.json")
    first = CloudflareEmulator(TOKEN, zones=[ZONE], state_file=state)
    record = first.add_record(ZONE, "a", "A", "10.0.0.1")
    second = CloudflareEmulator(TOKEN, zones=[ZONE], state_file=state)
    assert [r["id"] for r in second.records(ZONE)] == [record["id"]]
    assert len(second.zones) == 1


def test_write_hook_sees_old_and_new(client, emulator, zone_id):
    calls = []
    emulator.on_write = lambda zone, old, new: calls.append((zone, len(old), len(new)))
    client.dns.records.create(zone_id=zone_id, name="a", type="A", content="10.0.0.1", ttl=300)
    client.dns.records.list(zone_id=zone_id)
    assert calls == [(ZONE, 0, 1)]


def test_mirror_replaces_only_changed_rrsets(monkeypatch):
    pushed = []
    mirror = Rfc2136Mirror("127.0.0.1", 5354, ZONE, "provisioner", "c2VjcmV0", "hmac-sha256")
    monkeypatch.setattr(mirror, "push", pushed.append)
    emulator = CloudflareEmulator(TOKEN, zones=[ZONE], on_write=mirror)
    emulator.add_record(ZONE, "@", "MX", "mail.example.test", priority=10)
    txt = emulator.add_record(ZONE, "@", "TXT", "v=spf1 mx -all", ttl=600)
    emulator.delete_record(ZONE, txt["id"])
    assert pushed == [
        {(ZONE, "MX"): (300, ["10 mail.example.test."])},
        {(ZONE, "TXT"): (600, ['"v=spf1 mx -all"'])},
        {(ZONE, "TXT"): None},
    ]


def test_runs_as_a_module():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "lab.cloudflare.emulator", "--listen",
         f"127.0.0.1:{port}", "--zone", ZONE, "--token", TOKEN],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert "emulator on" in process.stdout.readline()
        client = Cloudflare(api_token=TOKEN, base_url=f"http://127.0.0.1:{port}/client/v4",
                            max_retries=0)
        assert [z.name for z in client.zones.list().result] == [ZONE]
    finally:
        process.terminate()
        process.wait(timeout=5)


# ----- the documented API rules the emulator enforces -----

@pytest.mark.parametrize("body, code", [
    ({"name": "a", "type": "A", "content": "10.0.0.1", "ttl": 30}, 9021),  # TTL 1 or >= 60
    ({"name": "a", "type": "A", "content": "10.0.0.1", "ttl": 300, "proxied": "true"}, 9003),
    ({"name": "@", "type": "CAA", "content": '0 issue "ca.example"', "ttl": 300}, 9101),
    ({"name": "@", "type": "CAA", "data": {"flags": 0, "tag": "isue", "value": "x"}}, 9101),
    ({"name": "t", "type": "TXT", "content": '"' + "x" * 256 + '"', "ttl": 300}, 9100),
    ({"name": "t", "type": "TXT", "content": "x" * 2049, "ttl": 300}, 9100),
])
def test_documented_validation_rules(emulator, zone_id, body, code):
    status, answer = raw_request(f"{emulator.base_url}/zones/{zone_id}/dns_records", "POST",
                                 body, {"Authorization": f"Bearer {TOKEN}"})
    assert (status, answer["errors"][0]["code"]) == (400, code)
    assert emulator.records(ZONE) == []


def test_caa_is_written_through_data_and_ttl_60_and_1_are_accepted(client, emulator, zone_id):
    client.dns.records.create(zone_id=zone_id, name="@", type="CAA", ttl=60,
                              data={"flags": 0, "tag": "issue", "value": "ca.example"})
    client.dns.records.create(zone_id=zone_id, name="t", type="TXT", ttl=1,
                              content='"' + "y" * 255 + '" "z"')
    caa, txt = emulator.records(ZONE)
    assert (caa["content"], caa["data"], caa["ttl"]) == (
        '0 issue "ca.example"', {"flags": 0, "tag": "issue", "value": "ca.example"}, 60)
    assert txt["content"] == '"' + "y" * 255 + '" "z"'  # stored as given


def test_batch_over_the_limit_is_refused_whole(emulator, zone_id):
    posts = [{"name": f"h{i}", "type": "A", "content": "10.0.0.1", "ttl": 300}
             for i in range(201)]
    status, answer = raw_request(f"{emulator.base_url}/zones/{zone_id}/dns_records/batch",
                                 "POST", {"posts": posts}, {"Authorization": f"Bearer {TOKEN}"})
    assert (status, answer["errors"][0]["code"]) == (400, 81061)
    assert emulator.records(ZONE) == []


def test_a_token_scoped_to_other_zones_gets_403(emulator):
    other = emulator.add_zone("other.test")
    emulator.add_token("scoped-token", ["other.test"])
    scoped = Cloudflare(api_token="scoped-token", base_url=emulator.base_url, max_retries=0)
    assert [z.name for z in scoped.zones.list().result] == ["other.test"]
    assert scoped.dns.records.list(zone_id=other).result == []
    with pytest.raises(cloudflare.PermissionDeniedError) as refused:
        scoped.dns.records.list(zone_id=emulator.zone_id(ZONE))
    assert refused.value.status_code == 403
    assert refused.value.body["errors"][0]["code"] == 9109


def test_a_failed_write_through_fails_the_request_and_keeps_nothing(client, emulator, zone_id):
    def refuse(zone, old, new):
        raise RuntimeError("RFC 2136 update refused: REFUSED")

    emulator.on_write = refuse
    with pytest.raises(cloudflare.InternalServerError):
        client.with_options(max_retries=0).dns.records.create(
            zone_id=zone_id, name="a", type="A", content="10.0.0.1", ttl=300)
    assert emulator.records(ZONE) == []
    assert emulator.hook_errors == ["RuntimeError: RFC 2136 update refused: REFUSED"]


def test_mirror_quotes_txt_on_its_own():
    """The mirror's TXT presentation, checked literally (not with the provider's helpers)."""
    pushed = []
    mirror = Rfc2136Mirror("127.0.0.1", 5354, ZONE, "provisioner", "c2VjcmV0", "hmac-sha256")
    mirror.push = pushed.append
    emulator = CloudflareEmulator(TOKEN, zones=[ZONE], on_write=mirror)
    emulator.add_record(ZONE, "t", "TXT", 'say "hi" \\o/ ' + "x" * 250)
    ((key, (ttl, (text,))),) = pushed[0].items()
    # 13 bytes of text, then 242 x: the first string is 255 bytes, the rest goes in a second
    assert text == '"say \\"hi\\" \\\\o/ ' + "x" * 242 + '" "' + "x" * 8 + '"'


def test_mirror_writes_names_in_rdata_as_absolute():
    pushed = []
    mirror = Rfc2136Mirror("127.0.0.1", 5354, ZONE, "provisioner", "c2VjcmV0", "hmac-sha256")
    mirror.push = pushed.append
    emulator = CloudflareEmulator(TOKEN, zones=[ZONE], on_write=mirror)
    emulator.add_record(ZONE, "_sip._tcp.example.test", "SRV", "10 5 5060 sip.example.test")
    emulator.add_record(ZONE, "www", "CNAME", "example.test")
    emulator.add_record(ZONE, "@", "CAA", data={"flags": 0, "tag": "issue", "value": "ca.example"})
    assert [list(p.values())[0][1] for p in pushed] == [
        ["10 5 5060 sip.example.test."], ["example.test."], ['0 issue "ca.example"']]


def test_the_calls_of_certbots_cloudflare_plugin(emulator):
    """What certbot-dns-cloudflare (python3-cloudflare 2.x) sends for a DNS-01 challenge."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    api = emulator.base_url
    status, zones = raw_request(f"{api}/zones?name={ZONE}&per_page=50", headers=auth)
    assert status == 200 and [z["name"] for z in zones["result"]] == [ZONE]
    zone = zones["result"][0]["id"]
    name = f"_acme-challenge.{ZONE}"
    status, created = raw_request(f"{api}/zones/{zone}/dns_records", "POST",
                                  {"type": "TXT", "name": name, "content": "chal-1", "ttl": 120},
                                  auth)
    assert status == 200 and created["result"]["ttl"] == 120
    status, listed = raw_request(
        f"{api}/zones/{zone}/dns_records?type=TXT&name={name}&content=chal-1&per_page=100",
        headers=auth)
    assert [r["id"] for r in listed["result"]] == [created["result"]["id"]]
    status, deleted = raw_request(f"{api}/zones/{zone}/dns_records/{created['result']['id']}",
                                  "DELETE", headers=auth)
    assert status == 200 and emulator.records(ZONE) == []
