"""systemd units for Squid and CoreDNS, used where systemd is PID 1.

The units run the same commands as the supervised processes: Squid as its own
daemon (it drops to ``proxy``), CoreDNS as ``nobody`` with only the capability to
bind port 53, its output appended to the DNS query log.
"""

from __future__ import annotations

from pathlib import Path

from aibox.network.settings import NetworkSettings
from aibox.network.tools import find_tool, run_tool

UNIT_DIR = Path("/etc/systemd/system")


def squid_unit_name(settings: NetworkSettings) -> str:
    return f"{settings.instance}-squid.service"


def coredns_unit_name(settings: NetworkSettings) -> str:
    return f"{settings.instance}-coredns.service"


def render_units(settings: NetworkSettings, squid: str, coredns: str) -> dict[str, str]:
    """Return the unit files by name; ``squid`` and ``coredns`` are executables."""
    conf = settings.squid_conf
    service = settings.squid_service
    pidfile = settings.run_dir / f"{settings.instance}-squid.pid"
    squid_unit = f"""[Unit]
Description=aibox egress proxy (Squid) for network {settings.name}
After=network.target

[Service]
Type=forking
PIDFile={pidfile}
ExecStartPre=/bin/mkdir -p {settings.run_dir}
ExecStart={squid} -f {conf} -n {service}
ExecReload={squid} -k reconfigure -f {conf} -n {service}
ExecStop={squid} -k shutdown -f {conf} -n {service}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
    coredns_unit = f"""[Unit]
Description=aibox DNS (CoreDNS) for network {settings.name}
After=network.target

[Service]
ExecStart={coredns} -conf {settings.corefile}
User=nobody
Group=nogroup
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
StandardOutput=append:{settings.dns_query_log}
StandardError=append:{settings.dns_query_log}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
    return {
        squid_unit_name(settings): squid_unit,
        coredns_unit_name(settings): coredns_unit,
    }


def install_units(settings: NetworkSettings) -> list[str]:
    """Write changed unit files and reload systemd; return the names written."""
    units = render_units(settings, find_tool("squid"), find_tool("coredns"))
    written = []
    for name, text in units.items():
        path = UNIT_DIR / name
        if path.exists() and path.read_text() == text:
            continue
        path.write_text(text)
        written.append(name)
    if written:
        run_tool(["systemctl", "daemon-reload"])
    return written


def is_active(unit: str) -> bool:
    return (
        run_tool(["systemctl", "is-active", "--quiet", unit], check=False).returncode
        == 0
    )


def start(unit: str) -> None:
    run_tool(["systemctl", "enable", "--now", unit], timeout=60)


def reload(unit: str) -> None:
    run_tool(["systemctl", "reload", unit], timeout=60)


def restart(unit: str) -> None:
    run_tool(["systemctl", "restart", unit], timeout=60)
