"""Webmail (``webmail = "roundcube"``): the distribution's Roundcube at
``https://MAIL_HOSTNAME/``, served by the host's nginx (mailhost.host.nginx) through PHP-FPM,
its own data in SQLite; kept up to date by the distribution (unattended-upgrades, like every
package here). A component of both MTAs, there only when on (``wanted``).

A user logs in with the mailbox's address and password: Roundcube asks Dovecot (IMAP over TLS
on 127.0.0.1:993), sends through submission (127.0.0.1:587, STARTTLS, the user's own login, so
the From rule and DKIM signing apply as to any mail client) and keeps filters and vacation
replies over ManageSieve (its managesieve plugin, 127.0.0.1:4190, STARTTLS). These connections
never leave the host: TLS because Dovecot and submission want it, the certificate not verified
there (it is the host's own, self-signed until the first ACME one, and the host's CA store
need not hold its CA: the lab's Pebble).

Packages: ``php-fpm``, ``roundcube`` (the core, no web server), ``roundcube-sqlite3``,
``roundcube-plugins`` (managesieve). Apache's PHP module is pinned away first (APT_PIN,
priority -1): ``php`` depends on ``libapache2-mod-php | php-fpm | php-cgi`` and Ubuntu 22.04's
roundcube-core on ``libapache2-mod-php | php``, and apt takes a first alternative (with
apache2-bin) even with php-fpm in the same transaction; pinned, it takes php-fpm, now and on
every upgrade. No debconf question: dbconfig-common is told (debconf selections, set before
the install) to make Roundcube's SQLite database itself
(/var/lib/dbconfig-common/sqlite3/roundcube, read through the package's
debian-db-roundcube.php).

Files (in the setting names of the Roundcube version apt has: 1.6 renamed some, Ubuntu 22.04
has 1.5): our ``/etc/roundcube/config.inc.php`` (replacing the package's sample, a ucf file that
an upgrade then leaves alone), the managesieve plugin's, and PHP-FPM's pool (the package's
``www.conf`` replaced by Roundcube's pool: ``pm = ondemand``, no worker while nobody uses it;
its socket at FPM_SOCKET, where nginx sends ``index.php``). Roundcube's ``des_key`` (it
encrypts the IMAP password kept in the session) is generated on the host once, into
DES_KEY_FILE (root:www-data, 640): it never travels and is never shown.

PHP-FPM's unit carries PHP's version (``php8.3-fpm`` on Ubuntu 24.04, ``php8.1-fpm`` on 22.04,
``php8.4-fpm`` on Debian 13): ``configure`` reads the version apt has (facts.DebianPackageVersion
of ``php-fpm``) and activates that unit itself, before nginx starts (as resolver.py does).
Turned off again (``retired``: off, and our des_key file on the host): nginx no longer serves
it (its server block goes), PHP-FPM is stopped and disabled (deploy.py puts its unit in
units.converge's ``stopped``); the packages, Roundcube's files and its database (the users'
contacts and preferences) stay, so turning it on again only starts it.
"""

from __future__ import annotations

import hashlib
import shlex

from pyinfra import host
from pyinfra.facts.files import Sha256File
from pyinfra.operations import server

from mailhost.facts import DebianPackageVersion, known_state
from mailhost.host import units
from mailhost.host.dovecot import MANAGESIEVE_PORT, vacation
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import put_text, render, write_template
from mailhost.paths import php_fpm_unit
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView

PACKAGES = ("php-fpm", "roundcube", "roundcube-sqlite3", "roundcube-plugins")  # after APT_PIN
UNITS: tuple[str, ...] = ()  # php<VERSION>-fpm, activated in configure (paths.php_fpm_unit)
ETC = "/etc/roundcube"
CONFIG = f"{ETC}/config.inc.php"
MANAGESIEVE_CONFIG = f"{ETC}/plugins/managesieve/config.inc.php"
DES_KEY_FILE = f"{ETC}/mailhost-des-key.inc.php"
PHP_ETC = "/etc/php"
APT_PIN = "/etc/apt/preferences.d/mailhost-webmail"
APT_PIN_TEXT = ("# Managed by mailhost (mailhost/host/webmail.py): PHP runs in PHP-FPM,\n"
                "# behind nginx; never Apache's module (php's and roundcube-core's first\n"
                "# alternative)\n"
                "Package: libapache2-mod-php*\nPin: release *\nPin-Priority: -1\n")
ROOTS = (ETC, APT_PIN)  # and PHP-FPM's pool file, asked alone (configure)
# Roundcube's public directory (index.php and the skins' files): nginx's root
DOCUMENT_ROOT = "/var/lib/roundcube/public_html"
FPM_SOCKET = "/run/php/roundcube-fpm.sock"
UPLOAD_MEGABYTES = 25  # the largest attachment; nginx's client_max_body_size a little more
IMAP = "ssl://127.0.0.1:993"
SUBMISSION = "tls://127.0.0.1:587"
# dbconfig-common makes the SQLite database, asking nothing (set before the install)
DEBCONF_SELECTIONS = ("roundcube-core roundcube/dbconfig-install boolean true\n"
                      "roundcube-core roundcube/database-type select sqlite3\n")


def wanted(settings: Settings) -> bool:
    """Only with ``webmail = "roundcube"``."""
    return settings.webmail == "roundcube"


def retired(settings: Settings) -> bool:
    """Off on a host that served it (our des_key file there; read by read_paths, which deploy.py
    asks for ROOTS while off)."""
    if wanted(settings):
        return False
    known, state = known_state(DES_KEY_FILE)
    return not known or state is not None


def stopped_units(settings: Settings) -> list[str]:
    """PHP-FPM's unit when the webmail was turned off on this host (units.converge stops and
    disables it); none otherwise (a PHP-FPM of the host's own is left alone)."""
    if not retired(settings):
        return []
    version = php_version()
    return [php_fpm_unit(version)] if version else []


def before_install(settings: Settings) -> None:
    """Before the packages are installed: Apache's PHP module pinned away (APT_PIN), and
    dbconfig-common's answers for Roundcube (none is asked: SQLite, made by the package; only
    while Roundcube is not there).

    + settings: webmail
    """
    if not wanted(settings):
        return
    put_text(APT_PIN, APT_PIN_TEXT, name="apt: never Apache's PHP module (PHP-FPM serves PHP)")
    if known_state(CONFIG)[1] is not None:
        return
    server.shell(name="Roundcube's database: SQLite, made by dbconfig-common (debconf)",
                 commands=[f"printf %s {shlex.quote(DEBCONF_SELECTIONS)} | "
                           "debconf-set-selections"])


def pool_file(version: tuple[int, int]) -> str:
    """The pool PHP-FPM of that version reads (the package's www.conf, replaced)."""
    return f"{PHP_ETC}/{version[0]}.{version[1]}/fpm/pool.d/www.conf"


def roundcube_release(version: tuple[int, int] | None) -> dict:
    """What the templates need of Roundcube's version: 1.6 renamed the servers' settings
    (``default_host`` -> ``imap_host``, ``smtp_server`` -> ``smtp_host``, the port in it, and
    the managesieve plugin's host likewise); Ubuntu 22.04 has 1.5."""
    legacy = version is not None and version < (1, 6)
    return {"legacy": legacy, "version": ".".join(map(str, version)) if version else "?"}


def php_version() -> tuple[int, int] | None:
    """PHP's (major, minor) as apt has it (php-fpm's version: 2:8.3+93ubuntu2 -> (8, 3))."""
    return host.get_fact(DebianPackageVersion, package="php-fpm")


def des_key() -> None:
    """Roundcube's des_key, generated on the host once (24 characters from /dev/urandom) into
    DES_KEY_FILE, readable by root and www-data only; never shown, never on the controller."""
    if known_state(DES_KEY_FILE)[1] is not None:
        return
    path = shlex.quote(DES_KEY_FILE)
    server.shell(name=f"Roundcube's des_key generated on the host ({DES_KEY_FILE})", commands=[
        f"[ -s {path} ] || {{ umask 027; k=$(head -c 18 /dev/urandom | base64) && "
        f"printf '<?php\\n$config[\"des_key\"] = \"%s\";\\n' \"$k\" > {path}.new && "
        f"chgrp www-data {path}.new && mv {path}.new {path}; }}"])


def configure(settings: Settings, secrets, steps: KeySteps | None = None,
              fleet: FleetView = ALONE) -> set[str]:
    """Roundcube's configuration, its managesieve plugin's, the des_key, PHP-FPM's pool; PHP-FPM
    running and enabled (restarted when its pool changed). Nothing for nginx to restart here:
    nginx.conf is nginx's.

    + settings: webmail, mail_hostname, mta (vacation replies with Postfix only)
    """
    version = php_version()
    unit = php_fpm_unit(version)
    des_key()
    release = roundcube_release(host.get_fact(DebianPackageVersion, package="roundcube-core"))
    write_template("webmail/config.inc.php.j2", CONFIG, settings, des_key_file=DES_KEY_FILE,
                   imap=IMAP, submission=SUBMISSION, upload=UPLOAD_MEGABYTES, **release)
    write_template("webmail/managesieve.inc.php.j2", MANAGESIEVE_CONFIG, settings,
                   managesieve=f"tls://127.0.0.1:{MANAGESIEVE_PORT}",
                   vacation=vacation(settings), **release)
    pool = render("webmail/php-fpm-pool.conf.j2", settings, socket=FPM_SOCKET,
                  upload=UPLOAD_MEGABYTES)
    # below read_paths' depth under /etc/php, and its directory is only known now: asked here
    in_place = host.get_fact(Sha256File, path=pool_file(version)) == \
        hashlib.sha256(pool.encode()).hexdigest()
    pool_changed = not in_place and put_text(pool_file(version), pool)
    units.activate([unit], restart={unit} if pool_changed else set())
    return set()
