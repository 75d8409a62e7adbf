"""Real OpenBao dev servers and a smart-HTTP git server on loopback."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import hvac
import pytest

from aibox.config import Config, config_from_mapping

BAO = "/opt/aibox/venv/bin/bao"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed; run scripts/install-deps.sh")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class BaoServer:
    address: str
    root_token: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    clients: list[hvac.Client] = field(default_factory=list)

    def client(self, token: str | None = None) -> hvac.Client:
        """Return a client that ``stop`` closes."""
        client = hvac.Client(url=self.address, token=token or self.root_token)
        self.clients.append(client)
        return client

    def token_valid(self, token: str) -> bool:
        client = hvac.Client(url=self.address, token=self.root_token)
        try:
            client.auth.token.lookup(token)
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
            return False
        finally:
            client.adapter.close()
        return True

    def stop(self) -> None:
        for client in self.clients:
            client.adapter.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def start_bao(home: Path) -> BaoServer:
    binary = BAO if os.path.exists(BAO) else require_tool("bao")
    port = free_port()
    token = "root-" + secrets.token_hex(8)
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "bao.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [
            binary,
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
    )
    server = BaoServer(f"http://127.0.0.1:{port}", token, process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            raise RuntimeError(f"bao exited: {(home / 'bao.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.address}/v1/sys/health", timeout=1):
                return server
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("bao dev server did not become ready in 30 s")


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_bao(tmp_path_factory.mktemp("bao-home"))
    yield server
    server.stop()


@pytest.fixture
def fresh_bao(tmp_path: Path) -> Iterator[BaoServer]:
    """A server of the test's own, for tests that seal or stop it."""
    server = start_bao(tmp_path / "bao-home")
    yield server
    server.stop()


def vault_config(server: BaoServer, tmp_path: Path, **vault: object) -> Config:
    token_file = tmp_path / "host-token"
    token_file.write_text(server.root_token)
    token_file.chmod(0o600)
    settings: dict[str, object] = {
        "address": server.address,
        "token_file": str(token_file),
    }
    settings.update(vault)
    return config_from_mapping(
        {"credentials": {"backend": "vault", "vault": settings}}, "test config"
    )


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An AIBOX_RUN_DIR on disk, so the hand-off mounts its own tmpfs there."""
    directory = tmp_path / "run"
    monkeypatch.setenv("AIBOX_RUN_DIR", str(directory))
    yield directory
    # A failed test may leave a mount behind; remove it so tmp_path can be deleted.
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        mounts = [line.split()[4] for line in handle]
    for mount_point in reversed(mounts):
        if mount_point.startswith(str(directory) + "/"):
            subprocess.run(["umount", mount_point], check=False)


@pytest.fixture
def user() -> str:
    return "dev-" + secrets.token_hex(4)


class GitServer:
    """``git http-backend`` behind Basic auth that accepts only live Vault tokens."""

    def __init__(self, root: Path, bao: BaoServer) -> None:
        self.root = root
        self.bao = bao
        self.accepted: list[str] = []
        self.rejected = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"localhost:{self.port}"

    def url(self, repository: str) -> str:
        return f"http://{self.host}/{repository}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _authorized_user(self) -> str | None:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return None
                try:
                    decoded = base64.b64decode(header[6:]).decode()
                except ValueError:
                    return None
                username, _, password = decoded.partition(":")
                if not password or not server.bao.token_valid(password):
                    return None
                return username or "anonymous"

            def _serve(self) -> None:
                username = self._authorized_user()
                if username is None:
                    server.rejected += 1
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="aibox-test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                server.accepted.append(username)
                self._run_backend(username)

            def _run_backend(self, username: str) -> None:
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                environment = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "REMOTE_USER": username,
                    "REMOTE_ADDR": "127.0.0.1",
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                }
                if self.headers.get("Content-Encoding"):
                    environment["HTTP_CONTENT_ENCODING"] = self.headers[
                        "Content-Encoding"
                    ]
                if self.headers.get("Git-Protocol"):
                    environment["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
                result = subprocess.run(
                    ["git", "http-backend"],
                    input=body,
                    env=environment,
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
                head, _, payload = result.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

        return Handler

    def __enter__(self) -> GitServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def git_server(tmp_path: Path, bao: BaoServer) -> Iterator[GitServer]:
    require_tool("git")
    root = tmp_path / "git-root"
    root.mkdir()
    subprocess.run(
        ["git", "init", "-q", "--bare", "-b", "main", str(root / "repo.git")],
        check=True,
    )
    subprocess.run(
        ["git", "-C", str(root / "repo.git"), "config", "http.receivepack", "true"],
        check=True,
    )
    seed = tmp_path / "seed"
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
    (seed / "README").write_text("seed\n")
    git = [
        "git",
        "-C",
        str(seed),
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
    ]
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "seed"], check=True)
    subprocess.run([*git, "push", "-q", str(root / "repo.git"), "main"], check=True)
    with GitServer(root, bao) as server:
        yield server


TOOLS = ("sh", "cat", "env", "id")


def build_rootfs(target: Path) -> Path:
    """Copy a shell and a few tools with their shared libraries into ``target``."""
    for tool in TOOLS:
        binary = Path(shutil.which(tool) or "")
        libraries = subprocess.run(
            ["ldd", str(binary)], capture_output=True, text=True, check=True
        ).stdout
        needed = [binary]
        for line in libraries.splitlines():
            parts = line.split()
            for part in parts:
                if part.startswith("/"):
                    needed.append(Path(part))
        for source in needed:
            destination = target / source.relative_to("/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.resolve(), destination)
        (target / "bin").mkdir(exist_ok=True)
        link = target / "bin" / tool
        if not link.exists():
            link.symlink_to(binary)
    for directory in ("proc", "sys", "dev", "tmp", "run", "etc"):
        (target / directory).mkdir(exist_ok=True)
    (target / "etc" / "passwd").write_text(
        "root:x:0:0::/root:/bin/sh\ndev:x:1000:1000::/tmp:/bin/sh\n"
        "llmproxy:x:1001:1001::/tmp:/bin/sh\n"
    )
    (target / "etc" / "group").write_text("root:x:0:\ndev:x:1000:\nllmproxy:x:1001:\n")
    (target / "etc" / "mtab").symlink_to("../proc/self/mounts")
    return target


def helper_path() -> str:
    path = (
        shutil.which("aibox-credential-helper")
        or "/opt/aibox/venv/bin/aibox-credential-helper"
    )
    if not os.path.exists(path):
        pytest.skip("aibox-credential-helper is not installed; pip install -e .")
    return path
