/*
 * runner's private interfaces: the parts of one RUN step that run.c puts
 * together.  Two processes take part besides the caller:
 *
 *   caller (runner_run)   starts the init in new PID, UTS, IPC, network and
 *     |                   (rootless) user namespaces; maps ids, makes the
 *     |                   cgroup, starts slirp4netns; reads the output and
 *     |                   the message pipe
 *     `- init             cbuild-sandbox, a small static program (below),
 *          |              PID 1: waits to be set up from outside, then new
 *          |              mount and cgroup namespaces, the rootfs,
 *          |              pivot_root; then reaps and forwards signals
 *          `- command     drops privileges, loads seccomp, execs
 *
 * The caller hands the init its configuration encoded (wire.c), on a file
 * at RUNNER_FD_CONFIG.  The children report to the caller over one pipe of
 * typed records (enum runner_msg_type below), and wait for it on a socket
 * ("go": one byte lets the init set up the rootfs, a second one lets it
 * start the command once the network is up; each only when the caller has
 * something to do first).
 *
 * cbuild-sandbox is linked from sandbox-main.c, sandbox.c, privileges.c,
 * mounts.c, overlay.c, user.c, wire.c and common/ only (see the Makefile),
 * and carried inside cbuild (sandbox-image.S): those files must not call
 * anything else of cbuild's, nor any library but the C library.
 */
#ifndef CBUILD_RUNNER_INTERNAL_H
#define CBUILD_RUNNER_INTERNAL_H

#include "runner.h"

#include <sys/types.h>

/* What the children need; filled by the caller before it starts them. */
struct runner_setup {
  const struct runner_config *c;
  bool rootless;
  bool new_userns; /* not root at all: the init gets a user namespace */
  int netns_fd;    /* a shared network namespace to join, or -1 */
  const char *hostname;
  /* In the process's state directory (statedir.c), for as long as it runs: */
  const char *statedir;
  const char *tmpdir;  /* statedir/step: a tmpfs of the init's own there */
  const char *rootdir; /* statedir/root: the rootfs's mount point */
  const char *etcdir;  /* hosts, resolv.conf and hostname to bind */
  int msgfd;     /* write end of the message pipe */
  int gofd;      /* the children's end of the go socket */
  int outfd;     /* write end of the output pipe */
  const void *seccomp; /* the compiled filter (struct sock_filter[]) */
  size_t seccomp_len;  /* in bytes; 0 when c->insecure */
  uint64_t ignored_signals; /* bit sig-1: ignored by the caller (1-64) */
  /* Which go bytes the init waits for: the first when the caller has ids
   * to map or a cgroup to fill (always with new_userns), the second when
   * it starts slirp4netns for the step. */
  bool wait_setup, wait_network;
};

/* The kernel's struct sigaction, for rt_sigaction(2) itself: the C library
 * refuses signals 32 and 33, which it keeps for itself, yet a caller may
 * have them ignored (make does) and an ignored signal survives exec. */
struct runner_ksigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)(void);
  uint64_t mask;
};

/* ---- cbuild-sandbox: the init's program ---- */

/* Its only argument, which says it was started by runner_run(). */
#define RUNNER_SANDBOX_ARG "--cbuild-runner"

/* The descriptors it starts with (-1 when absent: a netns_fd). */
enum {
  RUNNER_FD_CONFIG = 3, /* the encoded setup and config, read to the end */
  RUNNER_FD_MSG,
  RUNNER_FD_GO,
  RUNNER_FD_OUT,
  RUNNER_FD_NETNS,
};

/* Its image, in cbuild (sandbox-image.S). */
extern const unsigned char runner_sandbox_image[];
extern const unsigned char runner_sandbox_image_end[];

/* Encode s and s->c (all but the limits and the output callback). */
void runner_wire_encode(const struct runner_setup *s, struct strbuf *out);
/* Decode buf into s and c (s->c = c): the strings and arrays point into
 * buf or into arrays of its own (runner_wire_release).  The descriptors
 * are left alone. */
int runner_wire_decode(const char *buf, size_t len, struct runner_setup *s,
                       struct runner_config *c, struct cb_error *err);
/* Free what runner_wire_decode() allocated in c, whatever it returned. */
void runner_wire_release(struct runner_config *c);

/* The init, from the caller's go to the command's end (sandbox.c); it
 * exits. */
CB_NORETURN void runner_sandbox_main(struct runner_setup *s);

/* ---- message pipe: children -> caller ---- */

enum runner_msg_type {
  RUNNER_MSG_ERROR = 'E',     /* a setup step failed: the message */
  RUNNER_MSG_READY = 'R',     /* started, waiting for ids and cgroup */
  RUNNER_MSG_INIT_PID = 'P',  /* new_userns: the init's pid (see sandbox.c) */
  RUNNER_MSG_STUB = 'S',      /* a mount target created on the rootfs */
  RUNNER_MSG_STUB_DIR = 'D',  /* a parent directory created for one */
  RUNNER_MSG_STATUS = 'X',    /* the command's wait status */
};

/* Send one record; records are small and sent from one process at a time. */
void runner_msg_send(int fd, enum runner_msg_type type, const void *data, size_t len);
/* In a child: report err and exit. */
CB_NORETURN void runner_child_fail(const struct runner_setup *s, const struct cb_error *err);

/* ---- mounts.c, overlay.c: in the init, before the command ---- */

/* Mount the overlay at s->rootdir (overlay.c). */
int runner_overlay_mount(const struct runner_setup *s, struct cb_error *err);

/* Any overlay: lowerdirs top first (a directory that comes twice is kept
 * where it is highest); read-only without upperdir and workdir.  empty is
 * an empty directory that stands in for missing lowers. */
struct runner_overlay {
  const char *const *lowerdirs;
  size_t n_lowerdirs;
  const char *upperdir;
  const char *workdir;
  const char *empty;
  const char *mountpoint;
};
int runner_overlay_mount_at(const struct runner_setup *s, const struct runner_overlay *o,
                            struct cb_error *err);
/* The whole filesystem: new mount namespace, overlay, /proc, /dev, /sys,
 * the etc files, extra mounts, then pivot_root.  Stubs are reported on
 * s->msgfd. */
int runner_mounts_setup(const struct runner_setup *s, struct cb_error *err);
/* After the run, in the caller: add to res->mount_stubs the directories
 * that hold nothing but stubs in the upperdir, deepest first: those made
 * for a stub (dirs) and those copied up because a stub went in. */
void runner_stubs_finish(struct runner_result *res, const struct strvec *dirs,
                         const char *upperdir);
/* The mount API: whether to use fsopen/open_tree (off with
 * CBUILD_NO_MOUNT_API=1, so that tests cover the fallback). */
bool runner_use_mount_api(void);

/* ---- user.c ---- */

struct runner_user {
  uid_t uid;
  gid_t gid;
  gid_t *groups; /* supplementary */
  size_t n_groups;
  char *home;
};

/* Resolve spec ("", "name", "uid", "name:group", "uid:gid") in the passwd
 * and group files given (missing files count as empty). */
int runner_user_resolve(const char *spec, const char *passwd_path, const char *group_path,
                        struct runner_user *u, struct cb_error *err);
void runner_user_release(struct runner_user *u);
/* The command's environment: c->env plus HOSTNAME, HOME and PATH when
 * missing. */
void runner_env_build(const struct runner_config *c, const char *hostname,
                      const struct runner_user *u, struct strvec *env);
/* mkdir -p path with mode 0755 (in the current root). */
int runner_mkdir_p(const char *path, struct cb_error *err);

/* ---- privileges.c: in the command, last before exec ---- */

/* Switch to u, reduce capabilities, set no_new_privs and load s->seccomp
 * (all capabilities and no seccomp when s->c->insecure). */
int runner_security_apply(const struct runner_setup *s, const struct runner_user *u,
                          struct cb_error *err);
/* The init keeps only CAP_KILL (to forward signals). */
int runner_security_init_caps(struct cb_error *err);
/* Docker's default capability set, as a bit mask. */
uint64_t runner_default_caps(void);

/* ---- seccomp.c: in the caller ---- */

/* The seccomp filter as BPF, compiled once per process: *prog holds *len
 * bytes, for as long as the process lives. */
int runner_seccomp_prepare(const void **prog, size_t *len, struct cb_error *err);

/* ---- userns.c: in the caller, rootless ---- */

/* Map the caller to 0 in pid's user namespace, and the caller's
 * subordinate range from 1 when newuidmap/newgidmap and /etc/subuid allow. */
int runner_userns_map(pid_t pid, struct cb_error *err);

/* ---- statedir.c: in the caller ---- */

/* Make the process's state directory when it is not there yet (statedir.c
 * says what it holds), and the etc files for net and s->hostname; fill
 * s->statedir, s->tmpdir, s->rootdir and s->etcdir. */
int runner_statedir_prepare(struct runner_setup *s, enum runner_network net,
                            struct cb_error *err);

/* ---- cgroups.c: in the caller ---- */

struct runner_cgroup {
  struct strvec dirs;  /* created, removed at the end */
  char *memory_dir;    /* where the memory limit is, for OOM evidence */
  bool memory_v2;
};

/* Where controller ctl is for a process whose /proc/self/mountinfo and
 * /proc/self/cgroup read as given: cgroup v2 when its cgroup.controllers
 * there lists ctl, else its v1 hierarchy.  *dir is the process's cgroup
 * directory in it. */
int runner_cgroup_find(const char *ctl, const char *mountinfo, const char *cgroup, bool *v2,
                       char **dir, struct cb_error *err);
/* Make a cgroup for the step with limits l (nothing when l sets none). */
int runner_cgroup_create(struct runner_cgroup *cg, const struct runner_limits *l,
                         struct cb_error *err);
int runner_cgroup_add(struct runner_cgroup *cg, pid_t pid, struct cb_error *err);
/* How many processes the memory limit killed (0 without one). */
long long runner_cgroup_oom_kills(const struct runner_cgroup *cg);
/* Remove the cgroup (its processes are gone). */
void runner_cgroup_destroy(struct runner_cgroup *cg);

/* ---- network.c ---- */

struct runner_slirp {
  pid_t pid;
  int ready_fd; /* read end: slirp4netns writes "1" once configured */
  int exit_fd;  /* write end: slirp4netns exits when it closes */
  char *log;    /* its output, for errors */
};

/* Write dir/{hosts,resolv.conf,hostname} for the network mode. */
int runner_net_write_etc(const char *dir, enum runner_network net, const char *hostname,
                         struct cb_error *err);
/* Check that slirp4netns is installed (for RUNNER_NET_DEFAULT). */
int runner_slirp_check(struct cb_error *err);
/* Start slirp4netns for pid's network namespace, its output in a log in
 * dir (removed by runner_slirp_stop). */
int runner_slirp_start(struct runner_slirp *sl, pid_t pid, const char *dir,
                       struct cb_error *err);
/* After ready_fd became readable: 0 when ready, -1 with err if it failed. */
int runner_slirp_ready(struct runner_slirp *sl, struct cb_error *err);
void runner_slirp_stop(struct runner_slirp *sl);
/* The fd of a shared network namespace of that kind, or -1. */
int runner_netns_fd(const struct runner_netns *n, enum runner_network kind);
/* How long slirp4netns may take to configure the network. */
#define RUNNER_SLIRP_TIMEOUT_MS 20000

/* Bring up "lo" (sandbox.c; the init, and network.c's shared namespace). */
int runner_net_lo_up(struct cb_error *err);

/* ---- small helpers (run.c) ---- */

/* Find an executable named name in PATH (or a default); NULL if none. */
char *runner_find_program(const char *name);
/* Write s to path (created 0644, truncated). */
int runner_write_file(const char *path, const char *s, struct cb_error *err);

#endif
