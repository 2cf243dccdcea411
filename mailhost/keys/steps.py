"""This run's steps of the key rotations, kept by the run (run.MailRun.steps), not by a module.

deploy.py computes each step (a domain's DKIM rotation: dkim.rotation_step; the host's TLS key
rollover: host/tls.key_rollover) and keeps it here; what depends on it is handed this object:
the MTA's signing configuration (host/opendkim, host/chasquid), the DNS records of every zone
(zones.sync) and the TLSA written after certbot (run.tlsa_preview). A process that computed no
step (scripts/check, a test) hands an empty one: the state saved on the controller is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailhost.keys.dane import Rollover
from mailhost.keys.rotation import Step


@dataclass
class KeySteps:
    """The steps computed in this run, by host (mail_hostname) and domain."""

    dkim: dict[tuple[str, str], Step] = field(default_factory=dict)
    tls: dict[str, Rollover] = field(default_factory=dict)

    def keep_dkim(self, settings, domain: str, step: Step) -> None:
        self.dkim[(settings.mail_hostname, domain)] = step

    def keep_tls(self, settings, step: Rollover) -> None:
        self.tls[settings.mail_hostname] = step

    def dkim_step(self, settings, domain: str) -> Step | None:
        """This run's rotation step of a host's domain (None: not computed in this run)."""
        return self.dkim.get((settings.mail_hostname, domain))

    def tls_step(self, settings) -> Rollover | None:
        """This run's key rollover step of a host (None: not computed in this run)."""
        return self.tls.get(settings.mail_hostname)

    def switching_now(self) -> bool:
        """Whether a host's rollover switches keys in this run (the TLSA changes after
        certbot)."""
        return any(step.switch for step in self.tls.values())
