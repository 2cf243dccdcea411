# Defaults for every mail host. An inventory overrides any of them per host or per group.
# Every key is validated by mailhost.settings before anything changes; secrets never go here
# (see secrets/secrets.toml.example).

mta = "postfix"                  # or "chasquid"
dns_ttl = 3600

# SPF: the host's IPv4 and IPv6 are written explicitly; add includes for other senders.
spf_all = "~all"                 # "-all" once you are sure every sender is listed
spf_include = []                 # adopting another sender's SPF: list its includes here

# MX: values of other servers to keep beside ours (a backup MX), e.g. ["20 backup.example.net"];
# any other foreign MX value stops the run unless dns_force = True.
mx_keep = []

# DMARC: start with "none" and reports, then move to quarantine / reject.
dmarc_policy = "none"
dmarc_pct = 100
dmarc_adkim = "r"
dmarc_aspf = "r"

# DKIM: an RSA key (what every receiver checks), optionally a second ed25519 signature.
dkim_selector = "mail"
dkim_key_type = "rsa-2048"
dkim_ed25519 = False

# Inbound mail (rspamd): no greylisting by default (it delays every new sender's first
# message); True turns it on and installs Redis for it.
greylisting = False

# These CAs may issue certificates for the mail domains (added beside CAs the zone names).
caa_issuers = ["letsencrypt.org"]

# ACME (certbot on the host): Let's Encrypt by default.
acme_challenge = "http-01"       # or "dns-01", through the DNS provider

# Where the controller keeps secrets and the DKIM private keys (gitignored).
secrets_file = "secrets/secrets.toml"
secrets_dir = "secrets"

# DANE (docs/keys-and-certificates.md): "auto" publishes the TLSA of port 25 when
# the zone is DNSSEC-signed; "off" manages no TLSA
dane = "auto"
