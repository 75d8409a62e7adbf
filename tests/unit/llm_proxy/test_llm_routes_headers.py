"""Routing, header rules and provider error bodies, without sockets."""

from __future__ import annotations

import json

import pytest

from aibox.llm_proxy.headers import (
    client_response_headers,
    scrub_secret,
    upstream_request_headers,
)
from aibox.llm_proxy.routes import (
    Provider,
    RouteError,
    RouteKind,
    error_body,
    resolve_route,
    upstream_url,
)

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "provider", "kind"),
    [
        ("POST", "/v1/messages", {}, Provider.ANTHROPIC, RouteKind.GENERATE),
        ("POST", "/v1/messages/count_tokens", {}, Provider.ANTHROPIC, RouteKind.COUNT),
        ("GET", "/v1/models", ANTHROPIC_HEADERS, Provider.ANTHROPIC, RouteKind.LIST),
        (
            "GET",
            "/v1/models/claude-x",
            ANTHROPIC_HEADERS,
            Provider.ANTHROPIC,
            RouteKind.LIST,
        ),
        ("GET", "/v1/models", {}, Provider.OPENAI, RouteKind.LIST),
        ("GET", "/v1/models/gpt-4o", {}, Provider.OPENAI, RouteKind.LIST),
        ("POST", "/v1/chat/completions", {}, Provider.OPENAI, RouteKind.GENERATE),
        ("POST", "/v1/responses", {}, Provider.OPENAI, RouteKind.GENERATE),
        ("POST", "/v1/embeddings", {}, Provider.OPENAI, RouteKind.EMBED),
        ("post", "/v1/messages/", {}, Provider.ANTHROPIC, RouteKind.GENERATE),
    ],
)
def test_route_resolves(
    method: str, path: str, headers: dict[str, str], provider: Provider, kind: RouteKind
) -> None:
    route = resolve_route(method, path, headers)

    assert route.provider is provider
    assert route.kind is kind
    assert route.needs_model is (route.method == "POST")


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "provider"),
    [
        ("GET", "/v1/files", {}, 404, Provider.OPENAI),  # not proxied
        ("POST", "/v1/messages/batches", {}, 404, Provider.ANTHROPIC),
        ("GET", "/admin", ANTHROPIC_HEADERS, 404, Provider.ANTHROPIC),
        ("GET", "/v1/messages", {}, 405, Provider.ANTHROPIC),
        ("DELETE", "/v1/models/x", {}, 405, Provider.OPENAI),
        ("GET", "/v1/models/../../etc", {}, 404, Provider.OPENAI),
    ],
)
def test_route_rejects(
    method: str, path: str, headers: dict[str, str], status: int, provider: Provider
) -> None:
    with pytest.raises(RouteError) as caught:
        resolve_route(method, path, headers)

    assert caught.value.status == status
    assert caught.value.provider is provider


@pytest.mark.parametrize(
    ("base", "path", "query", "expected"),
    [
        (
            "https://foundry.internal",
            "/v1/messages",
            "",
            "https://foundry.internal/v1/messages",
        ),
        (
            "https://gw.internal/anthropic/",
            "/v1/models",
            "limit=5",
            "https://gw.internal/anthropic/v1/models?limit=5",
        ),
        (
            "http://127.0.0.1:9000",
            "/v1/embeddings",
            "",
            "http://127.0.0.1:9000/v1/embeddings",
        ),
    ],
)
def test_upstream_url_joins(base: str, path: str, query: str, expected: str) -> None:
    assert upstream_url(base, path, query) == expected


def test_error_body_anthropic_format() -> None:
    document = json.loads(
        error_body(Provider.ANTHROPIC, 429, "slow down", "rate_limited")
    )

    assert document["type"] == "error"
    assert document["error"]["type"] == "rate_limit_error"
    assert "slow down" in document["error"]["message"]


def test_error_body_openai_format() -> None:
    document = json.loads(error_body(Provider.OPENAI, 404, "no route", "no_route"))

    assert document["error"]["message"] == "no route"
    assert document["error"]["code"] == "no_route"
    assert document["error"]["type"] == "invalid_request_error"


CLIENT_HEADERS = [
    ("Host", "127.0.0.1:8443"),
    ("Authorization", "Bearer client"),
    ("x-api-key", "client"),
    ("api-key", "client"),
    ("X-Goog-Api-Key", "client"),
    ("Cookie", "session=client"),
    ("Connection", "keep-alive, X-Private"),
    ("X-Private", "hop"),
    ("Content-Length", "12"),
    ("Content-Type", "application/json"),
    ("anthropic-version", "2023-06-01"),
    ("X-AIBox-User", "spoofed"),
    ("X-AIBox-Sandbox-ID", "spoofed"),
]


@pytest.mark.parametrize(
    ("provider", "key_header", "key_value"),
    [
        (Provider.ANTHROPIC, "x-api-key", "sk-real"),
        (Provider.OPENAI, "Authorization", "Bearer sk-real"),
    ],
)
def test_upstream_headers_replace_credentials(
    provider: Provider, key_header: str, key_value: str
) -> None:
    headers = upstream_request_headers(
        CLIENT_HEADERS, provider, "sk-real", "sbx", "dev"
    )
    names = [name.lower() for name, _ in headers]

    assert (key_header, key_value) in headers
    assert names.count(key_header.lower()) == 1
    assert all("client" not in value for _, value in headers)
    assert "x-private" not in names
    assert "host" not in names
    assert "content-length" not in names
    assert ("Content-Type", "application/json") in headers
    assert ("anthropic-version", "2023-06-01") in headers
    assert ("X-AIBox-Sandbox-ID", "sbx") in headers
    assert ("X-AIBox-User", "dev") in headers
    assert "spoofed" not in [value for _, value in headers]


def test_response_headers_drop_framing() -> None:
    kept = client_response_headers(
        [
            ("Content-Type", "text/event-stream"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Encoding", "gzip"),
            ("Set-Cookie", "gw=1"),
            ("request-id", "req_1"),
        ]
    )

    assert kept == [("Content-Type", "text/event-stream"), ("request-id", "req_1")]


def test_scrub_secret_replaces_every_copy() -> None:
    assert scrub_secret(b"a sk-1 b sk-1", "sk-1") == b"a [redacted] b [redacted]"
    assert scrub_secret(b"clean", "sk-1") == b"clean"
