#!/bin/bash
# 10-copy-layer: COPY of a 1 GiB context into an OCI tarball vs tar | gzip/zstd | sha256sum
#
# `COPY . /app` of a large context into an OCI tarball, against the shell
# pipelines that do the same work: tar, compress, hash.
#
#   cbuild-gzip     cbuild build ... --compression gzip  (cbuild's default level)
#   gzip-pipeline   tar -cf - CTX | gzip -1 | sha256sum
#   cbuild-zstd     cbuild build ... --compression zstd  (cbuild's default level)
#   zstd-pipeline   tar -cf - CTX | zstd -T0 -1 | sha256sum
#   cbuild-gzip-l1, cbuild-zstd-l1: the same with --compression-level 1, level
#                   for level with the pipelines (figures only, no target)
#
# Context: ~1 GiB in 20,000 files (--quick: ~100 MiB in 2,000), half
# source-like text, half random bytes, generated once under $BENCH_DIR.
# Each cbuild run gets a fresh, empty --root and writes its tarball next to it
# on the same disk; that cleanup, and a sync so that one run's writeback does
# not land in the next one's time, happen outside the timed part.
# Targets (issue 3): gzip layer >= 2x faster than the gzip pipeline, zstd
# within 1.2x of the zstd pipeline, peak RSS < 64 MiB.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

bench_require cbuild tar gzip zstd:zstd sha256sum:coreutils perl

if [ "$BENCH_QUICK" = 1 ]; then
  mib=100 files=2000
else
  mib=1024 files=20000
fi
ctx=$(bench_context "$mib" "$files")
work=$BENCH_WORK
printf 'FROM scratch\nCOPY . /app\n' >"$work/Dockerfile"

# The page cache is warmed, not dropped (dropping needs root and disturbs the
# machine): one untimed read of the whole context first. The same untimed
# passes measure what each pipeline's output weighs.
bench_log "warming the page cache: tar -cf - CTX > /dev/null"
tar_bytes=$(tar -C "$ctx" -cf - . | wc -c)
bench_note "context: $ctx, $files files, $((tar_bytes >> 20)) MiB as a tar; page cache warmed by one untimed tar -cf - CTX > /dev/null, not dropped"
bench_log "measuring the pipelines' output sizes (untimed)"
gz_bytes=$(tar -C "$ctx" -cf - . | gzip -1 | wc -c)
zst_bytes=$(tar -C "$ctx" -cf - . | zstd -q -T0 -1 | wc -c)

q() { printf '%q' "$1"; }
bench_input_bytes "$tar_bytes"
for alg in gzip zstd; do
  for lvl in default l1; do
    name=cbuild-$alg
    flags="--compression $alg"
    if [ $lvl = l1 ]; then
      name=$name-l1
      flags="$flags --compression-level 1"
    fi
    bench_case "$name" \
      "$(q "$CBUILD") build -q --root $(q "$work/root-$name") -f $(q "$work/Dockerfile") -o type=oci,dest=$(q "$work/$name.tar") $flags $(q "$ctx")" \
      "rm -rf $(q "$work/root-$name") $(q "$work/$name.tar"); sync"
  done
  if [ $alg = gzip ]; then
    bench_case gzip-pipeline "tar -C $(q "$ctx") -cf - . | gzip -1 | sha256sum" "sync"
  else
    bench_case zstd-pipeline "tar -C $(q "$ctx") -cf - . | zstd -q -T0 -1 | sha256sum" "sync"
  fi
done
bench_note "cbuild runs with a fresh --root each time and writes blob + tarball to $work (same disk); the pipelines write nothing"
bench_measure

# The largest blob in the tarball is the layer.
layer_bytes() {
  tar -tvf "$work/$1.tar" | awk '$6 ~ /^blobs\/sha256\// && $3 > m { m = $3 } END { print m + 0 }'
}
mib_of() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

bench_ratio cbuild-gzip gzip-pipeline '<=' 0.5
bench_ratio cbuild-zstd zstd-pipeline '<=' 1.2
bench_ratio cbuild-gzip-l1 gzip-pipeline
bench_ratio cbuild-zstd-l1 zstd-pipeline
for name in cbuild-gzip cbuild-zstd cbuild-gzip-l1 cbuild-zstd-l1; do
  bench_metric "$name.peak-rss" "$(mib_of $(($(bench_rss_kib "$name") * 1024)))" MiB '<' 64
done
bench_metric tar.size "$(mib_of "$tar_bytes")" MiB
bench_metric gzip-pipeline.size "$(mib_of "$gz_bytes")" MiB
bench_metric zstd-pipeline.size "$(mib_of "$zst_bytes")" MiB
for name in cbuild-gzip cbuild-gzip-l1 cbuild-zstd cbuild-zstd-l1; do
  b=$(layer_bytes "$name")
  # A layer much smaller than the pipeline's output, or as big as the tar,
  # means the run did not do the same work: say so loudly.
  [ "$b" -gt $((tar_bytes / 5)) ] || bench_die "$name: layer of $b bytes is too small for a $tar_bytes-byte tar"
  bench_metric "$name.size" "$(mib_of "$b")" MiB
done
