"""The command lines (scripts/check, rotate-dkim, rotate-tls-key, reports)."""
