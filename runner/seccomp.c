/*
 * The seccomp filter: it allows by default and returns EPERM for what
 * Docker's default profile denies (which allows by listing; this denies by
 * listing).  Compiled with libseccomp in the caller, once per process, and
 * handed to each sandbox as BPF, which privileges.c installs.
 */
#include "runner-internal.h"

#include <errno.h>
#include <linux/filter.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif


static const char *const denied_syscalls[] = {
  /* mounts and namespaces */
  "mount", "umount", "umount2", "pivot_root", "unshare", "setns", "open_tree",
  "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
  /* the kernel itself */
  "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
  "create_module", "get_kernel_syms", "query_module", "bpf", "perf_event_open",
  "reboot", "swapon", "swapoff", "acct", "lookup_dcookie", "quotactl", "quotactl_fd",
  "nfsservctl", "sysfs", "_sysctl", "uselib", "ustat", "syslog", "vhangup",
  "iopl", "ioperm", "vm86", "vm86old", "userfaultfd", "fanotify_init",
  "name_to_handle_at", "open_by_handle_at",
  /* keys */
  "keyctl", "add_key", "request_key",
  /* the clock */
  "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64", "settimeofday",
  "stime", "adjtimex",
  /* NUMA placement (Docker: CAP_SYS_NICE) */
  "mbind", "set_mempolicy", "migrate_pages", "move_pages",
  /* io_uring bypasses this filter (Docker 25 denies it too) */
  "io_uring_setup", "io_uring_enter", "io_uring_register",
};

static int add_rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned n,
                    const struct scmp_arg_cmp *cmp, struct cb_error *err)
{
  int nr = seccomp_syscall_resolve_name(name);
  int rc;
  if (nr == __NR_SCMP_ERROR)
    return 0; /* unknown to every architecture */
  rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
  if (rc < 0 && rc != -EDOM)
    return cb_error_errno(err, -rc, "seccomp rule for %s", name);
  return 0;
}

static int build_filter(scmp_filter_ctx ctx, struct cb_error *err)
{
  static const unsigned long new_ns[] = {
    CLONE_NEWNS,  CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID,   CLONE_NEWNET,
  };
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  uint32_t native = seccomp_arch_native();

  /* 32-bit programs must meet the same rules, not a filter that kills them. */
  if (native == SCMP_ARCH_X86_64) {
    if (seccomp_arch_add(ctx, SCMP_ARCH_X86) < 0 || seccomp_arch_add(ctx, SCMP_ARCH_X32) < 0)
      return cb_error_set(err, "seccomp: add the x86 and x32 architectures");
  } else if (native == SCMP_ARCH_AARCH64) {
    if (seccomp_arch_add(ctx, SCMP_ARCH_ARM) < 0)
      return cb_error_set(err, "seccomp: add the arm architecture");
  }
  for (size_t i = 0; i < CB_ARRAY_SIZE(denied_syscalls); i++)
    if (add_rule(ctx, eperm, denied_syscalls[i], 0, NULL, err) < 0)
      return -1;

  /* clone making namespaces; clone3 hides its flags in memory, so it says
   * ENOSYS and the C library falls back to clone. */
  for (size_t i = 0; i < CB_ARRAY_SIZE(new_ns); i++) {
    struct scmp_arg_cmp cmp = SCMP_A0(SCMP_CMP_MASKED_EQ, new_ns[i], new_ns[i]);
    if (add_rule(ctx, eperm, "clone", 1, &cmp, err) < 0)
      return -1;
  }
  if (add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err) < 0)
    return -1;

  /*
   * personality: Docker allows PER_LINUX (0), PER_LINUX32 (8), UNAME26
   * (0x20000), both (0x20008), and the query 0xffffffff.  A rule compares
   * an argument once, so deny (a) any other bit with bit 31 clear and
   * (b) bit 31 with any of the low 31 bits clear.
   */
  for (int b = 0; b < 31; b++) {
    uint64_t bit = UINT64_C(1) << b, top = UINT64_C(1) << 31;
    struct scmp_arg_cmp cmp;
    if (b != 3 && b != 17) {
      cmp = SCMP_A0(SCMP_CMP_MASKED_EQ, bit | top, bit);
      if (add_rule(ctx, eperm, "personality", 1, &cmp, err) < 0)
        return -1;
    }
    cmp = SCMP_A0(SCMP_CMP_MASKED_EQ, bit | top, top);
    if (add_rule(ctx, eperm, "personality", 1, &cmp, err) < 0)
      return -1;
  }
  return 0;
}

/*
 * The filter is compiled once per process, in the caller (libseccomp takes
 * a few milliseconds over it), and only installed in each command.
 */
static pthread_once_t filter_once = PTHREAD_ONCE_INIT;
static struct sock_filter *filter_prog;
static size_t filter_len;
static struct cb_error filter_err;

static void compile_filter(void)
{
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  cleanup_close int fd = -1;
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  char buf[4096];
  ssize_t n;
  int rc;

  if (!ctx) {
    cb_error_set(&filter_err, "seccomp_init failed");
    return;
  }
  if (build_filter(ctx, &filter_err) < 0) {
    seccomp_release(ctx);
    return;
  }
  fd = memfd_create("cbuild-seccomp", MFD_CLOEXEC);
  if (fd < 0) {
    cb_error_errno(&filter_err, errno, "memfd_create");
    seccomp_release(ctx);
    return;
  }
  rc = seccomp_export_bpf(ctx, fd);
  seccomp_release(ctx);
  if (rc < 0) {
    cb_error_errno(&filter_err, -rc, "compile the seccomp filter");
    return;
  }
  if (lseek(fd, 0, SEEK_SET) < 0) {
    cb_error_errno(&filter_err, errno, "lseek");
    return;
  }
  while ((n = cb_read_retry(fd, buf, sizeof(buf))) > 0)
    strbuf_add(&sb, buf, (size_t)n);
  if (n < 0 || sb.len == 0 || sb.len % sizeof(struct sock_filter) != 0) {
    cb_error_set(&filter_err, "read the compiled seccomp filter");
    return;
  }
  filter_len = sb.len / sizeof(struct sock_filter);
  filter_prog = (struct sock_filter *)strbuf_detach(&sb, NULL);
}

int runner_seccomp_prepare(const void **prog, size_t *len, struct cb_error *err)
{
  pthread_once(&filter_once, compile_filter);
  if (!filter_prog) {
    *err = filter_err;
    return -1;
  }
  *prog = filter_prog;
  *len = filter_len * sizeof(struct sock_filter);
  return 0;
}

