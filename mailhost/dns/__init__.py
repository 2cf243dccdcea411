"""The DNS half: the mail records of every host (records, spf, mta_sts, desired), planned
against what a provider holds (plan, providers/) and applied once per zone (sync); the notices
a plan prints beside its changes, and where the checks and the key rotations ask DNS (lookup)."""
