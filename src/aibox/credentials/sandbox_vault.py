"""The two Vault calls made inside a sandbox, over ``urllib`` for a fast start.

git starts the credential helper for every authenticated operation, and
importing hvac and requests costs several hundred milliseconds there. The helper
needs only a token lookup and a KV v2 read. Proxies come from ``http_proxy`` and
``https_proxy`` as for any urllib request.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from aibox.credentials.errors import CredentialError, VaultUnavailableError
from aibox.credentials.secret import Secret, check_secret_name


class SandboxVault:
    """A Vault client that sends the sandbox token and translates errors."""

    def __init__(self, address: str, token: Secret, mount: str, timeout: float) -> None:
        if not address.startswith(("http://", "https://")):
            raise CredentialError(
                f"invalid Vault address {address!r} in sandbox.json",
                hint="Set credentials.vault.sandbox_address to an http(s) URL.",
            )
        self.address = address.rstrip("/")
        self.mount = mount
        self._token = token
        self._timeout = timeout

    def __enter__(self) -> SandboxVault:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def _get(self, path: str, action: str) -> dict[str, Any] | None:
        """Return the JSON body, or None for 404; raise aibox errors otherwise."""
        # The address was checked to be http(s) in __init__.
        request = urllib.request.Request(  # noqa: S310
            f"{self.address}/v1/{path}",
            headers={"X-Vault-Token": self._token.reveal()},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                return None
            if exc.code == 503:
                raise VaultUnavailableError(
                    f"Vault at {self.address} is sealed during {action}",
                    hint="Ask the Vault operators to unseal it.",
                ) from None
            if exc.code == 403:
                raise CredentialError(
                    f"Vault at {self.address} denied {action} (403 permission denied)",
                    hint="The sandbox token was revoked or has expired.",
                ) from None
            raise CredentialError(
                f"Vault at {self.address} failed during {action} ({exc.code})"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise VaultUnavailableError(
                f"Vault at {self.address} is unreachable during {action}: "
                f"{type(exc).__name__}",
                hint="Check the sandbox proxy and that Vault runs.",
            ) from None
        except ValueError:
            raise CredentialError(
                f"Vault at {self.address} sent invalid JSON during {action}"
            ) from None
        if not isinstance(body, dict):
            raise CredentialError(f"Vault at {self.address} sent an unexpected body")
        return body

    def lookup_self(self) -> dict[str, Any]:
        body = self._get("auth/token/lookup-self", "token lookup")
        data = (body or {}).get("data")
        if not isinstance(data, dict):
            raise CredentialError(f"Vault at {self.address} sent no token data")
        return data

    def read_secret(self, user: str, name: str) -> Secret | None:
        path = f"{self.mount}/data/aibox/users/{user}/{check_secret_name(name)}"
        body = self._get(path, f"read of {path}")
        if body is None:
            return None
        value = (body.get("data") or {}).get("data", {}).get("value")
        if not isinstance(value, str):
            raise CredentialError(f"Vault secret {path} has no string 'value' field")
        return Secret(value)
