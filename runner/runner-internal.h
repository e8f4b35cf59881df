/*
 * runner's private interfaces: the parts of one RUN step that run.c puts
 * together.  Three processes take part besides the caller:
 *
 *   caller (runner_run)   maps ids, makes the cgroup, starts slirp4netns,
 *     |                   reads the output and the message pipe
 *     `- setup            unshares user (rootless), PID, UTS, IPC, network
 *          |              namespaces, then waits to be set up from outside
 *          `- init        PID 1: new mount and cgroup namespaces, the rootfs,
 *               |         pivot_root; then reaps and forwards signals
 *               `- command  drops privileges, loads seccomp, execs
 *
 * The children report to the caller over one pipe of typed records
 * (enum runner_msg_type below), and wait for it on a socket ("go": one
 * byte lets the setup process fork the init, a second one lets the init
 * start the command once the network is up).
 */
#ifndef CBUILD_RUNNER_INTERNAL_H
#define CBUILD_RUNNER_INTERNAL_H

#include "runner.h"

#include <sys/types.h>

/* What the children need; filled by the caller before it forks. */
struct runner_setup {
  const struct runner_config *c;
  bool rootless;
  bool new_userns; /* not root at all: the setup makes the user namespace */
  int netns_fd;    /* a shared network namespace to join, or -1 */
  const char *hostname;
  char *tmpdir;  /* private to this step: etc files, the rootfs mount point */
  char *rootdir; /* tmpdir/root */
  int msgfd;     /* write end of the message pipe */
  int gofd;      /* the children's end of the go socket */
  int outfd;     /* write end of the output pipe */
};

/* ---- message pipe: children -> caller ---- */

enum runner_msg_type {
  RUNNER_MSG_ERROR = 'E',     /* a setup step failed: the message */
  RUNNER_MSG_READY = 'R',     /* namespaces made, waiting for ids and cgroup */
  RUNNER_MSG_INIT_PID = 'P',  /* the init's pid, as the caller sees it */
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

/* ---- security.c: in the command, last before exec ---- */

/* Switch to u, reduce capabilities, set no_new_privs and load seccomp
 * (all capabilities and no seccomp when c->insecure). */
int runner_security_apply(const struct runner_config *c, const struct runner_user *u,
                          struct cb_error *err);
/* Compile the seccomp filter (once per process); the caller does it
 * before forking. */
int runner_seccomp_prepare(struct cb_error *err);
/* The init keeps only CAP_KILL (to forward signals). */
int runner_security_init_caps(struct cb_error *err);
/* Docker's default capability set, as a bit mask. */
uint64_t runner_default_caps(void);

/* ---- userns.c: in the caller, rootless ---- */

/* Map the caller to 0 in pid's user namespace, and the caller's
 * subordinate range from 1 when newuidmap/newgidmap and /etc/subuid allow. */
int runner_userns_map(pid_t pid, struct cb_error *err);

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

/* Write tmpdir/{hosts,resolv.conf,hostname} for the network mode. */
int runner_net_write_etc(const char *tmpdir, enum runner_network net, const char *hostname,
                         struct cb_error *err);
/* Check that slirp4netns is installed (for RUNNER_NET_DEFAULT). */
int runner_slirp_check(struct cb_error *err);
/* Start slirp4netns for pid's network namespace. */
int runner_slirp_start(struct runner_slirp *sl, pid_t pid, const char *tmpdir,
                       struct cb_error *err);
/* After ready_fd became readable: 0 when ready, -1 with err if it failed. */
int runner_slirp_ready(struct runner_slirp *sl, struct cb_error *err);
void runner_slirp_stop(struct runner_slirp *sl);
/* In the init: bring up "lo". */
int runner_net_lo_up(struct cb_error *err);
/* The fd of a shared network namespace, or -1. */
int runner_netns_fd(const struct runner_netns *n);
/* How long slirp4netns may take to configure the network. */
#define RUNNER_SLIRP_TIMEOUT_MS 20000

/* ---- small helpers (run.c) ---- */

/* Find an executable named name in PATH (or a default); NULL if none. */
char *runner_find_program(const char *name);
/* Write s to path (created 0644, truncated). */
int runner_write_file(const char *path, const char *s, struct cb_error *err);

#endif
