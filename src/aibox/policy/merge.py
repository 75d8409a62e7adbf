"""Tighten-only merging of policy levels.

The org baseline is resolved first: every field it leaves out gets the product
default, so the result is a complete ceiling. Each lower level (team, then
project) is merged onto that ceiling. A field it leaves out inherits, and a field
it sets must be at least as strict as the parent's value. Lists merge like this:

- ``network.allow`` in a child is the full list of services it keeps. Each entry
  must name a parent entry (by ``id``) and may only narrow hosts, ports and rates.
- ``filesystem.deny`` and ``tools.rules`` in a child are added to the parent's.
  A new tool rule must be at least as strict as the strictest parent rule that
  matches every command it matches, or else as the parent's default risk.

Every loosening is collected, so the caller can report all of them at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aibox.errors import UsageError
from aibox.policy.errors import PolicyViolationError
from aibox.policy.model import (
    CLASSIFICATION_ORDER,
    ENGINE_ORDER,
    RISK_ORDER,
    AllowEntry,
    CredentialsPolicy,
    FilesystemPolicy,
    LLMPolicy,
    NetworkPolicy,
    Policy,
    RateLimit,
    ResourcesPolicy,
    RuntimePolicy,
    ToolRule,
    ToolsPolicy,
)
from aibox.policy.tools import rule_covers, rule_strictness

DEFAULT_TTL_SECONDS = 8 * 3600
DEFAULT_MAX_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Loosening:
    """A child value that is less strict than its parent's."""

    level: str
    source: str
    path: str
    parent: Any
    child: Any

    def describe(self) -> str:
        return (
            f"{self.level} policy {self.source}: {self.path} loosens the parent "
            f"(parent: {_show(self.parent)}, child: {_show(self.child)})"
        )


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(item) for item in value) + "]"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def resolve_root(org: Policy, source: str) -> Policy:
    """Fill every field the org baseline leaves out with the product default."""
    entries = []
    for entry in org.network.allow or ():
        if not entry.hosts or not entry.ports:
            raise UsageError(
                f"org policy {source}: network.allow[{entry.id}] needs hosts and ports",
                hint="The org baseline must name every host and port it allows.",
            )
        entries.append(entry)
    default_risk = org.tools.default or "review-required"
    rules = tuple(
        ToolRule(
            match=rule.match,
            allow=True if rule.allow is None else rule.allow,
            risk=rule.risk or default_risk,
        )
        for rule in org.tools.rules or ()
    )
    runtime = org.runtime
    credentials = org.credentials
    return Policy(
        version=org.version,
        classification=org.classification or "internal",
        network=NetworkPolicy(mode="deny-by-default", allow=tuple(entries)),
        filesystem=FilesystemPolicy(
            workspace_root=org.filesystem.workspace_root or "/workspace",
            deny=org.filesystem.deny or (),
        ),
        tools=ToolsPolicy(default=default_risk, rules=rules),
        resources=org.resources,
        runtime=RuntimePolicy(
            engine=runtime.engine or "gvisor",
            rootless=_default(runtime.rootless, True),
            ephemeral=_default(runtime.ephemeral, True),
            require_apparmor=_default(runtime.require_apparmor, False),
        ),
        credentials=CredentialsPolicy(
            ttl=credentials.ttl or DEFAULT_TTL_SECONDS,
            max_ttl=credentials.max_ttl or DEFAULT_MAX_TTL_SECONDS,
            revoke_on_stop=_default(credentials.revoke_on_stop, True),
        ),
        llm=org.llm,
    )


def _default(value: bool | None, default: bool) -> bool:
    return default if value is None else value


class _Merger:
    """Merge one child level onto a resolved parent, collecting loosenings."""

    def __init__(self, level: str, source: str) -> None:
        self.level = level
        self.source = source
        self.loosenings: list[Loosening] = []

    def flag(self, path: str, parent: Any, child: Any) -> None:
        self.loosenings.append(Loosening(self.level, self.source, path, parent, child))

    def at_most(self, path: str, parent: Any, child: Any) -> Any:
        """Return the child's limit when it is not above the parent's."""
        if child is None:
            return parent
        if parent is not None and child > parent:
            self.flag(path, parent, child)
            return parent
        return child

    def ranked(self, path: str, order: dict[str, int], parent: Any, child: Any) -> Any:
        """Return the child's value when it ranks at least as strict as the parent's."""
        if child is None:
            return parent
        if parent is not None and order[child] < order[parent]:
            self.flag(path, parent, child)
            return parent
        return child

    def stays_true(self, path: str, parent: bool | None, child: bool | None) -> Any:
        if child is None:
            return parent
        if parent and not child:
            self.flag(path, parent, child)
            return parent
        return child

    def subset(
        self, path: str, parent: tuple[Any, ...], child: tuple[Any, ...] | None
    ) -> tuple[Any, ...]:
        if child is None:
            return parent
        extra = tuple(item for item in child if item not in parent)
        if extra:
            self.flag(path, parent, child)
            return tuple(item for item in child if item in parent)
        return child


def merge_level(parent: Policy, child: Policy, level: str, source: str) -> Policy:
    """Merge ``child`` onto the resolved ``parent``; raise PolicyViolationError."""
    merged, loosenings = merge_level_report(parent, child, level, source)
    if loosenings:
        raise PolicyViolationError([item.describe() for item in loosenings])
    return merged


def merge_level_report(
    parent: Policy, child: Policy, level: str, source: str
) -> tuple[Policy, list[Loosening]]:
    """Merge ``child`` onto ``parent`` and return the result with every loosening.

    When a loosening is found the parent's value is kept for that field, so the
    returned policy is never looser than ``parent`` even when the list is not empty.
    """
    merger = _Merger(level, source)
    merged = Policy(
        version=parent.version,
        classification=merger.ranked(
            "classification",
            CLASSIFICATION_ORDER,
            parent.classification,
            child.classification,
        ),
        network=NetworkPolicy(
            mode=parent.network.mode,
            allow=_merge_allow(merger, parent.network.allow or (), child.network.allow),
        ),
        filesystem=_merge_filesystem(merger, parent.filesystem, child.filesystem),
        tools=_merge_tools(merger, parent.tools, child.tools),
        resources=ResourcesPolicy(
            cpu=merger.at_most(
                "resources.cpu", parent.resources.cpu, child.resources.cpu
            ),
            memory=merger.at_most(
                "resources.memory", parent.resources.memory, child.resources.memory
            ),
            disk=merger.at_most(
                "resources.disk", parent.resources.disk, child.resources.disk
            ),
        ),
        runtime=_merge_runtime(merger, parent.runtime, child.runtime),
        credentials=CredentialsPolicy(
            ttl=merger.at_most(
                "credentials.ttl", parent.credentials.ttl, child.credentials.ttl
            ),
            max_ttl=merger.at_most(
                "credentials.max_ttl",
                parent.credentials.max_ttl,
                child.credentials.max_ttl,
            ),
            revoke_on_stop=merger.stays_true(
                "credentials.revoke_on_stop",
                parent.credentials.revoke_on_stop,
                child.credentials.revoke_on_stop,
            ),
        ),
        llm=LLMPolicy(
            max_request_bytes=merger.at_most(
                "llm.max_request_bytes",
                parent.llm.max_request_bytes,
                child.llm.max_request_bytes,
            )
        ),
    )
    return merged, merger.loosenings


def _merge_allow(
    merger: _Merger,
    parent: tuple[AllowEntry, ...],
    child: tuple[AllowEntry, ...] | None,
) -> tuple[AllowEntry, ...]:
    if child is None:
        return parent
    by_id = {entry.id: entry for entry in parent}
    kept = []
    for entry in child:
        base = by_id.get(entry.id)
        path = f"network.allow[{entry.id}]"
        if base is None:
            merger.flag(path, None, entry.hosts)
            continue
        kept.append(_merge_entry(merger, path, base, entry))
    return tuple(kept)


def _merge_entry(
    merger: _Merger, path: str, parent: AllowEntry, child: AllowEntry
) -> AllowEntry:
    parent_limit = parent.rate_limit or RateLimit()
    child_limit = child.rate_limit or RateLimit()
    requests = merger.at_most(
        f"{path}.rate_limit.requests_per_min",
        parent_limit.requests_per_min,
        child_limit.requests_per_min,
    )
    tokens = merger.at_most(
        f"{path}.rate_limit.tokens_per_min",
        parent_limit.tokens_per_min,
        child_limit.tokens_per_min,
    )
    limit = (
        None
        if requests is None and tokens is None
        else RateLimit(requests_per_min=requests, tokens_per_min=tokens)
    )
    return AllowEntry(
        id=parent.id,
        hosts=merger.subset(f"{path}.hosts", parent.hosts or (), child.hosts),
        ports=merger.subset(f"{path}.ports", parent.ports or (), child.ports),
        rate_limit=limit,
    )


def _merge_filesystem(
    merger: _Merger, parent: FilesystemPolicy, child: FilesystemPolicy
) -> FilesystemPolicy:
    root = parent.workspace_root
    if child.workspace_root is not None:
        if parent.workspace_root is None or _is_within(
            child.workspace_root, parent.workspace_root
        ):
            root = child.workspace_root
        else:
            merger.flag(
                "filesystem.workspace_root", parent.workspace_root, child.workspace_root
            )
    deny = tuple(sorted(set(parent.deny or ()) | set(child.deny or ())))
    return FilesystemPolicy(workspace_root=root, deny=deny)


def _is_within(path: str, root: str) -> bool:
    path = path.rstrip("/") or "/"
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root if root == "/" else root + "/")


def _merge_tools(
    merger: _Merger, parent: ToolsPolicy, child: ToolsPolicy
) -> ToolsPolicy:
    default = merger.ranked("tools.default", RISK_ORDER, parent.default, child.default)
    rules = list(parent.rules or ())
    index = {rule.match: position for position, rule in enumerate(rules)}
    for rule in child.rules or ():
        path = f"tools.rules[{' '.join(rule.match)}]"
        if rule.match in index:
            position = index[rule.match]
            rules[position] = _merge_rule(merger, path, rules[position], rule)
            continue
        resolved = ToolRule(
            match=rule.match,
            allow=True if rule.allow is None else rule.allow,
            risk=rule.risk or default,
        )
        # A new rule may not be less strict than what the parent decides for the
        # commands it matches: the strictest parent rule covering all of them, or
        # else the parent's default risk.
        covering = [base for base in parent.rules or () if rule_covers(base, resolved)]
        strictest = max(covering, key=rule_strictness, default=None)
        if strictest is not None:
            required, parent_view = (
                rule_strictness(strictest),
                _describe_rule(strictest),
            )
        else:
            parent_default = parent.default or "review-required"
            required = RISK_ORDER[parent_default]
            parent_view = f"default {parent_default}"
        if rule_strictness(resolved) < required:
            merger.flag(path, parent_view, _describe_rule(resolved))
            continue
        index[rule.match] = len(rules)
        rules.append(resolved)
    return ToolsPolicy(default=default, rules=tuple(rules))


def _merge_rule(
    merger: _Merger, path: str, parent: ToolRule, child: ToolRule
) -> ToolRule:
    return ToolRule(
        match=parent.match,
        allow=_allow_only_narrows(merger, f"{path}.allow", parent.allow, child.allow),
        risk=merger.ranked(f"{path}.risk", RISK_ORDER, parent.risk, child.risk),
    )


def _allow_only_narrows(
    merger: _Merger, path: str, parent: bool | None, child: bool | None
) -> bool | None:
    if child is None:
        return parent
    if parent is False and child:
        merger.flag(path, parent, child)
        return parent
    return child


def _describe_rule(rule: ToolRule) -> str:
    verdict = "blocked" if rule.allow is False else rule.risk
    return f"'{' '.join(rule.match)}' {verdict}"


def _merge_runtime(
    merger: _Merger, parent: RuntimePolicy, child: RuntimePolicy
) -> RuntimePolicy:
    return RuntimePolicy(
        engine=merger.ranked(
            "runtime.engine", ENGINE_ORDER, parent.engine, child.engine
        ),
        rootless=merger.stays_true("runtime.rootless", parent.rootless, child.rootless),
        ephemeral=merger.stays_true(
            "runtime.ephemeral", parent.ephemeral, child.ephemeral
        ),
        require_apparmor=merger.stays_true(
            "runtime.require_apparmor",
            parent.require_apparmor,
            child.require_apparmor,
        ),
    )


def merge_levels(levels: Iterable[tuple[str, str, Policy]]) -> Policy:
    """Merge ``(level, source, policy)`` from org down; raise on any loosening."""
    merged: Policy | None = None
    loosenings: list[Loosening] = []
    for level, source, policy in levels:
        if merged is None:
            merged = resolve_root(policy, source)
            continue
        merged, found = merge_level_report(merged, policy, level, source)
        loosenings.extend(found)
    if merged is None:
        raise ValueError("merge_levels needs at least the org level")
    if loosenings:
        raise PolicyViolationError([item.describe() for item in loosenings])
    return merged
