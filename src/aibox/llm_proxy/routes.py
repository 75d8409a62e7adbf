"""Route table and provider error bodies: which upstream serves a request path.

Pure functions over the method, path and headers, so routing is tested without
sockets. The Anthropic and OpenAI APIs share ``/v1/models``; a request carrying an
``anthropic-version`` header (every Anthropic SDK sends it) goes to Anthropic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit


class Provider(StrEnum):
    ANTHROPIC = "anthropic"
    OPENAI = "openai"


class RouteKind(StrEnum):
    """The kind of work a route does, which decides its limits and usage accounting."""

    GENERATE = "generate"  # model output: tokens reserved and corrected
    COUNT = "count"  # token counting: request limit only
    EMBED = "embed"  # embeddings: input tokens only
    LIST = "list"  # model listing: request limit only


@dataclass(frozen=True)
class Route:
    provider: Provider
    kind: RouteKind
    method: str
    path: str
    needs_model: bool


_MODEL_ID = r"/[A-Za-z0-9._:@-]{1,200}"
_ROUTES: tuple[tuple[Provider, str, str, RouteKind], ...] = (
    (Provider.ANTHROPIC, "POST", r"/v1/messages", RouteKind.GENERATE),
    (Provider.ANTHROPIC, "POST", r"/v1/messages/count_tokens", RouteKind.COUNT),
    (Provider.ANTHROPIC, "GET", r"/v1/models", RouteKind.LIST),
    (Provider.ANTHROPIC, "GET", r"/v1/models" + _MODEL_ID, RouteKind.LIST),
    (Provider.OPENAI, "POST", r"/v1/chat/completions", RouteKind.GENERATE),
    (Provider.OPENAI, "POST", r"/v1/responses", RouteKind.GENERATE),
    (Provider.OPENAI, "POST", r"/v1/embeddings", RouteKind.EMBED),
    (Provider.OPENAI, "GET", r"/v1/models", RouteKind.LIST),
    (Provider.OPENAI, "GET", r"/v1/models" + _MODEL_ID, RouteKind.LIST),
)
_COMPILED = tuple(
    (provider, method, re.compile(pattern + r"/?"), kind)
    for provider, method, pattern, kind in _ROUTES
)


class RouteError(Exception):
    """A request that no route accepts, with the HTTP status to return."""

    def __init__(self, provider: Provider, status: int, message: str) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.message = message


def guess_provider(path: str, headers: Mapping[str, str]) -> Provider:
    """Return the provider whose API a request looks like it speaks."""
    lowered = {name.lower() for name in headers}
    if "anthropic-version" in lowered or "anthropic-beta" in lowered:
        return Provider.ANTHROPIC
    if path.startswith("/v1/messages"):
        return Provider.ANTHROPIC
    return Provider.OPENAI


def resolve_route(method: str, path: str, headers: Mapping[str, str]) -> Route:
    """Return the route for a request, or raise RouteError with 404 or 405."""
    provider = guess_provider(path, headers)
    candidates = [
        (route_provider, route_method, kind)
        for route_provider, route_method, pattern, kind in _COMPILED
        if pattern.fullmatch(path)
    ]
    same_provider = [c for c in candidates if c[0] == provider] or candidates
    if not same_provider:
        raise RouteError(provider, 404, f"no route for {method} {path}")

    for route_provider, route_method, kind in same_provider:
        if route_method == method.upper():
            needs_model = route_method == "POST"
            return Route(route_provider, kind, route_method, path, needs_model)
    allowed = same_provider[0][1]
    raise RouteError(
        same_provider[0][0],
        405,
        f"method {method} is not allowed on {path}; use {allowed}",
    )


def upstream_url(base: str, path: str, query: str) -> str:
    """Join an upstream base URL (which may carry a path prefix) with a request path."""
    parts = urlsplit(base)
    prefix = parts.path.rstrip("/")
    url = f"{parts.scheme}://{parts.netloc}{prefix}{path}"
    return f"{url}?{query}" if query else url


_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
}
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}


def error_body(provider: Provider, status: int, message: str, code: str) -> bytes:
    """Render an error in the provider's JSON error format.

    ``code`` is a short machine-readable reason such as ``rate_limited``; OpenAI
    clients read it from ``error.code``, and Anthropic's format has no such field,
    so it goes into the message there.
    """
    if provider is Provider.ANTHROPIC:
        error_type = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        document: dict[str, object] = {
            "type": "error",
            "error": {"type": error_type, "message": f"{message} ({code})"},
        }
    else:
        error_type = _OPENAI_ERROR_TYPES.get(status, "server_error")
        document = {
            "error": {
                "message": message,
                "type": error_type,
                "param": None,
                "code": code,
            }
        }
    return json.dumps(document).encode()
