# Sourced by containers/*/build.sh: parses [--tag TAG] [--base-image IMAGE] into $tag and $base,
# whose defaults the caller sets first.
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --base-image) base="$2"; shift 2 ;;
    *) echo "usage: $0 [--tag TAG] [--base-image IMAGE]" >&2; exit 2 ;;
  esac
done
