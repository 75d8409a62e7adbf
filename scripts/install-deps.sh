#!/usr/bin/env bash
# Install every system and Python dependency aibox needs on Debian 12, as root.
# Safe to run again: each step checks what is already there, and the Go build
# cache under /var/cache/aibox keeps rebuilds of OPA and CoreDNS fast.
set -euo pipefail

OPA_VERSION=v1.22.4
COREDNS_VERSION=v1.12.4
VENV=/opt/aibox/venv
TOOLS_BIN=/opt/aibox/bin
CACHE=/var/cache/aibox
here=$(cd "$(dirname "$0")/.." && pwd)

log() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "Error: install-deps.sh must run as root (it installs Debian packages)" >&2
    exit 2
fi

export DEBIAN_FRONTEND=noninteractive
mkdir -p "$CACHE" "$TOOLS_BIN"

# runsc in Debian 12 is too old for coreutils' statx use; the backports
# suite of the same archive has a working build.
sources=/etc/apt/sources.list.d/debian.sources
backports=/etc/apt/sources.list.d/aibox-backports.sources
if [ ! -f "$backports" ]; then
    log "adding the bookworm-backports suite"
    uri=$(awk '/^URIs:/ {print $2; exit}' "$sources" 2>/dev/null || true)
    uri=${uri:-http://deb.debian.org/debian}
    cat > "$backports" <<SRC
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    rm -f "$CACHE/apt-updated"
fi

packages=(podman runc netavark aardvark-dns slirp4netns uidmap fuse-overlayfs
    squid nftables iptables mmdebstrap iproute2 git curl ca-certificates dnsutils
    python3 python3-venv python3-dev apparmor acl procps psmisc sudo
    gnome-keyring dbus-x11 libsecret-tools openssl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ! dpkg-query -W -f='${Version}' runsc 2>/dev/null | grep -q '^0.0~20240729\|^20240\|^0.0~2024\|^0.0~2025'; then
    missing+=(runsc)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ ! -f "$CACHE/apt-updated" ]; then
        log "apt-get update"
        apt-get update -qq
        touch "$CACHE/apt-updated"
    fi
    log "installing Debian packages: ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]/runsc/}" >/dev/null
    apt-get install -y -qq --no-install-recommends -t bookworm-backports runsc >/dev/null
fi

# Go programs, pinned and built once into /opt/aibox/bin.
export GOPATH="$CACHE/go" GOCACHE="$CACHE/go-build" GOFLAGS=-mod=mod
build_go_tool() {
    local name=$1 module=$2 version=$3
    local stamp="$TOOLS_BIN/.$name-$version"
    if [ -x "$TOOLS_BIN/$name" ] && [ -f "$stamp" ]; then
        return
    fi
    log "building $name $version with go install (minutes on 2 cores, cached afterwards)"
    GOBIN="$TOOLS_BIN" go install "$module@$version"
    rm -f "$TOOLS_BIN"/."$name"-*
    touch "$stamp"
}
build_go_tool opa github.com/open-policy-agent/opa "$OPA_VERSION"
build_go_tool coredns github.com/coredns/coredns "$COREDNS_VERSION"
for tool in opa coredns; do
    ln -sf "$TOOLS_BIN/$tool" "/usr/local/bin/$tool"
done

# Python: one virtual environment outside /root so unprivileged sandbox users
# can run the CLI too.
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    mkdir -p "$(dirname "$VENV")"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
log "installing aibox and its Python dependencies into $VENV"
if [ "${AIBOX_EDITABLE:-0}" = 1 ]; then
    # For development: the venv then runs the checkout directly, which must stay
    # readable by the unprivileged users that the tests create.
    "$VENV/bin/pip" install -q -e "$here[dev]"
else
    # A regular install keeps the venv independent of where the checkout lives
    # (a clone under /root is unreadable to other users). Reinstall the package
    # itself every time so the tests always import the current source.
    "$VENV/bin/pip" install -q "$here[dev]"
    "$VENV/bin/pip" install -q --no-deps --force-reinstall "$here"
fi
for exe in aibox aibox-credential-helper aibox-llm-proxy bao; do
    if [ -x "$VENV/bin/$exe" ]; then
        ln -sf "$VENV/bin/$exe" "/usr/local/bin/$exe"
    fi
done
chmod -R a+rX /opt/aibox
log "dependencies installed"
