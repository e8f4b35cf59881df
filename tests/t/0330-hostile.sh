# Hostile input: a build context whose symlinks and paths point outside
# it, tars given to ADD that try to write outside their destination, and
# URLs that fail.  Nothing outside may be read or written, and a failed
# build tags nothing and leaves no half-written blob in the store.
. "$(dirname "$0")/lib.sh"

export SOURCE_DATE_EPOCH=1700000000
# skopeo and podman unpack archives under $TMPDIR: keep that in $TMP too
export TMPDIR=$TMP/tmpdir
mkdir -p "$TMPDIR"
skopeo_() { skopeo --tmpdir "$TMPDIR" "$@"; }
R=$TMP/root
SECRET=outside-secret-$$-$RANDOM
OUT=$TMP/outside            # the host's files next to the context
V=$TMP/victim               # where a hostile tar would write on the host
mkdir -p "$OUT" "$V"
echo "$SECRET" >"$OUT/secret"
echo "$SECRET" >"$V/secret"

# blob_has_secret: any blob of the store holding the outside content,
# compressed or not
blob_has_secret() {
  local b
  for b in "$R"/blobs/sha256/*; do
    { zcat -f "$b" 2>/dev/null || cat "$b"; } | grep -qF "$SECRET" && return 0
  done
  return 1
}

# last_layer TAG: the path of the last layer blob of a tagged image
last_layer() {
  "$CBUILD" --root "$R" inspect "$1" 2>/dev/null |
    jq -r '.[0].Manifest.layers[-1].digest | ltrimstr("sha256:")' | sed "s,^,$R/blobs/sha256/,"
}

# layer_ls TAG: "TYPE PATH[ -> TARGET]" per entry of TAG's last layer
layer_ls() {
  tar -tvzf "$(last_layer "$1")" 2>/dev/null |
    awk '{ p = $6; for (i = 7; i <= NF; i++) p = p " " $i; print substr($1, 1, 1), p }'
}

# ---- symlinks in the context that point outside it ----
C=$TMP/ctx
mkdir -p "$C/tree/sub" "$C/outside"
echo inside >"$C/outside/secret"        # where a clamped "../outside" lands
ln -s "$OUT/secret" "$C/abs-link"
ln -s ../outside/secret "$C/rel-link"
ln -s "$OUT" "$C/abs-dir"
ln -s ../outside "$C/rel-dir"
ln -s "$OUT/secret" "$C/tree/abs"
ln -s ../../outside/secret "$C/tree/sub/rel"
ln -s ../../outside "$C/tree/dirl"
echo fine >"$C/tree/plain"

# copy_case NAME SOURCE: build "COPY SOURCE /x" as tag NAME
copy_case() {
  local name=$1 src=$2
  printf 'FROM scratch\nCOPY %s /x\n' "$src" >"$C/Dockerfile"
  run_cbuild build --root "$R" -t "$name" -q "$C"
}

copy_case abs-link abs-link
expect_rc "COPY of an absolute symlink leading outside succeeds" 0
expect_eq "... and copies it as a symlink" "$(layer_ls abs-link | grep ' x')" "l x -> $OUT/secret"
copy_case rel-link rel-link
expect_rc "COPY of a symlink leading outside through .. succeeds" 0
expect_eq "... and copies it as a symlink" "$(layer_ls rel-link | grep ' x')" "l x -> ../outside/secret"
copy_case abs-dir abs-dir
expect_eq "a symlink to an outside directory is copied as a symlink" "$(layer_ls abs-dir | grep ' x')" "l x -> $OUT"
copy_case rel-dir rel-dir
expect_eq "a .. symlink to a directory is copied as a symlink" "$(layer_ls rel-dir | grep ' x')" "l x -> ../outside"
copy_case glob 'abs-l*'
expect_eq "a glob matching an outside symlink copies the symlink" "$(layer_ls glob | grep ' x')" "l x -> $OUT/secret"

copy_case tree tree
expect_rc "COPY of a directory holding outside symlinks succeeds" 0
layer_ls tree >"$TMP/tree.ls"
check "an absolute symlink inside a directory stays a symlink" grep -qxF "l x/abs -> $OUT/secret" "$TMP/tree.ls"
check "a .. symlink inside a directory stays a symlink" grep -qxF "l x/sub/rel -> ../../outside/secret" "$TMP/tree.ls"
check "a symlink to an outside directory inside a directory stays a symlink" grep -qxF "l x/dirl -> ../../outside" "$TMP/tree.ls"
check "the directory's own files are copied" grep -qxF -- "- x/plain" "$TMP/tree.ls"
check "nothing is copied through a directory symlink" sh -c "! grep -q 'x/dirl/' '$TMP/tree.ls'"

# paths through a symlink leading outside, and paths with ..
for src in abs-dir/secret rel-dir/secret 'rel-dir/*' ../outside/secret ../../../../../../..$OUT/secret "$OUT/secret"; do
  copy_case through "$src"
  if [ "$rc" -eq 0 ]; then
    expect_eq "COPY $src stays in the context" "$(tar -xzOf "$(last_layer through)" 2>/dev/null)" inside
  else
    expect_err "COPY $src is refused as not found" "not found"
  fi
done
if blob_has_secret; then not_ok "no blob of the store holds the outside file's content"
else ok "no blob of the store holds the outside file's content"; fi

# ---- tars given to ADD ----
# Each tar is made by GNU tar: -P keeps absolute names and .., --delete
# removes the member a hardlink was made from.
T=$TMP/tars
mkdir -p "$T/s" "$T/s2/link" "$T/s3" "$T/s4"
echo PWNED >"$T/s/f"
tar -P -C "$T" --transform "s,^s/f,$V/abs-pwned," -cf "$T/abs.tar" s/f
tar -P -C "$T" --transform "s,^s/f,../../../../../../../../../../../../../..$V/dotdot-pwned," -cf "$T/dotdot.tar" s/f
tar -P -C "$T" --transform "s,^s/f,../escape," -cf "$T/dotdot-rel.tar" s/f
# a symlink to the host, then a file written through it
ln -s "$V" "$T/s/link"
tar -C "$T/s" -cf "$T/symlink.tar" link
echo PWNED >"$T/s2/link/through-pwned"
tar -C "$T/s2" -rf "$T/symlink.tar" link/through-pwned
# the same with a relative symlink climbing out
ln -s ../../../../../../../../../../../../../.. "$T/s3/up"
tar -C "$T/s3" -cf "$T/symlink-rel.tar" up
mkdir -p "$T/s4/up$V" && echo PWNED >"$T/s4/up$V/rel-pwned"
tar -C "$T/s4" -rf "$T/symlink-rel.tar" "up$V/rel-pwned"
# a symlink to the image's /etc, then a file written through it
mkdir -p "$T/s5" "$T/s6/etc-link" && ln -s /etc "$T/s5/etc-link"
tar -C "$T/s5" -cf "$T/symlink-image.tar" etc-link
echo PWNED >"$T/s6/etc-link/passwd"
tar -C "$T/s6" -rf "$T/symlink-image.tar" etc-link/passwd
# hardlinks to outside (absolute and ..), then a file written through them
mkdir -p "$T/h" && echo x >"$T/h/orig" && ln "$T/h/orig" "$T/h/hl"
tar -P -C "$T" --transform "s,^h/orig,$V/secret," -cf "$T/hardlink.tar" h/orig h/hl
tar -P --delete -f "$T/hardlink.tar" "$V/secret"
echo OVERWRITTEN >"$T/h/hl2" && tar -C "$T" --transform 's,^h/hl2,h/hl,' -rf "$T/hardlink.tar" h/hl2 2>/dev/null
tar -P -C "$T" --transform "s,^h/orig,../../../../../../../../../../../../../..$V/secret," -cf "$T/hardlink-rel.tar" h/orig h/hl
tar -P --delete -f "$T/hardlink-rel.tar" "../../../../../../../../../../../../../..$V/secret"
tar -C "$T" --transform 's,^h/hl2,h/hl,' -rf "$T/hardlink-rel.tar" h/hl2 2>/dev/null

# hostile_add NAME ENTRY: ADD NAME.tar /dest/ is refused with an error
# naming ENTRY, or confined under /dest; either way it writes nothing on
# the host
hostile_add() {
  local name=$1 entry=$2 ctx=$TMP/add-$1 host_before
  host_before=$(ls -A "$V")
  mkdir -p "$ctx"
  cp "$T/$name.tar" "$ctx/"
  printf 'FROM scratch\nADD %s.tar /dest/\n' "$name" >"$ctx/Dockerfile"
  run_cbuild build --root "$R" -t "add-$name" -q "$ctx"
  if [ "$rc" -ne 0 ]; then
    expect_err "ADD $name.tar is refused, naming the entry" "\"$entry\""
    check "ADD $name.tar: the failed build tags nothing" sh -c "! grep -qF 'add-$name' '$R/index.json'"
  else
    local outside
    outside=$(tar -tzf "$(last_layer "add-$name")" 2>&1 | grep -v '^dest/' | head -3)
    expect_eq "ADD $name.tar is confined under /dest" "$outside" ""
    check "ADD $name.tar: no content came through a link" sh -c "! tar -xzOf '$(last_layer "add-$name")' 2>/dev/null | grep -qF '$SECRET'"
  fi
  expect_eq "ADD $name.tar: nothing was written on the host" "$(ls -A "$V")" "$host_before"
  expect_eq "ADD $name.tar: the host's file is unchanged" "$(cat "$V/secret")" "$SECRET"
}
hostile_add abs "$V/abs-pwned"
hostile_add dotdot "../../../../../../../../../../../../../..$V/dotdot-pwned"
hostile_add dotdot-rel ../escape
hostile_add symlink link/through-pwned
hostile_add symlink-rel "up$V/rel-pwned"
hostile_add symlink-image etc-link/passwd
hostile_add hardlink h/hl
hostile_add hardlink-rel h/hl
expect_eq "the host directory holds only what it held" "$(ls -A "$V")" secret
expect_eq "ROOT/tmp is empty after the hostile tars" "$(ls -A "$R/tmp" | wc -l)" 0

# ---- URLs ----
W=$TMP/www
mkdir -p "$W/cgi-bin"
echo payload >"$W/file.txt"
touch -d '2020-01-02 03:04:05 UTC' "$W/file.txt"
port=""
httpd_pid=""
trap '[ -n "$httpd_pid" ] && kill "$httpd_pid" 2>/dev/null; rm -rf "$TMP"' EXIT
for try in 1 2 3 4 5 6 7 8 9 10; do
  p=$((20000 + (RANDOM % 20000)))
  busybox httpd -f -p "127.0.0.1:$p" -h "$W" 2>/dev/null &
  httpd_pid=$!
  sleep 0.2
  if kill -0 "$httpd_pid" 2>/dev/null; then port=$p; break; fi
  httpd_pid=""
done
printf '#!/bin/sh\nprintf "Status: 302 Found\\r\\nLocation: http://127.0.0.1:%s/cgi-bin/loop\\r\\n\\r\\n"\n' "$port" >"$W/cgi-bin/loop"
chmod +x "$W/cgi-bin/loop"
check "a local HTTP server runs" test -n "$port"
U=http://127.0.0.1:$port
sum=sha256:$(sha256sum <"$W/file.txt" | cut -d' ' -f1)
C=$TMP/urlctx
mkdir -p "$C"

# the server works: a good download, to show the failures below are real
printf 'FROM scratch\nADD --checksum=%s %s/file.txt /dl/\n' "$sum" "$U" >"$C/Dockerfile"
run_cbuild build --root "$R" -t url-ok -q "$C"
expect_rc "ADD of a URL with the right checksum succeeds" 0
layer_ls url-ok >"$TMP/url.ls"
check "the download lands in the directory" grep -qxF -- "- dl/file.txt" "$TMP/url.ls"
expect_eq "the download has mode 0600" "$(tar -tvzf "$(last_layer url-ok)" dl/file.txt 2>&1 | cut -c1-10)" "-rw-------"
expect_eq "its mtime comes from Last-Modified" \
  "$(tar --utc -tvzf "$(last_layer url-ok)" dl/file.txt 2>&1 | awk '{ print $4, $5 }')" "2020-01-02 03:04"
expect_eq "its content" "$(tar -xzOf "$(last_layer url-ok)" dl/file.txt 2>&1)" payload

# url_fails NAME WHAT URL TEXT [FLAGS]: ADD URL fails with an error
# holding TEXT, and leaves no blob, no tag and nothing in ROOT/tmp
url_fails() {
  local name=$1 what=$2 url=$3 text=$4 flags=${5:-}
  local blobs_before index_before
  blobs_before=$(ls "$R/blobs/sha256" | sort)
  index_before=$(cat "$R/index.json")
  printf 'FROM scratch\nADD %s %s /f\n' "$flags" "$url" >"$C/Dockerfile"
  run_cbuild build --root "$R" -t "url-$name" -q "$C"
  expect_rc "ADD of a URL $what fails" 1
  expect_err "$name: the error says why" "$text"
  expect_eq "$name: no blob is written" "$(ls "$R/blobs/sha256" | sort)" "$blobs_before"
  expect_eq "$name: nothing is tagged" "$(cat "$R/index.json")" "$index_before"
  expect_eq "$name: ROOT/tmp is left empty" "$(ls -A "$R/tmp" | wc -l)" 0
}
url_fails 404 "that answers 404" "$U/missing.txt" "404"
url_fails redirect "that redirects without end" "$U/cgi-bin/loop" "redirect"
url_fails checksum "whose body does not match --checksum" "$U/file.txt" "checksum" \
  "--checksum=sha256:$(printf '%064d' 0)"
url_fails connect "nobody listens on" "http://127.0.0.1:1/x" "127.0.0.1"

# with --checksum the cache knows the file before downloading it: a rebuild
# needs no server
mkdir -p "$TMP/urlcached"
printf 'FROM scratch\nADD --checksum=%s %s/file.txt /dl/\n' "$sum" "$U" >"$TMP/urlcached/Dockerfile"
run_cbuild build --root "$R" -t url-cached --progress plain "$TMP/urlcached"
expect_rc "ADD --checksum of a URL builds" 0
[ -n "$httpd_pid" ] && kill "$httpd_pid" 2>/dev/null && wait "$httpd_pid" 2>/dev/null
run_cbuild build --root "$R" -t url-cached --progress plain "$TMP/urlcached"
expect_rc "... and rebuilds with the server gone" 0
check "... from the cache, downloading nothing" grep -q "^#1 CACHED" "$TMP/err"

# ---- an archive that breaks off in the middle ----
C=$TMP/truncated
mkdir -p "$C/big"
for i in 1 2 3 4 5 6 7 8; do head -c 200000 /dev/urandom >"$C/big/f$i"; done
tar -C "$C" -czf "$C/whole.tar.gz" big
head -c 900000 "$C/whole.tar.gz" >"$C/cut.tar.gz"
rm -rf "$C/big" "$C/whole.tar.gz"
printf 'FROM scratch\nADD cut.tar.gz /dest/\n' >"$C/Dockerfile"
blobs_before=$(ls "$R/blobs/sha256" | sort)
run_cbuild build --root "$R" -t truncated -q "$C"
expect_rc "ADD of a truncated tar.gz fails" 1
expect_err "the error names the archive" "cut.tar.gz"
expect_eq "a truncated archive writes no blob" "$(ls "$R/blobs/sha256" | sort)" "$blobs_before"
expect_eq "a truncated archive leaves ROOT/tmp empty" "$(ls -A "$R/tmp" | wc -l)" 0
check "a truncated archive tags nothing" sh -c "! grep -q '\"truncated\"' '$R/index.json'"

# ---- the store after every failure ----
expect_eq "ROOT/tmp is empty at the end" "$(ls -A "$R/tmp" | wc -l)" 0
bad=""
for b in "$R"/blobs/sha256/*; do
  [ "$(sha256sum <"$b" | cut -d' ' -f1)" = "$(basename "$b")" ] || bad="$bad $(basename "$b")"
done
expect_eq "every blob hashes to its name" "$bad" ""
check "the store still reads as a layout (skopeo checks the blobs)" skopeo_ copy --quiet "oci:$R:url-ok" "oci:$TMP/copy:x"

finish
