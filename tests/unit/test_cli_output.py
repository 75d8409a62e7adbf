"""Command-line output escapes control characters and rejects empty workspaces."""

from __future__ import annotations

import pytest

from aibox.cli.common import printable
from aibox.cli.main import main


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ls -l", "ls -l"),  # ordinary text is unchanged
        ("ls\x1b[31m", "ls\\x1b[31m"),  # an ANSI escape is shown, not sent
        ("a\rb", "a\\x0db"),  # carriage return would overwrite the line
        ("one\ntwo\tthree", "one\ntwo\tthree"),  # newline and tab stay
    ],
)
def test_printable_escapes_controls(text: str, expected: str) -> None:
    assert printable(text) == expected


def test_empty_workspace_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--workspace", ""]) == 2
    assert "an empty path is not a workspace" in capsys.readouterr().err
