#!/bin/bash
# 31-cache-context: cached rebuild of COPY . /app over an unchanged 20,000-file context, against buildah bud --layers
#
# `FROM scratch` + `COPY . /app` over the generated context of 10-copy-layer
# (bench_context 1024 20000: about 1 GiB in 20,000 files; --quick: 100 MiB
# in 2,000), built once into a store (untimed, before the runs), then
# rebuilt unchanged, timed, by cbuild and by `buildah bud --layers`:
#
#   cbuild-ctx          the cached rebuild: the context is re-checked through
#                       the stat cache, (dev, inode, size, mtime, ctime) ->
#                       digest, by stat() alone
#   cbuild-ctx-nostat   the same with the stat cache deleted in the prepare
#                       step: every file is read and hashed again (what the
#                       stat cache saves; no target)
#   buildah-ctx         buildah bud --layers --runtime runc --isolation oci
#                       --pull=never: Buildah hashes the whole context again
#
# Target (issue 5): "well under a second": median of cbuild-ctx < 1 s. The
# ratio to Buildah is shown without a target. Every run must hit the cache
# (checked from each run's output, untimed, after the runs). The page cache
# is warm: the untimed first builds have just read the whole context.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || bench_skip "needs root (Buildah with a native overlay store)"
bench_require cbuild buildah:buildah runc:runc
work=$BENCH_WORK
if [ "$BENCH_QUICK" = 1 ]; then mib=100 files=2000; else mib=1024 files=20000; fi
ctx=$(bench_context "$mib" "$files")
printf 'FROM scratch\nCOPY . /app\n' >"$work/Dockerfile"
nfiles=$(find "$ctx" -type f | wc -l)

q() { printf '%q' "$1"; }
root=$work/cbuild.root
broot=$work/buildah.root brunroot=$work/buildah.runroot
cbuild_cmd="$(q "$CBUILD") build --progress plain --root $(q "$root") -t ctx -f $(q "$work/Dockerfile") $(q "$ctx")"
buildah_cmd="$(bench_buildah_cmd "$broot" "$brunroot") bud --layers --runtime runc --isolation oci --pull=never -t ctx -f $(q "$work/Dockerfile") $(q "$ctx")"

# The first builds, untimed: the store each rebuild starts from. A timed
# rebuild hits the cache and leaves the store as it was (the same tag on
# the same image), so they are made once, not before every run.
bench_log "first builds into fresh stores (untimed; Buildah's takes a minute or more at full size)"
bench_umount_under "$work"
rm -rf "$root" "$broot" "$brunroot"
t0=$(bench_now)
eval "$cbuild_cmd" >"$work/first-cbuild.log" 2>&1 || { tail -n 20 "$work/first-cbuild.log" >&2; bench_die "cbuild's first build failed"; }
t1=$(bench_now)
eval "$buildah_cmd" >"$work/first-buildah.log" 2>&1 || { tail -n 20 "$work/first-buildah.log" >&2; bench_die "buildah's first build failed"; }
t2=$(bench_now)
sync
bench_note "first (cold) builds, untimed, once: cbuild $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s, buildah --layers $(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }') s"

bench_case cbuild-ctx "$cbuild_cmd" "sync"
bench_case cbuild-ctx-nostat "$cbuild_cmd" "rm -rf $(q "$root/cache/stat") && sync"
bench_case buildah-ctx "$buildah_cmd" "sync"
bench_note "FROM scratch + COPY . /app over an unchanged context of $mib MiB in $nfiles files, rebuilt from a store holding its first build; cbuild-ctx-nostat: the same with the stat cache deleted before each run; buildah: --storage-driver overlay (native), bud --layers --runtime runc --isolation oci --pull=never"
bench_measure

bench_metric cbuild.context-recheck "$(printf %.3f "$(bench_median cbuild-ctx)")" s '<' 1
bench_metric cbuild.context-recheck-cpu "$(bench_cpu_median cbuild-ctx)" s
bench_metric cbuild.context-rehash "$(printf %.3f "$(bench_median cbuild-ctx-nostat)")" s
bench_metric cbuild.context-rehash-cpu "$(bench_cpu_median cbuild-ctx-nostat)" s
bench_metric buildah.context-recheck "$(printf %.3f "$(bench_median buildah-ctx)")" s
bench_metric buildah.context-recheck-cpu "$(bench_cpu_median buildah-ctx)" s
bench_ratio cbuild-ctx buildah-ctx
bench_ratio cbuild-ctx-nostat buildah-ctx

n=$(bench_check_runs cbuild-ctx '^#[0-9]+ CACHED$' 1 "the COPY cached")
bench_check_runs cbuild-ctx-nostat '^#[0-9]+ CACHED$' 1 "the COPY cached" >/dev/null
bench_check_runs buildah-ctx '^--> Using cache ' 1 "the COPY cached" >/dev/null
[ -n "$(find "$root/cache/stat" -type f -size +0 2>/dev/null | head -n 1)" ] ||
  bench_die "no stat cache in $root/cache/stat after the runs"
bench_note "checked after the runs, in each of the $n runs of every case: cbuild's plain progress shows the COPY CACHED, Buildah prints 'Using cache'"
bench_umount_under "$work"
