# The store under stress: builds killed with SIGKILL at random moments
# leave nothing a later build would use wrongly, and concurrent builds
# sharing base layers all succeed.
. "$(dirname "$0")/lib.sh"

busybox_base

# A context with enough files that a kill can land in the middle of a COPY.
C=$TMP/ctx
mkdir -p "$C/data"
for i in $(seq 1 300); do head -c $((i * 97)) /dev/urandom >"$C/data/f$i"; done
cat >"$C/Dockerfile" <<'EOF'
FROM busybox
RUN mkdir /w && for i in 1 2 3 4 5 6 7 8; do head -c 200000 /dev/urandom >/w/r$i; done
COPY data/ /data/
RUN cat /data/* | wc -c >/total && rm /w/r1
CMD ["cat", "/total"]
EOF

# store_ok: every blob matches its name, index.json and the cache entries
# parse, and no build is left mounted.
store_ok() {
  local bad=0 f
  for f in "$R"/blobs/sha256/*; do
    [ "$(sha256sum <"$f" | cut -d' ' -f1)" = "$(basename "$f")" ] || { echo "bad blob $f"; bad=1; }
  done
  jq -e . "$R/index.json" >/dev/null || { echo "index.json does not parse"; bad=1; }
  for f in "$R"/cache/steps/*; do
    [ -e "$f" ] || continue
    jq -e . "$f" >/dev/null 2>&1 || { echo "cache entry $f does not parse"; bad=1; }
  done
  if grep -q "$R" /proc/mounts; then echo "a mount is left"; bad=1; fi
  return $bad
}

rounds=20
bad_rounds=""
mkdir -p "$TMP/kout"
for round in $(seq 1 $rounds); do
  # a different build each time, so that every round has work to do
  echo "$round" >"$C/data/round"
  "$CBUILD" build --root "$R" -t killed --network none -q -o "type=oci,dest=$TMP/kout/killed.tar" \
    "$C" >/dev/null 2>&1 &
  pid=$!
  # anywhere from the start to well into the build
  sleep "0.$(( (RANDOM % 9) + 1 ))$(( RANDOM % 10 ))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  # the sandbox's processes die with it
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    pgrep -f -- "--root $R -t killed" >/dev/null || break
    sleep 0.2
  done
  out=$(store_ok 2>&1) || bad_rounds="$bad_rounds $round: $out"
done
expect_eq "after $rounds builds killed with SIGKILL, the store is whole each time" "$bad_rounds" ""
expect_eq "no process of a killed build is left" "$(pgrep -f -- "--root $R -t killed" | wc -l)" 0
# the archive output is written into an unnamed file while the build runs
expect_eq "killed builds leave no partial archive beside their output" \
  "$(ls -A "$TMP/kout" | grep -v '^killed\.tar$')" ""

echo final >"$C/data/round"
# what a build killed in a RUN step leaves, whatever the rounds above left
mkdir -p "$R/tmp/run-killed1/upper/usr" "$R/tmp/run-killed1/work"
echo partial >"$R/tmp/run-killed1/upper/usr/out"
echo "left by the killed builds: $(ls -A "$R/tmp" | grep -c '^run-') step directories"
run_cbuild build --root "$R" -t after --network none --progress plain "$C"
expect_rc "the next build works" 0
expect_eq "... and removes the step directories killed builds left in the store" \
  "$(ls -A "$R/tmp" | grep -c '^run-')" 0
run_cbuild build --root "$R" -t after2 --network none --progress plain "$C"
expect_eq "... and the one after it is all cached" "$(grep -c '^#[1-4] CACHED' "$TMP/err")" 4
run_cbuild --root "$R" save after -o "$TMP/after.tar"
expect_rc "the image saves" 0
check "skopeo reads the whole store" skopeo inspect "oci:$R:after"
check "the store is whole" store_ok

# Concurrent builds of different Dockerfiles that share base layers.
for n in 1 2 3; do
  mkdir -p "$TMP/c$n"
  printf 'FROM busybox\nRUN echo %s >/n && head -c 100000 /dev/urandom >/r\nRUN wc -c /r >/size\nCMD ["cat", "/n"]\n' "$n" >"$TMP/c$n/Dockerfile"
done
pids=""
for n in 1 2 3; do
  "$CBUILD" build --root "$R" -t "con$n" --network none -q "$TMP/c$n" >"$TMP/con$n.out" 2>&1 &
  pids="$pids $!"
done
failed=0
for p in $pids; do wait "$p" || failed=$((failed + 1)); done
expect_eq "three concurrent builds against one store all succeed" "$failed" 0
run_cbuild --root "$R" images
check "... and all are tagged" sh -c "grep -q '^con1 ' '$TMP/out' && grep -q '^con2 ' '$TMP/out' && grep -q '^con3 ' '$TMP/out'"
check "the store is whole after them" store_ok
for n in 1 2 3; do
  run_cbuild --root "$R" inspect "con$n"
  expect_eq "con$n is built on the shared base" "$(jqo '.[0].Manifest.layers | length')" 4
done

# A full disk: a clear error, and the images already there stay whole.
if [ "$(id -u)" -eq 0 ]; then
  S=$TMP/small
  mkdir -p "$S"
  if mount -t tmpfs -o size=6m cbuild-test-full "$S"; then
    run_cbuild build --root "$S/root" -t busybox -q "$B"
    expect_rc "a base fits on the small disk" 0
    mkdir -p "$TMP/full"
    printf 'FROM busybox\nRUN head -c 2000000 /dev/urandom >/big\n' >"$TMP/full/Dockerfile"
    run_cbuild build --root "$S/root" -t toobig --network none "$TMP/full"
    expect_rc "a build that fills the disk fails" 1
    expect_err "... saying so" "No space left on device"
    run_cbuild --root "$S/root" save busybox -o "$TMP/bb-after-full.tar"
    expect_rc "the image made before is still whole" 0
    run_cbuild --root "$S/root" images
    check "... and nothing half-built is tagged" sh -c "! grep -q '^toobig ' '$TMP/out'"
    umount "$S"
  else
    ok "# SKIP no tmpfs for the full-disk case"
  fi
fi
finish
