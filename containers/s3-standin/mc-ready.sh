#!/bin/sh
# `mc ready ALIAS`, the health check MinIO recommends for its image (compose.yaml uses it), for the
# stand-in: ready when the S3 server on 127.0.0.1:${S3_STANDIN_PORT:-9000} answers HTTP at all (an
# unsigned request gets an S3 error document, which proves the server is up). Nothing else of `mc`.
if [ "${1:-}" != "ready" ]; then
  echo "mc: this is the s3-standin image's health-check shim; only 'mc ready ALIAS' is supported" >&2
  exit 2
fi
exec python3 - "${S3_STANDIN_PORT:-9000}" <<'PY'
import http.client, sys
try:
    conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
    conn.request("GET", "/")
    status = conn.getresponse().status
except OSError as exc:
    print(f"mc ready: not ready ({exc})", file=sys.stderr)
    sys.exit(1)
print(f"mc ready: the S3 server answers (HTTP {status})")
sys.exit(0 if status < 500 else 1)
PY
