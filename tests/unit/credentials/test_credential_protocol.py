import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aibox.credentials.errors import ProtocolError
from aibox.credentials.hosts import host_allowed
from aibox.credentials.protocol import format_response, parse_request


def test_parse_documented_attributes() -> None:
    request = parse_request(
        b"protocol=https\nhost=git.internal:8443\npath=team/repo.git\n"
        b'username=dev\nwwwauth[]=Basic realm="git"\nwwwauth[]=Bearer\n'
        b"capability[]=authtype\n\nignored=after-blank\n"
    )
    assert request.protocol == "https"
    assert request.host == "git.internal:8443"
    assert request.get("path") == "team/repo.git"
    assert request.get("username") == "dev"
    assert request.lists["wwwauth[]"] == ['Basic realm="git"', "Bearer"]
    assert request.lists["capability[]"] == ["authtype"]
    assert request.get("ignored") is None


def test_parse_until_end_of_input_and_crlf() -> None:
    request = parse_request(b"protocol=https\r\nhost=a.internal")
    assert request.host == "a.internal"
    assert request.protocol == "https"


def test_empty_list_value_resets() -> None:
    request = parse_request(b"wwwauth[]=Basic\nwwwauth[]=\nwwwauth[]=Bearer\n")
    assert request.lists["wwwauth[]"] == ["Bearer"]


def test_url_attribute_expands() -> None:
    request = parse_request(b"url=https://dev@git.internal:8443/team/repo.git\n\n")
    assert request.protocol == "https"
    assert request.host == "git.internal:8443"
    assert request.get("path") == "team/repo.git"
    assert request.get("username") == "dev"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"no-equals-sign\n", "line 1: expected key=value"),  # missing separator
        (b"protocol=https\n=value\n", "line 2"),  # empty key
        (b"host=a\0b\n", "NUL byte"),  # NUL
        (b"host=\xff\n", "not valid UTF-8"),  # bad encoding
        (b"host=a\rb\n", "carriage return"),  # stray CR
        (b"url=no-scheme\n", "no scheme"),  # url without scheme
        (b"url=https://h:99999/\n", "invalid url"),  # port out of range
        (b"x=" + b"a" * 70000, "larger than"),  # too large
    ],
)
def test_malformed_input_raises(data: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        parse_request(data)


def test_malformed_line_message_hides_content() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_request(b"protocol=https\nsupersecretline\n")
    assert "supersecretline" not in caught.value.message


def test_format_response() -> None:
    assert format_response({"username": "u", "password": "p=q"}) == (
        b"username=u\npassword=p=q\n"
    )
    with pytest.raises(ProtocolError):
        format_response({"password": "a\nb"})


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("git.internal", ["git.internal"], True),  # exact
        ("GIT.internal", ["git.internal"], True),  # case-insensitive
        ("git.internal:8443", ["git.internal"], True),  # any port
        ("git.internal:8443", ["git.internal:8443"], True),  # exact port
        ("git.internal:443", ["git.internal:8443"], False),  # other port
        ("git.internal", ["git.internal:8443"], False),  # port required
        ("evil.git.internal", ["git.internal"], False),  # no implicit subdomain
        ("git.internal.evil.com", ["git.internal"], False),  # suffix trick
        ("a.internal", [".internal"], True),  # dot: subdomain
        ("internal", [".internal"], True),  # dot: domain itself
        ("a.internal", ["*.internal"], True),  # star: subdomain
        ("internal", ["*.internal"], False),  # star: not domain itself
        ("xinternal", [".internal"], False),  # not a label boundary
        ("127.0.0.1:8080", ["127.0.0.1:8080"], True),  # address and port
        ("[::1]:8080", ["[::1]:8080"], True),  # IPv6 literal
        ("git.internal:0", ["git.internal"], False),  # invalid port
        ("git.internal:http", ["git.internal"], False),  # non-numeric port
        ("", [""], False),  # empty
        ("git.internal", [], False),  # empty allowlist
    ],
)
def test_host_allowed(host: str, allowed: list[str], expected: bool) -> None:
    assert host_allowed(host, allowed) is expected


def test_host_without_port_uses_default_port() -> None:
    assert host_allowed("git.internal", ["git.internal:443"], 443)
    assert not host_allowed("git.internal", ["git.internal:443"], 80)
    assert host_allowed("git.internal:443", ["git.internal:443"], 80)


@settings(max_examples=400)
@given(st.binary(max_size=2048))
def test_parse_arbitrary_bytes_never_crashes(data: bytes) -> None:
    try:
        request = parse_request(data)
    except ProtocolError as error:
        assert error.exit_code == 2
        return
    for key, value in request.attributes.items():
        assert "\n" not in key
        assert "\n" not in value
        assert "\0" not in value


_line = st.tuples(
    st.sampled_from(["protocol", "host", "path", "username", "url", "wwwauth[]", "x"]),
    st.text(alphabet=st.characters(blacklist_characters="\n\0\r"), max_size=40),
).map(lambda pair: f"{pair[0]}={pair[1]}")


@settings(max_examples=400)
@given(st.lists(_line, max_size=8))
def test_parsed_host_outside_allowlist_never_matches(lines: list[str]) -> None:
    try:
        request = parse_request("\n".join(lines).encode("utf-8", "surrogatepass"))
    except ProtocolError:
        return
    allowed = ["git.internal", "127.0.0.1:8080"]
    if host_allowed(request.host, allowed):
        name = request.host.lower().rstrip(".")
        assert (
            name in {"git.internal"}
            or name.startswith("git.internal:")
            or (name == "127.0.0.1:8080")
        )
