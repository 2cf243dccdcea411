"""The keys: DKIM keys on the controller and their rotation (dkim, rotation), the TLS key's
DANE rollover (dane), and this run's steps of both (steps.KeySteps, kept by the run)."""
