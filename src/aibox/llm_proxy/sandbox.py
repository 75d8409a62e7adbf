"""Running ``aibox-llm-proxy`` inside a sandbox."""

from __future__ import annotations

from aibox.config import Config
from aibox.policy.effective import EffectivePolicy


def llm_environment(config: Config) -> dict[str, str]:
    """Return the environment variables that point SDKs at the in-sandbox proxy."""
    base = f"http://{config.llm.listen}"
    return {"ANTHROPIC_BASE_URL": base, "OPENAI_BASE_URL": f"{base}/v1"}


def start_llm_proxy(
    config: Config, policy: EffectivePolicy, container: str, rootless: bool
) -> None:
    """Start the proxy as its own process inside the running ``container``."""
    # TODO: placeholder until the proxy server lands.
