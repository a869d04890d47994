#!/usr/bin/env bash
# Makes smlocal's base image without any registry: a minimal Debian bookworm root (debootstrap
# --variant=minbase) with python3 (3.11), python3-venv, python3-pip and ca-certificates, imported
# into the local Docker engine as smlocal/base:bookworm (or $1). The framework images build FROM it:
#   smlocal images build --base-image smlocal/base:bookworm
# Idempotent: does nothing when the engine already has the image (set SMLOCAL_BASE_REBUILD=1 to
# remake it). Needs root, debootstrap and a Docker engine; the packages come from the machine's
# apt mirror (the first deb.debian.org-style URI in /etc/apt/sources*, else deb.debian.org).
set -euo pipefail

image="${1:-smlocal/base:bookworm}"
suite="${SMLOCAL_BASE_SUITE:-bookworm}"
packages="python3,python3-venv,python3-pip,ca-certificates"

if [ "${SMLOCAL_BASE_REBUILD:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "build-base: $image is already in the engine; nothing to do"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "build-base: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

mirror="${SMLOCAL_BASE_MIRROR:-}"
if [ -z "$mirror" ]; then
  # deb822 (URIs: ...) or one-line (deb URI suite ...) sources; the main archive, not -security
  mirror="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ {print $2}' | grep -v -- '-security' | head -n1 || true)"
  if [ -z "$mirror" ]; then
    mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
      | grep -v -- '-security' | head -n1 || true)"
  fi
  mirror="${mirror:-http://deb.debian.org/debian}"
fi

root="$(mktemp -d /tmp/smlocal-base-XXXXXX)"
trap 'rm -rf "$root"' EXIT
echo "build-base: debootstrap $suite from $mirror into $root"
started=$(date +%s)
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# keep the image small and free of host state: apt lists and caches, logs
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
       "$root"/var/log/*.log "$root"/tmp/* 2>/dev/null || true
# apt inside containers built on it uses the same mirror
echo "deb $mirror $suite main" > "$root/etc/apt/sources.list"
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["bash"]' \
  --change 'LABEL smlocal.base=1' \
  - "$image" >/dev/null
echo "build-base: imported $image in $(( $(date +%s) - started )) s"
