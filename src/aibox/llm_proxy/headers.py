"""Header rules: what the proxy drops from client requests and what it adds.

Client credentials never reach the upstream: every header that Anthropic, OpenAI,
Azure OpenAI or a gateway accepts as a credential is removed, and the proxy's own
key is injected in the header the upstream provider expects.
"""

from __future__ import annotations

from collections.abc import Iterable

from aibox.llm_proxy.routes import Provider

# Headers that carry a credential for some LLM provider or gateway.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "ocp-apim-subscription-key",
        "openai-organization",
        "openai-project",
        "cookie",
    }
)

# Connection-level headers (RFC 9110 section 7.6.1) plus those the HTTP client
# recomputes for the upstream connection.
HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
    }
)

IDENTITY_HEADERS = frozenset({"x-aibox-sandbox-id", "x-aibox-user"})

# Response headers the proxy does not pass back: connection-level ones, and
# framing headers that aiohttp recomputes for the body it sends.
_RESPONSE_DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "set-cookie",
        "trailer",
        "upgrade",
    }
)


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(token.strip().lower() for token in value.split(","))
    return tokens


def upstream_request_headers(
    client_headers: Iterable[tuple[str, str]],
    provider: Provider,
    key: str,
    sandbox_id: str,
    user: str,
) -> list[tuple[str, str]]:
    """Build the upstream request headers from the client's.

    Drops credentials, hop-by-hop headers, the headers named in ``Connection`` and
    any client-sent identity header, then adds the key and the sandbox identity.
    """
    pairs = list(client_headers)
    dropped = CREDENTIAL_HEADERS | HOP_BY_HOP_HEADERS | IDENTITY_HEADERS
    dropped = dropped | _connection_tokens(pairs)
    kept = [(name, value) for name, value in pairs if name.lower() not in dropped]

    if provider is Provider.ANTHROPIC:
        kept.append(("x-api-key", key))
    else:
        kept.append(("Authorization", f"Bearer {key}"))
    kept.append(("X-AIBox-Sandbox-ID", sandbox_id))
    kept.append(("X-AIBox-User", user))
    return kept


def client_response_headers(
    upstream_headers: Iterable[tuple[str, str]],
) -> list[tuple[str, str]]:
    """Return the upstream response headers that are passed back to the client."""
    pairs = list(upstream_headers)
    dropped = _RESPONSE_DROPPED | _connection_tokens(pairs)
    return [(name, value) for name, value in pairs if name.lower() not in dropped]


REDACTED = b"[redacted]"


def scrub_secret(data: bytes, secret: str) -> bytes:
    """Replace each occurrence of ``secret`` in ``data``, for upstreams that echo it."""
    needle = secret.encode()
    if not needle or needle not in data:
        return data
    return data.replace(needle, REDACTED)
