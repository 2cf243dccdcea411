"""The VPS images the lab boots, and the tools and mirrors it builds them with.

An image is a distribution release debootstrapped once into a pristine root filesystem under
``/var/cache/mailhost-lab/rootfs-IMAGE`` (outside the checkout) and copied for every boot.

No mirror host is written here: the Debian mirror is the controller's own apt source, the
Ubuntu mirror is the default that debootstrap's script for the suite names; environment
variables override them (``MAILHOST_LAB_DEBIAN_MIRROR``, ``MAILHOST_LAB_DEBIAN_SECURITY_MIRROR``,
``MAILHOST_LAB_UBUNTU_MIRROR``). The apt proxy allows exactly the hosts of the mirrors used.

The controller's own debootstrap (Debian 12's) cannot build Ubuntu 24.04 and has no Ubuntu
keyring, so the lab fetches Debian 13's ``debootstrap`` and ``ubuntu-keyring`` (both
architecture-independent) with a private apt configuration and unpacks them with ``dpkg -x``
into ``/var/cache/mailhost-lab/tools``; nothing is installed on the controller.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from .common import CACHE_DIR, LabError, cache_lock, log_tail, run


@dataclass(frozen=True)
class Image:
    """One VPS image: a distribution release and how its network is configured."""

    name: str  # what `scripts/lab up --image` takes
    distribution: str  # "ubuntu" or "debian"
    suite: str  # the release's code name
    network: str  # "netplan" (as cloud-init writes it) or "networkd" (systemd-networkd)

    @property
    def pristine(self) -> Path:
        return CACHE_DIR / f"rootfs-{self.name}"

    @property
    def stamp(self) -> Path:
        """Written when debootstrap succeeded; holds the package list it was built with."""
        return CACHE_DIR / f"rootfs-{self.name}.done"

    @property
    def include(self) -> str:
        packages = ["systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2",
                    "ca-certificates", "netbase"]
        if self.network == "netplan":
            packages.append("netplan.io")
        return ",".join(packages)


IMAGES = {
    image.name: image
    for image in [
        Image("ubuntu-24.04", "ubuntu", "noble", "netplan"),
        Image("ubuntu-22.04", "ubuntu", "jammy", "netplan"),
        Image("debian-12", "debian", "bookworm", "networkd"),
        Image("debian-13", "debian", "trixie", "networkd"),
    ]
}
DEFAULT_IMAGE = "ubuntu-24.04"

TOOLS = CACHE_DIR / "tools"  # Debian 13's debootstrap and ubuntu-keyring, unpacked
TOOLS_SUITE = "trixie"
TOOLS_PACKAGES = ("debootstrap", "ubuntu-keyring")
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def image(name: str) -> Image:
    """The image called ``name``; LabError naming the choices otherwise."""
    if name not in IMAGES:
        raise LabError(f"--image {name!r}: expected one of {', '.join(IMAGES)}")
    return IMAGES[name]


# --- mirrors ---

def apt_sources(root: Path = Path("/etc/apt")) -> list[tuple[str, list[str]]]:
    """(URI, suites) of the controller's deb sources, one-line and deb822 formats."""
    found = []
    one_line = [root / "sources.list", *sorted((root / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
            if len(words) >= 3 and words[0] == "deb":
                found.append((words[1], [words[2]]))
    for path in sorted((root / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
            if "deb" in fields.get("Types", "").split():
                for uri in fields.get("URIs", "").split():
                    found.append((uri, fields.get("Suites", "").split()))
    return found


def controller_codename() -> str:
    text = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=(\S+)", text, re.MULTILINE)
    if not match:
        raise LabError("/etc/os-release has no VERSION_CODENAME: set MAILHOST_LAB_DEBIAN_MIRROR")
    return match.group(1).strip('"')


def debian_mirrors() -> tuple[str, str]:
    """(archive, security) mirrors: the environment's, else the controller's apt sources."""
    archive = os.environ.get("MAILHOST_LAB_DEBIAN_MIRROR")
    security = os.environ.get("MAILHOST_LAB_DEBIAN_SECURITY_MIRROR")
    codename = controller_codename()
    for uri, suites in apt_sources():
        if archive is None and codename in suites:
            archive = uri
        if security is None and f"{codename}-security" in suites:
            security = uri
    if archive is None:
        raise LabError(f"no Debian mirror for {codename} in /etc/apt: "
                       "set MAILHOST_LAB_DEBIAN_MIRROR")
    return archive.rstrip("/"), (security or archive.rstrip("/") + "-security").rstrip("/")


def ubuntu_mirror(suite: str) -> str:
    """The environment's mirror, else the amd64 default in debootstrap's script for ``suite``
    (read, not run: run, it asks the controller's outdated distro-info and picks a wrong one)."""
    if os.environ.get("MAILHOST_LAB_UBUNTU_MIRROR"):
        return os.environ["MAILHOST_LAB_UBUNTU_MIRROR"].rstrip("/")
    script = TOOLS / "usr/share/debootstrap/scripts" / suite
    text = script.read_text()
    match = re.search(r"amd64\|i386\)\s*default_mirror\s+(\S+)", text)
    if not match:
        raise LabError(f"no amd64 default mirror in {script}: set MAILHOST_LAB_UBUNTU_MIRROR")
    return match.group(1).rstrip("/")


def mirrors(image_: Image) -> dict[str, str]:
    """The mirrors the VPS image uses: {"archive": URL, "security": URL}."""
    if image_.distribution == "ubuntu":
        ensure_tools()
        archive = ubuntu_mirror(image_.suite)
        return {"archive": archive, "security": archive}
    archive, security = debian_mirrors()
    return {"archive": archive, "security": security}


def mirror_hosts(image_: Image) -> list[str]:
    """Host names the apt proxy must let through for this image."""
    return sorted({urlsplit(url).hostname for url in mirrors(image_).values()})


def vps_sources(image_: Image) -> str:
    """The VPS's /etc/apt/sources.list, as the distribution's cloud image has it."""
    urls = mirrors(image_)
    suite = image_.suite
    if image_.distribution == "ubuntu":
        parts = "main restricted universe multiverse"
        return (f"deb {urls['archive']} {suite} {parts}\n"
                f"deb {urls['archive']} {suite}-updates {parts}\n"
                f"deb {urls['security']} {suite}-security {parts}\n")
    return (f"deb {urls['archive']} {suite} main\n"
            f"deb {urls['archive']} {suite}-updates main\n"
            f"deb {urls['security']} {suite}-security main\n")


# --- the controller's tools ---

def ensure_tools(log: Path | None = None) -> Path:
    """Debian 13's debootstrap and Ubuntu keyring unpacked under TOOLS (once, by one lane)."""
    with cache_lock("tools"):
        return _ensure_tools()


def _ensure_tools() -> Path:
    if (TOOLS / "usr/sbin/debootstrap").is_file() and \
            (TOOLS / "usr/share/keyrings/ubuntu-archive-keyring.gpg").is_file():
        return TOOLS
    archive, _ = debian_mirrors()
    work = CACHE_DIR / "tools.tmp"
    if work.exists():
        shutil.rmtree(work)
    for folder in ("lists/partial", "cache/archives/partial", "debs", "root"):
        (work / folder).mkdir(parents=True)
    (work / "sources.list").write_text(
        f"deb [signed-by={DEBIAN_KEYRING}] {archive} {TOOLS_SUITE} main\n")
    apt_options = ["-q", "-o", f"Dir::Etc::SourceList={work / 'sources.list'}",
                   "-o", "Dir::Etc::SourceParts=/nonexistent",
                   "-o", f"Dir::State::Lists={work / 'lists'}",
                   "-o", f"Dir::Cache={work / 'cache'}", "-o", "APT::Sandbox::User=root"]
    print(f"lab: fetching {TOOLS_SUITE}'s {' and '.join(TOOLS_PACKAGES)} into {TOOLS}",
          flush=True)
    run("apt-get", *apt_options, "update", timeout=300)
    subprocess.run(["apt-get", *apt_options, "download", *TOOLS_PACKAGES], cwd=work / "debs",
                   check=True, capture_output=True, timeout=300)
    for deb in sorted((work / "debs").glob("*.deb")):
        run("dpkg", "-x", str(deb), str(work / "root"))
    if TOOLS.exists():
        shutil.rmtree(TOOLS)
    (work / "root").rename(TOOLS)
    shutil.rmtree(work)
    return TOOLS


# --- the pristine root filesystem ---

def cache_ready(image_: Image) -> bool:
    return (image_.pristine.is_dir() and image_.stamp.is_file()
            and image_.stamp.read_text().strip() == image_.include)


def build_cache(image_: Image, log: Path) -> None:
    """debootstrap the image's pristine rootfs into the cache unless it is already there
    (one lane builds it; another that needs it waits)."""
    with cache_lock(f"rootfs-{image_.name}"):
        _build_cache(image_, log)


def _build_cache(image_: Image, log: Path) -> None:
    if cache_ready(image_):
        return
    tools = ensure_tools()
    urls = mirrors(image_)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    building = CACHE_DIR / f"rootfs-{image_.name}.tmp"
    for stale in (building, image_.pristine):
        if stale.exists():
            run("rm", "-rf", "--one-file-system", str(stale), timeout=300)
    image_.stamp.unlink(missing_ok=True)
    print(f"lab: building the {image_.name} ({image_.suite}) rootfs cache in "
          f"{image_.pristine} from {urls['archive']} (a few minutes)", flush=True)
    keyring = (tools / "usr/share/keyrings/ubuntu-archive-keyring.gpg"
               if image_.distribution == "ubuntu" else Path(DEBIAN_KEYRING))
    components = "main,universe" if image_.distribution == "ubuntu" else "main"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        result = subprocess.run(
            [str(tools / "usr/sbin/debootstrap"), f"--keyring={keyring}",
             f"--components={components}", f"--include={image_.include}",
             image_.suite, str(building), urls["archive"]],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "DEBOOTSTRAP_DIR": str(tools / "usr/share/debootstrap")},
        )
    if result.returncode != 0:
        raise LabError(f"debootstrap of {image_.name} failed ({result.returncode}); "
                       f"see {log}:\n{log_tail(log)}")
    building.rename(image_.pristine)
    image_.stamp.write_text(image_.include + "\n")


def os_release(root: Path) -> dict[str, str]:
    """/etc/os-release of a root filesystem as a dict (quotes removed)."""
    path = root / "etc/os-release"
    if path.is_symlink() or not path.exists():
        path = root / "usr/lib/os-release"
    try:
        text = path.read_text()
    except OSError:
        return {}
    return {key: value.strip('"') for key, value in
            re.findall(r"^([A-Z_]+)=(.*)$", text, re.MULTILINE)}
