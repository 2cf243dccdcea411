"""The Cloudflare API emulator: the real SDK (and certbot's Cloudflare plugin) talk to it.

``state`` holds accounts, zones and records as the API shows them, ``http`` serves the
``/client/v4`` routes, ``mirror`` copies every change into Knot over RFC 2136 (so the lab's
resolvers see it), ``emulator`` ties them together, and ``lab_server`` is the process
``scripts/lab`` starts.
"""
