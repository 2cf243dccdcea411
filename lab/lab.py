"""``scripts/lab up|down|status``: bring the whole lab up, describe it, take it down.

``up`` starts what is not already running (so running it twice is harmless) and records every
PID in ``.lab/lane-N/state.json``; ``up --fresh`` also rebuilds the VPS from the cached rootfs
(``--host NAME``: that one only), and so does ``up --image`` naming another image than the
running one (default: the running one, else ubuntu-24.04). ``up --vps N`` boots the first N
VPS of common.FLEET (default: as many as run, else 1).
``down`` stops those PIDs, deletes the namespaces, links and the VPS rootfs, and checks that
nothing is left behind. ``status --json`` is what tests and tools read.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import socket
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from . import (
    api_front,
    apt_cache,
    backup_target,
    certs,
    images,
    network,
    old_provider,
    pebble,
    proxy,
    relay,
    vps,
    zones,
)
from .common import (
    CHECKOUT,
    CLOUDFLARE_PORT,
    DNS_PORT,
    FLEET,
    HOST4,
    HOST6,
    LANE,
    LANES_DIR,
    MAIL_DOMAINS,
    POWERDNS_API_PORT,
    POWERDNS_PORT,
    PREFIX,
    PROXY_PORT,
    RX4,
    RX6,
    RX_DOMAIN,
    RX_HOSTNAME,
    RX_NETNS,
    RX_TEMPFAIL_FLAG,
    SMTP_PORT,
    TSIG_KEY_NAME,
    LabError,
    Paths,
    Proc,
    Vps,
    lab_world,
    load_state,
    read_secrets,
    save_state,
    spawn,
    wait_for,
)
from .vps import mounts_under

RX_NS = network.Namespace(RX_NETNS, RX4, RX6)
CLOUDFLARE_URL = f"http://{HOST4}:{CLOUDFLARE_PORT}/client/v4"
# stopped in this order by `down`, after the VPS; Knot last
COMPONENTS = ["old_provider", "relay", "receiver", "backup_target", "api_front", "cloudflare",
              "pebble", "proxy", "knot", "powerdns"]
POWERDNS_URL = f"http://{HOST4}:{POWERDNS_API_PORT}"


def namespace(vps_: Vps) -> network.Namespace:
    """A VPS's network namespace (the VPS sets its own addresses, as a rented one does)."""
    return network.Namespace(vps_.netns, vps_.ipv4, vps_.ipv6, addressed_inside=True)


def booted(state: dict) -> list[Vps]:
    """The VPS this lab boots: the first ``vps_count`` of FLEET."""
    return list(FLEET[:state.get("vps_count", 1)])


def namespaces(state: dict) -> list[network.Namespace]:
    return [*(namespace(v) for v in booted(state)), RX_NS]


def find_vps(name: str) -> Vps:
    """The VPS called NAME (its hostname, its short name or its key); LabError otherwise."""
    for vps_ in FLEET:
        if name in (vps_.hostname, vps_.key, vps_.ipv4, vps_.ipv6) or (
                vps_ == FLEET[0] and name == vps_.short):
            return vps_
    raise LabError(f"--host {name!r}: expected one of {', '.join(v.hostname for v in FLEET)}")


# --- small probes, also used by the tests ---

def smtp_banner(address: str, port: int = SMTP_PORT, timeout: float = 3) -> str:
    """The first line an SMTP server sends ('' if nothing answers)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            data = conn.recv(512).decode(errors="replace")
            conn.sendall(b"QUIT\r\n")
            return data.splitlines()[0] if data else ""
    except OSError:
        return ""


def cloudflare_zones(paths: Paths) -> list[str]:
    """Zone names the emulator lists ([] if it does not answer)."""
    token = read_secrets(paths).get("cloudflare_api_token", "")
    request = urllib.request.Request(CLOUDFLARE_URL + "/zones",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return [zone["name"] for zone in json.load(response)["result"]]
    except (OSError, ValueError, KeyError):
        return []


# --- setup steps ---

# inventory/lab.py's mail_users, and inventory/lab-fleet.py's of shop.test
LAB_MAIL_USERS = ["alice@example.test", "bob@example.test", "carol@shop.test"]


def ensure_secrets(paths: Paths) -> None:
    """The lab's TSIG secret and emulator token, generated once, in a 0600 TOML file."""
    paths.secrets_dir.mkdir(parents=True, exist_ok=True)
    paths.secrets_dir.chmod(0o700)
    acme_line = f'acme_tsig_secret = "{base64.b64encode(secrets.token_bytes(32)).decode()}"\n'
    key = secrets.token_urlsafe(30)  # PowerDNS's API key, under the lab's name and lexicon's
    powerdns_lines = f'powerdns_api_key = "{key}"\nlexicon_powerdns_auth_token = "{key}"\n'
    if paths.secrets_file.exists():
        text = paths.secrets_file.read_text()
        if "acme_tsig_secret" not in text:  # a lab from before DNS-01's own key: add it
            text = acme_line + text
        if "powerdns_api_key" not in text:  # a lab from before the powerdns world
            text = powerdns_lines + text
        missing = [user for user in LAB_MAIL_USERS if f'"{user}"' not in text]
        text += "".join(f'"{user}" = "{secrets.token_urlsafe(18)}"\n' for user in missing)
        paths.secrets_file.write_text(text)  # [passwords] is the last table: users go there
        return
    text = (
        "# mailhost lab secrets (generated by scripts/lab; never printed)\n"
        f'tsig_secret = "{base64.b64encode(secrets.token_bytes(32)).decode()}"\n'
        + acme_line + powerdns_lines +
        f'cloudflare_api_token = "{secrets.token_urlsafe(30)}"\n'
        "[passwords]\n"
        + "".join(f'"{user}" = "{secrets.token_urlsafe(18)}"\n' for user in LAB_MAIL_USERS)
    )
    descriptor = os.open(paths.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "w") as file:
        file.write(text)


@contextmanager
def locked(paths: Paths):
    """One lab command at a time in a lane, machine-wide (two checkouts share the machine)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    LANE.lock.parent.mkdir(parents=True, exist_ok=True)
    with open(LANE.lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def owner_file() -> Path:
    """Names the checkout whose lab holds this lane (machine-wide, while it is up)."""
    return LANE.holder


def refuse_a_lane_held_elsewhere(paths: Paths) -> None:
    """LabError if another checkout's lab runs in this lane (its recorded processes alive).

    A holder whose checkout is gone (its state with it) holds nothing: its namespaces are
    orphans, and ``down`` from here may clean them."""
    try:
        holder = Path(owner_file().read_text().strip())
    except OSError:
        return
    if holder != paths.root and any(
            Proc.from_json(data).alive()
            for data in load_state(Paths(holder)).get("procs", {}).values()):
        raise LabError(f"lane {LANE.number} is in use by the lab in {holder}: take it down "
                       f"there, or use another lane here (MAILHOST_LAB_LANE=0..3)")


def claim_lane(paths: Paths) -> None:
    """Make this checkout the lane's holder; LabError if another checkout's lab runs in it."""
    refuse_a_lane_held_elsewhere(paths)
    owner_file().write_text(f"{paths.root}\n")


def release_lane(paths: Paths) -> None:
    try:
        if Path(owner_file().read_text().strip()) == paths.root:
            owner_file().unlink()
    except OSError:
        pass


def _proc(state: dict, name: str) -> Proc | None:
    data = state.get("procs", {}).get(name)
    return Proc.from_json(data) if data else None


def _alive(state: dict, name: str) -> bool:
    proc = _proc(state, name)
    return proc is not None and proc.alive()


def _record(paths: Paths, state: dict, name: str, proc: Proc | None) -> None:
    procs = state.setdefault("procs", {})
    if proc is None:
        procs.pop(name, None)
    else:
        procs[name] = proc.to_json()
    save_state(paths, state)


def start_cloudflare(paths: Paths) -> Proc:
    log = paths.logs / "cloudflare.log"
    proc = spawn([sys.executable, "-m", "lab.cloudflare.lab_server",
                  "--listen", f"{HOST4}:{CLOUDFLARE_PORT}",
                  *(arg for zone in MAIL_DOMAINS for arg in ("--zone", zone)),
                  "--dns", HOST4, "--dns-port", str(DNS_PORT),
                  "--secrets", str(paths.secrets_file)], log, cwd=CHECKOUT)
    wait_for(lambda: set(MAIL_DOMAINS) <= set(cloudflare_zones(paths)), 20, "Cloudflare emulator",
             proc=proc, log=log)
    return proc


def start_receiver(paths: Paths) -> Proc:
    cert, key = certs.ensure_leaf(paths.ca, "receiver", [RX_HOSTNAME], [RX4, RX6], paths.ca)
    paths.received.mkdir(parents=True, exist_ok=True)
    log = paths.logs / "receiver.log"
    proc = spawn([*RX_NS.exec_prefix(), sys.executable, "-m", "lab.receiver",
                  "--listen", RX4, "--listen", RX6, "--port", str(SMTP_PORT),
                  "--hostname", RX_HOSTNAME, "--domain", RX_DOMAIN,
                  "--dns", HOST4, "--dns-port", str(DNS_PORT),
                  "--store", str(paths.received), "--cert", str(cert), "--key", str(key)],
                 log, cwd=CHECKOUT)
    wait_for(lambda: smtp_banner(RX4) and smtp_banner(RX6), 20, "receiver", proc=proc, log=log)
    return proc


def start_vps(paths: Paths, state: dict, image: images.Image, dpkg_lock_seconds: int,
              memory: int | None = None, vps_: Vps = FLEET[0]) -> None:
    """(Re)build VPS_'s rootfs from the cache and boot it (MEMORY: its cap in bytes); wait
    until systemd is up."""
    stop_vps(paths, state, vps_)
    network.reset_vps_link(namespace(vps_), ipv6_off=image.network == "netplan")
    vps.prepare_rootfs(paths, image, dpkg_lock_seconds, vps_)
    relay.trust_lab_ca(paths.rootfs(vps_), paths.ca / "lab-ca.pem")  # the relay's certificate
    # the certificates Pebble issues, as a real VPS trusts Let's Encrypt's: one host of a
    # fleet verifies another's (a backup MX hands mail to its mail host over verified TLS)
    if paths.pebble_root.exists():
        relay.trust_lab_ca(paths.rootfs(vps_), paths.pebble_root, "mailhost-lab-pebble-root")
    state["image"] = image.name
    state["dpkg_lock_seconds"] = dpkg_lock_seconds
    state["memory"] = memory
    vps.write_ssh_config(paths)
    log = console_log(paths, vps_)
    log.unlink(missing_ok=True)
    boot_vps(paths, state, log, vps_)


def console_log(paths: Paths, vps_: Vps) -> Path:
    return paths.logs / f"{vps_.key}-console.log"


def boot_vps(paths: Paths, state: dict, log: Path, vps_: Vps = FLEET[0]) -> None:
    """Boot VPS_'s root filesystem as it is; wait until systemd is up; record it. Before
    each boot the VPS's unbound snippet gets the signed lab zones' current trust anchors."""
    vps.write_resolver_snippet(paths.rootfs(vps_), zones.trust_anchors())
    network.forget_neighbours([vps_.ipv4, vps_.ipv6], [RX_NS])
    nspawn = vps.boot(paths, log, state.get("memory"), vps_)
    _record(paths, state, vps_.key, nspawn)
    init = wait_for(lambda: vps.container_init(nspawn), 20, f"{vps_.hostname} init",
                    proc=nspawn, log=log)
    _record(paths, state, f"{vps_.key}_init", init)
    state.setdefault("vps_states", {})[vps_.key] = vps.wait_running(paths, nspawn, log,
                                                                    vps=vps_)
    # nspawn's first child may have been a short-lived helper: record the container's init
    _record(paths, state, f"{vps_.key}_init", vps.container_init(nspawn) or init)
    state.setdefault("booted_at", {})[vps_.key] = time.time()
    save_state(paths, state)


def reboot_vps(paths: Paths, host: str | None = None) -> dict:
    """Reboot a VPS (the first, or HOST) as a provider's VPS reboots: ``systemctl reboot``
    inside, then the same root filesystem boots again in a new network namespace (a kernel's
    network state starts empty: no firewall rules, addresses or sysctls survive; what comes
    back is what the VPS's own systemd, netplan and ufw bring back). Returns status()."""
    vps_ = find_vps(host) if host else FLEET[0]
    with locked(paths):
        state = load_state(paths)
        nspawn = _proc(state, vps_.key)
        if nspawn is None or not nspawn.alive():
            raise LabError(f"{vps_.hostname} is not running: `scripts/lab up` first")
        image = images.image(state["image"])
        vps.ssh(paths, "systemctl --no-block reboot", vps_.ipv4, timeout=30)
        if not nspawn.wait_exit(timeout=90):  # nspawn exits (133) when its container reboots
            raise LabError(f"{vps_.hostname} did not shut down within 90 s of "
                           "`systemctl reboot`")
        stop_vps(paths, state, vps_)
        network.delete_namespace(namespace(vps_))
        network.up(namespaces(state))
        network.reset_vps_link(namespace(vps_), ipv6_off=image.network == "netplan")
        boot_vps(paths, state, console_log(paths, vps_), vps_)
    return status(paths)


def stop_ca(paths: Paths) -> dict:
    """Stop the ACME CA (Pebble), as a CA that is down or unreachable; ``up`` starts it again
    (with a new issuing root, as every Pebble start). Returns status()."""
    with locked(paths):
        state = load_state(paths)
        pebble_ = _proc(state, "pebble")
        if pebble_ is not None:
            pebble_.stop()
        _record(paths, state, "pebble", None)
    return status(paths)


def stop_vps(paths: Paths, state: dict, vps_: Vps = FLEET[0]) -> None:
    nspawn, init = f"{vps_.key}", f"{vps_.key}_init"
    vps.stop(_proc(state, nspawn), _proc(state, init))
    if not _alive(state, nspawn) and not _alive(state, init):
        vps.remove_run_files(paths, vps_)
        vps.remove_memory_cgroup(vps_)
    _record(paths, state, nspawn, None)
    _record(paths, state, init, None)


def up(paths: Paths, fresh: bool = False, image_name: str | None = None,
       dpkg_lock_seconds: int = 0, memory: int | None = None, vps_count: int | None = None,
       host: str | None = None, old_provider_: bool = False) -> dict:
    """Start every part of the lab that is not running; return status().

    + fresh: rebuild the VPS from the image's cached rootfs even if it runs
    + image_name: the VPS image (images.IMAGES); another one than the running VPS's rebuilds it
    + dpkg_lock_seconds: the new VPS holds dpkg's lock this long after boot (0: not at all)
    + memory: cap the VPS's memory at this many bytes, no swap (default: the running VPS's
      cap, else none); another cap than the running VPS's rebuilds it
    + vps_count: how many VPS of common.FLEET to boot (default: as many as run, else 1)
    + host: with ``fresh``, rebuild only this VPS (its hostname)
    + old_provider_: also start the old provider (imap.old.example); once started, every
      later ``up`` keeps it running
    """
    started = time.monotonic()
    with locked(paths):
        state = load_state(paths)
        running_image = state.get("image") if _alive(state, FLEET[0].key) else None
        image = images.image(image_name or running_image or images.DEFAULT_IMAGE)
        if running_image is not None and memory is None:
            memory = state.get("memory")
        fresh = fresh or (running_image is not None and (
            running_image != image.name or state.get("memory") != memory))
        only = find_vps(host) if host else None
        count = vps_count or (state.get("vps_count", 1) if running_image else 1)
        if not 1 <= count <= len(FLEET):
            raise LabError(f"--vps {count}: expected 1 to {len(FLEET)}")
        if only is not None and only not in FLEET[:count]:
            raise LabError(f"--host {host}: not among the {count} VPS of this lab")
        claim_lane(paths)
        for gone in FLEET[count:]:
            stop_vps(paths, state, gone)
            network.delete_namespace(namespace(gone))
            vps.remove_rootfs(paths, gone)
        state["vps_count"] = count
        state["checkout"] = str(CHECKOUT)
        paths.logs.mkdir(parents=True, exist_ok=True)
        ensure_secrets(paths)
        vps.ensure_ssh_key(paths)
        certs.ensure_ca(paths.ca)
        images.build_cache(image, paths.logs / "debootstrap.log")
        network.up(namespaces(state))
        mirror_hosts = images.mirror_hosts(image)
        tsig_secret = read_secrets(paths)["tsig_secret"]
        acme_secret = read_secrets(paths)["acme_tsig_secret"]
        world = lab_world()
        if state.get("world", "knot") != world or (
                world == "powerdns" and not _alive(state, "powerdns")):
            for name in ("knot", "powerdns"):  # Knot follows a fresh primary from serial 1
                if _alive(state, name):
                    _proc(state, name).stop()
                _record(paths, state, name, None)
        state["world"] = world
        if world == "powerdns" and not _alive(state, "powerdns"):
            _record(paths, state, "powerdns",
                    zones.start_powerdns(paths, read_secrets(paths)["powerdns_api_key"]))
        if not _alive(state, "knot"):
            _record(paths, state, "knot", zones.start_knot(paths, tsig_secret, acme_secret,
                                                           secondary=world == "powerdns"))
            if _alive(state, "cloudflare"):  # re-seed it from the fresh zones
                _proc(state, "cloudflare").stop()
        apt_cache.ensure_running()  # shared by every lane; outlives this lane's `down`
        if _alive(state, "proxy") and proxy.allowed_hosts(paths) != mirror_hosts:
            _proc(state, "proxy").stop()  # another image's mirrors
        if not _alive(state, "proxy"):
            _record(paths, state, "proxy", proxy.start(paths, mirror_hosts))
        if not _alive(state, "pebble"):
            _record(paths, state, "pebble", pebble.start(paths))
        if not _alive(state, "cloudflare"):
            _record(paths, state, "cloudflare", start_cloudflare(paths))
        if not _alive(state, "api_front"):
            _record(paths, state, "api_front", api_front.start(paths))
        if not _alive(state, "receiver"):
            _record(paths, state, "receiver", start_receiver(paths))
        if not _alive(state, "relay"):
            _record(paths, state, "relay", relay.start(paths, RX_NS.exec_prefix(), RX4))
        if not _alive(state, "backup_target"):
            _record(paths, state, "backup_target",
                    backup_target.start(paths, RX_NS.exec_prefix()))
        state["old_provider"] = old_provider_ or state.get("old_provider", False)
        if state["old_provider"] and not _alive(state, "old_provider"):
            _record(paths, state, "old_provider", old_provider.start(paths, RX_NS.exec_prefix()))
        for vps_ in booted(state):
            rebuild = fresh and (only is None or only == vps_)
            if rebuild or not _alive(state, vps_.key):
                start_vps(paths, state, image, dpkg_lock_seconds, memory, vps_)
        state["up_seconds"] = round(time.monotonic() - started, 1)
        save_state(paths, state)
    return status(paths)


def block_smtp(paths: Paths, on: bool) -> dict:
    """Block (or unblock) every outbound TCP connection to port 25 from the VPS, on the bridge
    (the VPS's own firewall cannot see or undo it); 587/465 to the relay still pass. Returns
    status()."""
    with locked(paths):
        if on:
            network.block_smtp(namespace(FLEET[0]))
        else:
            network.unblock_smtp()
    return status(paths)


def leftovers(paths: Paths, state: dict | None = None) -> dict[str, list]:
    """What of the lab still exists: namespaces, links, mounts, live recorded processes."""
    state = load_state(paths) if state is None else state
    recorded = {**state.get("procs", {}), **state.get("stopped_procs", {})}
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if PREFIX in line.split()[4]]
    return {
        "namespaces": network.lab_namespaces(),
        "links": network.lab_links(),
        "mounts": mounts + [m for v in FLEET for m in mounts_under(paths.rootfs(v))],
        "nspawn_files": [str(p) for v in FLEET for p in vps.run_files(paths, v)],
        "processes": [f"{name}:{data['pid']}" for name, data in recorded.items()
                      if Proc.from_json(data).alive()],
    }


def down(paths: Paths) -> dict[str, list]:
    """Stop every recorded process by PID, delete what the lab made; return leftovers()."""
    with locked(paths):
        refuse_a_lane_held_elsewhere(paths)  # its namespaces are another lab's, not ours
        state = load_state(paths)
        procs = state.get("procs", {})
        stopped = dict(procs)
        for vps_ in FLEET:
            stop_vps(paths, state, vps_)
        for name in COMPONENTS:
            proc = _proc(state, name)
            if proc is not None:
                proc.stop()
                _record(paths, state, name, None)
        # anything still running inside a lab namespace was started by the lab (the VPS's
        # processes if nspawn died abnormally): stop it by PID before deleting the namespace
        for ns in network.lab_namespaces():
            for pid in network.namespace_pids(ns):
                try:
                    Proc.of(pid).stop(timeout=5)
                except LabError:
                    pass
        network.down([namespace(v) for v in FLEET] + [RX_NS])
        for vps_ in FLEET:
            vps.remove_rootfs(paths, vps_)
        backup_target.remove_repository(paths)
        state["stopped_procs"] = stopped
        for key in ("vps_states", "vps_count", "image", "dpkg_lock_seconds", "memory",
                    "old_provider"):
            state.pop(key, None)
        save_state(paths, state)
        release_lane(paths)
        apt_cache.stop_unless_used(sorted(LANES_DIR.glob("lane-*.checkout")))
        return leftovers(paths, state)


def vps_status(paths: Paths, state: dict, vps_: Vps, image: images.Image | None) -> dict:
    """One VPS in status(): names, addresses, how to reach it, its image and memory cap."""
    root = paths.rootfs(vps_)
    return {
        "hostname": vps_.hostname,
        "ipv4": vps_.ipv4,
        "ipv6": vps_.ipv6,
        "netns": vps_.netns,
        "ssh_user": "root",
        "ssh_key": str(paths.ssh_key),
        "ssh_known_hosts": str(paths.known_hosts),
        "ssh_config": str(paths.ssh_config),
        "ssh_command": f"ssh -F {paths.ssh_config} {vps_.hostname}",
        "rootfs": str(root),
        "image": image.name if image else None,
        "os_release": images.os_release(root) if image else {},
        "network": image.network if image else None,
        "dpkg_lock_seconds": state.get("dpkg_lock_seconds", 0),
        "memory": vps.memory_use(state.get("memory"), vps_),
        "rootfs_cache": str(image.pristine) if image else None,
        "console_log": str(console_log(paths, vps_)),
    }


def status(paths: Paths) -> dict:
    """What runs where (addresses, URLs, files, PIDs); no secret values, only key names."""
    state = load_state(paths)
    parts = {name: {**data, "alive": Proc.from_json(data).alive()}
             for name, data in state.get("procs", {}).items()}
    world = state.get("world", "knot")
    wanted = {"powerdns": world == "powerdns", "old_provider": state.get("old_provider", False)}
    running = all(_alive(state, name) for name in COMPONENTS
                  if wanted.get(name, True)) and all(
        _alive(state, v.key) for v in booted(state))
    image = images.IMAGES.get(state.get("image", ""))
    hosts = [vps_status(paths, state, v, image) for v in booted(state)]
    return {
        "running": running,
        "lane": LANE.number,
        "lane_prefix": PREFIX,
        "checkout": str(CHECKOUT),
        "state_file": str(paths.state),
        "up_seconds": state.get("up_seconds"),
        "processes": parts,
        "vps": hosts[0],  # the first VPS (mail.example.test)
        "hosts": hosts,
        "dns": {
            "server": HOST4,
            "server_ipv6": HOST6,
            "port": DNS_PORT,
            "tsig_key_name": TSIG_KEY_NAME,
            "tsig_algorithm": "hmac-sha256",
            "tsig_secret_in": f"{paths.secrets_file} (key tsig_secret)",
            "zones": sorted(zones.zones()),
            # DNSSEC: no parent publishes these DS records; a validating resolver is given them
            "trust_anchors": zones.trust_anchors(timeout=2) if _alive(state, "knot") else {},
        },
        "cloudflare": {
            "base_url": CLOUDFLARE_URL,
            "zones": MAIL_DOMAINS,
            "token_in": f"{paths.secrets_file} (key cloudflare_api_token)",
            "mirrors_to": f"{HOST4}:{DNS_PORT} (RFC 2136, TSIG {TSIG_KEY_NAME})",
            "api_host_front": f"https://{api_front.API_HOSTNAME} (on the VPS) = "
                              f"https://{HOST4}:{api_front.API_PORT} (stunnel, lab CA)",
        },
        "dns_world": world,  # who serves the mail zones: "knot" or "powerdns"
        "powerdns": {
            "api_url": POWERDNS_URL,
            "dns": f"{HOST4}:{POWERDNS_PORT}",
            "zones": MAIL_DOMAINS,
            "serving": world == "powerdns",
            "api_key_in": f"{paths.secrets_file} (keys powerdns_api_key, "
                          "lexicon_powerdns_auth_token)",
            "secondary": f"Knot {HOST4}:{DNS_PORT} (NOTIFY, AXFR; signs the zones)",
        },
        "acme": {
            "directory_url": pebble.DIRECTORY_URL,
            "root_ca_file": str(paths.pebble_root),
            "ca_bundle": str(paths.acme_ca_bundle),
            "listener_ca_file": str(paths.ca / "lab-ca.pem"),
        },
        "receiver": {
            "hostname": RX_HOSTNAME,
            "domain": RX_DOMAIN,
            "ipv4": RX4,
            "ipv6": RX6,
            "port": SMTP_PORT,
            "netns": RX_NETNS,
            "messages_dir": str(paths.received),
            "tempfail_flag": str(paths.received / RX_TEMPFAIL_FLAG),
        },
        "relay": {
            "hostname": relay.RELAY_HOSTNAME,
            "ipv4": relay.RELAY4,
            "ipv6": relay.RELAY6,
            "port": relay.RELAY_PORT,
            "relay_host": f"[{relay.RELAY_HOSTNAME}]:{relay.RELAY_PORT}",
            "user": relay.RELAY_USER,
            "password_in": f"{paths.secrets_file} (key relay_password)",
            "spf_domain": relay.RELAY_HOSTNAME,
            "delivers_to": f"{RX4}:{SMTP_PORT}",
            "outbound_smtp_blocked": network.smtp_blocked(),
        },
        "backup_target": {
            "repository": backup_target.REPOSITORY,
            "directory": str(backup_target.repository_dir(paths)),
            "host_key": str(backup_target.host_key(paths)) + ".pub",
            "secrets_in": f"{paths.secrets_file} (keys backup_password, backup_ssh_key)",
        },
        # scripts/lab up --old-provider: where scripts/import-mail brings mail from
        "old_provider": old_provider.status(paths, _alive(state, "old_provider")),
        "apt_proxy": f"http://{HOST4}:{PROXY_PORT}",
        "apt_cache": {"url": apt_cache.URL, "directory": str(apt_cache.CACHE),
                      "pid": (apt_cache.running() or Proc(0, 0)).pid or None},
        "apt_proxy_allows": proxy.allowed_hosts(paths),
        "secrets_file": str(paths.secrets_file),
        "secrets_dir": str(paths.secrets_dir),
        "inventory": str(CHECKOUT / "inventory" / "lab.py"),
        "logs": str(paths.logs),
    }


def describe(info: dict) -> str:
    """``status`` for people: what runs where."""
    pids = {name: (f"pid {p['pid']}" if p["alive"] else f"pid {p['pid']} NOT RUNNING")
            for name, p in info["processes"].items()}
    missing = "not started"
    vps_, dns_, cf, acme, rx = (info[k] for k in ("vps", "dns", "cloudflare", "acme", "receiver"))
    lines = [
        f"mailhost lab, lane {info['lane']}: "
        f"{'running' if info['running'] else 'NOT (fully) running'}"
        + (f" (last up took {info['up_seconds']}s)" if info.get("up_seconds") else ""),
        *(line for host, key in zip(info["hosts"], (v.key for v in FLEET), strict=False)
          for line in (
              f"  VPS        {host['hostname']}  {host['ipv4']}  {host['ipv6']}  "
              f"netns {host['netns']}, systemd-nspawn {pids.get(key, missing)}",
              f"             {host['ssh_command']}")),
        f"             image {vps_['image']}: {vps_['os_release'].get('PRETTY_NAME', '?')}, "
        f"network by {vps_['network']}"
        + (f", memory capped at {vps_['memory']['memory_max'] >> 20} MiB"
           if vps_["memory"].get("memory_max") else ""),
        f"  DNS        Knot {dns_['server']}:53 [{dns_['server_ipv6']}]:53  TSIG key "
        f"{dns_['tsig_key_name']}  {pids.get('knot', missing)}",
        f"             zones: {', '.join(dns_['zones'])}",
        f"  Cloudflare {cf['base_url']}  zone {', '.join(cf['zones'])} -> Knot (RFC 2136)  "
        f"{pids.get('cloudflare', missing)}",
        f"             {cf['api_host_front']}  {pids.get('api_front', missing)}",
        *([f"  PowerDNS   {info['powerdns']['api_url']} (HTTP API), DNS "
           f"{info['powerdns']['dns']}: primary of {', '.join(info['powerdns']['zones'])} -> "
           f"Knot  {pids.get('powerdns', missing)}"] if info["powerdns"]["serving"] else []),
        f"  ACME       Pebble {acme['directory_url']}  {pids.get('pebble', missing)}",
        f"             root CA {acme['root_ca_file']}, CA bundle {acme['ca_bundle']}",
        f"  Receiver   {rx['hostname']} ({rx['domain']})  {rx['ipv4']}  {rx['ipv6']}  port 25 "
        f"STARTTLS  netns {rx['netns']}, {pids.get('receiver', missing)}",
        f"             messages in {rx['messages_dir']}",
        f"  Relay      {info['relay']['relay_host']}  {info['relay']['ipv4']}  "
        f"{info['relay']['ipv6']}  STARTTLS + AUTH, to the receiver  {pids.get('relay', missing)}",
        f"             the VPS's outbound port 25: "
        f"{'BLOCKED' if info['relay']['outbound_smtp_blocked'] else 'open'} "
        "(scripts/lab block-smtp on|off)",
        f"  Backups    SFTP {info['backup_target']['repository']} (restic)  "
        f"{pids.get('backup_target', missing)}",
        *([f"  Old IMAP   {info['old_provider']['imap_url']} ({info['old_provider']['user']}, "
           f"{info['old_provider']['messages']} messages)  {pids.get('old_provider', missing)}"]
          if info["old_provider"]["running"] else []),
        f"  apt proxy  tinyproxy {info['apt_proxy']} to {', '.join(info['apt_proxy_allows'])}  "
        f"{pids.get('proxy', missing)}",
        f"             via the package cache {info['apt_cache']['url']} (apt-cacher-ng, every "
        f"lane) in {info['apt_cache']['directory']}",
        f"  Secrets    {info['secrets_file']} (tsig_secret, cloudflare_api_token)",
        f"  Inventory  {info['inventory']} (MAILHOST_LAB_PROVIDER=cloudflare for the emulator, "
        "=powerdns for PowerDNS through lexicon)",
        f"  Logs       {info['logs']}",
    ]
    return "\n".join(lines)
