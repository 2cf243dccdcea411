"""The zones this tool publishes: the mail records of every host (desired), planned against
what a provider holds (plan, providers/) and applied once per zone (sync); the notices a plan
prints beside its changes (notices)."""
