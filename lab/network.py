"""A lane's network: a bridge on the host and one network namespace per lab host. Lane 0:

::

    host netns:  mhlab0-br (bridge) 198.51.100.1/26, 2001:db8::1/64  <- Knot, Pebble, proxy...
                   |-- mhlab0-vps0 == eth0 in netns mhlab0-vps  198.51.100.10, 2001:db8::10
                   `-- mhlab0-rx0  == eth0 in netns mhlab0-rx   198.51.100.20, 2001:db8::20

Lane N has the prefix ``mhlabN-``, 198.51.100.(64N)/26 and 2001:db8:0:N::/64 (common.Lane).

The receiver's addresses are set from here; the VPS sets its own from inside (netplan or
systemd-networkd, as a rented VPS does), with a default route to the bridge, which neither
forwards nor NATs: they reach the bridge's subnet and nothing else. Before adding an address,
``check_ranges`` makes sure the lab ranges collide with no route or address the machine has.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from .common import (
    BRIDGE,
    HOST4,
    HOST6,
    LAB_NET4,
    LAB_NET6,
    LANE,
    PREFIX,
    PREFIX_LEN4,
    PREFIX_LEN6,
    LabError,
    run,
)


@dataclass(frozen=True)
class Namespace:
    """One lab host's network namespace and the veth pair that joins it to the bridge."""

    name: str
    ipv4: str
    ipv6: str
    addressed_inside: bool = False  # the host in the namespace configures its own addresses

    @property
    def host_link(self) -> str:
        return f"{self.name}0"  # e.g. mhlab0-vps0, on the bridge

    @property
    def peer_link(self) -> str:
        return f"{self.name}1"  # renamed eth0 once inside the namespace

    @property
    def path(self) -> Path:
        return Path("/run/netns") / self.name

    def exec_prefix(self) -> list[str]:
        """Prefix that runs a command inside the namespace (``ip netns exec`` execs it)."""
        return ["ip", "netns", "exec", self.name]


def _ip_json(*args: str) -> list[dict]:
    output = run("ip", "-j", *args).stdout.strip()
    return json.loads(output) if output else []


def links() -> list[str]:
    """Names of the host's network links."""
    return [link["ifname"] for link in _ip_json("link", "show")]


def lab_links() -> list[str]:
    return [name for name in links() if name.startswith(PREFIX)]


def lab_namespaces() -> list[str]:
    output = run("ip", "netns", "list").stdout
    return [line.split()[0] for line in output.splitlines() if line.startswith(PREFIX)]


def check_ranges() -> None:
    """Refuse to go on if a lab range overlaps any route or address not made by the lab."""
    lab = [ipaddress.ip_network(LAB_NET4), ipaddress.ip_network(LAB_NET6)]
    for family in ("-4", "-6"):
        for route in _ip_json(family, "route", "show", "table", "all"):
            dst, dev = route.get("dst", "default"), route.get("dev", "")
            if dst == "default" or dev.startswith(PREFIX) or route.get("type") in (
                "multicast", "broadcast"
            ):
                continue
            network = ipaddress.ip_network(dst, strict=False)
            if any(network.version == net.version and network.overlaps(net) for net in lab):
                raise LabError(
                    f"lab range collides with the route '{dst} dev {dev}'; "
                    "refusing to add lab addresses"
                )
    for link in _ip_json("addr", "show"):
        if link["ifname"].startswith(PREFIX):
            continue
        for info in link.get("addr_info", []):
            address = ipaddress.ip_address(info["local"])
            if any(address in net for net in lab if net.version == address.version):
                raise LabError(f"{address} on {link['ifname']} is inside a lab range")


def up(namespaces: list[Namespace]) -> None:
    """Create (or complete) the bridge and each namespace; harmless when they exist."""
    check_ranges()
    if BRIDGE not in links():
        run("ip", "link", "add", BRIDGE, "type", "bridge")
    run("ip", "addr", "replace", f"{HOST4}/{PREFIX_LEN4}", "dev", BRIDGE)
    run("ip", "-6", "addr", "replace", f"{HOST6}/{PREFIX_LEN6}", "dev", BRIDGE, "nodad")
    run("ip", "link", "set", BRIDGE, "up")
    # the VPS's default route points here: nothing arriving on the bridge is ever forwarded
    run("sysctl", "-q", "-w", f"net.ipv4.conf.{BRIDGE}.forwarding=0",
        f"net.ipv6.conf.{BRIDGE}.forwarding=0")
    for ns in namespaces:
        if not ns.path.exists():
            run("ip", "netns", "add", ns.name)
        if ns.host_link not in links():
            run("ip", "link", "add", ns.host_link, "type", "veth", "peer", "name", ns.peer_link)
            run("ip", "link", "set", ns.peer_link, "netns", ns.name)
            run("ip", "-n", ns.name, "link", "set", ns.peer_link, "name", "eth0")
        run("ip", "link", "set", ns.host_link, "master", BRIDGE, "up")
        run("ip", "-n", ns.name, "link", "set", "lo", "up")
        if ns.addressed_inside:
            continue
        run("ip", "-n", ns.name, "addr", "replace", f"{ns.ipv4}/{PREFIX_LEN4}", "dev", "eth0")
        run("ip", "-n", ns.name, "-6", "addr", "replace", f"{ns.ipv6}/{PREFIX_LEN6}", "dev", "eth0",
            "nodad")
        run("ip", "-n", ns.name, "link", "set", "eth0", "up")


def reset_vps_link(ns: Namespace, ipv6_off: bool) -> None:
    """eth0 as a new VPS finds it: down, no address, no route; IPv6 disabled if ``ipv6_off``
    (the image's sysctl, applied before boot: the container's systemd-sysctl may not run)."""
    run("ip", "-n", ns.name, "link", "set", "eth0", "down")
    run("ip", "-n", ns.name, "addr", "flush", "dev", "eth0")
    value = "1" if ipv6_off else "0"
    for scope in ("all", "default", "eth0"):
        run("ip", "netns", "exec", ns.name, "sysctl", "-q", "-w",
            f"net.ipv6.conf.{scope}.disable_ipv6={value}")

def forget_neighbours(addresses: list[str], namespaces: list[Namespace]) -> None:
    """Drop the host's (and these namespaces') neighbour entries for ADDRESSES: a VPS booted in
    a new namespace has a new MAC address (a real VPS keeps its own across a reboot), and an
    IPv6 entry still naming the old one loses the first connections until it is probed again."""
    for address in addresses:
        run("ip", "neigh", "flush", "to", address)
        for ns in namespaces:
            run("ip", "-n", ns.name, "neigh", "flush", "to", address)


# --- outbound port 25 blocked, as many VPS providers do: on the bridge (the host side), so the
# VPS's own firewall (which the deploy manages) neither sees nor can undo it ---

BLOCK_TABLE = f"mhlab{LANE.number}_block_smtp"  # nftables, bridge family, host namespace


def block_smtp(ns: Namespace) -> None:
    """Drop every TCP packet to port 25 that ``ns`` sends into the bridge (IPv4 and IPv6),
    whether to another lab host or to the host itself; other ports pass. Harmless if on."""
    unblock_smtp()
    rule = f'iifname "{ns.host_link}" meta l4proto tcp th dport 25 drop'
    run("nft", "-f", "-", input=(
        f"table bridge {BLOCK_TABLE} {{\n"
        f"  chain forward {{ type filter hook forward priority 0; policy accept; {rule}; }}\n"
        f"  chain input {{ type filter hook input priority 0; policy accept; {rule}; }}\n"
        "}\n"))


def unblock_smtp() -> None:
    """Remove the block (harmless if it is not there)."""
    if smtp_blocked():
        run("nft", "delete", "table", "bridge", BLOCK_TABLE)


def smtp_blocked() -> bool:
    """Whether the block is in place."""
    if shutil.which("nft") is None:  # scripts/bootstrap installs nftables
        return False
    return run("nft", "list", "table", "bridge", BLOCK_TABLE, check=False).returncode == 0


def delete_namespace(ns: Namespace) -> None:
    """Remove one namespace (its veth pair goes with it); refused while anything runs in it."""
    if namespace_pids(ns.name):
        raise LabError(f"processes still run in {ns.name}: {namespace_pids(ns.name)}")
    if ns.path.exists():
        run("ip", "netns", "del", ns.name)


def namespace_pids(name: str) -> list[int]:
    """PIDs of processes still running in a lab namespace."""
    result = run("ip", "netns", "pids", name, check=False)
    return [int(pid) for pid in result.stdout.split()] if result.returncode == 0 else []


def down(namespaces: list[Namespace]) -> None:
    """Delete the namespaces, their veths and the bridge (whatever of them exists), and the
    port 25 block."""
    unblock_smtp()
    present = set(lab_namespaces())
    for ns in namespaces:
        if ns.name in present:
            run("ip", "netns", "del", ns.name)
    for link in lab_links():
        if link.startswith(PREFIX) and link != BRIDGE:
            run("ip", "link", "del", link, check=False)
    if BRIDGE in links():
        run("ip", "link", "del", BRIDGE)
