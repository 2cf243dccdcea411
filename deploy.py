"""Turn a VPS into a mail host and publish its DNS records.

    pyinfra inventory/prod.py deploy.py          # apply (asks first; -y to skip)
    pyinfra inventory/prod.py deploy.py --dry    # show every host and DNS change, write nothing

The story, in order: settings of every host validated once (mailhost.settings) -> the host's
base, firewall and DKIM keys -> the MTA with a certificate that exists now -> a domain moving
between hosts: its mailboxes (mailhost.host.move) -> the DNS records
of each zone, planned and applied once per zone (mailhost.zones.sync) -> the ACME certificate
(its HTTP-01 challenge needs the A record) -> verification.
"""

from functools import partial

from pyinfra import host, inventory, logger
from pyinfra.api.exceptions import PyinfraError

from mailhost import paths
from mailhost.facts import DkimPublicKey, known_lines, read_paths
from mailhost.host import backup, base, firewall, move, nginx, resolver, tls, units, users, webmail
from mailhost.host.mtas import mta_of, others, refuse_a_switch_while_mail_waits
from mailhost.keys import dane
from mailhost.keys.dkim import host_state_path, published_everywhere, rotation_step
from mailhost.keys.rotation import describe
from mailhost.lookup import every_server_answers
from mailhost.operations import dkim, dns, restarts, verify
from mailhost.run import current_run

run = current_run(inventory)
settings = run.settings[host.name]
secrets = run.secrets[host.name]
mta = mta_of(settings)


def read_host_key(host_name: str, path: str) -> str | None:
    """The public half of a DKIM key on a host of the inventory (None: no key, or the host is
    not managed here)."""
    if not run.settings[host_name].mail_manage_host:
        return None
    return inventory.get_host(host_name).get_fact(DkimPublicKey, path=path)


if settings.mail_manage_host:
    refuse_a_switch_while_mail_waits(settings)
    # every file and directory the deploy writes, read in one command: what is in place
    # already costs no further round trip
    # (nginx's and the webmail's too when off: what a host that served them has left)
    read_paths([paths.RESTARTS_OWED, *base.ROOTS, *tls.roots(settings), *users.ROOTS, *mta.roots,
                *([] if nginx.wanted(settings) else nginx.ROOTS),
                *([] if webmail.wanted(settings) else webmail.ROOTS)],
               contents=[*users.hash_files(settings), paths.NEXT_KEY_SEEN,
                         *(host_state_path(d) for d in settings.mail_domains)])
    base.configure(settings)
    webmail.before_install(settings)  # no Apache module, the database's debconf answers
    base.install_packages(["ufw", *tls.packages(settings), *mta.packages,
                           *backup.packages(settings)])
    firewall.configure(mta.open_ports(settings))

# DKIM: each domain's rotation advances at most one phase (mailhost.keys.rotation); its line says
# the phase and the next step (what --dry shows)
for domain in settings.mail_domains:
    # the host's copy of the rotation state (read_paths read it: no further round trip)
    state_lines = known_lines(host_state_path(domain))[1] if settings.mail_manage_host else None
    try:
        step = rotation_step(
            settings, domain,
            host_text="\n".join(state_lines) if state_lines else None,
            read_host_key=partial(read_host_key, host.name),
            visible=published_everywhere(settings),
        )
    except ValueError as error:  # an unreadable state file: one line, nothing changed
        raise PyinfraError(f"{host.name}: {error}") from None
    run.steps.keep_dkim(settings, domain, step)  # the MTA signs and the DNS publishes by it
    logger.info(describe(domain, step))
    dkim.domain_keys(settings, domain, step, owner=mta.dkim_signer)

if settings.mail_manage_host:
    # DANE: the TLS key's rollover advances at most one phase (mailhost.keys.dane), said like DKIM's
    rollover = tls.key_rollover(settings, partial(read_host_key, host.name))
    run.steps.keep_tls(settings, rollover)  # the TLSA records follow it
    if settings.dane == "auto":
        logger.info(dane.describe(settings.mail_hostname, rollover))
    tls.configure(settings, secrets, mta)
    tls.advance_rollover(settings, rollover)
    restart = mta.configure(settings, secrets, run.steps, run.fleet[host.name])
    # switching MTAs: the old one's units stop first (port 25 released), those both MTAs
    # share (rspamd) stay; certbot's renewal timer runs from here on; MTA-STS turned off:
    # nginx stops, then its files go; the webmail turned off: PHP-FPM stops
    units.converge(running=[*mta.units, *tls.TIMERS],
                   stopped=[*nginx.stopped_units(settings), *webmail.stopped_units(settings),
                            *(u for other in others(settings) for u in other.units
                              if u not in mta.units)],  # Dovecot and rspamd serve both
                   restart=restart | restarts.owed_by_a_stopped_run(mta.units))
    nginx.remove_leftovers(settings)
    # a domain moving between hosts (move_from): the old host, relaying it now, takes the last
    # snapshot of its mailboxes; then the new host merges them; both before its MX changes below
    move.send_and_receive(host.name, run.fleet[host.name], run.settings, run.secrets)
    restarts.done()

for zone in run.zones_applied_by(host.name):
    preview = run.preview(zone, read_host_key)
    dns.zone_records(
        name=f"DNS records of {zone}",
        zone=zone,
        preview=preview,
        refresh=lambda zone=zone: run.zone_sync(zone, read_host_key),
        memory=run.memory(zone),
    )
    if settings.mail_manage_host and not preview.empty:
        resolver.forget(zone)  # the host's unbound may hold the zone's old (negative) answers

if settings.mail_manage_host:
    tls.obtain_certificate(settings)
    tls.switch_key(settings, rollover)
    # DANE on a first deploy, or after a rollover's switch: the TLSA of the key certbot now
    # uses (mailhost.keys.dane)
    for zone in run.zones_applied_by(host.name):
        tlsa_plan = run.tlsa_preview(zone, read_host_key)
        if tlsa_plan is not None:
            dns.zone_records(
                name=f"DANE: TLSA of the new certificate's key in {zone}",
                zone=zone,
                preview=tlsa_plan,
                refresh=lambda zone=zone: run.tlsa_sync(zone, read_host_key),
                served=partial(every_server_answers, settings),  # before the checks
            )
            resolver.forget(zone)

if settings.mail_manage_host:
    verify.checks(name="Checks of the mail host", settings=settings, secrets=secrets, mta=mta,
                  fleet=run.fleet[host.name])
