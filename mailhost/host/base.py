"""Base of the mail host: apt (proxy, packages installed without half-configured services),
hostname as FQDN, /etc/mailname, /etc/hosts, IPv6 kept on."""

from __future__ import annotations

import re
from io import StringIO

from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import Directory
from pyinfra.operations import apt, files, server

from mailhost.facts import HostIdentity, known_state
from mailhost.host import put_text, template
from mailhost.settings import Settings

POLICY_RC_D = "/usr/sbin/policy-rc.d"
APT_PROXY = "/etc/apt/apt.conf.d/80mailhost-proxy"
MAILNAME = "/etc/mailname"
ROOTS = [APT_PROXY, MAILNAME]  # read with facts.read_paths


def apt_proxy_conf(settings: Settings) -> str:
    """The apt.conf line that sends apt through apt_proxy."""
    return f'Acquire::http::Proxy "{settings.apt_proxy}";\n'


def configure_apt(settings: Settings) -> None:
    """apt through the configured proxy (the lab's), or directly when none is set."""
    if settings.apt_proxy:
        put_text(APT_PROXY, apt_proxy_conf(settings), name="apt proxy")
    elif known_state(APT_PROXY) != (True, None):
        files.file(name="No apt proxy", path=APT_PROXY, present=False)


def install_packages(packages: list[str]) -> None:
    """Install packages with services held back (policy-rc.d), so none starts half-configured.

    The hold and its removal are only added when something is missing: a converged host
    shows no change here.
    """
    installed = host.get_fact(DebPackages) or {}
    missing = [p for p in packages if p not in installed]
    if not missing:
        return
    files.put(name="Hold services during package install", src=StringIO("#!/bin/sh\nexit 101\n"),
              dest=POLICY_RC_D, mode="755")
    apt.packages(name=f"Install {', '.join(missing)}", packages=missing, update=True,
                 no_recommends=True)
    files.file(name="Release the service hold", path=POLICY_RC_D, present=False)


def configure_identity(settings: Settings) -> None:
    """The hostname (the FQDN), /etc/mailname, and /etc/hosts naming the host's addresses;
    the hostname and /etc/hosts are read in one command, and only what differs is changed."""
    identity = host.get_fact(HostIdentity)
    if identity["hostname"] != settings.mail_hostname:
        server.hostname(name="Hostname as FQDN", hostname=settings.mail_hostname)
    put_text(MAILNAME, settings.mail_hostname + "\n")
    short = settings.mail_hostname.split(".")[0]
    for address in filter(None, [settings.ipv4, settings.ipv6]):
        line = rf"^{re.escape(str(address))}\s.*"
        wanted = f"{address} {settings.mail_hostname} {short}"
        matching = [entry for entry in identity["hosts"] if re.match(line, entry)]
        if not matching or any(entry != wanted for entry in matching):
            files.line(name=f"/etc/hosts: {address}", path="/etc/hosts", line=line,
                       replace=wanted)


def configure_ipv6(settings: Settings) -> None:
    """IPv6 not disabled by sysctl; a static address for netplan where the host uses it."""
    if not settings.ipv6:
        return
    server.sysctl(name="IPv6 enabled", key="net.ipv6.conf.all.disable_ipv6", value=0,
                  persist=True, persist_file="/etc/sysctl.d/60-mailhost-ipv6.conf")
    if host.get_fact(Directory, path="/etc/netplan") is None:
        return  # not a netplan host (the lab's Debian VPS): its network config stays as it is
    netplan = files.template(
        name="netplan: static IPv6 address",
        src=template("base/netplan-ipv6.yaml.j2"),
        dest="/etc/netplan/60-mailhost-ipv6.yaml",
        mode="600",
        s=settings,
    )
    server.shell(name="netplan apply", commands=["netplan apply"], _if=netplan.did_change)
