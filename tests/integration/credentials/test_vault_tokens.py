"""Sandbox tokens against a real OpenBao dev server: mint, read, revoke, expiry."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import hvac
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from aibox.credentials import sandbox
from aibox.credentials.broker import VaultStore
from aibox.credentials.errors import CredentialError, VaultUnavailableError
from aibox.credentials.handoff import filesystem_type
from aibox.credentials.secret import Secret
from aibox.credentials.vault import VaultClient
from aibox.policy.effective import EffectivePolicy
from tests.integration.credentials.conftest import BaoServer, vault_config

LLM_KEY = "sk-ant-integration-key-0123456789abcdef"


def make_policy(**credentials: object) -> EffectivePolicy:
    data: dict[str, object] = {
        "version": 1,
        "network": {"allow": [{"id": "git", "hosts": ["git.internal"]}]},
    }
    if credentials:
        data["credentials"] = credentials
    return EffectivePolicy(data=data, hash="a" * 64)


def store_secret(server: BaoServer, user: str, name: str, value: str) -> None:
    server.client().secrets.kv.v2.create_or_update_secret(
        path=f"aibox/users/{user}/{name}", secret={"value": value}, mount_point="secret"
    )


def files(run_dir: Path, sandbox_id: str) -> Path:
    return run_dir / "sandboxes" / sandbox_id / "credentials"


@pytest.fixture(autouse=True)
def _root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("the rootful hand-off needs root to chown and mount tmpfs")


def test_start_mints_scoped_token(
    bao: BaoServer,
    tmp_path: Path,
    run_dir: Path,
    user: str,
    request: pytest.FixtureRequest,
) -> None:
    config = vault_config(bao, tmp_path)
    store_secret(bao, user, "llm-api-key", LLM_KEY)
    store_secret(bao, user, "mirror-token", "mirror-value-1")
    store_secret(bao, "someone-else", "mirror-token", "not-yours")

    args = sandbox.prepare_sandbox_credentials(
        config, make_policy(ttl="2h"), "sbx-mint", user, rootless=False
    )
    directory = files(run_dir, "sbx-mint")
    assert args == [
        "--mount",
        f"type=bind,source={directory},destination=/run/aibox/credentials,ro=true",
    ]
    token_file = directory / "vault-token"
    info = token_file.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (1000, 0o400)
    key_file = directory / "llm-api-key"
    assert (key_file.stat().st_uid, stat.S_IMODE(key_file.stat().st_mode)) == (
        1001,
        0o400,
    )
    assert key_file.read_text() == LLM_KEY
    assert filesystem_type(directory) == "tmpfs"
    described = json.loads((directory / "sandbox.json").read_text())
    assert described["mode"] == "vault"
    assert described["user"] == user
    assert json.loads((directory / "allowed-hosts.json").read_text()) == {
        "hosts": ["git.internal:443"]
    }
    record = Path(os.environ["XDG_STATE_HOME"]) / "aibox/credentials/sandboxes"
    token = token_file.read_text()
    assert token not in (record / "sbx-mint.json").read_text()

    looked_up = bao.client().auth.token.lookup(token)["data"]
    assert looked_up["meta"] == {"sandbox": "sbx-mint", "user": user, "issuer": "aibox"}
    assert f"aibox-user-{user}" in looked_up["policies"]
    assert 7000 < looked_up["ttl"] <= 7200
    assert looked_up["renewable"] is False

    child = VaultClient(bao.address, Secret(token))
    request.addfinalizer(child.close)
    assert child.read_secret(user, "mirror-token") == Secret("mirror-value-1")
    with pytest.raises(CredentialError, match="403"):
        child.read_secret("someone-else", "mirror-token")
    with pytest.raises(CredentialError, match="403"):
        child.write_secret(user, "mirror-token", Secret("overwrite"))

    sandbox.revoke_sandbox_credentials(config, "sbx-mint")


def test_stop_revokes_within_five_seconds(
    bao: BaoServer, tmp_path: Path, run_dir: Path, user: str
) -> None:
    config = vault_config(bao, tmp_path)
    sandbox.prepare_sandbox_credentials(config, make_policy(), "sbx-stop", user, False)
    root = run_dir / "sandboxes" / "sbx-stop"
    token = (root / "credentials" / "vault-token").read_text()
    assert bao.token_valid(token)

    stopped = time.monotonic()
    sandbox.revoke_sandbox_credentials(config, "sbx-stop")
    with pytest.raises(hvac.exceptions.Forbidden):
        bao.client(token).auth.token.lookup_self()
    assert time.monotonic() - stopped < 5
    assert not bao.token_valid(token)
    assert not root.exists()
    assert sandbox.pending_revocations(config) == []


def test_token_expires_after_policy_ttl(
    bao: BaoServer, tmp_path: Path, run_dir: Path, user: str
) -> None:
    config = vault_config(bao, tmp_path)
    sandbox.prepare_sandbox_credentials(
        config, make_policy(ttl="2s"), "sbx-ttl", user, False
    )
    token = (files(run_dir, "sbx-ttl") / "vault-token").read_text()
    described = json.loads((files(run_dir, "sbx-ttl") / "sandbox.json").read_text())
    assert described["expires_utc"] - described["issued_utc"] == 2
    assert bao.token_valid(token)
    time.sleep(3)
    assert not bao.token_valid(token)
    sandbox.revoke_sandbox_credentials(config, "sbx-ttl")


def test_vault_down_at_stop_queues_then_retries(
    bao: BaoServer, tmp_path: Path, run_dir: Path, user: str
) -> None:
    config = vault_config(bao, tmp_path)
    sandbox.prepare_sandbox_credentials(config, make_policy(), "sbx-down", user, False)
    token = (files(run_dir, "sbx-down") / "vault-token").read_text()
    unreachable = vault_config(bao, tmp_path, address="http://127.0.0.1:9", timeout=2)

    sandbox.revoke_sandbox_credentials(unreachable, "sbx-down")
    pending = sandbox.pending_revocations(config)
    assert [entry.sandbox_id for entry in pending] == ["sbx-down"]
    assert "unreachable" in pending[0].last_error
    assert token not in json.dumps([entry.__dict__ for entry in pending])
    assert not (run_dir / "sandboxes" / "sbx-down").exists()
    assert bao.token_valid(token)

    still = sandbox.retry_pending_revocations(unreachable)
    assert [entry.attempts for entry in still] == [2]
    assert bao.token_valid(token)

    sandbox.retry_revocations_before_command(lambda: config)
    assert sandbox.pending_revocations(config) == []
    assert not bao.token_valid(token)
    assert sandbox.retry_pending_revocations(config) == []


def test_failed_start_leaves_nothing(
    bao: BaoServer, tmp_path: Path, run_dir: Path, user: str
) -> None:
    bad_token = tmp_path / "bad-token"
    bad_token.write_text("s.not-a-real-token")
    config = vault_config(bao, tmp_path, token_file=str(bad_token))
    with pytest.raises(CredentialError) as caught:
        sandbox.prepare_sandbox_credentials(
            config, make_policy(), "sbx-fail", user, False
        )
    assert "403" in caught.value.message
    assert "s.not-a-real-token" not in caught.value.message
    assert not (run_dir / "sandboxes" / "sbx-fail").exists()


def test_vault_store_round_trip(
    bao: BaoServer, user: str, request: pytest.FixtureRequest
) -> None:
    store = VaultStore(VaultClient(bao.address, Secret(bao.root_token)), user)
    request.addfinalizer(store.close)
    assert store.names() == []
    store.set("git-token", Secret("v1"))
    assert store.get("git-token") == Secret("v1")
    assert store.names() == ["git-token"]
    assert store.delete("git-token") is True
    assert store.get("git-token") is None
    assert store.delete("git-token") is False


def test_sealed_vault_is_one_clear_error(
    fresh_bao: BaoServer, user: str, request: pytest.FixtureRequest
) -> None:
    store = VaultStore(
        VaultClient(fresh_bao.address, Secret(fresh_bao.root_token)), user
    )
    request.addfinalizer(store.close)
    store.set("git-token", Secret("kept-value"))
    fresh_bao.client().sys.seal()
    with pytest.raises(VaultUnavailableError) as caught:
        store.get("git-token")
    path = f"secret/aibox/users/{user}/git-token"
    expected = f"Vault at {fresh_bao.address} is sealed during read of {path}"
    assert caught.value.message == expected
    assert caught.value.hint == "Ask the Vault operators to unseal it."


def test_approle_login(
    bao: BaoServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    client = bao.client()
    if "approle/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("approle")
    client.auth.approle.create_or_update_approle(
        "aibox-host", token_policies=["default"]
    )
    role_id = client.auth.approle.read_role_id("aibox-host")["data"]["role_id"]
    secret_id = client.auth.approle.generate_secret_id("aibox-host")["data"][
        "secret_id"
    ]
    secret_file = tmp_path / "secret-id"
    secret_file.write_text(secret_id)

    config = vault_config(
        bao,
        tmp_path,
        auth_method="approle",
        role=role_id,
        secret_id_file=str(secret_file),
    )
    logged_in = VaultClient.login(config.credentials.vault)
    request.addfinalizer(logged_in.close)
    assert logged_in.lookup_self()["meta"] == {"role_name": "aibox-host"}

    wrong = tmp_path / "wrong-secret-id"
    wrong.write_text("00000000-0000-0000-0000-000000000000")
    config = vault_config(
        bao, tmp_path, auth_method="approle", role=role_id, secret_id_file=str(wrong)
    )
    with pytest.raises(CredentialError, match="AppRole login"):
        VaultClient.login(config.credentials.vault)


def _signed_jwt(private_key: rsa.RSAPrivateKey, claims: dict[str, object]) -> str:
    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = encode(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = encode(json.dumps(claims).encode())
    signature = private_key.sign(
        f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{header}.{payload}.{encode(signature)}"


def test_jwt_login(
    bao: BaoServer, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private_key.public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )
    client = bao.client()
    if "jwt/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("jwt")
    client.write_data("auth/jwt/config", data={"jwt_validation_pubkeys": [public_pem]})
    client.write_data(
        "auth/jwt/role/aibox-ci",
        data={
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": ["aibox"],
            "token_policies": ["default"],
        },
    )
    now = int(time.time())
    claims = {"sub": "ci-runner", "aud": "aibox", "iat": now, "exp": now + 300}
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text(_signed_jwt(private_key, claims))

    config = vault_config(
        bao, tmp_path, auth_method="jwt", role="aibox-ci", jwt_file=str(jwt_file)
    )
    logged_in = VaultClient.login(config.credentials.vault)
    request.addfinalizer(logged_in.close)
    assert logged_in.lookup_self()["meta"]["role"] == "aibox-ci"

    jwt_file.write_text(_signed_jwt(private_key, {**claims, "aud": "someone-else"}))
    with pytest.raises(CredentialError, match="JWT login"):
        VaultClient.login(config.credentials.vault)
