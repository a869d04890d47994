#!/bin/sh
# MinIO's command line and environment, served by `rclone serve s3`.
#   minio server DIR [--address [HOST]:PORT] [--console-address ADDR] [other MinIO flags: ignored]
# Credentials: MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (else the legacy MINIO_ACCESS_KEY /
# MINIO_SECRET_KEY, else MinIO's default minioadmin / minioadmin) become rclone's one auth key pair:
# every request must be signed with it (rclone refuses anonymous requests once a key is set).
set -eu
[ "${1:-}" = "minio" ] && shift
if [ "${1:-}" != "server" ]; then
  echo "s3-standin: only 'server DIR [--address ADDR]' is supported (this image is rclone, not MinIO)" >&2
  exec "$@"
fi
shift
address=":9000"
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --address) address="$2"; shift 2 ;;
    --address=*) address="${1#--address=}"; shift ;;
    --console-address) shift 2 ;;   # no console in the stand-in
    --console-address=*) shift ;;
    --*) echo "s3-standin: ignoring MinIO flag $1" >&2; shift ;;
    *) [ -z "$dir" ] && dir="$1"; shift ;;
  esac
done
dir="${dir:-/data}"
user="${MINIO_ROOT_USER:-${MINIO_ACCESS_KEY:-minioadmin}}"
password="${MINIO_ROOT_PASSWORD:-${MINIO_SECRET_KEY:-minioadmin}}"
case "$user$password" in
  *,*|*\"*) echo "s3-standin: the user and password must not contain ',' or '\"'" >&2; exit 2 ;;
esac
mkdir -p "$dir"
# the pair is quoted: rclone reads list-valued variables as CSV; the key stays off the command line
export RCLONE_AUTH_KEY="\"$user,$password\""
exec /usr/local/bin/rclone serve s3 --addr "$address" --config "" --dir-cache-time 5s \
  --log-level "${RCLONE_LOG_LEVEL:-NOTICE}" "$dir"
