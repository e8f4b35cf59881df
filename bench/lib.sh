# shellcheck shell=bash
# bench/lib.sh: sourced by every bench/NN-name.sh.
#
# A benchmark registers cases (a command, and an untimed command to run before
# each timed run), runs them, and states what it compares:
#
#   bench_case   NAME CMD [PREPARE]    register a case; CMD and PREPARE run under bash
#   bench_measure                      run every case BENCH_RUNS times, emit 'time' lines
#   bench_ratio  A B [OP TARGET]       emit median(A)/median(B), checked against OP TARGET
#   bench_metric NAME VALUE UNIT [OP TARGET]   any other figure (peak RSS, ms per step, size)
#   bench_note   TEXT                  a sentence for the reader (how the run was done)
#   bench_skip   REASON                give up cleanly (a missing tool); exits 0
#
# Result lines go to stdout, one per line, a kind word then key=value fields
# (values never contain spaces), except 'note' and 'skip', whose rest is text:
#
#   time   case=NAME runs=N median=S min=S max=S user=S sys=S rss_kib=K
#          [io_stall=S other_cpu=S] [bytes=B]
#   ratio  name=A/B value=R [target=OP:T verdict=ok|miss]
#   metric name=NAME value=V unit=U [target=OP:T verdict=ok|miss]
#   note   TEXT
#   skip   REASON
#
# 'user', 'sys' are medians over the runs (for a pipeline, summed over all its
# processes); 'rss_kib' is the largest peak RSS of any single process of the
# case seen in any run (GNU time's %M). 'io_stall' (seconds some task on the
# machine was stalled on I/O, from /proc/pressure/io) and 'other_cpu' (CPU
# seconds spent during the run by anything but the case: other jobs, kernel
# writeback) are medians too, and tell a slow program from a busy machine;
# the built-in timer records them, hyperfine cannot. Progress and logs go to
# stderr.
#
# Environment (bench/run sets these from its options):
#   BENCH_DIR    cache and scratch space (default /tmp/cbuild-bench)
#   BENCH_QUICK  1 for a small smoke-test run
#   BENCH_RUNS   timed runs per case (default 5, or 3 with BENCH_QUICK=1)
#   BENCH_WARMUP untimed runs per case before them (default 1)
#   BENCH_TIMER  auto | loop | hyperfine (auto: hyperfine when installed)
#   CBUILD       the cbuild binary (default: ./cbuild at the top of the tree)

set -euo pipefail

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_TOP=$(dirname "$BENCH_SRC")
BENCH_DIR=${BENCH_DIR:-/tmp/cbuild-bench}
BENCH_QUICK=${BENCH_QUICK:-0}
if [ "$BENCH_QUICK" = 1 ]; then
  BENCH_RUNS=${BENCH_RUNS:-3}
else
  BENCH_RUNS=${BENCH_RUNS:-5}
fi
BENCH_WARMUP=${BENCH_WARMUP:-1}
BENCH_TIMER=${BENCH_TIMER:-auto}
BENCH_GNU_TIME=${BENCH_GNU_TIME:-/usr/bin/time}
CBUILD=${CBUILD:-$BENCH_TOP/cbuild}
BENCH_NAME=$(basename "$0" .sh)
BENCH_WORK=$BENCH_DIR/work/$BENCH_NAME
BENCH_BYTES=

mkdir -p "$BENCH_WORK"

bench_log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
bench_note() { printf 'note %s\n' "$*"; }
bench_skip() {
  printf 'skip %s\n' "$*"
  bench_log "skipped: $*"
  exit 0
}
bench_die() {
  bench_log "error: $*"
  exit 1
}

# bench_require CMD[:DEBIAN_PACKAGE]...: skip the benchmark, naming what to
# install, when a tool is missing. "cbuild" checks $CBUILD.
bench_require() {
  local want cmd pkg missing=() pkgs=()
  for want in "$@"; do
    cmd=${want%%:*}
    pkg=${want#*:}
    if [ "$pkg" = "$want" ]; then pkg=$cmd; fi
    if [ "$cmd" = cbuild ]; then
      [ -x "$CBUILD" ] || bench_skip "cbuild binary \"$CBUILD\" not found: run 'make' first"
      continue
    fi
    command -v "$cmd" >/dev/null 2>&1 || { missing+=("$cmd"); pkgs+=("$pkg"); }
  done
  if [ ${#missing[@]} -gt 0 ]; then
    bench_skip "missing ${missing[*]}: apt-get install ${pkgs[*]}"
  fi
  return 0
}

# Check GNU time once: Debian's 'time' package, not the shell keyword.
"$BENCH_GNU_TIME" -f '%M' -o /dev/null true 2>/dev/null ||
  bench_skip "GNU time not found at $BENCH_GNU_TIME: apt-get install time"

# bench_input_bytes N: the size of the input every following case reads, so
# that the table can show throughput.
bench_input_bytes() { BENCH_BYTES=$1; }

# Wall clock in seconds with microseconds, without forking (bash >= 5).
bench_now() {
  if [ -n "${EPOCHREALTIME:-}" ]; then
    printf '%s' "${EPOCHREALTIME/,/.}"
  else
    date +%s.%N
  fi
}

# Median (the mean of the two middle values for an even count), min and max of
# the numbers given as arguments: prints "median min max".
bench_stats() {
  printf '%s\n' "$@" | sort -g | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "nan nan nan"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%.6f %.6f %.6f\n", m, v[1], v[NR]
    }'
}

# Registered cases, in order.
BENCH_CASES=()
declare -A BENCH_MEDIAN=() BENCH_RSS=()

bench_case() {
  local name=$1 cmd=$2 prep=${3:-}
  case $name in *[!A-Za-z0-9._-]*) bench_die "bad case name \"$name\"" ;; esac
  BENCH_CASES+=("$name")
  # Every case is also a script, so that it can be rerun by hand and given
  # to hyperfine without another layer of quoting.
  mkdir -p "$BENCH_WORK/cases"
  printf '#!/bin/bash\nset -eo pipefail\n%s\n' "$cmd" >"$BENCH_WORK/cases/$name.sh"
  printf '#!/bin/bash\nset -eo pipefail\n%s\n' "${prep:-:}" >"$BENCH_WORK/cases/$name.prepare.sh"
}

# The machine's state, to tell a slow program from a busy machine: seconds
# any task was stalled on I/O (PSI, system-wide; "-" where the kernel has no
# PSI), and CPU seconds spent by every process, ours included.
bench__machine() {
  local io=-
  if [ -r /proc/pressure/io ]; then
    io=$(awk '/^some/ { sub("total=", "", $5); print $5 / 1e6 }' /proc/pressure/io)
  fi
  awk -v io="$io" -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%s %.2f\n", io, ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit }' /proc/stat
}

# Run one case once, timed; append "wall user sys rss_kib io_stall other_cpu"
# to its .runs file. other_cpu is the machine's CPU time during the run less
# the case's own: other jobs, and kernel threads such as writeback.
bench__once() {
  local name=$1 round=$2 runs=${3:-$BENCH_WORK/logs/$1.runs} t0 t1 m0 m1 rc=0
  local log=$BENCH_WORK/logs/$name.$round.log res=$BENCH_WORK/logs/$name.$round.time
  bash "$BENCH_WORK/cases/$name.prepare.sh" >"$log.prepare" 2>&1 ||
    { tail -n 20 "$log.prepare" >&2; bench_die "case $name: prepare failed (log: $log.prepare)"; }
  m0=$(bench__machine)
  t0=$(bench_now)
  "$BENCH_GNU_TIME" -f '%e %U %S %M' -o "$res" bash "$BENCH_WORK/cases/$name.sh" >"$log" 2>&1 || rc=$?
  t1=$(bench_now)
  m1=$(bench__machine)
  if [ $rc -ne 0 ]; then
    tail -n 20 "$log" >&2
    bench_die "case $name failed with status $rc in round $round (log: $log)"
  fi
  # GNU time prints "Command exited..." lines before its format on failure;
  # the last line is always ours.
  tail -n 1 "$res" | awk -v t0="$t0" -v t1="$t1" -v m0="$m0" -v m1="$m1" '{
    split(m0, a, " "); split(m1, b, " ")
    other = (b[2] - a[2]) - ($2 + $3); if (other < 0) other = 0
    io = a[1] == "-" ? "-" : sprintf("%.2f", b[1] - a[1])
    printf "%.6f %s %s %s %s %.2f\n", t1 - t0, $2, $3, $4, io, other }' \
    >>"$runs"
}

# Round-robin over the cases, so that a slow drift of the machine (thermal,
# background writeback) spreads over all of them instead of one.
bench__measure_loop() {
  local round name
  # Warm-up rounds, untimed: the first run of a case is often slower (cold
  # binary and libraries, fresh disk blocks, a filesystem that has not yet
  # reused freed space), and its figure would say more about the machine.
  for round in $(seq 1 "$BENCH_WARMUP"); do
    for name in "${BENCH_CASES[@]}"; do
      bench_log "warm-up $round/$BENCH_WARMUP: $name"
      bench__once "$name" "warmup$round" "$BENCH_WORK/logs/$name.warmup"
    done
  done
  for round in $(seq 1 "$BENCH_RUNS"); do
    for name in "${BENCH_CASES[@]}"; do
      bench_log "round $round/$BENCH_RUNS: $name"
      bench__once "$name" "$round"
    done
  done
}

# hyperfine runs each case's rounds back to back (it cannot interleave); GNU
# time inside each run still gives user, sys and peak RSS.
bench__measure_hyperfine() {
  local name json res
  for name in "${BENCH_CASES[@]}"; do
    json=$BENCH_WORK/logs/$name.hyperfine.json
    res=$BENCH_WORK/logs/$name.time
    rm -f "$res"
    bench_log "hyperfine: $name"
    hyperfine --style basic --runs "$BENCH_RUNS" --warmup "$BENCH_WARMUP" --export-json "$json" \
      --prepare "bash $(printf '%q' "$BENCH_WORK/cases/$name.prepare.sh") >/dev/null 2>&1" \
      "$(printf '%q ' "$BENCH_GNU_TIME" -a -o "$res" -f '%e %U %S %M' bash "$BENCH_WORK/cases/$name.sh") >/dev/null 2>&1" \
      >&2 || bench_die "case $name failed under hyperfine (rerun: bash $BENCH_WORK/cases/$name.sh)"
    # hyperfine gives no hook around each run: no io_stall or other_cpu.
    # GNU time appended a line for the warm-up runs too: keep the last ones.
    paste -d ' ' <(jq -r '.results[0].times[]' "$json") <(awk '$4 ~ /^[0-9]+$/ { print $2, $3, $4, "-", "-" }' "$res" | tail -n "$BENCH_RUNS") \
      >"$BENCH_WORK/logs/$name.runs"
  done
}

bench_timer() {
  case $BENCH_TIMER in
    auto) if command -v hyperfine >/dev/null && command -v jq >/dev/null; then echo hyperfine; else echo loop; fi ;;
    loop | hyperfine) echo "$BENCH_TIMER" ;;
    *) bench_die "BENCH_TIMER must be auto, loop or hyperfine, not \"$BENCH_TIMER\"" ;;
  esac
}

bench_measure() {
  local name timer wall user sys rss min max
  timer=$(bench_timer)
  if [ "$timer" = hyperfine ]; then
    command -v hyperfine >/dev/null || bench_die "BENCH_TIMER=hyperfine but hyperfine is not installed (apt-get install hyperfine)"
    command -v jq >/dev/null || bench_die "BENCH_TIMER=hyperfine needs jq (apt-get install jq)"
  fi
  rm -rf "$BENCH_WORK/logs"
  mkdir -p "$BENCH_WORK/logs"
  local how=""
  [ "$timer" != loop ] || how=", cases interleaved round by round"
  bench_note "timer: $timer, $BENCH_WARMUP untimed warm-up and $BENCH_RUNS timed runs per case$how"
  "bench__measure_$timer"
  for name in "${BENCH_CASES[@]}"; do
    local -a walls=() users=() syss=() rsss=() ios=() others=()
    local extra=""
    while read -r wall user sys rss iost other; do
      walls+=("$wall") users+=("$user") syss+=("$sys") rsss+=("$rss")
      [ "$iost" = - ] || ios+=("$iost")
      [ "$other" = - ] || others+=("$other")
    done <"$BENCH_WORK/logs/$name.runs"
    [ ${#walls[@]} -gt 0 ] || bench_die "case $name: no timed run recorded"
    read -r "BENCH_MEDIAN[$name]" min max < <(bench_stats "${walls[@]}")
    BENCH_RSS[$name]=$(printf '%s\n' "${rsss[@]}" | sort -n | tail -n 1)
    [ ${#ios[@]} -eq 0 ] || extra+=" io_stall=$(bench_stats "${ios[@]}" | cut -d' ' -f1)"
    [ ${#others[@]} -eq 0 ] || extra+=" other_cpu=$(bench_stats "${others[@]}" | cut -d' ' -f1)"
    [ -z "$BENCH_BYTES" ] || extra+=" bytes=$BENCH_BYTES"
    printf 'time case=%s runs=%d median=%s min=%s max=%s user=%s sys=%s rss_kib=%s%s\n' \
      "$name" ${#walls[@]} "${BENCH_MEDIAN[$name]}" "$min" "$max" \
      "$(bench_stats "${users[@]}" | cut -d' ' -f1)" "$(bench_stats "${syss[@]}" | cut -d' ' -f1)" \
      "${BENCH_RSS[$name]}" "$extra"
  done
}

bench_median() { printf '%s' "${BENCH_MEDIAN[$1]:?no median for case $1}"; }
bench_rss_kib() { printf '%s' "${BENCH_RSS[$1]:?no peak RSS for case $1}"; }

# bench__verdict VALUE OP TARGET: "ok" or "miss".
bench__verdict() {
  awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
    if (op == "<=") ok = v <= t; else if (op == "<") ok = v < t
    else if (op == ">=") ok = v >= t; else if (op == ">") ok = v > t
    else { print "bad-op"; exit }
    print ok ? "ok" : "miss" }'
}

bench_ratio() {
  local a=$1 b=$2 op=${3:-} target=${4:-} value
  value=$(awk -v a="$(bench_median "$a")" -v b="$(bench_median "$b")" 'BEGIN { printf "%.4f", a / b }')
  if [ -n "$op" ]; then
    printf 'ratio name=%s/%s value=%s target=%s:%s verdict=%s\n' "$a" "$b" "$value" "$op" "$target" \
      "$(bench__verdict "$value" "$op" "$target")"
  else
    printf 'ratio name=%s/%s value=%s\n' "$a" "$b" "$value"
  fi
}

bench_metric() {
  local name=$1 value=$2 unit=$3 op=${4:-} target=${5:-}
  if [ -n "$op" ]; then
    printf 'metric name=%s value=%s unit=%s target=%s:%s verdict=%s\n' "$name" "$value" "$unit" \
      "$op" "$target" "$(bench__verdict "$value" "$op" "$target")"
  else
    printf 'metric name=%s value=%s unit=%s\n' "$name" "$value" "$unit"
  fi
}

# bench_context MIB FILES: print the path of a generated build context of
# about MIB MiB in FILES files, half compressible text and half random bytes,
# made once and kept under $BENCH_DIR. Other benchmarks (the cache re-check of
# issue 5) can share it.
BENCH_CONTEXT_VERSION=1
bench_context() {
  local mib=$1 files=$2 dir stamp want
  dir=$BENCH_DIR/context-${mib}m-${files}f
  stamp=$dir.stamp
  want="v$BENCH_CONTEXT_VERSION $mib MiB $files files"
  if [ -d "$dir" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    bench_log "reusing context $dir"
  else
    command -v perl >/dev/null || bench_die "perl is needed to generate the context (apt-get install perl)"
    bench_log "generating context $dir ($mib MiB in $files files; once)"
    rm -rf "$dir" "$dir.tmp" "$stamp"
    perl "$BENCH_SRC/gen-context.pl" "$dir.tmp" $((mib * 1024 * 1024)) "$files" >&2 ||
      bench_die "generating context $dir failed"
    mv "$dir.tmp" "$dir"
    printf '%s\n' "$want" >"$stamp"
  fi
  printf '%s' "$dir"
}

# ---- RUN benchmarks (issue 4, and issue 5's cache benchmarks) ----

# bench_busybox_base DIR: make the busybox base image locally, without
# network, untimed: DIR/ctx/rootfs holds Debian's static /bin/busybox
# (busybox-static) and a symlink per applet, plus /etc/passwd, /etc/group,
# /root and /tmp; DIR/store is a cbuild store holding it as "busybox"
# (FROM scratch + COPY rootfs/ /, built by $CBUILD); DIR/busybox.oci.tar is
# the same image as an OCI archive (cbuild save), for
# `buildah pull oci-archive:...`. Made afresh by each benchmark with the
# binary under test (about 0.2 s). Call it directly, not in $(...): it may
# skip the benchmark.
bench_busybox_base() {
  local dir=$1 bb=${BENCH_BUSYBOX:-/bin/busybox} a
  [ -x "$bb" ] || bench_skip "no $bb: apt-get install busybox-static"
  # A dynamically linked busybox (Debian's "busybox" package) cannot run
  # alone in an image: ldd succeeds only on dynamic executables.
  if ldd "$bb" >/dev/null 2>&1; then
    bench_skip "$bb is dynamically linked: apt-get install busybox-static"
  fi
  rm -rf "$dir"
  mkdir -p "$dir/ctx/rootfs/bin" "$dir/ctx/rootfs/etc" "$dir/ctx/rootfs/root" "$dir/ctx/rootfs/tmp"
  chmod 700 "$dir/ctx/rootfs/root"
  chmod 1777 "$dir/ctx/rootfs/tmp"
  cp "$bb" "$dir/ctx/rootfs/bin/busybox"
  for a in $("$bb" --list); do
    [ "$a" = busybox ] || ln -s busybox "$dir/ctx/rootfs/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir/ctx/rootfs/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/ctx/rootfs/etc/group"
  printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["sh"]\n' >"$dir/ctx/Dockerfile"
  SOURCE_DATE_EPOCH=0 "$CBUILD" build -q --root "$dir/store" -t busybox "$dir/ctx" >"$dir/build.log" 2>&1 ||
    { cat "$dir/build.log" >&2; bench_die "building the busybox base image failed"; }
  "$CBUILD" save --root "$dir/store" -o "$dir/busybox.oci.tar" busybox >>"$dir/build.log" 2>&1 ||
    { cat "$dir/build.log" >&2; bench_die "cbuild save of the busybox base image failed"; }
}

# bench_cbuild_fresh_store BASEDIR ROOT: a prepare command giving ROOT a
# fresh cbuild store that holds only the busybox base image (a copy of
# BASEDIR/store: blobs and tag, no snapshot, no cache).
bench_cbuild_fresh_store() {
  printf 'rm -rf %q && cp -a %q %q && sync' "$2" "$1/store" "$2"
}

# bench_buildah_fresh_store BASEDIR ROOT RUNROOT: a prepare command giving
# buildah a fresh overlay store (--root ROOT --runroot RUNROOT) that holds
# only the busybox base image, pulled from BASEDIR/busybox.oci.tar. Mounts
# left under ROOT are unmounted first: Buildah 1.28 leaves a FROM-only
# build's container mounted, with the store's private bind mount of itself
# (the builds with RUN steps unmount both).
bench_buildah_fresh_store() {
  local q
  q=$(printf '%q' "$2")
  # shellcheck disable=SC2016 # $5 and $m are for the prepare script
  printf 'awk -v r=%q %s /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done; ' \
    "$2/" "'index(\$5, r) == 1 { print \$5 }'"
  printf 'rm -rf %s %q && ' "$q" "$3"
  printf '%s pull -q oci-archive:%q >/dev/null && sync' "$(bench_buildah_cmd "$2" "$3")" "$1/busybox.oci.tar"
}

# bench_buildah_cmd ROOT RUNROOT: buildah with its own overlay store.
bench_buildah_cmd() {
  printf 'buildah --root %q --runroot %q --storage-driver overlay' "$1" "$2"
}

# bench_oci_rootfs ARCHIVE DIR: unpack the first image of an OCI archive
# (cbuild save, buildah push oci-archive:) into DIR/rootfs, layer by layer
# in the manifest's order, applying whiteouts (.wh.NAME; no opaque ones),
# and copy its config to DIR/config.json: to check what a build made.
bench_oci_rootfs() {
  local archive=$1 dir=$2 digests manifest d wh name
  rm -rf "$dir"
  mkdir -p "$dir/oci" "$dir/rootfs"
  tar -xf "$archive" -C "$dir/oci" || bench_die "cannot unpack $archive"
  manifest=$(grep -o '"digest" *: *"sha256:[0-9a-f]*"' "$dir/oci/index.json" | head -n 1 | grep -o '[0-9a-f]\{64\}')
  [ -n "$manifest" ] || bench_die "$archive: no manifest in index.json"
  # The manifest names its config first, then its layers in order.
  digests=$(grep -o '"digest" *: *"sha256:[0-9a-f]*"' "$dir/oci/blobs/sha256/$manifest" | grep -o '[0-9a-f]\{64\}')
  cp "$dir/oci/blobs/sha256/$(printf '%s\n' "$digests" | head -n 1)" "$dir/config.json"
  for d in $(printf '%s\n' "$digests" | tail -n +2); do
    tar -xf "$dir/oci/blobs/sha256/$d" -C "$dir/rootfs" || bench_die "$archive: cannot unpack layer $d"
    find "$dir/rootfs" -name '.wh.*' | while read -r wh; do
      name=${wh##*/}
      name=${name#.wh.}
      rm -rf -- "${wh%/*}/${name:?}" "$wh"
    done
  done
}

# bench_umount_under DIR: lazily unmount whatever is mounted under DIR
# (Buildah 1.28 leaves a FROM-only build's container mounted): at the end of
# a benchmark, so that its scratch space can be removed.
bench_umount_under() {
  awk -v r="$1/" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" || true; done
}

# bench_cpu_median CASE: the median over the timed runs of CASE's CPU time
# (user + sys, in seconds), after bench_measure. Less sensitive than the wall
# time to other work on the machine, though not immune (caches, the
# hypervisor): a second view of a per-step cost.
bench_cpu_median() {
  local runs=$BENCH_WORK/logs/$1.runs
  local -a cpu
  [ -s "$runs" ] || bench_die "no runs recorded for case $1"
  mapfile -t cpu < <(awk '{ printf "%.3f\n", $2 + $3 }' "$runs")
  bench_stats "${cpu[@]}" | cut -d' ' -f1
}

# ---- cache benchmarks (issue 5) ----

# bench_check_runs CASE ERE COUNT WHAT: after bench_measure, check that the
# output of every run of CASE (warm-up and timed: the built-in timer keeps
# each run's output in logs/CASE.ROUND.log) has exactly COUNT lines matching
# the extended regular expression ERE; fail the benchmark otherwise, saying
# WHAT was expected. This is how a cache benchmark proves that each timed
# rebuild really was cached (cbuild --progress plain: "#N CACHED"; Buildah:
# "--> Using cache"). hyperfine keeps no output: the case is then run once
# more, untimed (prepare included), and that run is checked. Prints the
# number of runs checked.
bench_check_runs() {
  local name=$1 ere=$2 want=$3 what=$4 log got n=0
  local -a logs=()
  for log in "$BENCH_WORK/logs/$name".*.log; do
    [ -e "$log" ] && logs+=("$log")
  done
  if [ ${#logs[@]} -eq 0 ]; then
    log=$BENCH_WORK/logs/$name.check.log
    bash "$BENCH_WORK/cases/$name.prepare.sh" >"$log.prepare" 2>&1 ||
      bench_die "case $name: prepare failed in the check run (log: $log.prepare)"
    bash "$BENCH_WORK/cases/$name.sh" >"$log" 2>&1 ||
      bench_die "case $name failed in the check run (log: $log)"
    logs=("$log")
  fi
  for log in "${logs[@]}"; do
    got=$(grep -c -E -- "$ere" "$log" || true)
    [ "$got" = "$want" ] ||
      bench_die "case $name: $got lines match /$ere/ in $log, not $want: $what"
    n=$((n + 1))
  done
  printf '%s' "$n"
}

# bench_busybox_dockerfile FILE: writes the 7-step busybox Dockerfile that
# 21-busybox (cold builds) and 30-cache (rebuilds) time: FROM busybox, a RUN
# that makes files, COPY of the context's hello.txt, ENV, WORKDIR, a RUN
# that deletes a file of an earlier layer, CMD.
bench_busybox_dockerfile() {
  cat >"$1" <<'EOF'
FROM busybox
RUN mkdir -p /data/logs && echo one >/data/a && echo two >/data/b && seq 1 1000 >/data/numbers && ln -s numbers /data/link
COPY hello.txt /data/hello.txt
ENV GREETING=hello
WORKDIR /data
RUN rm /data/b && echo "$GREETING from $(pwd)" >greeting
CMD ["cat", "/data/greeting"]
EOF
}
