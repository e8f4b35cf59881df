# cbuild df and cbuild prune: what the store holds, and removing the cache
# no image needs, oldest first, never what a tag or a running build needs.
. "$(dirname "$0")/lib.sh"

busybox_base

C=$TMP/ctx
mkdir -p "$C"
cat >"$C/Dockerfile" <<'EOF'
FROM busybox
ARG V=1
RUN echo "$V" >/v && head -c 300000 /dev/urandom >/big
ENV X=1
CMD ["cat", "/v"]
EOF
b() { run_cbuild build --root "$R" --network none --progress plain "$@" "$C"; }
b -t app
expect_rc "a tagged image builds" 0
b --build-arg V=2
expect_rc "an untagged variant builds" 0
b --build-arg V=3
run_cbuild --root "$R" df
expect_rc "df runs" 0
check "df lists the build cache" grep -q "^Build cache" "$TMP/out"
check "... and the snapshots" grep -q "^Snapshots" "$TMP/out"
entries_before=$(ls "$R/cache/steps" | wc -l)

run_cbuild --root "$R" prune
expect_rc "prune runs" 0
check "prune says what it removed" grep -q "^Removed [1-9][0-9]* cache entries" "$TMP/out"
check "it removed some entries" test "$(ls "$R/cache/steps" | wc -l)" -lt "$entries_before"
run_cbuild --root "$R" save app -o "$TMP/app.tar"
expect_rc "the tagged image is whole after prune" 0
check "... and skopeo reads the store" skopeo inspect "oci:$R:app"
b -t app
expect_eq "the tagged image's steps are still cached" "$(grep -c '^#[0-9]* CACHED' "$TMP/err")" 4
b --build-arg V=2
check "an untagged variant's RUN is not" sh -c "! grep -q '^#2 CACHED' '$TMP/err'"

# --keep-duration keeps what was used recently.
run_cbuild --root "$R" prune --all --keep-duration 1h
expect_rc "prune --all --keep-duration runs" 0
b --build-arg V=2
check "cache used within the duration stays" grep -q "^#2 CACHED" "$TMP/err"

# --keep-storage keeps the most recent cache that fits.
b --build-arg V=4
b --build-arg V=5
run_cbuild --root "$R" prune --all --keep-storage 400k
expect_rc "prune --all --keep-storage runs" 0
b --build-arg V=5
check "the most recently used step that fits stays" grep -q "^#2 CACHED" "$TMP/err"
b --build-arg V=4
check "an older one does not" sh -c "! grep -q '^#2 CACHED' '$TMP/err'"

S=$TMP/ctx-copy
mkdir -p "$S"
echo data >"$S/f"
printf 'FROM scratch\nCOPY f /f\n' >"$S/Dockerfile"
run_cbuild build --root "$R" -q "$S"
check "a COPY built records that it was built on its parent" sh -c "ls '$R/cache/seen' | grep -q ."
run_cbuild --root "$R" prune --all
expect_rc "prune --all runs" 0
expect_eq "prune --all leaves no cache entry" "$(ls "$R/cache/steps" | wc -l)" 0
expect_eq "... nor those records" "$(ls "$R/cache/seen" | wc -l)" 0
check "... nor snapshots" sh -c "[ -z \"\$(ls '$R/snapshots' | grep -v '\.lock$')\" ]"
run_cbuild --root "$R" save app -o "$TMP/app2.tar"
expect_rc "the tagged image is still whole" 0
run_cbuild --root "$R" save busybox -o "$TMP/bb.tar"
expect_rc "... and its base" 0
b -t app
expect_rc "and builds again from nothing" 0
check "... running its steps" sh -c "! grep -q '^#2 CACHED' '$TMP/err'"

# prune waits for a running build, which finishes whole.
cat >"$TMP/slow.Dockerfile" <<'EOF'
FROM busybox
RUN sleep 2 && echo slow >/slow
EOF
"$CBUILD" build --root "$R" --network none -q -t slow -f "$TMP/slow.Dockerfile" "$C" >"$TMP/slow.out" 2>&1 &
slow=$!
sleep 0.7
run_cbuild --root "$R" prune --all
expect_rc "prune during a build succeeds" 0
check "... after waiting for it" grep -q "waiting for the builds" "$TMP/err"
wait "$slow"
expect_eq "the running build succeeded" "$?" 0
run_cbuild --root "$R" save slow -o "$TMP/slow.tar"
expect_rc "... and its image is whole" 0

run_cbuild --root "$R" prune --keep-storage lots
expect_rc "a bad size is a usage error" 2
finish
