"""The lab's "old provider": imap.old.example, an IMAPS server (Dovecot) in the receiver's
namespace holding alice's years of mail, for ``scripts/import-mail`` to bring over.

Debian's dovecot-core and dovecot-imapd are unpacked with ``dpkg -x`` into the lab's cache
(nothing installed on the controller, no service started by a package script). Dovecot runs
from its compiled-in paths (/usr/lib/dovecot...): the namespace's private mount namespace
(``ip netns exec`` gives the process its own) lays the unpacked /usr over the controller's
with a read-only overlay, and its /etc/passwd is the controller's plus Dovecot's two
unprivileged users and their groups (as backup_target does for sshd): the controller is not
touched.

The mailbox (``alice@old.example``) is written as Maildir files once (``write_mailbox``): folders
with non-ASCII names, flags and keywords, 8-bit messages, one of 20 MB and 5,000 small ones;
each file's mtime is its internal date. Its password is ``import_passwords."alice@example.test"``
in the lab's secrets file, where ``scripts/import-mail inventory/lab.py`` finds it. Its
certificate comes from the lab CA, which every lab VPS trusts (relay.trust_lab_ca).
``scripts/lab up --old-provider`` starts it (once started, later ``up`` keep it running);
``down`` stops it by PID.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from . import backup_target, certs
from .common import (
    CACHE_DIR,
    LANE,
    PREFIX_LEN4,
    PREFIX_LEN6,
    Paths,
    Proc,
    accepts_connections,
    cache_lock,
    read_secrets,
    run,
    spawn,
    wait_for,
)

OLD4, OLD6 = LANE.ipv4(40), LANE.ipv6(40)
OLD_DOMAIN = "old.example"
OLD_HOSTNAME = f"imap.{OLD_DOMAIN}"
IMAPS_PORT = 993
IMAP_URL = f"imaps://{OLD_HOSTNAME}:{IMAPS_PORT}"
# the same server under a name its certificate does not hold: an import from there must fail
UNCERTIFIED_NAME = f"other.{OLD_DOMAIN}"
OLD_USER = f"alice@{OLD_DOMAIN}"
LOCAL_USER = "alice@example.test"  # whose import password the secrets file holds
DOVECOT_ROOT = CACHE_DIR / "dovecot"  # Debian's packages, unpacked
PACKAGES = ("dovecot-core", "dovecot-imapd")
MAIL_UID = 65532  # the mailbox's owner (only inside the namespace's /etc/passwd)
SYSTEM_USERS = {"dovecot": 65531, "dovenull": 65530, "oldmail": MAIL_UID}

# the mailbox: IMAP folder name -> messages (separator "/"); SMALL small ones in INBOX
SMALL = 5000
BIG_BYTES = 20 * 1024 * 1024
KEYWORD = "$Important"
FOLDERS = {
    "INBOX": SMALL,
    "Sent": 3,
    "Drafts": 1,
    "Archive/2019": 3,  # the first is the 20 MB message
    "Reçus": 2,
    "Projets/Été 2024": 2,
    "日本語": 1,
}
MESSAGES = sum(FOLDERS.values())
FIRST_DATE = 1262304000  # 2010-01-01: internal dates an hour apart from here


def mutf7(name: str) -> str:
    """A folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3), as Maildir++ keeps it."""
    out, run_ = [], []

    def flush():
        if run_:
            data = "".join(run_).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            run_.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7e:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            run_.append(char)
    flush()
    return "".join(out)


def flags_of(folder: str, index: int) -> str:
    """Maildir info letters of message INDEX of FOLDER: a mix of every flag and a keyword."""
    if folder == "Drafts":
        return "D"
    if folder == "Sent":
        return "S"
    letters = ""
    if index % 2 == 0:
        letters += "S"
    if index % 7 == 0:
        letters += "F"
    if index % 5 == 0:
        letters += "R"
    if folder == "INBOX" and index % 11 == 0:
        letters += "a"  # the folder's keyword 0: KEYWORD
    return "".join(sorted(letters, key=lambda c: (c.islower(), c)))


def message_bytes(folder: str, index: int, date: int) -> bytes:
    """One message; folders other than INBOX get 8-bit UTF-8 headers and bodies."""
    when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(date))
    tag = hashlib.sha256(folder.encode()).hexdigest()[:8]
    eight_bit = folder != "INBOX"
    subject = f"Grüße {index} aus {folder}" if eight_bit else f"message {index}"
    body = (f"Bonjour Alice, message {index} de « {folder} ». Ça va ? 日本語のテキスト.\n"
            if eight_bit else f"Hello Alice, this is message {index}.\n")
    head = (f"From: Old Friend <friend{index % 50}@old.example>\nTo: {OLD_USER}\n"
            f"Subject: {subject}\nDate: {when}\nMessage-ID: <{tag}.{index}@old.example>\n"
            "MIME-Version: 1.0\n")
    if folder == "Archive/2019" and index == 0:
        boundary = "big-attachment"
        blob = base64.encodebytes(hashlib.sha256(b"seed").digest() * (BIG_BYTES // 44))
        return (head + f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
                f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n"
                f"Content-Transfer-Encoding: 8bit\n\n{body}\n--{boundary}\n"
                "Content-Type: application/octet-stream; name=big.bin\n"
                "Content-Transfer-Encoding: base64\n\n").encode() + blob + (
                    f"\n--{boundary}--\n").encode()
    charset = "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n" \
        if eight_bit else "Content-Type: text/plain; charset=us-ascii\n"
    return (head + charset + "\n" + body).encode()


def directory(paths: Paths) -> Path:
    """This lane's old provider: outside the checkout, beside the backup target's, so that
    Dovecot's unprivileged users can reach it (a checkout may sit below a private folder)."""
    return backup_target.directory(paths).parent / "old-provider"


def mailbox_dir(paths: Paths) -> Path:
    return directory(paths) / "mail"


def write_mailbox(paths: Paths) -> Path:
    """alice's Maildir (once; a complete one is kept): every folder of FOLDERS, each message
    a file whose mtime is its internal date and whose name carries its flags."""
    root = mailbox_dir(paths)
    done = root.parent / "mailbox.done"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    date = FIRST_DATE
    for folder, count in FOLDERS.items():
        where = root if folder == "INBOX" else root / ("." + mutf7(folder).replace("/", "."))
        for sub in ("cur", "new", "tmp"):
            (where / sub).mkdir(parents=True, exist_ok=True)
        if folder == "INBOX":
            (where / "dovecot-keywords").write_text(f"0 {KEYWORD}\n")
        else:
            (where / "maildirfolder").touch()
        for index in range(count):
            data = message_bytes(folder, index, date)
            name = (f"{date}.M{index}P1.{OLD_HOSTNAME},S={len(data)}:2,"
                    f"{flags_of(folder, index)}")
            path = where / "cur" / name
            path.write_bytes(data)
            os.utime(path, (date, date))
            date += 3600
    (root / "subscriptions").write_text(
        "".join(f"{mutf7(f)}\n" for f in FOLDERS if f != "INBOX"))
    for directory, _, files in os.walk(root):
        os.chown(directory, MAIL_UID, MAIL_UID)
        for name in files:
            os.chown(os.path.join(directory, name), MAIL_UID, MAIL_UID)
    done.write_text(f"{MESSAGES}\n")
    return root


def ensure_password(paths: Paths) -> str:
    """The old provider's password of OLD_USER, kept in the lab's secrets file as
    ``import_passwords."alice@example.test"`` (generated once; a top-level dotted key, before
    any table)."""
    text = paths.secrets_file.read_text()
    if "import_passwords." not in text:
        paths.secrets_file.write_text(
            f'import_passwords."{LOCAL_USER}" = "{secrets.token_urlsafe(18)}"\n' + text)
    return read_secrets(paths)["import_passwords"][LOCAL_USER]


def ssha256(password: str) -> str:
    """Dovecot's {SSHA256} scheme: base64(sha256(password + salt) + salt)."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha256(password.encode() + salt).digest()
    return "{SSHA256}" + base64.b64encode(digest + salt).decode()


def ensure_dovecot() -> Path:
    """Debian's dovecot-core and dovecot-imapd unpacked under DOVECOT_ROOT (once)."""
    with cache_lock("dovecot"):
        if (DOVECOT_ROOT / "usr/sbin/dovecot").is_file():
            return DOVECOT_ROOT
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as work:
            subprocess.run(["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download",
                            *PACKAGES], cwd=work, check=True, capture_output=True, timeout=300)
            unpacked = Path(work) / "root"
            for deb in Path(work).glob("*.deb"):
                run("dpkg", "-x", str(deb), str(unpacked))
            shutil.rmtree(DOVECOT_ROOT, ignore_errors=True)
            unpacked.rename(DOVECOT_ROOT)
    return DOVECOT_ROOT


def config_text(folder: Path, cert: Path, key: Path) -> str:
    return f"""# the lab's old provider (lab/old_provider.py)
base_dir = {folder}/run
state_dir = {folder}/state
instance_name = mhlab-old-provider
listen = {OLD4}, {OLD6}
protocols = imap
log_path = /dev/stderr
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = {folder}/users
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_UID} home={folder / 'mail'}
}}
mail_location = maildir:~
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {IMAPS_PORT}
  }}
}}
"""


def start(paths: Paths, exec_prefix: list[str], device: str = "eth0") -> Proc:
    """Add the old provider's addresses to the namespace's ``device`` and start Dovecot there;
    return its PID once it accepts IMAPS on both addresses."""
    run(*exec_prefix, "ip", "addr", "replace", f"{OLD4}/{PREFIX_LEN4}", "dev", device)
    run(*exec_prefix, "ip", "-6", "addr", "replace", f"{OLD6}/{PREFIX_LEN6}", "dev", device,
        "nodad")
    root = ensure_dovecot()
    folder = directory(paths)
    for parent in reversed(folder.parents[:2]):  # PRIVATE_ROOT and the lane's folder
        parent.mkdir(mode=0o755, exist_ok=True)
        parent.chmod(0o755)
    folder.mkdir(mode=0o755, exist_ok=True)
    write_mailbox(paths)
    password = ensure_password(paths)
    for sub in ("run", "state"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    users = folder / "users"
    users.write_text(f"{OLD_USER}:{ssha256(password)}\n")
    users.chmod(0o600)
    os.chown(users, SYSTEM_USERS["dovecot"], SYSTEM_USERS["dovecot"])  # Dovecot's auth reads it
    cert, key = certs.ensure_leaf(paths.ca, "old-provider", [OLD_HOSTNAME], [OLD4, OLD6],
                                  paths.ca)
    config = folder / "dovecot.conf"
    config.write_text(config_text(folder, cert, key))
    passwd = folder / "passwd"
    accounts = Path("/etc/passwd").read_text()
    accounts += "".join(f"{name}:x:{uid}:{uid}:mailhost lab old provider:/nonexistent:"
                        "/usr/sbin/nologin\n" for name, uid in SYSTEM_USERS.items()
                        if not any(line.startswith(f"{name}:") for line in accounts.splitlines()))
    passwd.write_text(accounts)
    passwd.chmod(0o644)
    group = folder / "group"
    groups = Path("/etc/group").read_text()
    groups += "".join(f"{name}:x:{gid}:\n" for name, gid in SYSTEM_USERS.items()
                      if not any(line.startswith(f"{name}:") for line in groups.splitlines()))
    group.write_text(groups)
    group.chmod(0o644)
    q = shlex.quote
    script = (f"mount --bind {q(str(passwd))} /etc/passwd && "
              f"mount --bind {q(str(group))} /etc/group && "
              f"mount -t overlay mhlab-dovecot -o lowerdir={q(str(root / 'usr'))}:/usr /usr && "
              f"exec /usr/sbin/dovecot -F -c {q(str(config))}")
    log = paths.logs / "old-provider.log"
    proc = spawn([*exec_prefix, "sh", "-c", script], log)
    wait_for(lambda: accepts_connections(OLD4, IMAPS_PORT)
             and accepts_connections(OLD6, IMAPS_PORT), 20, "old provider (Dovecot)",
             proc=proc, log=log)
    return proc


def status(paths: Paths, running: bool) -> dict:
    """The old provider in ``scripts/lab status --json``."""
    return {
        "running": running,
        "imap_url": IMAP_URL,
        "hostname": OLD_HOSTNAME,
        "ipv4": OLD4,
        "ipv6": OLD6,
        "user": OLD_USER,
        "local_user": LOCAL_USER,
        "messages": MESSAGES,
        "folders": list(FOLDERS),
        "password_in": f'{paths.secrets_file} (key import_passwords."{LOCAL_USER}")',
        "ca_file": str(paths.ca / "lab-ca.pem"),
        "maildir": str(mailbox_dir(paths)),
    }
