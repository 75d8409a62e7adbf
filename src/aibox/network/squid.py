"""Render Squid's configuration and deny pages from the allowlist.

The proxy allows plain HTTP and ``CONNECT`` only to allowlisted names on the ports
of their ``network.allow`` rule, and denies everything else with a page that names
the rule and how to request access. There is no TLS interception and no caching.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from aibox.errors import ExternalToolError
from aibox.network.allowlist import Allowlist
from aibox.network.settings import NetworkSettings
from aibox.network.tools import last_line, run_tool

DENY_PAGE = "ERR_AIBOX_DENIED"
PORT_PAGE = "ERR_AIBOX_PORT"

_HOW_TO_ASK = (
    "To request access, add a rule under network.allow in the project policy "
    "(aibox/policy.yaml) if the org and team policies permit the host, or ask the "
    "platform team to add it to the org policy. An administrator then runs "
    "'sudo aibox setup --system' to apply it on this machine."
)


def merge_domains(hosts: tuple[str, ...]) -> tuple[str, ...]:
    """Return ``hosts`` with names covered by a ``.domain`` entry removed.

    Squid 5 treats ``a.internal`` next to ``.a.internal`` in one ``dstdomain`` ACL
    as a fatal error, and ``.a.internal`` already matches ``a.internal``.
    """
    domains = {host for host in hosts if host.startswith(".")}
    merged = []
    for host in dict.fromkeys(hosts):
        name = host.lstrip(".")
        covered = any(
            name.endswith(domain) or f".{name}" == domain
            for domain in domains
            if domain != host
        )
        if not covered:
            merged.append(host)
    return tuple(sorted(merged, key=lambda host: (host.lstrip("."), host)))


def _header(allowlist: Allowlist) -> list[str]:
    lines = [
        "# aibox egress proxy, rendered from the network allowlist by",
        "# 'aibox setup --system'. Local edits are overwritten.",
        f"# allowlist sha256 {allowlist.digest()}",
    ]
    for entry in allowlist.entries:
        ports = ",".join(str(port) for port in entry.ports)
        limit = f" rate_limit {entry.rate_limit}" if entry.rate_limit else ""
        lines.append(f"# rule {entry.id}: {' '.join(entry.hosts)} ports {ports}{limit}")
    return lines


def render_squid_conf(allowlist: Allowlist, settings: NetworkSettings) -> str:
    """Return the complete ``squid.conf`` for ``allowlist``."""
    clients = f"{settings.subnet} {settings.loopback}/32"
    lines = [
        *_header(allowlist),
        "",
        *[
            f"http_port {address}:{settings.proxy_port}"
            for address in dict.fromkeys([settings.gateway, settings.loopback])
        ],
        f"pid_filename {settings.run_dir / (settings.instance + '-squid.pid')}",
        "visible_hostname aibox-proxy",
        "cache_effective_user proxy",
        "cache deny all",
        "cache_mem 8 MB",
        "shutdown_lifetime 1 seconds",
        "pinger_enable off",
        "forwarded_for delete",
        "via off",
        "httpd_suppress_version_string on",
        "hosts_file none",
        f"dns_nameservers {settings.loopback}",
        f"error_directory {settings.squid_error_dir}",
        "logformat aibox %{%Y-%m-%dT%H:%M:%S%z}tl %>a %Ss/%03>Hs %rm %ru %<st",
        f"access_log stdio:{settings.proxy_access_log} aibox",
        f"cache_log {settings.proxy_cache_log}",
        "logfile_rotate 0",
        "",
        f"acl aibox_clients src {clients}",
    ]
    # NOTE: rate_limit is recorded in the header only; Squid's delay pools limit
    # bandwidth, not requests, so request rates are limited by the LLM proxy.
    allow_lines = []
    port_acls = []
    for index, entry in enumerate(allowlist.entries):
        hosts_acl = f"rule{index}_hosts"
        ports_acl = f"rule{index}_ports"
        domains = " ".join(merge_domains(entry.hosts))
        ports = " ".join(str(port) for port in entry.ports)
        lines.append(f"# rule {entry.id}")
        lines.append(f"acl {hosts_acl} dstdomain -n {domains}")
        lines.append(f"acl {ports_acl} port {ports}")
        allow_lines.append(f"http_access allow {hosts_acl} {ports_acl}")
        port_acls.append(hosts_acl)

    lines += ["", "http_access deny !aibox_clients", *allow_lines]
    lines += [f"http_access deny {acl}" for acl in port_acls]
    lines.append("http_access deny all")
    if port_acls:
        lines.append(f"deny_info {PORT_PAGE} {' '.join(port_acls)}")
    lines.append(f"deny_info {DENY_PAGE} all")
    return "\n".join(lines) + "\n"


def render_deny_pages(allowlist: Allowlist) -> dict[str, str]:
    """Return the deny page templates by file name (Squid fills in %H, %p, %U)."""
    digest = allowlist.digest()[:16]
    denied = (
        "<html><head><title>aibox: request blocked by network policy</title></head>"
        "<body><h1>Blocked by aibox network policy</h1>\n"
        "<p>%M %U was denied: no network.allow rule in the effective policy names "
        "the host %H, so the proxy's final rule (deny all) applied.</p>\n"
        f"<p>{_HOW_TO_ASK}</p>\n"
        f"<p>allowlist {digest}</p></body></html>\n"
    )
    port = (
        "<html><head><title>aibox: port not allowed by network policy</title></head>"
        "<body><h1>Blocked by aibox network policy</h1>\n"
        "<p>%M %U was denied: a network.allow rule names the host %H, but not "
        "port %p. Each rule lists the ports its hosts may be reached on.</p>\n"
        f"<p>{_HOW_TO_ASK}</p>\n"
        f"<p>allowlist {digest}</p></body></html>\n"
    )
    return {DENY_PAGE: denied, PORT_PAGE: port}


SQUID_TEMPLATES = Path("/usr/share/squid/errors/templates")


def write_error_dir(directory: Path, allowlist: Allowlist) -> None:
    """Fill ``directory`` with Squid's stock templates and the aibox deny pages.

    ``error_directory`` replaces Squid's language directories, so the stock pages
    (connection failures and the like) must be there too.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for template in sorted(SQUID_TEMPLATES.glob("ERR_*")):
        target = directory / template.name
        if not target.exists():
            shutil.copyfile(template, target)
    for name, text in render_deny_pages(allowlist).items():
        (directory / name).write_text(text)


def check_squid_conf(path: Path) -> None:
    """Run ``squid -k parse`` on ``path``; raise ExternalToolError on any error.

    Squid 5.7 exits 0 for some fatal findings (such as a missing error directory),
    so FATAL and ERROR lines in its output count as failures too.
    """
    result = run_tool(["squid", "-k", "parse", "-f", str(path)], check=False)
    output = result.stderr + result.stdout
    problems = [
        line.strip()
        for line in output.splitlines()
        if "FATAL" in line or "ERROR" in line or "Bungled" in line
    ]
    if result.returncode != 0 or problems:
        detail = problems[-1] if problems else last_line(output)
        raise ExternalToolError(
            f"squid rejected {path}: {detail}",
            hint="The previous proxy configuration stays in place; fix the policy "
            "value named above and run 'sudo aibox setup --system' again.",
        )
