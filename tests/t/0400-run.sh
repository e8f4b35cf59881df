# RUN in the sandbox: isolation seen from inside the step, whiteouts and
# hardlinks in the layers it makes (checked with umoci and runc), failing
# steps, and the environment a step gets.
. "$(dirname "$0")/lib.sh"

# A busybox base: /bin/busybox from Debian's busybox-static and its applets
# installed by a RUN step (which needs /proc), with users.
busybox_base --users

# build_run NAME DOCKERFILE [ARGS...]: build a context holding only the Dockerfile
build_run() {
  local name=$1 df=$2
  shift 2
  mkdir -p "$TMP/c-$name"
  printf '%s\n' "$df" >"$TMP/c-$name/Dockerfile"
  run_cbuild build --root "$R" -t "$name" --progress plain "$@" "$TMP/c-$name"
}

# ---- isolation, from inside ----
build_run iso 'FROM busybox
RUN echo "pid1=$(cat /proc/1/comm) self=$$ procs=$(ls -d /proc/[0-9]* | wc -l)"
RUN echo "host=$(hostname)"
RUN echo "capeff=$(grep CapEff /proc/self/status | cut -f2)"
RUN if mount -t tmpfs none /mnt 2>/dev/null; then echo mount=allowed; else echo mount=denied; fi
RUN if unshare -n true 2>/dev/null; then echo unshare=allowed; else echo unshare=denied; fi
RUN echo outside >/outside-marker && echo wrote' --network=none
expect_rc "the isolation steps run" 0
check "PID 1 is the sandbox's init, not the host's" grep -q "pid1=" "$TMP/err"
check "/proc shows only the step's processes" grep -qE "procs=[1-5]$" "$TMP/err"
check "the hostname is the sandbox's" grep -q "host=cbuild" "$TMP/err"
check "CapEff is Docker's default set" grep -q "capeff=00000000a80425fb" "$TMP/err"
check "mount is denied" grep -q "mount=denied" "$TMP/err"
check "unshare is denied" grep -q "unshare=denied" "$TMP/err"
if [ -e /outside-marker ]; then
  not_ok "nothing is written outside the rootfs" "/outside-marker exists on the host"
  rm -f /outside-marker
else
  ok "nothing is written outside the rootfs"
fi
expect_eq "the host's hostname is unchanged" "$(hostname)" "$(cat /proc/sys/kernel/hostname)"

# A build leaves nothing in $TMPDIR: the sandboxes' state directory goes
# when cbuild exits.
mkdir -p "$TMP/tmpdir" "$TMP/c-tmpdir"
printf 'FROM busybox\nRUN echo "ran in $(pwd)"\n' >"$TMP/c-tmpdir/Dockerfile"
TMPDIR=$TMP/tmpdir run_cbuild build --root "$R" -t tmpdir --progress plain --network=none "$TMP/c-tmpdir"
expect_rc "a build with its own TMPDIR runs" 0
check "its RUN step ran" grep -q "ran in /" "$TMP/err"
expect_eq "it leaves nothing in TMPDIR" "$(ls -A "$TMP/tmpdir")" ""

# Signals cbuild was started with ignored are not ignored in the step (nor
# are the C library's own 32 and 33, which make leaves ignored).
mkdir -p "$TMP/c-sigign"
printf 'FROM busybox\nRUN echo "sigign=$(grep SigIgn /proc/self/status | cut -f2)"\n' >"$TMP/c-sigign/Dockerfile"
(trap '' PIPE HUP USR1 && run_cbuild build --root "$R" -t sigign --progress plain --network=none "$TMP/c-sigign"; exit $rc)
rc=$?
expect_rc "a build started with SIGPIPE, SIGHUP and SIGUSR1 ignored runs" 0
check "the step ignores no signal" grep -q "sigign=0000000000000000" "$TMP/err"

build_run netnone 'FROM busybox
RUN --network=none echo "links=$(ls /sys/class/net | tr "\n" " ")"'
expect_rc "RUN --network=none runs" 0
check "with --network=none only lo exists" grep -q "links=lo $" "$TMP/err"

# The default network: its own interface and route, and a server the test
# runs on the host's loopback reachable through slirp4netns.
mkdir -p "$TMP/www" && echo "served by the test" >"$TMP/www/index.html"
port=""
for p in 18080 18081 18082 18083; do
  busybox httpd -f -p "127.0.0.1:$p" -h "$TMP/www" 2>/dev/null &
  pid=$!
  sleep 0.3
  if kill -0 "$pid" 2>/dev/null; then port=$p; break; fi
done
build_run net "FROM busybox
RUN echo \"links=\$(ls /sys/class/net | tr '\\n' ' ')\"; ip route | sed 's/^/route: /'; wget -qO- http://10.0.2.2:$port/ | sed 's/^/got: /'"
expect_rc "RUN with the default network runs" 0
check "the step has its own interface" grep -q "links=.*tap0" "$TMP/err"
check "the step has a default route" grep -q "route: default via 10.0.2.2" "$TMP/err"
check "the step reaches the test's server" grep -q "got: served by the test" "$TMP/err"
[ -n "$port" ] && kill "$pid" 2>/dev/null

# The steps of a build share one network namespace (one slirp4netns), never
# a process: a server one step leaves running is gone in the next.
mkdir -p "$TMP/www2" && echo hi >"$TMP/www2/index.html"
build_run netshare 'FROM busybox
RUN mkdir -p /srv && echo left-behind >/srv/index.html && httpd -p 127.0.0.1:8099 -h /srv && wget -qO- http://127.0.0.1:8099/ | sed "s/^/first: /"
RUN if wget -qO- -T 2 http://127.0.0.1:8099/ >/dev/null 2>&1; then echo "second: still served"; else echo "second: gone"; fi'
expect_rc "steps with the default network run one after the other" 0
check "a step's server works in that step" grep -q "first: left-behind" "$TMP/err"
check "... and is gone in the next step" grep -q "second: gone" "$TMP/err"

# The same for steps with no network (they share a namespace with only
# lo); and a step with none after one with the default network, and the
# other way round, each sees its own kind
build_run netshare-none 'FROM busybox
RUN --network=none mkdir -p /srv && echo left-behind >/srv/index.html && httpd -p 127.0.0.1:8099 -h /srv && wget -qO- http://127.0.0.1:8099/ | sed "s/^/first: /"
RUN --network=none if wget -qO- -T 2 http://127.0.0.1:8099/ >/dev/null 2>&1; then echo "second: still served"; else echo "second: gone"; fi
RUN echo "default=$(ls /sys/class/net | tr "\n" " ")"
RUN --network=none echo "none=$(ls /sys/class/net | tr "\n" " ")"
RUN echo "default again=$(ls /sys/class/net | tr "\n" " ")"'
expect_rc "steps with --network=none run one after the other" 0
check "a step's server works in that step" grep -q "first: left-behind" "$TMP/err"
check "... and is gone in the next step with no network" grep -q "second: gone" "$TMP/err"
check "a default step after them has its interface" grep -q "default=.*tap0" "$TMP/err"
check "a step with none after it has only lo" grep -q "none=lo $" "$TMP/err"
check "... and the next default step its interface again" grep -q "default again=.*tap0" "$TMP/err"

# ---- whiteouts, opaque dirs, type changes, hardlinks ----
build_run layers 'FROM busybox
RUN mkdir -p /data/dir /data/keep && echo a >/data/dir/a && echo b >/data/file && echo k >/data/keep/k && mkdir /data/todir && echo t >/data/tofile && echo x >/data/hl1 && ln /data/hl1 /data/hl2
RUN rm /data/file
RUN rm -rf /data/dir && mkdir /data/dir && echo new >/data/dir/n
RUN rm -rf /data/todir && echo now-a-file >/data/todir && rm /data/tofile && mkdir /data/tofile
CMD ["/bin/sh", "-c", "ls /data /data/dir; cat /data/todir"]'
expect_rc "steps that delete and replace files build" 0
rm -rf "$TMP/bundle"
rootless_flag=""
[ "$(id -u)" -ne 0 ] && rootless_flag=--rootless
umoci unpack $rootless_flag --image "$R:layers" "$TMP/bundle" >/dev/null 2>&1
F=$TMP/bundle/rootfs
check "umoci unpacks the image" test -d "$F/bin"
check "a file deleted from a lower layer is gone" test ! -e "$F/data/file"
check "an opaque directory hides what lower layers had" test ! -e "$F/data/dir/a"
check "... and holds what the step wrote" test -f "$F/data/dir/n"
check "an untouched sibling stays" test -f "$F/data/keep/k"
check "a directory replaced by a file is a file" test -f "$F/data/todir"
check "a file replaced by a directory is a directory" test -d "$F/data/tofile"
expect_eq "hardlinks made in one layer stay hardlinks" \
  "$(stat -c %i "$F/data/hl1")" "$(stat -c %i "$F/data/hl2")"
check "no whiteout file reaches the unpacked tree" sh -c "! find '$F' -name '.wh.*' | grep -q ."
run_cbuild --root "$R" inspect layers
expect_eq "each RUN that changed something is a layer" "$(jqo '.[0].Manifest.layers | length')" 7
if [ "$(id -u)" -eq 0 ] && command -v runc >/dev/null; then
  jq '.process.terminal=false' "$TMP/bundle/config.json" >"$TMP/bundle/c.json" &&
    mv "$TMP/bundle/c.json" "$TMP/bundle/config.json"
  out=$(cd "$TMP/bundle" && timeout 30 runc run "cbuild-t-$$" 2>&1)
  expect_eq "runc runs the image and sees the same tree" "$out" "$(printf '/data:\ndir\nhl1\nhl2\nkeep\ntodir\ntofile\n\n/data/dir:\nn\nnow-a-file')"
fi

build_run nochange 'FROM busybox
RUN true'
expect_rc "a step that changes nothing builds" 0
run_cbuild --root "$R" inspect nochange busybox
expect_eq "a step that changes nothing makes no layer" \
  "$(jqo '.[0].Manifest.layers | length')" "$(jqo '.[1].Manifest.layers | length')"
expect_eq "... and its history says empty_layer" "$(jqo '.[0].Config.history[-1].empty_layer')" true

# ---- the environment ----
build_run env 'FROM busybox
ARG A=from-arg
ENV E=from-env
USER app
WORKDIR /work/here
RUN echo "A=$A E=$E HOME=$HOME HOSTNAME=$HOSTNAME PATH=$PATH cwd=$(pwd) id=$(id -u):$(id -g) groups=$(id -G)"
USER root
RUN <<EOF
echo "heredoc ran as $(id -u)"
EOF
RUN <<EOF
#!/bin/sh
echo "script $0 ran"
EOF
SHELL ["/bin/sh", "-ec"]
RUN echo "shell form under SHELL"'
expect_rc "steps with ARG, ENV, USER, WORKDIR, heredocs and SHELL run" 0
check "ARGs in scope are in the environment" grep -q "A=from-arg" "$TMP/err"
check "ENV is in the environment" grep -q "E=from-env" "$TMP/err"
check "HOME comes from the user's passwd entry" grep -q "HOME=/home/app" "$TMP/err"
check "HOSTNAME is set" grep -q "HOSTNAME=cbuild" "$TMP/err"
check "PATH is the default one" grep -q "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "$TMP/err"
check "WORKDIR is the working directory" grep -q "cwd=/work/here" "$TMP/err"
check "USER by name, with its group" grep -q "id=1000:1000" "$TMP/err"
check "... and its supplementary groups" grep -qE "groups=1000 2000|groups=1000 .*2000" "$TMP/err"
check "a heredoc RUN runs its body" grep -q "heredoc ran as 0" "$TMP/err"
check "a heredoc with #! runs as a script" grep -q "script .* ran" "$TMP/err"
check "the shell form runs under SHELL" grep -q "shell form under SHELL" "$TMP/err"
run_cbuild --root "$R" inspect env
check "ARG values are not saved in the config" sh -c "! jq -e '.[0].Config.config.Env | map(startswith(\"A=\")) | any' '$TMP/out' >/dev/null"

# A step that changes nothing hands its directory to the next one; one
# that changes / itself (kept on the upperdir, not in a layer) does not
build_run untouched 'FROM busybox
RUN true
RUN chmod 700 / && chown 65534:65534 / && echo "in: $(stat -c %a:%u /)"
RUN true
RUN echo "next: $(stat -c %a:%u /)"
RUN echo kept >/kept
RUN true
RUN echo "last: $(cat /kept) $(stat -c %a:%u /)"'
expect_rc "steps that change nothing, then /, then a file, build" 0
check "the step that changed / saw it" grep -q "in: 700:65534" "$TMP/err"
check "... and the next steps do not" grep -q "next: 755:0" "$TMP/err"
check "a step after a reused directory sees the earlier layers" grep -q "last: kept 755:0" "$TMP/err"
expect_eq "of the 7 steps only the one that wrote a file made a layer" \
  "$("$CBUILD" inspect --root "$R" untouched | jq -c '[.[0].Config.history[-7:][] | .empty_layer == true]')" \
  "[true,true,true,true,false,true,true]"

# ---- failure ----
build_run fails 'FROM busybox
RUN echo "about to fail" && exit 3'
expect_rc "a failing RUN fails the build" 1
expect_err "the failure names the file, line and status" "Dockerfile:2: RUN echo \"about to fail\" && exit 3 exited with status 3"
check "the step's output is shown" grep -q "about to fail" "$TMP/err"
run_cbuild --root "$R" images
check "a failed build tags nothing" sh -c "! grep -q '^fails ' '$TMP/out'"
check "no sandbox mount is left" sh -c "! grep -q '$R' /proc/mounts"
check "the store's tmp/ is empty after the builds" sh -c "[ -z \"\$(ls -A '$R/tmp')\" ]"

# ---- owners ----
build_run owners 'FROM busybox
RUN mkdir -m 777 /o && echo x >/o/app && chown 1000:2000 /o/app && echo y >/o/root
USER app
RUN echo z >/o/by-app'
expect_rc "steps that chown and run as a user build" 0
run_cbuild --root "$R" inspect owners
layer=$(jqo '.[0].Manifest.layers[-2].digest' | sed 's/^sha256://')
expect_eq "a chown in RUN reaches the layer as the image's ids" \
  "$(tar -tvzf "$R/blobs/sha256/$layer" | awk '{print $2, $6}' | sort | tr '\n' ' ')" \
  "0/0 o/ 0/0 o/root 1000/2000 o/app "
layer=$(jqo '.[0].Manifest.layers[-1].digest' | sed 's/^sha256://')
check "a file made by USER app is owned by 1000:1000" sh -c \
  "tar -tvzf '$R/blobs/sha256/$layer' | grep -q '1000/1000 .* o/by-app'"

# ---- limits ----
# Rootless, limits need a cgroup delegated to the user: 0410 gives one and
# says so with CBUILD_T_CGROUP=1.
if [ "$(id -u)" -ne 0 ] && [ "${CBUILD_T_CGROUP:-0}" != 1 ]; then
  build_run pids 'FROM busybox
RUN true' --pids-limit 16
  expect_err "rootless without a delegated cgroup, a limit is refused with the reason" \
    "cannot be applied: create the cgroup"
else
  build_run pids 'FROM busybox
RUN i=0; while [ $i -lt 64 ]; do sleep 5 & i=$((i+1)); done; wait' --pids-limit 16
  expect_rc "a fork bomb under --pids-limit fails" 1
  build_run oom 'FROM busybox
RUN head -c 400m /dev/zero | tail' --memory 64m
  expect_rc "a memory hog under --memory fails" 1
  expect_err "it is reported as out of memory" "RUN was killed: out of memory"
fi

finish
