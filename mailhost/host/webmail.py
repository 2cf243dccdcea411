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

Packages: ``php-fpm`` first, so that apt satisfies ``php``'s first alternative with it
(``libapache2-mod-php | php-fpm | php-cgi``: named after Roundcube, apt picks Apache's module
and apache2-bin); ``roundcube`` (the core, no web server), ``roundcube-sqlite3``,
``roundcube-plugins`` (managesieve). No debconf question: dbconfig-common is told (debconf
selections, set before the install) to make Roundcube's SQLite database itself
(/var/lib/dbconfig-common/sqlite3/roundcube, read through the package's
debian-db-roundcube.php).

Files: our ``/etc/roundcube/config.inc.php`` (replacing the package's sample, a ucf file that
an upgrade then leaves alone), the managesieve plugin's, and PHP-FPM's pool (the package's
``www.conf`` replaced by Roundcube's pool: ``pm = ondemand``, no worker while nobody uses it;
its socket at FPM_SOCKET, where nginx sends ``index.php``). Roundcube's ``des_key`` (it
encrypts the IMAP password kept in the session) is generated on the host once, into
DES_KEY_FILE (root:www-data, 640): it never travels and is never shown.

PHP-FPM's unit carries PHP's version (``php8.3-fpm`` on Ubuntu 24.04, ``php8.1-fpm`` on 22.04,
``php8.4-fpm`` on Debian 13): ``configure`` reads the version apt has (facts.DebianPackageVersion
of ``php-fpm``) and activates that unit itself, before nginx starts (as resolver.py does).
Turned off again: nginx no longer serves it (its server block goes) and the packages stay
installed, PHP-FPM idle (``pm = ondemand``: no worker).
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.operations import server

from mailhost.facts import DebianPackageVersion, known_state
from mailhost.host import units
from mailhost.host.dovecot import MANAGESIEVE_PORT, vacation
from mailhost.keys.steps import KeySteps
from mailhost.operations.files import write_template
from mailhost.settings import Settings
from mailhost.settings.fleet import ALONE, FleetView

PACKAGES = ("php-fpm", "roundcube", "roundcube-sqlite3", "roundcube-plugins")
UNITS: tuple[str, ...] = ()  # php<VERSION>-fpm, activated in configure (fpm_unit)
ETC = "/etc/roundcube"
CONFIG = f"{ETC}/config.inc.php"
MANAGESIEVE_CONFIG = f"{ETC}/plugins/managesieve/config.inc.php"
DES_KEY_FILE = f"{ETC}/mailhost-des-key.inc.php"
PHP_ETC = "/etc/php"
ROOTS = (ETC, PHP_ETC)
# Roundcube's public directory (index.php and the skins' files): nginx's root
DOCUMENT_ROOT = "/var/lib/roundcube/public_html"
FPM_SOCKET = "/run/php/roundcube-fpm.sock"
UPLOAD_MEGABYTES = 25  # the largest attachment; nginx's client_max_body_size a little more
IMAP = "ssl://127.0.0.1:993"
SUBMISSION = "tls://127.0.0.1:587"
# dbconfig-common makes the SQLite database, asking nothing (set before the install)
DEBCONF_SELECTIONS = ("roundcube-core roundcube/dbconfig-install boolean true\n"
                      "roundcube-core roundcube/database-type select sqlite3\n")
LOGIN_FORM_FIELD = "rcmloginuser"  # the login page's user field (the checks look for it)


def wanted(settings: Settings) -> bool:
    """Only with ``webmail = "roundcube"``."""
    return settings.webmail == "roundcube"


def preseed(settings: Settings) -> None:
    """dbconfig-common's answers for Roundcube, before the packages are installed (none is
    asked: SQLite, made by the package); nothing once Roundcube is there.

    + settings: webmail
    """
    if not wanted(settings) or known_state(CONFIG)[1] is not None:
        return
    server.shell(name="Roundcube's database: SQLite, made by dbconfig-common (debconf)",
                 commands=[f"printf %s {shlex.quote(DEBCONF_SELECTIONS)} | "
                           "debconf-set-selections"])


def fpm_unit(version: tuple[int, int] | None) -> str:
    """PHP-FPM's unit for a PHP version ((8, 3) -> php8.3-fpm)."""
    if version is None:
        raise ValueError("php-fpm: apt knows no version of it")
    return f"php{version[0]}.{version[1]}-fpm"


def pool_file(version: tuple[int, int]) -> str:
    """The pool PHP-FPM of that version reads (the package's www.conf, replaced)."""
    return f"{PHP_ETC}/{version[0]}.{version[1]}/fpm/pool.d/www.conf"


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
    unit = fpm_unit(version)
    des_key()
    write_template("webmail/config.inc.php.j2", CONFIG, settings, des_key_file=DES_KEY_FILE,
                   imap=IMAP, submission=SUBMISSION, upload=UPLOAD_MEGABYTES)
    write_template("webmail/managesieve.inc.php.j2", MANAGESIEVE_CONFIG, settings,
                   managesieve=f"tls://127.0.0.1:{MANAGESIEVE_PORT}",
                   vacation=vacation(settings))
    pool = write_template("webmail/php-fpm-pool.conf.j2", pool_file(version), settings,
                          socket=FPM_SOCKET, upload=UPLOAD_MEGABYTES)
    units.activate([unit], restart={unit} if pool else set())
    return set()
