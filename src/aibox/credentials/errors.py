"""Errors raised by the credential stores, the Vault client and the helper.

    AiboxError
     +-- CredentialError            a store cannot be read or written (exit 1)
     |    +-- VaultUnavailableError Vault cannot be reached or is sealed
     +-- UsageError
          +-- ProtocolError         malformed git-credential input (exit 2)

No message carries a secret value: callers pass names, paths and addresses only.
"""

from __future__ import annotations

from aibox.errors import AiboxError, UsageError


class CredentialError(AiboxError):
    """A credential store failed: missing, unreadable, corrupted or denied."""


class VaultUnavailableError(CredentialError):
    """Vault did not respond, refused the connection or is sealed."""


class ProtocolError(UsageError):
    """Input that does not follow the git-credential protocol."""
