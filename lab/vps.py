"""The lab's VPS: an image's root filesystem (images.py) booted with systemd-nspawn in netns
mhlab0-vps (lane 0).

The pristine rootfs is built once per image with debootstrap into ``/var/cache/mailhost-lab/``
(outside the checkout, about a minute) and copied to ``.lab/vps-rootfs`` for every boot, so each
``lab up`` (or ``lab up --fresh``) starts from a freshly installed machine. Into the copy go:
new SSH host keys (written to ``.lab/ssh/known_hosts``), root's authorized key, a resolver
pointing at the lab DNS, an apt proxy (tinyproxy on the host side of the link), apt sources
and a network configuration as the provider's image has them (``write_network``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from . import api_front, images
from .common import (
    FLEET,
    HOST4,
    PREFIX_LEN4,
    PREFIX_LEN6,
    PROXY_PORT,
    LabError,
    Paths,
    Proc,
    Vps,
    run,
    spawn,
    wait_for,
)
from .images import Image

FIRST = FLEET[0]
VPS_GATEWAY4 = HOST4  # the "provider's" router: the lab bridge (which forwards nothing)
DPKG_LOCK_HOLDER = "mailhost-lab-dpkg-lock.service"


def mounts_under(path: Path) -> list[str]:
    """Mount points (as the host sees them) at or below ``path``."""
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def remove_rootfs(paths: Paths, vps: Vps = FIRST) -> None:
    """Delete the working rootfs (never while anything is mounted inside it)."""
    root = paths.rootfs(vps)
    if not root.exists():
        return
    if mounts_under(root):
        raise LabError(f"refusing to delete {root}: mounts under it")
    run("rm", "-rf", "--one-file-system", str(root), timeout=300)


def prepare_rootfs(paths: Paths, image: Image, dpkg_lock_seconds: int = 0,
                   vps: Vps = FIRST) -> None:
    """A fresh working copy of the image's pristine rootfs, customised for the lab: the
    network as the provider's cloud-init writes it, apt sources as a cloud image has them,
    and optionally a dpkg lock held after boot (unattended-upgrades on a new VPS)."""
    remove_rootfs(paths, vps)
    root = paths.rootfs(vps)
    run("cp", "-a", "--reflink=auto", str(image.pristine), str(root), timeout=600)
    write_network(root, image, vps)
    _write(root / "etc/apt/sources.list", "# as the provider's cloud image has it\n"
           + images.vps_sources(image))
    for deb822 in (root / "etc/apt/sources.list.d").glob("*.sources"):
        deb822.unlink()  # the same sources, as written by a newer debootstrap
    write_dpkg_lock_holder(root, dpkg_lock_seconds)
    _write(root / "etc/hostname", vps.short + "\n")
    _write(root / "etc/hosts",
           "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
           f"{vps.ipv4} {vps.hostname} {vps.short}\n{vps.ipv6} {vps.hostname} {vps.short}\n"
           f"# the lab: the Cloudflare API's name is the emulator's TLS front\n"
           f"{HOST4} {api_front.API_HOSTNAME}\n")
    _write(root / "etc/resolv.conf", f"nameserver {HOST4}\n")
    _write(root / "etc/apt/apt.conf.d/00mailhost-lab-proxy",
           f'// mailhost lab: the VPS has no route out; apt goes through tinyproxy\n'
           f'Acquire::http::Proxy "http://{HOST4}:{PROXY_PORT}";\n')
    _write(root / "etc/machine-id", "")  # a new machine id on first boot, like a new VPS
    # new SSH host keys for every rebuild; the controller learns them from here
    for old in (root / "etc/ssh").glob("ssh_host_*"):
        old.unlink()
    run("ssh-keygen", "-A", "-f", str(root))
    write_known_hosts(paths)
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    _write(ssh_dir / "authorized_keys", paths.ssh_key.with_suffix(".pub").read_text(), 0o600)


RESOLVER_SNIPPET = "etc/unbound/unbound.conf.d/mailhost-lab.conf"
INSECURE_TOPS = ["test", "net", "arpa", "example"]  # the lab's unsigned names live under these
# names unbound answers itself by default (RFC 6761 "test.", RFC 6303's TEST-NET reverse
# zones): the lab's names live there, so they are asked of Knot like any other
UNBOUND_LOCAL_ZONES = ["test", "100.51.198.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa"]


def write_resolver_snippet(root: Path, trust_anchors: dict[str, list[str]]) -> None:
    """The internet's substitute for the VPS's validating resolver (unbound, installed by the
    deploy, reads /etc/unbound/unbound.conf.d/*.conf): every query goes to Knot, the signed lab
    zones are anchored by their DS (no parent publishes them), and the unsigned lab names are
    insecure rather than bogus (the root anchor the package ships would fail them: the lab has
    no root). Written before each boot, so the deploy itself has no lab branch."""
    anchors = "".join(f'    trust-anchor: "{zone}. DS {ds}"\n'
                      for zone, records in trust_anchors.items() for ds in records)
    _write(root / RESOLVER_SNIPPET,
           "# mailhost lab (lab/vps.py): the lab's DNS instead of the internet's\n"
           "server:\n"
           + "".join(f'    domain-insecure: "{top}."\n' for top in INSECURE_TOPS)
           + "".join(f'    local-zone: "{zone}." nodefault\n' for zone in UNBOUND_LOCAL_ZONES)
           + anchors
           + f'forward-zone:\n    name: "."\n    forward-addr: {HOST4}\n')


def write_known_hosts(paths: Paths) -> None:
    """Every VPS's host keys (from each working rootfs there is) in the lab's known_hosts."""
    lines = []
    for vps in FLEET:
        names = f"{vps.ipv4},{vps.ipv6},{vps.hostname}"
        keys = sorted((paths.rootfs(vps) / "etc/ssh").glob("ssh_host_*_key.pub"))
        lines += [f"{names} {' '.join(k.read_text().split()[:2])}\n" for k in keys]
    paths.ssh.mkdir(parents=True, exist_ok=True)
    _write(paths.known_hosts, "".join(lines))


def write_network(root: Path, image: Image, vps: Vps = FIRST) -> None:
    """The VPS configures its own addresses, as a rented one does.

    netplan images: ``/etc/netplan/50-cloud-init.yaml`` as cloud-init writes it (IPv4 address
    and default route, systemd-networkd renderer), matching eth0 by name (cloud-init matches
    the MAC address, which netplan reads as the permanent one, which a veth does not have).
    The "provider" routes the IPv6 address to the VPS, but the image ships with IPv6 disabled
    by sysctl and no IPv6 address: enabling it is the deploy's job. networkd images (Debian):
    a systemd-networkd ``.network`` file with both addresses, IPv6 on.
    """
    if image.network == "netplan":
        _write(root / "etc/netplan/50-cloud-init.yaml",
               "# written by the provider's cloud-init (the mailhost lab)\n"
               "network:\n  version: 2\n  renderer: networkd\n  ethernets:\n"
               "    eth0:\n"
               f"      addresses:\n        - \"{vps.ipv4}/{PREFIX_LEN4}\"\n"
               f"      routes:\n        - to: default\n          via: {VPS_GATEWAY4}\n",
               0o600)
        _write(root / "etc/sysctl.d/99-disable-ipv6.conf",
               "# the provider's image: IPv6 off until the customer enables it\n"
               "net.ipv6.conf.all.disable_ipv6 = 1\n"
               "net.ipv6.conf.default.disable_ipv6 = 1\n")
        return
    _write(root / "etc/systemd/network/10-eth0.network",
           "[Match]\nName=eth0\n\n[Network]\n"
           f"Address={vps.ipv4}/{PREFIX_LEN4}\nGateway={VPS_GATEWAY4}\n"
           f"Address={vps.ipv6}/{PREFIX_LEN6}\n"
           "IPv6AcceptRA=no\n")
    run("systemctl", f"--root={root}", "enable", "systemd-networkd.service")


def write_dpkg_lock_holder(root: Path, seconds: int) -> None:
    """A unit holding dpkg's locks for ``seconds`` after boot, as apt-daily-upgrade does."""
    if seconds <= 0:
        return
    _write(root / "usr/local/sbin/mailhost-lab-hold-dpkg-lock",
           "#!/usr/bin/python3\n"
           "# the mailhost lab: hold dpkg's locks for a while, like unattended-upgrades\n"
           "import fcntl, sys, time\n"
           "files = [open(f'/var/lib/dpkg/{name}', 'w') for name in ('lock-frontend', 'lock')]\n"
           "for file in files:\n"
           "    fcntl.lockf(file, fcntl.LOCK_EX)\n"
           "time.sleep(float(sys.argv[1]))\n", 0o755)
    _write(root / f"etc/systemd/system/{DPKG_LOCK_HOLDER}",
           "[Unit]\nDescription=mailhost lab: dpkg locked after boot (unattended-upgrades)\n\n"
           "[Service]\nType=simple\n"
           f"ExecStart=/usr/local/sbin/mailhost-lab-hold-dpkg-lock {seconds}\n\n"
           "[Install]\nWantedBy=multi-user.target\n")
    run("systemctl", f"--root={root}", "enable", DPKG_LOCK_HOLDER)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    if path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def ensure_ssh_key(paths: Paths) -> None:
    """The lab's SSH key pair for root on the VPS (kept across rebuilds)."""
    if paths.ssh_key.exists():
        return
    paths.ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.ssh, 0o700)
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mailhost-lab",
        "-f", str(paths.ssh_key))


def write_ssh_config(paths: Paths) -> None:
    """``ssh -F .lab/lane-N/ssh/config mail.example.test`` logs in as root (any VPS, by its
    name or address; ``mail`` is the first one's)."""
    hosts = "".join(f"Host {vps.hostname} {vps.ipv4}{' ' + vps.short if vps == FIRST else ''}\n"
                    f"    HostName {vps.ipv4}\nHost {vps.ipv6}\n    HostName {vps.ipv6}\n"
                    for vps in FLEET)
    _write(paths.ssh_config,
           hosts +
           "Host *\n"
           "    User root\n"
           f"    IdentityFile {paths.ssh_key}\n"
           "    IdentitiesOnly yes\n"
           f"    UserKnownHostsFile {paths.known_hosts}\n"
           "    StrictHostKeyChecking yes\n"
           "    BatchMode yes\n"
           "    ConnectTimeout 5\n"
           "    LogLevel ERROR\n")


def ssh_command(paths: Paths, address: str = FIRST.ipv4) -> list[str]:
    """The ssh command line (without the remote command) for root on the VPS."""
    return ["ssh", "-F", str(paths.ssh_config), address]


def ssh(paths: Paths, command: str, address: str = FIRST.ipv4,
        timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``command`` on the VPS as root over SSH."""
    return subprocess.run([*ssh_command(paths, address), command], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def system_state(paths: Paths, address: str = FIRST.ipv4) -> str:
    """``systemctl is-system-running`` on the VPS over SSH ('' if SSH does not answer)."""
    try:
        result = ssh(paths, "systemctl is-system-running", address, timeout=15)
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout.strip() if result.returncode in (0, 1) else ""


MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")  # cgroup v1, as on this kind of controller


def parse_memory(text: str) -> int:
    """'1G', '512M', '1073741824' as bytes; LabError naming the value otherwise."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, unit = (text[:-1], text[-1].upper()) if text[-1:].upper() in units else (text, "")
    if not number.isdigit() or int(number) == 0:
        raise LabError(f"--memory {text!r}: expected a size such as 1G or 512M")
    return int(number) * units.get(unit, 1)


def memory_cgroup(vps: Vps = FIRST) -> Path:
    return MEMORY_CGROUPS / vps.netns


UNLIMITED = -1  # cgroup v1's "no limit"


def cap_memory(limit: int | None, vps: Vps = FIRST) -> Path:
    """The VPS's memory cgroup: the kernel's count of everything the VPS uses (page cache
    included), read by status and the benchmarks. With LIMIT (bytes) it is capped there with
    no swap (a small plan's VPS) and the kernel's OOM killer acts inside it; without, no cap."""
    group = memory_cgroup(vps)
    group.mkdir(exist_ok=True)
    memsw = group / "memory.memsw.limit_in_bytes"  # memory + swap: no swap at all
    # cgroup v1 keeps memory <= memory + swap at every step: lower memory first, raise it last
    steps = [("memory.limit_in_bytes", limit), (memsw.name, limit)] if limit else \
        [(memsw.name, UNLIMITED), ("memory.limit_in_bytes", UNLIMITED)]
    for name, value in steps:
        if (group / name).exists():
            (group / name).write_text(str(value))
    return group


def memory_use(limit: int | None, vps: Vps = FIRST) -> dict:
    """The kernel's count of the VPS's memory (bytes): now, the peak since the last reset, the
    cap (None: not capped), the OOM kills in it and the working set now; {} when the VPS is not
    running."""
    group = memory_cgroup(vps)
    if not group.is_dir():
        return {}
    numbers = {name: int((group / f"memory.{name}").read_text())
               for name in ("max_usage_in_bytes", "usage_in_bytes")}
    oom = dict(line.split() for line in (group / "memory.oom_control").read_text().splitlines())
    stat = dict(line.split() for line in (group / "memory.stat").read_text().splitlines())
    return {"memory_max": limit or None, "memory_peak": numbers["max_usage_in_bytes"],
            "memory_now": numbers["usage_in_bytes"], "oom_kills": int(oom.get("oom_kill", 0)),
            # what the kernel could not drop at once: the usage less the inactive file cache
            # (the "working set" docker and the kubelet report)
            "working_set": numbers["usage_in_bytes"] - int(stat.get("total_inactive_file", 0))}


def reset_memory_peak(vps: Vps = FIRST) -> None:
    """Start the VPS's memory peak afresh (cgroup v1: writing 0 to max_usage_in_bytes)."""
    (memory_cgroup(vps) / "memory.max_usage_in_bytes").write_text("0")


def remove_memory_cgroup(vps: Vps = FIRST) -> None:
    """Remove the VPS's memory cgroup once nothing runs in it (harmless if absent)."""
    group = memory_cgroup(vps)
    if group.is_dir() and not (group / "cgroup.procs").read_text().split():
        for child in sorted(group.rglob("*"), reverse=True):  # nspawn's sub-groups
            if child.is_dir():
                child.rmdir()
        group.rmdir()


def boot(paths: Paths, log: Path, memory: int | None = None, vps: Vps = FIRST) -> Proc:
    """Start systemd-nspawn (real systemd, sshd) in the VPS namespace, in the VPS's memory
    cgroup, capped at MEMORY bytes when given."""
    command = [
        "systemd-nspawn", "--boot", "--directory", str(paths.rootfs(vps)),
        f"--machine={vps.netns}", "--register=no", "--keep-unit",
        f"--network-namespace-path=/run/netns/{vps.netns}",
        f"--hostname={vps.short}", "--console=read-only", "--resolv-conf=off",
        "--timezone=off", "--link-journal=no",
        # like a real VPS, root may manage its network (firewall, sysctls); the namespace is
        # the VPS's own, and the host neither forwards nor NATs for it
        "--capability=CAP_NET_ADMIN", "--private-network",
    ]
    # the shell joins the VPS's memory group (capped or not), then becomes nspawn (same PID)
    procs = cap_memory(memory, vps) / "cgroup.procs"
    command = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(procs), *command]
    # cgroup v1 host without systemd as PID 1: see LAB-FACTS
    return spawn(command, log, env={"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "0"})


def container_init(nspawn: Proc) -> Proc | None:
    """The container's systemd (PID 1 inside), as a host PID: nspawn's child."""
    for task in Path(f"/proc/{nspawn.pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                return Proc.of(int(child))
            except LabError:
                continue
    return None


def wait_running(paths: Paths, nspawn: Proc, log: Path, timeout: float = 180,
                 vps: Vps = FIRST) -> str:
    """Wait until systemd in the VPS reports running or degraded over SSH, and no address is
    still tentative (duplicate address detection runs for a second or two after networkd
    configures an IPv6 address; tests compare the addresses before and after a deploy)."""
    def settled() -> str:
        state = system_state(paths, vps.ipv4)
        if state not in ("running", "degraded"):
            return ""
        try:
            tentative = ssh(paths, "ip -o addr show tentative", vps.ipv4,
                            timeout=15).stdout.strip()
        except subprocess.TimeoutExpired:
            return ""
        return "" if tentative else state

    return wait_for(settled, timeout, f"{vps.hostname} boot (systemctl is-system-running)",
                    proc=nspawn, log=log, interval=0.5)


NSPAWN_RUN = Path("/run/systemd/nspawn")


def run_files(paths: Paths, vps: Vps = FIRST) -> list[Path]:
    """What systemd-nspawn leaves in /run for this VPS once it has exited (it cannot remove
    them itself where /run is not a tmpfs): the propagation folder and the rootfs lock."""
    found = [p for p in [NSPAWN_RUN / "propagate" / vps.netns] if p.exists()]
    try:
        stat = paths.rootfs(vps).stat()
    except OSError:
        return found
    lock = NSPAWN_RUN / "locks" / f"inode-{stat.st_dev}:{stat.st_ino}"
    return found + ([lock] if lock.exists() else [])


def remove_run_files(paths: Paths, vps: Vps = FIRST) -> None:
    for path in run_files(paths, vps):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def stop(nspawn: Proc | None, init: Proc | None) -> None:
    """Power the container off (SIGTERM to nspawn asks systemd to shut down), then make sure."""
    if nspawn is not None and nspawn.alive():
        nspawn.stop(timeout=60, sig=signal.SIGTERM)
    if init is not None and init.alive():  # nspawn gone but the container's init left behind
        init.stop(timeout=10, sig=signal.SIGKILL)
