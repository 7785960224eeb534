#!/usr/bin/env bash
# CI entry point for firmware-esp32/ (called from the repo root as `bash firmware-esp32/ci.sh`).
#
# Installs what it needs when missing (Debian packages, a Python venv with the
# Espressif host tools), then runs:
#   - host tests of components/uplink_core: ASan+UBSan with the Mbed TLS md HMAC back end,
#     again with the PSA back end (the ESP-IDF 6 path), and a -m32 build (ILP32, like the ESP32)
#   - the core under -Wconversion/-Wpedantic, 64- and 32-bit
#   - fw_emit against every golden vector in tests/vectors, and one simulated lossy upload
#   - a short, time-boxed fuzz run (libFuzzer with clang, else random inputs with gcc)
#   - main/*.c (the ESP-IDF glue) compiled against hand-written IDF API stubs with
#     Debian's Xtensa gcc and -Wall -Werror (a consistency check, not a build)
#   - kconfcheck on main/Kconfig.projbuild and `compote manifest lint` on main/idf_component.yml
#   - a check that no secrets or sdkconfig are committed
# The ESP-IDF firmware itself is NOT compiled here: no ESP32 toolchain can be installed.
# Exits non-zero on any failure; the last line is "N passed, N failed".
#
# Environment: FUZZ_SECONDS (default 8 per target), FW_CI_VENV (venv path),
#              FW_CI_SKIP_INSTALL=1 (use what is installed).
set -u
set -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
HT="$HERE/host_test"
VECTORS="$REPO/tests/vectors"
BUILD="$HT/build"
FUZZ_SECONDS=${FUZZ_SECONDS:-8}
VENV=${FW_CI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/firmware-esp32-ci-venv}
T0=$(date +%s)

passed=0
failed=0
failures=()
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
bad()  { failed=$((failed + 1)); failures+=("$1"); echo "FAIL $1"; }
step() { echo; echo "== $* ($(( $(date +%s) - T0 )) s)"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else "$@"; fi
}
APT_UPDATED=0
apt_install() { # packages...
    command -v apt-get >/dev/null 2>&1 || return 1
    if [ "$APT_UPDATED" = 0 ]; then
        as_root apt-get update -qq >/dev/null || return 1
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ------------------------------------------------------------------ install --
step "dependencies"
if [ "${FW_CI_SKIP_INSTALL:-0}" != 1 ]; then
    need=()
    command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
    command -v make >/dev/null 2>&1 || need+=(make)
    [ -f /usr/include/mbedtls/md.h ] && [ -f /usr/include/psa/crypto.h ] || need+=(libmbedtls-dev)
    probe=$(mktemp -d)
    if ! echo 'int main(void){return 0;}' | gcc -m32 -fsanitize=address,undefined -x c - -o "$probe/m32" >/dev/null 2>&1; then
        need+=(gcc-multilib)
    fi
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3 python3-venv)
    if [ ${#need[@]} -gt 0 ]; then
        echo "installing: ${need[*]}"
        apt_install "${need[@]}" || echo "warning: apt-get install ${need[*]} failed"
    fi
    # optional, for libFuzzer (the fuzz step falls back to gcc without them)
    if ! echo 'int LLVMFuzzerTestOneInput(const char*d,long n){(void)d;(void)n;return 0;}' \
            | { clang-14 -x c -fsanitize=fuzzer - -o "$probe/fz" || clang -x c -fsanitize=fuzzer - -o "$probe/fz"; } >/dev/null 2>&1; then
        echo "installing (optional): clang-14 libfuzzer-14-dev libclang-rt-14-dev"
        apt_install clang-14 libfuzzer-14-dev libclang-rt-14-dev || echo "note: clang/libFuzzer not installed; fuzzing falls back to gcc"
    fi
    rm -rf "$probe"
    # optional, for the glue compile check (Debian's ESP8266 Xtensa gcc + picolibc)
    if ! command -v xtensa-lx106-elf-gcc >/dev/null 2>&1 || [ ! -f /usr/lib/xtensa-lx106-elf/include/stdint.h ]; then
        echo "installing (optional): gcc-xtensa-lx106 picolibc-xtensa-lx106-elf"
        apt_install gcc-xtensa-lx106 picolibc-xtensa-lx106-elf || echo "note: Xtensa gcc not installed; glue check skipped"
    fi
    if [ ! -x "$VENV/bin/compote" ] || ! "$VENV/bin/python" -c 'import kconfcheck' >/dev/null 2>&1; then
        echo "creating $VENV (esp-idf-kconfig, idf-component-manager)"
        python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check \
            "esp-idf-kconfig==3.14.0" "idf-component-manager==3.1.2" \
            || echo "warning: pip install failed"
    fi
fi

# -------------------------------------------------------------- host tests --
step "build (gcc $(gcc -dumpversion 2>/dev/null))"
if make -s -C "$HT" bins >"$BUILD.log" 2>&1 || { mkdir -p "$BUILD"; false; }; then
    ok "build host tests and fw_emit"
else
    cat "$BUILD.log"
    bad "build host tests and fw_emit"
fi
rm -f "$BUILD.log"

run_tests() { # name binary
    local name=$1 bin=$2 log summary p f rc
    step "host tests: $name"
    if [ ! -x "$bin" ]; then
        bad "$name: not built"
        return
    fi
    log=$(mktemp)
    "$bin" "$VECTORS" >"$log" 2>&1
    rc=$?
    grep -E '^(FAIL|  FAIL)|HMAC back end|host tests' "$log" || true
    summary=$(tail -n 1 "$log")
    if [[ "$summary" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        p=${BASH_REMATCH[1]}
        f=${BASH_REMATCH[2]}
        echo "$name: $summary"
        passed=$((passed + p))
        failed=$((failed + f))
        [ "$f" -gt 0 ] && failures+=("$name: $f failed")
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then bad "$name: exit status $rc"; fi
    else
        tail -n 40 "$log"
        bad "$name: crashed or no summary (exit $rc)"
    fi
    rm -f "$log"
}
run_tests "asan+ubsan, mbedtls md"  "$BUILD/test_core_md"
run_tests "asan+ubsan, mbedtls psa" "$BUILD/test_core_psa"
run_tests "-m32 asan+ubsan"         "$BUILD/test_core_m32"

step "strict warnings on the core"
if out=$(make -s -C "$HT" strict 2>&1); then ok "core: -Wconversion -Wsign-conversion -Wpedantic, 64/32-bit"; else echo "$out"; bad "core strict warnings"; fi

# ---------------------------------------------------------------- fw_emit --
step "fw_emit against the golden vectors"
EMIT="$BUILD/fw_emit"
if [ -x "$EMIT" ] && [ -f "$VECTORS/index.tsv" ]; then
    nvec=0
    while IFS=$'\t' read -r fmt img pk dn pid chunk file; do
        case "$fmt" in ''|'#'*) continue ;; esac
        nvec=$((nvec + 1))
        if "$EMIT" --format "$fmt" --pid "$pid" --chunk "$chunk" --pk "$pk" --dn "$dn" \
                "$VECTORS/images/$img" | cmp -s - "$VECTORS/$file"; then
            ok "fw_emit $file"
        else
            bad "fw_emit $file"
        fi
    done <"$VECTORS/index.tsv"
    [ "$nvec" -gt 0 ] || bad "fw_emit: no vectors in index.tsv"
    # Lossy simulated uploads (lost publishes and PUBACKs, an outage, a reboot): every
    # payload the platform received must be one of the golden payloads (duplicates
    # and reordering allowed) and the picture must come out complete.
    sim_check() { # format pid chunk image golden
        local out err
        out=$(mktemp)
        err=$(mktemp)
        if "$EMIT" --simulate --seed 7 --loss 150 --ack-loss 150 --outage 1000:3000 --reboot 6000 \
                --format "$1" --pid "$2" --chunk "$3" --pk a1GoldenPK0 --dn cam-golden-01 \
                "$VECTORS/images/$4" >"$out" 2>"$err" \
            && [ -s "$out" ] && ! grep -vxF -f "$VECTORS/$5" "$out" >/dev/null \
            && [ "$(sort -u "$out" | wc -l)" -eq "$(wc -l <"$VECTORS/$5")" ]; then
            ok "fw_emit --simulate $5: $(tail -n 1 "$err" | sed 's/^fw_emit: //')"
        else
            cat "$err"
            bad "fw_emit --simulate $5"
        fi
        rm -f "$out" "$err"
    }
    sim_check v1 9 800 qvga.jpg v1/qvga-p9-c800.txt
    sim_check v2 4294967295 60 odd.jpg v2/odd-p4294967295-c60.txt
else
    bad "fw_emit: not built or no vectors at $VECTORS"
fi

# ------------------------------------------------------------- glue check --
step "ESP-IDF glue compile check (stubs, not a firmware build)"
if command -v xtensa-lx106-elf-gcc >/dev/null 2>&1 && [ -x "$VENV/bin/python" ]; then
    if out=$(make -s -C "$HT" glue KCONFGEN="$VENV/bin/python -m kconfgen" 2>&1); then
        echo "$out"
        ok "main/*.c and the core compile for Xtensa with -Wall -Werror (uint32_t as long)"
    else
        echo "$out" | tail -n 60
        bad "glue compile check"
    fi
else
    echo "skipped: xtensa-lx106-elf-gcc or kconfgen not available"
fi

# ------------------------------------------------------------------- fuzz --
step "fuzz (time-boxed, ${FUZZ_SECONDS} s per target)"
if out=$(make -s -C "$HT" fuzz FUZZ_SECONDS="$FUZZ_SECONDS" 2>&1); then
    echo "$out"
    ok "fuzz: post_reply parser, encoders, upload state machine"
else
    echo "$out" | tail -n 60
    bad "fuzz"
fi

# ------------------------------------------------------- Espressif checks --
step "kconfcheck and compote manifest lint"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import kconfcheck' >/dev/null 2>&1; then
    if (cd "$HERE" && "$VENV/bin/python" -m kconfcheck main/Kconfig.projbuild); then
        ok "kconfcheck main/Kconfig.projbuild"
    else
        bad "kconfcheck main/Kconfig.projbuild"
        rm -f "$HERE/main/Kconfig.projbuild.new"
    fi
else
    bad "kconfcheck: esp-idf-kconfig not installed"
fi
if [ -x "$VENV/bin/compote" ]; then
    if (cd "$HERE" && "$VENV/bin/compote" manifest lint main/idf_component.yml); then
        ok "compote manifest lint main/idf_component.yml"
    else
        bad "compote manifest lint main/idf_component.yml"
    fi
else
    bad "compote: idf-component-manager not installed"
fi

step "no secrets committed"
secrets_ok=1
for key in APP_WIFI_PASSWORD APP_ALIYUN_DEVICE_SECRET APP_WIFI_SSID APP_ALIYUN_PRODUCT_KEY APP_ALIYUN_DEVICE_NAME; do
    if ! awk -v k="config $key" '$0 ~ k"$" {f=1} f && /default/ {print; exit}' "$HERE/main/Kconfig.projbuild" | grep -q 'default ""'; then
        echo "$key has a non-empty default"
        secrets_ok=0
    fi
done
if grep -qE 'CONFIG_APP_(WIFI|ALIYUN)_' "$HERE/sdkconfig.defaults"; then
    echo "sdkconfig.defaults sets credentials"
    secrets_ok=0
fi
if git -C "$REPO" ls-files --error-unmatch firmware-esp32/sdkconfig >/dev/null 2>&1; then
    echo "firmware-esp32/sdkconfig is committed"
    secrets_ok=0
fi
[ "$secrets_ok" = 1 ] && ok "credentials default empty; sdkconfig not committed" || bad "secrets check"

# ---------------------------------------------------------------- summary --
echo
echo "firmware-esp32 CI finished in $(( $(date +%s) - T0 )) s (the ESP-IDF firmware itself is not compiled here)"
if [ "$failed" -gt 0 ]; then
    printf 'failed: %s\n' "${failures[@]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
