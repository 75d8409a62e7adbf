"""The git-credential wire format: parse a request, format a response.

Git sends ``key=value`` lines and ends the request with a blank line or end of
input. Keys ending in ``[]`` (``wwwauth[]``, ``capability[]``) may repeat, and an
empty value resets the list. A ``url`` attribute stands for its parts: protocol,
host (with port) and path. Neither keys nor values may contain NUL or a newline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from aibox.credentials.errors import ProtocolError

MAX_REQUEST_BYTES = 64 * 1024


@dataclass
class CredentialRequest:
    """The attributes of one git-credential request."""

    attributes: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.attributes.get(key)

    @property
    def protocol(self) -> str:
        return self.attributes.get("protocol", "").lower()

    @property
    def host(self) -> str:
        return self.attributes.get("host", "")


def _apply_url(request: CredentialRequest, url: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ProtocolError(
            "invalid url attribute in credential input",
            hint="Send a URL such as https://git.internal/team/repo.git.",
        ) from None
    if not parts.scheme:
        raise ProtocolError(
            "url attribute in credential input has no scheme",
            hint="Send a URL such as https://git.internal/team/repo.git.",
        )
    request.attributes["protocol"] = parts.scheme
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    request.attributes["host"] = f"{host}:{port}" if port is not None else host
    if parts.username is not None:
        request.attributes["username"] = unquote(parts.username)
    if parts.path.lstrip("/"):
        request.attributes["path"] = unquote(parts.path.lstrip("/"))


def parse_request(data: bytes) -> CredentialRequest:
    """Parse git-credential input; raise ProtocolError on malformed input.

    Error messages name the line number, never the line, because a line may hold
    a password.
    """
    if len(data) > MAX_REQUEST_BYTES:
        raise ProtocolError(
            f"credential input is larger than {MAX_REQUEST_BYTES} bytes",
            hint="Send only the attributes git documents.",
        )
    if b"\0" in data:
        raise ProtocolError(
            "credential input contains a NUL byte",
            hint="Send text lines of the form key=value.",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(
            "credential input is not valid UTF-8",
            hint="Send text lines of the form key=value.",
        ) from None
    request = CredentialRequest()
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line == "":
            break
        key, separator, value = line.partition("=")
        if not separator or not key:
            raise ProtocolError(
                f"malformed credential input on line {number}: expected key=value",
                hint="Send lines of the form key=value, ending with a blank line.",
            )
        if "\r" in key or "\r" in value:
            raise ProtocolError(
                f"malformed credential input on line {number}: carriage return",
                hint="Send lines of the form key=value, ending with a blank line.",
            )
        if key.endswith("[]"):
            if value:
                request.lists.setdefault(key, []).append(value)
            else:
                request.lists[key] = []
        elif key == "url":
            _apply_url(request, value)
        else:
            request.attributes[key] = value
    return request


def format_response(attributes: dict[str, str]) -> bytes:
    """Render ``key=value`` lines; a value with a newline or NUL is a bug upstream."""
    lines = []
    for key, value in attributes.items():
        for character in ("\n", "\0", "\r"):
            if character in key or character in value or "=" in key:
                raise ProtocolError(
                    f"credential attribute {key!r} cannot be sent: invalid character",
                    hint="Store the credential again without control characters.",
                )
        lines.append(f"{key}={value}\n")
    return "".join(lines).encode("utf-8")
