"""What ``aibox start`` needs from host network enforcement."""

from __future__ import annotations

from aibox.config import Config
from aibox.policy.effective import EffectivePolicy


def check_host_enforcement(
    config: Config, policy: EffectivePolicy, rootless: bool
) -> None:
    """Raise EnforcementError unless ruleset, proxy and DNS match ``policy`` and run."""
    # TODO: placeholder until the nftables, Squid and CoreDNS checks land.


def container_network_args(config: Config, rootless: bool) -> list[str]:
    """Return the podman arguments that attach a sandbox to the enforced network."""
    # TODO: placeholder; sandboxes get no network until egress enforcement lands.
    return ["--network", "none"]
