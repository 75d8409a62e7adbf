"""Network enforcement as ``aibox start`` uses it: a fail-closed check of the
host, the Podman arguments that put a sandbox behind it, and the relay that
connects a rootless sandbox.

Root-run sandboxes join the Podman network whose traffic the nftables table
confines to the proxy and DNS on the gateway. Rootless sandboxes get no network
interface at all (``--network none``); :func:`attach_sandbox_network` then starts
a relay that serves the proxy and DNS on 127.0.0.1 inside the sandbox.
"""

from __future__ import annotations

import os
from pathlib import Path

from aibox import paths
from aibox.config import Config
from aibox.errors import EnforcementError, ExternalToolError
from aibox.network import relay
from aibox.network.checks import FIX_COMMAND, enforcement_checks
from aibox.network.settings import network_settings
from aibox.network.tools import run_tool
from aibox.policy.effective import EffectivePolicy

NO_PROXY = "localhost,127.0.0.1"
SANDBOX_RESOLV_CONF = "nameserver 127.0.0.1\noptions attempts:2 timeout:2\n"


def check_host_enforcement(
    config: Config, policy: EffectivePolicy, rootless: bool
) -> None:
    """Raise EnforcementError unless every layer matches ``policy`` and runs.

    Checked: the installed Squid, CoreDNS and nftables files equal the rendering
    of the policy's allowlist, and Squid and CoreDNS respond. For root-run
    sandboxes the nftables table must also be loaded as setup applied it. The
    error names the first failing layer and the fix command.
    """
    # NOTE: the host services are shared by all sandboxes and the files must
    # equal the effective policy's rendering. So a project policy that narrows
    # network.allow below the org's is refused until the host is set up for it.
    # The table is checked for root-run sandboxes only, because a rootless one
    # has no interface for it to confine and its user cannot list the table.
    checks = enforcement_checks(config, policy, check_ruleset=not rootless)
    if rootless:
        settings = network_settings(config)
        if not settings.sandbox_resolv_conf.is_file():
            raise EnforcementError(
                f"network enforcement: {settings.sandbox_resolv_conf} is missing",
                hint=f"Run '{FIX_COMMAND}'.",
            )
    failed = [check for check in checks if not check.ok]
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        raise EnforcementError(
            f"network enforcement: {first.name}: {first.detail}{more}",
            hint=first.hint or f"Run '{FIX_COMMAND}'.",
        )


def proxy_environment(proxy_url: str) -> dict[str, str]:
    """Return the proxy variables; curl reads only lower-case ``http_proxy``."""
    return {
        "http_proxy": proxy_url,
        "https_proxy": proxy_url,
        "HTTP_PROXY": proxy_url,
        "HTTPS_PROXY": proxy_url,
        "no_proxy": NO_PROXY,
        "NO_PROXY": NO_PROXY,
    }


def container_network_args(config: Config, rootless: bool) -> list[str]:
    """Return the podman arguments that attach a sandbox to the enforced network.

    Root-run: ``--network <aibox network> --dns <gateway>`` and proxy variables
    pointing at the gateway. Rootless: ``--network none``, a resolv.conf naming
    127.0.0.1 and proxy variables pointing at 127.0.0.1, which the relay serves.
    Under gVisor both need ``--runtime-flag network=host``, so that gVisor uses
    the container's own network namespace.
    """
    settings = network_settings(config)
    if rootless:
        args = [
            "--network",
            "none",
            "--volume",
            f"{settings.sandbox_resolv_conf}:/etc/resolv.conf:ro",
        ]
        proxy_url = f"http://127.0.0.1:{settings.proxy_port}"
    else:
        args = ["--network", settings.name, "--dns", settings.gateway]
        proxy_url = f"http://{settings.gateway}:{settings.proxy_port}"
    for name, value in proxy_environment(proxy_url).items():
        args += ["--env", f"{name}={value}"]
    return args


def _relay_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "aibox" if runtime else paths.user_state_dir()
    return base / "relay"


def relay_pidfile(container: str) -> Path:
    return _relay_dir() / f"{container}.pid"


def attach_sandbox_network(
    config: Config, container: str, rootless: bool, podman: str = "podman"
) -> None:
    """Connect a just-started sandbox to the proxy and DNS.

    Root-run sandboxes are connected by their Podman network, so this does
    nothing. For a rootless one it starts the relay into the container's
    namespaces; until then the sandbox has no network at all. Call it after
    every ``podman run`` or ``podman start`` of a rootless sandbox.
    """
    if not rootless:
        return
    settings = network_settings(config)
    try:
        result = run_tool(
            [podman, "container", "inspect", "--format", "{{.State.Pid}}", container]
        )
        pid = int(result.stdout.strip())
    except (ExternalToolError, ValueError) as exc:
        raise EnforcementError(
            f"cannot find the process of sandbox {container}: {exc}",
            hint="Check 'podman ps'; then restart the sandbox.",
        ) from None
    pidfile = relay_pidfile(container)
    relay.stop_relay(pidfile)
    relay.start_relay(
        pid=pid,
        upstream=settings.loopback,
        proxy_port=settings.proxy_port,
        dns_port=settings.dns_port,
        pidfile=pidfile,
        log_file=_relay_dir() / f"{container}.log",
    )


def detach_sandbox_network(container: str) -> None:
    """Stop the relay of a rootless sandbox (it also exits when the sandbox does)."""
    relay.stop_relay(relay_pidfile(container))
