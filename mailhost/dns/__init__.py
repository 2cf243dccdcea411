"""What DNS records look like: a record set and the names of zones (records), the SPF record
(spf) and the MTA-STS policy with its records (mta_sts). Plain values: nothing here reads the
settings, asks DNS or writes anywhere (mailhost.lookup asks; mailhost.zones publishes)."""
