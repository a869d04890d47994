#!/usr/bin/env bash
# Builds smlocal's own image (default tag smlocal/smlocal:latest, the one compose.yaml runs) offline:
# the wheels of smlocal[docker] and its dependencies are built/downloaded on the host (through the
# host's pip and its trust store) into build/smlocal-wheels/, then installed in the image's builder
# stage with --no-index. Re-running is cheap: pip's cache and Docker's layer cache are reused.
#   containers/smlocal/build.sh [--tag TAG] [--base-image IMAGE]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tag="smlocal/smlocal:latest"
base="smlocal/base:bookworm"
source "$repo/containers/build-args.sh"
wheels="$repo/build/smlocal-wheels"
mkdir -p "$wheels"
rm -f "$wheels"/smlocal-*.whl   # always this tree's smlocal; the dependencies' wheels are kept
cd "$repo"
if ! ./dev pip wheel -q --disable-pip-version-check -w "$wheels" ".[docker]" >"$wheels/.pip.log" 2>&1; then
  cat "$wheels/.pip.log" >&2; exit 1
fi
previous="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
docker build -q -f containers/smlocal/Dockerfile --build-arg "BASE_IMAGE=$base" \
  --label smlocal.image=smlocal -t "$tag" . 2>&1 | grep -v -i -e "legacy builder" -e "buildx" -e "^ *$" || true
current="$(docker image inspect -f '{{.Id}}' "$tag")"
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  docker image rm "$previous" >/dev/null 2>&1 || true   # the image this build replaced, unless still in use
fi
