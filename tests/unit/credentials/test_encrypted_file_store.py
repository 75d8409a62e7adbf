import json
import os
import stat
from pathlib import Path

import pytest

from aibox.credentials.errors import CredentialError
from aibox.credentials.filestore import EncryptedFileStore
from aibox.credentials.secret import Secret


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "credentials.enc"


def test_round_trip_with_passphrase(store_path: Path) -> None:
    store = EncryptedFileStore(store_path, Secret("correct horse"))
    store.set("git-token", Secret("ghp_value_one"))
    store.set("llm-api-key", Secret("sk-value-two"))

    reopened = EncryptedFileStore(store_path, Secret("correct horse"))
    assert reopened.get("git-token") == Secret("ghp_value_one")
    assert reopened.names() == ["git-token", "llm-api-key"]
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert b"ghp_value_one" not in store_path.read_bytes()


def test_delete_and_missing(store_path: Path) -> None:
    store = EncryptedFileStore(store_path, Secret("pw"))
    assert store.get("git-token") is None
    assert store.delete("git-token") is False
    store.set("git-token", Secret("v"))
    assert store.delete("git-token") is True
    assert store.names() == []


def test_machine_secret_used_without_passphrase(store_path: Path) -> None:
    EncryptedFileStore(store_path).set("mirror-token", Secret("m-value"))
    key_file = store_path.with_name("credentials.enc.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert EncryptedFileStore(store_path).get("mirror-token") == Secret("m-value")


def test_passphrase_from_environment(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIBOX_STORE_PASSPHRASE", "from-env")
    EncryptedFileStore(store_path).set("git-token", Secret("v"))
    assert EncryptedFileStore(store_path, Secret("from-env")).get(
        "git-token"
    ) == Secret("v")


def test_wrong_passphrase_leaves_store_intact(store_path: Path) -> None:
    EncryptedFileStore(store_path, Secret("right")).set("git-token", Secret("secret-v"))
    before = store_path.read_bytes()
    wrong = EncryptedFileStore(store_path, Secret("wrong"))

    with pytest.raises(CredentialError) as caught:
        wrong.get("git-token")
    assert "wrong passphrase" in caught.value.message
    assert "secret-v" not in caught.value.message
    with pytest.raises(CredentialError):
        wrong.set("git-token", Secret("overwrite"))
    assert store_path.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not json", "not JSON"),  # garbage
        (b"[]", "not an aibox-credential-store file"),  # wrong shape
        (
            json.dumps({"format": "aibox-credential-store", "version": 9}).encode(),
            "unsupported version 9",
        ),  # future format
    ],
)
def test_corrupted_file_is_reported(
    store_path: Path, content: bytes, expected: str
) -> None:
    store_path.parent.mkdir(parents=True)
    store_path.write_bytes(content)
    os.chmod(store_path, 0o600)
    with pytest.raises(CredentialError, match=expected):
        EncryptedFileStore(store_path, Secret("pw")).get("git-token")
    assert store_path.read_bytes() == content


def test_flipped_ciphertext_byte_is_detected(store_path: Path) -> None:
    EncryptedFileStore(store_path, Secret("pw")).set("git-token", Secret("v"))
    document = json.loads(store_path.read_bytes())
    raw = bytearray(document["ciphertext"].encode())
    raw[5] = ord("A") if raw[5] != ord("A") else ord("B")
    document["ciphertext"] = raw.decode()
    store_path.write_text(json.dumps(document))
    with pytest.raises(CredentialError, match="cannot decrypt"):
        EncryptedFileStore(store_path, Secret("pw")).get("git-token")


def test_world_readable_store_is_rejected(store_path: Path) -> None:
    EncryptedFileStore(store_path, Secret("pw")).set("git-token", Secret("v"))
    os.chmod(store_path, 0o644)
    with pytest.raises(CredentialError, match="mode 0644"):
        EncryptedFileStore(store_path, Secret("pw")).get("git-token")


def test_failed_write_keeps_previous_file(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EncryptedFileStore(store_path, Secret("pw"))
    store.set("git-token", Secret("first"))
    before = store_path.read_bytes()

    def broken_replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        store.set("git-token", Secret("second"))
    monkeypatch.undo()
    assert store_path.read_bytes() == before
    assert sorted(p.name for p in store_path.parent.iterdir()) == [
        "credentials.enc",
        "credentials.enc.lock",
    ]
