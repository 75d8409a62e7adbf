"""Building the sandbox image from Debian packages, without a registry.

``mmdebstrap`` builds a minimal root filesystem from the host's own apt sources into
a tarball cached under ``/var/cache/aibox/images`` (root only). ``podman import``
turns the tarball into an image in the caller's storage, so an unprivileged user can
import the cached tarball into rootless storage without running mmdebstrap. Image
and tarball carry a hash of the recipe below and are reused while it matches.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aibox.errors import AiboxError, ExternalToolError
from aibox.sandbox.podman import Podman
from aibox.sandbox.workspace import CACHE_MOUNTS

IMAGE_REPOSITORY = "localhost/aibox-sandbox"
DEFAULT_IMAGE = f"{IMAGE_REPOSITORY}:latest"
RECIPE_LABEL = "io.aibox.image-recipe"
SUITE = "bookworm"
SOURCES_FILE = Path("/etc/apt/sources.list.d/debian.sources")
CREDENTIAL_HELPER = "/opt/aibox/venv/bin/aibox-credential-helper"
HOOKS_DIR = "/etc/aibox/git-hooks"
PRE_COMMIT_HOOK = (
    Path(__file__).resolve().parents[1] / "data" / "git-hooks" / "pre-commit"
).read_text()

# python3 is Debian 12's 3.11: the host virtual environment at /opt/aibox/venv,
# mounted read-only into the sandbox, runs on it through its python symlink.
PACKAGES = (
    "bash",
    "coreutils",
    "git",
    "curl",
    "ca-certificates",
    "dnsutils",
    "iproute2",
    "procps",
    "python3",
)

_HOME_DIRECTORIES = sorted({"/home/dev", *CACHE_MOUNTS.values()})

CUSTOMIZE_SCRIPT = f"""#!/bin/sh
# Runs on the finished root filesystem ($1) before mmdebstrap packs it.
set -eu
root=$1
echo 'dev:x:1000:1000:aibox developer:/home/dev:/bin/bash' >> "$root/etc/passwd"
echo 'llmproxy:x:1001:1001:aibox LLM proxy:/nonexistent:/usr/sbin/nologin' \\
    >> "$root/etc/passwd"
echo 'dev:x:1000:' >> "$root/etc/group"
echo 'llmproxy:x:1001:' >> "$root/etc/group"
echo 'dev:!:19000::::::' >> "$root/etc/shadow"
echo 'llmproxy:!:19000::::::' >> "$root/etc/shadow"
for dir in {" ".join(_HOME_DIRECTORIES)} /workspace /opt/toolpacks; do
    mkdir -p "$root$dir"
    chown 1000:1000 "$root$dir"
done
chown -R 1000:1000 "$root/home/dev"
mkdir -p "$root/opt/aibox/venv"
mkdir -p "$root{HOOKS_DIR}"
cat > "$root{HOOKS_DIR}/pre-commit" <<'HOOK'
{PRE_COMMIT_HOOK}HOOK
chmod 0755 "$root{HOOKS_DIR}/pre-commit"
cat > "$root/etc/gitconfig" <<'GIT'
[credential]
\thelper = {CREDENTIAL_HELPER}
[core]
\thooksPath = {HOOKS_DIR}
[safe]
\tdirectory = /workspace
GIT
find "$root" -xdev -type f -perm /6000 -exec chmod ug-s {{}} +
"""

IMAGE_CHANGES = (
    "USER 1000:1000",
    "WORKDIR /workspace",
    "ENV HOME=/home/dev",
    "ENV USER=dev",
    "ENV LANG=C.UTF-8",
    "ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin:/opt/aibox/venv/bin",
    'CMD ["sleep", "infinity"]',
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImageStatus:
    """The presence and freshness of the sandbox image for the current recipe."""

    image: str
    present: bool
    recipe: str
    current: bool
    cached_rootfs: Path | None


def recipe_hash() -> str:
    """Return a short hash of everything that goes into the image."""
    recipe = "\n".join([SUITE, *PACKAGES, CUSTOMIZE_SCRIPT, *IMAGE_CHANGES])
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def cache_dir() -> Path:
    return Path(os.environ.get("AIBOX_IMAGE_CACHE", "/var/cache/aibox/images"))


def cached_rootfs_path(recipe: str | None = None) -> Path:
    return cache_dir() / f"aibox-rootfs-{recipe or recipe_hash()}.tar"


def image_status(podman: Podman, image: str = DEFAULT_IMAGE) -> ImageStatus:
    recipe = recipe_hash()
    data = podman.inspect_image(image)
    labels = ((data or {}).get("Config") or {}).get("Labels") or {}
    cached = cached_rootfs_path(recipe)
    return ImageStatus(
        image=image,
        present=data is not None,
        recipe=recipe,
        current=labels.get(RECIPE_LABEL) == recipe,
        cached_rootfs=cached if cached.is_file() else None,
    )


def find_setuid_members(tarball: Path) -> list[str]:
    """Return the tarball members that still carry a setuid or setgid bit."""
    with tarfile.open(tarball) as archive:
        return [
            member.name
            for member in archive
            if member.isfile() and member.mode & 0o6000
        ]


def _check_rootfs(tarball: Path) -> None:
    leftover = find_setuid_members(tarball)
    if leftover:
        raise AiboxError(
            f"image root filesystem still has setuid or setgid files: "
            f"{', '.join(leftover[:5])}",
            hint="Delete the cached tarball and rebuild with 'aibox image build'.",
        )
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    if not names & {"./usr/bin/python3.11", "usr/bin/python3.11"}:
        raise AiboxError(
            f"image root filesystem {tarball} has no /usr/bin/python3.11",
            hint="The in-sandbox tools need Debian 12's python3; rebuild the image.",
        )


def build_rootfs(progress: Progress, sources: Path = SOURCES_FILE) -> Path:
    """Build the root filesystem tarball with mmdebstrap (root only), or reuse it."""
    target = cached_rootfs_path()
    if target.is_file():
        progress(f"reusing cached root filesystem {target}")
        return target
    if os.geteuid() != 0:
        raise AiboxError(
            f"no cached root filesystem at {target}, and building one needs root",
            hint="Run 'sudo aibox setup --system' once on this machine.",
        )
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ExternalToolError(
            "mmdebstrap not found",
            hint="Install it with 'bash scripts/install-deps.sh' (as root).",
        )
    if not sources.is_file():
        raise AiboxError(
            f"apt sources file not found: {sources}",
            hint="The image is built from the host's Debian 12 deb822 sources file.",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o755)
    with tempfile.TemporaryDirectory(prefix="aibox-image-") as scratch:
        script = Path(scratch) / "customize.sh"
        script.write_text(CUSTOMIZE_SCRIPT)
        partial = Path(scratch) / "rootfs.tar"
        command = [
            mmdebstrap,
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            f'--customize-hook=sh {script} "$1"',
            SUITE,
            str(partial),
            str(sources),
        ]
        _run_streaming(command, progress)
        progress("checking for setuid and setgid files")
        _check_rootfs(partial)
        partial.chmod(0o644)
        shutil.move(str(partial), target)
    return target


def _run_streaming(command: list[str], progress: Progress) -> None:
    lines: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if line.startswith("I: "):
                progress(line[3:].strip())
        status = process.wait(timeout=1800)
    if status != 0:
        tail = " / ".join(lines[-3:])
        raise ExternalToolError(
            f"'{command[0]} ... {command[-2]}' failed with exit code {status}: {tail}",
            hint="Check that the apt sources in the last argument are reachable.",
        )


def import_image(podman: Podman, tarball: Path, progress: Progress) -> str:
    """Import ``tarball`` as the sandbox image tagged with the recipe hash."""
    recipe = recipe_hash()
    tagged = f"{IMAGE_REPOSITORY}:{recipe}"
    progress(f"importing {tarball.name} as {tagged}")
    args = ["import"]
    for change in (*IMAGE_CHANGES, f"LABEL {RECIPE_LABEL}={recipe}"):
        args += ["--change", change]
    podman.run([*args, str(tarball), tagged], timeout=600)
    podman.run(["tag", tagged, DEFAULT_IMAGE], timeout=60)
    return tagged


def ensure_image(podman: Podman, image: str, progress: Progress) -> ImageStatus:
    """Make ``image`` available: reuse it, import the cached tarball, or build it.

    Only the default image is built by aibox; any other name must already exist.
    """
    status = image_status(podman, image)
    if image != DEFAULT_IMAGE:
        if not status.present:
            raise AiboxError(
                f"image not found: {image}",
                hint=f"Pull or build it, or set 'image: {DEFAULT_IMAGE}' in config.",
            )
        return status
    if status.present and status.current:
        progress(f"image {image} is up to date (recipe {status.recipe})")
        return status
    tarball = build_rootfs(progress)
    import_image(podman, tarball, progress)
    return image_status(podman, image)
