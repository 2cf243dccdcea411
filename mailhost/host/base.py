"""Base of the mail host: apt (proxy, packages installed without half-configured services,
waiting for a dpkg lock held after first boot), hostname as FQDN, /etc/mailname, /etc/hosts,
IPv6 enabled (sysctl, netplan)."""

from __future__ import annotations

import re
from io import StringIO

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import apt, files, server

from mailhost.facts import IPV6_SYSCTLS, BaseState, PackageState, known_state
from mailhost.operations.files import put_text, render
from mailhost.settings import Settings

POLICY_RC_D = "/usr/sbin/policy-rc.d"
APT_PROXY = "/etc/apt/apt.conf.d/80mailhost-proxy"
MAILNAME = "/etc/mailname"
# a new VPS runs unattended-upgrades after its first boot: apt waits this long for the lock
DPKG_LOCK_WAIT_SECONDS = 900
# after any file of the image that turns IPv6 off (sysctl.d files apply in name order)
IPV6_SYSCTL_FILE = "/etc/sysctl.d/99-zz-mailhost-ipv6.conf"
NETPLAN_FILE = "/etc/netplan/60-mailhost-ipv6.yaml"
# read with facts.read_paths
ROOTS = (APT_PROXY, MAILNAME, POLICY_RC_D, IPV6_SYSCTL_FILE, NETPLAN_FILE)
INTERFACE_NAME = re.compile(r"[A-Za-z0-9._-]{1,15}")  # a Linux interface name


def apt_proxy_conf(settings: Settings) -> str:
    """The apt.conf line that sends apt through apt_proxy."""
    return f'Acquire::http::Proxy "{settings.apt_proxy}";\n'


def configure(settings: Settings) -> None:
    """apt, the host's names and IPv6; what they need of the host is read in one command
    (facts.BaseState), the files with facts.read_paths."""
    configure_apt(settings)
    state = host.get_fact(BaseState)
    configure_identity(settings, state)
    configure_ipv6(settings, state)


def configure_apt(settings: Settings) -> None:
    """apt through the configured proxy (the lab's), or directly when none is set."""
    if settings.apt_proxy:
        put_text(APT_PROXY, apt_proxy_conf(settings), name="apt proxy")
    elif known_state(APT_PROXY) != (True, None):
        files.file(name="No apt proxy", path=APT_PROXY, present=False)


# dpkg --configure -a, waiting (as apt does, DPKG_LOCK_WAIT_SECONDS) while another dpkg holds
# the lock; when dpkg cannot finish alone, apt finishes it: first the packages dpkg marks
# reinst-required (a kill mid-unpack leaves e.g. perl-base "in a very bad inconsistent state",
# which neither dpkg --configure -a nor apt-get -f install repairs) are reinstalled, then
# apt-get -f install unpacks what is missing (one package unpacked at its new version, one it
# depends on still at its old one), from the archives the stopped run downloaded; any other
# failure ends the operation with apt's message
APT_GET = ("DEBIAN_FRONTEND=noninteractive apt-get -y -q "
           f"-o DPkg::Lock::Timeout={DPKG_LOCK_WAIT_SECONDS} -o Dpkg::Options::=--force-confdef "
           "-o Dpkg::Options::=--force-confold")
REINST_REQUIRED = ("dpkg-query -W -f='${db:Status-Abbrev} ${binary:Package}\\n' "
                   "| awk 'substr($1, 3, 1) == \"R\" {print $2}'")
FINISH_INTERRUPTED = (  # dpkg --configure -a exits 0 while a package is reinst-required
    f"configured=; for i in $(seq {DPKG_LOCK_WAIT_SECONDS // 5}); do "
    "out=$(DEBIAN_FRONTEND=noninteractive dpkg --configure -a --force-confdef --force-confold "
    "2>&1) && configured=1 && break; case \"$out\" in *lock*) sleep 5;; *) break;; esac; done; "
    f"broken=$({REINST_REQUIRED}); "
    f"if [ -n \"$broken\" ]; then {APT_GET} install --reinstall $broken || exit 1; "
    "elif [ -n \"$configured\" ]; then exit 0; fi; "
    f"{APT_GET} -f install")


def install_packages(packages: list[str]) -> None:
    """Install packages with services held back (policy-rc.d), so none starts half-configured.

    apt waits up to DPKG_LOCK_WAIT_SECONDS for the dpkg lock (``DPkg::Lock::Timeout``), the
    time unattended-upgrades may hold it after a new VPS boots; the operation's name says so.
    The hold is added only when something is missing, and its release runs on every run: a
    hold left behind by an interrupted install goes on the next run; on a converged host
    neither shows a change.

    + packages: Debian package names
    """
    state = host.get_fact(PackageState)
    missing = [p for p in packages if p not in state["packages"]]
    interrupted = bool(state["audit"])
    if missing or interrupted:
        files.put(name="Hold services during package install",
                  src=StringIO("#!/bin/sh\nexit 101\n"), dest=POLICY_RC_D, mode="755")
    if interrupted:
        server.shell(name="Finish an interrupted package install (dpkg --configure -a, then "
                          "apt-get -f install if dpkg cannot alone)",
                     commands=[FINISH_INTERRUPTED])
    if missing:
        apt.packages(
            name=f"Install {', '.join(missing)} (waits up to {DPKG_LOCK_WAIT_SECONDS} s for "
                 "the dpkg lock: unattended-upgrades runs after a VPS's first boot)",
            packages=missing, update=True, no_recommends=True,
            extra_install_args=f"-o DPkg::Lock::Timeout={DPKG_LOCK_WAIT_SECONDS}",
        )
    if missing or interrupted or known_state(POLICY_RC_D) != (True, None):  # None: not there
        files.file(name="Release the service hold", path=POLICY_RC_D, present=False)


def configure_identity(settings: Settings, state: dict) -> None:
    """The hostname (the FQDN), /etc/mailname, and /etc/hosts naming the host's addresses;
    only what differs from ``state`` (facts.BaseState) is changed."""
    if state["hostname"] != settings.mail_hostname:
        server.hostname(name="Hostname as FQDN", hostname=settings.mail_hostname)
    put_text(MAILNAME, settings.mail_hostname + "\n")
    short = settings.mail_hostname.split(".")[0]
    for address in filter(None, [settings.ipv4, settings.ipv6]):
        line = rf"^{re.escape(str(address))}\s.*"
        wanted = f"{address} {settings.mail_hostname} {short}"
        matching = [entry for entry in state["hosts"] if re.match(line, entry)]
        if not matching or any(entry != wanted for entry in matching):
            files.line(name=f"/etc/hosts: {address}", path="/etc/hosts", line=line,
                       replace=wanted)


def configure_ipv6(settings: Settings, state: dict) -> None:
    """IPv6 enabled, now and after a reboot, and on a netplan host the static address; only
    what differs from ``state`` (facts.BaseState) and the files read by facts.read_paths.

    Many VPS images ship with IPv6 disabled by sysctl and no IPv6 address (the provider routes
    the address to the VPS; configuring it is left to the customer). The sysctl file sorts
    after the image's, so a reboot keeps IPv6 on. The address goes into netplan under the ID
    of the interface holding the default route (cloud-init names it after the interface), so
    netplan merges it into the provider's definition instead of a second one networkd would
    ignore. It is applied with ``netplan generate`` + ``networkctl reload`` where networkd
    renders (VPS images): addresses are added in place, the SSH session stays; ``netplan
    apply`` would also re-trigger udev (it fails in a container) and restart the links.
    """
    if not settings.ipv6:
        return
    for key in IPV6_SYSCTLS:
        if state["sysctls"].get(key) != 0:
            scope = key.split(".")[3]  # net.ipv6.conf.SCOPE.disable_ipv6
            server.sysctl(name=f"IPv6 enabled ({scope})", key=key, value=0)
    put_text(IPV6_SYSCTL_FILE, "".join(f"{key} = 0\n" for key in IPV6_SYSCTLS),
             name="IPv6 enabled after a reboot")
    if not state["netplan"]:
        return  # not a netplan host (Debian's networkd/ifupdown): its own config has the address
    interface = state["default_interface"] or "eth0"
    if not INTERFACE_NAME.fullmatch(interface):
        raise DeployError(f"IPv6: the default route's interface {interface!r} is not an "
                          "interface name (1-15 of A-Z a-z 0-9 . _ -)")
    netplan = render("base/netplan-ipv6.yaml.j2", settings, interface=interface)
    if not put_text(NETPLAN_FILE, netplan, mode="600",
                    name=f"netplan: static IPv6 address on {interface}"):
        return
    address = str(settings.ipv6)
    server.shell(
        name="netplan: apply the IPv6 address (generate, networkctl reload; SSH stays up)",
        commands=[
            "netplan generate",
            "if systemctl is-active --quiet systemd-networkd; then networkctl reload; "
            "else netplan apply; fi",
            # until the address is usable (duplicate address detection done)
            f"for i in $(seq 50); do ip -6 addr show to {address} | grep -q inet6 && "
            f"! ip -6 addr show to {address} tentative | grep -q inet6 && exit 0; sleep 0.2; "
            f"done; echo 'IPv6 address {address} not configured after 10 s' >&2; exit 1",
        ],
    )
