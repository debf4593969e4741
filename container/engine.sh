#!/usr/bin/env bash
# A Docker engine for one CI run: Debian's docker.io with its own socket and
# folders, so it touches no engine the machine may have.
#
#   container/engine.sh start   install docker.io if missing, start dockerd, print DOCKER_HOST=...
#   container/engine.sh stop    stop it (containers it still runs go with it)
#   container/engine.sh host    print the DOCKER_HOST value
#
# Images live in $PERFSUITE_DOCKER_DATA (default /var/lib/perfsuite-docker) and
# are kept between runs, so container/images.sh can reuse what it built. vfs
# storage and no iptables: what works inside a container without privileges
# for overlayfs or netfilter; ports are published by docker-proxy on loopback.
set -euo pipefail

DATA=${PERFSUITE_DOCKER_DATA:-/var/lib/perfsuite-docker}
RUN=${PERFSUITE_DOCKER_RUN:-/tmp/perfsuite-docker}
SOCKET=$RUN/docker.sock
HOST=unix://$SOCKET
PIDFILE=$RUN/dockerd.pid
LOG=$RUN/dockerd.log

running() { docker -H "$HOST" version > /dev/null 2>&1; }

start() {
    if ! command -v dockerd > /dev/null 2>&1; then
        echo "engine: installing Debian's docker.io" >&2
        apt-get update -q > /dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            docker.io > /dev/null
    fi
    if running; then
        echo "DOCKER_HOST=$HOST"
        return
    fi
    mkdir -p "$DATA" "$RUN"
    # setsid: the engine must not get the Ctrl-C meant for the tests.
    setsid dockerd --host "$HOST" --data-root "$DATA" --exec-root "$RUN/exec" \
        --pidfile "$PIDFILE" --iptables=false --ip-masq=false --storage-driver=vfs \
        --userland-proxy=true > "$LOG" 2>&1 < /dev/null &
    for _ in $(seq 120); do
        if running; then
            echo "DOCKER_HOST=$HOST"
            return
        fi
        sleep 0.5
    done
    echo "engine: dockerd did not answer within 60 s; its log:" >&2
    tail -n 30 "$LOG" >&2
    stop
    exit 1
}

stop() {
    [ -f "$PIDFILE" ] || return 0
    pid=$(cat "$PIDFILE")
    kill "$pid" 2> /dev/null || true
    for _ in $(seq 60); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.5
    done
    kill -9 "$pid" 2> /dev/null || true
    rm -f "$PIDFILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    host) echo "$HOST" ;;
    *)
        echo "usage: $0 start|stop|host" >&2
        exit 2
        ;;
esac
