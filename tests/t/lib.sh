# Shared helpers for the integration tests: source it, call plan-free TAP
# helpers, end with `finish`.  $CBUILD is the binary under test, $TD the
# testdata folder, $TMP a scratch folder removed at exit.
set -u
: "${CBUILD:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/cbuild}"
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TD=$TOP/testdata
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cbuild-t.XXXXXX")
# (a rootless run cannot remove what its builds' user namespace owns: the
# caller that gave it TMPDIR removes that)
trap 'rm -rf "$TMP" 2>/dev/null' EXIT
t_n=0
t_failed=0

ok() { t_n=$((t_n + 1)); echo "ok $t_n - $1"; }
not_ok() {
  t_n=$((t_n + 1)); t_failed=$((t_failed + 1))
  echo "not ok $t_n - $1"
  shift
  for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done
}

# check NAME CMD...: passes when CMD succeeds
check() {
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "command: $*" "$out"; fi
}

# run_cbuild ARGS...: runs $CBUILD, leaving stdout in $TMP/out, stderr in
# $TMP/err and the exit status in $rc
run_cbuild() {
  "$CBUILD" "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
}

# expect_rc NAME RC: the last run_cbuild exited with RC
expect_rc() {
  if [ "$rc" -eq "$2" ]; then ok "$1"; else
    not_ok "$1" "exit status $rc, expected $2" "stdout: $(head -c 2000 "$TMP/out")" "stderr: $(head -c 2000 "$TMP/err")"
  fi
}

# expect_err NAME TEXT: the last run_cbuild failed and stderr contains TEXT
expect_err() {
  if [ "$rc" -ne 0 ] && grep -qF -- "$2" "$TMP/err"; then ok "$1"; else
    not_ok "$1" "exit status $rc; stderr lacks: $2" "stderr: $(head -c 2000 "$TMP/err")"
  fi
}

# expect_eq NAME GOT WANT
expect_eq() {
  if [ "$2" == "$3" ]; then ok "$1"; else not_ok "$1" "got:  $2" "want: $3"; fi
}

# jqo FILTER: apply a jq filter to the last stdout
jqo() { jq -r "$1" "$TMP/out"; }

finish() {
  echo "1..$t_n"
  [ "$t_failed" -eq 0 ]
}

# busybox_base [--users]: a store at $R (under $TMP) holding "busybox":
# /bin/busybox from Debian's busybox-static with its applets, installed by
# an exec-form RUN step; with --users also an /etc/passwd and /etc/group
# (root, nobody, app 1000 with the extra group 2000).  $B is its context.
# Also points TMPDIR into $TMP.  Ends the script when the base fails.
busybox_base() {
  R=$TMP/root
  export TMPDIR=$TMP/tmpdir
  mkdir -p "$TMPDIR"
  B=$TMP/base
  mkdir -p "$B"
  cp /bin/busybox "$B/busybox"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' >"$B/Dockerfile"
  if [ "${1:-}" = --users ]; then
    mkdir -p "$B/etc"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n' >"$B/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n' >"$B/etc/group"
    echo 'COPY etc/ /etc/' >>"$B/Dockerfile"
  fi
  run_cbuild build --root "$R" -t busybox --network none -q "$B"
  expect_rc "a busybox base builds with an exec-form RUN" 0
  if [ "$rc" -ne 0 ]; then
    finish
    exit
  fi
}

# test_user: sets U to an unprivileged user with a subordinate id range
# (made when missing: useradd, usermod), for the rootless cases; root only.
test_user() {
  U=cbuildtest
  if ! id "$U" >/dev/null 2>&1; then
    useradd -m "$U" >/dev/null 2>&1
  fi
  if ! grep -q "^$U:" /etc/subuid || ! grep -q "^$U:" /etc/subgid; then
    usermod --add-subuids 200000-265535 --add-subgids 200000-265535 "$U"
  fi
}
