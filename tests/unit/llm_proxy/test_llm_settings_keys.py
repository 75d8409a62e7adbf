"""Command-line settings and key sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aibox.errors import UsageError
from aibox.llm_proxy.keys import (
    FileKeySource,
    KeySourceError,
    KeyStore,
    Secret,
    key_source_from_options,
)
from aibox.llm_proxy.settings import build_parser, parse_listen, settings_from_arguments


def settings_for(*argv: str):  # type: ignore[no-untyped-def]
    return settings_from_arguments(build_parser().parse_args(list(argv)))


def test_defaults_listen_on_loopback() -> None:
    settings = settings_for()

    assert (settings.host, settings.port) == ("127.0.0.1", 8443)
    assert settings.upstream_proxy is None
    assert settings.requests_per_min is None
    assert str(settings.payload_log) == "/var/log/aibox/llm-payloads.jsonl"


def test_size_units_accepted() -> None:
    assert settings_for("--max-request-bytes", "4Mi").max_request_bytes == 4 * 1024**2


def test_environment_supplies_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIBOX_LLM_REQUESTS_PER_MIN", "12")
    monkeypatch.setenv("AIBOX_LLM_SANDBOX_ID", "sbx-env")

    settings = settings_for()

    assert settings.requests_per_min == 12
    assert settings.sandbox_id == "sbx-env"


@pytest.mark.parametrize(
    "argv",
    [
        ("--listen", "nonsense"),
        ("--listen", "127.0.0.1:99999"),
        ("--anthropic-upstream", "ftp://x"),
        ("--upstream-proxy", "http://user:pw@proxy:3128"),
        ("--upstream-ca-file", "/nonexistent/ca.pem"),
    ],
)
def test_invalid_settings_raise_usage_error(argv: tuple[str, ...]) -> None:
    with pytest.raises(UsageError):
        settings_for(*argv)


def test_ipv6_listen_address() -> None:
    assert parse_listen("[::1]:9000") == ("::1", 9000)


def test_secret_repr_masks_value() -> None:
    secret = Secret("sk-hidden")

    assert "sk-hidden" not in repr(secret)
    assert "sk-hidden" not in str(secret)
    assert "sk-hidden" not in f"{secret}"
    assert secret.reveal() == "sk-hidden"


def test_file_key_reloads_on_change(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-first\n")
    store = KeyStore(FileKeySource(key_file))

    assert store.reload_if_changed() is False
    replacement = tmp_path / "key.new"
    replacement.write_text("sk-second\n")
    os.replace(replacement, key_file)  # new inode, as an atomic rewrite makes

    assert store.reload_if_changed() is True
    assert store.key.reveal() == "sk-second"


def test_bad_reload_keeps_last_key(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("sk-first")
    store = KeyStore(FileKeySource(key_file))
    key_file.write_text("")

    assert store.reload("test") is False
    assert store.key.reveal() == "sk-first"
    key_file.unlink()
    assert store.reload_if_changed() is False
    assert store.key.reveal() == "sk-first"


@pytest.mark.parametrize("content", ["", "  \n", "two words"])
def test_unusable_key_file_rejected(tmp_path: Path, content: str) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(content)

    with pytest.raises(KeySourceError, match="empty or has more than one word"):
        FileKeySource(key_file).load()


def test_missing_key_file_message_names_path(tmp_path: Path) -> None:
    with pytest.raises(KeySourceError, match="missing-key"):
        FileKeySource(tmp_path / "missing-key").load()


def test_vault_source_needs_path() -> None:
    with pytest.raises(UsageError, match="--vault-path"):
        key_source_from_options(
            None, "http://127.0.0.1:8200", "/t", "secret", None, "k"
        )
