"""The certificate policy from settings."""

from __future__ import annotations

from reactor.certs.validate import Policy
from reactor.settings import CertsSettings


def policy_from(settings: CertsSettings) -> Policy:
    return Policy.from_trust_dir(
        settings.trust_dir,
        clock_skew_s=settings.clock_skew_s,
        renew_before=settings.renew_before,
        min_rsa_bits=settings.min_rsa_bits,
        require_client_auth=settings.require_client_auth,
        bind=settings.bind,
    )
