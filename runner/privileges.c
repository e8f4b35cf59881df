/*
 * The command's privileges, set last before exec in this order (runc's):
 * bounding set, ambient set, user and groups (keeping capabilities across
 * setuid), the remaining capability sets, no_new_privs, seccomp (the filter
 * seccomp.c compiled in the caller).
 *
 * Capabilities are Docker's default set.  The inheritable set is left
 * empty, as Docker does since 20.10.14 (CVE-2022-24769): a non-empty one
 * lets a program with inheritable file capabilities gain them.  A non-root
 * USER keeps no capabilities, only the bounding set, as with Docker.
 */
#include "runner-internal.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define CAP(n) (UINT64_C(1) << (n))

uint64_t runner_default_caps(void)
{
  return CAP(CAP_CHOWN) | CAP(CAP_DAC_OVERRIDE) | CAP(CAP_FOWNER) | CAP(CAP_FSETID) |
         CAP(CAP_KILL) | CAP(CAP_NET_BIND_SERVICE) | CAP(CAP_SETFCAP) | CAP(CAP_SETGID) |
         CAP(CAP_SETPCAP) | CAP(CAP_SETUID) | CAP(CAP_SYS_CHROOT) | CAP(CAP_NET_RAW) |
         CAP(CAP_MKNOD) | CAP(CAP_AUDIT_WRITE);
}

static int capset_all(uint64_t eff, uint64_t perm, uint64_t inh)
{
  struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct data[2];
  data[0].effective = (uint32_t)eff;
  data[1].effective = (uint32_t)(eff >> 32);
  data[0].permitted = (uint32_t)perm;
  data[1].permitted = (uint32_t)(perm >> 32);
  data[0].inheritable = (uint32_t)inh;
  data[1].inheritable = (uint32_t)(inh >> 32);
  return (int)syscall(SYS_capset, &hdr, data);
}

static int drop_bounding(uint64_t keep, struct cb_error *err)
{
  for (int cap = 0; cap < 64; cap++) {
    if (keep & CAP(cap))
      continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL)
        break; /* past the kernel's last capability */
      return cb_error_errno(err, errno, "drop capability %d from the bounding set", cap);
    }
  }
  return 0;
}

int runner_security_init_caps(struct cb_error *err)
{
  if (drop_bounding(CAP(CAP_KILL), err) < 0)
    return -1;
  if (capset_all(CAP(CAP_KILL), CAP(CAP_KILL), 0) < 0)
    return cb_error_errno(err, errno, "capset");
  return 0;
}

#define NO_RANGE                                                               \
  " (not mapped in the user namespace: rootless builds need newuidmap, "       \
  "newgidmap and a range in /etc/subuid and /etc/subgid for images with "      \
  "several users)"

static int switch_user(const struct runner_user *u, struct cb_error *err)
{
  if (setgroups(u->n_groups, u->groups) < 0) {
    /* A user namespace whose gid map we wrote ourselves forbids setgroups;
     * the command then keeps no group but its own. */
    if (errno == EPERM && u->n_groups == 0)
      ;
    else if (errno == EPERM || errno == EINVAL)
      return cb_error_errno(err, errno, "setgroups (%zu supplementary groups)" NO_RANGE,
                            u->n_groups);
    else
      return cb_error_errno(err, errno, "setgroups (%zu supplementary groups)", u->n_groups);
  }
  if (setresgid(u->gid, u->gid, u->gid) < 0)
    return cb_error_errno(err, errno, "setgid %u%s", (unsigned)u->gid,
                          errno == EINVAL ? NO_RANGE : "");
  if (setresuid(u->uid, u->uid, u->uid) < 0)
    return cb_error_errno(err, errno, "setuid %u%s", (unsigned)u->uid,
                          errno == EINVAL ? NO_RANGE : "");
  return 0;
}

static int load_seccomp(const struct runner_setup *s, struct cb_error *err)
{
  struct sock_fprog prog;
  if (s->seccomp_len == 0 || s->seccomp_len % sizeof(struct sock_filter) != 0 ||
      s->seccomp_len / sizeof(struct sock_filter) > BPF_MAXINSNS)
    return cb_error_set(err, "load the seccomp filter: the sandbox got none");
  prog.len = (unsigned short)(s->seccomp_len / sizeof(struct sock_filter));
  prog.filter = (struct sock_filter *)s->seccomp;
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
    return cb_error_errno(err, errno, "load the seccomp filter");
  return 0;
}

int runner_security_apply(const struct runner_setup *s, const struct runner_user *u,
                          struct cb_error *err)
{
  const struct runner_config *c = s->c;
  uint64_t caps = c->insecure ? ~UINT64_C(0) : runner_default_caps();

  if (!c->insecure && drop_bounding(caps, err) < 0)
    return -1;
  (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
    return cb_error_errno(err, errno, "prctl(PR_SET_KEEPCAPS)");
  if (switch_user(u, err) < 0)
    return -1;
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
    return cb_error_errno(err, errno, "prctl(PR_SET_KEEPCAPS)");
  if (u->uid != 0)
    caps = 0;
  /* capset takes what the kernel knows; the bounding set trims the rest. */
  if (c->insecure && u->uid == 0) {
    /* keep the full sets */
  } else if (capset_all(caps, caps, 0) < 0) {
    return cb_error_errno(err, errno, "capset");
  }
  if (c->insecure)
    return 0;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return cb_error_errno(err, errno, "prctl(PR_SET_NO_NEW_PRIVS)");
  return load_seccomp(s, err);
}
