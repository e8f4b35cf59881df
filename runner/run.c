/*
 * One RUN step from start to end: the processes of runner-internal.h, the
 * pipes and the socket between them, the init that reaps and forwards signals, and the
 * cleanup that leaves no mount, process, cgroup or temp dir behind.
 *
 * fork() rather than clone() with namespace flags: glibc's fork keeps
 * malloc usable in the child of a threaded caller, and AddressSanitizer
 * follows it; the PID namespace then needs one more fork (the init).
 */
#include "runner-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif


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

void runner_msg_send(int fd, enum runner_msg_type type, const void *data, size_t len)
{
  char buf[4096 + 8];
  uint32_t n;
  if (len > sizeof(buf) - 5)
    len = sizeof(buf) - 5;
  n = (uint32_t)len;
  buf[0] = (char)type;
  memcpy(buf + 1, &n, 4);
  if (len)
    memcpy(buf + 5, data, len);
  /* Nothing to do on failure: the caller is gone and kills us anyway. */
  (void)cb_write_all(fd, buf, len + 5);
}

void runner_child_fail(const struct runner_setup *s, const struct cb_error *err)
{
  runner_msg_send(s->msgfd, RUNNER_MSG_ERROR, err->msg, strlen(err->msg));
  _exit(1);
}

static void fail_errno(const struct runner_setup *s, int e, const char *what)
{
  struct cb_error err;
  cb_error_errno(&err, e, "%s", what);
  runner_child_fail(s, &err);
}

/* Wait for one byte from the caller; its absence means "give up". */
static void wait_go(const struct runner_setup *s)
{
  char b;
  if (cb_read_retry(s->gofd, &b, 1) != 1)
    _exit(1);
}

/* Close every descriptor from 3 up but the n in keep. */
static void close_other_fds(int *keep, size_t n)
{
  unsigned lo = 3;
  /* keep is tiny: sort it in place */
  for (size_t i = 1; i < n; i++)
    for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
      int t = keep[j];
      keep[j] = keep[j - 1];
      keep[j - 1] = t;
    }
  for (size_t i = 0; i <= n; i++) {
    unsigned hi = i < n ? (unsigned)keep[i] : ~0U;
    if (i < n && keep[i] < 3)
      continue;
    if (hi > lo && syscall(SYS_close_range, lo, hi - 1, 0U) < 0)
      for (unsigned fd = lo; fd < hi && fd < 4096; fd++)
        close((int)fd);
    lo = hi + 1;
    if (hi == ~0U)
      break;
  }
}

static void mark_fds_cloexec(void)
{
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
    return;
  for (int fd = 3; fd < 4096; fd++) {
    int fl = fcntl(fd, F_GETFD);
    if (fl >= 0 && !(fl & FD_CLOEXEC))
      fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
  }
}

/* ---- the command ---- */

/* The signals the init hands on to the command. */
static const int forwarded[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2,
                                 SIGWINCH, SIGCONT, SIGALRM };

static int exec_search(char *const argv[], char *const envp[])
{
  const char *path = NULL;
  cleanup_free char *copy = NULL;
  char *save = NULL;
  int last = ENOENT;
  if (strchr(argv[0], '/')) {
    execve(argv[0], argv, envp);
    return errno;
  }
  for (char *const *e = envp; *e; e++)
    if (cb_starts_with(*e, "PATH="))
      path = *e + 5;
  if (!path)
    path = "";
  copy = xstrdup(path);
  for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
    cleanup_free char *full = xasprintf("%s/%s", *dir ? dir : ".", argv[0]);
    execve(full, argv, envp);
    if (errno != ENOENT && errno != ENOTDIR)
      last = errno;
    if (errno != ENOENT && errno != ENOTDIR && errno != EACCES)
      return errno;
  }
  return last == ENOENT ? -1 : last;
}

CB_NORETURN static void command_main(const struct runner_setup *s, const struct runner_user *u,
                                     struct strvec *env, const char *cwd)
{
  const struct runner_config *c = s->c;
  struct cb_error err;
  sigset_t all;
  int nullfd, e;

  /* The caller's dispositions (an ignored SIGPIPE, say) would survive exec. */
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      signal(sig, SIG_DFL);
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, NULL);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  setsid();

  nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (nullfd < 0)
    fail_errno(s, errno, "open \"/dev/null\" in the sandbox");
  if (dup2(nullfd, 0) < 0 || dup2(s->outfd, 1) < 0 || dup2(s->outfd, 2) < 0)
    fail_errno(s, errno, "set up the command's stdin, stdout and stderr");
  if (chdir(cwd) < 0) {
    cb_error_errno(&err, errno, "chdir to \"%s\"", cwd);
    runner_child_fail(s, &err);
  }
  umask(022);
  /* Nothing of the builder's may reach the command. */
  mark_fds_cloexec();

  if (runner_security_apply(c, u, &err) < 0)
    runner_child_fail(s, &err);
  e = exec_search((char *const *)c->argv, env->v);
  if (e < 0)
    cb_error_set(&err, "exec \"%s\": executable file not found in $PATH", c->argv[0]);
  else
    cb_error_errno(&err, e, "exec \"%s\"", c->argv[0]);
  runner_msg_send(s->msgfd, RUNNER_MSG_ERROR, err.msg, strlen(err.msg));
  _exit(127);
}

/* ---- the init: PID 1 of the step ---- */

static void noop_handler(int sig)
{
  (void)sig;
}

CB_NORETURN static void init_main(const struct runner_setup *s)
{
  const struct runner_config *c = s->c;
  struct runner_user user;
  struct strvec env = STRVEC_INIT;
  struct cb_error err;
  struct sigaction sa;
  const char *cwd = c->cwd && *c->cwd ? c->cwd : "/";
  sigset_t mask;
  pid_t child;

  prctl(PR_SET_PDEATHSIG, SIGKILL);
  prctl(PR_SET_NAME, "cbuild-init", 0, 0, 0);
  umask(0);
  if (runner_mounts_setup(s, &err) < 0)
    runner_child_fail(s, &err);
  if (sethostname(s->hostname, strlen(s->hostname)) < 0)
    fail_errno(s, errno, "set the hostname");
  if (c->network != RUNNER_NET_HOST && runner_net_lo_up(&err) < 0)
    runner_child_fail(s, &err);

  /* Inside the new root now: the image's own files. */
  memset(&user, 0, sizeof(user));
  if (runner_user_resolve(c->user ? c->user : "", "/etc/passwd", "/etc/group", &user, &err) < 0) {
    cb_error_wrap(&err, "USER \"%s\"", c->user ? c->user : "");
    runner_child_fail(s, &err);
  }
  if (runner_mkdir_p(cwd, &err) < 0) {
    cb_error_wrap(&err, "create the working directory");
    runner_child_fail(s, &err);
  }
  runner_env_build(c, s->hostname, &user, &env);

  /* The network is ready (slirp4netns configured it) when this comes. */
  wait_go(s);

  /* PID 1 ignores signals it has no handler for, so it installs no-ops and
   * picks the signals up synchronously. */
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = noop_handler;
  sigemptyset(&mask);
  for (size_t i = 0; i < CB_ARRAY_SIZE(forwarded); i++) {
    sigaction(forwarded[i], &sa, NULL);
    sigaddset(&mask, forwarded[i]);
  }
  sigaction(SIGCHLD, &sa, NULL);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, NULL);

  child = fork();
  if (child < 0)
    fail_errno(s, errno, "fork the command");
  if (child == 0)
    command_main(s, &user, &env, cwd);

  close(s->outfd);
  close(s->gofd);
  if (runner_security_init_caps(&err) < 0) {
    kill(child, SIGKILL);
    runner_child_fail(s, &err);
  }
  prctl(PR_SET_DUMPABLE, 0);

  for (;;) {
    siginfo_t si;
    int sig = sigwaitinfo(&mask, &si);
    if (sig < 0)
      continue;
    if (sig != SIGCHLD) {
      kill(child, sig);
      continue;
    }
    for (;;) {
      int status;
      pid_t p = waitpid(-1, &status, WNOHANG);
      if (p <= 0)
        break;
      if (p == child) {
        int32_t st = status;
        runner_msg_send(s->msgfd, RUNNER_MSG_STATUS, &st, sizeof(st));
        /* Everything else in the PID namespace dies with us. */
        _exit(0);
      }
    }
  }
}

/* ---- the setup process: namespaces, then the init ---- */

CB_NORETURN static void setup_main(struct runner_setup *s, pid_t caller)
{
  const struct runner_config *c = s->c;
  int flags = CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
  pid_t init;
  int status;

  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != caller)
    _exit(1);
  /* The sandbox's processes hold nothing of the caller's but its stdio. */
  {
    int keep[4] = { s->msgfd, s->gofd, s->outfd, s->netns_fd };
    close_other_fds(keep, s->netns_fd >= 0 ? 4 : 3);
  }

  if (s->new_userns && unshare(CLONE_NEWUSER) < 0)
    fail_errno(s, errno, "user namespaces are not available: unshare(CLONE_NEWUSER)");
  if (s->netns_fd >= 0) {
    if (setns(s->netns_fd, CLONE_NEWNET) < 0)
      fail_errno(s, errno, "join the build's network namespace: setns");
    close(s->netns_fd);
  } else if (c->network != RUNNER_NET_HOST) {
    flags |= CLONE_NEWNET;
  }
  if (unshare(flags) < 0)
    fail_errno(s, errno, "create the PID, UTS, IPC and network namespaces: unshare");
  runner_msg_send(s->msgfd, RUNNER_MSG_READY, NULL, 0);
  /* The caller writes the id maps and puts us in the cgroup meanwhile. */
  wait_go(s);

  init = fork();
  if (init < 0)
    fail_errno(s, errno, "fork the init");
  if (init == 0)
    init_main(s);
  {
    int32_t p = init;
    runner_msg_send(s->msgfd, RUNNER_MSG_INIT_PID, &p, sizeof(p));
  }
  close(s->msgfd);
  close(s->outfd);
  close(s->gofd);
  while (waitpid(init, &status, 0) < 0 && errno == EINTR)
    ;
  _exit(0);
}

/* ---- the caller ---- */

struct run_state {
  struct runner_setup s;
  struct runner_cgroup cg;
  struct runner_slirp slirp;
  struct strvec stub_dirs;
  int out_r, msg_r, go_w;
  pid_t setup_pid, init_pid;
  bool ready, have_status, failed;
  bool go_lost; /* the go could not be sent: a child died, and says why */
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
      int rc = p[slirp_i].revents ? runner_slirp_ready(&st->slirp, err)
                                  : cb_error_set(err, "slirp4netns did not configure the "
                                                      "network in %d s",
                                                 RUNNER_SLIRP_TIMEOUT_MS / 1000);
      close(st->slirp.ready_fd);
      st->slirp.ready_fd = -1;
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

static int make_tmpdir(struct run_state *st, const struct runner_config *c, struct cb_error *err)
{
  const char *base = getenv("TMPDIR");
  if (!base || !*base)
    base = "/tmp";
  st->s.tmpdir = xasprintf("%s/cbuild-run-XXXXXX", base);
  if (!mkdtemp(st->s.tmpdir)) {
    int e = errno;
    free(st->s.tmpdir);
    st->s.tmpdir = NULL;
    return cb_error_errno(err, e, "create a temporary directory in \"%s\"", base);
  }
  st->s.rootdir = xasprintf("%s/root", st->s.tmpdir);
  if (mkdir(st->s.rootdir, 0755) < 0)
    return cb_error_errno(err, errno, "create \"%s\"", st->s.rootdir);
  /* Stands in for missing lower directories (overlay.c). */
  {
    cleanup_free char *empty = xasprintf("%s/empty", st->s.tmpdir);
    if (mkdir(empty, 0755) < 0)
      return cb_error_errno(err, errno, "create \"%s\"", empty);
  }
  return runner_net_write_etc(st->s.tmpdir, c->network, st->s.hostname, err);
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
  st.s.netns_fd = c->network == RUNNER_NET_DEFAULT && !st.s.new_userns ? runner_netns_fd(c->netns)
                                                                        : -1;
  st.s.hostname = c->hostname && *c->hostname ? c->hostname : "cbuild";

  if (check_config(c, err) < 0)
    goto out;
  if (c->network == RUNNER_NET_DEFAULT && runner_slirp_check(err) < 0)
    goto out;
  if (!c->insecure && runner_seccomp_prepare(err) < 0)
    goto out;
  if (make_tmpdir(&st, c, err) < 0)
    goto out;
  if (runner_cgroup_create(&st.cg, &c->limits, err) < 0)
    goto out;
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

  {
    pid_t caller = getpid();
    fflush(NULL);
    st.setup_pid = fork();
    if (st.setup_pid < 0) {
      cb_error_errno(err, errno, "fork");
      goto out;
    }
    if (st.setup_pid == 0)
      setup_main(&st.s, caller);
  }
  close(out[1]);
  close(msg[1]);
  close(go[0]);
  out[1] = msg[1] = go[0] = -1;

  if (wait_ready(&st, res, err) < 0)
    goto wait;
  if (st.s.new_userns && runner_userns_map(st.setup_pid, err) < 0)
    goto fail;
  if (runner_cgroup_add(&st.cg, st.setup_pid, err) < 0)
    goto fail;
  if (c->network == RUNNER_NET_DEFAULT && st.s.netns_fd < 0 &&
      runner_slirp_start(&st.slirp, st.setup_pid, st.s.tmpdir, err) < 0)
    goto fail;
  if (send_go(&st, err) < 0)
    goto fail;
  /* Without slirp4netns the init need not wait for the network. */
  if ((c->network != RUNNER_NET_DEFAULT || st.s.netns_fd >= 0) && send_go(&st, err) < 0)
    goto fail;
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
    while (waitpid(st.setup_pid, &status, 0) < 0 && errno == EINTR)
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
  if (st.s.tmpdir)
    cb_remove_tree(AT_FDCWD, st.s.tmpdir);
  free(st.s.tmpdir);
  free(st.s.rootdir);
  strvec_clear(&st.stub_dirs);
  strbuf_release(&st.msgbuf);
  if (ret < 0)
    strvec_clear(&res->mount_stubs);
  return ret;
}
