#!/usr/bin/env bash
# Build perfsuite's container images on the local engine, with no registry:
#
#   perfsuite/mariadb:bookworm        Debian's MariaDB behind the official mysql image's
#                                      contract (container/mariadb/entry.sh)
#   perfsuite/order-service:latest    the example order service on Debian's python3,
#                                      its Python packages installed from the package index
#
# Root filesystems come from debootstrap (Debian's mirror) and are imported with
# `docker import`. An image is rebuilt only when its inputs change: each carries
# the hash of its inputs in the label perfsuite.inputs, and debootstrap's output
# is cached in $PERFSUITE_IMAGE_CACHE (default /var/cache/perfsuite-images).
# Needs DOCKER_HOST (container/engine.sh start prints it) and root.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DOCKER_HOST:?set DOCKER_HOST (container/engine.sh start prints it)}"
export DOCKER_HOST
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
CACHE=${PERFSUITE_IMAGE_CACHE:-/var/cache/perfsuite-images}
PYTHON=${PYTHON:-python3}
MARIADB_IMAGE=perfsuite/mariadb:bookworm
SERVICE_IMAGE=perfsuite/order-service:latest

need() {
    if ! command -v "$1" > /dev/null 2>&1; then
        echo "images: installing $2" >&2
        apt-get update -q > /dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" \
            > /dev/null
    fi
}

inputs_of() { # the hash of files and strings
    { for x in "$@"; do if [ -f "$x" ]; then cat "$x"; else printf '%s\n' "$x"; fi; done; } |
        sha256sum | cut -c1-16
}

current() { # image hash: is the image there, built from these inputs?
    [ "$(docker image inspect --format '{{ index .Config.Labels "perfsuite.inputs" }}' "$1" \
        2> /dev/null)" = "$2" ]
}

rootfs() { # packages -> a cached tarball of a minbase Debian with them
    local include=$1 key tarball tmp
    key=$(inputs_of "$SUITE" "$MIRROR" "$include")
    tarball=$CACHE/rootfs-$key.tar
    if [ ! -f "$tarball" ]; then
        need debootstrap debootstrap
        mkdir -p "$CACHE"
        tmp=$(mktemp -d)
        echo "images: debootstrap $SUITE with $include" >&2
        debootstrap --variant=minbase --include="$include" "$SUITE" "$tmp" "$MIRROR" > /dev/null
        rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
        tar -C "$tmp" -cf "$tarball.part" .
        rm -rf "$tmp"
        mv "$tarball.part" "$tarball"
    fi
    echo "$tarball"
}

build_mariadb() {
    local hash tarball root
    hash=$(inputs_of container/images.sh container/mariadb/entry.sh)
    if current "$MARIADB_IMAGE" "$hash"; then
        echo "images: $MARIADB_IMAGE is up to date" >&2
        return
    fi
    tarball=$(rootfs mariadb-server)
    root=$(mktemp -d)
    tar -C "$root" -xf "$tarball"
    chmod 0755 "$root"  # it becomes the image's /, and mktemp made it private
    install -m 0755 container/mariadb/entry.sh "$root/entry.sh"
    mkdir -p "$root/docker-entrypoint-initdb.d"
    rm -rf "$root/var/lib/mysql"/*  # initialised by the entry point, per container
    tar -C "$root" -c . | docker import \
        --change 'ENTRYPOINT ["/entry.sh"]' --change 'CMD ["mariadbd"]' --change 'EXPOSE 3306' \
        --change "LABEL perfsuite.inputs=$hash" - "$MARIADB_IMAGE" > /dev/null
    rm -rf "$root"
    echo "images: built $MARIADB_IMAGE" >&2
}

build_service() {
    local hash tarball root packages
    # The example service's own packages: the "example" extra of pyproject.toml.
    packages=$("$PYTHON" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["example"]))')
    hash=$(inputs_of container/images.sh "$packages" examples/__init__.py examples/order_service/*.py)
    if current "$SERVICE_IMAGE" "$hash"; then
        echo "images: $SERVICE_IMAGE is up to date" >&2
        return
    fi
    tarball=$(rootfs python3)
    root=$(mktemp -d)
    tar -C "$root" -xf "$tarball"
    chmod 0755 "$root"
    # The image's python3 is Debian bookworm's 3.11: wheels for it, whatever the host's Python.
    # shellcheck disable=SC2086  # the package list is meant to split
    "$PYTHON" -m pip install -q --no-cache-dir --disable-pip-version-check \
        --python-version 3.11 --only-binary=:all: --target "$root/opt/site" $packages
    mkdir -p "$root/app/examples/order_service"
    cp examples/__init__.py "$root/app/examples/"
    cp examples/order_service/*.py examples/order_service/*.sql "$root/app/examples/order_service/"
    tar -C "$root" -c . | docker import \
        --change 'ENV PYTHONPATH=/opt/site:/app' --change 'WORKDIR /app' \
        --change 'EXPOSE 8000' \
        --change 'CMD ["python3", "-m", "examples.order_service", "--host", "0.0.0.0", "--port", "8000"]' \
        --change "LABEL perfsuite.inputs=$hash" - "$SERVICE_IMAGE" > /dev/null
    rm -rf "$root"
    echo "images: built $SERVICE_IMAGE" >&2
}

build_mariadb
build_service
# Older builds of ours, now untagged: under vfs each is a full copy (~0.4 GB).
docker image prune -f --filter label=perfsuite.inputs > /dev/null
