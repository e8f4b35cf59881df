#!/bin/bash
# Registries: push and pull against Debian's docker-registry on 127.0.0.1,
# checked with skopeo; FROM an image only the registry has; platforms of an
# index; Basic and Bearer auth; corrupt blobs; retries; a registry killed
# mid-push; blob mounts across repositories and chunked uploads.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/registry.sh"

for tool in docker-registry skopeo curl htpasswd; do
  if ! command -v "$tool" >/dev/null; then
    echo "1..0 # SKIP $tool is not installed"
    exit 0
  fi
done

busybox_base
registry_start main || { not_ok "the registry starts"; finish; exit; }
MAIN=$REG
MAIN_DIR=$REG_DIR
export HOME=$TMP/home REGISTRY_AUTH_FILE=$TMP/auth.json DOCKER_CONFIG=$TMP/home/.docker
mkdir -p "$HOME"
unset XDG_RUNTIME_DIR

# A context whose Dockerfile is FROM $1 and runs $2.
ctx() {
  local d=$TMP/ctx-$3
  mkdir -p "$d"
  printf 'FROM %s\nRUN %s\n' "$1" "$2" >"$d/Dockerfile"
  echo "$d"
}

# ---- push, then other tools see it ----
run_cbuild push --root "$R" busybox "$MAIN/bb:v1"
expect_rc "push to a loopback registry" 0
pushed=$(cat "$TMP/out")
got=$(skopeo inspect --tls-verify=false "docker://$MAIN/bb:v1" | jq -r .Digest)
expect_eq "skopeo sees the digest push printed" "$got" "$pushed"
want=$(jq -r '.manifests[] | select(.annotations["io.containerd.image.name"] == "docker.io/library/busybox:latest") | .digest' "$R/index.json")
expect_eq "the pushed digest is the store's manifest" "$pushed" "$want"
check "skopeo copies the pushed image out" skopeo copy --src-tls-verify=false "docker://$MAIN/bb:v1" "oci:$TMP/copied:bb"

run_cbuild push --root "$R" busybox "$MAIN/bb:v1"
expect_rc "pushing again succeeds" 0
expect_eq "and gives the same digest" "$(cat "$TMP/out")" "$pushed"

run_cbuild push --root "$R" nosuch "$MAIN/x:1"
expect_err "pushing an image the store lacks fails" 'no image "nosuch" in the store'

# ---- pull: FROM an image only the registry has ----
skopeo copy --dest-tls-verify=false "oci:$TMP/copied:bb" "docker://$MAIN/lib/base:1.0" >/dev/null 2>&1
export SOURCE_DATE_EPOCH=1700000000
R2=$TMP/root2
c=$(ctx "$MAIN/lib/base:1.0" 'echo pulled >/pulled' a)
run_cbuild build --root "$R2" --network none -t app "$c"
expect_rc "FROM an image skopeo copied into the registry pulls it" 0
check "the pulled image is tagged in the new store" grep -q "\"$MAIN/lib/base:1.0\"" "$R2/index.json"
check "skopeo reads the result from the store" skopeo inspect "oci:$R2:app"
first_id=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "app") | .digest' "$R2/index.json")

R3=$TMP/root3
run_cbuild build --root "$R3" --network none -t app "$c"
second_id=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "app") | .digest' "$R3/index.json")
expect_eq "two empty stores build the same image from the registry" "$second_id" "$first_id"
unset SOURCE_DATE_EPOCH

run_cbuild pull --root "$TMP/root-p" "$MAIN/lib/base:1.0"
expect_rc "cbuild pull" 0
expect_eq "pull prints the manifest digest" "$(cat "$TMP/out")" "$(skopeo inspect --tls-verify=false "docker://$MAIN/lib/base:1.0" | jq -r .Digest)"

# on a terminal, a progress line (script gives the command one)
if command -v script >/dev/null; then
  script -qec "'$CBUILD' pull --root '$TMP/root-tty' '$MAIN/lib/base:1.0'" /dev/null >"$TMP/tty.out" 2>&1
  check "a pull on a terminal shows its progress" grep -q "pull $MAIN/lib/base:1.0: 3/3 blobs, .* MiB" "$TMP/tty.out"
  script -qec "'$CBUILD' pull -q --root '$TMP/root-tty2' '$MAIN/lib/base:1.0'" /dev/null >"$TMP/tty.out" 2>&1
  check "-q hides it" sh -c "! grep -q 'blobs,' '$TMP/tty.out'"
fi

# pinned by digest
pinned=$(cat "$TMP/out")
c=$(ctx "$MAIN/lib/base@$pinned" 'true' pin)
run_cbuild build --root "$TMP/root-pin" --network none -t pinned "$c"
expect_rc "FROM name@digest pulls by digest" 0
run_cbuild build --root "$TMP/root-pin" --network none -t pinned "$c"
expect_rc "and builds again from the store" 0
c=$(ctx "$MAIN/lib/base@sha256:$(printf '%064d' 1)" 'true' badpin)
run_cbuild build --root "$TMP/root-pin" --network none "$c"
expect_err "an unknown digest fails with the registry's answer" "manifest unknown"

# policies
c=$(ctx "$MAIN/not/there:1" 'true' missing)
run_cbuild build --root "$TMP/root-miss" --network none "$c"
expect_err "FROM an image no one has fails on its line" "Dockerfile:1: FROM"
c=$(ctx "$MAIN/lib/base:1.0" 'true' never)
run_cbuild build --root "$TMP/root-never" --pull=never --network none "$c"
expect_err "--pull=never does not pull" "not in the local store"
registry_proxy_start main pass
c=$(ctx "$PROXY/lib/base:1.0" 'true' always)
"$CBUILD" build --root "$TMP/root-always" --network none -q "$c" >/dev/null 2>&1
before=$(grep -c "GET /v2/lib/base/manifests/1.0" "$TMP/registry-main/proxy.log")
blobs_before=$(grep -c "GET /v2/lib/base/blobs" "$TMP/registry-main/proxy.log")
"$CBUILD" build --root "$TMP/root-always" --network none -q "$c" >/dev/null 2>&1
after_missing=$(grep -c "GET /v2/lib/base/manifests/1.0" "$TMP/registry-main/proxy.log")
run_cbuild build --root "$TMP/root-always" --pull --network none -q "$c"
after_always=$(grep -c "GET /v2/lib/base/manifests/1.0" "$TMP/registry-main/proxy.log")
expect_eq "--pull=missing does not ask again for an image the store has" "$after_missing" "$before"
expect_eq "--pull asks the registry again" "$after_always" "$((before + 1))"
expect_eq "--pull fetches no blob the store has" "$(grep -c "GET /v2/lib/base/blobs" "$TMP/registry-main/proxy.log")" "$blobs_before"

# ---- an index with two platforms ----
case $(uname -m) in
  x86_64) host_arch=amd64 ;;
  aarch64) host_arch=arm64 ;;
  *) host_arch=$(uname -m) ;;
esac
other_arch=s390x
[ "$host_arch" = s390x ] && other_arch=ppc64le
printf 'FROM scratch\nCOPY f /f\n' >"$TMP/p1.Dockerfile"
mkdir -p "$TMP/pctx"
echo host >"$TMP/pctx/f"
"$CBUILD" build --root "$R" -f "$TMP/p1.Dockerfile" -t plat-host -q "$TMP/pctx" >/dev/null
echo other >"$TMP/pctx/f"
"$CBUILD" build --root "$R" -f "$TMP/p1.Dockerfile" -t plat-other -q "$TMP/pctx" >/dev/null
"$CBUILD" push --root "$R" plat-host "$MAIN/multi:host" >"$TMP/d1" 2>&1
"$CBUILD" push --root "$R" plat-other "$MAIN/multi:other" >"$TMP/d2" 2>&1
size_of() { curl -s -o /dev/null -w '%{size_download}' -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://$MAIN/v2/multi/manifests/$1"; }
jq -n --arg d1 "$(cat "$TMP/d1")" --arg d2 "$(cat "$TMP/d2")" --argjson s1 "$(size_of host)" --argjson s2 "$(size_of other)" \
  --arg arch "$host_arch" --arg other "$other_arch" '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [
    {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d2, size: $s2, platform: {os: "linux", architecture: $other}},
    {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d1, size: $s1, platform: {os: "linux", architecture: $arch}}]}' >"$TMP/index.json"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "Content-Type: application/vnd.oci.image.index.v1+json" \
  --data-binary "@$TMP/index.json" "http://$MAIN/v2/multi/manifests/both")
expect_eq "an index is put in the registry" "$code" 201
run_cbuild pull --root "$TMP/root-multi" "$MAIN/multi:both"
expect_eq "pull chooses the host's platform from an index" "$(cat "$TMP/out")" "$(cat "$TMP/d1")"
run_cbuild pull --root "$TMP/root-multi" --platform "linux/$other_arch" "$MAIN/multi:both"
expect_eq "--platform chooses another" "$(cat "$TMP/out")" "$(cat "$TMP/d2")"
run_cbuild pull --root "$TMP/root-multi" --platform linux/mips64le "$MAIN/multi:both"
expect_err "a platform the index lacks is named with what there is" "linux/$other_arch"
mkdir -p "$TMP/ctx-multi"
printf 'FROM --platform=linux/%s %s AS o\nFROM scratch\nCOPY --from=o /f /g\n' "$other_arch" "$MAIN/multi:both" >"$TMP/ctx-multi/Dockerfile"
run_cbuild build --root "$TMP/root-multi2" --network none -o "type=oci,dest=$TMP/multi-out,tar=false" "$TMP/ctx-multi"
expect_rc "FROM --platform pulls that platform's image" 0
got=""
for b in "$TMP"/multi-out/blobs/sha256/*; do
  got=$got$(tar -xzOf "$b" g 2>/dev/null)
done
expect_eq "and COPY --from it copies that platform's file" "$got" other

# ---- build --push and -o type=image,push=true ----
c=$(ctx busybox 'echo built >/built' push)
run_cbuild build --root "$R" --network none -t "$MAIN/built:1" --push "$c"
expect_rc "build --push" 0
check "the pushed build is in the registry" skopeo inspect --tls-verify=false "docker://$MAIN/built:1"
run_cbuild build --root "$R" --network none -o "type=image,name=$MAIN/built:2,push=true" "$c"
expect_rc "-o type=image,name=REF,push=true" 0
expect_eq "both pushes name one manifest" \
  "$(skopeo inspect --tls-verify=false "docker://$MAIN/built:2" | jq -r .Digest)" \
  "$(skopeo inspect --tls-verify=false "docker://$MAIN/built:1" | jq -r .Digest)"
run_cbuild build --root "$R" --network none --push "$c"
expect_err "--push without -t is a usage error" "--push needs a name"

# ---- blob mounts and chunked uploads (seen through the proxy) ----
"$CBUILD" push --root "$R" busybox "$PROXY/first/bb:v1" >/dev/null 2>&1
: >"$TMP/registry-main/proxy.log"
run_cbuild push --root "$R" busybox "$PROXY/first/bb:v1"
expect_rc "a push of what the registry holds" 0
check "asks with HEAD and uploads nothing" sh -c "grep -q '^pass HEAD /v2/first/bb/blobs/.* 200' '$TMP/registry-main/proxy.log' && ! grep -q 'POST\|PATCH' '$TMP/registry-main/proxy.log'"
: >"$TMP/registry-main/proxy.log"
run_cbuild push --root "$R" busybox "$PROXY/other/bb:v1"
expect_rc "push to a second repository" 0
check "its blobs are mounted from the first" grep -q "POST /v2/other/bb/blobs/uploads/?mount=sha256:.*&from=first/bb .* 201" "$TMP/registry-main/proxy.log"
check "and not uploaded again" sh -c "! grep -q 'PATCH\|PUT /v2/other/bb/blobs' '$TMP/registry-main/proxy.log'"
mkdir -p "$TMP/big"
head -c $((40 << 20)) /dev/urandom >"$TMP/big/blob"
printf 'FROM scratch\nCOPY blob /blob\n' >"$TMP/big/Dockerfile"
"$CBUILD" build --root "$R" --compression none -t big -q "$TMP/big" >/dev/null
: >"$TMP/registry-main/proxy.log"
run_cbuild push --root "$R" big "$PROXY/big:1"
expect_rc "push a 40 MiB layer" 0
expect_eq "it goes up in two PATCH chunks" "$(grep -c '^pass PATCH /v2/big/blobs/uploads/' "$TMP/registry-main/proxy.log")" 2
check "skopeo copies the chunked image back" skopeo copy --src-tls-verify=false "docker://$MAIN/big:1" "oci:$TMP/big-copy:1"

# ---- retries: a flaky front answers 503 once per path ----
registry_proxy_start main flaky
FLAKY=$PROXY
run_cbuild pull --root "$TMP/root-flaky" "$FLAKY/lib/base:1.0"
expect_rc "pull retries 503 answers" 0
check "503s were seen" grep -q "503 flaky" "$TMP/registry-main/proxy.log"
run_cbuild push --root "$R" busybox "$FLAKY/flaky/bb:v1"
expect_rc "push retries them too" 0

# ---- blobs behind a redirect; zstd and uncompressed layers ----
registry_proxy_start main redirect-blobs
run_cbuild pull --root "$TMP/root-redirect" "$PROXY/lib/base:1.0"
expect_rc "pull follows blob redirects" 0
check "the blobs were redirected" grep -q "GET /v2/lib/base/blobs/.* 307 redirected" "$TMP/registry-main/proxy.log"
c=$(ctx busybox 'echo z >/z' zstd)
"$CBUILD" build --root "$R" --network none --compression zstd -q -t zimg "$c" >/dev/null
"$CBUILD" push --root "$R" -q zimg "$MAIN/zimg:1" >/dev/null 2>&1
printf 'FROM scratch\nCOPY f /f\n' >"$TMP/pctx/Dockerfile"
"$CBUILD" build --root "$R" --network none --compression none -q -t nimg "$TMP/pctx" >/dev/null
"$CBUILD" push --root "$R" -q nimg "$MAIN/nimg:1" >/dev/null 2>&1
check "the zstd image is pushed with zstd layers" sh -c "skopeo inspect --raw --tls-verify=false docker://$MAIN/zimg:1 | grep -q 'tar+zstd'"
c=$(ctx "$MAIN/zimg:1" 'cat /z >/z2' zstd2)
printf 'COPY --from=%s /f /f\n' "$MAIN/nimg:1" >>"$c/Dockerfile"
run_cbuild build --root "$TMP/root-zstd" --network none -q "$c"
expect_rc "RUN on a pulled zstd image, COPY from an uncompressed one" 0

# ---- a registry serving a corrupt blob ----
registry_proxy_start main corrupt-blobs
run_cbuild pull --root "$TMP/root-corrupt" "$PROXY/lib/base:1.0"
expect_err "a corrupt blob is refused" "digest is sha256:"
check "no tag was set" sh -c "! grep -q base '$TMP/root-corrupt/index.json'"
check "no blob entered the store" test -z "$(ls "$TMP/root-corrupt/blobs/sha256/")"

# ---- kill the registry mid-push, then push again ----
"$CBUILD" push --root "$R" big "$MAIN/killed:1" >"$TMP/kill.out" 2>"$TMP/kill.err" &
pusher=$!
for _ in $(seq 1 200); do
  ls "$MAIN_DIR"/docker/registry/v2/repositories/killed/_uploads/*/data >/dev/null 2>&1 && break
  sleep 0.05
done
registry_stop main --kill
wait "$pusher"
rc=$?
cp "$TMP/kill.err" "$TMP/err"
expect_err "the push fails when the registry dies" "push \"$MAIN/killed:1\""
check "with one line of error" test "$(wc -l <"$TMP/kill.err")" -eq 1
registry_restart main
check "the image is not in the registry" sh -c "! skopeo inspect --tls-verify=false docker://$MAIN/killed:1 >/dev/null 2>&1"
run_cbuild push --root "$R" big "$MAIN/killed:1"
expect_rc "the push succeeds when run again" 0
check "skopeo then sees it" skopeo inspect --tls-verify=false "docker://$MAIN/killed:1"

# ---- a shared cache between two empty stores ----
registry_proxy_start main pass
CPROXY=$PROXY
mkdir -p "$TMP/cc"
echo one >"$TMP/cc/a.txt"
cat >"$TMP/cc/Dockerfile" <<DF
FROM $MAIN/bb:v1 AS build
RUN head -c 300000 /dev/urandom >/tool && echo built >/out
COPY a.txt /a.txt
FROM $MAIN/bb:v1
COPY --from=build /out /out
RUN cat /out >/seen
DF
export SOURCE_DATE_EPOCH=1700000000
run_cbuild build --root "$TMP/cache-a" --network none --progress plain -t app:1 \
  --cache-to "type=registry,ref=$CPROXY/cache:app,mode=max" "$TMP/cc"
expect_rc "build with --cache-to a registry" 0
check "the export is reported" grep -q "exporting cache to $CPROXY/cache:app" "$TMP/err"
app_digest() { jq -r '.manifests[] | select(.annotations["io.containerd.image.name"] == "docker.io/library/app:1") | .digest' "$1/index.json"; }
want=$(app_digest "$TMP/cache-a")
: >"$TMP/registry-main/proxy.log"
run_cbuild build --root "$TMP/cache-b" --network none --progress plain -t app:1 \
  --cache-from "type=registry,ref=$CPROXY/cache:app" "$TMP/cc"
expect_rc "an empty store builds with --cache-from" 0
expect_eq "every step comes from the cache" "$(grep -c ' CACHED$' "$TMP/err")" 4
got=$(app_digest "$TMP/cache-b")
expect_eq "and gives the same image" "$got" "$want"
build_layers=$(for s in "$TMP"/cache-a/cache/steps/*; do jq -r '.layer.digest // empty' "$s" 2>/dev/null; done | sort -u)
final_layers=$(jq -r '.layers[].digest' "$TMP/cache-b/blobs/sha256/${got#sha256:}" | sort -u)
extra=$(comm -23 <(echo "$build_layers") <(echo "$final_layers") | head -1)
check "a layer only the build stage has is not pulled" \
  sh -c "[ -n '$extra' ] && ! grep -q 'GET /v2/cache/blobs/$extra' '$TMP/registry-main/proxy.log'"
missing=""
for l in $final_layers; do [ -f "$TMP/cache-b/blobs/sha256/${l#sha256:}" ] || missing="$missing $l"; done
expect_eq "the store holds every layer of the image" "$missing" ""
check "skopeo reads the image from the second store" skopeo inspect "oci:$TMP/cache-b:app:1"
echo two >"$TMP/cc/a.txt"
run_cbuild build --root "$TMP/cache-c" --network none --progress plain -t app:1 \
  --cache-from "type=registry,ref=$CPROXY/cache:app" "$TMP/cc"
expect_rc "a changed file rebuilds from it" 0
expect_eq "the steps before the change are still cached" "$(grep -c ' CACHED$' "$TMP/err")" 1
run_cbuild build --root "$TMP/cache-d" --network none -q -t app:1 \
  --cache-to "type=local,dest=$TMP/cache-dir" "$TMP/cc"
expect_rc "--cache-to type=local" 0
check "writes an OCI layout" test -f "$TMP/cache-dir/index.json"
run_cbuild build --root "$TMP/cache-e" --network none --progress plain -t app:1 \
  --cache-from "type=local,src=$TMP/cache-dir" "$TMP/cc"
expect_rc "--cache-from type=local" 0
expect_eq "mode=min shares the final stage's steps only" "$(grep -c ' CACHED$' "$TMP/err")" 2
run_cbuild build --root "$TMP/cache-f" --network none -q \
  --cache-from "type=registry,ref=$CPROXY/cache:none-yet" "$TMP/cc"
expect_rc "a cache not there yet is no error" 0
check "and is said" grep -q "no cache at" "$TMP/err"
run_cbuild build --root "$TMP/cache-g" --network none -q --cache-from "$MAIN/bb:v1" "$TMP/cc"
expect_err "an image that is no cache is refused" "not a cbuild cache"
unset SOURCE_DATE_EPOCH

# ---- TLS: verified against the system's CAs, or --tls-ca-cert ----
if command -v openssl >/dev/null; then
  P=$TMP/pki
  mkdir -p "$P"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout "$P/ca.key" -out "$P/ca.pem" >/dev/null 2>&1
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$P/reg.key" -out "$P/reg.csr" >/dev/null 2>&1
  printf 'subjectAltName=IP:127.0.0.1\n' >"$P/ext"
  openssl x509 -req -in "$P/reg.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" -CAcreateserial -days 2 \
    -extfile "$P/ext" -out "$P/reg.pem" >/dev/null 2>&1
  if registry_start tls --tls "$P/reg.pem" "$P/reg.key"; then
    TLSREG=$REG
    run_cbuild push --root "$R" busybox "$TLSREG/bb:1"
    expect_err "a certificate no CA vouches for is refused, not downgraded" "certificate"
    run_cbuild push --root "$R" --tls-ca-cert "$P/ca.pem" busybox "$TLSREG/bb:1"
    expect_rc "--tls-ca-cert adds the CA" 0
    check "the push went over TLS" skopeo inspect --tls-verify=false "docker://$TLSREG/bb:1"
    run_cbuild pull --root "$TMP/root-tls" --insecure-registry "$TLSREG" "$TLSREG/bb:1"
    expect_rc "--insecure-registry skips the verification" 0
  else
    not_ok "the TLS registry starts"
  fi
else
  ok "# SKIP openssl is not installed"
fi

# ---- Basic auth ----
registry_start basic --htpasswd alice:secret1 || { not_ok "the basic-auth registry starts"; finish; exit; }
BASIC=$REG
run_cbuild push --root "$R" busybox "$BASIC/bb:1"
expect_err "without credentials the push is refused" "cbuild login"
echo wrong | "$CBUILD" login -u alice --password-stdin "$BASIC" >"$TMP/out" 2>"$TMP/err"
rc=$?
expect_err "login with a wrong password fails" "401"
check "and keeps nothing" test ! -e "$REGISTRY_AUTH_FILE"
echo secret1 | "$CBUILD" login -u alice --password-stdin "$BASIC" >"$TMP/out" 2>"$TMP/err"
rc=$?
expect_rc "login with the right password" 0
expect_eq "keeps it in \$REGISTRY_AUTH_FILE" "$(jq -r --arg r "$BASIC" '.auths[$r].auth' "$REGISTRY_AUTH_FILE" | base64 -d)" "alice:secret1"
expect_eq "mode 0600" "$(stat -c %a "$REGISTRY_AUTH_FILE")" 600
run_cbuild push --root "$R" busybox "$BASIC/bb:1"
expect_rc "push with the kept credentials" 0
check "skopeo with the same credentials sees it" skopeo inspect --tls-verify=false --creds alice:secret1 "docker://$BASIC/bb:1"
run_cbuild pull --root "$TMP/root-basic" "$BASIC/bb:1"
expect_rc "pull with them" 0
jq -n --arg r "$BASIC" '{auths: {($r): {auth: ("alice:nope" | @base64)}}}' >"$TMP/bad-auth.json"
run_cbuild pull --root "$TMP/root-basic2" --authfile "$TMP/bad-auth.json" "$BASIC/bb:1"
expect_err "bad credentials from --authfile are refused" "401"
run_cbuild logout "$BASIC"
expect_rc "logout" 0
check "forgets them" sh -c "! jq -e --arg r '$BASIC' '.auths[\$r]' '$REGISTRY_AUTH_FILE' >/dev/null"
run_cbuild logout "$BASIC"
expect_err "a second logout says there was nothing" "not logged in"
mkdir -p "$DOCKER_CONFIG"
jq -n --arg r "http://$BASIC/v1/" '{auths: {($r): {auth: ("alice:secret1" | @base64)}}}' >"$DOCKER_CONFIG/config.json"
rm -f "$REGISTRY_AUTH_FILE"
run_cbuild pull --root "$TMP/root-basic3" "$BASIC/bb:1"
expect_rc "~/.docker/config.json credentials under a URL key are used" 0
rm -f "$DOCKER_CONFIG/config.json"

# ---- Bearer tokens ----
registry_start bearer --token bob:pw2 || { not_ok "the token registry starts"; finish; exit; }
BEARER=$REG
run_cbuild push --root "$R" busybox "$BEARER/app:1"
expect_err "without credentials the token is refused" "token"
echo pw2 | "$CBUILD" login -u bob --password-stdin "$BEARER" >"$TMP/out" 2>"$TMP/err"
rc=$?
expect_rc "login through the token endpoint" 0
: >"$TMP/registry-bearer/token.log"
run_cbuild push --root "$R" busybox "$BEARER/app:1"
expect_rc "push with a Bearer token" 0
check "the token was asked for the push scope" grep -q "scope=repository:app:pull,push.* auth=Basic:bob -> 200" "$TMP/registry-bearer/token.log"
expect_eq "one token for the whole push" "$(grep -c 'scope=repository:app:pull,push' "$TMP/registry-bearer/token.log")" 1
run_cbuild pull --root "$TMP/root-bearer" "$BEARER/app:1"
expect_rc "pull with a Bearer token" 0
check "the pull asked for the pull scope" grep -q "scope=repository:app:pull&\|scope=repository:app:pull " "$TMP/registry-bearer/token.log"
jq -n --arg r "$BEARER" '{auths: {($r): {identitytoken: "pw2"}}}' >"$TMP/ident.json"
run_cbuild pull --root "$TMP/root-ident" --authfile "$TMP/ident.json" "$BEARER/app:1"
expect_rc "an identity token is exchanged for a Bearer token" 0
check "through OAuth2's refresh_token grant" grep -q "^POST /token?.*grant_type=refresh_token.* auth=refresh -> 200" "$TMP/registry-bearer/token.log"
jq -n --arg r "$BEARER" '{auths: {($r): {identitytoken: "stale"}}}' >"$TMP/ident.json"
run_cbuild pull --root "$TMP/root-ident2" --authfile "$TMP/ident.json" "$BEARER/app:1"
expect_err "a stale identity token is refused" "refused"

# ---- rootless: FROM a registry image, push with the user's own login ----
if [ "$(id -u)" -eq 0 ] && command -v newuidmap >/dev/null; then
  test_user
  W=$(mktemp -d /tmp/cbuild-rootless.XXXXXX)
  mkdir -p "$W/ctx"
  cp "$CBUILD" "$W/cbuild"
  printf 'FROM %s\nRUN echo rootless >/r\n' "$BASIC/bb:1" >"$W/ctx/Dockerfile"
  chown -R "$U:" "$W"
  chmod -R a+rX "$W"
  as_user() { (cd "$W" && env -u REGISTRY_AUTH_FILE -u DOCKER_CONFIG HOME=$W TMPDIR=$W setpriv --reuid="$U" --regid="$U" --init-groups "$W/cbuild" "$@"); }
  echo secret1 | as_user login -u alice --password-stdin "$BASIC" >/dev/null 2>&1
  # the real root's containers auth.json, which uid 0 of the build's user
  # namespace cannot read: not the user's, so no error
  made_run_auth=""
  if [ ! -e /run/containers ]; then
    mkdir -p /run/containers/0 && chmod 0700 /run/containers/0 &&
      echo '{"auths":{}}' >/run/containers/0/auth.json && made_run_auth=1
  fi
  as_user build --root "$W/store" --network none -q -t rl "$W/ctx" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  expect_rc "rootless: FROM an image of a registry that wants a login" 0
  check "rootless: the login went to the user's Docker config" test -f "$W/.docker/config.json"
  as_user push --root "$W/store" rl "$BASIC/rootless:1" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  expect_rc "rootless: push" 0
  check "rootless: skopeo sees the pushed image" skopeo inspect --tls-verify=false --creds alice:secret1 "docker://$BASIC/rootless:1"
  [ -z "$made_run_auth" ] || rm -rf /run/containers
  rm -rf "$W"
fi

finish
