"""Probes run inside a sandbox to show that egress enforcement is in force there.

Positive probes: each allowlisted name resolves through aibox's DNS and is
reachable through the proxy. Negative probes: a name outside the list gets
NXDOMAIN, TXT queries are refused, and a direct connection, another resolver
(UDP and TCP) and DNS over TLS fail. Negative probes aim only at addresses the
allowlist already names (a service's static address or a configured upstream
resolver) or at the sandbox gateway, so a broken setup leaks nothing new.

Each probe is a shell command for ``sh -c`` that needs only bash, curl and dig,
which the sandbox image contains.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aibox.network.allowlist import Allowlist
from aibox.network.settings import NetworkSettings

OUTSIDE_NAME = "aibox-probe.invalid"
FIX_SETUP = "Run 'sudo aibox setup --system', then restart the sandbox."
DIG = "dig +tries=1 +time=3"
TIMEOUT = 30.0


@dataclass(frozen=True)
class Probe:
    """One check run inside the sandbox, and how to read its result."""

    name: str
    command: str
    expect: Callable[[int, str], bool]
    expected: str
    fix: str


@dataclass(frozen=True)
class ProbeResult:
    name: str
    ok: bool
    expected: str
    output: str
    fix: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "expected": self.expected,
            "output": self.output,
            "fix": self.fix,
        }


def _status(output: str) -> str:
    for part in output.split(","):
        if "status:" in part:
            return part.split("status:")[1].strip()
    return "no reply"


def _failed(code: int, output: str) -> bool:
    return code != 0


def _reach_probe(name: str, port: int, proxy: str) -> Probe:
    fix = (
        f"Check that {name} is up and that its address in network.static_addresses "
        "or its upstream resolver is right."
    )
    if port == 443:
        command = (
            f"curl -s -m 10 -o /dev/null -p -x {proxy} -w '%{{http_connect}}' "
            f"https://{name}/"
        )
        return Probe(
            f"reach {name}:443 through the proxy",
            command,
            lambda code, output: output.strip() == "200",
            "CONNECT answered 200",
            fix,
        )
    command = f"curl -s -m 10 -D - -o /dev/null -x {proxy} http://{name}:{port}/"
    return Probe(
        f"reach {name}:{port} through the proxy",
        command,
        lambda code, output: (
            output.startswith("HTTP/") and "X-Squid-Error" not in output
        ),
        "an HTTP reply from the service, not from the proxy",
        fix,
    )


def _target(allowlist: Allowlist, settings: NetworkSettings) -> tuple[str, int]:
    """Return an address and port for bypass attempts that the allowlist names.

    A service with a static address is preferred, on its first allowed port,
    then a configured upstream resolver, then the gateway on port 443, which the
    host's ruleset rejects because only the proxy and DNS ports are open there.
    """
    for entry in allowlist.entries:
        for pattern in entry.hosts:
            resolution = allowlist.resolution(pattern.lstrip("."))
            if resolution.kind == "static" and resolution.address:
                return resolution.address, entry.ports[0]
    for name in allowlist.names:
        resolution = allowlist.resolution(name)
        if resolution.kind == "forward" and resolution.upstream:
            address, port = resolution.upstream.rsplit(":", 1)
            return address.strip("[]"), int(port)
    return settings.gateway, 443


def _tcp_connect(address: str, port: int) -> str:
    return f"timeout 5 bash -c 'exec 3<>/dev/tcp/{address}/{port}'"


def sandbox_probes(
    allowlist: Allowlist, settings: NetworkSettings, rootless: bool
) -> list[Probe]:
    """Return the probes for ``allowlist``, positive first."""
    host = "127.0.0.1" if rootless else settings.gateway
    proxy = f"http://{host}:{settings.proxy_port}"
    probes = []
    for entry in allowlist.entries:
        for pattern in entry.hosts:
            name = pattern.lstrip(".")
            if allowlist.resolution(name).kind == "none":
                continue
            probes.append(
                Probe(
                    f"resolve {name}",
                    f"{DIG} +short {name}",
                    lambda code, output: code == 0 and bool(output.strip()),
                    "an address from aibox's DNS",
                    f"Add {name} to network.static_addresses or network."
                    "upstream_resolvers in config.yaml; then " + FIX_SETUP,
                )
            )
            probes.append(_reach_probe(name, entry.ports[0], proxy))
    target, port = _target(allowlist, settings)
    # The gateway's own DNS port is aibox's resolver, so "another resolver" on
    # the gateway means another port there.
    resolver = f"@{target}" if target != settings.gateway else f"@{target} -p 5353"
    # NOTE: a bypass probe also passes when nothing listens on its target port;
    # the integration tests prove each block against a listening server.
    probes += [
        Probe(
            "name outside the allowlist",
            f"{DIG} {OUTSIDE_NAME} | grep status:",
            lambda code, output: _status(output) == "NXDOMAIN",
            "NXDOMAIN",
            FIX_SETUP,
        ),
        Probe(
            f"direct connection to {target}:{port} without the proxy",
            _tcp_connect(target, port),
            _failed,
            "connection fails",
            FIX_SETUP,
        ),
        Probe(
            "another resolver over UDP",
            f"{DIG} +short {resolver} {OUTSIDE_NAME}",
            _failed,
            "no reply",
            FIX_SETUP,
        ),
        Probe(
            "another resolver over TCP",
            f"{DIG} +tcp +short {resolver} {OUTSIDE_NAME}",
            _failed,
            "no reply",
            FIX_SETUP,
        ),
        Probe(
            "DNS over TLS (port 853)",
            _tcp_connect(target, 853),
            _failed,
            "connection fails",
            FIX_SETUP,
        ),
    ]
    if allowlist.names:
        name = allowlist.names[0]
        probes.append(
            Probe(
                f"TXT query for {name}",
                f"{DIG} TXT {name} | grep status:",
                lambda code, output: _status(output) == "REFUSED",
                "REFUSED",
                FIX_SETUP,
            )
        )
    return probes


def run_probes(
    probes: Sequence[Probe], container: str, podman: Sequence[str] = ("podman",)
) -> list[ProbeResult]:
    """Run each probe in ``container`` with ``podman exec`` and judge the result."""
    results = []
    for probe in probes:
        command = [*podman, "exec", container, "sh", "-c", probe.command]
        try:
            completed = subprocess.run(
                command, capture_output=True, text=True, timeout=TIMEOUT, check=False
            )
            code, output = completed.returncode, completed.stdout.strip()
            detail = output or completed.stderr.strip()
        except subprocess.TimeoutExpired:
            code, output, detail = -1, "", f"timed out after {TIMEOUT:.0f} s"
        ok = probe.expect(code, output)
        results.append(
            ProbeResult(
                name=probe.name,
                ok=ok,
                expected=probe.expected,
                output=_shorten(detail) or f"exit code {code}",
                fix=None if ok else probe.fix,
            )
        )
    return results


def _shorten(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
