# Multi-stage builds: COPY --from a stage by name and by index, FROM a
# stage, --target, unreachable stages, and independent stages built at the
# same time.
. "$(dirname "$0")/lib.sh"

busybox_base

C=$TMP/ctx
mkdir -p "$C"
cat >"$C/Dockerfile" <<'EOF'
ARG GREETING=hello
FROM busybox AS build
ARG GREETING
RUN mkdir /out && echo "$GREETING from build" >/out/msg && echo 1 >/out/one && cat /out/msg
FROM busybox AS broken
RUN echo "this stage fails" && exit 7
FROM build AS test
RUN cat /out/msg >/tested && echo "inherited: $GREETING"
FROM busybox
COPY --from=build /out/msg /msg
COPY --from=0 /out/one /one
CMD ["cat", "/msg"]
EOF
run_cbuild build --root "$R" -t final --progress plain "$C"
expect_rc "a build with a builder stage and a final stage succeeds" 0
check "an unreachable stage that would fail is not built" sh -c "! grep -q 'this stage fails' '$TMP/err'"
check "... nor is an unreachable good one" sh -c "! grep -q '\[test ' '$TMP/err'"
check "progress lines name their stage" grep -q "^#[0-9]* \[build 1/2\] ARG GREETING" "$TMP/err"
run_cbuild --root "$R" save final -o "$TMP/final.tar"
mkdir -p "$TMP/final" && tar -xf "$TMP/final.tar" -C "$TMP/final"
layers=$(jq -r '.manifests[0].digest' "$TMP/final/index.json" | sed 's/sha256://')
files=$(jq -r '.layers[].digest' "$TMP/final/blobs/sha256/$layers" | sed 's/sha256://' |
  while read -r d; do tar -tzf "$TMP/final/blobs/sha256/$d"; done | sort | tr '\n' ' ')
check "COPY --from a stage by name and by index" sh -c "echo '$files' | grep -q 'msg' && echo '$files' | grep -q 'one'"
check "the final image has nothing of the builder stage but what was copied" sh -c "! echo '$files' | grep -q 'out/'"

run_cbuild build --root "$R" -t t1 --progress plain --target test --build-arg GREETING=hi "$C"
expect_rc "--target builds a stage FROM another stage" 0
check "the stage it is built FROM is built" grep -q "\[build 2/2\] RUN" "$TMP/err"
check "a global ARG reaches the stage that declares it again" grep -q "hi from build" "$TMP/err"
check "a stage built FROM another inherits its ARGs" grep -q "inherited: hi" "$TMP/err"
check "stages after the target are not built" sh -c "! grep -q 'COPY --from' '$TMP/err'"

run_cbuild build --root "$R" -t t2 --target broken "$C"
expect_rc "--target of the failing stage fails" 1
expect_err "... naming its line and status" "Dockerfile:6: RUN echo \"this stage fails\" && exit 7 exited with status 7"

# COPY --from an image of the local store.
I=$TMP/img
mkdir -p "$I"
printf 'FROM scratch\nCOPY --from=busybox /bin/busybox /bb\n' >"$I/Dockerfile"
run_cbuild build --root "$R" -t fromimg --progress plain "$I"
expect_rc "COPY --from an image of the local store" 0
run_cbuild build --root "$R" -t fromimg --progress plain "$I"
check "... is cached by that image" grep -q "^#1 CACHED" "$TMP/err"
printf 'FROM scratch\nCOPY --from=nosuchimage /x /x\n' >"$I/Dockerfile"
run_cbuild build --root "$R" --pull=never "$I"
expect_err "COPY --from an unknown name fails, naming it" "--from=nosuchimage"

# Two independent stages, each busy for a while, built at the same time:
# each records when it started and ended (uptime, in 1/100 s), and the
# intervals overlap.
P=$TMP/par
mkdir -p "$P"
cat >"$P/Dockerfile" <<'EOF'
FROM busybox AS a
RUN echo a && cut -d' ' -f1 /proc/uptime | tr -d . >/start && sleep 2 && cut -d' ' -f1 /proc/uptime | tr -d . >/end
FROM busybox AS b
RUN echo b && cut -d' ' -f1 /proc/uptime | tr -d . >/start && sleep 2 && cut -d' ' -f1 /proc/uptime | tr -d . >/end
FROM busybox
COPY --from=a /start /a.start
COPY --from=a /end /a.end
COPY --from=b /start /b.start
COPY --from=b /end /b.end
EOF
run_cbuild build --root "$R" -t par --network none --jobs 2 -o "type=oci,dest=$TMP/par,tar=false" "$P"
expect_rc "two independent stages build with --jobs 2" 0
d=$(jq -r '.manifests[0].digest' "$TMP/par/index.json" | sed 's/sha256://')
mkdir -p "$TMP/par-root"
for l in $(jq -r '.layers[].digest' "$TMP/par/blobs/sha256/$d" | sed 's/sha256://'); do
  tar -xzf "$TMP/par/blobs/sha256/$l" -C "$TMP/par-root" 2>/dev/null
done
as=$(cat "$TMP/par-root/a.start" 2>/dev/null || echo 0)
ae=$(cat "$TMP/par-root/a.end" 2>/dev/null || echo 0)
bs=$(cat "$TMP/par-root/b.start" 2>/dev/null || echo 0)
be=$(cat "$TMP/par-root/b.end" 2>/dev/null || echo 0)
check "the two stages ran at the same time" test "$as" -lt "$be" -a "$bs" -lt "$ae"

# stages_apart LAYOUT: the two stages of the image in LAYOUT did not overlap
stages_apart() {
  local d l as ae bs be
  d=$(jq -r '.manifests[0].digest' "$1/index.json" | sed 's/sha256://')
  rm -rf "$TMP/par-root" && mkdir -p "$TMP/par-root"
  for l in $(jq -r '.layers[].digest' "$1/blobs/sha256/$d" | sed 's/sha256://'); do
    tar -xzf "$1/blobs/sha256/$l" -C "$TMP/par-root" 2>/dev/null
  done
  as=$(cat "$TMP/par-root/a.start"); ae=$(cat "$TMP/par-root/a.end")
  bs=$(cat "$TMP/par-root/b.start"); be=$(cat "$TMP/par-root/b.end")
  test "$ae" -le "$bs" -o "$be" -le "$as"
}
run_cbuild build --root "$R" -t par1 --network none --jobs 1 --no-cache -o "type=oci,dest=$TMP/par1,tar=false" "$P"
expect_rc "--jobs 1 builds them one after the other" 0
check "... and then they do not overlap" stages_apart "$TMP/par1"
# without --jobs, one stage at a time per CPU the build may use
taskset -c 0 "$CBUILD" build --root "$R" -t par2 --network none --no-cache \
  -o "type=oci,dest=$TMP/par2,tar=false" "$P" >"$TMP/out" 2>"$TMP/err"
rc=$?
expect_rc "a build allowed one CPU (taskset) builds the stages" 0
check "... one after the other by default" stages_apart "$TMP/par2"

# A failure in one stage stops the build, whatever the other is doing.
F=$TMP/fail
mkdir -p "$F"
cat >"$F/Dockerfile" <<'EOF'
FROM busybox AS slow
RUN sleep 1
RUN echo later
FROM busybox AS bad
RUN exit 3
FROM busybox
COPY --from=slow /bin/sh /x
COPY --from=bad /bin/sh /y
EOF
run_cbuild build --root "$R" -t failing --network none --jobs 2 "$F"
expect_rc "a failing stage fails a parallel build" 1
expect_err "... with its error" "RUN exit 3 exited with status 3"
run_cbuild --root "$R" images
check "... and nothing is tagged" sh -c "! grep -q '^failing ' '$TMP/out'"
finish
