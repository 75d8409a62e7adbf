"""Host-side checks of egress enforcement, for ``aibox start`` and ``aibox doctor``.

Each layer is checked on its own: the rendered files against the allowlist of the
policy in force, the loaded nftables table against what setup applied, and Squid
and CoreDNS by sending each a request they must deny.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from aibox.config import Config
from aibox.errors import AiboxError
from aibox.network import firewall, services
from aibox.network.allowlist import Allowlist, allowlist_from_policy
from aibox.network.coredns import render_corefile
from aibox.network.nftables import render_ruleset
from aibox.network.settings import NetworkSettings, network_settings
from aibox.network.squid import render_squid_conf

FIX_COMMAND = "sudo aibox setup --system"


@dataclass(frozen=True)
class Check:
    """The result of one check: what was checked, whether it passed, what to do."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "hint": self.hint,
        }


def _digest_in(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("# allowlist sha256 "):
            return line.split()[-1][:12]
    return "none"


def _compare_hosts(allowlist: Allowlist, settings: NetworkSettings) -> tuple[str, str]:
    """Return how the installed hosts differ from the policy's, and the fix."""
    fix = f"Run '{FIX_COMMAND}'."
    try:
        record = json.loads(settings.allowlist_record.read_text())
        installed = {host for entry in record["entries"] for host in entry["hosts"]}
    except (OSError, ValueError, KeyError, TypeError):
        return "", fix
    wanted = set(allowlist.hosts)
    if wanted - installed:
        missing = ", ".join(sorted(wanted - installed))
        return f"; the policy allows {missing}, which this host does not serve", fix
    if installed - wanted:
        extra = ", ".join(sorted(installed - wanted))
        return (
            f"; this host allows {extra}, which the effective policy does not",
            "The host's proxy and DNS serve every sandbox, so a team or project "
            "policy cannot narrow network.allow below the host's list. Remove "
            "network.allow from that policy, or ask an administrator to narrow the "
            f"org policy and run '{FIX_COMMAND}'.",
        )
    return "", fix


def file_checks(allowlist: Allowlist, settings: NetworkSettings) -> list[Check]:
    """Compare each installed file with the rendering of ``allowlist``."""
    expected = {
        ("proxy config", settings.squid_conf): render_squid_conf(allowlist, settings),
        ("DNS config", settings.corefile): render_corefile(allowlist, settings),
        ("firewall ruleset", settings.ruleset): render_ruleset(allowlist, settings),
    }
    checks = []
    for (layer, path), text in expected.items():
        try:
            installed = path.read_text()
        except OSError as exc:
            checks.append(
                Check(
                    layer,
                    False,
                    f"{path} is missing or unreadable ({exc.strerror})",
                    f"Run '{FIX_COMMAND}'.",
                )
            )
            continue
        if installed != text:
            difference, hint = _compare_hosts(allowlist, settings)
            detail = (
                f"{path} does not match the effective policy "
                f"(installed allowlist {_digest_in(installed)}, "
                f"policy allowlist {allowlist.digest()[:12]}){difference}"
            )
            checks.append(Check(layer, False, detail, hint))
        else:
            checks.append(Check(layer, True, f"{path} matches the effective policy"))
    return checks


def ruleset_check(settings: NetworkSettings) -> Check:
    """Check that the nftables table is loaded and equals what setup applied."""
    name = "firewall loaded"
    try:
        loaded = firewall.loaded_ruleset(settings)
    except AiboxError as exc:
        return Check(name, False, exc.message, exc.hint)
    if loaded is None:
        return Check(
            name,
            False,
            f"nftables table inet {settings.table} is not loaded",
            f"Run '{FIX_COMMAND}'.",
        )
    try:
        applied = settings.loaded_ruleset.read_text()
    except OSError:
        applied = None
    if loaded != applied:
        return Check(
            name,
            False,
            f"nftables table inet {settings.table} differs from the ruleset "
            f"setup applied ({settings.loaded_ruleset})",
            f"Run '{FIX_COMMAND}' to load it again.",
        )
    return Check(name, True, f"nftables table inet {settings.table} is loaded")


def service_checks(settings: NetworkSettings) -> list[Check]:
    """Check that Squid and CoreDNS answer on their loopback listeners."""
    proxy = f"{settings.loopback}:{settings.proxy_port}"
    dns = f"{settings.loopback}:{settings.dns_port}"
    checks = []
    if services.proxy_answers(settings.loopback, settings.proxy_port):
        checks.append(Check("proxy", True, f"Squid answers on {proxy}"))
    else:
        checks.append(
            Check(
                "proxy",
                False,
                f"Squid is not answering on {proxy}",
                f"Run '{FIX_COMMAND}'; see {settings.proxy_cache_log}.",
            )
        )
    if services.dns_answers(settings.loopback, settings.dns_port):
        checks.append(Check("DNS", True, f"CoreDNS answers on {dns}"))
    else:
        checks.append(
            Check(
                "DNS",
                False,
                f"CoreDNS is not answering on {dns}",
                f"Run '{FIX_COMMAND}'; see {settings.dns_query_log}.",
            )
        )
    return checks


def enforcement_checks(
    config: Config, policy: Any, *, check_ruleset: bool
) -> list[Check]:
    allowlist = allowlist_from_policy(policy, config)
    settings = network_settings(config)
    checks = file_checks(allowlist, settings)
    if check_ruleset:
        checks.append(ruleset_check(settings))
    return checks + service_checks(settings)


def host_checks(config: Config) -> list[Check]:
    """Return the host-side checks for ``aibox doctor`` against the org policy.

    The ruleset can only be listed with CAP_NET_ADMIN, so an unprivileged run
    reports it as not checked instead of failed.
    """
    from aibox.network.host import org_policy

    try:
        policy = org_policy(config)
    except AiboxError as exc:
        return [Check("policy", False, exc.message, exc.hint)]
    is_root = os.geteuid() == 0
    checks = enforcement_checks(config, policy, check_ruleset=is_root)
    if not is_root:
        checks.append(
            Check(
                "firewall loaded",
                True,
                "not checked: listing nftables needs root ('sudo aibox doctor')",
            )
        )
    return checks
