"""python -m lab up [--fresh [--host NAME]] [--image IMAGE] [--vps N] [--memory SIZE]
[--dpkg-lock-seconds N] [--old-provider] | down | reboot [--host NAME] | block-smtp on|off
| status [--json] | ssh [--host NAME] [COMMAND...]   (the lane: MAILHOST_LAB_LANE, 0 to 3)"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import images, lab, vps
from .common import FLEET, LabError, Paths


def memory_size(text: str) -> int:
    try:
        return vps.parse_memory(text)
    except LabError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/lab", description=lab.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the lab (what is not running yet)")
    up.add_argument("--vps", type=int, dest="vps_count", metavar="N",
                    help=f"boot the first N of the lab's {len(FLEET)} VPS ("
                         f"{', '.join(v.hostname for v in FLEET)}); default: as many as run, "
                         "else 1")
    up.add_argument("--host", help="with --fresh: rebuild only this VPS (its hostname)")
    up.add_argument("--fresh", action="store_true",
                    help="also rebuild the VPS from the cached rootfs and reboot it")
    up.add_argument("--image", choices=list(images.IMAGES),
                    help=f"the VPS image (default: the running VPS's, else "
                         f"{images.DEFAULT_IMAGE}); another one rebuilds the VPS")
    up.add_argument("--dpkg-lock-seconds", type=int,
                    default=int(os.environ.get("MAILHOST_LAB_DPKG_LOCK_SECONDS", "0")),
                    help="a new VPS holds dpkg's lock this long after boot, as "
                         "unattended-upgrades does (default $MAILHOST_LAB_DPKG_LOCK_SECONDS or 0)")
    up.add_argument("--memory", type=memory_size, metavar="SIZE",
                    help="cap the VPS's memory, no swap, as the smallest plans do (e.g. 1G); "
                         "another cap than the running VPS's rebuilds it")
    up.add_argument("--old-provider", action="store_true",
                    help="also start the old provider (imap.old.example, Dovecot holding "
                         "alice's mail for scripts/import-mail); later `up` keep it running")
    up.add_argument("--json", action="store_true", help="print the status as JSON")
    commands.add_parser("down", help="stop everything the lab started and remove what it made")
    reboot = commands.add_parser("reboot", help="reboot a VPS (systemctl reboot; its network state "
                                       "starts empty, as a rebooted kernel's does)")
    commands.add_parser("ca-down", help="stop the ACME CA (Pebble), as a CA that is down; "
                                        "`up` starts it again")
    block = commands.add_parser("block-smtp", help="block (on) or unblock (off) the VPS's "
                                "outbound port 25 on the bridge, as VPS providers do")
    block.add_argument("state", choices=["on", "off"])
    status = commands.add_parser("status", help="what runs where (exit 3 if not running)")
    status.add_argument("--json", action="store_true")
    reboot.add_argument("--host", help="the VPS to reboot (default: the first)")
    ssh = commands.add_parser("ssh", help="ssh into a VPS as root")
    ssh.add_argument("--host", help="the VPS (default: the first)")
    ssh.add_argument("remote", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        print("scripts/lab: needs root (namespaces, systemd-nspawn, port 53)", file=sys.stderr)
        return 2
    paths = Paths.for_checkout()
    try:
        if args.command == "up":
            if args.host and not args.fresh:
                parser.error("--host goes with --fresh (rebuild that VPS)")
            info = lab.up(paths, fresh=args.fresh, image_name=args.image,
                          dpkg_lock_seconds=args.dpkg_lock_seconds, memory=args.memory,
                          vps_count=args.vps_count, host=args.host,
                          old_provider_=args.old_provider)
            print(json.dumps(info, indent=2) if args.json else lab.describe(info))
            return 0 if info["running"] else 1
        if args.command == "down":
            left = lab.down(paths)
            if any(left.values()):
                print(f"lab down: left behind: {json.dumps(left)}", file=sys.stderr)
                return 1
            print("lab down: every process stopped; no namespace, link or mount left")
            return 0
        if args.command == "reboot":
            info = lab.reboot_vps(paths, args.host)
            print(lab.describe(info))
            return 0 if info["running"] else 1
        if args.command == "ca-down":
            lab.stop_ca(paths)
            print("lab ca-down: Pebble stopped; `scripts/lab up` starts it again")
            return 0
        if args.command == "block-smtp":
            info = lab.block_smtp(paths, args.state == "on")
            print(f"lab: the VPS's outbound port 25 is "
                  f"{'blocked' if info['relay']['outbound_smtp_blocked'] else 'open'}")
            return 0
        if args.command == "status":
            info = lab.status(paths)
            print(json.dumps(info, indent=2) if args.json else lab.describe(info))
            return 0 if info["running"] else 3
        if args.command == "ssh":
            from .vps import ssh_command

            target = lab.find_vps(args.host) if args.host else FLEET[0]
            command = ssh_command(paths, target.ipv4) + args.remote
            os.execvp(command[0], command)
    except LabError as error:
        print(f"lab {args.command}: {error}", file=sys.stderr)
        if args.command == "up":
            print("lab up: `scripts/lab down` stops what was started", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. `scripts/lab status --json | head`
        sys.exit(1)
