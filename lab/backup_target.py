"""The lab's backup target: an SFTP-only sshd in the receiver's namespace (mhlab0-rx,
198.51.100.20:22 and [2001:db8::20]:22), where the VPS's restic keeps its repository
(``sftp:root@198.51.100.20:/restic``, inventory/lab.py).

Debian's openssh-server is unpacked with ``dpkg -x`` into the lab's cache (nothing installed
on the controller, no sshd started by a package script). Its privilege separation user
``sshd`` exists only for it: the namespace's private mount of ``/etc/passwd`` (``ip netns
exec`` gives the process its own mount namespace) is the controller's plus that user, so the
controller's accounts are not touched. The server has its own host key and
accepts only the key the lab generated for the VPS (its private half goes into the lab's
secrets file as ``backup_ssh_key``, with a generated ``backup_password``), runs nothing but
internal-sftp, chrooted into ``sftp-root`` of its directory. That directory is not in the
checkout: sshd refuses an ``AuthorizedKeysFile`` or ``ChrootDirectory`` below any directory
that root does not own or that others may write (a checkout under ``/tmp``), so it lives in
``/var/lib/mailhost-lab/<checkout and lane>/backup`` (``directory``). ``scripts/lab down``
stops it by PID and deletes the repository, so each fresh lab starts with an empty one;
``up --fresh`` (a rebuilt VPS) keeps it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from .common import (
    CACHE_DIR,
    RX4,
    RX6,
    Paths,
    Proc,
    accepts_connections,
    cache_lock,
    run,
    spawn,
    wait_for,
)

SSH_PORT = 22
USER = "root"  # chrooted, internal-sftp only
REPOSITORY_PATH = "/restic"  # inside the chroot
REPOSITORY = f"sftp:{USER}@{RX4}:{REPOSITORY_PATH}"
SSHD_ROOT = CACHE_DIR / "openssh-server"  # Debian's package, unpacked
SSHD = SSHD_ROOT / "usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd


PRIVATE_ROOT = Path("/var/lib/mailhost-lab")  # root's, 0755 all the way up


def directory(paths: Paths) -> Path:
    """This lane's backup server files, named after the checkout's lab state directory."""
    tag = hashlib.sha256(str(paths.root).encode()).hexdigest()[:12]
    return PRIVATE_ROOT / f"{paths.root.parent.parent.name}-{paths.root.name}-{tag}" / "backup"


def host_key(paths: Paths) -> Path:
    return directory(paths) / "host_ed25519"


def client_key(paths: Paths) -> Path:
    return directory(paths) / "client_ed25519"


def chroot(paths: Paths) -> Path:
    return directory(paths) / "sftp-root"


def repository_dir(paths: Paths) -> Path:
    return chroot(paths) / REPOSITORY_PATH.lstrip("/")


def ensure_sshd() -> Path:
    """Debian's sshd unpacked under SSHD_ROOT (once), from the controller's own apt sources."""
    with cache_lock("openssh-server"):
        if SSHD.is_file():
            return SSHD
        _unpack_sshd()
    return SSHD


def _unpack_sshd() -> None:
    with tempfile.TemporaryDirectory(dir=CACHE_DIR) as work:
        subprocess.run(["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download",
                        "openssh-server"], cwd=work, check=True, capture_output=True,
                       timeout=300)
        (deb,) = Path(work).glob("openssh-server_*.deb")
        unpacked = Path(work) / "root"
        run("dpkg", "-x", str(deb), str(unpacked))
        if SSHD_ROOT.exists():
            shutil.rmtree(SSHD_ROOT)
        unpacked.rename(SSHD_ROOT)


def ensure_keys(paths: Paths) -> None:
    """The server's host key and the VPS's client key (generated once); the client key's
    private half and a repository password in the lab's secrets file (0600)."""
    folder = directory(paths)
    for parent in reversed(folder.parents[:2]):  # PRIVATE_ROOT and the lane's folder
        parent.mkdir(mode=0o755, exist_ok=True)
        parent.chmod(0o755)
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    for key, comment in [(host_key(paths), "mhlab-backup-host"),
                         (client_key(paths), "mhlab-vps-backup")]:
        if not key.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key))
    (folder / "authorized_keys").write_text(client_key(paths).with_suffix(".pub").read_text())
    chroot(paths).mkdir(mode=0o755, exist_ok=True)
    text = paths.secrets_file.read_text()
    if "backup_ssh_key" not in text:  # top-level keys go before the [passwords] table
        private = client_key(paths).read_text().strip()
        lines = (f'backup_password = "{secrets.token_urlsafe(24)}"\n'
                 f"backup_ssh_key = '''\n{private}\n'''\n")
        paths.secrets_file.write_text(lines + text)


def host_public_key(paths: Paths) -> str:
    """The server's public host key, as known_hosts wants it (TYPE BASE64)."""
    return " ".join(host_key(paths).with_suffix(".pub").read_text().split()[:2])


def config_text(paths: Paths) -> str:
    folder = directory(paths)
    return (
        f"ListenAddress {RX4}:{SSH_PORT}\nListenAddress [{RX6}]:{SSH_PORT}\n"
        f"HostKey {host_key(paths)}\nPidFile none\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        f"AllowUsers {USER}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        f"ChrootDirectory {chroot(paths)}\nForceCommand internal-sftp\n"
        "Subsystem sftp internal-sftp\n"
        "AllowTcpForwarding no\nAllowAgentForwarding no\nX11Forwarding no\nPermitTTY no\n"
    )


def start(paths: Paths, exec_prefix: list[str]) -> Proc:
    """Start the SFTP server inside the receiver's namespace (``exec_prefix``); its PID."""
    sshd = ensure_sshd()
    ensure_keys(paths)
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    config = directory(paths) / "sshd_config"
    config.write_text(config_text(paths))
    log = paths.logs / "backup-sftp.log"
    passwd = directory(paths) / "passwd"
    accounts = Path("/etc/passwd").read_text()
    if not any(line.startswith("sshd:") for line in accounts.splitlines()):
        accounts += "sshd:x:65534:65534:sshd privilege separation (lab):/run/sshd:/bin/false\n"
    passwd.write_text(accounts)
    passwd.chmod(0o644)
    # sshd re-executes itself: it is started by its absolute path
    script = (f"mount --bind {shlex.quote(str(passwd))} /etc/passwd && "
              f"exec {shlex.quote(str(sshd.resolve()))} -D -e -f {shlex.quote(str(config))}")
    proc = spawn([*exec_prefix, "sh", "-c", script], log,
                 env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin")})
    wait_for(lambda: accepts_connections(RX4, SSH_PORT), 10, "backup SFTP server", proc=proc,
             log=log)
    return proc


def remove_repository(paths: Paths) -> None:
    """A fresh lab starts with an empty repository."""
    shutil.rmtree(repository_dir(paths), ignore_errors=True)
