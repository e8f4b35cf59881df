# RUN --mount: cache, bind, tmpfs and secret mounts seen from inside the
# step, and never in the layers (nor, for secrets, anywhere in the store);
# the errors of a mount that cannot be made.  As root, the same script runs
# again rootless, as 0410 does for 0400.
. "$(dirname "$0")/lib.sh"

# The busybox base of 0400.
busybox_base --users

# build_in NAME DIR [ARGS...]: build the context DIR as NAME
build_in() {
  local name=$1 dir=$2
  shift 2
  run_cbuild build --root "$R" -t "$name" --network none --progress plain "$@" "$dir"
}

# build_run NAME DOCKERFILE [ARGS...]: build a context holding only the Dockerfile
build_run() {
  local name=$1 df=$2
  shift 2
  mkdir -p "$TMP/c-$name"
  printf '%s\n' "$df" >"$TMP/c-$name/Dockerfile"
  build_in "$name" "$TMP/c-$name" "$@"
}

# layer_entries NAME: the entries of every layer of the image NAME
layer_entries() {
  local d
  "$CBUILD" --root "$R" inspect "$1" | jq -r '.[0].Manifest.layers[].digest' |
    while read -r d; do tar -tf "$R/blobs/sha256/${d#sha256:}"; done
}

# layer_count NAME
layer_count() { "$CBUILD" --root "$R" inspect "$1" | jq -r '.[0].Manifest.layers | length'; }
base_layers=$(layer_count busybox)

# ---- cache ----
# The image has the target already: the mount hides it, the step's writes
# go to the cache, and the layer keeps the directory as it was.
cache_df='FROM busybox
ARG N
RUN mkdir -p /var/cache/app && echo from-image >/var/cache/app/orig
RUN --mount=type=cache,target=/var/cache/app echo "build $N sees: $(ls /var/cache/app | tr "\n" " ")"; echo "$N" >>/var/cache/app/runs; echo "runs=$(wc -l </var/cache/app/runs)"
RUN --mount=type=cache,target=/data,id=owned,uid=1000,gid=2000,mode=0750 stat -c "owned=%u:%g %a" /data; echo x >/data/f
RUN --mount=type=cache,target=/var/cache/app,sharing=locked --mount=type=cache,target=/again,id=/var/cache/app,ro ls /again/runs && if touch /again/x 2>/dev/null; then echo ro=no; else echo ro=yes; fi'
build_run cache "$cache_df" --build-arg N=1
expect_rc "steps with cache mounts build" 0
check "a new cache starts empty: the image's files below it are hidden" grep -q "build 1 sees: $" "$TMP/err"
check "the step writes to the cache" grep -q "runs=1" "$TMP/err"
check "uid, gid and mode are applied to a new cache" grep -q "owned=1000:2000 750" "$TMP/err"
check "the same cache mounted twice in a step, one of them read-only" grep -q "ro=yes" "$TMP/err"
entries=$(layer_entries cache)
check "the image keeps the directory it had under the mount" grep -qx "var/cache/app/orig" <<<"$entries"
check "nothing the step wrote in a cache reaches a layer" sh -c "! grep -qE '(^|/)(runs|data/?|again/?|f)$' <<'EOF'
$entries
EOF"
expect_eq "the cache steps make no layer" "$(layer_count cache)" $((base_layers + 1))

build_run cache "$cache_df" --build-arg N=2
expect_rc "a second build runs the cache steps again" 0
check "the cache persists between builds" grep -q "runs=2" "$TMP/err"
check "... and holds what the last build left there" grep -q "build 2 sees: runs $" "$TMP/err"
build_run cache "$cache_df" --build-arg N=2 --no-cache
expect_rc "a build with --no-cache" 0
check "the cache persists across --no-cache" grep -q "runs=3" "$TMP/err"
check "ROOT/mounts is for root only" test "$(stat -c %a "$R/mounts")" = 700

# sharing=locked: two builds at once take turns; sharing=private: a second
# user gets a directory of its own.
for sharing in locked private; do
  df="FROM busybox
RUN --mount=type=cache,target=/c,id=turns-$sharing,sharing=$sharing if [ -e /c/busy ]; then echo OVER''LAP; fi; touch /c/busy; sleep 1; rm /c/busy; echo turn-done"
  mkdir -p "$TMP/c-$sharing"
  printf '%s\n' "$df" >"$TMP/c-$sharing/Dockerfile"
  "$CBUILD" build --root "$R" --network none --progress plain --no-cache "$TMP/c-$sharing" >"$TMP/out1" 2>"$TMP/err1" &
  p1=$!
  "$CBUILD" build --root "$R" --network none --progress plain --no-cache "$TMP/c-$sharing" >"$TMP/out2" 2>"$TMP/err2"
  rc2=$?
  wait "$p1"
  rc1=$?
  expect_eq "two builds at once with a sharing=$sharing cache succeed" "$rc1 $rc2" "0 0"
  # (the step's text is in the output too: it spells the word apart)
  check "... and never use it at the same time" sh -c "! grep -q OVERLAP '$TMP/err1' '$TMP/err2'"
  check "... both steps having run" sh -c "grep -q turn-done '$TMP/err1' && grep -q turn-done '$TMP/err2'"
done

# ---- bind ----
C=$TMP/c-bind
mkdir -p "$C/src/sub"
echo "hello from the context" >"$C/src/hello.txt"
echo "keep out" >"$C/ignored.txt"
echo "keep out" >"$C/src/sub/hidden.env"
echo "visible" >"$C/src/sub/visible.txt"
chmod 0750 "$C/src/sub"
mkdir -p "$C/docs"
echo "kept" >"$C/docs/keep.md"
echo "dropped" >"$C/docs/drop.md"
printf 'ignored.txt\n**/*.env\ndocs\n!docs/keep.md\n' >"$C/.dockerignore"
ln -s /etc "$C/escape"
cat >"$C/Dockerfile" <<'EOF'
FROM busybox AS builder
RUN mkdir /out && echo built-in-a-stage >/out/artifact
FROM busybox
RUN --mount=type=bind,source=src,target=/src cat /src/hello.txt; if touch /src/new 2>/dev/null; then echo ro=no; else echo ro=yes; fi
RUN --mount=type=bind,target=/ctx,rw echo changed >/ctx/src/hello.txt && echo added >/ctx/added && echo "rw=$(cat /ctx/src/hello.txt)"
RUN --mount=type=bind,target=/ctx echo "all=$(cd /ctx && find . -type f | sort | tr "\n" " ")"; echo "sub=$(stat -c %a /ctx/src/sub)"
RUN --mount=type=bind,source=docs,target=/docs,rw echo "docs=$(ls /docs | tr "\n" " ")"
RUN --mount=type=bind,source=src/hello.txt,target=/one.txt,rw echo "file=$(cat /one.txt)" && echo x >/one.txt
RUN --mount=type=bind,from=builder,source=/out,target=/art cat /art/artifact; if touch /art/x 2>/dev/null; then echo stage-ro=no; else echo stage-ro=yes; fi
RUN --mount=type=bind,from=builder,target=/st,rw echo over >/st/out/artifact && echo "stage-rw=$(cat /st/out/artifact)"
RUN --mount=type=bind,from=busybox,source=etc,target=/img echo "image=$(head -c 4 /img/passwd)"
WORKDIR /work
RUN --mount=type=bind,source=src,target=rel echo "relative=$(ls /work/rel | tr "\n" " ")"
EOF
build_in bind "$C"
expect_rc "steps with bind mounts build" 0
check "a bind shows the context's files" grep -q "hello from the context" "$TMP/err"
check "a bind is read-only by default" grep -q "ro=yes" "$TMP/err"
check "rw lets the step write" grep -q "rw=changed" "$TMP/err"
expect_eq "... but the context is unchanged" "$(cat "$C/src/hello.txt")" "hello from the context"
check "... and gets nothing new" test ! -e "$C/added"
check ".dockerignore applies inside a bound directory" \
  grep -q "all=./.dockerignore ./Dockerfile ./docs/keep.md ./src/hello.txt ./src/sub/visible.txt $" "$TMP/err"
check "... whose directories keep their modes" grep -q "sub=750" "$TMP/err"
check "... and to an excluded source an exception reaches into" grep -q "docs=keep.md $" "$TMP/err"
check "a file can be bound, rw too" grep -q "file=hello from the context" "$TMP/err"
check "from= a stage shows its files" grep -q "built-in-a-stage" "$TMP/err"
check "... read-only" grep -q "stage-ro=yes" "$TMP/err"
check "... or writable with rw" grep -q "stage-rw=over" "$TMP/err"
check "from= an image of the store" grep -q "image=root" "$TMP/err"
check "a relative target is below WORKDIR" grep -q "relative=hello.txt sub $" "$TMP/err"
entries=$(layer_entries bind)
check "no bind target or write reaches a layer" sh -c "! grep -qE '^(src|ctx|docs|one.txt|art|st|img|work/rel)(/|$)' <<'EOF'
$entries
EOF"
expect_eq "the bind steps make no layer but WORKDIR's" "$(layer_count bind)" $((base_layers + 1))

printf 'FROM busybox\nRUN --mount=type=bind,source=ignored.txt,target=/x cat /x\n' >"$C/Dockerfile"
build_in bad "$C"
expect_err "a source .dockerignore leaves out is refused" \
  'Dockerfile:2: RUN --mount=type=bind,source=ignored.txt,target=/x: source "ignored.txt" is excluded by .dockerignore'
printf 'FROM busybox\nRUN --mount=type=bind,source=escape,target=/x ls /x\n' >"$C/Dockerfile"
build_in bad "$C"
expect_err "a symlink in the context is not followed out of it" \
  'Dockerfile:2: RUN --mount=type=bind,source=escape,target=/x: source "escape" is or goes through a symlink'
printf 'FROM busybox\nRUN --mount=type=bind,source=../../../etc,target=/x ls /x\n' >"$C/Dockerfile"
build_in bad "$C"
expect_err "\"..\" does not climb out of the context" \
  'source "etc" in the build context: No such file or directory'
printf 'FROM busybox\nRUN --mount=type=bind,from=no-such-image,target=/x true\n' >"$C/Dockerfile"
build_in bad "$C" --pull=never
expect_err "from= naming nothing is an error" \
  'Dockerfile:2: RUN --mount=type=bind,from=no-such-image,target=/x: from=no-such-image names no stage, and no image of the local store'
printf 'FROM busybox\nRUN --mount=type=tmpfs,target=/ true\n' >"$C/Dockerfile"
build_in bad "$C"
expect_err "the target cannot be /" 'Dockerfile:2: RUN --mount=type=tmpfs,target=/: the target cannot be "/"'

# ---- tmpfs ----
build_run tmpfs 'FROM busybox
RUN mkdir /existing && echo kept >/existing/f
RUN --mount=type=tmpfs,target=/scratch,size=1m echo "size=$(df -k /scratch | tail -n 1 | awk "{print \$2}") mode=$(stat -c %a /scratch)"; echo x >/scratch/f
RUN --mount=type=tmpfs,target=/existing echo "hidden=$(ls /existing | wc -l)"; echo y >/existing/g'
expect_rc "steps with tmpfs mounts build" 0
check "a tmpfs of the size asked, mode 1777" grep -q "size=1024 mode=1777" "$TMP/err"
check "a tmpfs hides what the image has there" grep -q "hidden=0" "$TMP/err"
entries=$(layer_entries tmpfs)
check "nothing written to a tmpfs reaches a layer" sh -c "! grep -qE '^scratch|existing/g' <<'EOF'
$entries
EOF"
check "... and the directory below stays as it was" grep -qx "existing/f" <<<"$entries"

# ---- secrets ----
SECRET="cbuild-secret-$$-$RANDOM$RANDOM"
printf '%s' "$SECRET" >"$TMP/secret.txt"
want_sum=$(printf '%s' "$SECRET" | md5sum | cut -d' ' -f1)
export CBUILD_T_SECRET="$SECRET-from-env"
env_sum=$(printf '%s' "$CBUILD_T_SECRET" | md5sum | cut -d' ' -f1)
build_run secret 'FROM busybox
RUN --mount=type=secret,id=token echo "sum=$(md5sum </run/secrets/token | cut -d" " -f1) perms=$(stat -c "%u:%g %a" /run/secrets/token)"
RUN --mount=type=secret,id=token,target=/etc/app-token,uid=1000,gid=1000,mode=0440 echo "owned=$(stat -c "%u:%g %a" /etc/app-token)"
RUN --mount=type=secret,id=fromenv,env=APP_TOKEN echo "envsum=$(printf %s "$APP_TOKEN" | md5sum | cut -d" " -f1) file=$(ls /run/secrets 2>/dev/null | wc -l)"
RUN --mount=type=secret,id=CBUILD_T_SECRET echo "typeenv=$(md5sum </run/secrets/CBUILD_T_SECRET | cut -d" " -f1)"
RUN --mount=type=secret,id=absent echo "absent=$(ls /run/secrets 2>/dev/null | wc -l)"
USER app
RUN --mount=type=secret,id=token,uid=1000 echo "as-app=$(md5sum </run/secrets/token | cut -d" " -f1)"' \
  --secret "id=token,src=$TMP/secret.txt" --secret id=fromenv,env=CBUILD_T_SECRET \
  --secret type=env,id=CBUILD_T_SECRET
expect_rc "steps with secret mounts build" 0
check "a secret is at /run/secrets/ID" grep -q "sum=$want_sum perms=0:0 400" "$TMP/err"
check "target, uid, gid and mode apply" grep -q "owned=1000:1000 440" "$TMP/err"
check "env= exposes it as a variable, without a file" grep -q "envsum=$env_sum file=0" "$TMP/err"
check "--secret type=env reads cbuild's environment" grep -q "typeenv=$env_sum" "$TMP/err"
check "a secret not given and not required is skipped" grep -q "absent=0" "$TMP/err"
check "a USER reads a secret made its own" grep -q "as-app=$want_sum" "$TMP/err"
expect_eq "the secret steps make no layer" "$(layer_count secret)" "$base_layers"
leaks=""
for b in "$R"/blobs/sha256/*; do
  if { zcat "$b" 2>/dev/null || zstdcat "$b" 2>/dev/null || cat "$b"; } | grep -qF "cbuild-secret-$$"; then
    leaks="$leaks ${b##*/}"
  fi
done
expect_eq "the secret is in no blob of the store, layers decompressed" "$leaks" ""
check "... nor anywhere else in the store" sh -c "! grep -rqF 'cbuild-secret-$$' '$R'"
check "... nor in the sandbox's temporary files" sh -c "! grep -rqF 'cbuild-secret-$$' '$TMPDIR'"
run_cbuild --root "$R" inspect secret
check "the history names the secret by its id only" jq -e \
  '.[0].Config.history | map(.created_by) | any(contains("id=token"))' "$TMP/out"

build_run secret-req 'FROM busybox
RUN --mount=type=secret,id=missing-one,required=true true'
expect_rc "a required secret that was not given fails the build" 1
expect_err "... with a message naming it" \
  'Dockerfile:2: RUN --mount=type=secret,id=missing-one,required=true: secret "missing-one" is required but was not given'
run_cbuild build --root "$R" --secret src=/nonexistent "$TMP/c-secret"
expect_rc "--secret without id= is a usage error" 2
expect_err "... that says so" 'invalid --secret "src=/nonexistent": missing id='
run_cbuild build --root "$R" --secret id=x,src=/nonexistent/file "$TMP/c-secret"
expect_err "--secret naming a missing file is refused" \
  'invalid --secret "id=x,src=/nonexistent/file": "/nonexistent/file": No such file or directory'

# ---- ssh ----
build_run ssh 'FROM busybox
RUN --mount=type=ssh true'
expect_err "ssh mounts are refused clearly" 'Dockerfile:2: RUN --mount=type=ssh: ssh mounts are not supported'

check "no sandbox mount is left" sh -c "! grep -q '$TMP' /proc/mounts"
check "the store's tmp/ is empty after the builds" sh -c "[ -z \"\$(ls -A '$R/tmp')\" ]"

# ---- the same, rootless ----
if [ "$(id -u)" -eq 0 ] && [ -z "${CBUILD_T_INNER:-}" ]; then
  test_user
  # what the user's builds made is removed here, as root
  W=$(mktemp -d /tmp/cbuild-rootless.XXXXXX)
  chown "$U:" "$W"
  mkdir -p "$W/tests/t" "$W/bin"
  cp "$(dirname "$0")/lib.sh" "$0" "$W/tests/t/"
  cp "$CBUILD" "$W/bin/cbuild"
  chmod -R a+rX "$W"
  out=$(cd "$W" && HOME=$W TMPDIR=$W CBUILD=$W/bin/cbuild CBUILD_T_INNER=1 \
    setpriv --reuid="$U" --regid="$U" --init-groups bash "$W/tests/t/$(basename "$0")" 2>&1)
  inner_rc=$?
  while IFS= read -r line; do
    case $line in
    "ok "*) ok "rootless: ${line#ok [0-9]* - }" ;;
    "not ok "*) not_ok "rootless: ${line#not ok [0-9]* - }" ;;
    "1.."*) ;;
    *) echo "$line" ;;
    esac
  done <<<"$out"
  expect_eq "the rootless run succeeds" "$inner_rc" 0
  rm -rf "$W"
fi

finish
