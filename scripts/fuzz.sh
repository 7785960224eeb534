#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of bytes from the network or the disk (message
# classification, the v1/v2 value parsers, the JPEG structure check, spool segment decoding,
# config parsing) with AFL++ through cargo-afl, on the stable toolchain. Each target runs for a
# bounded time from a seed corpus made from the golden vectors (tests/vectors/); the script fails
# if any target finds a crash (a panic, an overflow, a failed assertion).
#
#   bash scripts/fuzz.sh                      # every target, FUZZ_SECONDS (default 25) each
#   FUZZ_SECONDS=600 FUZZ_TARGETS="spool" bash scripts/fuzz.sh
#
# Installs what it needs when missing: clang/LLVM and AFL++ from Debian (root: apt-get), and
# cargo-afl into ~/.cargo/bin (cargo install --locked; it builds its AFL++ runtime once per
# toolchain under ~/.local/share/afl.rs). A crash is copied to fuzz/crashes/<target>/ and the
# command to reproduce it is printed; turn it into a regression test (see fuzz/src/main.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS="${FUZZ_SECONDS:-25}"
read -r -a TARGETS <<< "${FUZZ_TARGETS:-message wire jpeg spool config}"
CARGO_AFL_VERSION=0.18.2

if ! command -v clang >/dev/null 2>&1 || ! command -v afl-fuzz >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "== fuzz: installing afl++ and clang (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends afl++ clang llvm >/dev/null
  else
    echo "== fuzz: clang or afl-fuzz missing; install them (sudo apt-get install afl++ clang llvm)" >&2
  fi
fi
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo afl --version 2>/dev/null | grep -q "cargo-afl $CARGO_AFL_VERSION"; then
  echo "== fuzz: cargo install cargo-afl $CARGO_AFL_VERSION"
  cargo install --locked --quiet --version "$CARGO_AFL_VERSION" cargo-afl
fi
# The AFL++ runtime for this toolchain (built once; "already built" is fine).
cargo afl config --build >/dev/null 2>&1 || true

echo "== fuzz: building the targets (cargo afl build --release)"
(cd fuzz && cargo afl build --release --locked --quiet)
BIN=fuzz/target/release/receiver-fuzz

WORK=fuzz/work
rm -rf "$WORK"
mkdir -p "$WORK/out"
"$BIN" seeds tests/vectors "$WORK/seeds"

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_FAST_CAL=1
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CRASHES=0 AFL_NO_WARN_INSTABILITY=1
failed=()
for t in "${TARGETS[@]}"; do
  echo "== fuzz: $t for ${SECS}s"
  log="$WORK/$t.log"
  if ! cargo afl fuzz -i "$WORK/seeds/$t" -o "$WORK/out/$t" -V "$SECS" -t 2000 -m none \
       -- "$BIN" "$t" >"$log" 2>&1; then
    echo "afl-fuzz failed for $t; its log:" >&2
    tail -n 40 "$log" >&2
    failed+=("$t (afl-fuzz error)")
    continue
  fi
  stats="$WORK/out/$t/default/fuzzer_stats"
  execs=$(awk -F': *' '$1 ~ /^execs_done/ {print $2}' "$stats" 2>/dev/null || echo "?")
  paths=$(awk -F': *' '$1 ~ /^corpus_count/ {print $2}' "$stats" 2>/dev/null || echo "?")
  hangs=$(find "$WORK/out/$t/default/hangs" -type f ! -name README.txt 2>/dev/null | wc -l)
  crashes=$(find "$WORK/out/$t/default/crashes" -type f ! -name README.txt 2>/dev/null | wc -l)
  echo "   $t: execs=$execs corpus=$paths crashes=$crashes hangs=$hangs"
  if [ "$hangs" -gt 0 ]; then
    echo "   (hangs are time-outs over 2 s on a loaded machine; not a failure, see $WORK/out/$t)"
  fi
  if [ "$crashes" -gt 0 ]; then
    mkdir -p "fuzz/crashes/$t"
    find "$WORK/out/$t/default/crashes" -type f ! -name README.txt -exec cp {} "fuzz/crashes/$t/" \;
    echo "   CRASH in $t: inputs in fuzz/crashes/$t/; reproduce with: $BIN $t < fuzz/crashes/$t/<file>" >&2
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "== fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "== fuzz: ${#TARGETS[@]} targets, ${SECS}s each, no crash"
