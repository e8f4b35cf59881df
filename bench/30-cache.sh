#!/bin/bash
# 30-cache: cached rebuilds of the 7-step busybox Dockerfile, unchanged and after a COPY'd file changed, against buildah bud --layers
#
# The Dockerfile of 21-busybox (FROM busybox; RUN; COPY hello.txt; ENV;
# WORKDIR; RUN; CMD), rebuilt by cbuild and by `buildah bud --layers` in the
# same run. Every timed run starts from a store into which the prepare step
# (untimed) has just built it once, on a fresh store that held only the
# busybox base image (as in 21-busybox):
#
#   cbuild-cached, buildah-cached                 nothing changed: every step cached
#   cbuild-changed, buildah-changed               the prepare step then rewrites the
#                                                 COPY'd hello.txt (same size, new
#                                                 content): the COPY and the steps
#                                                 after it are rebuilt (default network)
#   cbuild-changed-nonet, buildah-changed-nonet   the same with --network=none
#
# Targets (issue 5): cbuild-cached <= 0.1 x buildah-cached, cbuild-changed
# <= 0.25 x buildah-changed. Buildah runs as `buildah bud --layers --runtime
# runc --isolation oci --pull=never` on its own overlay store. The output of
# every run (warm-up included) is checked afterwards: cbuild's plain progress
# must show CACHED for the 6 steps (changed: the first RUN only), Buildah's
# "Using cache" as often; the changed builds' images must hold the new file.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || bench_skip "needs root (Buildah with a native overlay store and runc)"
bench_require cbuild buildah:buildah runc:runc slirp4netns:slirp4netns
work=$BENCH_WORK

# The context first: it must be older than the stat cache's 2 s "racily
# clean" window when the prepare build records it, as a real context is, so
# that the timed build of the unchanged one re-checks it by stat() alone.
old='hello from the build context\n'
new='HELLO FROM THE BUILD CONTEXT\n' # the same size: only the content changes
for c in cached changed; do
  rm -rf "$work/ctx-$c"
  mkdir -p "$work/ctx-$c"
  # shellcheck disable=SC2059 # the format is ours
  printf "$old" >"$work/ctx-$c/hello.txt"
  bench_busybox_dockerfile "$work/ctx-$c/Dockerfile"
done
t0=$(bench_now)

bench_log "making the busybox base image (untimed)"
base=$work/base
bench_busybox_base "$base"
# The rest of the 2 s, if making the base image was quicker.
sleep "$(awk -v t0="$t0" -v t1="$(bench_now)" 'BEGIN { s = 2.5 - (t1 - t0); print (s > 0 ? s : 0) }')"

q() { printf '%q' "$1"; }
for name in cached changed changed-nonet; do
  ctx=$work/ctx-${name%-nonet}
  net=default netflag=""
  if [ "$name" = changed-nonet ]; then net=none netflag="--network none"; fi
  # The prepare step: a fresh store with the base image, one build, then
  # (changed) the new content. The "changed" contexts get the old content
  # back first, as the previous run changed it.
  reset="" change=""
  if [ "$name" != cached ]; then
    reset="printf $(q "$old") >$(q "$ctx/hello.txt") && "
    change=" && printf $(q "$new") >$(q "$ctx/hello.txt")"
  fi

  root=$work/cbuild-$name.root
  build="$(q "$CBUILD") build --progress plain --root $(q "$root") -t seven --network=$net $(q "$ctx")"
  bench_case "cbuild-$name" "$build" \
    "$reset$(bench_cbuild_fresh_store "$base" "$root") && $build$change && sync"

  root=$work/buildah-$name.root runroot=$work/buildah-$name.runroot
  build="$(bench_buildah_cmd "$root" "$runroot") bud --layers --runtime runc --isolation oci --pull=never $netflag -t seven $(q "$ctx")"
  bench_case "buildah-$name" "$build" \
    "$reset$(bench_buildah_fresh_store "$base" "$root" "$runroot") && $build$change && sync"
done
bench_note "7-step busybox Dockerfile rebuilt; before every timed run (untimed): a fresh store holding only the busybox base, one build into it, then for 'changed' a new content of the same size for the COPY'd hello.txt; buildah: --storage-driver overlay (native), bud --layers --runtime runc --isolation oci --pull=never"
bench_measure

bench_ratio cbuild-cached buildah-cached '<=' 0.1
bench_ratio cbuild-changed buildah-changed '<=' 0.25
bench_ratio cbuild-changed-nonet buildah-changed-nonet '<=' 0.25
bench_metric cbuild-cached.cpu "$(bench_cpu_median cbuild-cached)" s
bench_metric buildah-cached.cpu "$(bench_cpu_median buildah-cached)" s
bench_metric cbuild-changed.cpu "$(bench_cpu_median cbuild-changed)" s
bench_metric buildah-changed.cpu "$(bench_cpu_median buildah-changed)" s
bench_metric cbuild-changed-nonet.cpu "$(bench_cpu_median cbuild-changed-nonet)" s
bench_metric buildah-changed-nonet.cpu "$(bench_cpu_median buildah-changed-nonet)" s
# CPU ratios: what a busy machine inflates much less than the wall time.
cpu_ratio() {
  awk -v a="$(bench_cpu_median "$1")" -v b="$(bench_cpu_median "$2")" 'BEGIN { printf "%.4f", a / b }'
}
bench_metric cpu-ratio.cached "$(cpu_ratio cbuild-cached buildah-cached)" x
bench_metric cpu-ratio.changed "$(cpu_ratio cbuild-changed buildah-changed)" x
bench_metric cpu-ratio.changed-nonet "$(cpu_ratio cbuild-changed-nonet buildah-changed-nonet)" x

# Every run's output (untimed): were the rebuilds cached as they should be?
n=$(bench_check_runs cbuild-cached '^#[0-9]+ CACHED$' 6 "every step cached")
bench_check_runs buildah-cached '^--> Using cache ' 6 "every step cached" >/dev/null
for name in changed changed-nonet; do
  bench_check_runs "cbuild-$name" '^#[0-9]+ CACHED$' 1 "only the first RUN cached" >/dev/null
  bench_check_runs "buildah-$name" '^--> Using cache ' 1 "only the first RUN cached" >/dev/null
done

# The changed builds' images hold the new file (untimed, last run's stores).
check_changed() {
  local who=$1 archive=$2 dir=$3 r
  bench_oci_rootfs "$archive" "$dir"
  r=$dir/rootfs
  # shellcheck disable=SC2059 # the format is ours
  cmp -s "$r/data/hello.txt" <(printf "$new") || bench_die "$who: /data/hello.txt is not the changed file"
  [ "$(cat "$r/data/greeting" 2>/dev/null)" = "hello from /data" ] || bench_die "$who: no /data/greeting"
  [ ! -e "$r/data/b" ] || bench_die "$who: /data/b, deleted by the last RUN, is still there"
  [ "$(wc -l <"$r/data/numbers" 2>/dev/null)" = 1000 ] || bench_die "$who: /data/numbers is not 1..1000"
}
for name in changed changed-nonet; do
  "$CBUILD" save --root "$work/cbuild-$name.root" -o "$work/check-cbuild-$name.tar" seven >&2 ||
    bench_die "cbuild save of the built image failed"
  check_changed "cbuild-$name" "$work/check-cbuild-$name.tar" "$work/check-cbuild-$name"
  rm -f "$work/check-buildah-$name.tar"
  $(bench_buildah_cmd "$work/buildah-$name.root" "$work/buildah-$name.runroot") push -q seven \
    "oci-archive:$work/check-buildah-$name.tar" >&2 || bench_die "buildah push of the built image failed"
  check_changed "buildah-$name" "$work/check-buildah-$name.tar" "$work/check-buildah-$name"
done
bench_note "checked after the runs, in each of the $n runs of every case: cbuild's plain progress shows CACHED for all 6 steps (changed: for the first RUN only) and Buildah prints 'Using cache' as often; the changed builds' images hold the new hello.txt"
bench_umount_under "$work"
