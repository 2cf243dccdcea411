# An example production inventory: copy it (e.g. to inventory/mine.py) and edit.
#
#     pyinfra inventory/mine.py deploy.py --dry     # see every host and DNS change first
#     pyinfra inventory/mine.py deploy.py           # then apply
#
# Secrets are never written here: export CLOUDFLARE_API_TOKEN (or MAILHOST_TSIG_SECRET for
# RFC 2136) and MAILHOST_PASSWORD_<USER>_<DOMAIN>, or put them in secrets/secrets.toml (0600).

mail_hosts = [
    (
        "mail.example.com",                      # how pyinfra names the host
        {
            "ssh_hostname": "198.51.100.25",     # where to SSH (the VPS's public IPv4)
            "ssh_user": "root",

            "mail_hostname": "mail.example.com",  # the MX target, the PTR, the certificate
            "mail_domains": ["example.com"],     # each gets MX, SPF, DKIM, DMARC, TLS-RPT, CAA
            "ipv4": "198.51.100.25",
            "ipv6": "2001:db8:1234::25",         # None when the VPS has no IPv6
            "mta": "postfix",                    # or "chasquid"

            # DNS through Cloudflare (token scoped to Zone:DNS:Edit on these zones)...
            "dns_provider": "cloudflare",
            # ...or an RFC 2136 primary (BIND, Knot, PowerDNS) with a TSIG key:
            # "dns_provider": "rfc2136",
            # "dns_server": "ns1.example.com",
            # "dns_tsig_key_name": "mailhost",
            # "dns_zones": ["example.com"],       # default: each mail domain is its own zone

            "dmarc_policy": "quarantine",
            "dmarc_rua": ["mailto:dmarc-reports@example.com"],
            "tlsrpt_rua": ["mailto:tls-reports@example.com"],
            "acme_email": "postmaster@example.com",

            "mail_users": ["alice@example.com"],
            "mail_aliases": {
                "postmaster@example.com": ["alice@example.com"],
                "bob@example.com": ["bob.example@gmail.com"],   # forwarded outside, with SRS
            },
        },
    ),
]
