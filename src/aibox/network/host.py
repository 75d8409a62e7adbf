"""``aibox setup --system``'s network step: render, write, apply, (re)start.

Each run renders the three files from the org-level policy, writes only those
that changed, and reloads only the service whose file changed (or that is not
running). A file that its program rejects is never installed, and a service that
fails to come up with a new file is brought back with the previous one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aibox.config import Config
from aibox.errors import AiboxError, UsageError
from aibox.network import firewall, services, systemd
from aibox.network.allowlist import Allowlist, allowlist_from_policy
from aibox.network.coredns import render_corefile
from aibox.network.enforcement import SANDBOX_RESOLV_CONF
from aibox.network.nftables import render_ruleset
from aibox.network.settings import NetworkSettings, network_settings
from aibox.network.squid import (
    check_squid_conf,
    render_deny_pages,
    render_squid_conf,
    write_error_dir,
)


def org_policy(config: Config) -> Any:
    """Return the org-level policy (org baseline, then the config's team policy).

    No workspace is involved, so no project policy applies.
    """
    from aibox.policy.effective import build_effective
    from aibox.policy.hierarchy import load_levels

    # NOTE: the policy package exposes no org-plus-team entry point, so this
    # loads the levels for an empty directory, which has no project policy.
    with tempfile.TemporaryDirectory(prefix="aibox-no-project-") as empty:
        levels = load_levels(config, Path(empty))
    effective, _ = build_effective(levels)
    return effective


def write_text_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.chmod(mode)
    os.replace(temporary, path)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _apply_ruleset(allowlist: Allowlist, settings: NetworkSettings) -> list[str]:
    text = render_ruleset(allowlist, settings)
    recorded = _read(settings.loaded_ruleset)
    loaded = firewall.loaded_ruleset(settings)
    if _read(settings.ruleset) == text and loaded is not None and loaded == recorded:
        return []
    firewall.apply_ruleset(text)
    write_text_atomic(settings.ruleset, text)
    after = firewall.loaded_ruleset(settings) or ""
    write_text_atomic(settings.loaded_ruleset, after)
    return [f"loaded nftables table inet {settings.table} from {settings.ruleset}"]


def _replace_and_restart(
    path: Path,
    text: str,
    running: bool,
    restart: Callable[[], None],
    start: Callable[[], None],
) -> None:
    """Install ``text`` at ``path`` and (re)start; on failure put the old file back."""
    previous = _read(path)
    write_text_atomic(path, text)
    try:
        restart() if running else start()
    except AiboxError as error:
        if previous is None:
            raise
        write_text_atomic(path, previous)
        restart() if running else start()
        raise AiboxError(
            f"{error.message}; the previous configuration {path} is running again",
            hint=error.hint,
        ) from error


def _apply_squid(allowlist: Allowlist, settings: NetworkSettings) -> list[str]:
    text = render_squid_conf(allowlist, settings)
    pages = render_deny_pages(allowlist)
    running = services.squid_running(settings)
    pages_current = all(
        _read(settings.squid_error_dir / name) == page for name, page in pages.items()
    )
    if _read(settings.squid_conf) == text and pages_current:
        if running:
            return []
        services.start_squid(settings)
        return ["started Squid"]
    write_error_dir(settings.squid_error_dir, allowlist)
    candidate = settings.squid_conf.with_name(f".{settings.squid_conf.name}.check")
    write_text_atomic(candidate, text)
    try:
        check_squid_conf(candidate)
    finally:
        candidate.unlink(missing_ok=True)
    _replace_and_restart(
        settings.squid_conf,
        text,
        running,
        lambda: services.reload_squid(settings),
        lambda: services.start_squid(settings),
    )
    verb = "reloaded" if running else "started"
    return [f"wrote {settings.squid_conf}; {verb} Squid"]


def _apply_coredns(allowlist: Allowlist, settings: NetworkSettings) -> list[str]:
    text = render_corefile(allowlist, settings)
    running = services.coredns_running(settings)
    if _read(settings.corefile) == text:
        if running:
            return []
        services.start_coredns(settings)
        return ["started CoreDNS"]
    _replace_and_restart(
        settings.corefile,
        text,
        running,
        lambda: services.restart_coredns(settings),
        lambda: services.start_coredns(settings),
    )
    verb = "restarted" if running else "started"
    return [f"wrote {settings.corefile}; {verb} CoreDNS"]


def _write_resolv_conf(settings: NetworkSettings) -> list[str]:
    if _read(settings.sandbox_resolv_conf) == SANDBOX_RESOLV_CONF:
        return []
    write_text_atomic(settings.sandbox_resolv_conf, SANDBOX_RESOLV_CONF)
    return [f"wrote {settings.sandbox_resolv_conf}"]


def setup_network(config: Config, policy: Any = None) -> list[str]:
    """Install host egress enforcement for ``policy`` and return what changed.

    ``policy`` defaults to the org-level policy. Creates the Podman network and
    its bridge, adds the blackhole route, loads the nftables table and starts or
    reloads CoreDNS and Squid. Needs root.
    """
    if os.geteuid() != 0:
        raise UsageError(
            "network setup needs root (nftables, routes, port 53)",
            hint="Run 'sudo aibox setup --system'.",
        )
    if policy is None:
        policy = org_policy(config)
    allowlist = allowlist_from_policy(policy, config)
    settings = network_settings(config)
    settings.system_dir.mkdir(parents=True, exist_ok=True)
    services.prepare_log_files(settings)
    changes = _write_resolv_conf(settings)
    if services.systemd_running():
        # NOTE: the systemd path is not exercised by the tests, whose hosts do
        # not run systemd as PID 1.
        changes += [f"installed {name}" for name in systemd.install_units(settings)]
    changes += firewall.ensure_podman_network(settings)
    changes += firewall.ensure_bridge(settings)
    changes += firewall.ensure_blackhole_route(settings)
    changes += firewall.ensure_bridge_filtering()
    changes += _apply_ruleset(allowlist, settings)
    changes += _apply_coredns(allowlist, settings)
    changes += _apply_squid(allowlist, settings)
    record = json.dumps(allowlist.to_json(), indent=2, sort_keys=True) + "\n"
    if _read(settings.allowlist_record) != record:
        write_text_atomic(settings.allowlist_record, record)
    return changes


def network_setup_step(context: Any) -> str:
    """Run :func:`setup_network` as a step of ``aibox setup --system``.

    ``context`` is the setup context; only its ``config`` is used.
    """
    changes = setup_network(context.config)
    if not changes:
        return "egress enforcement up to date (nothing changed)"
    return "; ".join(changes)


def teardown_network(config: Config) -> list[str]:
    """Stop the services and remove the table, route, bridge and Podman network."""
    settings = network_settings(config)
    services.stop_squid(settings)
    services.stop_coredns(settings)
    firewall.delete_table(settings)
    firewall.remove_blackhole_route(settings)
    firewall.remove_podman_network(settings)
    if firewall.link_exists(settings.bridge):
        from aibox.network.tools import run_tool

        run_tool(["ip", "link", "del", settings.bridge], check=False)
    return [f"removed network {settings.name}"]
