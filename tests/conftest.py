"""Shared fixtures and the lab's lane.

Under pytest-xdist each worker is a lab lane of its own (gw0 -> lane 0, gw1 -> lane 1...): the
lane is chosen here, before any plugin or test module imports the lab (lab.common reads
MAILHOST_LAB_LANE once). Outside xdist, MAILHOST_LAB_LANE (default 0) is used as it is.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["MAILHOST_LAB_LANE"] = str(int(os.environ["PYTEST_XDIST_WORKER"][2:]))

pytest_plugins = ["lab_world", "knot_world", "cloudflare_world", "powerdns_world"]
