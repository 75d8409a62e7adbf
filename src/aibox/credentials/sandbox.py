"""Credential hand-off to a sandbox at start, revocation at stop."""

from __future__ import annotations

from aibox.config import Config
from aibox.policy.effective import EffectivePolicy


def prepare_sandbox_credentials(
    config: Config, policy: EffectivePolicy, sandbox_id: str, user: str, rootless: bool
) -> list[str]:
    """Issue this sandbox's credentials and return the podman arguments that mount them."""
    # TODO: placeholder until the credential broker lands.
    return []


def revoke_sandbox_credentials(config: Config, sandbox_id: str) -> None:
    """Revoke the credentials issued to ``sandbox_id`` (queued when Vault is down)."""
    # TODO: placeholder until the credential broker lands.
