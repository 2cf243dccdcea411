"""``scripts/reports INVENTORY [--json] [--days N] [--min-messages N]``: the DMARC and TLS-RPT
reports of every managed host, fetched, summarized and printed (mailhost.reports); each host's
summary is also written to its ``secrets_dir`` (zones.notices.summary_path), where the deploy
reads it."""

from __future__ import annotations

import datetime
import json
import sys

from pyinfra.api.exceptions import PyinfraError

from mailhost.cli import arguments, read_inventory
from mailhost.reports.fetch import report_host
from mailhost.reports.summary import LADDER_DAYS, render_table
from mailhost.run import MailRun
from mailhost.zones.notices import summary_path


def main(argv=None) -> int:
    parser = arguments("scripts/reports", __doc__)
    parser.add_argument("--json", action="store_true", help="one JSON object, by host")
    parser.add_argument("--days", type=int, default=LADDER_DAYS,
                        help=f"reports of the last N days (default {LADDER_DAYS})")
    parser.add_argument("--min-messages", type=int, default=5,
                        help="the ladder ignores sources with at most N messages (default 5)")
    args = parser.parse_args(argv)
    if args.days < 1:
        print(f"scripts/reports: --days {args.days}: expected a whole number of days, 1 or "
              "more", file=sys.stderr)
        return 2
    if args.min_messages < 0:
        print(f"scripts/reports: --min-messages {args.min_messages}: expected 0 or more",
              file=sys.stderr)
        return 2

    try:  # nothing connected: the IMAP logins are the reports' own
        run = MailRun.load(read_inventory(args.inventory))
    except PyinfraError as error:
        print(f"scripts/reports: {error}", file=sys.stderr)
        return 2
    now = datetime.datetime.now(datetime.UTC)
    results = {}
    for name, settings in run.settings.items():
        if not settings.mail_manage_host:
            continue
        results[name] = report_host(settings, run.secrets[name], args.days, args.min_messages,
                                    now)
        path = summary_path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results[name], indent=2) + "\n")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, summary in results.items():
            print(f"{name}:")
            print(render_table(summary))
    failed = any(r["problems"] for r in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
