"""Vault (or OpenBao) through ``hvac``: login, KV v2 secrets, sandbox child tokens.

Secrets live at ``<mount>/aibox/users/<user>/<name>`` in a KV v2 engine, each as
``{"value": ...}``. A sandbox gets a child token whose only extra policy,
``aibox-user-<user>``, reads ``<mount>/data/aibox/users/<user>/*``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import hvac
import hvac.exceptions
import requests

from aibox.credentials.errors import CredentialError, VaultUnavailableError
from aibox.credentials.secret import Secret, check_secret_name
from aibox.errors import UsageError

if TYPE_CHECKING:
    from aibox.config import VaultConfig

_USER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_Result = TypeVar("_Result")


def check_user_name(user: str) -> str:
    """Return ``user`` if it is safe inside a Vault path and policy name."""
    if not _USER_NAME.match(user) or ".." in user:
        raise UsageError(
            f"invalid user name {user!r} for a Vault path",
            hint="Use letters, digits, '.', '_' and '-' only.",
        )
    return user


def user_policy_name(user: str) -> str:
    return f"aibox-user-{check_user_name(user)}"


def user_policy_document(mount: str, user: str) -> str:
    """Return the HCL policy that reads this user's aibox secrets and nothing else."""
    return (
        f'path "{mount}/data/aibox/users/{check_user_name(user)}/*" {{\n'
        '  capabilities = ["read"]\n'
        "}\n"
    )


def secret_path(user: str, name: str) -> str:
    return f"aibox/users/{check_user_name(user)}/{check_secret_name(name)}"


@dataclass(frozen=True)
class ChildToken:
    """A sandbox token: the token itself, its accessor and its lifetime."""

    token: Secret
    accessor: str
    ttl_seconds: int


def call_vault(address: str, action: str, function: Callable[[], _Result]) -> _Result:
    """Run one Vault request and translate failures into one-line aibox errors."""
    try:
        return function()
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise VaultUnavailableError(
            f"Vault at {address} is unreachable during {action}: {type(exc).__name__}",
            hint="Check the Vault address and that the server runs.",
        ) from None
    except hvac.exceptions.VaultDown:
        raise VaultUnavailableError(
            f"Vault at {address} is sealed during {action}",
            hint="Ask the Vault operators to unseal it.",
        ) from None
    except hvac.exceptions.Forbidden:
        raise CredentialError(
            f"Vault at {address} denied {action} (403 permission denied)",
            hint="Check that the token's policies allow this path, or log in again.",
        ) from None
    except hvac.exceptions.Unauthorized:
        raise CredentialError(
            f"Vault at {address} rejected the token during {action} (401)",
            hint="Log in again or renew the Vault token.",
        ) from None
    except hvac.exceptions.VaultError as exc:
        status = getattr(exc, "status_code", None) or type(exc).__name__
        raise CredentialError(
            f"Vault at {address} failed during {action} ({status})",
            hint="See the Vault server log for the request.",
        ) from None
    except requests.RequestException as exc:
        raise CredentialError(
            f"request to Vault at {address} failed during {action}: "
            f"{type(exc).__name__}",
            hint="Check credentials.vault.address, e.g. https://vault.internal:8200.",
        ) from None


def _read_file(path_text: str, what: str) -> str:
    path = Path(path_text).expanduser()
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CredentialError(
            f"cannot read the Vault {what} file {path}: {exc.strerror}",
            hint=f"Fix credentials.vault.{what}_file in the config.",
        ) from None


def _host_token(config: VaultConfig) -> Secret:
    if config.token_file:
        return Secret(_read_file(config.token_file, "token"))
    for variable in ("VAULT_TOKEN", "BAO_TOKEN"):
        value = os.environ.get(variable)
        if value:
            return Secret(value)
    default = Path.home() / ".vault-token"
    if default.exists():
        return Secret(_read_file(str(default), "token"))
    raise CredentialError(
        "no Vault token found",
        hint="Set credentials.vault.token_file, export VAULT_TOKEN or run 'bao login'.",
    )


class VaultClient:
    """A logged-in hvac client for one address, with aibox's secret layout."""

    def __init__(
        self,
        address: str,
        token: Secret | None,
        mount: str = "secret",
        timeout: float = 5.0,
    ) -> None:
        self.address = address
        self.mount = mount
        self._client = hvac.Client(
            url=address, token=token.reveal() if token else None, timeout=timeout
        )

    def close(self) -> None:
        """Close the HTTP connections of this client."""
        self._client.adapter.close()

    def __enter__(self) -> VaultClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @classmethod
    def login(cls, config: VaultConfig) -> VaultClient:
        """Log in with the configured method: token, AppRole or JWT."""
        if not config.address:
            raise UsageError(
                "credentials.vault.address is not set",
                hint="Set it in config.yaml, for example https://vault.internal:8200.",
            )
        if config.auth_method == "token":
            return cls(
                config.address, _host_token(config), config.mount, config.timeout
            )
        client = cls(config.address, None, config.mount, config.timeout)
        try:
            if config.auth_method == "approle":
                client._login_approle(config)
            else:
                client._login_jwt(config)
        except BaseException:
            client.close()
            raise
        return client

    def _login_approle(self, config: VaultConfig) -> None:
        if not config.role or not config.secret_id_file:
            raise UsageError(
                "AppRole login needs credentials.vault.role and secret_id_file",
                hint="Set role to the role_id and secret_id_file to its file.",
            )
        secret_id = _read_file(config.secret_id_file, "secret_id")
        mount = config.auth_mount or "approle"
        self._call(
            "AppRole login",
            lambda: self._client.auth.approle.login(
                role_id=config.role, secret_id=secret_id, mount_point=mount
            ),
        )

    def _login_jwt(self, config: VaultConfig) -> None:
        if not config.role or not config.jwt_file:
            raise UsageError(
                "JWT login needs credentials.vault.role and jwt_file",
                hint="Set role to the JWT role name and jwt_file to the JWT file.",
            )
        jwt = _read_file(config.jwt_file, "jwt")
        mount = config.auth_mount or "jwt"
        self._call(
            "JWT login",
            lambda: self._client.auth.jwt.jwt_login(
                role=config.role, jwt=jwt, path=mount
            ),
        )

    def _call(self, action: str, function: Callable[[], _Result]) -> _Result:
        return call_vault(self.address, action, function)

    def read_secret(self, user: str, name: str) -> Secret | None:
        path = secret_path(user, name)

        def read() -> Any:
            try:
                return self._client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.mount, raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                return None

        response = self._call(f"read of {self.mount}/{path}", read)
        if response is None:
            return None
        value = response.get("data", {}).get("data", {}).get("value")
        if not isinstance(value, str):
            raise CredentialError(
                f"Vault secret {self.mount}/{path} has no string 'value' field",
                hint="Store it again with 'aibox auth add'.",
            )
        return Secret(value)

    def write_secret(self, user: str, name: str, value: Secret) -> None:
        path = secret_path(user, name)
        self._call(
            f"write of {self.mount}/{path}",
            lambda: self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret={"value": value.reveal()}, mount_point=self.mount
            ),
        )

    def delete_secret(self, user: str, name: str) -> bool:
        if self.read_secret(user, name) is None:
            return False
        path = secret_path(user, name)
        self._call(
            f"delete of {self.mount}/{path}",
            lambda: self._client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=path, mount_point=self.mount
            ),
        )
        return True

    def list_secrets(self, user: str) -> list[str]:
        folder = f"aibox/users/{check_user_name(user)}"

        def list_keys() -> list[str]:
            try:
                response = self._client.secrets.kv.v2.list_secrets(
                    path=folder, mount_point=self.mount
                )
            except hvac.exceptions.InvalidPath:
                return []
            return [str(key) for key in response.get("data", {}).get("keys", [])]

        return sorted(self._call(f"list of {self.mount}/{folder}", list_keys))

    def ensure_user_policy(self, user: str) -> str:
        """Write the user's read-only policy, or trust an operator-made one on 403."""
        name = user_policy_name(user)
        document = user_policy_document(self.mount, user)
        try:
            self._call(
                f"write of policy {name}",
                lambda: self._client.sys.create_or_update_acl_policy(
                    name=name, policy=document
                ),
            )
        except VaultUnavailableError:
            raise
        except CredentialError:
            # NOTE: a host token without sys/policy rights relies on the operator
            # having created this policy; token creation fails clearly otherwise.
            pass
        return name

    def create_child_token(
        self, user: str, sandbox_id: str, ttl_seconds: int
    ) -> ChildToken:
        """Mint a non-renewable child token for one sandbox of ``user``."""
        policy = self.ensure_user_policy(user)
        response = self._call(
            "creation of the sandbox token",
            lambda: self._client.auth.token.create(
                policies=[policy],
                ttl=f"{ttl_seconds}s",
                explicit_max_ttl=f"{ttl_seconds}s",
                renewable=False,
                display_name=f"aibox-{sandbox_id}",
                meta={"sandbox": sandbox_id, "user": user, "issuer": "aibox"},
            ),
        )
        auth = response["auth"]
        return ChildToken(
            token=Secret(auth["client_token"]),
            accessor=str(auth["accessor"]),
            ttl_seconds=int(auth["lease_duration"]),
        )

    def revoke_accessor(self, accessor: str) -> None:
        """Revoke the token behind ``accessor``; an unknown one counts as revoked."""

        def revoke() -> None:
            try:
                self._client.auth.token.revoke_accessor(accessor)
            except hvac.exceptions.InvalidRequest as exc:
                if "invalid accessor" not in str(exc).lower():
                    raise

        self._call("token revocation", revoke)

    def lookup_self(self) -> dict[str, Any]:
        response = self._call("token lookup", self._client.auth.token.lookup_self)
        return dict(response["data"])
