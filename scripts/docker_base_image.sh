#!/usr/bin/env bash
# A Debian bookworm base image with python3, built without a registry (see the README's container section):
# debootstrap a minimal root filesystem from the mirror apt already uses, then `docker import` it.
# Usage: docker_base_image.sh [NAME]   (skips the work if NAME exists)
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:-spectra-cv-base:bookworm}
if docker image inspect "$NAME" >/dev/null 2>&1; then
  echo "[base-image] $NAME exists"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "[base-image] debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
MIRROR=${MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOT=.docker-build/rootfs
rm -rf "$ROOT"
echo "[base-image] debootstrap bookworm from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOT" "$MIRROR" \
  >.docker-build/debootstrap.log 2>&1 || { tail -20 .docker-build/debootstrap.log >&2; exit 1; }
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
tar -C "$ROOT" -c . | docker import --change 'CMD ["/bin/bash"]' - "$NAME" >/dev/null
rm -rf "$ROOT"
echo "[base-image] $NAME: $(docker image inspect "$NAME" --format '{{.Size}}') bytes"
