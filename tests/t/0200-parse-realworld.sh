#!/usr/bin/env bash
# `cbuild parse` on hand-written Dockerfiles in the styles of well-known
# projects (testdata/realworld/*): the stages, each stage's instruction
# sequence and the values Docker/BuildKit would substitute.  Every expected
# value is Docker's behaviour, not whatever cbuild happens to print.
# shellcheck source-path=SCRIPTDIR disable=SC2016 # '$X' is what stays unexpanded
. "$(dirname "$0")/lib.sh"

RW=$TD/realworld
# Docker's PATH for a stage whose base sets none (scratch), linux targets.
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# parse NAME ARGS...: cbuild parse ARGS, which must succeed
parse() {
  local name=$1
  shift
  run_cbuild parse "$@"
  expect_rc "$name: parse $*" 0
}
# is NAME FILTER WANT: the jq filter on the last output prints WANT
is() { expect_eq "$1" "$(jqo "$2")" "$3"; }
# isj NAME FILTER WANT: the same, comparing the value as compact JSON
isj() { expect_eq "$1" "$(jq -c "$2" "$TMP/out")" "$3"; }
# stages: "index name base base_stage" of every stage, one per line
stages() { jqo '.stages[] | "\(.index) \(.name) \(.base) \(.base_stage)"'; }
# instrs N: a filter for stage N's instructions on one line
instrs() { printf '[.stages[%s].steps[].instruction] | join(" ")' "$1"; }
# step N K: the jq path of stage N's step K
step() { printf '.stages[%s].steps[%s]' "$1" "$2"; }

# ---------------------------------------------------------------- go-distroless
f=$RW/go-distroless/Dockerfile
parse go -f "$f" --build-arg GO_VERSION=1.23 --build-arg VERSION=1.4.2
digest=sha256:6ec5aa99dc335666e79dc64e4a6c8b89c33a543a1967f20d360922a80dd21f02
expect_eq "go: stages, names and bases" "$(stages)" "0 build golang:1.23-bookworm null
1 test build 0
2 ko scratch null
3 final gcr.io/distroless/static-debian12:nonroot@$digest null"
is "go: the syntax directive" '.directives.syntax' "docker/dockerfile:1"
is "go: global ARGs after --build-arg" '[.global_args[] | "\(.key)=\(.value)"] | join(" ")' \
  "GO_VERSION=1.23 DISTROLESS=gcr.io/distroless/static-debian12:nonroot@$digest"
is "go: the target is the last stage" '.target' 3
is "go: test and ko are not needed for the final stage" '[.stages[].reachable] | map(tostring) | join(",")' \
  "true,false,false,true"
is "go: build stage instructions" "$(instrs 0)" "WORKDIR ENV RUN ARG ARG ARG RUN"
is "go: final stage instructions" "$(instrs 3)" "LABEL COPY USER EXPOSE ENTRYPOINT CMD"
is "go: scratch is scratch" '.stages[2].scratch' true
# Without --platform the target is this machine, as Go names its arch.
case $(uname -m) in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  armv*) arch=arm ;;
  i?86) arch=386 ;;
  *) arch=$(uname -m) ;;
esac
is "go: TARGETOS is the target platform's OS" "$(step 0 3).pairs[0].value" linux
is "go: TARGETARCH is the target platform's arch" "$(step 0 4).pairs[0].value" "$arch"
is "go: --platform=\$BUILDPLATFORM is this machine" ".stages[0].platform | startswith(\"linux/$arch\")" true
is "go: the final stage has no --platform" '.stages[3].platform' null
is "go: ARG VERSION takes the --build-arg" "$(step 0 5).pairs[0]|\"\(.key)=\(.value)\"" VERSION=1.4.2
is "go: ENV with a continuation keeps both pairs" "[$(step 0 1).pairs[] | \"\(.key)=\(.value)\"] | join(\" \")" \
  "CGO_ENABLED=0 GOFLAGS=-trimpath"
is "go: mod download mounts" "[$(step 0 2).mounts[] | \"\(.type):\(.target):\(.source):\(.readonly)\"] | join(\" \")" \
  "cache:/go/pkg/mod:null:false bind:go.sum:go.sum:true bind:go.mod:go.mod:true"
is "go: the go-build cache id is substituted" "$(step 0 6).mounts[1].id" "gobuild-$arch"
is "go: the go-build cache is locked" "$(step 0 6).mounts[1].sharing" locked
is "go: the first cache mount is shared by default" "$(step 0 6).mounts[0].sharing" shared
is "go: a bind mount without source binds the context" "$(step 0 6).mounts[2] | \"\(.target) \(.source) \(.readonly)\"" \
  ". null true"
is "go: RUN text is left to the shell" "$(step 0 6).shell" \
  'GOOS=$TARGETOS GOARCH=$TARGETARCH go build       -ldflags "-s -w -X main.version=${VERSION}"       -o /out/server ./cmd/server'
is "go: RUN spans lines 18-23" "$(step 0 6) | \"\(.line)-\(.end_line)\"" "18-23"
is "go: COPY --from=build is stage 0" "$(step 3 1) | \"\(.from) \(.from_stage) \(.chown)\"" "build 0 nonroot:nonroot"
is "go: COPY source and dest" "$(step 3 1) | \"\(.sources | join(\",\")) \(.dest)\"" "/out/server /server"
is "go: LABEL value unquoted" "$(step 3 0).pairs[0].value" "https://github.com/example/server"
is "go: EXPOSE normalised" "$(step 3 3).ports | join(\" \")" "8080/tcp 9090/tcp"
is "go: USER" "$(step 3 2).value" "nonroot:nonroot"
is "go: ENTRYPOINT and CMD exec forms" "[$(step 3 4).exec[], $(step 3 5).exec[]] | join(\" \")" \
  "/server --listen=:8080"
is "go: an unneeded stage is shown as written" '.stages[1] | "\(.expanded) \(.steps[0].mount_specs | join(" "))"' \
  "false type=cache,target=/go/pkg/mod type=cache,target=/root/.cache/go-build type=bind,target=."

parse go-ko -f "$f" --target ko
is "go --target ko: target index" '.target' 2
is "go --target ko: build and ko are needed" '[.stages[].reachable] | map(tostring) | join(",")' "true,false,true,false"
is "go --target ko: COPY --from=build" "$(step 2 0) | \"\(.from_stage) \(.dest)\"" "0 /ko-app/server"
is "go --target ko: \$PATH in a scratch stage is Docker's default PATH" "$(step 2 1).pairs[0].value" \
  "$DEFAULT_PATH:/ko-app"

parse go-test -f "$f" --target test
is "go --target test: target index" '.target' 1
is "go --target test: build and test are needed" '[.stages[].reachable] | map(tostring) | join(",")' "true,true,false,false"
is "go --target test: the test stage is expanded" "[$(step 1 0).mounts[].type] | join(\" \")" "cache cache bind"
is "go --target test: test inherits the default GO_VERSION" '.stages[0].base' "golang:1.22-bookworm"

run_cbuild parse -f "$f" --target nope
expect_err "go --target nope: an unknown target fails" 'target stage "nope" could not be found'

# ---------------------------------------------------------------- node-app
parse node "$RW/node-app" --build-arg PORT=8080
expect_eq "node: stages" "$(stages)" "0 base node:20.11.1-bookworm-slim null
1 deps base 0
2 runtime base 0"
is "node: every stage is needed" '[.stages[].reachable] | all' true
is "node: base instructions" "$(instrs 0)" "ENV WORKDIR"
is "node: deps instructions" "$(instrs 1)" "RUN"
is "node: runtime instructions" "$(instrs 2)" "ARG ENV COPY COPY COPY USER EXPOSE HEALTHCHECK CMD"
is "node: npm ci mounts" "[$(step 1 0).mounts[] | \"\(.type):\(.target)\"] | join(\" \")" \
  "bind:package.json bind:package-lock.json cache:/root/.npm secret:/root/.npmrc"
is "node: the npm cache is locked" "$(step 1 0).mounts[2].sharing" locked
is "node: the npmrc secret" "$(step 1 0).mounts[3] | \"\(.id) \(.required) \(.readonly)\"" "npmrc false true"
is "node: ENV PORT from the ARG's --build-arg" "$(step 2 1).pairs[0].value" 8080
is "node: EXPOSE \$PORT" "$(step 2 6).ports | join(\" \")" "8080/tcp"
is "node: COPY --from=deps is stage 1" "$(step 2 2) | \"\(.from_stage) \(.chown) \(.dest)\"" "1 node:node ./node_modules"
is "node: COPY into the workdir" "$(step 2 3) | \"\(.sources[0]) \(.dest)\"" "package.json ./"
is "node: USER node" "$(step 2 5).value" node
is "node: HEALTHCHECK shell form" "$(step 2 7).test | \"\(length) \(.[0])\"" "2 CMD-SHELL"
is "node: HEALTHCHECK command" "$(step 2 7).test[1]" \
  "node -e \"require('http').get('http://localhost:'+process.env.PORT+'/healthz', r => process.exit(r.statusCode === 200 ? 0 : 1))\""
is "node: HEALTHCHECK options" "$(step 2 7) | \"\(.interval_ns) \(.timeout_ns) \(.start_period_ns) \(.retries)\"" \
  "30000000000 3000000000 10000000000 3"
is "node: HEALTHCHECK spans two lines" "$(step 2 7) | \"\(.line)-\(.end_line)\"" "24-25"
is "node: CMD" "$(step 2 8).exec | join(\" \")" "node src/server.js"
is "node: ENV over a continuation has two pairs" "$(step 0 0).pairs | length" 2
parse node-default "$RW/node-app"
is "node: EXPOSE the ARG default without --build-arg" "$(step 2 6).ports | join(\" \")" "3000/tcp"

# ---------------------------------------------------------------- python-venv
f=$RW/python-venv/Dockerfile
parse python -f "$f" --build-arg PYTHON_VERSION=3.11
expect_eq "python: stages" "$(stages)" "0 builder python:3.11-slim null
1 null python:3.11-slim null"
is "python: target" '.target' 1
is "python: builder instructions" "$(instrs 0)" "COPY ENV RUN ENV WORKDIR COPY RUN"
is "python: final instructions" "$(instrs 1)" "LABEL ENV ENV RUN COPY WORKDIR COPY USER EXPOSE CMD"
is "python: COPY --from an image names no stage" "$(step 0 0) | \"\(.from) \(.from_stage)\"" "ghcr.io/astral-sh/uv:0.4.9 null"
is "python: COPY of two files into a directory" "$(step 0 0) | \"\(.sources | join(\",\")) \(.dest)\"" "/uv,/uvx /bin/"
# parse has no image config, so only the part the Dockerfile adds is checked.
is "python: ENV PATH puts the virtualenv first" "$(step 0 3).pairs[0].value | startswith(\"/opt/venv/bin:\")" true
is "python: RUN leaves \$VIRTUAL_ENV to the shell" "$(step 0 2).shell" 'python -m venv "$VIRTUAL_ENV"'
is "python: pip cache mount" "$(step 0 6).mounts[0] | \"\(.type) \(.target)\"" "cache /root/.cache/pip"
is "python: ENV with two pairs on the first line" "[$(step 1 1).pairs[].key] | join(\" \")" \
  "PYTHONDONTWRITEBYTECODE PYTHONUNBUFFERED VIRTUAL_ENV"
is "python: \${PATH} in the final stage" "$(step 1 2).pairs[0].value | startswith(\"/opt/venv/bin:\")" true
is "python: COPY --from=builder \$VIRTUAL_ENV" "$(step 1 4) | \"\(.from_stage) \(.sources[0]) \(.dest)\"" "0 /opt/venv /opt/venv"
is "python: WORKDIR \$APP_HOME" "$(step 1 5).value" "/home/app/web"
is "python: COPY to \$APP_HOME/" "$(step 1 6) | \"\(.chown) \(.dest)\"" "app:app /home/app/web/"
is "python: LABEL maintainer" "$(step 1 0).pairs[0].value" "Platform Team <platform@example.com>"
is "python: CMD exec form" "$(step 1 9).exec | length" 6

# ---------------------------------------------------------------- nginx-source
f=$RW/nginx-source/Dockerfile
parse nginx -f "$f"
expect_eq "nginx: one unnamed stage" "$(stages)" "0 null alpine:3.19 null"
is "nginx: instructions" "$(instrs 0)" "LABEL ENV ENV ENV ENV RUN COPY COPY ENTRYPOINT EXPOSE STOPSIGNAL CMD"
is "nginx: legacy ENV" "$(step 0 1).pairs[0] | \"\(.key)=\(.value)\"" "NGINX_VERSION=1.25.4"
is "nginx: legacy ENV with aligned values" "$(step 0 2).pairs[0] | \"\(.key)=\(.value)\"" "NJS_VERSION=0.8.3"
is "nginx: ENV pairs over three lines" "[$(step 0 4).pairs[] | \"\(.key)=\(.value)\"] | join(\" \")" \
  "NGINX_PREFIX=/etc/nginx NGINX_SBIN=/usr/sbin/nginx NGINX_USER=nginx"
is "nginx: the long RUN spans lines 12-43" "$(step 0 5) | \"\(.line)-\(.end_line)\"" "12-43"
# Line 19 (gcc) ends in a backslash, a space and a tab: still a continuation.
want='set -x '
want+='    && addgroup -g 101 -S $NGINX_USER '
want+='    && adduser -S -D -H -u 101 -h /var/cache/nginx -s /sbin/nologin -G $NGINX_USER -g $NGINX_USER $NGINX_USER '
want+='    && apkArch="$(cat /etc/apk/arch)" '
want+='    && tempDir="$(mktemp -d)" '
want+='    && apk add --no-cache --virtual .build-deps '
want+='        gcc '
want+='        libc-dev '
want+='        make '
want+='        openssl-dev '
want+='        pcre2-dev '
want+='        zlib-dev '
want+='        linux-headers '
want+='    && cd "$tempDir" '
want+='    && wget -q "https://nginx.org/download/nginx-${NGINX_VERSION}.tar.gz" '
want+='    && tar -xzf "nginx-${NGINX_VERSION}.tar.gz" '
want+='    && cd "nginx-${NGINX_VERSION}" '
want+='    && ./configure '
want+='        --prefix=$NGINX_PREFIX '
want+='        --sbin-path=$NGINX_SBIN '
want+='        --user=$NGINX_USER '
want+='        --with-http_ssl_module '
want+='        --with-http_v2_module '
want+='    && make -j"$(getconf _NPROCESSORS_ONLN)" '
want+='    && make install '
want+='    && apk del --no-network .build-deps '
want+='    && rm -rf "$tempDir" '
want+='    && ln -sf /dev/stdout /var/log/nginx/access.log '
want+='    && ln -sf /dev/stderr /var/log/nginx/error.log'
is "nginx: continuation lines joined, comment lines dropped, text unexpanded" "$(step 0 5).shell" "$want"
is "nginx: no comment text leaks into the command" "$(step 0 5).shell | test(\"#|clean up|fetch and verify\")" false
is "nginx: no empty-continuation warning" '.warnings | length' 0
is "nginx: COPY to /" "$(step 0 6) | \"\(.sources | join(\",\")) \(.dest)\"" "docker-entrypoint.sh /"
is "nginx: COPY two scripts" "$(step 0 7) | \"\(.sources | join(\",\")) \(.dest)\"" \
  "10-listen-on-ipv6-by-default.sh,20-envsubst-on-templates.sh /docker-entrypoint.d/"
is "nginx: EXPOSE" "$(step 0 9).ports | join(\" \")" "80/tcp 443/tcp"
is "nginx: STOPSIGNAL" "$(step 0 10).value" SIGQUIT
is "nginx: CMD keeps the semicolon" "$(step 0 11).exec | join(\"|\")" "nginx|-g|daemon off;"

# ---------------------------------------------------------------- postgres-debian
f=$RW/postgres-debian/Dockerfile
parse postgres -f "$f"
expect_eq "postgres: one stage" "$(stages)" "0 null debian:bookworm-slim null"
is "postgres: instructions" "$(instrs 0)" \
  "RUN ENV RUN ENV RUN ENV ENV ENV RUN RUN RUN ENV RUN VOLUME COPY RUN ENTRYPOINT STOPSIGNAL EXPOSE CMD"
is "postgres: set -eux with tab-indented continuations" "$(step 0 0).shell" \
  "$(printf 'set -eux; \tgroupadd -r postgres --gid=999; \tuseradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres; \tmkdir -p /var/lib/postgresql; \tchown -R postgres:postgres /var/lib/postgresql')"
is "postgres: the first RUN spans lines 4-8" "$(step 0 0) | \"\(.line)-\(.end_line)\"" "4-8"
is "postgres: legacy ENV GOSU_VERSION" "$(step 0 1).pairs[0].value" 1.17
is "postgres: gosu RUN keeps \$GOSU_VERSION for the shell" "$(step 0 2).shell | contains(\"download/\$GOSU_VERSION/gosu-\$dpkgArch\")" true
is "postgres: gosu RUN ends with its last line" "$(step 0 2).shell | endswith(\"; \tgosu nobody true\")" true
is "postgres: ENV PG_MAJOR" "$(step 0 5).pairs[0] | \"\(.key)=\(.value)\"" "PG_MAJOR=16"
is "postgres: ENV PATH substitutes \$PG_MAJOR" "$(step 0 6).pairs[0].value | endswith(\":/usr/lib/postgresql/16/bin\")" true
is "postgres: ENV PG_VERSION with + and ~" "$(step 0 7).pairs[0].value" "16.2-1.pgdg120+2"
is "postgres: install RUN keeps the quoted package" "$(step 0 8).shell | contains(\"\\\"postgresql-\$PG_MAJOR=\$PG_VERSION\\\" \t; \")" true
is "postgres: sed RUN keeps its backslashes" "$(step 0 9).shell | contains(\"(listen_addresses)\\\\s*=\\\\s*\\\\S+.*!\\\\1 = '*'!\")" true
is "postgres: ENV PGDATA" "$(step 0 11).pairs[0].value" /var/lib/postgresql/data
is "postgres: VOLUME" "$(step 0 13).volumes | join(\" \")" /var/lib/postgresql/data
is "postgres: COPY two scripts into a directory" "$(step 0 14) | \"\(.sources | length) \(.dest)\"" "2 /usr/local/bin/"
is "postgres: ENTRYPOINT" "$(step 0 16).exec | join(\" \")" docker-entrypoint.sh
is "postgres: STOPSIGNAL SIGINT" "$(step 0 17).value" SIGINT
is "postgres: EXPOSE 5432" "$(step 0 18).ports | join(\" \")" 5432/tcp
is "postgres: CMD" "$(step 0 19).exec | join(\" \")" postgres
is "postgres: STOPSIGNAL after a two-line comment is on line 59" "$(step 0 17).line" 59

# ---------------------------------------------------------------- rust-cargo
f=$RW/rust-cargo/Dockerfile
parse rust -f "$f" --build-arg APP_NAME=crabd
expect_eq "rust: stages" "$(stages)" "0 builder rust:1.77-slim-bookworm null
1 runtime debian:bookworm-slim null"
is "rust: builder instructions" "$(instrs 0)" "ARG WORKDIR RUN COPY RUN COPY RUN"
is "rust: runtime instructions" "$(instrs 1)" "ARG ARG RUN COPY USER ENV EXPOSE ENTRYPOINT"
is "rust: a redeclared global ARG takes the --build-arg" "$(step 0 0).pairs[0].value" crabd
is "rust: WORKDIR /usr/src/\${APP_NAME}" "$(step 0 1).value" /usr/src/crabd
is "rust: COPY Cargo files" "$(step 0 3) | \"\(.sources | join(\",\")) \(.dest)\"" "Cargo.toml,Cargo.lock ./"
is "rust: the single quotes stay in RUN" "$(step 0 4).shell" "mkdir src && echo 'fn main() {}' > src/main.rs && cargo fetch --locked"
is "rust: registry cache" "$(step 0 6).mounts[0] | \"\(.target) \(.sharing)\"" "/usr/local/cargo/registry locked"
is "rust: target cache with a substituted id and target" "$(step 0 6).mounts[1] | \"\(.id) \(.target) \(.sharing)\"" \
  "crabd-target /usr/src/crabd/target shared"
is "rust: cargo RUN leaves \$APP_NAME to the shell" "$(step 0 6).shell" \
  'cargo build --release --locked     && cp ./target/release/$APP_NAME /usr/local/bin/$APP_NAME'
is "rust: ARG UID default" "$(step 1 1).pairs[0].value" 10001
is "rust: COPY --from=builder with substituted source, chown and chmod" \
  "$(step 1 3) | \"\(.from_stage) \(.sources[0]) \(.dest) \(.chown) \(.chmod)\"" \
  "0 /usr/local/bin/crabd /usr/local/bin/app 10001:10001 0755"
is "rust: USER \${UID}" "$(step 1 4).value" 10001
is "rust: ENV pairs on one line" "[$(step 1 5).pairs[] | \"\(.key)=\(.value)\"] | join(\" \")" "RUST_LOG=info APP=crabd"
is "rust: EXPOSE tcp and udp" "$(step 1 6).ports | join(\" \")" "8000/tcp 8000/udp"
is "rust: no unused build args" '.unused_build_args | length' 0
parse rust-default -f "$f" --build-arg UID=2000
is "rust: the global default APP_NAME" "$(step 0 1).value" /usr/src/ferris-api
is "rust: --build-arg UID reaches USER" "$(step 1 4).value" 2000
is "rust: --build-arg UID reaches --chown" "$(step 1 3).chown" 2000:2000

# ---------------------------------------------------------------- java-maven
f=$RW/java-maven/Dockerfile
parse java -f "$f"
expect_eq "java: stage names are lowercased" "$(stages)" "0 build maven:3.9.6-eclipse-temurin-21 null
1 null eclipse-temurin:21-jre-alpine null"
is "java: build instructions" "$(instrs 0)" "WORKDIR COPY COPY COPY RUN COPY RUN RUN"
is "java: package instructions" "$(instrs 1)" "VOLUME ARG COPY COPY COPY ENV EXPOSE HEALTHCHECK ENTRYPOINT"
is "java: COPY --from=Build finds stage build" "$(step 1 2) | \"\(.from) \(.from_stage)\"" "Build 0"
is "java: COPY --from=0 is stage 0" "$(step 1 4) | \"\(.from) \(.from_stage)\"" "0 0"
is "java: COPY source from the ARG default" "$(step 1 2).sources[0]" /workspace/app/target/dependency/BOOT-INF/lib
is "java: the m2 cache" "$(step 0 4).mounts[0] | \"\(.type) \(.target)\"" "cache /root/.m2"
is "java: subshell RUN untouched" "$(step 0 7).shell" "mkdir -p target/dependency && (cd target/dependency; jar -xf ../*.jar)"
is "java: COPY .mvn .mvn" "$(step 0 2) | \"\(.sources[0]) \(.dest)\"" ".mvn .mvn"
is "java: VOLUME /tmp" "$(step 1 0).volumes | join(\" \")" /tmp
is "java: quoted ENV value keeps its = and spaces" "[$(step 1 5).pairs[] | \"\(.key)=\(.value)\"] | join(\"|\")" \
  "JAVA_OPTS=-XX:+UseContainerSupport -XX:MaxRAMPercentage=75.0|JAVA_TOOL_OPTIONS=-Dfile.encoding=UTF-8"
is "java: HEALTHCHECK exec form" "$(step 1 7).test | join(\" \")" "CMD wget -qO- http://localhost:8080/actuator/health"
is "java: HEALTHCHECK durations" "$(step 1 7) | \"\(.interval_ns) \(.timeout_ns) \(.retries)\"" "60000000000 10000000000 0"
is "java: ENTRYPOINT keeps the glob" "$(step 1 8).exec[2]" "app:app/lib/*"
parse java-dep -f "$f" --build-arg DEPENDENCY=/deps
is "java: --build-arg DEPENDENCY reaches every COPY" "[.stages[1].steps[] | select(.from) | .sources[0]] | join(\" \")" \
  "/deps/BOOT-INF/lib /deps/META-INF /deps/BOOT-INF/classes"
parse java-target -f "$f" --target BUILD
is "java: --target matches stage names case-insensitively" '.target' 0
is "java --target BUILD: the package stage is not needed" '.stages[1].reachable' false

# ---------------------------------------------------------------- heredoc-alpine
f=$RW/heredoc-alpine/Dockerfile
parse heredoc -f "$f"
is "heredoc: syntax directive" '.directives.syntax' "docker/dockerfile:1.7"
expect_eq "heredoc: stages" "$(stages)" "0 base alpine:3.19 null
1 null base 0"
is "heredoc: base instructions" "$(instrs 0)" "ENV ENV RUN RUN COPY COPY COPY RUN RUN"
is "heredoc: final instructions" "$(instrs 1)" "USER EXPOSE HEALTHCHECK CMD"
is "heredoc: ENV substitutes with the values before the instruction" "[$(step 0 0).pairs[] | \"\(.key)=\(.value)\"] | join(\" \")" \
  "APP_USER=www APP_ROOT=/srv/www APP_LOG=/log"
is "heredoc: the next ENV sees APP_ROOT" "$(step 0 1).pairs[0].value" /srv/www/cache
is "heredoc: RUN <<EOF spans lines 6-10" "$(step 0 2) | \"\(.line)-\(.end_line)\"" "6-10"
is "heredoc: RUN <<EOF" "$(step 0 2) | \"\(.shell)|\(.heredocs | length)|\(.heredocs[0].name)|\(.heredocs[0].expand)|\(.heredocs[0].chomp)\"" \
  "<<EOF|1|EOF|true|false"
isj "heredoc: RUN <<EOF content is left to the shell" "$(step 0 2).heredocs[0].content" \
  '"set -eu\napk add --no-cache lighttpd curl\nadduser -D -H -s /sbin/nologin \"$APP_USER\"\n"'
is "heredoc: <<-EOT" "$(step 0 3).heredocs[0] | \"\(.name) \(.chomp) \(.expand)\"" "EOT true true"
isj "heredoc: <<-EOT strips leading tabs" "$(step 0 3).heredocs[0].content" \
  '"mkdir -p \"$APP_ROOT/htdocs\"\nchown -R \"$APP_USER\" \"$APP_ROOT\"\n"'
is "heredoc: <<-EOT with a command after it" "$(step 0 3).shell" "<<-EOT sh -e"
is "heredoc: COPY <<EOF destination" "$(step 0 4) | \"\(.dest) \(.sources | length)\"" "/etc/lighttpd/lighttpd.conf 1"
isj "heredoc: COPY <<EOF content substituted, quotes kept" "$(step 0 4).heredocs[0].content" \
  '"server.document-root = \"/srv/www/htdocs\"\nserver.username = \"www\"\nserver.port = 8080\nindex-file.names = ( \"index.html\" )\n"'
is "heredoc: COPY <<\"EOF\" is not substituted" "$(step 0 5).heredocs[0] | \"\(.name) \(.expand)\"" "EOF false"
isj "heredoc: COPY <<\"EOF\" content as written, #! line included" "$(step 0 5).heredocs[0].content" \
  '"#!/bin/sh\nexec curl -fsS \"http://localhost:${PORT:-8080}/\" >/dev/null\n"'
is "heredoc: COPY --chmod with a heredoc" "$(step 0 5) | \"\(.chmod) \(.dest)\"" "0755 /usr/local/bin/healthcheck"
is "heredoc: COPY <<-EOF to a substituted destination" "$(step 0 6).dest" /srv/www/htdocs/index.html
isj "heredoc: COPY <<-EOF content chomped and substituted" "$(step 0 6).heredocs[0] | [.chomp, .content]" \
  '[true,"<!doctype html>\n<title>hello from www</title>\n"]'
is "heredoc: <<'PY' inside a command" "$(step 0 7) | \"\(.shell)|\(.heredocs[0].name)|\(.heredocs[0].expand)\"" \
  "python3 - <<'PY' && echo done|PY|false"
isj "heredoc: <<'PY' content" "$(step 0 7).heredocs[0].content" '"import os\nprint(os.environ[\"APP_ROOT\"])\n"'
isj "heredoc: two heredocs in one RUN" "[$(step 0 8).heredocs[] | [.name, .content]]" \
  '[["FILE1","welcome\n"],["FILE2","authorized use only\n"]]'
is "heredoc: the two-heredoc RUN spans lines 39-43" "$(step 0 8) | \"\(.line)-\(.end_line)\"" "39-43"
is "heredoc: USER from the parent stage's ENV" "$(step 1 0).value" www
is "heredoc: HEALTHCHECK --start-interval" "$(step 1 2) | \"\(.interval_ns) \(.start_interval_ns) \(.test | join(\" \"))\"" \
  "15000000000 2000000000 CMD /usr/local/bin/healthcheck"

# ---------------------------------------------------------------- windows-servercore
f=$RW/windows-servercore/Dockerfile
parse windows -f "$f"
is "windows: escape directive" '.directives.escape' '`'
expect_eq "windows: stages" "$(stages)" "0 installer mcr.microsoft.com/windows/servercore:ltsc2022 null
1 null mcr.microsoft.com/windows/nanoserver:ltsc2022 null"
is "windows: installer instructions" "$(instrs 0)" "SHELL ENV RUN"
is "windows: final instructions" "$(instrs 1)" "ENV WORKDIR COPY COPY USER EXPOSE HEALTHCHECK ENTRYPOINT"
is "windows: SHELL powershell" "$(step 0 0).exec | join(\"|\")" \
  "powershell|-Command|\$ErrorActionPreference = 'Stop'; \$ProgressPreference = 'SilentlyContinue';"
is "windows: ENV keeps backslashes, backtick continues" "[$(step 0 1).pairs[] | \"\(.key)=\(.value)\"] | join(\"|\")" \
  'APP_HOME=C:\app|DOTNET_VERSION=8.0.2|DOTNET_ROOT=C:\Program Files\dotnet'
is "windows: ENV spans lines 8-10" "$(step 0 1) | \"\(.line)-\(.end_line)\"" "8-10"
is "windows: RUN joined on backticks" "$(step 0 2).shell" \
  '$url = \"https://dotnetcli.azureedge.net/dotnet/aspnetcore/Runtime/$Env:DOTNET_VERSION/aspnetcore-runtime-$Env:DOTNET_VERSION-win-x64.zip\";     Invoke-WebRequest -OutFile dotnet.zip $url;     mkdir $Env:DOTNET_ROOT;     tar -oxzf dotnet.zip -C $Env:DOTNET_ROOT;     Remove-Item -Force dotnet.zip'
is "windows: WORKDIR \$APP_HOME" "$(step 1 1).value" 'C:\app'
is "windows: COPY JSON form with spaces" "$(step 1 2) | \"\(.json) \(.from_stage) \(.sources[0])|\(.dest)\"" \
  "true 0 C:/Program Files/dotnet|C:/Program Files/dotnet"
is "windows: a trailing backslash is no continuation" "$(step 1 3) | \"\(.sources[0]) \(.dest) \(.line) \(.end_line)\"" \
  'publish\ C:\app\ 23 23'
is "windows: USER" "$(step 1 4).value" ContainerUser
is "windows: HEALTHCHECK over a backtick continuation" "$(step 1 6) | \"\(.line)-\(.end_line) \(.retries) \(.test | join(\" \"))\"" \
  "26-27 5 CMD curl.exe -f http://localhost/health"
is "windows: ENTRYPOINT JSON escapes" "$(step 1 7).exec | join(\"|\")" 'C:\Program Files\dotnet\dotnet.exe|C:\app\Web.dll'
parse windows-2019 -f "$f" --build-arg WINDOWS_VERSION=ltsc2019
is "windows: a global ARG in both FROMs" '[.stages[].base] | join(" ")' \
  "mcr.microsoft.com/windows/servercore:ltsc2019 mcr.microsoft.com/windows/nanoserver:ltsc2019"

# ---------------------------------------------------------------- global-args
f=$RW/global-args/Dockerfile
parse global -f "$f"
is "global: ARGs and their values" '[.global_args[] | "\(.key)=\(.value)"] | join(" ")' \
  "REGISTRY=docker.io BASE_IMAGE=docker.io/library/alpine VERSION=3.19.1 BUILD_DATE=null VARIANT=null"
expect_eq "global: stages" "$(stages)" "0 base docker.io/library/alpine:3.19.1 null
1 app base 0
2 debug alpine:3.19.1 null"
is "global: the last stage is the target" '.target' 2
is "global: only debug is needed" '[.stages[] | "\(.reachable)/\(.expanded)"] | join(" ")' \
  "false/false false/false true/true"
is "global: debug instructions" "$(instrs 2)" "ENV RUN"
is "global: a global ARG not redeclared is not in scope" "$(step 2 0).pairs[0].value" "not redeclared"
is "global: base instructions" "$(instrs 0)" "ARG ARG ENV RUN"
is "global: app instructions" "$(instrs 1)" "LABEL WORKDIR COPY USER"

parse global-app -f "$f" --target app --build-arg VERSION=3.20.0 --build-arg VARIANT=edge \
  --build-arg BUILD_DATE=2024-03-01 --build-arg UNUSED=1
is "global --target app: target" '.target' 1
is "global --target app: base and app are needed" '[.stages[].reachable] | map(tostring) | join(",")' "true,true,false"
is "global --target app: FROM with build args" '[.stages[].base] | join(" ")' \
  "docker.io/library/alpine:3.20.0 base alpine:3.20.0-edge"
is "global --target app: redeclared ARG VERSION" "$(step 0 0).pairs[0].value" 3.20.0
is "global --target app: the --build-arg beats the stage default" "$(step 0 1).pairs[0].value" 2024-03-01
is "global --target app: ENV from ARGs, with \${VERSION%.*}" "[$(step 0 2).pairs[] | \"\(.key)=\(.value)\"] | join(\" \")" \
  "ALPINE_VERSION=3.20.0 ALPINE_BRANCH=v3.20 BUILT_AT=2024-03-01"
is "global --target app: RUN leaves \${ALPINE_BRANCH} to the shell" "$(step 0 3).shell | startswith(\"echo \\\"https://dl-cdn.alpinelinux.org/alpine/\${ALPINE_BRANCH}/community\\\"\")" true
is "global --target app: LABELs in a child stage see the parent's ARGs and ENV" \
  "[$(step 1 0).pairs[].value] | join(\" \")" "3.20.0 2024-03-01 alpine:3.20.0"
is "global --target app: WORKDIR with \${VERSION//./_}" "$(step 1 1).value" /opt/app-3_20_0
is "global --target app: the unused build arg" '.unused_build_args | join(" ")' UNUSED

parse global-registry -f "$f" --target base --build-arg REGISTRY=registry.example.com:5000
is "global: an ARG default built from another ARG follows its --build-arg" '.stages[0].base' \
  "registry.example.com:5000/library/alpine:3.19.1"
is "global --target base: ARG BUILD_DATE default" "$(step 0 1).pairs[0].value" unknown
is "global --target base: ENV from the default" "$(step 0 2).pairs[2].value" unknown

# ---------------------------------------------------------------- onbuild-base
f=$RW/onbuild-base/Dockerfile
parse onbuild -f "$f"
expect_eq "onbuild: one stage" "$(stages)" "0 null ubuntu:22.04 null"
is "onbuild: instructions" "$(instrs 0)" \
  "MAINTAINER LABEL LABEL ARG ENV SHELL RUN RUN WORKDIR ONBUILD ONBUILD ONBUILD ONBUILD ONBUILD VOLUME STOPSIGNAL HEALTHCHECK CMD"
is "onbuild: MAINTAINER" "$(step 0 0).value" "Jane Doe <jane@example.com>"
is "onbuild: LABEL keys" "[$(step 0 1).pairs[].key] | join(\"|\")" \
  "vendor|com.example.release-date|com.example.is-beta|com.example.display name"
is "onbuild: LABEL values" "[$(step 0 1).pairs[].value] | join(\"|\")" "Example Corp|2024-02-29||Example Base"
is "onbuild: legacy LABEL form" "$(step 0 2).pairs[0] | \"\(.key)=\(.value)\"" \
  "description=This image builds whatever application is dropped into it"
is "onbuild: ENV APP_DIR from the ARG" "[$(step 0 4).pairs[] | \"\(.key)=\(.value)\"] | join(\" \")" \
  "APP_DIR=/usr/src/app HOME=/root DEBIAN_FRONTEND=noninteractive"
is "onbuild: SHELL" "$(step 0 5).exec | join(\" \")" "/bin/bash -o pipefail -c"
is "onbuild: RUN with leading-space continuations" "$(step 0 6).shell" \
  "apt-get update  && apt-get install -y --no-install-recommends build-essential curl  && curl -fsSL https://example.com/setup.sh | bash -  && rm -rf /var/lib/apt/lists/*"
is "onbuild: WORKDIR \${APP_DIR}" "$(step 0 8).value" /usr/src/app
is "onbuild: ONBUILD triggers, unsubstituted" "[.stages[0].steps[] | select(.instruction == \"ONBUILD\") | .trigger] | del(.[2]) | join(\"|\")" \
  'ARG BUILD_ENV=production|COPY . $APP_DIR|RUN make -C "$APP_DIR" install|WORKDIR   /srv'
is "onbuild: ONBUILD with a heredoc spans lines 22-25" "$(step 0 11) | \"\(.line)-\(.end_line)\"" "22-25"
# Docker stores the trigger as the line, a newline, the heredoc body as read
# (tabs and all: <<- strips them only when the trigger runs) and the name.
isj "onbuild: ONBUILD RUN <<-EOF keeps the body as written" "$(step 0 11).trigger" \
  '"RUN <<-EOF\n\tset -e\n\tmake -C \"$APP_DIR\" test\nEOF"'
is "onbuild: VOLUME JSON form" "$(step 0 14).volumes | join(\" \")" "/var/log/app /var/cache/app"
is "onbuild: STOPSIGNAL" "$(step 0 15).value" SIGTERM
is "onbuild: HEALTHCHECK NONE" "$(step 0 16) | \"\(.test | join(\" \")) \(has(\"interval_ns\"))\"" "NONE false"
is "onbuild: CMD" "$(step 0 17).exec | join(\" \")" "make run"
is "onbuild: MAINTAINER is deprecated" '.warnings | length == 1 and (.[0] | contains("MAINTAINER"))' true
parse onbuild-arg -f "$f" --build-arg APP_DIR=/opt/app
is "onbuild: --build-arg APP_DIR reaches ENV" "$(step 0 4).pairs[0].value" /opt/app
is "onbuild: --build-arg APP_DIR reaches WORKDIR through ENV" "$(step 0 8).value" /opt/app

# ---------------------------------------------------------------- crlf-bom
f=$RW/crlf-bom/Dockerfile
check "crlf: the file starts with a UTF-8 BOM" test "$(head -c 3 "$f" | od -An -tx1 | tr -d ' \n')" = efbbbf
check "crlf: every line ends in CRLF" test "$(grep -c $'\r$' "$f")" -eq "$(wc -l <"$f")"
parse crlf -f "$f"
is "crlf: the syntax directive behind the BOM" '.directives.syntax' "docker/dockerfile:1"
expect_eq "crlf: stages" "$(stages)" "0 base busybox:1.36 null
1 null base 0"
is "crlf: base instructions" "$(instrs 0)" "ARG ENV RUN COPY"
is "crlf: final instructions" "$(instrs 1)" "WORKDIR EXPOSE CMD"
is "crlf: no carriage return outside heredoc bodies" '[del(.stages[].steps[].heredocs) | .. | strings | select(test("\r"))] | length' 0
is "crlf: ARG default" "$(step 0 0).pairs[0].value" "hello world"
is "crlf: ENV over a CRLF continuation" "[$(step 0 1).pairs[] | \"\(.key)=\(.value)\"] | join(\"|\")" "GREETING=hello world|TZ=UTC"
is "crlf: RUN with a comment in the continuation" "$(step 0 2) | \"\(.line)-\(.end_line) \(.shell)\"" \
  '8-10 echo "$GREETING"  && date'
# BuildKit reads heredoc bodies with their line endings, CR included
# (moby/buildkit#4282), and only the delimiter line is trimmed.
isj "crlf: COPY heredoc content keeps its CRLF, as in BuildKit" "$(step 0 3).heredocs[0].content" '"hello world from a CRLF file\r\n"'
is "crlf: COPY heredoc ends on the CRLF delimiter" "$(step 0 3) | \"\(.line)-\(.end_line) \(.dest)\"" "11-13 /etc/greeting"
is "crlf: WORKDIR line" "$(step 1 0) | \"\(.line) \(.value)\"" "16 /data"
is "crlf: EXPOSE udp" "$(step 1 1).ports | join(\" \")" 8080/udp
is "crlf: CMD" "$(step 1 2).exec | join(\" \")" "cat /etc/greeting"
parse crlf-arg -f "$f" --build-arg GREETING=bonjour
isj "crlf: --build-arg reaches the heredoc" "$(step 0 3).heredocs[0].content | rtrimstr(\"\\r\\n\") | rtrimstr(\"\\n\")" '"bonjour from a CRLF file"'

# ---------------------------------------------------------------- rails-app
f=$RW/rails-app/Dockerfile
parse rails -f "$f"
is "rails: syntax and check directives" '.directives | "\(.syntax) \(.check)"' "docker/dockerfile:1 error=true"
expect_eq "rails: stages" "$(stages)" "0 base registry.docker.com/library/ruby:3.3.0-slim null
1 build base 0
2 null base 0"
is "rails: base instructions" "$(instrs 0)" "WORKDIR ARG ENV ENV"
is "rails: build instructions" "$(instrs 1)" "RUN ADD COPY RUN COPY RUN"
is "rails: final instructions" "$(instrs 2)" "RUN COPY RUN USER ENTRYPOINT EXPOSE CMD"
is "rails: \${RUBY_VERSION%.*}" "[$(step 0 2).pairs[] | \"\(.key)=\(.value)\"] | join(\" \")" "RUBY_MAJOR=3.3 GEM_ABI=3.3.0"
is "rails: quoted ENV values" "[$(step 0 3).pairs[].value] | join(\" \")" "production 1 /usr/local/bundle development:test"
is "rails: apt caches" "[$(step 1 0).mounts[] | \"\(.target):\(.sharing)\"] | join(\" \")" \
  "/var/cache/apt:locked /var/lib/apt:locked"
is "rails: ADD --checksum" "$(step 1 1) | \"\(.checksum) \(.sources[0]) \(.dest)\"" \
  "sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/tools/jemalloc-5.3.0.tar.bz2 /tmp/"
is "rails: ssh mount" "$(step 1 3).mounts[0] | \"\(.type) \(.id) \(.required) \(.target)\"" \
  "ssh default true /run/buildkit/ssh_agent.0"
is "rails: secret as an environment variable" "$(step 1 3).mounts[1] | \"\(.type) \(.id) \(.env) \(.target) \(.required)\"" \
  "secret bundle_token BUNDLE_GITHUB__COM null false"
is "rails: bundle RUN text" "$(step 1 3).shell" 'bundle install &&     rm -rf ~/.bundle/ "${BUNDLE_PATH}"/ruby/*/cache'
is "rails: tmpfs size in bytes" "$(step 1 5).mounts[0] | \"\(.type) \(.target) \(.size)\"" "tmpfs /rails/tmp/cache 67108864"
is "rails: RUN --network=none" "$(step 1 5) | \"\(.network) \(.shell)\"" "none SECRET_KEY_BASE_DUMMY=1 ./bin/rails assets:precompile"
is "rails: bind from the build stage" "$(step 2 0).mounts[0] | \"\(.from) \(.from_stage) \(.source) \(.target) \(.readonly)\"" \
  "build 1 /usr/local/bundle /mnt/bundle true"
is "rails: cache mount uid, gid and octal mode" "$(step 2 0).mounts[1] | \"\(.uid) \(.gid) \(.mode)\"" "0 0 493"
is "rails: COPY --link --from=build" "$(step 2 1) | \"\(.link) \(.from_stage) \(.sources[0]) \(.dest)\"" "true 1 /rails /rails"
is "rails: USER" "$(step 2 3).value" 1000:1000
is "rails: EXPOSE" "$(step 2 5).ports | join(\" \")" 3000/tcp
parse rails-ruby -f "$f" --build-arg RUBY_VERSION=3.2.3
is "rails: --build-arg in FROM" '.stages[0].base' registry.docker.com/library/ruby:3.2.3-slim
is "rails: --build-arg through \${RUBY_VERSION%.*}" "$(step 0 2).pairs[0].value" 3.2

finish
