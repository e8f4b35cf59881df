# Building images without RUN: FROM scratch, COPY/ADD, WORKDIR and the
# metadata instructions into the store; images, inspect, tag, rmi, save;
# FROM an image of the store and FROM a stage; a failed build tags and
# writes nothing.
. "$(dirname "$0")/lib.sh"

export SOURCE_DATE_EPOCH=1700000000
R=$TMP/root

# blob ROOT DIGEST: the path of a blob of a store or layout
blob() { echo "$1/blobs/sha256/${2#sha256:}"; }

# layer_ls ROOT DIGEST: "MODE UID/GID PATH[ -> TARGET]" per entry of a layer
layer_ls() {
  tar --numeric-owner -tvzf "$(blob "$1" "$2")" |
    awk '{ p = $6; for (i = 7; i <= NF; i++) p = p " " $i; print $1, $2, p }'
}

# inspect NAME: `cbuild inspect NAME` of store $R into $TMP/out
inspect() { run_cbuild --root "$R" inspect "$1"; }

# ---- FROM scratch, COPY/ADD/WORKDIR and every metadata instruction ----
C=$TMP/ctx1
mkdir -p "$C/dir/sub"
echo hello >"$C/a.txt"
echo added >"$C/b.txt"
echo deep >"$C/dir/sub/deep.txt"
cat >"$C/Dockerfile" <<'EOF'
FROM scratch
ENV A=1 B="two words"
ARG V=3
COPY a.txt /srv/
ADD b.txt /srv/added-$V.txt
LABEL l1=v1 "l 2"="v 2"
EXPOSE 80/tcp 53/udp
VOLUME /data
VOLUME ["/logs"]
WORKDIR /srv/work
COPY dir ./copied
USER 1000:1000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD ["/bin/check", "$A"]
SHELL ["/bin/bash", "-c"]
CMD echo $A
ONBUILD COPY x /y
EOF
run_cbuild build --root "$R" -t app --label cli=yes --label l1=from-cli -q "$C"
expect_rc "a FROM scratch build succeeds" 0

run_cbuild --root "$R" images
expect_rc "images exits 0" 0
check "images lists the image with its tag" grep -qE '^app +latest +[0-9a-f]{12} ' "$TMP/out"
check "images shows the SOURCE_DATE_EPOCH creation time" grep -q '2023-11-14T22:13:20Z' "$TMP/out"

inspect app
expect_rc "inspect exits 0" 0
cp "$TMP/out" "$TMP/app.json"
expect_eq "inspect names the image" "$(jqo '.[0].Name')" app
expect_eq "Env: PATH, then ENV in order" \
  "$(jqo '.[0].Config.config.Env | join("|")')" \
  "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|A=1|B=two words"
expect_eq "ARG values are not in Env" "$(jqo '[.[0].Config.config.Env[] | select(startswith("V="))] | length')" 0
expect_eq "Cmd in shell form runs under SHELL" "$(jqo '.[0].Config.config.Cmd | tojson')" '["/bin/bash","-c","echo $A"]'
expect_eq "no Entrypoint" "$(jqo '.[0].Config.config.Entrypoint')" null
expect_eq "WorkingDir" "$(jqo '.[0].Config.config.WorkingDir')" /srv/work
expect_eq "User" "$(jqo '.[0].Config.config.User')" 1000:1000
expect_eq "ExposedPorts" "$(jqo '.[0].Config.config.ExposedPorts | keys | join(",")')" 53/udp,80/tcp
expect_eq "Volumes, shell and JSON forms" "$(jqo '.[0].Config.config.Volumes | keys | join(",")')" "/data,/logs"
expect_eq "Labels from LABEL and --label (--label wins)" \
  "$(jqo '.[0].Config.config.Labels | to_entries | map("\(.key)=\(.value)") | join("|")')" \
  "cli=yes|l 2=v 2|l1=from-cli"
expect_eq "StopSignal" "$(jqo '.[0].Config.config.StopSignal')" SIGTERM
expect_eq "Healthcheck test (exec form, not substituted)" \
  "$(jqo '.[0].Config.config.Healthcheck.Test | tojson')" '["CMD","/bin/check","$A"]'
expect_eq "Healthcheck durations in ns and retries" \
  "$(jqo '.[0].Config.config.Healthcheck | "\(.Interval) \(.Timeout) \(.Retries)"')" \
  "5000000000 2000000000 4"
expect_eq "Shell" "$(jqo '.[0].Config.config.Shell | tojson')" '["/bin/bash","-c"]'
expect_eq "OnBuild" "$(jqo '.[0].Config.config.OnBuild | tojson')" '["COPY x /y"]'
expect_eq "created from SOURCE_DATE_EPOCH" "$(jqo '.[0].Config.created')" 2023-11-14T22:13:20Z
expect_eq "os/architecture" "$(jqo '.[0].Config | "\(.os)/\(.architecture)"')" "linux/$(
  case $(uname -m) in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac)"
expect_eq "rootfs type" "$(jqo '.[0].Config.rootfs.type')" layers

# history: metadata steps are empty layers; one entry per layer, in order
expect_eq "one history entry per step" "$(jqo '.[0].Config.history | length')" 16
expect_eq "layers came from COPY, ADD, WORKDIR, COPY" \
  "$(jqo '[.[0].Config.history[] | select(.empty_layer != true) | .created_by | split(" ")[0]] | join(",")')" \
  "COPY,ADD,WORKDIR,COPY"
expect_eq "metadata steps are empty_layer" \
  "$(jqo '[.[0].Config.history[] | select(.empty_layer == true) | .created_by | split(" ")[0]] | join(",")')" \
  "ENV,ARG,LABEL,EXPOSE,VOLUME,VOLUME,USER,STOPSIGNAL,HEALTHCHECK,SHELL,CMD,ONBUILD"
expect_eq "as many diff_ids as non-empty history entries" \
  "$(jqo '.[0].Config.rootfs.diff_ids | length')" \
  "$(jqo '[.[0].Config.history[] | select(.empty_layer != true)] | length')"
expect_eq "as many manifest layers as diff_ids" \
  "$(jqo '.[0].Manifest.layers | length')" "$(jqo '.[0].Config.rootfs.diff_ids | length')"
expect_eq "the manifest's config is the image ID" \
  "$(jqo '.[0].Manifest.config.mediaType')" application/vnd.oci.image.config.v1+json

# each layer blob: its digest, its diff_id, and the files of its step
want_files=("srv/a.txt" "srv/added-3.txt" "srv/work" "srv/work/copied/sub/deep.txt")
for i in 0 1 2 3; do
  d=$(jq -r ".[0].Manifest.layers[$i].digest" "$TMP/app.json")
  diff=$(jq -r ".[0].Config.rootfs.diff_ids[$i]" "$TMP/app.json")
  f=$(blob "$R" "$d")
  expect_eq "layer $i: the blob hashes to its digest" "sha256:$(sha256sum <"$f" | cut -d' ' -f1)" "$d"
  expect_eq "layer $i: the uncompressed tar hashes to diff_id $i" "sha256:$(zcat "$f" | sha256sum | cut -d' ' -f1)" "$diff"
  check "layer $i holds ${want_files[$i]}" sh -c "tar -tzf '$f' | sed 's,/\$,,' | grep -qx '${want_files[$i]}'"
done
d=$(jq -r '.[0].Manifest.layers[3].digest' "$TMP/app.json")
check "COPY of a directory copies its contents, not the directory" \
  sh -c "! tar -tzf '$(blob "$R" "$d")' | grep -q 'copied/dir'"

# ---- ENTRYPOINT and an inherited CMD ----
mkdir -p "$TMP/ctx2"
printf 'FROM scratch\nENTRYPOINT ["/bin/base"]\nCMD ["base-arg"]\n' >"$TMP/ctx2/Dockerfile"
run_cbuild build --root "$R" -t base-ep -q "$TMP/ctx2"
expect_rc "a base with ENTRYPOINT and CMD builds" 0
printf 'FROM base-ep\nENTRYPOINT ["/bin/child"]\n' >"$TMP/ctx2/Dockerfile"
run_cbuild build --root "$R" -t child-ep -q "$TMP/ctx2"
expect_rc "FROM a store image with ENTRYPOINT builds" 0
inspect child-ep
expect_eq "ENTRYPOINT is replaced" "$(jqo '.[0].Config.config.Entrypoint | tojson')" '["/bin/child"]'
expect_eq "ENTRYPOINT drops the inherited CMD" "$(jqo '.[0].Config.config.Cmd')" null
printf 'FROM base-ep\nCMD ["own-arg"]\nENTRYPOINT /bin/child -x\n' >"$TMP/ctx2/Dockerfile"
run_cbuild build --root "$R" -t child-ep2 -q "$TMP/ctx2"
inspect child-ep2
expect_eq "a CMD of the same stage survives a later ENTRYPOINT" "$(jqo '.[0].Config.config.Cmd | tojson')" '["own-arg"]'
expect_eq "ENTRYPOINT in shell form runs /bin/sh -c" \
  "$(jqo '.[0].Config.config.Entrypoint | tojson')" '["/bin/sh","-c","/bin/child -x"]'
printf 'FROM base-ep\nLABEL x=y\n' >"$TMP/ctx2/Dockerfile"
run_cbuild build --root "$R" -t child-keep -q "$TMP/ctx2"
inspect child-keep
expect_eq "without ENTRYPOINT the base's CMD is inherited" "$(jqo '.[0].Config.config.Cmd | tojson')" '["base-arg"]'
expect_eq "and its ENTRYPOINT too" "$(jqo '.[0].Config.config.Entrypoint | tojson')" '["/bin/base"]'
expect_eq "the base's history comes first" "$(jqo '.[0].Config.history | length')" 3

# ---- tag, rmi, save ----
run_cbuild --root "$R" tag app app:v2
expect_rc "tag exits 0" 0
run_cbuild --root "$R" images
check "the new tag is listed" grep -qE '^app +v2 ' "$TMP/out"
expect_eq "both tags name one image ID" \
  "$(awk '$1 == "app" { print $3 }' "$TMP/out" | sort -u | wc -l)" 1
run_cbuild --root "$R" inspect app:v2
expect_eq "the tag points at the same manifest" "$(jqo '.[0].Digest')" "$(jq -r '.[0].Digest' "$TMP/app.json")"
run_cbuild --root "$R" tag nosuch other
expect_rc "tag of a missing image fails" 1
expect_err "the missing image is named" nosuch

run_cbuild --root "$R" save app -o "$TMP/save.tar"
expect_rc "save -o exits 0" 0
mkdir -p "$TMP/save" && tar -xf "$TMP/save.tar" -C "$TMP/save"
check "the saved tarball is an OCI layout" jq -e '.imageLayoutVersion == "1.0.0"' "$TMP/save/oci-layout"
expect_eq "its index holds the image's manifest" \
  "$(jq -r '.manifests[0].digest' "$TMP/save/index.json")" "$(jq -r '.[0].Digest' "$TMP/app.json")"
expect_eq "the manifest blob is in the tarball" \
  "$(sha256sum <"$(blob "$TMP/save" "$(jq -r '.[0].Digest' "$TMP/app.json")")" | cut -d' ' -f1)" \
  "$(jq -r '.[0].Digest | ltrimstr("sha256:")' "$TMP/app.json")"
n=0
for d in $(jq -r '.[0].Manifest.layers[].digest, .[0].Manifest.config.digest' "$TMP/app.json"); do
  [ -f "$(blob "$TMP/save" "$d")" ] && n=$((n + 1))
done
expect_eq "every layer and the config are in the tarball" "$n" 5
check "no temporary file is left beside the saved tarball" sh -c "! ls '$TMP' | grep -q cbuild-tmp"

# ---- outputs that are not plain files ----
# As docker writes them: through a symlink (the file it names is replaced,
# the link stays), and into a fifo or a device in place, never replacing it
# with a file (as root, `-o dest=/dev/null` must leave /dev/null alone).
O=$TMP/outs
mkdir -p "$O"
echo old >"$O/target"
ln -s target "$O/link"
run_cbuild build --root "$R" -q -o "type=oci,dest=$O/link" "$C"
expect_rc "a build to a symlink exits 0" 0
check "the symlink given as dest stays a symlink" test -L "$O/link"
check "... and the file it names holds the archive" sh -c "tar -tf '$O/target' | grep -qx index.json"
# fifo_read OUT: list the archive written to the fifo into OUT, in the
# background (given up after 30 s: a writer that replaced the fifo never
# opens it)
fifo_read() {
  timeout 30 sh -c 'tar -tf - <"$1"' sh "$O/fifo" >"$1" 2>&1 &
  reader=$!
}
mkfifo "$O/fifo"
fifo_read "$O/fifo.build"
run_cbuild build --root "$R" -q -o "type=docker,dest=$O/fifo" "$C"
expect_rc "a build to a fifo exits 0" 0
wait "$reader"
check "the fifo stays a fifo" test -p "$O/fifo"
check "... and its reader gets the whole archive" grep -qx manifest.json "$O/fifo.build"
fifo_read "$O/fifo.save"
run_cbuild --root "$R" save app -o "$O/fifo"
expect_rc "save to a fifo exits 0" 0
wait "$reader"
check "save writes into the fifo too" grep -qx index.json "$O/fifo.save"
check "the fifo is still one" test -p "$O/fifo"
if [ "$(id -u)" = 0 ]; then
  mknod "$O/null" c 1 3
  run_cbuild build --root "$R" -q -o "type=oci,dest=$O/null" "$C"
  expect_rc "a build to a device node (a copy of /dev/null) exits 0" 0
  check "the device stays a device" test -c "$O/null"
  run_cbuild --root "$R" save app -o "$O/null"
  check "save leaves the device a device too" test -c "$O/null"
fi
run_cbuild build --root "$R" -q -o "type=oci,dest=$O" "$C"
expect_rc "a build to an existing directory as a tarball fails" 1
expect_err "... saying it is a directory" "\"$O\" is a directory"
check "no temporary file is left beside these outputs" sh -c "! ls -A '$O' | grep -q cbuild-tmp"

run_cbuild --root "$R" rmi app:v2
expect_rc "rmi exits 0" 0
run_cbuild --root "$R" images
check "rmi removes the name" sh -c "! grep -qE '^app +v2 ' '$TMP/out'"
check "rmi keeps the other name" grep -qE '^app +latest ' "$TMP/out"
run_cbuild --root "$R" rmi app:v2
expect_rc "rmi of a missing name fails" 1

# ---- FROM an image of the store ----
C=$TMP/ctx3
mkdir -p "$C/etc" "$C/data"
printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1234:2345::/home/alice:/bin/sh\n' >"$C/etc/passwd"
printf 'root:x:0:\nusers:x:2345:\nstaff:x:3456:alice\n' >"$C/etc/group"
echo one >"$C/data/one"
printf 'FROM scratch\nENV BASEDIR=/opt/base\nCOPY etc /etc\nCOPY data $BASEDIR/\nWORKDIR /work\n' >"$C/Dockerfile"
run_cbuild build --root "$R" -t mybase:1 -q "$C"
expect_rc "a base image builds" 0
C=$TMP/ctx4
mkdir -p "$C"
echo two >"$C/two"
echo three >"$C/three"
cat >"$C/Dockerfile" <<'EOF'
FROM mybase:1
ENV CHILD=${BASEDIR}/child
COPY two $BASEDIR
COPY --chown=alice three rel
COPY --chown=alice:staff two /owned
EOF
run_cbuild build --root "$R" -t mychild -q "$C"
expect_rc "FROM an image of the store builds" 0
inspect mychild
cp "$TMP/out" "$TMP/child.json"
expect_eq "the base's ENV is seen in substitution" \
  "$(jqo '.[0].Config.config.Env[] | select(startswith("CHILD="))')" "CHILD=/opt/base/child"
expect_eq "the base's WORKDIR is inherited" "$(jqo '.[0].Config.config.WorkingDir')" /work
expect_eq "the base's layers come first" \
  "$(jqo '.[0].Manifest.layers | length')" 6
layer_ls "$R" "$(jq -r '.[0].Manifest.layers[3].digest' "$TMP/child.json")" >"$TMP/l3"
check "an existing directory of the base is a directory destination" grep -q ' opt/base/two$' "$TMP/l3"
check "... so nothing replaces it" sh -c "! grep -q ' opt/base\$' '$TMP/l3'"
layer_ls "$R" "$(jq -r '.[0].Manifest.layers[4].digest' "$TMP/child.json")" >"$TMP/l4"
check "a relative destination resolves against the inherited WORKDIR" grep -q ' work/rel$' "$TMP/l4"
check "--chown=NAME takes the uid and primary gid from the image" grep -q ' 1234/2345 work/rel$' "$TMP/l4"
layer_ls "$R" "$(jq -r '.[0].Manifest.layers[5].digest' "$TMP/child.json")" >"$TMP/l5"
check "--chown=USER:GROUP looks both names up" grep -q ' 1234/3456 owned$' "$TMP/l5"

printf 'FROM mybase:1\nCOPY --chown=nobody two /x\n' >"$C/Dockerfile"
run_cbuild build --root "$R" -q "$C"
expect_rc "an unknown --chown user fails" 1
expect_err "the unknown user is named" '"nobody"'

printf 'FROM no-such-image:9\nCOPY two /x\n' >"$C/Dockerfile"
run_cbuild build --root "$R" -q "$C"
expect_rc "FROM an image that is not in the store fails" 1
expect_err "the missing base is named" 'no-such-image'

# ---- multi-stage: COPY --from a stage ----
C=$TMP/ctx5
mkdir -p "$C/src"
echo built >"$C/src/artifact"
ln -s artifact "$C/src/link"
cat >"$C/Dockerfile" <<'DF'
FROM scratch AS builder
COPY src /out/
COPY <<EOF /out/generated
made in builder
EOF

FROM scratch AS unused
COPY does-not-exist /

FROM scratch
COPY --from=builder /out/artifact /out/generated /app/
COPY --from=builder /out/link /app/link
COPY --from=0 /out /all
DF
run_cbuild build --root "$R" -t multi -q "$C"
expect_rc "a multi-stage build succeeds (an unused stage is skipped)" 0
inspect multi
cp "$TMP/out" "$TMP/multi.json"
expect_eq "the final image has only its own layers" "$(jqo '.[0].Manifest.layers | length')" 3
mkdir -p "$TMP/m0" "$TMP/m1" "$TMP/m2"
tar -xzf "$(blob "$R" "$(jq -r '.[0].Manifest.layers[0].digest' "$TMP/multi.json")")" -C "$TMP/m0" 2>/dev/null
tar -xzf "$(blob "$R" "$(jq -r '.[0].Manifest.layers[1].digest' "$TMP/multi.json")")" -C "$TMP/m1" 2>/dev/null
tar -xzf "$(blob "$R" "$(jq -r '.[0].Manifest.layers[2].digest' "$TMP/multi.json")")" -C "$TMP/m2" 2>/dev/null
expect_eq "COPY --from copies a stage's file" "$(cat "$TMP/m0/app/artifact" 2>&1)" built
expect_eq "COPY --from copies a stage's heredoc file" "$(cat "$TMP/m0/app/generated" 2>&1)" "made in builder"
check "a symlink named as a --from source is followed" test -f "$TMP/m1/app/link" -a ! -L "$TMP/m1/app/link"
expect_eq "... and copies what it points to" "$(cat "$TMP/m1/app/link" 2>&1)" built
expect_eq "COPY --from=INDEX copies a directory's contents" "$(ls "$TMP/m2/all" 2>&1 | tr '\n' ' ')" "artifact generated link "
expect_eq "a symlink inside a directory from a stage stays a symlink" "$(readlink "$TMP/m2/all/link" 2>&1)" artifact

# ---- a failed build changes nothing ----
C=$TMP/ctx6
mkdir -p "$C"
echo x >"$C/present"
printf 'FROM scratch\nCOPY present /p\nLABEL a=b\nCOPY missing/file /m\n' >"$C/Dockerfile"
run_cbuild --root "$R" images
cp "$TMP/out" "$TMP/images.before"
cp "$R/index.json" "$TMP/index.before"
run_cbuild build --root "$R" -t failed -t app:after-fail -o "type=oci,dest=$TMP/fail-oci.tar" \
  -o "type=docker,dest=$TMP/fail-docker.tar" -o "type=oci,dest=$TMP/fail-dir,tar=false" -q "$C"
expect_rc "a build with a missing COPY source exits 1" 1
expect_err "the error is FILE:LINE: COPY: source ... not found" 'Dockerfile:4: COPY: source "missing/file" not found'
expect_eq "ROOT/tmp is empty after the failure" "$(ls -A "$R/tmp" | wc -l)" 0
run_cbuild --root "$R" images
check "images lists the same images after the failure" cmp -s "$TMP/out" "$TMP/images.before"
check "index.json is unchanged after the failure" cmp -s "$R/index.json" "$TMP/index.before"
check "no oci tarball is written after a failure" test ! -e "$TMP/fail-oci.tar"
check "no docker tarball is written after a failure" test ! -e "$TMP/fail-docker.tar"
check "no layout directory is written after a failure" test ! -e "$TMP/fail-dir"
check "no temporary output is left after a failure" sh -c "! ls -A '$TMP' | grep -q 'fail-.*cbuild-tmp\|cbuild-tmp'"

# the same build with the file present writes every output
mkdir -p "$C/missing" && echo now >"$C/missing/file"
run_cbuild build --root "$R" -t failed -o "type=oci,dest=$TMP/fail-oci.tar" \
  -o "type=docker,dest=$TMP/fail-docker.tar" -o "type=oci,dest=$TMP/fail-dir,tar=false" -q "$C"
expect_rc "the build succeeds once the source exists" 0
check "the oci tarball is written on success" test -s "$TMP/fail-oci.tar"
check "the docker tarball is written on success" test -s "$TMP/fail-docker.tar"
check "the layout directory is written on success" test -s "$TMP/fail-dir/index.json"
expect_eq "ROOT/tmp is empty after a success" "$(ls -A "$R/tmp" | wc -l)" 0

finish
