/*
 * Rootless: the user namespace's id maps, written from outside (the
 * caller) once the setup process has unshared it.  The caller becomes 0;
 * where newuidmap/newgidmap (setuid helpers from the uidmap package) and a
 * range in /etc/subuid and /etc/subgid exist, the range becomes 1..N, so
 * that images with several users work.  Otherwise only 0 exists, and
 * setgroups is denied as the kernel requires for an unprivileged gid_map.
 * CBUILD_NO_SUBUID=1 forces the single mapping (for tests).
 */
#include "runner-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

struct id_range {
  unsigned long start, count;
};

/* The first range of name (or of the numeric id) in file. */
static bool sub_range(const char *file, const char *name, unsigned long id, struct id_range *r)
{
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  struct cb_error e2;
  char idstr[24];
  snprintf(idstr, sizeof(idstr), "%lu", id);
  if (cb_read_file(file, &sb, &e2) < 0)
    return false;
  for (char *line = sb.buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
    char *c1, *c2, *end;
    nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    c1 = strchr(line, ':');
    c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
      continue;
    *c1 = '\0';
    if ((!name || strcmp(line, name) != 0) && strcmp(line, idstr) != 0)
      continue;
    r->start = strtoul(c1 + 1, &end, 10);
    if (end != c2)
      continue;
    r->count = strtoul(c2 + 1, &end, 10);
    if (r->count > 0)
      return true;
  }
  return false;
}

/* Run helper pid 0 id 1 1 start count; its stderr becomes the error. */
static int run_helper(const char *helper, pid_t pid, unsigned long id, const struct id_range *r,
                      struct cb_error *err)
{
  cleanup_free char *path = runner_find_program(helper);
  char a_pid[24], a_id[24], a_start[24], a_count[24];
  int pfd[2], status;
  cleanup_strbuf struct strbuf out = STRBUF_INIT;
  char buf[512];
  ssize_t n;
  pid_t child;

  if (!path)
    return cb_error_set(err, "\"%s\" is not installed", helper);
  snprintf(a_pid, sizeof(a_pid), "%ld", (long)pid);
  snprintf(a_id, sizeof(a_id), "%lu", id);
  snprintf(a_start, sizeof(a_start), "%lu", r->start);
  snprintf(a_count, sizeof(a_count), "%lu", r->count);
  if (pipe2(pfd, O_CLOEXEC) < 0)
    return cb_error_errno(err, errno, "pipe");
  child = fork();
  if (child == 0) {
    if (dup2(pfd[1], 1) < 0 || dup2(pfd[1], 2) < 0)
      _exit(127);
    execl(path, helper, a_pid, "0", a_id, "1", "1", a_start, a_count, (char *)NULL);
    _exit(127);
  }
  close(pfd[1]);
  if (child < 0) {
    close(pfd[0]);
    return cb_error_errno(err, errno, "fork");
  }
  while ((n = cb_read_retry(pfd[0], buf, sizeof(buf))) > 0)
    strbuf_add(&out, buf, (size_t)n);
  close(pfd[0]);
  while (waitpid(child, &status, 0) < 0 && errno == EINTR)
    ;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (out.len && out.buf[out.len - 1] == '\n')
      strbuf_setlen(&out, out.len - 1);
    return cb_error_set(err, "%s %s 0 %s 1 1 %s %s failed%s%s", helper, a_pid, a_id, a_start,
                        a_count, out.len ? ": " : "", out.buf);
  }
  return 0;
}

static int write_proc(pid_t pid, const char *file, const char *s, struct cb_error *err)
{
  cleanup_free char *path = xasprintf("/proc/%ld/%s", (long)pid, file);
  cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || cb_write_all(fd, s, strlen(s)) < 0)
    return cb_error_errno(err, errno, "write \"%s\" to \"%s\"", s, path);
  return 0;
}

int runner_userns_map(pid_t pid, struct cb_error *err)
{
  uid_t uid = geteuid();
  gid_t gid = getegid();
  const char *force = getenv("CBUILD_NO_SUBUID");
  struct passwd *pw = getpwuid(uid);
  const char *name = pw ? pw->pw_name : NULL;
  cleanup_free char *newuidmap = runner_find_program("newuidmap");
  cleanup_free char *newgidmap = runner_find_program("newgidmap");
  struct id_range ur, gr;
  char map[64];

  /* Both files are keyed by the user's name or uid. */
  if (!(force && *force && strcmp(force, "0") != 0) && newuidmap && newgidmap &&
      sub_range("/etc/subuid", name, uid, &ur) && sub_range("/etc/subgid", name, uid, &gr)) {
    if (run_helper("newuidmap", pid, uid, &ur, err) < 0 ||
        run_helper("newgidmap", pid, gid, &gr, err) < 0)
      return cb_error_wrap(err, "map the subordinate ids into the user namespace");
    return 0;
  }
  if (write_proc(pid, "setgroups", "deny", err) < 0)
    return -1;
  snprintf(map, sizeof(map), "0 %lu 1\n", (unsigned long)uid);
  if (write_proc(pid, "uid_map", map, err) < 0)
    return -1;
  snprintf(map, sizeof(map), "0 %lu 1\n", (unsigned long)gid);
  return write_proc(pid, "gid_map", map, err);
}

/*
 * The whole rootless build runs in one user namespace, as podman and
 * buildah do: there the caller is root, the subordinate ids are real ids,
 * so snapshots keep their owners and the layer differ reads the image's
 * ids.  The process unshares it itself; a helper forked just before
 * (still outside) writes the maps, which an unprivileged process cannot
 * do for itself beyond its own id.
 */
int runner_enter_userns(struct cb_error *err)
{
  pid_t self = getpid(), helper;
  int go[2], res[2], status;
  char buf[sizeof(err->msg)];
  ssize_t n;

  if (geteuid() == 0)
    return 0;
  if (pipe2(go, O_CLOEXEC) < 0)
    return cb_error_errno(err, errno, "enter a user namespace: pipe");
  if (pipe2(res, O_CLOEXEC) < 0) {
    close(go[0]);
    close(go[1]);
    return cb_error_errno(err, errno, "enter a user namespace: pipe");
  }
  fflush(NULL);
  helper = fork();
  if (helper == 0) {
    struct cb_error e;
    char c;
    close(go[1]);
    close(res[0]);
    if (cb_read_retry(go[0], &c, 1) != 1)
      _exit(1);
    if (runner_userns_map(self, &e) < 0) {
      (void)cb_write_all(res[1], e.msg, strlen(e.msg));
      _exit(1);
    }
    _exit(0);
  }
  close(go[0]);
  close(res[1]);
  if (helper < 0) {
    close(go[1]);
    close(res[0]);
    return cb_error_errno(err, errno, "enter a user namespace: fork");
  }
  if (unshare(CLONE_NEWUSER) < 0) {
    int e = errno;
    close(go[1]);
    close(res[0]);
    kill(helper, SIGKILL);
    while (waitpid(helper, &status, 0) < 0 && errno == EINTR)
      ;
    return cb_error_errno(err, e, "user namespaces are not available: unshare(CLONE_NEWUSER)");
  }
  (void)cb_write_all(go[1], "g", 1);
  close(go[1]);
  n = cb_read_retry(res[0], buf, sizeof(buf) - 1);
  close(res[0]);
  while (waitpid(helper, &status, 0) < 0 && errno == EINTR)
    ;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    buf[n > 0 ? n : 0] = '\0';
    return cb_error_set(err, "enter a user namespace: %s", n > 0 ? buf : "the id map helper failed");
  }
  /* The maps are written: become root there (the ids the process had
   * before now read as 0 anyway; this also sets the saved ids). */
  if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
    return cb_error_errno(err, errno, "enter a user namespace: become root in it");
  return 0;
}
