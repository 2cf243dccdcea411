"""Shared fixtures: a real Knot world and a Cloudflare emulator world."""

pytest_plugins = ["knot_world", "cloudflare_world"]
