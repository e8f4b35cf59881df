/*
 * The step's network.  By default, as with docker build, a RUN step has
 * outbound network from a namespace of its own: slirp4netns, a user-mode
 * TCP/IP stack, gives it tap0 (10.0.2.100/24), a default route through
 * 10.0.2.2 (which also reaches the host's loopback) and DNS at 10.0.2.3,
 * the same rootful and rootless, without showing it the host's interfaces.
 * --network=none keeps only lo; --network=host shares the host's namespace.
 */
#include "runner-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLIRP "slirp4netns"
#define SLIRP_ADDR "10.0.2.100"
#define SLIRP_DNS "10.0.2.3"

int runner_net_write_etc(const char *dir, enum runner_network net, const char *hostname,
                         struct cb_error *err)
{
  cleanup_strbuf struct strbuf hosts = STRBUF_INIT;
  cleanup_strbuf struct strbuf resolv = STRBUF_INIT;
  cleanup_strbuf struct strbuf host_resolv = STRBUF_INIT;
  cleanup_free char *p_hosts = xasprintf("%s/hosts", dir);
  cleanup_free char *p_resolv = xasprintf("%s/resolv.conf", dir);
  cleanup_free char *p_hostname = xasprintf("%s/hostname", dir);
  cleanup_free char *name = xasprintf("%s\n", hostname);
  struct cb_error e2;

  strbuf_addf(&hosts, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                      "%s\t%s\n",
              net == RUNNER_NET_DEFAULT ? SLIRP_ADDR : "127.0.1.1", hostname);

  if (cb_read_file("/etc/resolv.conf", &host_resolv, &e2) < 0)
    strbuf_reset(&host_resolv);
  if (net == RUNNER_NET_HOST) {
    strbuf_add(&resolv, host_resolv.buf, host_resolv.len);
  } else {
    /* The host's search domains and options; its nameservers are the
     * host's business (often 127.0.0.53, unreachable from here). */
    if (net == RUNNER_NET_DEFAULT)
      strbuf_addstr(&resolv, "nameserver " SLIRP_DNS "\n");
    for (char *line = host_resolv.buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
      nl = strchr(line, '\n');
      if (cb_starts_with(line, "search") || cb_starts_with(line, "domain") ||
          cb_starts_with(line, "options")) {
        strbuf_add(&resolv, line, nl ? (size_t)(nl - line) : strlen(line));
        strbuf_addch(&resolv, '\n');
      }
    }
  }
  if (runner_write_file(p_hosts, hosts.buf, err) < 0 ||
      runner_write_file(p_resolv, resolv.buf, err) < 0 ||
      runner_write_file(p_hostname, name, err) < 0)
    return -1;
  return 0;
}

static int missing_slirp(struct cb_error *err)
{
  return cb_error_set(err, "RUN's default network needs \"" SLIRP "\", which is not "
                           "installed (install the slirp4netns package, or choose "
                           "--network=none or --network=host)");
}

int runner_slirp_check(struct cb_error *err)
{
  cleanup_free char *path = runner_find_program(SLIRP);
  return path ? 0 : missing_slirp(err);
}

int runner_slirp_start(struct runner_slirp *sl, pid_t pid, const char *dir,
                       struct cb_error *err)
{
  cleanup_free char *path = runner_find_program(SLIRP);
  cleanup_close int logfd = -1;
  cleanup_close int nullfd = -1;
  int ready[2], exitp[2];
  char pidstr[24];

  if (!path)
    return missing_slirp(err);
  sl->log = xasprintf("%s/slirp4netns-%ld.log", dir, (long)pid);
  logfd = open(sl->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (logfd < 0 || nullfd < 0)
    return cb_error_errno(err, errno, "open \"%s\"", sl->log);
  if (pipe2(ready, O_CLOEXEC) < 0)
    return cb_error_errno(err, errno, "pipe");
  if (pipe2(exitp, O_CLOEXEC) < 0) {
    close(ready[0]);
    close(ready[1]);
    return cb_error_errno(err, errno, "pipe");
  }
  snprintf(pidstr, sizeof(pidstr), "%ld", (long)pid);

  sl->pid = fork();
  if (sl->pid == 0) {
    /* Out of the way of 0-4 first, then into place. */
    int r = fcntl(ready[1], F_DUPFD, 10), x = fcntl(exitp[0], F_DUPFD, 10);
    if (r < 0 || x < 0 || dup2(nullfd, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 ||
        dup2(r, 3) < 0 || dup2(x, 4) < 0)
      _exit(127);
    syscall(SYS_close_range, 5U, ~0U, 0U);
    execl(path, SLIRP, "--configure", "--mtu=65520", "--ready-fd=3", "--exit-fd=4",
          "--enable-sandbox", "--enable-seccomp", pidstr, "tap0", (char *)NULL);
    _exit(127);
  }
  close(ready[1]);
  close(exitp[0]);
  if (sl->pid < 0) {
    close(ready[0]);
    close(exitp[1]);
    return cb_error_errno(err, errno, "fork");
  }
  sl->ready_fd = ready[0];
  sl->exit_fd = exitp[1];
  return 0;
}

int runner_slirp_ready(struct runner_slirp *sl, struct cb_error *err)
{
  char b;
  cleanup_strbuf struct strbuf log = STRBUF_INIT;
  cleanup_strbuf struct strbuf why = STRBUF_INIT;
  struct cb_error e2;
  if (cb_read_retry(sl->ready_fd, &b, 1) == 1)
    return 0;
  /* Its complaints, less the chatter, on one line. */
  if (cb_read_file(sl->log, &log, &e2) == 0) {
    for (char *line = log.buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
      nl = strchr(line, '\n');
      if (nl)
        *nl = '\0';
      if (!*line || cb_starts_with(line, "WARNING:") || cb_starts_with(line, "sent tapfd") ||
          cb_starts_with(line, "received tapfd"))
        continue;
      strbuf_addf(&why, "%s%s", why.len ? "; " : ": ", line);
    }
  }
  return cb_error_set(err, SLIRP " could not set up RUN's network%s (to build without it, "
                           "choose --network=none or --network=host)",
                      why.buf);
}

void runner_slirp_stop(struct runner_slirp *sl)
{
  if (sl->pid > 0) {
    int status;
    kill(sl->pid, SIGKILL);
    /* Its exit takes tap0 down, which costs the kernel some 20 ms of RCU
     * grace periods.  Waited for here rather than by a thread: a thread
     * that exits while the caller forks a sandbox can leave the child a
     * lock held forever (a build shares one slirp4netns across its steps,
     * so this happens once per build). */
    while (waitpid(sl->pid, &status, 0) < 0 && errno == EINTR)
      ;
    sl->pid = -1;
  }
  if (sl->ready_fd >= 0)
    close(sl->ready_fd);
  if (sl->exit_fd >= 0)
    close(sl->exit_fd);
  sl->ready_fd = sl->exit_fd = -1;
  if (sl->log)
    unlink(sl->log);
  free(sl->log);
  sl->log = NULL;
}

/* ---- a network namespace shared by steps ---- */

struct runner_netns {
  enum runner_network kind; /* DEFAULT: with slirp4netns; NONE: lo only */
  int fd;                  /* the namespace: open, it stays */
  struct runner_slirp slirp;
  char *tmpdir;            /* slirp4netns's log */
  /* Until runner_netns_wait: the process holding the namespace for
   * slirp4netns to join, and the pipe that lets it go. */
  pid_t holder;
  int holder_done;
  bool stopped;            /* runner_netns_stop: its exit is not waited for */
  pthread_mutex_t lock;    /* runner_netns_wait may be called by threads */
  int state;               /* 0 started, 1 ready, -1 failed (failure) */
  struct cb_error failure;
};

/* Let the holder go and reap it. */
static void holder_release(struct runner_netns *n)
{
  int status;
  if (n->holder_done >= 0)
    close(n->holder_done);
  n->holder_done = -1;
  if (n->holder > 0)
    while (waitpid(n->holder, &status, 0) < 0 && errno == EINTR)
      ;
  n->holder = -1;
}

void runner_netns_free(struct runner_netns *n)
{
  if (n == NULL)
    return;
  /* stopped by a caller about to exit: reaped now if it is done, else by
   * init after us (its exit, a mount namespace of its own to take down,
   * takes ~15 ms here) */
  if (n->stopped && n->slirp.pid > 0) {
    (void)waitpid(n->slirp.pid, NULL, WNOHANG);
    n->slirp.pid = -1;
  }
  runner_slirp_stop(&n->slirp);
  holder_release(n);
  pthread_mutex_destroy(&n->lock);
  if (n->fd >= 0)
    close(n->fd);
  if (n->tmpdir) {
    rmdir(n->tmpdir);
    free(n->tmpdir);
  }
  free(n);
}

void runner_netns_stop(struct runner_netns *n)
{
  if (n == NULL || n->stopped)
    return;
  n->stopped = true;
  /* The last reference to the namespace: the kernel takes it down, tap0
   * with it, in a worker of its own, rather than in slirp4netns's exit. */
  if (n->fd >= 0)
    close(n->fd);
  n->fd = -1;
  if (n->slirp.pid > 0)
    kill(n->slirp.pid, SIGKILL);
}

int runner_netns_fd(const struct runner_netns *n, enum runner_network kind)
{
  return n && n->kind == kind ? n->fd : -1;
}

/* A process that makes the namespace and stays in it until told. */
static pid_t holder_start(int *ready_r, int *done_w, struct cb_error *err)
{
  int ready[2], done[2];
  pid_t pid;
  if (pipe2(ready, O_CLOEXEC) < 0)
    return cb_error_errno(err, errno, "pipe");
  if (pipe2(done, O_CLOEXEC) < 0) {
    close(ready[0]);
    close(ready[1]);
    return cb_error_errno(err, errno, "pipe");
  }
  pid = fork();
  if (pid == 0) {
    struct cb_error e;
    char c = 'r';
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(ready[0]);
    close(done[1]);
    if (unshare(CLONE_NEWNET) < 0 || runner_net_lo_up(&e) < 0)
      c = 'x';
    if (cb_write_all(ready[1], &c, 1) < 0)
      _exit(1);
    /* until the caller has what it needs from /proc/PID */
    (void)cb_read_retry(done[0], &c, 1);
    _exit(0);
  }
  close(ready[1]);
  close(done[0]);
  if (pid < 0) {
    close(ready[0]);
    close(done[1]);
    return cb_error_errno(err, errno, "fork");
  }
  *ready_r = ready[0];
  *done_w = done[1];
  return pid;
}

int runner_netns_start(struct runner_netns **out, enum runner_network kind,
                       struct cb_error *err)
{
  struct runner_netns *n = xcalloc(1, sizeof(*n));
  const char *base = getenv("TMPDIR");
  int ready = -1;
  char c = 0;

  if (kind != RUNNER_NET_DEFAULT && kind != RUNNER_NET_NONE)
    cb_die("runner_netns_start: a namespace is shared for the default network or none");
  *out = NULL;
  /* not root: each step makes its namespace in a user namespace of its own
   * (runner_run), where one made here could not be joined */
  if (geteuid() != 0) {
    free(n);
    return 0;
  }
  n->kind = kind;
  n->fd = -1;
  n->slirp.pid = -1;
  n->slirp.ready_fd = n->slirp.exit_fd = -1;
  n->holder = -1;
  n->holder_done = -1;
  pthread_mutex_init(&n->lock, NULL);
  if (kind == RUNNER_NET_DEFAULT && runner_slirp_check(err) < 0)
    goto fail;
  n->tmpdir = kind == RUNNER_NET_DEFAULT
                ? xasprintf("%s/cbuild-net.XXXXXX", base && *base ? base : "/tmp")
                : NULL;
  if (n->tmpdir && mkdtemp(n->tmpdir) == NULL) {
    cb_error_errno(err, errno, "create \"%s\"", n->tmpdir);
    free(n->tmpdir);
    n->tmpdir = NULL;
    goto fail;
  }
  n->holder = holder_start(&ready, &n->holder_done, err);
  if (n->holder < 0)
    goto fail;
  if (cb_read_retry(ready, &c, 1) != 1 || c != 'r') {
    cb_error_set(err, "create a network namespace for RUN: unshare(CLONE_NEWNET) failed");
    goto fail;
  }
  {
    cleanup_free char *path = xasprintf("/proc/%ld/ns/net", (long)n->holder);
    n->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (n->fd < 0) {
      cb_error_errno(err, errno, "open \"%s\"", path);
      goto fail;
    }
  }
  if (kind == RUNNER_NET_NONE) {
    /* lo, up: ready as it is */
    holder_release(n);
    n->state = 1;
  } else if (runner_slirp_start(&n->slirp, n->holder, n->tmpdir, err) < 0) {
    goto fail;
  }
  close(ready);
  *out = n;
  return 0;
fail:
  if (ready >= 0)
    close(ready);
  runner_netns_free(n);
  return -1;
}

int runner_netns_wait(struct runner_netns *n, struct cb_error *err)
{
  struct pollfd p = { .fd = n->slirp.ready_fd, .events = POLLIN };
  int r;
  pthread_mutex_lock(&n->lock);
  if (n->state == 0) {
    while ((r = poll(&p, 1, RUNNER_SLIRP_TIMEOUT_MS)) < 0 && errno == EINTR)
      ;
    if (r == 0)
      r = cb_error_set(&n->failure, "slirp4netns did not configure the network within %d s",
                       RUNNER_SLIRP_TIMEOUT_MS / 1000);
    else
      r = runner_slirp_ready(&n->slirp, &n->failure);
    holder_release(n);
    n->state = r < 0 ? -1 : 1;
  }
  /* a failure stays: every later step gets it too */
  r = n->state < 0 ? -1 : 0;
  if (r < 0)
    *err = n->failure;
  pthread_mutex_unlock(&n->lock);
  return r;
}
