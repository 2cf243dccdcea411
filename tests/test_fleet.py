"""Several hosts of one inventory as one mail system (mailhost.settings.fleet): a backup MX
derived from the mail host's own settings, the MX set and MTA-STS policy from the whole
inventory, and the backup's Postfix files, facts in -> files out."""

import pytest
from sample import sample_settings

from mailhost import paths
from mailhost.host import postfix
from mailhost.settings import SettingsError
from mailhost.settings.fleet import ALONE, check_fleet, fleet_view
from mailhost.zones.sync import records_by_zone, tlsa_records

PRIMARY = dict(mail_users=["alice@example.test", "bob@example.test"],
               mail_aliases={"sales@example.test": ["alice@example.test"],
                             "list@example.test": ["bob@example.test", "x@elsewhere.example"]})
BACKUP = dict(mail_hostname="mx2.example.test", ipv4="198.51.100.11", ipv6="2001:db8::11",
              mail_domains=[], mail_users=[], mail_aliases={}, backup_mx_for=["example.test"])


def fleet(**backup):
    return {"mail": sample_settings(**PRIMARY), "mx2": sample_settings(**{**BACKUP, **backup})}


def test_the_backup_holds_exactly_the_addresses_its_mail_host_takes():
    view = fleet_view(fleet(), "mx2")
    (held,) = view.held
    assert held.domain == "example.test"
    assert [h.hostname for h in held.mail_hosts] == ["mail.example.test"]
    assert held.recipients == ("alice@example.test", "bob@example.test", "list@example.test",
                               "postmaster@example.test", "sales@example.test")
    assert view.mx == {"example.test": ("mail.example.test", "mx2.example.test")}
    assert view.backups == ()


def test_the_mail_host_knows_its_backups_and_the_whole_mx_set():
    view = fleet_view(fleet(), "mail")
    assert view.held == ()
    assert [(b.hostname, b.addresses) for b in view.backups] == [
        ("mx2.example.test", ("198.51.100.11", "2001:db8::11"))]
    assert view.mx == {"example.test": ("mail.example.test", "mx2.example.test")}


def test_a_backup_of_a_domain_no_host_has_is_refused_in_one_line():
    hosts = fleet(backup_mx_for=["shop.test"], dns_zones=["example.test", "shop.test"])
    with pytest.raises(SettingsError) as raised:
        check_fleet(hosts)
    line = str(raised.value)
    assert line.startswith("mx2: settings: backup_mx_for = 'shop.test': expected a domain")
    assert "\n" not in line
    check_fleet(fleet())  # the inventory as it should be passes


def test_the_backups_postfix_takes_held_mail_for_known_addresses_and_hands_it_over_verified():
    settings = sample_settings(**BACKUP)
    view = fleet_view(fleet(), "mx2")
    main_cf = postfix.rendered("main.cf", settings, fleet=view)
    assert "\nrelay_domains = example.test\n" in main_cf
    assert "\nrelay_recipient_maps = hash:/etc/postfix/relay_recipients\n" in main_cf
    assert "\nsmtp_tls_policy_maps = hash:/etc/postfix/tls_policy\n" in main_cf
    assert "check_client_access cidr:/etc/postfix/etrn_clients, reject\n" in main_cf
    assert "\nmaximal_queue_lifetime = 5d\n" in main_cf
    assert "virtual_mailbox_domains = \n" in main_cf  # it holds no mailbox of its own
    assert postfix.relay_recipient_map(view).splitlines() == [
        "alice@example.test OK", "bob@example.test OK", "list@example.test OK",
        "postmaster@example.test OK", "sales@example.test OK"]
    assert postfix.tls_policy_map(view) == (
        "example.test secure match=mail.example.test\n"
        "[mail.example.test] secure match=mail.example.test\n")
    # to the mail host by its name, never by the domain's MX (it may still name this host)
    assert postfix.held_transport_map(view) == "example.test relay:[mail.example.test]\n"
    assert postfix.etrn_clients(view) == "198.51.100.10 OK\n2001:db8::10 OK\n"


def test_a_host_alone_relays_for_nobody():
    main_cf = postfix.rendered("main.cf", sample_settings(), fleet=ALONE)
    assert "relay_domains" not in main_cf and "smtp_tls_policy_maps" not in main_cf
    assert postfix.relay_recipient_map(ALONE) == postfix.tls_policy_map(ALONE) == ""
    assert postfix.held_transport_map(ALONE) == ""
    assert postfix.etrn_clients(ALONE) == ""


def test_the_mail_hosts_etrn_script_asks_each_backup_for_its_domains():
    view = fleet_view(fleet(), "mail")
    script = postfix.etrn_script(view, ["example.test"])
    assert "for host in ['mx2.example.test']:" in script
    assert "for domain in ['example.test']:" in script
    compile(script, "etrn", "exec")  # valid Python for the host's python3


def test_the_mail_hosts_rspamd_does_not_judge_again_what_its_backup_checked():
    from mailhost.host import rspamd
    from mailhost.operations.files import render
    view = fleet_view(fleet(), "mail")
    text = render("rspamd/settings.conf.j2", sample_settings(**PRIMARY), listen=rspamd.LISTEN,
                  from_rule=rspamd.FROM_RULE, owners={},
                  backup_mx=[a for b in view.backups for a in b.addresses])
    assert 'ip = ["198.51.100.11", "2001:db8::11"];' in text
    alone = render("rspamd/settings.conf.j2", sample_settings(), listen=rspamd.LISTEN,
                   from_rule=rspamd.FROM_RULE, owners={}, backup_mx=[])
    assert "mailhost_backup_mx" not in alone


def test_a_host_that_is_only_a_backup_has_no_srs_and_keeps_held_senders():
    from mailhost.host.mtas import mta_of
    backup = sample_settings(**BACKUP)
    assert "postsrsd" not in mta_of(backup).units
    main_cf = postfix.rendered("main.cf", backup, fleet=fleet_view(fleet(), "mx2"))
    assert "sender_canonical_maps" not in main_cf
    assert "postsrsd" in mta_of(sample_settings()).units
    assert "sender_canonical_maps = tcp:127.0.0.1:10001" in postfix.rendered(
        "main.cf", sample_settings())


def test_with_limit_the_zone_is_applied_by_a_host_in_the_run_and_leaves_the_others_unknowns(
        tmp_path):
    """--limit mx2 (or mail.example.test unreachable): mx2 applies example.test; the mail host's
    records still count from its settings; its DKIM key (not on this controller) and its TLSA
    (only the host can tell) are neither desired nor owned: left as they are."""
    from mailhost.run import MailRun
    hosts = fleet(secrets_dir=str(tmp_path / "mx2"))
    hosts["mail"] = sample_settings(**PRIMARY, secrets_dir=str(tmp_path / "mail"))
    read = []

    def read_host_key(name, path):
        read.append(name)
        return None

    run = MailRun(hosts, {}, in_run=frozenset({"mx2"}))
    assert run.zones_applied_by("mx2") == ["example.test"]
    assert run.zones_applied_by("mail") == []
    (zone,) = [z for z in records_by_zone(hosts, run._reader(read_host_key), None, run.in_run)]
    desired = {r.key: r.values for r in zone.desired}
    assert desired["example.test", "MX"] == ("10 mail.example.test", "20 mx2.example.test")
    assert desired["mail.example.test", "A"] == ("198.51.100.10",)
    assert ("mail._domainkey.example.test", "TXT") not in desired
    assert ("mail._domainkey.example.test", "TXT") not in zone.ownership.keys
    assert ("_25._tcp.mail.example.test", "TLSA") not in zone.ownership.keys
    assert "mail" not in read  # nothing is asked of a host outside the run
    # nor is its TLSA written or deleted after certbot (the TLSA-only plan)
    tlsa = tlsa_records(hosts, run._reader(read_host_key), "example.test", False, None,
                        run.in_run)
    assert tlsa is None or ("_25._tcp.mail.example.test", "TLSA") not in tlsa.ownership.keys
    everything = tlsa_records(hosts, lambda name, path: None, "example.test")
    assert ("_25._tcp.mail.example.test", "TLSA") in everything.ownership.keys
    assert run.counted_hosts("example.test").startswith(
        "hosts counted: mx2 (in this run), mail (not in this run:")
    everyone = MailRun(hosts, {})
    assert everyone.zones_applied_by("mail") == ["example.test"]
    assert everyone.counted_hosts("example.test") == ""



def test_a_host_that_is_only_a_backup_is_not_asked_for_a_users_login(monkeypatch):
    """No user lives on a backup MX: no submission or IMAP login check there (they would only
    say "not tried"); the host's other SMTP and IMAP checks stay."""
    import socket

    from mailhost.checks import imap, sieve, smtp
    from mailhost.host.mtas import mta_of
    from mailhost.secrets import Secrets

    def refused(*args, **kwargs):
        raise ConnectionRefusedError("no network in this test")
    monkeypatch.setattr(socket, "create_connection", refused)
    monkeypatch.setattr(smtp, "open_smtp", refused)

    def names(settings):
        found = (smtp.checks_of_address(settings, Secrets(), "198.51.100.10", mta_of(settings))
                 + imap.checks_of_address(settings, Secrets(), "198.51.100.10")
                 + sieve.checks_of_address(settings, Secrets(), "198.51.100.10"))
        return [r.name for r in found]
    backup, primary = names(sample_settings(**BACKUP)), names(sample_settings())
    logins = [n for n in primary
              if "authenticated submission" in n or "993 login" in n or "4190 login" in n]
    assert len(logins) == 3, primary
    assert not set(logins) & set(backup)
    assert set(backup) == set(primary) - set(logins)


# A domain moving from host "old" (now its backup MX) to host "mail" (move_from)
MOVED_TO = dict(**PRIMARY, move_from={"example.test": "old"})
OLD = dict(BACKUP, mail_hostname="old.example.test",
           backup_repository="sftp:root@backup.example:/r")


def moving(**new):
    return {"mail": sample_settings(**{**MOVED_TO, **new}), "old": sample_settings(**OLD)}


def test_a_move_is_the_new_hosts_to_receive_and_the_old_hosts_to_send():
    hosts = moving()
    check_fleet(hosts)
    new, old = fleet_view(hosts, "mail"), fleet_view(hosts, "old")
    assert [(m.domain, m.old, m.users) for m in new.moves_in] == [
        ("example.test", "old", ("alice@example.test", "bob@example.test"))]
    assert new.moves_out == () and old.moves_in == ()
    assert old.moves_out == ("example.test",)
    # meanwhile the old host is the domain's backup MX: what reaches it goes to the new host
    assert old.mx == {"example.test": ("mail.example.test", "old.example.test")}
    assert [h.hostname for h in old.held[0].mail_hosts] == ["mail.example.test"]


@pytest.mark.parametrize(("change", "hosts", "expected"), [
    ({"move_from": {"example.test": "gone"}}, None,
     "mail: settings: move_from = {'example.test': 'gone'}: expected a host of this inventory "
     "(old)"),
    ({}, {"backup_mx_for": [], "mail_domains": ["other.test"],
          "dns_zones": ["example.test", "other.test"]},
     "mail: settings: move_from = {'example.test': 'old'}: expected old to have example.test "
     "in backup_mx_for while the domain moves"),
    ({}, {"backup_repository": None},
     "mail: settings: move_from = {'example.test': 'old'}: expected old to have "
     "backup_repository"),
])
def test_a_move_the_inventory_cannot_carry_out_is_refused_in_one_line(change, hosts, expected):
    inventory = {"mail": sample_settings(**{**MOVED_TO, **change}),
                 "old": sample_settings(**{**OLD, **(hosts or {})})}
    with pytest.raises(SettingsError) as raised:
        check_fleet(inventory)
    line = str(raised.value)
    assert line.startswith(expected) and "\n" not in line


def test_move_from_names_a_domain_of_this_host_and_another_host():
    for value, expected in [({"shop.test": "old"}, "move_from = 'shop.test': expected a domain "
                             "of mail_domains"),
                            ({"example.test": "mail.example.test"},
                             "move_from = 'mail.example.test': expected another host")]:
        with pytest.raises(SettingsError) as raised:
            sample_settings(**{**MOVED_TO, "move_from": value})
        assert expected in str(raised.value)
        assert "\n" not in str(raised.value)


def test_a_move_to_a_secrets_dir_without_the_domains_dkim_key_is_refused(tmp_path):
    from pyinfra.api.exceptions import PyinfraError

    from mailhost.run import refuse_a_move_without_its_key
    key_dir = tmp_path / "old" / "dkim" / "example.test"
    key_dir.mkdir(parents=True)
    hosts = {"mail": sample_settings(**MOVED_TO, secrets_dir=str(tmp_path / "new")),
             "old": sample_settings(**OLD, secrets_dir=str(tmp_path / "old"))}
    with pytest.raises(PyinfraError) as raised:
        refuse_a_move_without_its_key(hosts)
    assert str(raised.value).startswith(
        "mail: settings: move_from = {'example.test': 'old'}: expected example.test's DKIM key "
        f"in this host's secrets_dir ({tmp_path}/new/dkim/example.test): copy {key_dir} there")
    (tmp_path / "new" / "dkim" / "example.test").mkdir(parents=True)
    refuse_a_move_without_its_key(hosts)  # copied: the move goes ahead
    refuse_a_move_without_its_key(moving())  # one secrets_dir for both (the sample's)


def test_the_receiving_script_merges_each_user_with_a_one_way_dsync_and_cleans_up():
    from mailhost.host import move
    from mailhost.operations.files import render
    old = sample_settings(**OLD)
    text = render("move/receive.sh.j2", old, domain="example.test", old="old",
                  environment="/etc/mailhost/backup/move-example.test/env",
                  sftp_command=None, tag=move.tag("example.test"),
                  staging="/var/lib/mailhost-move/example.test",
                  where="/etc/mailhost/backup/move-example.test",
                  users="alice@example.test bob@example.test",
                  marker=move.received_marker("example.test"), etrn=paths.ETRN_SCRIPT)
    assert "restic snapshots --tag mailhost-move-example.test --latest 1 --json" in text
    assert 'doveadm sync -1 -R -u "$user" "maildir:$source"' in text
    assert "for user in alice@example.test bob@example.test; do" in text
    assert f"{paths.ETRN_SCRIPT} >/dev/null 2>&1 || true" in text  # what old still holds
    assert text.rstrip().endswith(
        'rm -rf "$staging" /etc/mailhost/backup/move-example.test')
    assert "password" not in text.replace("RESTIC_PASSWORD_FILE", "")


def test_while_a_domain_moves_the_new_host_takes_it_before_the_old_one_relays_it():
    """The maps main.cf may start to read are written before it (the new host's mailbox maps
    too: it takes the domain at its reload; the old host's after its reload: dropped before
    it, its users would be refused); the old host hands the domain to the new one by name (the
    MX still names the old one). The order across the two hosts: tests/test_fleet_lab.py."""
    hosts = moving()
    new, old = fleet_view(hosts, "mail"), fleet_view(hosts, "old")
    assert postfix.maps_before_main_cf(new) == [
        "vmailbox", "virtual", "sender_login", "transport", "relay_recipients", "tls_policy"]
    assert postfix.maps_before_main_cf(old) == ["transport", "relay_recipients", "tls_policy"]
    assert postfix.held_transport_map(old) == "example.test relay:[mail.example.test]\n"
    main_cf = postfix.rendered("main.cf", sample_settings(**OLD), fleet=old)
    assert "\nrelay_domains = example.test\n" in main_cf


def test_the_plan_of_a_zone_whose_domain_moves_says_so():
    from mailhost.run import MailRun
    run = MailRun(moving(), {})
    assert run.moving_into("example.test") == (
        "moving: example.test from old to mail (its records change with it; the limit on the "
        "share of the zone one run changes does not apply)")
    assert MailRun(fleet(), {}).moving_into("example.test") == ""


def test_the_old_host_keeps_a_moving_domains_users_until_its_snapshot(monkeypatch):
    """Dropped from Dovecot before the old host's Postfix relays the domain, they would be
    refused at delivery there (and the mail bounced); kept, then gone after the snapshot."""
    from mailhost.host import users
    from mailhost.secrets import Secret, Secrets
    on_host = ["alice@example.test:{SHA512-CRYPT}$6$x:5000:5000::"
               "/var/mail/vhosts/example.test/alice/home::",
               "carol@shop.test:{SHA512-CRYPT}$6$y:5000:5000::/h::"]
    monkeypatch.setattr(users, "host_lines", lambda path: on_host)
    monkeypatch.setattr(users.sha512_crypt, "verify", lambda password, current: True)
    settings = sample_settings(mail_users=["alice@example.test"])
    secrets = Secrets(passwords={"alice@example.test": Secret("a long password here")})
    kept = users.host_dovecot_users(settings, secrets, ("shop.test",))
    assert kept.splitlines() == on_host
    assert users.host_dovecot_users(settings, secrets).splitlines() == on_host[:1]
