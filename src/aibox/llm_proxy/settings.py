"""Command-line options of ``aibox-llm-proxy`` and the settings they produce.

Every option can also come from an ``AIBOX_LLM_*`` environment variable, so the
sandbox starter can pass non-secret values either way. The key itself is never
an option or a variable: it is read from a file or from Vault.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aibox.config import parse_bytes
from aibox.errors import UsageError

DEFAULT_LISTEN = "127.0.0.1:8443"
DEFAULT_UPSTREAM = "https://foundry.internal"
DEFAULT_KEY_FILE = "/run/aibox/credentials/llm-api-key"
DEFAULT_PAYLOAD_LOG = "/var/log/aibox/llm-payloads.jsonl"
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024**2
DEFAULT_PAYLOAD_BODY_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class ProxySettings:
    """Everything the running proxy needs apart from the key."""

    host: str = "127.0.0.1"
    port: int = 8443
    anthropic_upstream: str = DEFAULT_UPSTREAM
    openai_upstream: str = DEFAULT_UPSTREAM
    upstream_proxy: str | None = None
    upstream_ca_file: str | None = None
    sandbox_id: str = "unknown"
    user: str = "unknown"
    requests_per_min: int | None = None
    tokens_per_min: int | None = None
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    payload_log: Path = Path(DEFAULT_PAYLOAD_LOG)
    payload_body_max_bytes: int = DEFAULT_PAYLOAD_BODY_MAX_BYTES
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    client_write_timeout: float = 60.0
    key_poll_seconds: float = 1.0
    max_event_bytes: int = 8 * 1024**2
    max_response_bytes: int = 64 * 1024**2


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[V6]:PORT`` for IPv6); port 0 picks a free port."""
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise UsageError(
            f"invalid listen address {value!r}",
            hint="Use HOST:PORT, for example 127.0.0.1:8443.",
        )
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(value: str, option: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise UsageError(
            f"invalid URL for {option}: {value!r}",
            hint=f"Use a {' or '.join(schemes)} URL with a host name.",
        )
    if parts.username or parts.password:
        raise UsageError(
            f"{option} must not carry credentials in the URL",
            hint="Remove the user and password from the URL.",
        )
    return value


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"AIBOX_LLM_{name}", default)


def _positive_int(text: str) -> int:
    try:
        value = parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aibox-llm-proxy",
        description="Forward LLM API calls with an injected key, limits and a "
        "payload log.",
    )
    add = parser.add_argument
    add(
        "--listen", default=_env("LISTEN", DEFAULT_LISTEN), help="HOST:PORT to serve on"
    )
    add("--anthropic-upstream", default=_env("ANTHROPIC_UPSTREAM", DEFAULT_UPSTREAM))
    add("--openai-upstream", default=_env("OPENAI_UPSTREAM", DEFAULT_UPSTREAM))
    add(
        "--upstream-proxy",
        default=_env("UPSTREAM_PROXY"),
        help="HTTP proxy for upstream connections (CONNECT for https upstreams)",
    )
    add("--upstream-ca-file", default=_env("UPSTREAM_CA_FILE"), help="extra CA bundle")
    add(
        "--key-file",
        default=_env("KEY_FILE", DEFAULT_KEY_FILE),
        help="file with the key",
    )
    add("--vault-addr", default=_env("VAULT_ADDR"), help="read the key from Vault")
    add("--vault-token-file", default=_env("VAULT_TOKEN_FILE"))
    add("--vault-mount", default=_env("VAULT_MOUNT", "secret"))
    add("--vault-path", default=_env("VAULT_PATH"), help="KV v2 path of the key")
    add("--vault-field", default=_env("VAULT_FIELD", "api_key"))
    add("--sandbox-id", default=_env("SANDBOX_ID", "unknown"))
    add("--user", default=_env("USER", "unknown"), help="developer sent upstream")
    add("--requests-per-min", type=_positive_int, default=_env("REQUESTS_PER_MIN"))
    add("--tokens-per-min", type=_positive_int, default=_env("TOKENS_PER_MIN"))
    add(
        "--max-request-bytes",
        type=_positive_int,
        default=_env("MAX_REQUEST_BYTES", str(DEFAULT_MAX_REQUEST_BYTES)),
        help="largest request body accepted, in bytes (units such as 10Mi allowed)",
    )
    add("--payload-log", default=_env("PAYLOAD_LOG", DEFAULT_PAYLOAD_LOG))
    add(
        "--payload-body-max-bytes",
        type=_positive_int,
        default=_env("PAYLOAD_BODY_MAX_BYTES", str(DEFAULT_PAYLOAD_BODY_MAX_BYTES)),
        help="bytes of each body kept in the payload log",
    )
    add(
        "--connect-timeout",
        type=_positive_float,
        default=10.0,
        help="seconds to wait for an upstream connection",
    )
    add(
        "--read-timeout",
        type=_positive_float,
        default=600.0,
        help="seconds to wait between reads from the upstream",
    )
    add(
        "--client-write-timeout",
        type=_positive_float,
        default=60.0,
        help="seconds a client may stop reading before its stream is cut",
    )
    add(
        "--key-poll-seconds",
        type=_positive_float,
        default=1.0,
        help="how often the key file is checked for changes",
    )
    add("--log-level", default=_env("LOG_LEVEL", "INFO"))
    return parser


def settings_from_arguments(arguments: argparse.Namespace) -> ProxySettings:
    """Validate parsed options into settings, raising UsageError on bad values."""
    host, port = parse_listen(arguments.listen)
    anthropic = _check_url(
        arguments.anthropic_upstream, "--anthropic-upstream", ("http", "https")
    )
    openai = _check_url(
        arguments.openai_upstream, "--openai-upstream", ("http", "https")
    )
    proxy = arguments.upstream_proxy
    if proxy:
        proxy = _check_url(proxy, "--upstream-proxy", ("http",))
    ca_file = arguments.upstream_ca_file
    if ca_file and not Path(ca_file).is_file():
        raise UsageError(
            f"CA file not found: {ca_file}",
            hint="Point --upstream-ca-file at a PEM file.",
        )
    return ProxySettings(
        host=host,
        port=port,
        anthropic_upstream=anthropic,
        openai_upstream=openai,
        upstream_proxy=proxy or None,
        upstream_ca_file=ca_file or None,
        sandbox_id=arguments.sandbox_id,
        user=arguments.user,
        requests_per_min=arguments.requests_per_min,
        tokens_per_min=arguments.tokens_per_min,
        max_request_bytes=arguments.max_request_bytes,
        payload_log=Path(arguments.payload_log),
        payload_body_max_bytes=arguments.payload_body_max_bytes,
        connect_timeout=arguments.connect_timeout,
        read_timeout=arguments.read_timeout,
        client_write_timeout=arguments.client_write_timeout,
        key_poll_seconds=arguments.key_poll_seconds,
    )


def parse_arguments(
    argv: Sequence[str] | None,
) -> tuple[ProxySettings, argparse.Namespace]:
    arguments = build_parser().parse_args(argv)
    return settings_from_arguments(arguments), arguments
