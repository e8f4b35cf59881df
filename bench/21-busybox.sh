#!/bin/bash
# 21-busybox: cold build of a 7-step busybox Dockerfile, against buildah bud --runtime runc
#
# FROM busybox; RUN that creates files; COPY of a small context file; ENV;
# WORKDIR; a RUN that deletes a file made in an earlier layer; CMD. Built by
# cbuild and by Buildah in the same run, each run on a fresh store that holds
# only the busybox base image (made untimed in the prepare step: a copy of a
# cbuild store holding it; for Buildah a fresh --root/--runroot, storage
# driver overlay, and `buildah pull oci-archive:` of the same image):
#
#   cbuild-cold, buildah-cold     default network (cbuild: slirp4netns; Buildah: CNI)
#   cbuild-nonet, buildah-nonet   --network=none (buildah: --network none)
#
# Target (issue 4): cbuild-cold <= 0.25 x buildah-cold. The base image is
# made locally from Debian's busybox-static (bench_busybox_base): no network.
# Buildah runs as `buildah bud --runtime runc --isolation oci --pull=never`
# (its defaults otherwise: no --layers, so it commits one layer at the end).
# After the runs, both images are unpacked and checked (untimed): the RUN
# steps ran, the whiteout hides the deleted file, ENV/WORKDIR/CMD are set.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || bench_skip "needs root (Buildah with a native overlay store and runc)"
bench_require cbuild buildah:buildah runc:runc slirp4netns:slirp4netns
work=$BENCH_WORK

bench_log "making the busybox base image (untimed)"
base=$work/base
bench_busybox_base "$base"

ctx=$work/ctx
rm -rf "$ctx"
mkdir -p "$ctx"
printf 'hello from the build context\n' >"$ctx/hello.txt"
bench_busybox_dockerfile "$ctx/Dockerfile"

q() { printf '%q' "$1"; }
for net in default none; do
  name=cold
  [ $net = default ] || name=nonet
  root=$work/cbuild-$name.root
  bench_case "cbuild-$name" \
    "$(q "$CBUILD") build -q --root $(q "$root") -t seven --network=$net $(q "$ctx")" \
    "$(bench_cbuild_fresh_store "$base" "$root")"
  root=$work/buildah-$name.root runroot=$work/buildah-$name.runroot
  netflag=""
  [ $net = default ] || netflag="--network none"
  bench_case "buildah-$name" \
    "$(bench_buildah_cmd "$root" "$runroot") bud -q --runtime runc --isolation oci --pull=never $netflag -t seven $(q "$ctx")" \
    "$(bench_buildah_fresh_store "$base" "$root" "$runroot")"
done
bench_note "7-step busybox Dockerfile (RUN, COPY, ENV, WORKDIR, RUN deleting a file of an earlier layer, CMD); every run on a fresh store holding only the busybox base (made untimed in the prepare step); buildah: --storage-driver overlay (native), bud --runtime runc --isolation oci, no --layers"
bench_measure

bench_ratio cbuild-cold buildah-cold '<=' 0.25
bench_ratio cbuild-nonet buildah-nonet '<=' 0.25

# What each builder made, from the last run's store (untimed).
check_image() {
  local who=$1 dir=$2 r
  r=$dir/rootfs
  [ "$(cat "$r/data/a" 2>/dev/null)" = one ] || bench_die "$who: /data/a is not 'one': the first RUN did not run"
  [ "$(wc -l <"$r/data/numbers" 2>/dev/null)" = 1000 ] || bench_die "$who: /data/numbers is not 1..1000"
  [ -L "$r/data/link" ] || bench_die "$who: /data/link is not a symlink"
  cmp -s "$r/data/hello.txt" "$ctx/hello.txt" || bench_die "$who: /data/hello.txt is not the context's file"
  [ ! -e "$r/data/b" ] || bench_die "$who: /data/b, deleted by the last RUN, is still there"
  [ "$(cat "$r/data/greeting" 2>/dev/null)" = "hello from /data" ] ||
    bench_die "$who: /data/greeting is '$(cat "$r/data/greeting" 2>/dev/null)', not 'hello from /data'"
  grep -q '"GREETING=hello"' "$dir/config.json" || bench_die "$who: no GREETING=hello in the config"
  grep -q '"WorkingDir" *: *"/data"' "$dir/config.json" || bench_die "$who: WorkingDir is not /data"
  grep -q '"Cmd" *: *\[ *"cat", *"/data/greeting" *\]' "$dir/config.json" || bench_die "$who: Cmd is not cat /data/greeting"
}
"$CBUILD" save --root "$work/cbuild-cold.root" -o "$work/check-cbuild.tar" seven >&2 ||
  bench_die "cbuild save of the built image failed"
bench_oci_rootfs "$work/check-cbuild.tar" "$work/check-cbuild"
check_image cbuild "$work/check-cbuild"
layers=$(grep -o '"sha256:[0-9a-f]*"' "$work/check-cbuild/config.json" | wc -l)
rm -f "$work/check-buildah.tar"
$(bench_buildah_cmd "$work/buildah-cold.root" "$work/buildah-cold.runroot") push -q seven "oci-archive:$work/check-buildah.tar" >&2 ||
  bench_die "buildah push of the built image failed"
bench_oci_rootfs "$work/check-buildah.tar" "$work/check-buildah"
check_image buildah "$work/check-buildah"
blayers=$(grep -o '"sha256:[0-9a-f]*"' "$work/check-buildah/config.json" | wc -l)
bench_note "images checked after the runs: both hold the RUN steps' files, the COPY'd file, the whiteout of /data/b, ENV, WORKDIR and CMD; layers: cbuild $layers (one per changing step), buildah $blayers (base + one committed at the end)"
bench_umount_under "$work"
