# The step cache: hits skip steps and give the same image, misses run from
# the changed step on and say why; --no-cache and --no-cache-filter.
. "$(dirname "$0")/lib.sh"

busybox_base

C=$TMP/ctx
mkdir -p "$C/src"
for i in 1 2 3 4 5; do echo "file $i" >"$C/src/f$i.c"; done
cat >"$C/Dockerfile" <<'EOF'
FROM busybox
ARG V=1
RUN echo "v=$V" >/v && date +%s%N >/first
COPY src/ /app/
ENV X=1
RUN ls /app | wc -l >/count && date +%s%N >/second
CMD ["sh"]
EOF

# build [ARGS...]: build $C as "app" with plain progress; sets $rc, out, err
build() { run_cbuild build --root "$R" -t app --progress plain "$@" "$C"; }
# step N: the progress lines of step #N
step() { grep "^#$1 " "$TMP/err"; }
config_digest() { "$CBUILD" inspect --root "$R" app | jq -r '.[0].Manifest.config.digest'; }

build
expect_rc "the first build runs" 0
check "the first build runs every step" sh -c "! grep -q CACHED '$TMP/err'"
first=$(config_digest)

build
expect_rc "the second build runs" 0
expect_eq "the second build is all CACHED" "$(grep -c '^#[1-6] CACHED' "$TMP/err")" 6
expect_eq "... and gives the same image" "$(config_digest)" "$first"

touch "$C"/src/*.c "$C/Dockerfile"
build
expect_eq "touch keeps the cache" "$(grep -c '^#[1-6] CACHED' "$TMP/err")" 6

# The first build of the COPY could match no entry: its files were hashed
# as its layer was written, not read before.  Read before a lookup now (no
# stat cache), they give the same key.
check "the first build recorded that the COPY was built on its parent" sh -c "ls '$R/cache/seen/' | grep -q ."
rm -rf "$R/cache/stat"
build
expect_eq "files hashed while the layer was written give the key read files give" \
  "$(grep -c '^#[1-6] CACHED' "$TMP/err")" 6

echo changed >"$C/src/f2.c"
build
expect_rc "a build after a file changed runs" 0
check "the steps before the COPY stay cached" sh -c "grep -q '^#2 CACHED' '$TMP/err' && grep -q '^#1 CACHED' '$TMP/err'"
check "the COPY runs again" sh -c "! grep -q '^#3 CACHED' '$TMP/err'"
check "... and the steps after it" sh -c "! grep -q '^#5 CACHED' '$TMP/err' && ! grep -q '^#6 CACHED' '$TMP/err'"
check "the miss names the changed file by its context path" grep -q "^#3 cache miss: 1 file changed: src/f2.c$" "$TMP/err"
check "the later steps say an earlier step changed" grep -q "^#5 cache miss: an earlier step changed" "$TMP/err"
check "a new image" test "$(config_digest)" != "$first"

echo new >"$C/src/f9.c"
rm "$C/src/f1.c"
build
check "new and removed files are named" grep -q "^#3 cache miss: 2 files changed: src/f1.c (removed), src/f9.c (new)$" "$TMP/err"

build --build-arg V=2
expect_rc "a build with another value of a used build arg runs" 0
check "the ARG step names the changed value" grep -q "^#1 cache miss: the value of build arg V changed" "$TMP/err"
check "the RUN that sees it runs again" sh -c "! grep -q '^#2 CACHED' '$TMP/err'"

build --build-arg V=2 --build-arg UNUSED=x
check "an unused build arg keeps the cache" test "$(grep -c '^#[1-6] CACHED' "$TMP/err")" -eq 6

sed -i 's|^COPY src/ /app/|COPY --chown=1:1 src/ /app/|' "$C/Dockerfile"
build --build-arg V=2
check "changing --chown misses at that step" sh -c "grep -q '^#2 CACHED' '$TMP/err' && grep -q '^#3 cache miss: the instruction changed' '$TMP/err'"
chmod 0600 "$C/src/f3.c"
build --build-arg V=2
check "a file's mode is part of the key" grep -q "^#3 cache miss: 1 file changed: src/f3.c$" "$TMP/err"

# The cache does not just skip: the result is the one the step made.
run_cbuild build --root "$R" -t app2 -q --build-arg V=2 "$C"
expect_rc "another tag of the same Dockerfile builds" 0
expect_eq "... from the cache, with the same image" "$(cat "$TMP/out")" "$("$CBUILD" build --root "$R" -q --build-arg V=2 "$C" 2>/dev/null)"

build --build-arg V=2 --no-cache
expect_rc "--no-cache builds" 0
check "--no-cache runs every step" sh -c "! grep -q CACHED '$TMP/err'"
build --build-arg V=2
expect_eq "... and refreshes the cache for the next build" "$(grep -c '^#[1-6] CACHED' "$TMP/err")" 6

build --build-arg V=2 --explain-cache
check "--explain-cache explains hits too" grep -q "^#2 cache hit" "$TMP/err"

# A layer blob that went missing makes its entry a miss, not a broken image.
layer=$("$CBUILD" inspect --root "$R" app | jq -r '.[0].Manifest.layers[-1].digest' | sed 's/sha256://')
rm -f "$R/blobs/sha256/$layer"
build --build-arg V=2
expect_rc "a build whose cached layer is gone runs" 0
check "that step runs again" sh -c "! grep -q '^#5 CACHED' '$TMP/err'"
layer=$("$CBUILD" inspect --root "$R" app | jq -r '.[0].Manifest.layers[-1].digest' | sed 's/sha256://')
check "the image's layers are all in the store" test -f "$R/blobs/sha256/$layer"

# RUN --mount=type=bind: what the step reads through the mount is keyed.
K=$TMP/bind
mkdir -p "$K/in"
echo one >"$K/in/f"
printf 'FROM busybox\nRUN --mount=type=bind,source=in,target=/c cat /c/f >/out\n' >"$K/Dockerfile"
run_cbuild build --root "$R" -t bind --network none --progress plain "$K"
expect_rc "a RUN with a bind mount of the context builds" 0
run_cbuild build --root "$R" -t bind --network none --progress plain "$K"
check "... and is cached while the bound files stay" grep -q "^#1 CACHED" "$TMP/err"
echo two >"$K/in/f"
run_cbuild build --root "$R" -t bind --network none --progress plain "$K"
check "a changed bound file misses, naming it by its context path" grep -q "^#1 cache miss: 1 file changed: in/f$" "$TMP/err"

# Multi-stage: --no-cache-filter reruns only the named stage.
M=$TMP/multi
mkdir -p "$M"
cat >"$M/Dockerfile" <<'EOF'
FROM busybox AS build
RUN echo built >/out
FROM busybox
COPY --from=build /out /out
RUN cat /out
EOF
run_cbuild build --root "$R" -t multi --progress plain "$M"
expect_rc "a two-stage build runs" 0
run_cbuild build --root "$R" -t multi --progress plain --no-cache-filter build "$M"
expect_rc "--no-cache-filter builds" 0
check "the filtered stage runs again" grep -q "^#1 \[build 1/1\] RUN" "$TMP/err"
check "... not from the cache" sh -c "! grep -q '^#1 CACHED' '$TMP/err'"
check "the other stage's steps keep the cache when the result is the same" grep -q "^#2 CACHED" "$TMP/err"

check "the stat cache is kept in the store" sh -c "ls '$R/cache/stat/' | grep -q ."

# --chown by name: the key does not read the image's /etc/passwd, the
# layer does; a hit keeps the owner
N=$TMP/ctx-chown
mkdir -p "$N/etc"
printf 'root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n' >"$N/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' >"$N/etc/group"
echo data >"$N/f"
printf 'FROM scratch\nCOPY etc/ /etc/\nCOPY --chown=app f /f\nCOPY --chown=app:app f /dir/\n' >"$N/Dockerfile"
chown_owners() {
  local m layer
  m=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "chowned") | .digest' "$R/index.json")
  for layer in $(jq -r '.layers[1:][].digest' "$R/blobs/sha256/${m#sha256:}"); do
    tar -tvzf "$R/blobs/sha256/${layer#sha256:}"
  done | awk '{print $2, $6}' | sort | tr '\n' ' '
}
run_cbuild build --root "$R" -t chowned --progress plain "$N"
expect_rc "COPY --chown=NAME builds" 0
first_owners=$(chown_owners)
expect_eq "the names became ids" "$first_owners" "1000/1000 dir/ 1000/1000 dir/f 1000/1000 f "
run_cbuild build --root "$R" -t chowned --progress plain "$N"
expect_eq "a rebuild is all CACHED" "$(grep -c '^#[1-3] CACHED' "$TMP/err")" 3
expect_eq "... with the same owners" "$(chown_owners)" "$first_owners"

# A context big enough to be hashed by several threads: the key is the same
# as the first build's, which hashed the files as it wrote the layer (a hit
# without the stat cache), and each digest stays with its own file (the
# miss names the one file changed, mid-list); a file's xattrs are keyed too
B=$TMP/ctx-big
mkdir -p "$B/d"
for i in $(seq -w 1 48); do head -c 200000 /dev/urandom >"$B/d/f$i"; done
setfattr -n user.cbuild-test -v one "$B/d/f07" 2>/dev/null || true
printf 'FROM scratch\nCOPY d/ /d/\n' >"$B/Dockerfile"
run_cbuild build --root "$R" -t big --progress plain "$B"
expect_rc "a COPY of 48 files of 200 kB builds" 0
rm -rf "$R/cache/stat"
run_cbuild build --root "$R" -t big --progress plain "$B"
check "with no stat cache, every file hashed again gives the same key" grep -q "^#1 CACHED" "$TMP/err"
head -c 200000 /dev/urandom >"$B/d/f23"
run_cbuild build --root "$R" -t big --progress plain "$B"
check "the miss names the one file changed" grep -q "^#1 cache miss: 1 file changed: d/f23$" "$TMP/err"
if getfattr -n user.cbuild-test "$B/d/f07" >/dev/null 2>&1; then
  setfattr -n user.cbuild-test -v two "$B/d/f07"
  run_cbuild build --root "$R" -t big --progress plain "$B"
  check "a changed xattr misses, naming its file" grep -q "^#1 cache miss: 1 file changed: d/f07$" "$TMP/err"
fi

# ADD of a local archive, first built with --no-cache (no lookup: the files
# unpacked are hashed as the layer is written): the next build hits
A=$TMP/ctx-add
mkdir -p "$A/t/sub"
echo one >"$A/t/sub/one"
echo two >"$A/t/two"
tar -czf "$A/t.tar.gz" -C "$A/t" .
printf 'FROM scratch\nADD t.tar.gz /x/\n' >"$A/Dockerfile"
run_cbuild build --root "$R" -t added --progress plain --no-cache "$A"
expect_rc "ADD of a tar.gz builds with --no-cache" 0
run_cbuild build --root "$R" -t added --progress plain "$A"
check "... and the next build takes it from the cache" grep -q "^#1 CACHED" "$TMP/err"
finish
