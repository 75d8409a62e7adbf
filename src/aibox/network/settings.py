"""Addresses, names and file locations of the host-side egress services.

Everything here is derived from ``Config.network`` and ``aibox.paths``, so a second
network (as the integration tests use) gets its own table, files and listeners.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from aibox import paths
from aibox.config import Config

DEFAULT_NETWORK = "aibox"
METRICS_PORT = 9153


@dataclass(frozen=True)
class NetworkSettings:
    """Listen addresses and file locations of the egress services."""

    name: str
    subnet: str
    gateway: str
    bridge: str
    proxy_port: int
    dns_port: int
    system_dir: Path
    run_dir: Path
    log_dir: Path

    @property
    def loopback(self) -> str:
        """A loopback address unique to this network, where the services also listen.

        Linux routes all of 127.0.0.0/8 to ``lo``, so ``10.213.0.1`` maps to
        ``127.213.0.1`` with no interface setup. The services stay reachable here
        while the bridge does not exist, for health checks and the rootless relay.
        """
        octets = self.gateway.split(".")
        return ".".join(["127", *octets[1:]])

    @property
    def table(self) -> str:
        """The nftables table name (family ``inet``), one per Podman network."""
        return re.sub(r"[^A-Za-z0-9_]", "_", self.name)

    @property
    def instance(self) -> str:
        """The file and process name prefix: ``aibox`` for the default network."""
        if self.name == DEFAULT_NETWORK:
            return "aibox"
        return f"aibox-{self.table}"

    @property
    def squid_service(self) -> str:
        """Squid's ``-n`` service name, which must be alphanumeric."""
        return re.sub(r"[^A-Za-z0-9]", "", self.instance)

    @property
    def squid_conf(self) -> Path:
        return self.system_dir / f"{self._prefix}squid.conf"

    @property
    def squid_error_dir(self) -> Path:
        return self.system_dir / f"{self._prefix}squid-errors"

    @property
    def corefile(self) -> Path:
        return self.system_dir / f"{self._prefix}Corefile"

    @property
    def ruleset(self) -> Path:
        return self.system_dir / f"{self._prefix}nftables.conf"

    @property
    def allowlist_record(self) -> Path:
        """The allowlist that setup last installed, as JSON."""
        return self.system_dir / f"{self._prefix}allowlist.json"

    @property
    def sandbox_resolv_conf(self) -> Path:
        """The resolv.conf mounted into rootless sandboxes (DNS via the relay)."""
        return self.system_dir / f"{self._prefix}sandbox-resolv.conf"

    @property
    def loaded_ruleset(self) -> Path:
        """The ruleset as ``nft list`` printed it right after setup applied it."""
        return self.run_dir / f"{self.instance}-nftables.loaded"

    @property
    def proxy_access_log(self) -> Path:
        return self.log_dir / f"{self._log_prefix}proxy-access.log"

    @property
    def proxy_cache_log(self) -> Path:
        return self.log_dir / f"{self._log_prefix}proxy-cache.log"

    @property
    def dns_query_log(self) -> Path:
        return self.log_dir / f"{self._log_prefix}dns-query.log"

    @property
    def _prefix(self) -> str:
        return "" if self.name == DEFAULT_NETWORK else f"{self.table}."

    @property
    def _log_prefix(self) -> str:
        return "" if self.name == DEFAULT_NETWORK else f"{self.table}-"


def network_settings(config: Config) -> NetworkSettings:
    """Return the settings for ``config.network`` and the current path overrides."""
    network = config.network
    gateway = str(next(ipaddress.ip_network(network.subnet).hosts()))
    return NetworkSettings(
        name=network.podman_network,
        subnet=network.subnet,
        gateway=gateway,
        bridge=network.bridge,
        proxy_port=network.proxy_port,
        dns_port=network.dns_port,
        system_dir=paths.system_dir(),
        run_dir=paths.run_dir(),
        log_dir=paths.log_dir(),
    )
