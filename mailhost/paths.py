"""Paths and ids on the mail host, defined once: the host modules use these names and every
template gets them as ``p`` (``{{ p.MAILBOX_ROOT }}``)."""

from __future__ import annotations

# Mailboxes: one Maildir per user, MAILBOX_ROOT/DOMAIN/USER, owned by vmail (both MTAs)
VMAIL_UID = 5000
VMAIL_GID = VMAIL_UID
MAILBOX_ROOT = "/var/mail/vhosts"
# the users and their password hashes (Dovecot passwd-file; Postfix SASL asks Dovecot)
DOVECOT_USERS = "/etc/dovecot/mailhost-users"

# mailhost's own directory on the host
MAILHOST_ETC = "/etc/mailhost"
# the certificate every MTA reads: links to certbot's live one, or to the self-signed fallback
TLS_DIR = "/etc/mailhost/tls"
TLS_CERT = f"{TLS_DIR}/fullchain.pem"
TLS_KEY = f"{TLS_DIR}/privkey.pem"
TLS_DEPLOY_HOOK = f"{TLS_DIR}/deploy-hook"
# a DANE key rollover (mailhost.keys.dane): the next key, when its TLSA was first answered
# everywhere, the script that makes it and switches to it, and the pair the daemons read
# while certbot renews over the next key
NEXT_KEY = f"{TLS_DIR}/next-key.pem"
NEXT_KEY_SEEN = f"{TLS_DIR}/next-key.seen"
TLS_KEY_ROLLOVER = f"{TLS_DIR}/key-rollover"
TLS_HELD = f"{TLS_DIR}/held"
# DKIM private keys: HOST_DKIM_DIR/DOMAIN/SELECTOR.KIND.pem
HOST_DKIM_DIR = f"{MAILHOST_ETC}/dkim"
# there from before the first configuration file of a run changes until every unit has been
# restarted (host.put_text, units.converge): a run stopped in between leaves it, and the next
# run restarts the services the stopped one owed
RESTARTS_OWED = f"{MAILHOST_ETC}/restarts-owed"
# secret files are staged here (root only) before they are installed
SECRET_STAGING = f"{MAILHOST_ETC}/private"
ACME_DIR = f"{MAILHOST_ETC}/acme"
ACME_DNS_CREDENTIALS = f"{ACME_DIR}/dns-credentials.ini"
ACME_CA_BUNDLE = f"{MAILHOST_ETC}/acme-ca-bundle.pem"
LETSENCRYPT_LIVE = "/etc/letsencrypt/live"
# what the backup holds, what cannot be regenerated (mailhost.host.backup; certbot's directory
# too when DANE pins its key): a local repository is never inside one of them
BACKED_UP = (MAILBOX_ROOT, HOST_DKIM_DIR)
CERTBOT_DIR = "/etc/letsencrypt"

# certbot's renewals
CERTBOT_TIMER = "certbot.timer"

# chasquid
CHASQUID_CONFIG = "/etc/chasquid"
CHASQUID_DATA = "/var/lib/chasquid"
CHASQUID_QUEUE = f"{CHASQUID_DATA}/queue"
# Postfix's queues that hold messages (the spool exists while the package is installed)
POSTFIX_QUEUES = tuple(f"/var/spool/postfix/{q}" for q in
                       ("maildrop", "incoming", "active", "deferred", "hold"))
CHASQUID_DELIVER = "/usr/local/lib/mailhost/chasquid-deliver"


def live_certificate_dir(hostname: str) -> str:
    """Where certbot keeps the current certificate of a hostname."""
    return f"{LETSENCRYPT_LIVE}/{hostname}"


def maildir(domain: str, user: str) -> str:
    return f"{MAILBOX_ROOT}/{domain}/{user}"


# Dovecot's home of a user (their Sieve scripts, vacation's record of who was answered): this
# directory of their Maildir, without a leading dot (Maildir++ lists dot names as folders, so
# the dot files Dovecot keeps in a home cannot live in the Maildir itself); the backups keep it
DOVECOT_HOME_DIR = "home"


def dovecot_home(domain: str, user: str) -> str:
    return f"{maildir(domain, user)}/{DOVECOT_HOME_DIR}"

# rspamd (loopback): Postfix's milter, and the HTTP scanner chasquid's hook and the checks ask
RSPAMD_MILTER = "127.0.0.1:11332"
RSPAMD_SCANNER = "127.0.0.1:11333"

# the backup (host/backup writes it, checks/backup reads what it left)
MAILHOST_LIB = "/usr/local/lib/mailhost"
BACKUP_RESTIC = f"{MAILHOST_LIB}/restic"  # restic with this host's repository and credentials
BACKUP_SERVICE = "mailhost-backup.service"
BACKUP_TAG = "mailhost"  # the tag of this tool's snapshots
# a mail host with backup MX hosts asks them for held mail (ETRN) when Postfix starts
ETRN_SCRIPT = f"{MAILHOST_LIB}/etrn"


def php_fpm_unit(version: tuple[int, int] | None) -> str:
    """PHP-FPM's unit for a PHP version ((8, 3) -> php8.3-fpm): the webmail's, and what its
    check asks about."""
    if version is None:
        raise ValueError("php-fpm: apt knows no version of it")
    return f"php{version[0]}.{version[1]}-fpm"
