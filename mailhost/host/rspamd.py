"""rspamd: checks inbound mail before it is stored or forwarded, for both MTAs.

SPF, DKIM, DMARC and ARC are verified and every inbound message gets rspamd's
Authentication-Results; a DMARC failure of a ``p=reject`` domain and a high score (GTUBE
included) are refused at SMTP time, a middle score gets ``X-Spam: Yes`` (Sieve files it into
Junk). Postfix asks it as a milter (the proxy worker, paths.RSPAMD_MILTER); chasquid's
post-data hook asks the normal worker over HTTP (``/checkv2`` on paths.RSPAMD_SCANNER) for mail
that is not authenticated.

It also holds Postfix's From rule for the host's own users (``rspamd.local.lua``, rendered
from the same owners as chasquid's hook): one From address, owned by the authenticated user,
and Sender/Resent-From alike. Submission defers while rspamd does not answer (master.cf).

rspamd never signs (OpenDKIM and chasquid do). Redis only with ``greylisting = True``: no
module enabled here needs it otherwise (greylisting does), and it costs memory on a small VPS.
rspamd resolves through the host's resolver (/etc/resolv.conf).
A component of both MTAs (mailhost.host.mtas).
"""

from __future__ import annotations

from types import MappingProxyType

from pyinfra.operations import server

from mailhost.host import base, units
from mailhost.host.users import sender_owners
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import write_template
from mailhost.paths import RSPAMD_MILTER, RSPAMD_SCANNER
from mailhost.secrets import Secrets
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView

PACKAGES = ("rspamd",)
UNITS = ("rspamd",)
# rspamd's start ends once its scanner answers (a systemd drop-in running READY_SCRIPT)
READY_DROP_IN = "/etc/systemd/system/rspamd.service.d/mailhost-ready.conf"
READY_SCRIPT = "/usr/local/lib/mailhost/rspamd-ready"
ROOTS = ("/etc/rspamd/local.d", "/etc/rspamd/rspamd.local.lua", READY_DROP_IN, READY_SCRIPT)
REDIS_PACKAGE = "redis-server"
REDIS_UNIT = "redis-server"

CONTROLLER = "127.0.0.1:11334"
REDIS = "127.0.0.1:6379"  # only with greylisting
FROM_RULE = "MAILHOST_FROM_NOT_OWNED"  # the Lua rule's symbol
LISTEN = MappingProxyType({"milter": RSPAMD_MILTER, "normal": RSPAMD_SCANNER,
                           "controller": CONTROLLER, "redis": REDIS})

# /etc/rspamd/local.d/NAME from templates/rspamd/NAME.j2
LOCAL_FILES = ("options.inc", "worker-normal.inc", "worker-proxy.inc", "worker-controller.inc",
               "actions.conf", "milter_headers.conf", "dmarc.conf", "dkim_signing.conf",
               "arc.conf", "greylist.conf", "settings.conf")


def files(settings: Settings) -> dict[str, str]:
    """Host path -> template of every file rspamd reads from us."""
    result = {f"/etc/rspamd/local.d/{name}": f"rspamd/{name}.j2" for name in LOCAL_FILES}
    result["/etc/rspamd/rspamd.local.lua"] = "rspamd/rspamd.local.lua.j2"
    return result


def configure(settings: Settings, secrets: Secrets, steps: KeySteps | None = None,
              fleet: FleetView = ALONE) -> set[str]:
    """rspamd's local configuration and the From rule; Redis when greylisting is on; what to
    restart.

    + settings: greylisting (Redis installed and started), spam_test_patterns, the users and
      aliases (who owns which From address)
    + fleet: the host's backup MX hosts, whose hand-overs are not judged again
    """
    if settings.greylisting:
        base.install_packages([REDIS_PACKAGE])
        units.activate([REDIS_UNIT])
    scanner_host, _, scanner_port = RSPAMD_SCANNER.rpartition(":")
    write_template("rspamd/ready.sh.j2", READY_SCRIPT, settings, mode="755",
                   host=scanner_host, port=scanner_port)
    if write_template("rspamd/mailhost-ready.conf.j2", READY_DROP_IN, settings,
                      ready=READY_SCRIPT):
        server.shell(name="systemd reads rspamd's drop-in", commands=["systemctl daemon-reload"])
    owners = sender_owners(settings)
    # mail handed over by the host's backup MX hosts was checked there on arrival
    backup_mx = [a for b in fleet.backups for a in b.addresses]
    changed = [write_template(template, path, settings, listen=LISTEN, from_rule=FROM_RULE,
                              owners=owners, backup_mx=backup_mx)
               for path, template in files(settings).items()]
    return set(UNITS) if any(changed) else set()
