/*
 * One RUN step from start to end, in the caller: cbuild-sandbox started
 * as the init with the step's configuration (runner-internal.h), the pipes
 * and the socket to its processes, ids, cgroup and network set up from
 * outside, and the cleanup that leaves no mount, process, cgroup or temp
 * dir behind.
 *
 * A small static program started with clone(CLONE_VM|CLONE_VFORK) rather
 * than fork()s of cbuild: forking the builder, with its libraries and
 * heap, cost more than the rest of the step; this copies no address space,
 * is safe in a threaded caller, and the init's own fork is cheap.
 */
#include "runner-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

extern char **environ;

/* Whether this process is in a user namespace other than the first one:
 * there the identity map does not cover every id. */
static bool in_user_namespace(void)
{
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  struct cb_error e;
  unsigned long inside, outside, count;
  if (cb_read_file("/proc/self/uid_map", &sb, &e) < 0)
    return false;
  return sscanf(sb.buf, "%lu %lu %lu", &inside, &outside, &count) != 3 || inside != 0 ||
         outside != 0 || count != 4294967295UL;
}

bool runner_rootless(void)
{
  static int cached = -1;
  if (geteuid() != 0)
    return true;
  if (cached < 0)
    cached = in_user_namespace();
  return cached;
}

void runner_result_release(struct runner_result *r)
{
  strvec_clear(&r->mount_stubs);
}

/* ---- helpers ---- */

char *runner_find_program(const char *name)
{
  const char *path = getenv("PATH");
  cleanup_free char *copy = NULL;
  char *save = NULL;
  if (strchr(name, '/'))
    return access(name, X_OK) == 0 ? xstrdup(name) : NULL;
  if (!path || !*path)
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  copy = xstrdup(path);
  for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
    char *full = xasprintf("%s/%s", *dir ? dir : ".", name);
    struct stat st;
    if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0)
      return full;
    free(full);
  }
  return NULL;
}

int runner_write_file(const char *path, const char *s, struct cb_error *err)
{
  cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 || cb_write_all(fd, s, strlen(s)) < 0)
    return cb_error_errno(err, errno, "write \"%s\"", path);
  return 0;
}

/* ---- the caller ---- */

struct run_state {
  struct runner_setup s;
  struct runner_cgroup cg;
  struct runner_slirp slirp;
  struct strvec stub_dirs;
  int out_r, msg_r, go_w;
  pid_t child_pid; /* cbuild-sandbox as started */
  pid_t init_pid;  /* the init: the same, but with new_userns (sandbox.c) */
  bool ready, have_status, failed;
  bool go_lost; /* the go could not be sent, or slirp4netns found no
                   namespace: a child died, and its own reason wins */
  int status;
  struct strbuf msgbuf;
};

/* Handle the complete records in st->msgbuf. */
static void handle_records(struct run_state *st, struct runner_result *res, struct cb_error *err)
{
  size_t off = 0;
  while (st->msgbuf.len - off >= 5) {
    uint32_t n;
    char type = st->msgbuf.buf[off];
    const char *data = st->msgbuf.buf + off + 5;
    memcpy(&n, st->msgbuf.buf + off + 1, 4);
    if (st->msgbuf.len - off - 5 < n)
      break;
    switch (type) {
    case RUNNER_MSG_ERROR:
      /* the child's own reason beats the broken pipe it left us */
      if (!st->failed || st->go_lost) {
        cb_error_set(err, "%.*s", (int)n, data);
        st->failed = true;
        st->go_lost = false;
      }
      break;
    case RUNNER_MSG_READY:
      st->ready = true;
      break;
    case RUNNER_MSG_INIT_PID:
      if (n == 4) {
        int32_t p;
        memcpy(&p, data, 4);
        st->init_pid = p;
      }
      break;
    case RUNNER_MSG_STUB:
      strvec_push_nodup(&res->mount_stubs, xstrndup(data, n));
      break;
    case RUNNER_MSG_STUB_DIR:
      strvec_push_nodup(&st->stub_dirs, xstrndup(data, n));
      break;
    case RUNNER_MSG_STATUS:
      if (n == 4) {
        int32_t v;
        memcpy(&v, data, 4);
        st->status = v;
        st->have_status = true;
      }
      break;
    default:
      break;
    }
    off += 5 + n;
  }
  if (off) {
    memmove(st->msgbuf.buf, st->msgbuf.buf + off, st->msgbuf.len - off);
    strbuf_setlen(&st->msgbuf, st->msgbuf.len - off);
  }
}

/* Read what is there on the message pipe; 0 at EOF, 1 otherwise. */
static int read_msgs(struct run_state *st, struct runner_result *res, struct cb_error *err)
{
  char buf[8192];
  ssize_t n = cb_read_retry(st->msg_r, buf, sizeof(buf));
  if (n <= 0)
    return 0;
  strbuf_add(&st->msgbuf, buf, (size_t)n);
  handle_records(st, res, err);
  return 1;
}

static int send_go(struct run_state *st, struct cb_error *err)
{
  ssize_t n;
  /* A socket, not a pipe: a child that died must not SIGPIPE the caller. */
  do
    n = send(st->go_w, "g", 1, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n != 1) {
    st->go_lost = true;
    return cb_error_errno(err, errno, "start the sandbox");
  }
  return 0;
}

/* Wait for the setup process's first record: its namespaces exist. */
static int wait_ready(struct run_state *st, struct runner_result *res, struct cb_error *err)
{
  while (!st->ready) {
    if (read_msgs(st, res, err) == 0 || st->failed) {
      if (!st->failed)
        cb_error_set(err, "the sandbox's setup process died");
      st->failed = true;
      return -1;
    }
  }
  return 0;
}

static long long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Relay output and records until the children are gone. */
static void main_loop(struct run_state *st, const struct runner_config *c,
                      struct runner_result *res, struct cb_error *err)
{
  bool out_open = true, msg_open = true;
  long long slirp_deadline = now_ms() + RUNNER_SLIRP_TIMEOUT_MS;
  char buf[65536];

  while (out_open || msg_open) {
    struct pollfd p[3];
    int n = 0, out_i = -1, msg_i = -1, slirp_i = -1, timeout = -1;
    if (out_open) {
      p[n] = (struct pollfd){ .fd = st->out_r, .events = POLLIN };
      out_i = n++;
    }
    if (msg_open) {
      p[n] = (struct pollfd){ .fd = st->msg_r, .events = POLLIN };
      msg_i = n++;
    }
    if (st->slirp.ready_fd >= 0) {
      p[n] = (struct pollfd){ .fd = st->slirp.ready_fd, .events = POLLIN };
      slirp_i = n++;
      timeout = (int)(slirp_deadline - now_ms());
      if (timeout < 0)
        timeout = 0;
    }
    if (poll(p, (nfds_t)n, timeout) < 0) {
      if (errno == EINTR)
        continue;
      if (!st->failed)
        cb_error_errno(err, errno, "poll");
      st->failed = true;
      break;
    }
    if (slirp_i >= 0 && (p[slirp_i].revents || now_ms() >= slirp_deadline)) {
      struct cb_error e;
      int rc = p[slirp_i].revents ? runner_slirp_ready(&st->slirp, &e)
                                  : cb_error_set(&e, "slirp4netns did not configure the "
                                                     "network in %d s",
                                                 RUNNER_SLIRP_TIMEOUT_MS / 1000);
      close(st->slirp.ready_fd);
      st->slirp.ready_fd = -1;
      /* An init that died first left slirp4netns no namespace: its own
       * reason, sent or still to come, beats slirp4netns's. */
      if (rc < 0 && !st->failed) {
        *err = e;
        st->go_lost = true;
      }
      if (rc < 0 || st->failed || send_go(st, err) < 0) {
        st->failed = true;
        /* The init waits for the go: closing the socket ends it. */
        close(st->go_w);
        st->go_w = -1;
      }
    }
    if (out_i >= 0 && p[out_i].revents) {
      ssize_t r = cb_read_retry(st->out_r, buf, sizeof(buf));
      if (r <= 0)
        out_open = false;
      else if (c->output)
        c->output(c->output_data, buf, (size_t)r);
    }
    if (msg_i >= 0 && p[msg_i].revents) {
      bool was_failed = st->failed;
      if (read_msgs(st, res, err) == 0)
        msg_open = false;
      /* A setup error: whatever runs already goes. */
      if (!was_failed && st->failed && st->init_pid > 0)
        kill(st->init_pid, SIGKILL);
    }
  }
}

/* Overlay leaves its own directories in the workdir ("work", mode 000, and
 * "index"): remove them, so that a rootless caller can remove the workdir. */
static void empty_workdir(const char *workdir)
{
  cleanup_close int fd = open(workdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  static const char *const names[] = { "work", "index" };
  if (fd < 0)
    return;
  for (size_t i = 0; i < CB_ARRAY_SIZE(names); i++) {
    struct stat st;
    if (fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
      continue;
    (void)fchmodat(fd, names[i], 0700, 0);
    (void)cb_remove_tree(fd, names[i]);
  }
}

/* ---- starting cbuild-sandbox ---- */

static pthread_once_t image_once = PTHREAD_ONCE_INIT;
static int image_fd = -1;
static struct cb_error image_err;

/* Copy the program to a sealed memfd, once per process. */
static void image_load(void)
{
  size_t len = (size_t)(runner_sandbox_image_end - runner_sandbox_image);
  int fd = memfd_create("cbuild-sandbox", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (fd < 0 && errno == EINVAL) /* a kernel before 6.3: MFD_EXEC is implied */
    fd = memfd_create("cbuild-sandbox", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    cb_error_errno(&image_err, errno, "load the sandbox program: memfd_create");
    return;
  }
  if (cb_write_all(fd, runner_sandbox_image, len) < 0 ||
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
    cb_error_errno(&image_err, errno, "load the sandbox program into a memfd");
    close(fd);
    return;
  }
  image_fd = fd;
}

/* What the child of clone() needs: it shares the caller's memory until it
 * execs, so it only makes system calls and writes err. */
struct spawn_args {
  int image_fd;
  int from[5];      /* descriptors for RUNNER_FD_CONFIG and the ones after */
  char *const *argv;
  char *const *envp;
  int err;          /* errno of the failed dup2 or execveat */
};

__attribute__((no_sanitize_address)) static int spawn_child(void *p)
{
  struct spawn_args *a = p;
  for (int i = 0; i < (int)CB_ARRAY_SIZE(a->from); i++)
    if (a->from[i] >= 0 && syscall(SYS_dup2, a->from[i], RUNNER_FD_CONFIG + i) < 0)
      goto fail;
  syscall(SYS_execveat, a->image_fd, "", a->argv, a->envp, AT_EMPTY_PATH);
fail:
  a->err = errno ? errno : ENOEXEC;
  syscall(SYS_exit, 127);
  return 127;
}

/*
 * Start cbuild-sandbox as the init of new namespaces, with the encoded
 * setup on RUNNER_FD_CONFIG and the setup's descriptors after it.  clone()
 * with CLONE_VM|CLONE_VFORK, as posix_spawn() does, but with namespace
 * flags: no address space is copied, the caller waits only for the exec,
 * and the init is PID 1 at once, with no process in between.  Every signal
 * stays blocked until the init has its own handlers.
 */
static int spawn_sandbox(struct run_state *st, const struct runner_config *c,
                         struct cb_error *err)
{
  cleanup_strbuf struct strbuf wire = STRBUF_INIT;
  cleanup_close int config = -1;
  char arg[] = RUNNER_SANDBOX_ARG, name[] = "cbuild-sandbox";
  char *argv[] = { name, arg, NULL };
  struct spawn_args a = { .argv = argv, .envp = environ };
  int flags = CLONE_VM | CLONE_VFORK | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
  int from[] = { -1, st->s.msgfd, st->s.gofd, st->s.outfd, st->s.netns_fd };
  size_t stack_size = 64 << 10;
  sigset_t all, old;
  void *stack;
  int rc = 0;

  pthread_once(&image_once, image_load);
  if (image_fd < 0) {
    *err = image_err;
    return -1;
  }
  a.image_fd = image_fd;
  if (st->s.new_userns) /* it makes its namespaces itself */
    flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
  else if (st->s.netns_fd < 0 && c->network != RUNNER_NET_HOST)
    flags |= CLONE_NEWNET;
  runner_wire_encode(&st->s, &wire);
  config = memfd_create("cbuild-sandbox-config", MFD_CLOEXEC);
  if (config < 0 || cb_write_all(config, wire.buf, wire.len) < 0 ||
      lseek(config, 0, SEEK_SET) < 0)
    return cb_error_errno(err, errno, "write the sandbox's configuration");
  from[0] = config;
  /* Above every target first, so that no dup2 overwrites a source. */
  for (size_t i = 0; i < CB_ARRAY_SIZE(from); i++) {
    a.from[i] = -1;
    if (from[i] >= 0 && (a.from[i] = fcntl(from[i], F_DUPFD_CLOEXEC, 16)) < 0)
      rc = errno;
  }
  stack = rc ? MAP_FAILED : mmap(NULL, stack_size, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (!rc && stack == MAP_FAILED)
    rc = errno;
  if (!rc) {
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    st->child_pid = clone(spawn_child, (char *)stack + stack_size, flags, &a);
    if (st->child_pid < 0)
      rc = errno;
    else if (a.err)
      rc = a.err; /* the child exited: the caller reaps it */
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stack, stack_size);
  }
  for (size_t i = 0; i < CB_ARRAY_SIZE(a.from); i++)
    if (a.from[i] >= 0)
      close(a.from[i]);
  if (rc == 0) {
    if (!st->s.new_userns)
      st->init_pid = st->child_pid;
    return 0;
  }
  if (st->child_pid > 0)
    while (waitpid(st->child_pid, NULL, 0) < 0 && errno == EINTR)
      ;
  st->child_pid = 0;
  return cb_error_errno(err, rc, "start the sandbox's init (cbuild-sandbox)");
}

/* The signals this process ignores, looked up once: the init restores
 * their defaults. */
static pthread_once_t ignored_once = PTHREAD_ONCE_INIT;
static uint64_t ignored_mask;

static void ignored_query(void)
{
  for (int sig = 1; sig <= 64; sig++) {
    struct runner_ksigaction old;
    if (syscall(SYS_rt_sigaction, sig, NULL, &old, sizeof(old.mask)) == 0 &&
        old.handler == SIG_IGN)
      ignored_mask |= UINT64_C(1) << (sig - 1);
  }
}

static uint64_t ignored_signals(void)
{
  pthread_once(&ignored_once, ignored_query);
  return ignored_mask;
}

static int check_config(const struct runner_config *c, struct cb_error *err)
{
  if (!c->argv || !c->argv[0] || !*c->argv[0])
    return cb_error_set(err, "no command to run");
  if (!c->upperdir || !c->workdir)
    return cb_error_set(err, "the sandbox needs an upperdir and a workdir");
  for (size_t i = 0; i < c->n_mounts; i++) {
    const struct runner_mount *m = &c->mounts[i];
    if (!m->target || m->target[0] != '/')
      return cb_error_set(err, "mount target \"%s\" is not an absolute path",
                          m->target ? m->target : "");
    if (m->type == RUNNER_MOUNT_BIND && (!m->source || !*m->source))
      return cb_error_set(err, "bind mount on \"%s\" has no source", m->target);
    if ((m->type == RUNNER_MOUNT_BIND || m->type == RUNNER_MOUNT_OVERLAY) &&
        !m->upperdir != !m->workdir)
      return cb_error_set(err, "mount on \"%s\" has an upperdir without a workdir, or the "
                               "reverse", m->target);
    if (m->type == RUNNER_MOUNT_FILE && m->data_len && !m->data)
      return cb_error_set(err, "file mount on \"%s\" has no data", m->target);
  }
  if (c->hostname && (strlen(c->hostname) > 64 || !*c->hostname))
    return cb_error_set(err, "invalid hostname \"%s\"", c->hostname);
  return 0;
}

int runner_run(const struct runner_config *c, struct runner_result *res, struct cb_error *err)
{
  struct run_state st;
  int out[2] = { -1, -1 }, msg[2] = { -1, -1 }, go[2] = { -1, -1 };
  int ret = -1;

  memset(res, 0, sizeof(*res));
  memset(&st, 0, sizeof(st));
  strbuf_init(&st.msgbuf, 0);
  st.slirp.ready_fd = st.slirp.exit_fd = -1;
  st.slirp.pid = -1;
  st.out_r = st.msg_r = st.go_w = -1;
  st.s.c = c;
  st.s.rootless = runner_rootless();
  st.s.new_userns = geteuid() != 0;
  /* a namespace of the caller's user namespace: not for a setup that
   * makes a user namespace of its own */
  st.s.netns_fd = !st.s.new_userns ? runner_netns_fd(c->netns, c->network) : -1;
  st.s.hostname = c->hostname && *c->hostname ? c->hostname : "cbuild";

  st.s.ignored_signals = ignored_signals();

  if (check_config(c, err) < 0)
    goto out;
  if (c->network == RUNNER_NET_DEFAULT && runner_slirp_check(err) < 0)
    goto out;
  if (!c->insecure && runner_seccomp_prepare(&st.s.seccomp, &st.s.seccomp_len, err) < 0)
    goto out;
  if (runner_statedir_prepare(&st.s, c->network, err) < 0)
    goto out;
  if (runner_cgroup_create(&st.cg, &c->limits, err) < 0)
    goto out;
  /* slirp4netns for this step alone, or nothing for the init to wait for */
  st.s.wait_network = c->network == RUNNER_NET_DEFAULT && st.s.netns_fd < 0;
  st.s.wait_setup = st.s.new_userns || st.cg.dirs.n > 0 || st.s.wait_network;
  if (pipe2(out, O_CLOEXEC) < 0 || pipe2(msg, O_CLOEXEC) < 0 ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, go) < 0) {
    cb_error_errno(err, errno, "pipe");
    goto out;
  }
  st.out_r = out[0];
  st.msg_r = msg[0];
  st.go_w = go[1];
  out[0] = msg[0] = go[1] = -1;
  st.s.outfd = out[1];
  st.s.msgfd = msg[1];
  st.s.gofd = go[0];

  /* the shared namespace's slirp4netns came up meanwhile, usually */
  if (st.s.netns_fd >= 0 && runner_netns_wait(c->netns, err) < 0)
    goto out;
  if (spawn_sandbox(&st, c, err) < 0)
    goto out;
  close(out[1]);
  close(msg[1]);
  close(go[0]);
  out[1] = msg[1] = go[0] = -1;

  if (st.s.wait_setup) {
    if (wait_ready(&st, res, err) < 0)
      goto wait;
    if (st.s.new_userns && runner_userns_map(st.child_pid, err) < 0)
      goto fail;
    if (runner_cgroup_add(&st.cg, st.child_pid, err) < 0)
      goto fail;
    if (st.s.wait_network &&
        runner_slirp_start(&st.slirp, st.child_pid, st.s.statedir, err) < 0)
      goto fail;
    if (send_go(&st, err) < 0)
      goto fail;
  }
  main_loop(&st, c, res, err);
  goto wait;

fail:
  st.failed = true;
wait:
  /* Closing the go socket makes a waiting child give up. */
  if (st.go_w >= 0) {
    close(st.go_w);
    st.go_w = -1;
  }
  if (st.failed) {
    if (st.init_pid > 0)
      kill(st.init_pid, SIGKILL);
    /* Drain, to learn the init's pid if it was just made. */
    while (st.msg_r >= 0 && read_msgs(&st, res, err) > 0)
      if (st.init_pid > 0)
        kill(st.init_pid, SIGKILL);
  }
  {
    int status;
    while (waitpid(st.child_pid, &status, 0) < 0 && errno == EINTR)
      ;
  }
  /* The mount namespace is gone, and the overlays with it. */
  empty_workdir(c->workdir);
  for (size_t i = 0; i < c->n_mounts; i++)
    if (c->mounts[i].workdir)
      empty_workdir(c->mounts[i].workdir);
  if (!st.failed && !st.have_status) {
    cb_error_set(err, "the sandbox's init died before the command ended");
    st.failed = true;
  }
  if (!st.failed) {
    if (WIFSIGNALED(st.status)) {
      res->signal = WTERMSIG(st.status);
      res->exit_status = 128 + res->signal;
    } else {
      res->exit_status = WEXITSTATUS(st.status);
    }
    if ((res->signal == SIGKILL || res->exit_status == 128 + SIGKILL) &&
        runner_cgroup_oom_kills(&st.cg) > 0)
      res->oom_killed = true;
    runner_stubs_finish(res, &st.stub_dirs, c->upperdir);
    ret = 0;
  }

out:
  runner_slirp_stop(&st.slirp);
  runner_cgroup_destroy(&st.cg);
  for (int i = 0; i < 2; i++) {
    if (out[i] >= 0)
      close(out[i]);
    if (msg[i] >= 0)
      close(msg[i]);
    if (go[i] >= 0)
      close(go[i]);
  }
  if (st.out_r >= 0)
    close(st.out_r);
  if (st.msg_r >= 0)
    close(st.msg_r);
  if (st.go_w >= 0)
    close(st.go_w);
  strvec_clear(&st.stub_dirs);
  strbuf_release(&st.msgbuf);
  if (ret < 0)
    strvec_clear(&res->mount_stubs);
  return ret;
}
