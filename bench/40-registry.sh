#!/bin/bash
# 40-registry: push and pull of a 500 MB image to a loopback registry, against skopeo copy
#
# An image of incompressible data, FROM scratch + 5 COPY steps of 100 MiB
# each from /dev/urandom (--quick: 5 x 10 MiB), built untimed by cbuild with
# gzip level 1, is pushed to and pulled from Debian's docker-registry
# (distribution 2.8.2) on 127.0.0.1 by cbuild and by `skopeo copy`, in the
# same run. The benchmark starts its own registries on free ports, with a
# config it writes (storage under its work dir, never the packaged config;
# the REGISTRY_* variables, which override a config, unset), and stops them
# by PID when it exits:
#
#   cbuild-push   cbuild push --root STORE -q big 127.0.0.1:PORT/cb-push:1
#   skopeo-push   skopeo copy --dest-tls-verify=false oci:LAYOUT:latest
#                 docker://127.0.0.1:PORT/sk-push:1 (LAYOUT: `cbuild save` of
#                 the same image, extracted: the very same blobs)
#   cbuild-pull   cbuild pull --root FRESH -q 127.0.0.1:PORT2/img:1
#   skopeo-pull   skopeo copy --src-tls-verify=false
#                 docker://127.0.0.1:PORT2/img:1 oci:FRESH:img
#
# Before every push (untimed) the push registry is stopped, its storage
# wiped and it is started again, and cbuild's blob-sources cache is removed:
# each push uploads every blob into an empty registry (no blob found by
# HEAD, no cross-repository mount). A second registry holds the image,
# pushed once by skopeo, untimed, for the pulls; before every pull its
# destination is removed. Then `sync`, so that one run's writeback does not
# land in the next one's time.
#
# Targets (issue 6): cbuild-push <= 1.0 x skopeo-push, cbuild-pull <= 1.0 x
# skopeo-pull. Checked after the runs (untimed): every cbuild run printed the
# store's manifest digest; `skopeo inspect` of both pushed images gives that
# digest; a push into the empty registry stored every blob; the pulled store
# lists the image and `cbuild save` gives it back with that digest; skopeo's
# pulled layout names it.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

bench_require cbuild skopeo:skopeo docker-registry:docker-registry curl:curl
work=$BENCH_WORK

layers=5 mib=100
[ "$BENCH_QUICK" != 1 ] || mib=10
case $work in *:*) bench_die "the work dir \"$work\" holds a ':', which skopeo's oci: names cannot" ;; esac

# ---- the registries ----

# Started and stopped by a small script of their own, as the prepare steps
# (separate bash processes) restart them too. DIR holds config.yml, port,
# token, pid, log and data/ (the storage).
cat >"$work/registry.sh" <<'EOF'
#!/bin/bash
# registry.sh start|restart|stop DIR: a docker-registry for bench/40-registry.sh
# (which writes this file and DIR/config.yml). restart also empties DIR/data.
set -euo pipefail
what=$1 dir=$2

# Is PID running (not a zombie)?
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ]
}
# Is PID our registry? A zombie's cmdline is empty.
ours() {
  [ "$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null)" = "docker-registry serve $dir/config.yml " ]
}

stop() {
  local pid
  [ -s "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  rm -f "$dir/pid"
  ours "$pid" || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    ours "$pid" || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}

start() {
  local port token pid v
  port=$(cat "$dir/port")
  token=$(cat "$dir/token")
  mkdir -p "$dir/data"
  # docker-registry reads REGISTRY_* variables as overrides of its config
  for v in $(compgen -e); do
    case $v in REGISTRY_*) unset "$v" ;; esac
  done
  docker-registry serve "$dir/config.yml" >>"$dir/log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  # Ready when /v2/ answers with this registry's own header (not another
  # server's on the same port).
  for _ in $(seq 1 200); do
    if ! running "$pid"; then
      rm -f "$dir/pid"
      tail -n 3 "$dir/log" >&2
      echo "registry.sh: docker-registry exited at start (log: $dir/log)" >&2
      exit 1
    fi
    if curl -sS --max-time 2 -o /dev/null -D - "http://127.0.0.1:$port/v2/" 2>/dev/null |
      tr -d '\r' | grep -ix "x-bench-registry: $token" >/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  stop
  echo "registry.sh: no answer from docker-registry on 127.0.0.1:$port in 10 s (log: $dir/log)" >&2
  exit 1
}

case $what in
  start) start ;;
  restart) stop && rm -rf "$dir/data" && start ;;
  stop) stop ;;
  *) echo "registry.sh: start, restart or stop, not \"$what\"" >&2; exit 2 ;;
esac
EOF

stop_registries() {
  local d
  for d in "$work/reg-push" "$work/reg-pull"; do
    [ ! -d "$d" ] || bash "$work/registry.sh" stop "$d" || true
  done
}
trap stop_registries EXIT
trap 'exit 130' INT TERM

# A TCP port on which nothing listens on 127.0.0.1.
free_port() {
  local p i
  for i in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      printf '%s' "$p"
      return 0
    fi
  done
  return 1
}

# start_registry DIR: a new registry with empty storage DIR/data on a free
# port (written to DIR/port); another port is tried if the start fails.
start_registry() {
  local dir=$1 try port token
  # one left running by an earlier run that was killed
  [ ! -d "$dir" ] || bash "$work/registry.sh" stop "$dir" || true
  rm -rf "$dir"
  mkdir -p "$dir"
  token=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$token" >"$dir/token"
  for try in 1 2 3 4 5; do
    port=$(free_port) || bench_die "no free TCP port found on 127.0.0.1"
    printf '%s\n' "$port" >"$dir/port"
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: $token
  headers:
    X-Bench-Registry: [$token]
EOF
    if bash "$work/registry.sh" start "$dir"; then
      return 0
    fi
    bench_log "docker-registry did not start on port $port (try $try of 5)"
  done
  bench_die "could not start docker-registry (log: $dir/log)"
}

# ---- the image (untimed) ----

# The context is kept under $BENCH_DIR and reused while its stamp matches;
# the image is built anew by the binary under test.
ctx=$BENCH_DIR/registry-context-${layers}x${mib}m
want="v1 $layers files of $mib MiB, /dev/urandom"
if [ -d "$ctx" ] && [ "$(cat "$ctx.stamp" 2>/dev/null)" = "$want" ]; then
  bench_log "reusing context $ctx"
else
  bench_log "generating context $ctx ($layers x $mib MiB of random bytes; once)"
  rm -rf "$ctx" "$ctx.tmp" "$ctx.stamp"
  mkdir -p "$ctx.tmp"
  printf 'FROM scratch\n' >"$ctx.tmp/Dockerfile"
  for i in $(seq 1 "$layers"); do
    head -c $((mib * 1024 * 1024)) /dev/urandom >"$ctx.tmp/layer$i.bin"
    printf 'COPY layer%d.bin /data/layer%d.bin\n' "$i" "$i" >>"$ctx.tmp/Dockerfile"
  done
  mv "$ctx.tmp" "$ctx"
  printf '%s\n' "$want" >"$ctx.stamp"
fi

store=$work/store layout=$work/layout
bench_log "building the image (untimed): $layers layers of $mib MiB, gzip level 1"
rm -rf "$store" "$layout" "$work/big.tar"
"$CBUILD" build -q --root "$store" -t big --compression gzip --compression-level 1 "$ctx" >&2 ||
  bench_die "building the image failed"
"$CBUILD" save --root "$store" big -o "$work/big.tar" >&2 || bench_die "cbuild save of the image failed"
mkdir -p "$layout"
tar -xf "$work/big.tar" -C "$layout" || bench_die "cannot unpack $work/big.tar"
rm -f "$work/big.tar"
# The manifest's digest and the tag skopeo finds it by, from index.json.
# first_match ERE FILE: the first string matching ERE in FILE.
first_match() { grep -oE -- "$1" "$2" | awk 'NR == 1'; }
digest=$(first_match '"digest" *: *"sha256:[0-9a-f]{64}"' "$layout/index.json" | grep -oE 'sha256:[0-9a-f]{64}') ||
  bench_die "no manifest digest in $layout/index.json"
ref=$(first_match '"org.opencontainers.image.ref.name" *: *"[^"]*"' "$layout/index.json" | sed 's/.*: *"//; s/"$//')
[ -n "$ref" ] || bench_die "no org.opencontainers.image.ref.name in $layout/index.json"
[ "$(grep -oE '"digest" *: *"sha256:[0-9a-f]{64}"' "$layout/blobs/sha256/${digest#sha256:}" | wc -l)" = $((layers + 1)) ] ||
  bench_die "the manifest $digest does not name a config and $layers layers"
bytes=$(du -sb "$layout/blobs/sha256" | cut -f1)
bench_input_bytes "$bytes"

# skopeo with a policy of its own: the host's policy.json is not ours to rely on.
policy=$work/policy.json
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$policy"

bench_log "starting the registries"
start_registry "$work/reg-push"
start_registry "$work/reg-pull"
push_port=$(cat "$work/reg-push/port") pull_port=$(cat "$work/reg-pull/port")
bench_log "registries: push on 127.0.0.1:$push_port, pull on 127.0.0.1:$pull_port"

q() { printf '%q' "$1"; }
skopeo="skopeo --policy $(q "$policy")"
$skopeo copy -q --dest-tls-verify=false "oci:$layout:$ref" "docker://127.0.0.1:$pull_port/img:1" >&2 ||
  bench_die "skopeo could not push the image to the pull registry"

# ---- the cases ----

restart="bash $(q "$work/registry.sh") restart $(q "$work/reg-push")"
bench_case cbuild-push \
  "$(q "$CBUILD") push --root $(q "$store") -q big 127.0.0.1:$push_port/cb-push:1" \
  "rm -rf $(q "$store/cache/blob-sources") && $restart && sync"
bench_case skopeo-push \
  "$skopeo copy -q --dest-tls-verify=false $(q "oci:$layout:$ref") docker://127.0.0.1:$push_port/sk-push:1" \
  "$restart && sync"
bench_case cbuild-pull \
  "$(q "$CBUILD") pull --root $(q "$work/pulled-store") -q 127.0.0.1:$pull_port/img:1" \
  "rm -rf $(q "$work/pulled-store") && sync"
bench_case skopeo-pull \
  "$skopeo copy -q --src-tls-verify=false docker://127.0.0.1:$pull_port/img:1 $(q "oci:$work/pulled-oci:img")" \
  "rm -rf $(q "$work/pulled-oci") && sync"
mb=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
bench_note "image: FROM scratch + $layers COPY layers of $mib MiB each from /dev/urandom, gzip level 1: $mb MB of blobs (config and manifest included), digest $digest; cbuild pushes from its store, skopeo from the same image saved as an OCI layout (the same blobs)"
bench_note "docker-registry 2.8.2 on 127.0.0.1, plain HTTP, filesystem storage on the same disk, started by the benchmark; before every push its storage is wiped and it is restarted, and cbuild's blob-sources cache removed: every blob is uploaded; the pulls read a second registry holding the image (its blobs in the page cache after the first pull) into a removed destination (cbuild: a store; skopeo: oci: layout); sync before every run"
bench_measure

bench_ratio cbuild-push skopeo-push '<=' 1.0
bench_ratio cbuild-pull skopeo-pull '<=' 1.0
for c in cbuild-push skopeo-push cbuild-pull skopeo-pull; do
  bench_metric "$c.cpu" "$(bench_cpu_median "$c")" s
done

# ---- checks (untimed) ----

# Every cbuild run printed the manifest's digest (the built-in timer keeps
# each run's output; hyperfine keeps none).
n=0
for log in "$BENCH_WORK"/logs/cbuild-push.*.log "$BENCH_WORK"/logs/cbuild-pull.*.log; do
  [ -e "$log" ] || continue
  [ "$(tail -n 1 "$log")" = "$digest" ] || bench_die "$log: cbuild printed \"$(tail -n 1 "$log")\", not $digest"
  n=$((n + 1))
done

inspect() {
  $skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$1" ||
    bench_die "skopeo inspect docker://$1 failed"
}
# The push registry holds skopeo's last push.
got=$(inspect "127.0.0.1:$push_port/sk-push:1")
[ "$got" = "$digest" ] || bench_die "skopeo's push: the registry's sk-push:1 is $got, not $digest"
# cbuild's push once more into an emptied registry, as in the prepare step.
bash "$BENCH_WORK/cases/cbuild-push.prepare.sh" >&2 || bench_die "preparing the check push failed"
out=$(bash "$BENCH_WORK/cases/cbuild-push.sh") || bench_die "cbuild push failed in the check run"
[ "$out" = "$digest" ] || bench_die "cbuild push printed \"$out\", not $digest"
got=$(inspect "127.0.0.1:$push_port/cb-push:1")
[ "$got" = "$digest" ] || bench_die "cbuild's push: the registry's cb-push:1 is $got, not $digest"
mapfile -t blobs < <(grep -oE 'sha256:[0-9a-f]{64}' "$layout/blobs/sha256/${digest#sha256:}")
for d in "${blobs[@]}"; do
  f=$work/reg-push/data/docker/registry/v2/blobs/sha256/${d:7:2}/${d#sha256:}/data
  cmp -s "$f" "$layout/blobs/sha256/${d#sha256:}" || bench_die "cbuild's push: blob $d is not in the registry's storage as it is in the image"
done
# The last pulls.
images=$("$CBUILD" images --root "$work/pulled-store") || bench_die "cbuild images of the pulled store failed"
grep -q "^127\.0\.0\.1:$pull_port/img  *1 " <<<"$images" ||
  bench_die "the pulled store does not list 127.0.0.1:$pull_port/img:1: $images"
rm -rf "$work/check.tar" "$work/check"
"$CBUILD" save --root "$work/pulled-store" "127.0.0.1:$pull_port/img:1" -o "$work/check.tar" >&2 ||
  bench_die "cbuild save of the pulled image failed"
mkdir -p "$work/check"
tar -xf "$work/check.tar" -C "$work/check" || bench_die "cannot unpack $work/check.tar"
got=$(first_match '"digest" *: *"sha256:[0-9a-f]{64}"' "$work/check/index.json" | grep -oE 'sha256:[0-9a-f]{64}')
[ "$got" = "$digest" ] || bench_die "cbuild's pull: the store's image is $got, not $digest"
diff -r "$layout/blobs" "$work/check/blobs" >/dev/null || bench_die "cbuild's pull: the saved blobs differ from the image's"
rm -rf "$work/check.tar" "$work/check"
grep -q "\"$digest\"" "$work/pulled-oci/index.json" || bench_die "skopeo's pull: $work/pulled-oci/index.json does not name $digest"
bench_note "checked after the runs: each of the $n cbuild runs printed $digest; skopeo inspect gives it for both tools' pushes; a cbuild push into the emptied registry stored all $((layers + 1)) blobs byte for byte; the pulled store lists the image and cbuild save gives it back with the same digest and blobs; skopeo's pulled layout names it"
