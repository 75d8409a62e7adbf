"""Provenance: the level (default, org, team, project) of each effective value."""

from __future__ import annotations

from typing import Any

DEFAULT_LEVEL = "default"


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested policy data into ``path -> leaf`` pairs.

    Lists of entries are keyed by what identifies them (``id`` for services,
    the joined ``match`` for tool rules); lists of scalars by their items.
    """
    flat: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list) and data and all(isinstance(i, dict) for i in data):
        for item in data:
            flat.update(flatten(item, f"{prefix}[{_item_key(item)}]"))
    elif isinstance(data, list) and data:
        for item in data:
            flat[f"{prefix}[{item}]"] = item
    else:
        flat[prefix] = data
    return flat


def _item_key(item: dict[str, Any]) -> str:
    if "id" in item:
        return str(item["id"])
    match = item.get("match")
    if isinstance(match, list):
        return " ".join(str(token) for token in match)
    return "?"


def trace_origins(levels: list[Any], data: dict[str, Any]) -> dict[str, str]:
    """Map each leaf path of ``data`` to the last level whose file set it."""
    set_by: dict[str, str] = {}
    for level in levels:
        for path in _set_paths(level.raw):
            set_by[path] = level.level
    origins: dict[str, str] = {}
    for path in flatten(data):
        origins[path] = _closest(path, set_by)
    return origins


def _set_paths(raw: dict[str, Any]) -> set[str]:
    paths = set(flatten(raw))
    for path in list(paths):
        # A parent path that a level set also counts for its children
        # (``rate_limit: {...}`` sets ``rate_limit.requests_per_min``).
        while "." in path or "[" in path:
            path = path[: max(path.rfind("."), path.rfind("["))]
            paths.add(path)
    return paths


def _closest(path: str, set_by: dict[str, str]) -> str:
    candidate = path
    while True:
        if candidate in set_by:
            return set_by[candidate]
        cut = max(candidate.rfind("."), candidate.rfind("["))
        if cut <= 0:
            return DEFAULT_LEVEL
        candidate = candidate[:cut]
