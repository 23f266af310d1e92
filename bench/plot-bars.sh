#!/usr/bin/env bash
# Bar charts of a results file (scripts/bench.sh's JSON): upstream's kubelet 1.20.2 beside
# kubelet-rs, at the defaults, for startup, deletion, memory and CPU.
# Usage: bench/plot-bars.sh RESULTS.json OUT.png
set -euo pipefail
in=$1 out=$2
command -v gnuplot >/dev/null || { echo "plot-bars: gnuplot missing (apt-get install gnuplot-nox)" >&2; exit 1; }
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
panel() { # $1 file, then "label=figure" pairs (figures exact, as in the table)
  local f=$w/$1; shift
  for pair in "$@"; do
    jq -r --arg l "${pair%%=*}" --arg f "${pair#*=}" \
      '.table[] | select(.config == "defaults" and .figure == $f) | [$l, .upstream, .ours] | @tsv' "$in"
  done > "$f"
  [ -s "$f" ] || { echo "plot-bars: no figures for $1 in $in" >&2; exit 1; }
}
panel startup.dat "1 pod=startup, 1 pod (s)" "30 pods, p50=startup, 30 pods, p50 (s)" \
  "30 pods, p99=startup, 30 pods, p99 (s)"
panel delete.dat "1 pod=delete, 1 pod (s)" "30 pods, p50=delete, 30 pods, p50 (s)" \
  "30 pods, p99=delete, 30 pods, p99 (s)"
panel rss.dat "idle=RSS idle, 0 pods (MB)" "30 pods=RSS with 30 pods (MB)" \
  "100 probed pods=RSS with probed pods (MB)" "peak=peak RSS, VmHWM (MB)"
panel cpu.dat "idle=CPU idle, 0 pods (% of a core)" "30 pods=CPU with 30 pods (% of a core)" \
  "100 probed pods=CPU with probed pods (% of a core)"
when=$(jq -r '.run.stamp // ""' "$in" 2>/dev/null || true)
cat > "$w/p.gp" <<GP
set terminal pngcairo size 1400,900 font ',12'
set output '$out'
set multiplot layout 2,2 title "upstream kubelet 1.20.2 and kubelet-rs on the same node, runtime and API server (run ${when}, defaults; lower is better)" font ',13'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top left box opaque
set yrange [0:*]
set xtics scale 0 font ',11'
set datafile separator '\t'
set title 'pod startup, until Running and ready (s)'
plot '$w/startup.dat' using 2:xtic(1) title 'upstream kubelet 1.20.2' lc rgb '#9e9e9e', '' using 3 title 'kubelet-rs' lc rgb '#d9541a'
set title 'pod deletion, until the API object is gone (s)'
plot '$w/delete.dat' using 2:xtic(1) title 'upstream kubelet 1.20.2' lc rgb '#9e9e9e', '' using 3 title 'kubelet-rs' lc rgb '#d9541a'
set title 'memory, resident set (MB)'
plot '$w/rss.dat' using 2:xtic(1) title 'upstream kubelet 1.20.2' lc rgb '#9e9e9e', '' using 3 title 'kubelet-rs' lc rgb '#d9541a'
set title 'CPU (% of one core)'
plot '$w/cpu.dat' using 2:xtic(1) title 'upstream kubelet 1.20.2' lc rgb '#9e9e9e', '' using 3 title 'kubelet-rs' lc rgb '#d9541a'
unset multiplot
GP
gnuplot "$w/p.gp"
echo "$out"
