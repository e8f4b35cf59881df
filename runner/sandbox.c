/*
 * The sandbox's own processes (runner-internal.h): the init and the
 * command (and, for a caller that is not root at all, a setup process
 * before the init).  They run in cbuild-sandbox, a small statically linked
 * program that runner_run() starts as PID 1 of each step's namespaces
 * (sandbox-main.c), not in forks of cbuild: forking the builder, with its
 * libraries and heap, cost more than the rest of the step.
 */
#include "runner-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

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

int runner_net_lo_up(struct cb_error *err)
{
  cleanup_close int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr;
  if (fd < 0)
    return cb_error_errno(err, errno, "socket");
  memset(&ifr, 0, sizeof(ifr));
  memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
    return cb_error_errno(err, errno, "read the flags of \"lo\"");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
    return cb_error_errno(err, errno, "bring up \"lo\"");
  return 0;
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

  /* The init's handlers end with exec; the signals the caller ignored are
   * back to their defaults since the init's start. */
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

  if (runner_security_apply(s, u, &err) < 0)
    runner_child_fail(s, &err);
  e = exec_search((char *const *)c->argv, env->v);
  if (e < 0)
    cb_error_set(&err, "exec \"%s\": executable file not found in $PATH", c->argv[0]);
  else
    cb_error_errno(&err, e, "exec \"%s\"", c->argv[0]);
  runner_msg_send(s->msgfd, RUNNER_MSG_ERROR, err.msg, strlen(err.msg));
  _exit(127);
}

/* ---- the init: PID 1 of the step, cbuild-sandbox itself ---- */

static void noop_handler(int sig)
{
  (void)sig;
}

/*
 * A caller that is not root at all (new_userns) starts cbuild-sandbox in
 * no namespace: an exec in a user namespace whose maps are not yet written
 * would lose every capability.  It makes the user namespace and the others
 * itself, lets the caller write the maps, then forks: the child goes on as
 * the init, this process waits for it and exits.
 */
static void setup_userns(const struct runner_setup *s)
{
  int flags = CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
  int32_t p;
  pid_t init;

  if (s->c->network != RUNNER_NET_HOST)
    flags |= CLONE_NEWNET;
  if (unshare(CLONE_NEWUSER) < 0)
    fail_errno(s, errno, "user namespaces are not available: unshare(CLONE_NEWUSER)");
  if (unshare(flags) < 0)
    fail_errno(s, errno, "create the PID, UTS, IPC and network namespaces: unshare");
  runner_msg_send(s->msgfd, RUNNER_MSG_READY, NULL, 0);
  wait_go(s);
  init = fork();
  if (init < 0)
    fail_errno(s, errno, "fork the init");
  if (init == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    return;
  }
  p = init;
  runner_msg_send(s->msgfd, RUNNER_MSG_INIT_PID, &p, sizeof(p));
  close(s->msgfd);
  close(s->outfd);
  close(s->gofd);
  while (waitpid(init, NULL, 0) < 0 && errno == EINTR)
    ;
  _exit(0);
}

void runner_sandbox_main(struct runner_setup *s)
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
  /* An ignored signal would stay ignored across exec, in the command too
   * (an ignored SIGPIPE, say): back to the default.  Started with every
   * signal blocked (run.c), so that nothing of the caller's ran before. */
  for (int sig = 1; sig <= 64; sig++)
    if (s->ignored_signals & (UINT64_C(1) << (sig - 1))) {
      struct runner_ksigaction dfl = { .handler = SIG_DFL };
      (void)syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
    }
  sigemptyset(&mask);
  sigprocmask(SIG_SETMASK, &mask, NULL);
  /* The sandbox's processes hold nothing of the caller's but its stdio. */
  {
    int keep[4] = { s->msgfd, s->gofd, s->outfd, s->netns_fd };
    close_other_fds(keep, s->netns_fd >= 0 ? 4 : 3);
  }
  if (s->new_userns) {
    setup_userns(s);
  } else {
    if (s->netns_fd >= 0) {
      if (setns(s->netns_fd, CLONE_NEWNET) < 0)
        fail_errno(s, errno, "join the build's network namespace: setns");
      close(s->netns_fd);
    }
    if (s->wait_setup) {
      runner_msg_send(s->msgfd, RUNNER_MSG_READY, NULL, 0);
      /* The caller puts us in the cgroup meanwhile; no byte means it gave
       * up or died. */
      wait_go(s);
    }
  }

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
  if (s->wait_network)
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

  /* vfork: the init is single-threaded and waits while the child, in its
   * memory, drops privileges and execs (credentials, signal handlers, the
   * descriptor table and seccomp are the child's own); no page is copied. */
  child = vfork();
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
