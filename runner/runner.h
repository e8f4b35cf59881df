/*
 * runner: runs one RUN step in a sandbox made of Linux primitives, the way
 * runc, crun and bubblewrap do: user (when not root), mount, PID, UTS, IPC,
 * network and cgroup namespaces; an overlay of the image's snapshots with a
 * fresh upperdir; a minimal /proc, /dev and /sys; pivot_root; Docker's
 * default capabilities; a seccomp filter (libseccomp); no_new_privs;
 * cgroup limits (v2 where its controllers exist, else v1).
 *
 * It knows namespaces, not layers: the caller hands it directories and a
 * command and gets back an exit status; the upperdir then holds the
 * step's changes.  It uses no cbuild module but common/.
 */
#ifndef CBUILD_RUNNER_H
#define CBUILD_RUNNER_H

#include "../common/common.h"

enum runner_network {
  RUNNER_NET_DEFAULT, /* own namespace with outbound network (slirp4netns) */
  RUNNER_NET_NONE,    /* own namespace with only lo, up */
  RUNNER_NET_HOST,    /* the host's network namespace */
};

enum runner_mount_type {
  RUNNER_MOUNT_BIND,
  RUNNER_MOUNT_TMPFS,
  RUNNER_MOUNT_OVERLAY,
  RUNNER_MOUNT_FILE,
};

/*
 * An extra mount, for RUN --mount.  The target is resolved in the rootfs
 * as if it were "/", and created when missing (a stub: see mount_stubs).
 * Mounts are made in the order given: one whose target is below another's
 * comes after it.
 *
 *  BIND     source, a host path; with source_root, a path beneath that
 *           directory, opened without following any symlink or going out
 *           of it (cb_open_beneath), for sources in hostile hands such as
 *           the build context; hide then lists paths below that source
 *           to leave out, as if absent (what .dockerignore excludes).
 *           Writable with upperdir and workdir (empty directories of one
 *           filesystem): the step then writes to a throwaway overlay over
 *           the source (to a copy, for a file), which never changes;
 *           writable without them, to the source.
 *  TMPFS    a new tmpfs, mode 1777, of size bytes (0: the kernel's default).
 *  OVERLAY  an overlay of lowerdirs (top first, made like the rootfs's),
 *           read-only, or writable into upperdir and workdir; source, when
 *           set, is a path in it (symlinks resolved inside it) to mount
 *           instead of its root.
 *  FILE     a read-only file holding data_len bytes of data, owned by
 *           uid:gid with mode, on a tmpfs of its own: the content never
 *           touches a disk (secrets).
 */
struct runner_mount {
  enum runner_mount_type type;
  const char *source;
  const char *target; /* absolute path in the container */
  bool readonly;
  long long size;     /* TMPFS */
  const char *source_root; /* BIND */
  const char *const *hide;  /* BIND with source_root: relative paths */
  size_t n_hide;
  const char *const *lowerdirs; /* OVERLAY */
  size_t n_lowerdirs;
  const char *upperdir; /* BIND, OVERLAY: NULL for none */
  const char *workdir;
  const void *data;   /* FILE */
  size_t data_len;
  uid_t uid;
  gid_t gid;
  mode_t mode;
};

struct runner_limits {
  long long memory_bytes; /* 0: no limit */
  long long pids;         /* 0: no limit */
  long long cpu_quota_us; /* with cpu_period_us; 0: no limit */
  long long cpu_period_us;
};

/*
 * A network namespace made once and joined by several steps: with
 * outbound network (slirp4netns) for RUNNER_NET_DEFAULT, or only lo for
 * RUNNER_NET_NONE.  Each such RUN then costs a setns() instead of a
 * namespace (and a slirp4netns) of its own.  The steps share its
 * interfaces, never a process: each step's processes die with it, and
 * none has CAP_NET_ADMIN to change the namespace.  Only for a caller that
 * is root (of a user namespace or not).
 */
struct runner_netns;
/* Made in two halves, so that slirp4netns comes up while the caller does
 * something else: start, then wait.  runner_run waits for the config's
 * netns itself, just before the sandbox joins it (from any thread; a
 * failure is given to every later wait as well).  kind is
 * RUNNER_NET_DEFAULT or RUNNER_NET_NONE; a step joins only a namespace of
 * its own network's kind.  A caller that is not root gets *out NULL (and
 * 0): its steps make their own. */
int runner_netns_start(struct runner_netns **out, enum runner_network kind,
                       struct cb_error *err);
int runner_netns_wait(struct runner_netns *n, struct cb_error *err);
/* For a caller about to exit, once no step will join any more: let the
 * namespace go and kill its slirp4netns, whose exit runner_netns_free then
 * does not wait for (the kernel finishes it; init reaps it if we are gone
 * first). */
void runner_netns_stop(struct runner_netns *n);
void runner_netns_free(struct runner_netns *n);

struct runner_config {
  /* The root filesystem: overlay(lowerdirs, upperdir, workdir).  lowerdirs
   * are listed top first; none at all means an empty lower layer. */
  const char *const *lowerdirs;
  size_t n_lowerdirs;
  const char *upperdir;
  const char *workdir;      /* empty; left empty afterwards */

  const char *const *argv; /* NULL-terminated, run as is (the caller adds SHELL) */
  const char *const *env;  /* NULL-terminated "K=V"; HOSTNAME and HOME are
                              added when missing, PATH too */
  const char *cwd;         /* created when missing, as WORKDIR is */
  const char *user;        /* "", "name", "uid", "name:group", "uid:gid":
                              resolved in the rootfs's /etc/passwd, /etc/group
                              with supplementary groups */
  const char *hostname;    /* default "cbuild" */
  enum runner_network network;
  struct runner_netns *netns; /* DEFAULT or NONE: join this one, or NULL */
  bool insecure;           /* --security=insecure: all caps, no seccomp */
  const struct runner_mount *mounts;
  size_t n_mounts;
  struct runner_limits limits;

  /* The step's stdout and stderr, as they come (called from the caller's
   * thread while runner_run waits). */
  void (*output)(void *data, const char *buf, size_t n);
  void *output_data;
};

struct runner_result {
  int exit_status; /* when the command exited; 128 + signal when killed */
  int signal;      /* when it was killed by a signal; 0 otherwise */
  bool oom_killed; /* the memory limit killed it (SIGKILL or status 137,
                      with the cgroup's oom_kill count as evidence) */
  /* Paths (relative to the rootfs, no leading '/') the sandbox created in
   * the upperdir only to mount something over them (/etc/hosts and
   * friends, mount targets), and the directories that hold nothing else
   * there (made for them, or copied up because they went in): the layer
   * must leave them out, with what is below them. */
  struct strvec mount_stubs;
};

void runner_result_release(struct runner_result *r);

/*
 * Run the command.  Returns 0 when it ran (whatever its exit status, which
 * res holds), -1 with err when the sandbox could not be set up or the
 * command could not be executed: the message says what is missing
 * ("overlayfs in a user namespace is not available: ...", "exec "x":
 * executable file not found in $PATH").  It never runs the command without
 * the sandbox.  Every mount and process of the step is gone when it
 * returns (slirp4netns is killed; a thread reaps it as the kernel takes
 * its tap device down).  res is filled on success only; release it with
 * runner_result_release() either way.
 *
 * Environment knobs, for tests: CBUILD_NO_MOUNT_API=1 mounts the overlay
 * with mount(2) and short /proc/self/fd names instead of fsconfig's
 * "lowerdir+"; CBUILD_NO_SUBUID=1 maps only the caller when rootless.
 */
int runner_run(const struct runner_config *c, struct runner_result *res, struct cb_error *err);

/* Whether the build runs rootless (not uid 0, or root of a user namespace
 * only): the overlay then uses userxattr and opaque directories use
 * user.overlay.opaque. */
bool runner_rootless(void);

/*
 * Rootless: move this process into a new user namespace where it is root,
 * with the caller's subordinate id range (/etc/subuid, /etc/subgid, through
 * newuidmap and newgidmap) mapped from 1, or only itself without them.
 * Everything the build then does to the store (unpacking snapshots with
 * their owners, reading an upperdir for a layer, removing it) happens with
 * the image's ids, and runner_run() makes no namespace of its own for
 * users.  Call it while the process has one thread; nothing to do as root.
 */
int runner_enter_userns(struct cb_error *err);

#endif
