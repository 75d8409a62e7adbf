"""Find credentials in staged changes, for the sandbox's git pre-commit hook.

The hook rejects a commit whose added lines contain a token aibox handed to the
sandbox (read from the credential mount when readable) or a well-known token
format. Findings name the kind, file and line, never the value.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Well-known formats, from each vendor's documented token prefixes.
TOKEN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "GitHub token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{22,})"),
    ),
    ("GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("Anthropic API key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}")),
    (
        "OpenAI API key",
        re.compile(r"\bsk-(?!ant-)(?:proj-|svcacct-)?[A-Za-z0-9_-]{32,}"),
    ),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}")),
    (
        "Vault token",
        re.compile(r"\b(?:hv[sbr]\.[A-Za-z0-9_-]{24,}|[sb]\.[A-Za-z0-9]{24})\b"),
    ),
    ("private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
)
ISSUED_FILES = ("vault-token", "git-token", "mirror-token", "llm-api-key")
_MIN_ISSUED_LENGTH = 8
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


@dataclass(frozen=True)
class Finding:
    """One credential found in an added line."""

    kind: str
    path: str
    line: int

    def describe(self) -> str:
        return f"{self.path}:{self.line}: {self.kind}"


def scan_line(text: str, issued: Iterable[str]) -> str | None:
    """Return the kind of credential in ``text``, or None."""
    for value in issued:
        if value in text:
            return "credential issued by aibox"
    for kind, pattern in TOKEN_PATTERNS:
        if pattern.search(text):
            return kind
    return None


def scan_diff(diff: str, issued: Iterable[str]) -> list[Finding]:
    """Scan the added lines of a unified diff with zero context lines."""
    issued = [value for value in issued if len(value) >= _MIN_ISSUED_LENGTH]
    findings: list[Finding] = []
    path = ""
    line = 0
    for raw in diff.splitlines():
        if raw.startswith("+++ "):
            target = raw[4:]
            path = target[2:] if target.startswith("b/") else target
            continue
        hunk = _HUNK.match(raw)
        if hunk:
            line = int(hunk.group(1))
            continue
        if raw.startswith("+"):
            kind = scan_line(raw[1:], issued)
            if kind:
                findings.append(Finding(kind, path, line))
            line += 1
    return findings


def issued_credentials(directory: Path) -> list[str]:
    """Read the tokens handed to this sandbox that the current user may read."""
    values = []
    for name in ISSUED_FILES:
        try:
            value = (directory / name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if value:
            values.append(value)
    return values


def staged_diff() -> str:
    result = subprocess.run(
        ["git", "diff", "--cached", "--no-color", "--no-ext-diff", "-U0", "--text"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip()
        raise OSError(f"git diff --cached failed: {message}")
    return result.stdout.decode("utf-8", "replace")


def run_pre_commit(directory: Path) -> int:
    """Print each finding to stderr and return 1 when there is any."""
    findings = scan_diff(staged_diff(), issued_credentials(directory))
    if not findings:
        return 0
    sys.stderr.write("aibox pre-commit: the staged changes contain credentials:\n")
    for finding in findings:
        sys.stderr.write(f"  {finding.describe()}\n")
    sys.stderr.write(
        "Remove them from the files (and 'git add' again); the values are not shown.\n"
    )
    return 1
