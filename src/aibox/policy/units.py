"""Parse and format the quantities a policy file uses: durations, sizes and CPUs."""

from __future__ import annotations

import re

from aibox.config import parse_bytes

_DURATION_PART = re.compile(r"(\d+)(d|h|m|s)")
_DURATION_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_BINARY_UNITS = (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024))


def parse_duration(value: str | int) -> int:
    """Parse ``8h``, ``1h30m``, ``90s``, ``2d`` or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: use a value such as 8h or 30m")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"duration must be positive: {value}")
        return value
    text = value.strip()
    if text.isdigit():
        return parse_duration(int(text))
    position = 0
    total = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += int(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or not text or total <= 0:
        raise ValueError(
            f"invalid duration {value!r}: use units d, h, m, s, for example 8h or 1h30m"
        )
    return total


def format_duration(seconds: int) -> str:
    """Format seconds as the shortest ``1h30m``-style string."""
    parts = []
    remainder = seconds
    for unit, size in _DURATION_SECONDS.items():
        count, remainder = divmod(remainder, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_size(value: str | int) -> int:
    """Parse ``8Gi``, ``512M`` or a number of bytes; reject zero and booleans."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}: use a value such as 8Gi")
    size = parse_bytes(value)
    if size <= 0:
        raise ValueError(f"size must be positive: {value!r}")
    return size


def format_size(size: int) -> str:
    """Format bytes with the largest binary unit that divides them exactly."""
    for unit, factor in _BINARY_UNITS:
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def parse_cpu(value: str | float) -> float:
    """Parse a CPU count: ``2``, ``0.5`` or millicores such as ``500m``."""
    if isinstance(value, bool):
        raise ValueError(f"invalid cpu value {value!r}: use a number such as 2 or 500m")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text[:-1]) / 1000 if text.endswith("m") else float(text)
        except ValueError:
            raise ValueError(
                f"invalid cpu value {value!r}: use a number such as 2 or 500m"
            ) from None
    else:
        number = float(value)
    if not number > 0 or number > 1024:
        raise ValueError(f"cpu must be above 0 and at most 1024: {value!r}")
    return number
