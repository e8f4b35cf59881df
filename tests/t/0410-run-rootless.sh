# The RUN cases of 0400 again, rootless: run as an unprivileged user with a
# subordinate id range, as a developer without root would.  This script
# (root) makes the user, lets it use /dev/net/tun for slirp4netns and gives
# it cgroups of its own for the limits, for the duration of the run only;
# then it checks that the same Dockerfile gives the same image digest
# rootful and rootless.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  ok "# SKIP the rootless run is driven by root (it makes its user)"
  finish
  exit
fi
test_user
check "the test user has a subordinate id range" grep -q "^$U:" /etc/subuid

# Scratch space the user owns; what its builds' user namespace made there
# is removed here, as root.
W=$(mktemp -d /tmp/cbuild-rootless.XXXXXX)
chown "$U:" "$W"
chmod 0755 "$TMP"
# The checkout may be where the user cannot reach (/root): it runs copies.
mkdir -p "$W/tests/t" "$W/bin"
cp "$(dirname "$0")/lib.sh" "$(dirname "$0")/0400-run.sh" "$W/tests/t/"
cp "$CBUILD" "$W/bin/cbuild"
chmod -R a+rX "$W"

# Debian's udev makes /dev/net/tun 0666; a machine without udev may not.
tun_mode=""
if [ -c /dev/net/tun ] && ! setpriv --reuid="$U" --regid="$U" --init-groups \
  sh -c 'exec 3<>/dev/net/tun' 2>/dev/null; then
  tun_mode=$(stat -c %a /dev/net/tun)
  chmod 0666 /dev/net/tun
fi

# A cgroup of its own in each v1 hierarchy that limits use (memory, pids),
# as systemd delegates one on a cgroup v2 machine.
cgdirs=()
cg_ok=1
for ctl in memory pids; do
  mnt=$(awk -v c="$ctl" '$9 == "cgroup" && ("," $NF ",") ~ ("," c ",") { print $5; exit }' /proc/self/mountinfo)
  if [ -z "$mnt" ]; then
    cg_ok=0
    continue
  fi
  d="$mnt/cbuild-rootless-test-$$"
  mkdir -p "$d" && chown -R "$U:" "$d" && cgdirs+=("$d") || cg_ok=0
done

cleanup() {
  [ -n "$tun_mode" ] && chmod "$tun_mode" /dev/net/tun
  for d in "${cgdirs[@]}"; do
    # the step cgroups are gone; the test's processes have exited
    rmdir "$d" 2>/dev/null
  done
  rm -rf "$W" "$TMP"
}
trap cleanup EXIT

# The run, as the user, in those cgroups.  Its TAP lines are ours.
out=$(
  for d in "${cgdirs[@]}"; do echo $BASHPID >"$d/cgroup.procs"; done
  cd "$W" && HOME=$W TMPDIR=$W CBUILD=$W/bin/cbuild CBUILD_T_CGROUP=$cg_ok \
    setpriv --reuid="$U" --regid="$U" --init-groups bash "$W/tests/t/0400-run.sh" 2>&1
)
inner_rc=$?
while IFS= read -r line; do
  case $line in
  "ok "*) ok "rootless: ${line#ok [0-9]* - }" ;;
  "not ok "*) not_ok "rootless: ${line#not ok [0-9]* - }" ;;
  "1.."*) ;;
  *) echo "$line" ;;
  esac
done <<<"$out"
expect_eq "the rootless run of 0400 succeeds" "$inner_rc" 0

# The same Dockerfile, the same digest, rootful and rootless.
C=$W/same
mkdir -p "$C/rootfs/bin"
cp /bin/busybox "$C/rootfs/bin/busybox"
printf 'FROM scratch\nCOPY rootfs/ /\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nRUN mkdir -p /srv && echo hi >/srv/a && chown 1000:1000 /srv/a && ln /srv/a /srv/b\nRUN rm /srv/b\n' >"$C/Dockerfile"
chmod -R a+rX "$C"
digest_of() { jq -r '.manifests[0].digest' "$1/index.json"; }
SOURCE_DATE_EPOCH=1700000000 "$CBUILD" build --root "$TMP/rootful" --network none -q \
  -o "type=oci,dest=$TMP/rootful.oci,tar=false" "$C" >/dev/null 2>"$TMP/err"
rc=$?
expect_rc "the reproducibility build runs as root" 0
SOURCE_DATE_EPOCH=1700000000 HOME=$W setpriv --reuid="$U" --regid="$U" --init-groups \
  "$W/bin/cbuild" build --root "$W/store2" --network none -q -o "type=oci,dest=$W/rootless.oci,tar=false" \
  "$C" >/dev/null 2>"$TMP/err"
rc=$?
expect_rc "... and rootless" 0
d1=$(digest_of "$TMP/rootful.oci" 2>&1)
d2=$(digest_of "$W/rootless.oci" 2>&1)
check "the rootful build wrote an image" test "${d1#sha256:}" != "$d1"
expect_eq "rootful and rootless builds give the same image digest" "$d2" "$d1"
finish
