"""Safe YAML loading with one-line errors that name the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from aibox.errors import UsageError


def load_yaml_file(path: Path, what: str) -> Any:
    """Parse ``path`` safely; raise UsageError naming the line on bad YAML."""
    if path.is_dir():
        raise UsageError(
            f"{what} file {path} is a directory",
            hint="Point aibox at a YAML file, not a directory.",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError:
        raise UsageError(
            f"{what} file {path} is not readable (permission denied)",
            hint="Fix the file's permissions or run as a user who can read it.",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} file {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = "unknown line"
        if mark is not None:
            line = f"line {mark.line + 1}, column {mark.column + 1}"
        raise UsageError(
            f"malformed YAML in {what} file {path} at {line}: {exc.problem}",
            hint="Fix the YAML syntax at that line.",
        ) from None
    except yaml.YAMLError as exc:
        raise UsageError(f"malformed YAML in {what} file {path}: {exc}") from None
