import logging
import pickle

import pytest

from aibox.credentials.secret import MASK, Secret, check_secret_name
from aibox.errors import UsageError


def test_secret_repr_and_str_are_masked() -> None:
    secret = Secret("hunter2-value")
    assert repr(secret) == "Secret('********')"
    assert str(secret) == MASK
    assert f"{secret}" == MASK
    assert f"{secret!r:>40}" != "hunter2-value"
    assert "hunter2" not in repr([secret, {"k": secret}])


def test_secret_masked_in_logs_and_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret("hunter2-value")
    with caplog.at_level(logging.INFO):
        logging.getLogger("aibox.test").info("token is %s", secret)
    assert "hunter2" not in caplog.text
    assert MASK in caplog.text
    error = RuntimeError(f"failed with {secret}")
    assert "hunter2" not in str(error)


def test_secret_reveal_and_compare() -> None:
    secret = Secret("abc")
    assert secret.reveal() == "abc"
    assert secret.matches("abc")
    assert not secret.matches("abd")
    assert not secret.matches("ab")
    assert secret == Secret("abc")
    assert secret != Secret("xyz")
    assert not Secret("")


def test_secret_refuses_pickle() -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Secret("abc"))


def test_secret_name_check() -> None:
    assert check_secret_name("git-token") == "git-token"
    with pytest.raises(UsageError, match="unknown credential name 'ssh-key'"):
        check_secret_name("ssh-key")
