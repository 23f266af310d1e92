#!/usr/bin/env bash
# Coverage-guided fuzzing (fuzz/, cargo fuzz + libFuzzer) of the 10250 API's request parsing
# and of KubeletConfiguration parsing, each for a bounded time. Installs cargo-fuzz if missing; the stable toolchain is let through
# cargo fuzz's nightly flags with RUSTC_BOOTSTRAP=1. The instrumented build is cached under
# $KRS_CACHE/fuzz-target; new corpus entries go to a temporary directory, the seeds in
# fuzz/seeds stay as committed. A crash leaves its input under fuzz/artifacts and fails.
# Usage: scripts/fuzz.sh [SECONDS]   (each target; default 60)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
. "$here/common.sh"
secs=${1:-60}
if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install --locked cargo-fuzz >/dev/null
fi
export RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=${CARGO_TARGET_DIR_FUZZ:-$KRS_CACHE/fuzz-target}
mkdir -p "$CARGO_TARGET_DIR"
cd "$top/fuzz"
corpus=$(mktemp -d); trap 'rm -rf "$corpus"' EXIT
fuzz() { # $1 target, then libFuzzer options
  local target=$1; shift
  log "fuzzing $target for ${secs}s"
  mkdir -p "$corpus/$target"
  cargo fuzz build --release "$target"
  cargo fuzz run --release "$target" "$corpus/$target" "seeds/$target" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@"
}
fuzz api_request -dict=api.dict
fuzz config_parse -dict=config.dict
