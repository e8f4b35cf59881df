#!/bin/bash
# 20-run-steps: per-RUN-step overhead, 20 x `RUN true` vs none, against buildah bud --runtime runc
#
# The same Dockerfile with 20 steps of `RUN true` (--quick: 5) and without
# them (FROM busybox alone), built by cbuild and by Buildah in the same run:
#
#   cbuild-0, buildah-0                FROM busybox
#   cbuild-1-none, buildah-1-none      FROM busybox + 1 x RUN true (--network=none)
#   cbuild-20, buildah-20              FROM busybox + 20 x RUN true (default network)
#   cbuild-20-none, buildah-20-none    the same with --network=none (buildah:
#                                      --network none): cbuild's default
#                                      network is slirp4netns, Buildah's CNI
#
# Per-step overhead = (median(X-20) - median(X-0)) / 20; target (issue 4):
# under 10 ms for cbuild.  It counts what the first RUN step of a build
# costs once (unpacking the base image into a snapshot, compiling the
# seccomp filter, loading the sandbox program): the marginal figure,
# (median(X-20-none) - median(X-1-none)) / 19, is what each further step
# adds, and is reported beside it. Also the ratio cbuild/buildah for the 20-step build,
# and the same per-step figure from the CPU time (user + sys), which a busy
# machine inflates less than the wall time.
#
# Every run is cold: a fresh store holding only the busybox base image, made
# untimed in the prepare step (cbuild: a copy of a store holding the image;
# Buildah: a fresh --root/--runroot with the storage driver overlay, and
# `buildah pull oci-archive:` of the same image). The base image is made
# locally from Debian's busybox-static (bench_busybox_base): no network.
# Buildah runs as `buildah bud --runtime runc --isolation oci --pull=never`
# (its defaults otherwise: no --layers).
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || bench_skip "needs root (Buildah with a native overlay store and runc)"
bench_require cbuild buildah:buildah runc:runc slirp4netns:slirp4netns
work=$BENCH_WORK
if [ "$BENCH_QUICK" = 1 ]; then steps=5; else steps=20; fi

bench_log "making the busybox base image (untimed)"
base=$work/base
bench_busybox_base "$base"

# The two contexts: only a Dockerfile each.
mkdir -p "$work/ctx-0" "$work/ctx-1" "$work/ctx-$steps"
printf 'FROM busybox\n' >"$work/ctx-0/Dockerfile"
printf 'FROM busybox\nRUN true\n' >"$work/ctx-1/Dockerfile"
{
  printf 'FROM busybox\n'
  for _ in $(seq "$steps"); do printf 'RUN true\n'; done
} >"$work/ctx-$steps/Dockerfile"

q() { printf '%q' "$1"; }
for n in 0 1 "$steps"; do
  for net in default none; do
    # One 0-step case: without a RUN step the network setting changes nothing;
    # one 1-step case, for the marginal figure.
    if [ "$n" = 0 ] && [ $net = none ]; then continue; fi
    if [ "$n" = 1 ] && [ $net = default ]; then continue; fi
    suffix=$n
    [ $net = default ] || suffix=$suffix-none
    root=$work/cbuild-$suffix.root
    bench_case "cbuild-$suffix" \
      "$(q "$CBUILD") build -q --root $(q "$root") -t steps --network=$net $(q "$work/ctx-$n")" \
      "$(bench_cbuild_fresh_store "$base" "$root")"
    root=$work/buildah-$suffix.root runroot=$work/buildah-$suffix.runroot
    netflag=""
    [ $net = default ] || netflag="--network none"
    bench_case "buildah-$suffix" \
      "$(bench_buildah_cmd "$root" "$runroot") bud -q --runtime runc --isolation oci --pull=never $netflag -t steps $(q "$work/ctx-$n")" \
      "$(bench_buildah_fresh_store "$base" "$root" "$runroot")"
  done
done
bench_note "$steps x RUN true vs FROM busybox alone; every run on a fresh store holding only the busybox base (made untimed in the prepare step); buildah: --storage-driver overlay (native), bud --runtime runc --isolation oci, no --layers"
bench_measure

# Per-step overhead in ms: (median(A) - median(B)) / steps.
per_step() {
  awk -v a="$(bench_median "$1")" -v b="$(bench_median "$2")" -v n="$steps" 'BEGIN { printf "%.1f", (a - b) / n * 1000 }'
}
bench_metric cbuild.run-step-overhead "$(per_step "cbuild-$steps" cbuild-0)" ms '<' 10
bench_metric cbuild.run-step-overhead-none "$(per_step "cbuild-$steps-none" cbuild-0)" ms '<' 10
marginal() {
  awk -v a="$(bench_median "$1")" -v b="$(bench_median "$2")" -v n="$steps" 'BEGIN { printf "%.1f", (a - b) / (n - 1) * 1000 }'
}
bench_metric cbuild.run-step-marginal-none "$(marginal "cbuild-$steps-none" cbuild-1-none)" ms
bench_metric buildah.run-step-marginal-none "$(marginal "buildah-$steps-none" buildah-1-none)" ms
bench_metric buildah.run-step-overhead "$(per_step "buildah-$steps" buildah-0)" ms
bench_metric buildah.run-step-overhead-none "$(per_step "buildah-$steps-none" buildah-0)" ms
# The same from the CPU time (user + sys of every process of the build, less
# the 0-step build's): what a step costs, less what waiting on a busy
# machine adds to the wall time.
cpu_per_step() {
  awk -v a="$(bench_cpu_median "$1")" -v b="$(bench_cpu_median "$2")" -v n="$steps" 'BEGIN { printf "%.1f", (a - b) / n * 1000 }'
}
bench_metric cbuild.run-step-cpu "$(cpu_per_step "cbuild-$steps" cbuild-0)" ms
bench_metric cbuild.run-step-cpu-none "$(cpu_per_step "cbuild-$steps-none" cbuild-0)" ms
bench_metric buildah.run-step-cpu "$(cpu_per_step "buildah-$steps" buildah-0)" ms
bench_metric buildah.run-step-cpu-none "$(cpu_per_step "buildah-$steps-none" buildah-0)" ms
bench_ratio "cbuild-$steps" "buildah-$steps"
bench_ratio "cbuild-$steps-none" "buildah-$steps-none"
bench_ratio cbuild-0 buildah-0

# Both builders recorded every step in the image's history (that each step
# really exec'd /bin/sh was checked once by hand, with strace).
got=$("$CBUILD" inspect --root "$work/cbuild-$steps.root" steps | grep -c '"created_by": *"RUN true"' || true)
[ "$got" = "$steps" ] || bench_die "cbuild's image records $got RUN steps, not $steps"
got=$($(bench_buildah_cmd "$work/buildah-$steps.root" "$work/buildah-$steps.runroot") inspect --type image \
  --format '{{range .OCIv1.History}}{{println .CreatedBy}}{{end}}' steps | grep -c '^/bin/sh -c true$' || true)
[ "$got" = "$steps" ] || bench_die "buildah's image records $got RUN steps, not $steps"
bench_umount_under "$work"
