"""The ``aibox-llm-proxy`` server: the only module of the proxy that does socket I/O.

Each request is routed, checked, rate-limited and forwarded with the injected key
and the sandbox identity; the response is passed back (event by event for
streams) and the exchange goes to the payload log. Decisions live in the pure
modules next to this one: ``routes``, ``headers``, ``limits``, ``usage``, ``sse``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import uvloop
from aiohttp import web

from aibox.errors import AiboxError
from aibox.llm_proxy import keys, limits, routes, settings, usage
from aibox.llm_proxy.headers import (
    client_response_headers,
    scrub_secret,
    upstream_request_headers,
)
from aibox.llm_proxy.payload_log import BodyCapture, Exchange, PayloadLog
from aibox.llm_proxy.routes import Provider, Route
from aibox.llm_proxy.sse import SSEEvent, SSEParser

log = logging.getLogger("aibox.llm_proxy")

_READ_CHUNK = 64 * 1024
_GIL_SWITCH_INTERVAL_SECONDS = 0.0005


class ExchangeFailed(Exception):
    """Ends an exchange early with an error response in the provider's format."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.close = close


class LLMProxy:
    """The proxy's state: settings, key, limits, upstream session and payload log."""

    def __init__(
        self,
        config: settings.ProxySettings,
        key_store: keys.KeyStore,
        clock: limits.Clock = time.monotonic,
    ) -> None:
        self.settings = config
        self.key_store = key_store
        self.limiter = limits.RateLimiter(
            config.requests_per_min, config.tokens_per_min, clock
        )
        self.payload_log = PayloadLog(config.payload_log, config.payload_body_max_bytes)
        self.session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle --------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.settings.upstream_ca_file:
            context.load_verify_locations(cafile=self.settings.upstream_ca_file)
        return context

    async def _on_startup(self, app: web.Application) -> None:
        self.payload_log.open()
        connector = aiohttp.TCPConnector(
            ssl=self._ssl_context(), limit=0, enable_cleanup_closed=True
        )
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.settings.connect_timeout,
            sock_read=self.settings.read_timeout,
        )
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=False, auto_decompress=True
        )
        poller = asyncio.create_task(self._poll_key(), name="llm-proxy-key-poll")
        self._tasks.add(poller)

    async def _on_cleanup(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.session is not None:
            await self.session.close()
        await asyncio.to_thread(self.payload_log.close)

    async def _poll_key(self) -> None:
        while True:
            await asyncio.sleep(self.settings.key_poll_seconds)
            await asyncio.to_thread(self.key_store.reload_if_changed)

    def reload_key(self, reason: str) -> None:
        """Reload the key off the event loop, for SIGHUP."""
        task = asyncio.create_task(
            asyncio.to_thread(self.key_store.reload, reason),
            name="llm-proxy-key-reload",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- request handling -------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/healthz":
            return web.json_response({"status": "ok"})

        exchange = Exchange(
            request_id=uuid.uuid4().hex,
            sandbox_id=self.settings.sandbox_id,
            user=self.settings.user,
            method=request.method,
            path=request.path,
            started=time.time(),
            started_monotonic=time.monotonic(),
        )
        provider = routes.guess_provider(request.path, request.headers)
        response: web.StreamResponse | None = None
        try:
            route = routes.resolve_route(request.method, request.path, request.headers)
            provider = route.provider
            exchange.provider = provider.value
            response = await self._exchange(request, route, exchange)
        except routes.RouteError as exc:
            exchange.provider = exc.provider.value
            exchange.error = "no_route" if exc.status == 404 else "method_not_allowed"
            response = self._error_response(
                exc.provider,
                exchange,
                ExchangeFailed(exc.status, exchange.error, exc.message),
            )
        except ExchangeFailed as exc:
            exchange.error = exc.code
            response = self._error_response(provider, exchange, exc)
        except asyncio.CancelledError:
            exchange.error = exchange.error or "client_disconnected"
            exchange.status = exchange.status or 499
            raise
        finally:
            self._finish(exchange)
        return response

    def _finish(self, exchange: Exchange) -> None:
        exchange.latency_seconds = time.monotonic() - exchange.started_monotonic
        self.payload_log.submit(exchange)
        level = logging.INFO if exchange.error is None else logging.WARNING
        log.log(
            level,
            "request_id=%s sandbox=%s %s %s model=%s status=%s error=%s "
            "latency_ms=%.1f",
            exchange.request_id,
            exchange.sandbox_id,
            exchange.method,
            exchange.path,
            exchange.model,
            exchange.status,
            exchange.error,
            exchange.latency_seconds * 1000,
        )

    def _error_response(
        self, provider: Provider, exchange: Exchange, failure: ExchangeFailed
    ) -> web.Response:
        exchange.status = failure.status
        body = routes.error_body(
            provider, failure.status, failure.message, failure.code
        )
        exchange.response = BodyCapture(self.settings.payload_body_max_bytes)
        exchange.response.add(body)
        response = web.Response(
            status=failure.status,
            body=body,
            content_type="application/json",
            headers={"X-AIBox-Request-ID": exchange.request_id, **failure.headers},
        )
        if failure.close:
            response.force_close()
        return response

    async def _read_body(self, request: web.Request, exchange: Exchange) -> bytes:
        """Read the request body, returning 413 as soon as it passes the limit."""
        limit = self.settings.max_request_bytes
        too_large = ExchangeFailed(
            413,
            "request_too_large",
            f"request body exceeds the limit of {limit} bytes",
            close=True,
        )
        if request.content_length is not None and request.content_length > limit:
            exchange.request = BodyCapture(0)
            exchange.request.size = request.content_length
            raise too_large

        capture = BodyCapture(self.settings.payload_body_max_bytes)
        exchange.request = capture
        chunks: list[bytes] = []
        while True:
            chunk = await request.content.readany()
            if not chunk:
                break
            capture.add(chunk)
            if capture.size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    def _check_body(
        self, route: Route, body: bytes, exchange: Exchange
    ) -> dict[str, Any]:
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ExchangeFailed(
                400, "invalid_json", f"request body is not valid JSON: {exc}"
            ) from None
        if not isinstance(document, dict):
            raise ExchangeFailed(
                400, "invalid_body", "request body must be a JSON object"
            )

        model = document.get("model")
        if isinstance(model, str) and model:
            exchange.model = model
        elif route.needs_model:
            raise ExchangeFailed(
                400, "missing_model", "request body has no 'model' string"
            )
        exchange.stream = document.get("stream") is True
        return document

    def _reserve(
        self, route: Route, document: dict[str, Any], size: int
    ) -> limits.Reservation:
        if route.kind in (routes.RouteKind.GENERATE, routes.RouteKind.EMBED):
            generates = route.kind is routes.RouteKind.GENERATE
            estimate = limits.estimate_tokens(document, size, generates)
        else:
            estimate = 0
        verdict = self.limiter.reserve(estimate)
        if isinstance(verdict, limits.Rejection):
            raise ExchangeFailed(
                429,
                "rate_limited",
                f"{verdict.limit} limit reached; retry in {verdict.retry_after} s",
                headers={"Retry-After": str(verdict.retry_after)},
            )
        return verdict

    async def _exchange(
        self, request: web.Request, route: Route, exchange: Exchange
    ) -> web.StreamResponse:
        body = b""
        document: dict[str, Any] = {}
        if route.method == "POST":
            body = await self._read_body(request, exchange)
            document = self._check_body(route, body, exchange)
        reservation = self._reserve(route, document, len(body))

        used_tokens: int | None = None
        try:
            response = await self._forward(request, route, body, exchange)
            used_tokens = usage.total_tokens(route.provider, exchange.usage)
        finally:
            self.limiter.settle(reservation, used_tokens)
        return response

    async def _forward(
        self, request: web.Request, route: Route, body: bytes, exchange: Exchange
    ) -> web.StreamResponse:
        assert self.session is not None
        key = self.key_store.key.reveal()
        base = (
            self.settings.anthropic_upstream
            if route.provider is Provider.ANTHROPIC
            else self.settings.openai_upstream
        )
        url = routes.upstream_url(base, request.path, request.query_string)
        headers = upstream_request_headers(
            request.headers.items(),
            route.provider,
            key,
            self.settings.sandbox_id,
            self.settings.user,
        )
        try:
            upstream = await self.session.request(
                route.method,
                url,
                data=body if route.method == "POST" else None,
                headers=headers,
                proxy=self.settings.upstream_proxy,
                allow_redirects=False,
            )
        except TimeoutError:
            raise ExchangeFailed(
                504, "upstream_timeout", "upstream timed out"
            ) from None
        except aiohttp.ClientError as exc:
            code = _upstream_failure_code(exc)
            log.warning(
                "request_id=%s upstream %s failed: %s",
                exchange.request_id,
                url,
                _describe(exc),
            )
            raise ExchangeFailed(
                502, code, f"upstream request failed: {_describe(exc)}"
            ) from None

        try:
            content_type = upstream.headers.get("Content-Type", "")
            if content_type.startswith("text/event-stream"):
                return await self._relay_stream(request, route, upstream, exchange, key)
            return await self._relay_body(route, upstream, exchange, key)
        finally:
            upstream.close()

    async def _relay_body(
        self,
        route: Route,
        upstream: aiohttp.ClientResponse,
        exchange: Exchange,
        key: str,
    ) -> web.Response:
        try:
            data = await _read_limited(upstream, self.settings.max_response_bytes)
        except TimeoutError:
            raise ExchangeFailed(
                504, "upstream_timeout", "upstream timed out"
            ) from None
        except aiohttp.ClientError as exc:
            raise ExchangeFailed(
                502, "upstream_reset", f"upstream response failed: {_describe(exc)}"
            ) from None
        data = scrub_secret(data, key)
        exchange.status = upstream.status
        exchange.ttfb_seconds = time.monotonic() - exchange.started_monotonic
        exchange.response = BodyCapture(self.settings.payload_body_max_bytes)
        exchange.response.add(data)
        if upstream.status >= 400:
            exchange.error = f"upstream_status_{upstream.status}"
        with contextlib.suppress(ValueError):
            exchange.usage = usage.usage_from_body(json.loads(data))

        headers = _response_headers(upstream, key)
        headers.append(("X-AIBox-Request-ID", exchange.request_id))
        return web.Response(status=upstream.status, body=data, headers=headers)

    async def _relay_stream(
        self,
        request: web.Request,
        route: Route,
        upstream: aiohttp.ClientResponse,
        exchange: Exchange,
        key: str,
    ) -> web.StreamResponse:
        exchange.stream = True
        exchange.status = upstream.status
        capture = BodyCapture(0)
        exchange.response = capture
        assembler = usage.StreamAssembler(
            route.provider, self.settings.payload_body_max_bytes
        )
        parser = SSEParser(self.settings.max_event_bytes)

        response = web.StreamResponse(status=upstream.status)
        for name, value in _response_headers(upstream, key):
            response.headers.add(name, value)
        response.headers["X-AIBox-Request-ID"] = exchange.request_id
        await response.prepare(request)

        async def send(data: bytes) -> None:
            if exchange.ttfb_seconds is None:
                exchange.ttfb_seconds = time.monotonic() - exchange.started_monotonic
            capture.add(data)
            try:
                await asyncio.wait_for(
                    response.write(data), self.settings.client_write_timeout
                )
            except TimeoutError:
                raise _ClientStalled from None
            except ConnectionResetError:
                raise _ClientGone from None

        try:
            await self._pump_events(
                upstream, parser, assembler, send, route.provider, exchange, key
            )
        except _ClientStalled:
            exchange.error = "client_write_timeout"
            log.warning(
                "request_id=%s client stopped reading for %.0f s; stream cut",
                exchange.request_id,
                self.settings.client_write_timeout,
            )
            _abort(request)
        except _ClientGone:
            exchange.error = "client_disconnected"
        finally:
            exchange.usage = assembler.usage
            exchange.reassembled = assembler.content()
            exchange.reassembled_truncated = assembler.truncated
            exchange.events = assembler.events

        if exchange.error not in ("client_write_timeout", "client_disconnected"):
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
        return response

    async def _pump_events(
        self,
        upstream: aiohttp.ClientResponse,
        parser: SSEParser,
        assembler: usage.StreamAssembler,
        send: Callable[[bytes], Any],
        provider: Provider,
        exchange: Exchange,
        key: str,
    ) -> None:
        """Copy upstream events to the client one whole event at a time."""
        try:
            async for chunk in upstream.content.iter_any():
                for event in parser.feed(chunk):
                    if not _accept_event(event, assembler):
                        exchange.error = "malformed_event"
                        await send(
                            _error_event(provider, "upstream sent a malformed event")
                        )
                        return
                    await send(scrub_secret(event.raw, key))
        except ValueError as exc:  # an event larger than max_event_bytes
            exchange.error = "event_too_large"
            await send(_error_event(provider, str(exc)))
            return
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            exchange.error = "upstream_reset"
            log.warning(
                "request_id=%s upstream stream failed: %s",
                exchange.request_id,
                _describe(exc),
            )
            await send(
                _error_event(provider, "upstream connection was reset mid-stream")
            )
            return
        except TimeoutError:
            exchange.error = "upstream_timeout"
            await send(_error_event(provider, "upstream stopped sending events"))
            return

        if parser.pending.strip():
            await send(scrub_secret(parser.pending, key))


class _ClientStalled(Exception):
    """The client did not take a write within ``client_write_timeout``."""


class _ClientGone(Exception):
    """The client closed its connection mid-stream."""


def _accept_event(event: SSEEvent, assembler: usage.StreamAssembler) -> bool:
    """Feed an event to the assembler; return False when its data is not JSON."""
    if event.data is None or event.data.strip() == "[DONE]":
        return True
    try:
        data = usage.decode_event_data(event.data)
    except ValueError:
        return False
    assembler.feed(event.event, data)
    return True


def _error_event(provider: Provider, message: str) -> bytes:
    """Render an in-stream error event that the provider's SDK raises as an error."""
    if provider is Provider.ANTHROPIC:
        data = {"type": "error", "error": {"type": "api_error", "message": message}}
        return f"event: error\ndata: {json.dumps(data)}\n\n".encode()
    data = {
        "error": {"message": message, "type": "server_error", "code": "upstream_error"}
    }
    return f"data: {json.dumps(data)}\n\n".encode()


def _response_headers(
    upstream: aiohttp.ClientResponse, key: str
) -> list[tuple[str, str]]:
    pairs = client_response_headers(upstream.headers.items())
    return [(name, scrub_secret(value.encode(), key).decode()) for name, value in pairs]


async def _read_limited(upstream: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in upstream.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ExchangeFailed(
                502,
                "upstream_response_too_large",
                f"upstream response exceeds {limit} bytes",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _upstream_failure_code(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return "egress_proxy_unreachable"
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return "egress_proxy_rejected"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "upstream_unreachable"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return "upstream_reset"
    return "upstream_failed"


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _describe(exc: BaseException) -> str:
    """Describe an aiohttp error by type and message (which carry no headers)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- process entry ---------------------------------------------------------------


async def start_server(proxy: LLMProxy) -> tuple[web.AppRunner, int]:
    """Start serving on the configured address; return the runner and the bound port."""
    runner = web.AppRunner(
        proxy.build_app(), handler_cancellation=True, access_log=None
    )
    await runner.setup()
    site = web.TCPSite(runner, proxy.settings.host, proxy.settings.port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    port = runner.addresses[0][1] if runner.addresses else proxy.settings.port
    return runner, port


async def serve(proxy: LLMProxy) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads the key."""
    runner, port = await start_server(proxy)
    log.info(
        "listening on %s:%d for sandbox %s; key from %s",
        proxy.settings.host,
        port,
        proxy.settings.sandbox_id,
        proxy.key_store.source.description,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, proxy.reload_key, "SIGHUP")
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``aibox-llm-proxy``; returns the exit code."""
    try:
        config, arguments = settings.parse_arguments(argv)
        logging.basicConfig(
            level=arguments.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        if not settings.is_loopback(config.host):
            log.warning(
                "listening on %s, which is not a loopback address; anything that can "
                "reach it can spend the key",
                config.host,
            )
        source = keys.key_source_from_options(
            arguments.key_file,
            arguments.vault_addr,
            arguments.vault_token_file,
            arguments.vault_mount,
            arguments.vault_path,
            arguments.vault_field,
        )
        proxy = LLMProxy(config, keys.KeyStore(source))
        # The payload log writer thread competes for the GIL; a shorter switch
        # interval than the 5 ms default bounds how long it can hold up a response.
        sys.setswitchinterval(_GIL_SWITCH_INTERVAL_SECONDS)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(proxy))
    except AiboxError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(exc.hint, file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(
            f"Error: cannot start the LLM proxy: {exc.strerror or exc}", file=sys.stderr
        )
        print(
            "Check that the listen address is free and the log directory is writable.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
