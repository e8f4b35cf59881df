#!/bin/bash
# profile-run-steps.sh: where a RUN step's time goes, phase by phase (not a benchmark)
#
#   bench/profile-run-steps.sh [--steps N] [--network default|none|host] [CBUILD]
#
# Builds FROM busybox + N x `RUN true` (default 20) into a fresh store under
# `perf trace`, tracing only the calls that mark the phases of a step (fork,
# unshare, fsmount, pivot_root, execve, exit, wait4), and prints the median
# of each phase over the steps, the first one left out (it also unpacks the
# base image). Then the same build under `perf record` for the CPU time per
# step, by kind of work. Tracing slows every step by a few ms: compare phases
# with each other, and totals with an untraced run (bench/run 20-run-steps).
# Needs root, perf (apt-get install linux-perf), python3, busybox-static.
# Scratch space: $BENCH_DIR/work/profile-run-steps (default /tmp/cbuild-bench).
set -euo pipefail

steps=20 net=none
while [ $# -gt 0 ]; do
  case $1 in
    --steps) steps=${2:?}; shift ;;
    --network) net=${2:?}; shift ;;
    -h | --help) sed -n '2,15s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -*) echo "profile-run-steps: unknown option $1" >&2; exit 2 ;;
    *) CBUILD=$1 ;;
  esac
  shift
done
# lib.sh takes its scratch directory from the script's name.
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || bench_die "needs root"
command -v perf >/dev/null || bench_die "needs perf: apt-get install linux-perf"
command -v python3 >/dev/null || bench_die "needs python3"
[ -x "$CBUILD" ] || bench_die "no cbuild binary at $CBUILD"

work=$BENCH_WORK
base=$work/base
bench_busybox_base "$base" >/dev/null
for n in 0 "$steps"; do
  mkdir -p "$work/ctx-$n"
  { printf 'FROM busybox\n'; for _ in $(seq "$n"); do printf 'RUN true\n'; done; } >"$work/ctx-$n/Dockerfile"
done
build() { # build N: a cold build of the N-step Dockerfile, the store made afresh
  rm -rf "$work/root" && cp -a "$base/store" "$work/root" && sync
  "$CBUILD" build -q --root "$work/root" -t steps --network="$net" "$work/ctx-$1" >/dev/null
}

echo "cbuild $CBUILD (sha256 $(sha256sum "$CBUILD" | cut -c1-12)), $steps x RUN true, --network=$net, load $(cut -d' ' -f1-3 /proc/loadavg)"
build 0
rm -rf "$work/root" && cp -a "$base/store" "$work/root" && sync
perf trace -f -e clone,clone3,vfork,unshare,execve,exit_group,wait4,pivot_root,fsmount -o "$work/trace.txt" \
  "$CBUILD" build -q --root "$work/root" -t steps --network="$net" "$work/ctx-$steps" >/dev/null

python3 - "$work/trace.txt" <<'EOF'
import re, statistics, sys
pat = re.compile(r'^\s*([0-9.]+) \(\s*([0-9.]*)(?: ms)?\s*\): ([^/]+)/(\d+)\s+(\.\.\. \[continued\]: )?(\w+)\(')
ev = []
for line in open(sys.argv[1]):
    m = pat.match(line)
    if m:
        t, d, comm, pid, cont, sc = m.groups()
        ev.append((float(t), float(d or 0), comm, int(pid), bool(cont), sc, line))
main = next(p for (_, _, c, p, _, _, _) in ev if c == 'cbuild')
steps, cur = [], None
for t, d, comm, pid, cont, sc, line in ev:
    if comm == 'cbuild' and pid == main and sc in ('clone', 'clone3') and not cont:
        if cur is None:
            cur = {'clone': t}
        continue  # a second fork in a step is slirp4netns's
    if cur is None:
        continue
    if comm == 'cbuild' and pid == main and sc == 'wait4' and cont:
        cur['done'] = t + d; steps.append(cur); cur = None; continue
    if cont:
        continue
    if comm == 'cbuild-init' and sc == 'unshare': cur['unshare2'] = t + d
    elif comm == 'cbuild-init' and sc == 'fsmount': cur['fsmount'] = t + d
    elif comm == 'cbuild-init' and sc == 'pivot_root': cur['pivot'] = t + d
    elif comm == 'cbuild-init' and sc in ('clone', 'clone3', 'vfork') and 'clonesh' not in cur: cur['clonesh'] = t
    elif comm == 'sh' and sc == 'execve': cur['exec'] = t
    elif comm == 'sh' and sc == 'exit_group': cur['shexit'] = t
    elif comm == 'cbuild-init' and sc == 'exit_group': cur['initexit'] = t
phases = [
    ('main process between steps: layer from the upperdir, cleanup, next step\'s dirs', 'prevdone', 'clone'),
    ('clone(PID|UTS|IPC|NET) + exec of the init + unshare(NS|CGROUP)', 'clone', 'unshare2'),
    ('overlay mount (fsopen .. fsmount)', 'unshare2', 'fsmount'),
    ('proc, sys, dev, etc mounts, masks, pivot_root', 'fsmount', 'pivot'),
    ('pivot_root -> fork of the command (waits for slirp4netns)', 'pivot', 'clonesh'),
    ('fork -> execve (signals, caps, seccomp)', 'clonesh', 'exec'),
    ('the command: sh -c true', 'exec', 'shexit'),
    ('command exit -> init exit', 'shexit', 'initexit'),
    ('init exit -> reaped (namespaces torn down)', 'initexit', 'done'),
    ('whole step', 'prevdone', 'done'),
]
good, prev = [], None
for s in steps:
    if prev is not None:
        s['prevdone'] = prev
        if all(k in s for _, a, b in phases for k in (a, b)):
            good.append(s)
    prev = s['done']
print(f"\nwall time per phase (perf trace): {len(good)} of {len(steps)} steps with every marker, medians")
for name, a, b in phases:
    v = [s[b] - s[a] for s in good]
    print(f"  {name:<78} {statistics.median(v):6.2f} ms" if v else f"  {name:<78}   n/a")
EOF

# CPU time per step by kind of work: N steps less 0 steps, perf record.
for n in 0 "$steps"; do
  rm -rf "$work/root" && cp -a "$base/store" "$work/root" && sync
  perf record -q -F 2999 -g -o "$work/perf-$n.data" \
    "$CBUILD" build -q --root "$work/root" -t steps --network="$net" "$work/ctx-$n" >/dev/null 2>&1
  perf script -i "$work/perf-$n.data" -F comm,tid,ip,sym 2>/dev/null >"$work/perf-$n.txt"
done
python3 - "$work/perf-0.txt" "$work/perf-$steps.txt" "$steps" <<'EOF'
import collections, sys
FREQ = 2999.0
def samples(path):
    cur = None
    for line in open(path):
        if not line.strip():
            if cur: yield cur
            cur = None; continue
        if cur is None:
            cur = {'comm': line.split()[0], 'stack': []}; continue
        p = line.split()
        cur['stack'].append(p[1] if len(p) > 1 else '?')
    if cur: yield cur
def has(s, *names): return any(x in s for x in names)
RULES = [
    ('fork: copying the address space (clone)', lambda s, c: has(s, '__do_sys_clone', '__do_sys_clone3', 'ret_from_fork', '_Fork', '__libc_fork')),
    ('page faults: copy-on-write after fork, process start', lambda s, c: 'exc_page_fault' in s),
    ('the command: execve and sh itself', lambda s, c: c == 'sh' or c == 'slirp4netns' or '__x64_sys_execve' in s),
    ('process exit', lambda s, c: has(s, 'do_exit', 'do_group_exit', '__x64_sys_exit_group')),
    ('unshare (namespaces)', lambda s, c: '__x64_sys_unshare' in s),
    ('mounts: overlay, proc, sys, dev, etc, pivot_root', lambda s, c: has(s, '__x64_sys_mount', '__do_sys_fsconfig', '__do_sys_fsmount', '__do_sys_fsopen', '__do_sys_move_mount', '__do_sys_open_tree', '__x64_sys_pivot_root', '__x64_sys_umount', '__do_sys_mount_setattr', '__x64_sys_mknodat') or (c == 'cbuild-init' and has(s, '__x64_sys_mkdirat', '__x64_sys_symlinkat', '__x64_sys_openat', '__x64_sys_openat2'))),
    ('caps, seccomp (prctl, capset)', lambda s, c: has(s, '__do_sys_prctl', '__x64_sys_prctl', '__x64_sys_capset') or any('seccomp' in x for x in s)),
    ('dynamic linker: lazy binding in each child', lambda s, c: any(x.startswith('_dl_') or x in ('do_lookup_x', 'check_match') for x in s)),
    ('files: step dirs, upperdir scan, removal, base snapshot', lambda s, c: has(s, '__x64_sys_unlinkat', '__x64_sys_mkdir', '__x64_sys_mkdirat', '__x64_sys_getdents64', '__x64_sys_openat', '__x64_sys_openat2', '__do_sys_newfstatat', '__x64_sys_close', '__x64_sys_fchmodat', '__x64_sys_symlinkat', '__x64_sys_fsync', '__x64_sys_syncfs', '__x64_sys_renameat2', '__x64_sys_write', '__x64_sys_pwrite64', '__x64_sys_read')),
    ('pipes, poll, wait, signals, scheduling', lambda s, c: has(s, '__x64_sys_poll', '__do_sys_wait4', '__x64_sys_wait4', '__x64_sys_rt_sigtimedwait', '__x64_sys_rt_sigaction', '__x64_sys_kill', '__x64_sys_sendto', 'schedule')),
    ('memory: malloc, mmap, brk', lambda s, c: has(s, 'malloc', '_int_malloc', '__libc_calloc', '_int_free', '__x64_sys_mmap', '__x64_sys_munmap', '__x64_sys_brk', '__x64_sys_mprotect')),
]
OTHER = 'other: cbuild and libc code, zlib (base unpack), interrupts'
def classify(path):
    cnt, n = collections.Counter(), 0
    for smp in samples(path):
        n += 1
        for name, f in RULES:
            if f(smp['stack'], smp['comm']):
                cnt[name] += 1; break
        else:
            cnt[OTHER] += 1
    return cnt, n
c0, n0 = classify(sys.argv[1]); cn, nn = classify(sys.argv[2]); steps = int(sys.argv[3])
print(f"\nCPU time per step (perf record, {steps}-step build less the 0-step one: {nn / FREQ * 1000:.0f} - {n0 / FREQ * 1000:.0f} ms)")
tot = 0.0
for name in [r[0] for r in RULES] + [OTHER]:
    v = (cn[name] - c0[name]) / FREQ * 1000 / steps
    tot += v
    print(f"  {name:<78} {v:6.2f} ms")
print(f"  {'all':<78} {tot:6.2f} ms")
EOF
