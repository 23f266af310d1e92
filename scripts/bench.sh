#!/usr/bin/env bash
# The side-by-side benchmark (issue 8): the upstream kubelet 1.20.2, then ours, on the same
# private containerd and a fresh 1.20.2 control plane each, at their defaults and again at
# kubeAPIQPS 50 / kubeAPIBurst 100. Workloads come from the kubelet-bench binary (bench/).
# Usage: scripts/bench.sh [--quick | --smoke | --probes] [--no-build] [--keep-cluster] [--no-plot] [--out FILE]
#   (full)          bursts of 1, 30 and 100 pods, both configs              (~30-40 min)
#   --quick         bursts of 1 and 30, both configs                        (~15 min)
#   --smoke         1 pod per kubelet, defaults only, short windows         (~3 min; for CI)
#   --probes        only the idle footprint and 100 probed pods, defaults   (~8 min)
#   --no-build      use the binaries already in target/release
#   --keep-cluster  do not wipe and restart the control plane between runs (only delete the Node)
#   --no-plot       skip the PNG (otherwise gnuplot-nox is installed if missing)
#   --out FILE      results file (default bench/results/<UTC date>-<mode>.json)
#   --report DIR    only (re)make the results file, table and plot from a kept run directory
# Per run: empty the runtime (runtime-down.sh --clean; runtime-up.sh), wipe and restart the control
# plane, measure the runtime floor (CRI-direct bursts, no kubelet running), start the kubelet, wait
# for node Ready, then: idle footprint (0 pods), each burst (startup; footprint with the pods
# running for bursts >= 30; delete; audit-log request count), crash-to-status, probe lateness
# with 100 probed pods (and the footprint meanwhile); stop the kubelet.
# The two kubelets never run at once. At the end the runtime is empty, the control plane up, no
# kubelet runs and the Node object is gone. The run directory (every piece of JSON, the kubelets'
# logs of the run) is kept under /tmp and printed.
set -euo pipefail
. "$(dirname "$0")/common.sh"
top=$(cd "$(dirname "$0")/.." && pwd)
S=$top/scripts
mode=full build=1 wipe=1 plot=1 out= report_dir=
while [ $# -gt 0 ]; do
  case $1 in
    --quick) mode=quick ;;
    --smoke) mode=smoke ;;
    --probes) mode=probes ;;
    --no-build) build=0 ;;
    --keep-cluster) wipe=0 ;;
    --no-plot) plot=0 ;;
    --out) out=${2:?--out needs a file}; shift ;;
    --report) report_dir=$(realpath "${2:?--report needs a run directory}"); shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--quick|--smoke|--probes] [--no-build] [--keep-cluster] [--no-plot] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done
case $mode in
  full)  SIZES="1 30 100" CONFIGS="defaults qps50" CRASH_RUNS=5 PROBE_PODS=100 WINDOW=30 SETTLE=10 IDLE_SETTLE=15 ;;
  quick) SIZES="1 30"     CONFIGS="defaults qps50" CRASH_RUNS=5 PROBE_PODS=100 WINDOW=30 SETTLE=10 IDLE_SETTLE=15 ;;
  smoke) SIZES="1"        CONFIGS="defaults"       CRASH_RUNS=1 PROBE_PODS=5   WINDOW=5  SETTLE=1  IDLE_SETTLE=3; plot=0 ;;
  probes) SIZES=""        CONFIGS="defaults"       CRASH_RUNS=0 PROBE_PODS=100 WINDOW=30 SETTLE=10 IDLE_SETTLE=15; plot=0 ;;
esac
KUBELETS=${KRS_BENCH_KUBELETS:-upstream ours}   # the order matters: upstream first
TIMEOUT=${KRS_BENCH_TIMEOUT:-600}              # per phase of a burst (all Running; all gone)
BENCH=$top/target/release/kubelet-bench
ADMIN=$CLUSTER_DIR/admin.kubeconfig
KC="kubectl --kubeconfig $ADMIN --request-timeout=10s"
stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
fail() { echo "bench: $*" >&2; exit 1; }
if [ -n "$report_dir" ]; then
  [ -s "$report_dir/run.json" ] || fail "$report_dir has no run.json"
  WORK=$report_dir
  mode=$(jq -r .mode "$WORK/run.json")
  SIZES=$(jq -r '.sizes | map(tostring) | join(" ")' "$WORK/run.json")
  CONFIGS=$(jq -r '.configs | join(" ")' "$WORK/run.json")
  stamp=$(jq -r '.stamp // empty' "$WORK/run.json"); [ -n "$stamp" ] || stamp=$(jq -r .date "$WORK/machine.json" | tr -d :)
  out=${out:-$top/bench/results/$stamp-$mode.json}
else
WORK=$(mktemp -d /tmp/kubelet-bench.XXXXXX)
out=${out:-$top/bench/results/$stamp-$mode.json}
[ "$(id -u)" = 0 ] || fail "run as root (it manages containerd, the control plane and the kubelets)"

# --- never two kubelets: refuse to start while one we did not start is running ------------------
alive_kubelet() { # $1 pidfile: prints the pid if it names a running kubelet
  local p; p=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$p" ] && ! pid_gone "$p" && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = kubelet ] && echo "$p"
}
pre_deadline=$((SECONDS + ${KRS_BENCH_WAIT:-1800})) said=
for f in "$KRS_RUN/kubelet-rs.pid" "$KRS_RUN/upstream-kubelet.pid"; do
  while p=$(alive_kubelet "$f"); do # someone else's (e.g. scripts/test.sh): wait, bounded
    [ $SECONDS -lt $pre_deadline ] || fail "a kubelet is running (pid $p, $f); stop it first"
    [ "$said" = "$p" ] || { log "a kubelet we did not start is running (pid $p, $f); waiting for it to stop"; said=$p; }
    sleep 10
  done
done

# --- build (one cargo at a time on this machine) -------------------------------------------------
wait_cargo() {
  local deadline=$((SECONDS + 1800))
  while pgrep -x cargo >/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "another cargo has been running for 30 min"
    sleep 10
  done
}
if [ $build = 1 ]; then
  wait_cargo
  log "building kubelet and kubelet-bench (release)"
  (cd "$top" && cargo build --release -p kubelet -p kubelet-bench) || fail "cargo build failed"
fi
[ -x "$BENCH" ] || fail "$BENCH missing: cargo build --release -p kubelet-bench"
[ -x "$top/target/release/kubelet" ] || fail "target/release/kubelet missing: cargo build --release -p kubelet"
[ -x "$K8S_BIN/kubelet" ] || fail "$K8S_BIN/kubelet missing: scripts/build-k8s.sh"

# --- clean-up on any exit: stop the kubelet we started, remove floor sandboxes -------------------
STARTED= KPID= BROKEN=
stop_kubelet() { # only the kubelet we started: its pidfile must still name our pid
  local f
  case $STARTED in
    upstream) f=$KRS_RUN/upstream-kubelet.pid ;;
    ours) f=$KRS_RUN/kubelet-rs.pid ;;
    *) return 0 ;;
  esac
  if [ -n "$KPID" ] && [ "$(alive_kubelet "$f" || true)" = "$KPID" ]; then
    case $STARTED in
      upstream) "$S/upstream-kubelet.sh" stop ;;
      ours) "$S/kubelet.sh" stop ;;
    esac
  fi
  STARTED= KPID=
}
on_exit() {
  local rc=$?
  stop_kubelet || true
  if containerd_up; then timeout 120 "$BENCH" floor-clean >/dev/null 2>&1 || true; fi
  [ $rc = 0 ] || log "bench failed (exit $rc); run directory $WORK"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# --- the machine -----------------------------------------------------------------------------
"$S/runtime-up.sh" >/dev/null
cat > "$WORK/machine.json" <<EOF
{
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "nproc": $(nproc),
  "cpu": $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' | jq -R . || echo '"?"'),
  "memory": "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)",
  "kernel": "$(uname -r)",
  "os": $( (. /etc/os-release && echo "$PRETTY_NAME") | jq -R .),
  "containerd": $(containerd --version | awk '{print $3}' | jq -R .),
  "upstream_kubelet": $("$K8S_BIN/kubelet" --version 2>/dev/null | jq -R .),
  "ours_git": $(cd "$top" && git describe --always --dirty 2>/dev/null | jq -R .),
  "rustc": $(rustc --version 2>/dev/null | jq -R . || echo null)
}
EOF
jq -n --arg stamp "$stamp" --arg mode "$mode" --arg sizes "$SIZES" --arg configs "$CONFIGS" --arg kubelets "$KUBELETS" \
  --argjson crash "$CRASH_RUNS" --argjson window "$WINDOW" --argjson wipe "$wipe" \
  '{stamp: $stamp, mode: $mode, sizes: ($sizes | split(" ") | map(select(. != "") | tonumber)), configs: ($configs | split(" ")),
    kubelets: ($kubelets | split(" ")), crash_runs: $crash, footprint_window_s: $window,
    fresh_control_plane: ($wipe == 1),
    qps50: {kubeAPIQPS: 50, kubeAPIBurst: 100}}' > "$WORK/run.json"
jq empty "$WORK/machine.json" || fail "machine.json is malformed"

# --- helpers -------------------------------------------------------------------------------------
node_ready() {
  [ "$($KC get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
delete_node() { $KC delete node "$NODE_NAME" --ignore-not-found --wait=true >/dev/null 2>&1 || true; }
cluster_up() { # cluster-up.sh is idempotent; on a loaded machine its check that a process it just
  # started is alive can look before the exec (and call it exited): try again
  local i
  for i in 1 2 3; do
    "$S/cluster-up.sh" && return 0
    log "cluster-up.sh failed (try $i); retrying"; sleep 3
  done
  fail "the control plane does not come up; logs in $CLUSTER_DIR/logs"
}
fresh_env() {
  "$S/runtime-down.sh" --clean
  "$S/runtime-up.sh" >/dev/null
  [ $wipe = 0 ] || "$S/cluster-down.sh" --wipe
  cluster_up
  [ $wipe = 1 ] || delete_node
}
# Others share this machine's environment (scripts/test.sh runs builds, its own kubelet and the
# e2e tests on the same containerd and control plane). Never measure during a build or a test
# run, and never reset the environment under someone else's kubelet.
building() { # prints what is busy: a cargo build, a test run or a test binary
  local p
  for p in cargo rustc; do pgrep -x $p >/dev/null && { echo "a $p build"; return 0; }; done
  # (scripts/test.sh runs the smoke itself, after its own tests: it sets KRS_BENCH_IN_TEST)
  [ -z "${KRS_BENCH_IN_TEST:-}" ] && pgrep -f 'scripts/test\.sh' >/dev/null && { echo "scripts/test.sh"; return 0; }
  pgrep -f '/target/(debug|release)/deps/' >/dev/null && { echo "a test binary"; return 0; }
  return 1
}
foreign_kubelet() { # prints the pid of a running kubelet that this script did not start
  local f p
  for f in "$KRS_RUN/kubelet-rs.pid" "$KRS_RUN/upstream-kubelet.pid"; do
    p=$(alive_kubelet "$f") || continue
    [ -n "${KPID:-}" ] && [ "$p" = "$KPID" ] && continue
    echo "$p"; return 0
  done
  return 1
}
quiet() { # waits (up to 30 min) until nothing else runs; $1: also wait for foreign kubelets
  local deadline=$((SECONDS + 1800)) said= what
  while what=$(building) || { [ "${1:-}" = env ] && what=$(foreign_kubelet) && what="kubelet pid $what"; }; do
    [ "$said" = "$what" ] || { log "waiting for $what to finish before measuring"; said=$what; }
    [ $SECONDS -lt $deadline ] || { log "WARNING: $what still runs after 30 min; going on"; return 0; }
    sleep 10
  done
}
bench() { # $1 seconds, then kubelet-bench arguments; a failed workload is noted, not fatal
  local secs=$1; shift
  quiet
  rm -f "$WORK/build-seen"
  # a build that starts meanwhile: note the figure as disturbed (sampled every 2 s)
  ( while sleep 2; do if building >/dev/null; then touch "$WORK/build-seen"; fi; done ) & local watcher=$!
  if ! timeout "$secs" "$BENCH" --kubeconfig "$ADMIN" --node "$NODE_NAME" "$@" >/dev/null 2>"$WORK/last.err"; then
    log "kubelet-bench $* failed: $(tail -3 "$WORK/last.err" | tr '\n' ' ')"
  fi
  kill "$watcher" 2>/dev/null || true; wait "$watcher" 2>/dev/null || true
  if [ -e "$WORK/build-seen" ] || building >/dev/null; then
    echo "${CUR:-}: $*" >> "$WORK/disturbed.txt"; log "WARNING: a build or test run ran during: $*"
  fi
  if [ -n "${KPID:-}" ] && pid_gone "$KPID"; then
    log "the kubelet under test (pid $KPID) is gone (stopped by someone else?)"; BROKEN=1
  fi
  return 0
}

run_one() { # $1 config, $2 kubelet
  local cfg=$1 k=$2 D="$WORK/$1/$2" pidfile logf off pid n
  rm -rf "$D"; mkdir -p "$D"; CUR="$cfg/$k"
  quiet env
  log "=== $k kubelet, $cfg: fresh runtime and control plane"
  fresh_env
  unset KRS_KUBELET_CONFIG
  if [ "$cfg" = qps50 ]; then
    cp "$CLUSTER_DIR/kubelet-config.yaml" "$WORK/kubelet-config-qps50.yaml"
    printf 'kubeAPIQPS: 50\nkubeAPIBurst: 100\n' >> "$WORK/kubelet-config-qps50.yaml"
    export KRS_KUBELET_CONFIG=$WORK/kubelet-config-qps50.yaml
  fi
  for n in $SIZES; do
    log "runtime floor: $n pods through CRI"
    bench 600 floor --pods "$n" --out "$D/floor-$n.json"
  done
  case $k in
    upstream) pidfile=$KRS_RUN/upstream-kubelet.pid logf=/var/log/kubelet-rs/upstream-kubelet.log ;;
    ours) pidfile=$KRS_RUN/kubelet-rs.pid logf=${KRS_KUBELET_LOG:-/var/log/kubelet-rs/kubelet-rs.log} ;;
  esac
  mkdir -p "$(dirname "$logf")"; touch "$logf"
  off=$(stat -c %s "$logf")
  STARTED=$k
  case $k in
    upstream) "$S/upstream-kubelet.sh" start ;;
    ours) KRS_PROFILE=release "$S/kubelet.sh" start ;;
  esac
  pid=$(cat "$pidfile") KPID=$pid
  wait_for 120 node_ready || fail "node $NODE_NAME not Ready 120 s after starting the $k kubelet; log $logf"
  log "$k kubelet pid $pid, node Ready; settling ${IDLE_SETTLE}s"
  jq -n --arg k "$k" --argjson pid "$pid" --arg cmd "$(tr '\0' ' ' < "/proc/$pid/cmdline")" \
    --arg config "$(cat "${KRS_KUBELET_CONFIG:-$CLUSTER_DIR/kubelet-config.yaml}")" \
    '{kubelet: $k, pid: $pid, cmdline: $cmd, config: $config}' > "$D/info.json"
  sleep "$IDLE_SETTLE"
  log "footprint, idle (${WINDOW}s)"
  bench $((WINDOW + 60)) footprint --pid "$pid" --window "$WINDOW" --out "$D/footprint-idle.json"
  [ -z "$BROKEN" ] || { stop_kubelet; return 0; }
  for n in $SIZES; do
    local fp=()
    [ "$n" -lt 30 ] || fp=(--pid "$pid" --settle "$SETTLE" --window "$WINDOW")
    log "burst of $n pods"
    bench $((2 * TIMEOUT + WINDOW + SETTLE + 120)) lifecycle --pods "$n" --timeout "$TIMEOUT" "${fp[@]}" \
      --out "$D/lifecycle-$n.json"
    [ -z "$BROKEN" ] || { stop_kubelet; return 0; }
    if [ -s "$D/lifecycle-$n.json" ]; then
      jq -c '{pods, startup_p50: .startup.p50, startup_p99: .startup.p99, all_running_s, delete_p50: .delete.p50,
        all_gone_s, not_running, not_gone, api: .api.requests}' "$D/lifecycle-$n.json" >&2
    fi
  done
  if [ "$CRASH_RUNS" -gt 0 ]; then
    log "crash-to-status, $CRASH_RUNS runs"
    bench $((CRASH_RUNS * 400 + 60)) crash --runs "$CRASH_RUNS" --out "$D/crash.json"
    [ -z "$BROKEN" ] || { stop_kubelet; return 0; }
    if [ -s "$D/crash.json" ]; then jq -c '.crash_to_status + {failures}' "$D/crash.json" >&2; fi
  fi
  log "probes: $PROBE_PODS pods, an HTTP readiness probe each, every second"
  bench $((2 * TIMEOUT + WINDOW + SETTLE + 120)) probes --pods "$PROBE_PODS" --timeout "$TIMEOUT" \
    --pid "$pid" --settle "$SETTLE" --window "$WINDOW" --out "$D/probes.json"
  [ -z "$BROKEN" ] || { stop_kubelet; return 0; }
  if [ -s "$D/probes.json" ]; then
    jq -c '{pods, probes, probes_expected, late_p50: .lateness.p50, late_p99: .lateness.p99,
      late_max: .lateness.max, cpu: .footprint.cpu_pct_core}' "$D/probes.json" >&2
  fi
  if pid_gone "$pid"; then log "WARNING: the $k kubelet (pid $pid) exited during the run"; fi
  stop_kubelet
  tail -c +$((off + 1)) "$logf" > "$D/kubelet.log" || true
  delete_node
}

started_at=$SECONDS
for cfg in $CONFIGS; do
  for k in $KUBELETS; do
    for attempt in 1 2; do
      BROKEN=
      run_one "$cfg" "$k"
      [ -n "$BROKEN" ] || break
      log "the $k kubelet's run ($cfg) was interrupted; $([ $attempt = 1 ] && echo retrying || echo giving up)"
    done
  done
done

# --- leave: empty runtime, control plane up, no kubelet, no Node ----------------------------------
"$S/runtime-down.sh" --clean
"$S/runtime-up.sh" >/dev/null
cluster_up
delete_node

fi # not --report

mkdir -p "$(dirname "$out")"
if [ -s "$WORK/disturbed.txt" ] && ! jq -e .disturbed_by_builds "$WORK/run.json" >/dev/null; then
  jq --rawfile d "$WORK/disturbed.txt" '.disturbed_by_builds = ($d | rtrimstr("\n") | split("\n"))' \
    "$WORK/run.json" > "$WORK/run.json.tmp" && mv "$WORK/run.json.tmp" "$WORK/run.json"
fi
"$BENCH" report "$WORK" --plot-data --markdown "$WORK/table.md" --out "$out" > /dev/null
if [ $plot = 1 ]; then
  if ! command -v gnuplot >/dev/null; then
    log "installing gnuplot-nox for the plot"
    apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq gnuplot-nox) >/dev/null 2>&1 || true
  fi
  if command -v gnuplot >/dev/null; then
    png=${out%.json}-startup.png
    plots=()
    for cfg in $CONFIGS; do
      for n in $SIZES; do
        [ "$n" -ge 30 ] || continue
        p=""
        for src in upstream ours floor; do
          f=$WORK/plot/$cfg-$n-$src.dat
          [ -s "$f" ] || continue
          case $src in
            upstream) title="upstream kubelet 1.20.2" ;; ours) title="kubelet-rs" ;;
            floor) title="runtime floor (the CRI calls alone)" ;;
          esac
          p+="${p:+, }'$f' using 1:2 with steps lw 2 title '$title'"
        done
        [ -z "$p" ] || plots+=("set title '$cfg: startup of $n pods'; plot $p")
      done
    done
    if [ ${#plots[@]} -gt 0 ]; then
      {
        rows=$(wc -w <<<"$CONFIGS"); [ $((${#plots[@]} % rows)) = 0 ] || rows=1
        echo "set terminal pngcairo size $((700 * ${#plots[@]} / rows)),$((460 * rows)) font ',12'"
        echo "set output '$png'"
        rows=$(wc -w <<<"$CONFIGS"); [ $((${#plots[@]} % rows)) = 0 ] || rows=1
        echo "set multiplot layout $rows,$((${#plots[@]} / rows))"
        echo "set xlabel 'seconds from create to Running and ready'; set ylabel 'fraction of pods'"
        echo "set key bottom right; set grid; set yrange [0:1.05]; set xrange [0:*]"
        printf '%s\n' "${plots[@]}"
        echo "unset multiplot"
      } > "$WORK/plot.gp"
      gnuplot "$WORK/plot.gp" 2>"$WORK/plot.err" && log "plot: $png" || log "gnuplot failed: $(head -3 "$WORK/plot.err")"
    fi
    # Startup, deletion, memory and CPU side by side, as bars.
    "$top/bench/plot-bars.sh" "$out" "${out%.json}-bars.png" >/dev/null \
      && log "plot: ${out%.json}-bars.png" || log "bar plot failed"
  fi
fi
log "done in $(((SECONDS - ${started_at:-$SECONDS}) / 60)) min; results $out; run directory $WORK"
cat "$WORK/table.md"
