/*
 * The step's root: overlayfs over the image's snapshots; and the same for
 * the overlays of RUN --mount (a stage's snapshots, a throwaway layer over
 * a bind's source).
 *
 * mount(2) takes its options in one page, so a long chain of layers does
 * not fit as "lowerdir=/long/path:/long/path:...".  The new mount API
 * (Linux 6.8 and later) takes each layer on its own ("lowerdir+"); where it
 * is missing, each layer is opened here and named by its descriptor,
 * relative to /proc/self/fd, which keeps every name to a few bytes.
 */
#include "runner-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

bool runner_use_mount_api(void)
{
  const char *e = getenv("CBUILD_NO_MOUNT_API");
  return !(e && *e && strcmp(e, "0") != 0);
}

/* The kernel's explanation of a failed fsconfig ("e overlay: ..."), the
 * last one if it left several. */
static void fs_log(int fsfd, struct strbuf *log)
{
  char buf[512];
  ssize_t n;
  while ((n = read(fsfd, buf, sizeof(buf) - 1)) > 0) {
    buf[n] = '\0';
    if (n > 2 && buf[1] == ' ') {
      strbuf_reset(log);
      strbuf_addstr(log, buf + 2);
    }
  }
}

static int overlay_error(const struct runner_setup *s, const struct runner_overlay *o, int e,
                         const char *how, const char *log, struct cb_error *err)
{
  if (s->rootless && (e == EPERM || e == EINVAL || e == ENODEV))
    cb_error_errno(err, e, "overlayfs in a user namespace is not available: %s%s%s", how,
                   log && *log ? ": " : "", log ? log : "");
  else if (e == ENODEV)
    cb_error_errno(err, e, "overlayfs is not available: %s", how);
  else
    cb_error_errno(err, e, "mount the overlay on \"%s\": %s%s%s", o->mountpoint, how,
                   log && *log ? ": " : "", log ? log : "");
  return -1;
}

/* Returns 1 when the kernel lacks what this needs, so the caller falls back. */
static int overlay_mount_api(const struct runner_setup *s, const struct runner_overlay *o,
                             struct cb_error *err)
{
  cleanup_strbuf struct strbuf log = STRBUF_INIT;
  cleanup_close int fsfd = -1;
  cleanup_close int mfd = -1;

  fsfd = fsopen("overlay", FSOPEN_CLOEXEC);
  if (fsfd < 0) {
    if (errno == ENOSYS)
      return 1;
    return overlay_error(s, o, errno, "fsopen", NULL, err);
  }
  for (size_t i = 0; i < o->n_lowerdirs; i++) {
    const char *dir = o->lowerdirs[i];
    if (fsconfig(fsfd, FSCONFIG_SET_STRING, "lowerdir+", dir, 0) < 0) {
      int e = errno;
      fs_log(fsfd, &log);
      if (i == 0 && e == EINVAL && strstr(log.buf, "lowerdir+"))
        return 1; /* before Linux 6.8 */
      {
        cleanup_free char *how = xasprintf("lower directory \"%s\"", dir);
        return overlay_error(s, o, e, how, log.buf, err);
      }
    }
  }
  if (o->upperdir && (fsconfig(fsfd, FSCONFIG_SET_STRING, "upperdir", o->upperdir, 0) < 0 ||
                      fsconfig(fsfd, FSCONFIG_SET_STRING, "workdir", o->workdir, 0) < 0)) {
    int e = errno;
    fs_log(fsfd, &log);
    return overlay_error(s, o, e, "upperdir or workdir", log.buf, err);
  }
  /* The layer differ reads plain copies and whiteouts only. */
  if (s->rootless) {
    if (fsconfig(fsfd, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) < 0) {
      int e = errno;
      fs_log(fsfd, &log);
      return overlay_error(s, o, e, "userxattr", log.buf, err);
    }
  } else {
    static const char *const off[] = { "index", "metacopy", "redirect_dir" };
    for (size_t i = 0; i < CB_ARRAY_SIZE(off); i++)
      (void)fsconfig(fsfd, FSCONFIG_SET_STRING, off[i], "off", 0);
  }
  if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
    int e = errno;
    fs_log(fsfd, &log);
    return overlay_error(s, o, e, "mount", log.buf, err);
  }
  mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, 0);
  if (mfd < 0)
    return overlay_error(s, o, errno, "fsmount", NULL, err);
  if (move_mount(mfd, "", AT_FDCWD, o->mountpoint, MOVE_MOUNT_F_EMPTY_PATH) < 0)
    return overlay_error(s, o, errno, "move_mount", NULL, err);
  return 0;
}

static int open_dir(const struct runner_overlay *o, const char *what, const char *path,
                    struct cb_error *err)
{
  int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    cb_error_errno(err, errno, "mount the overlay on \"%s\": %s \"%s\"", o->mountpoint, what,
                   path);
  return fd;
}

static int overlay_mount_legacy(const struct runner_setup *s, const struct runner_overlay *o,
                                struct cb_error *err)
{
  size_t n = o->n_lowerdirs;
  int *fds = xcalloc(n + 2, sizeof(*fds));
  cleanup_strbuf struct strbuf opts = STRBUF_INIT;
  cleanup_close int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  int ret = -1;

  for (size_t i = 0; i < n + 2; i++)
    fds[i] = -1;
  for (size_t i = 0; i < n; i++) {
    fds[i] = open_dir(o, "lower directory", o->lowerdirs[i], err);
    if (fds[i] < 0)
      goto out;
  }
  if (o->upperdir && ((fds[n] = open_dir(o, "upperdir", o->upperdir, err)) < 0 ||
                      (fds[n + 1] = open_dir(o, "workdir", o->workdir, err)) < 0))
    goto out;
  strbuf_addstr(&opts, "lowerdir=");
  for (size_t i = 0; i < n; i++)
    strbuf_addf(&opts, "%s%d", i ? ":" : "", fds[i]);
  if (o->upperdir)
    strbuf_addf(&opts, ",upperdir=%d,workdir=%d", fds[n], fds[n + 1]);
  strbuf_addstr(&opts, s->rootless ? ",userxattr" : ",index=off,redirect_dir=off,metacopy=off");
  if (opts.len >= 4096) {
    cb_error_set(err, "too many layers (%zu) for the overlay's mount options", n);
    goto out;
  }
  /* The names above are relative to /proc/self/fd. */
  if (chdir("/proc/self/fd") < 0) {
    cb_error_errno(err, errno, "chdir to \"/proc/self/fd\"");
    goto out;
  }
  if (mount("overlay", o->mountpoint, "overlay", 0, opts.buf) < 0) {
    int e = errno;
    if (cwd >= 0)
      (void)fchdir(cwd);
    overlay_error(s, o, e, "mount", NULL, err);
    goto out;
  }
  if (cwd >= 0)
    (void)fchdir(cwd);
  ret = 0;
out:
  for (size_t i = 0; i < n + 2; i++)
    if (fds[i] >= 0)
      close(fds[i]);
  free(fds);
  return ret;
}

/*
 * A layer may come twice in a chain (two steps that made the same
 * content share one snapshot), and overlayfs refuses overlapping layers
 * (ELOOP).  The lower copy adds nothing: every path it has, the upper copy
 * has too and hides it.  So each directory is kept once, where it is
 * highest.  Room is left for one more, the empty directory.
 */
static int dedupe_lowers(const struct runner_overlay *o, const char ***out, size_t *nout,
                         struct cb_error *err)
{
  const char **v = xcalloc(o->n_lowerdirs + 1, sizeof(*v));
  struct stat *seen = xcalloc(o->n_lowerdirs + 1, sizeof(*seen));
  size_t n = 0;
  for (size_t i = 0; i < o->n_lowerdirs; i++) {
    struct stat st;
    bool dup = false;
    if (stat(o->lowerdirs[i], &st) < 0) {
      int e = errno;
      free(v);
      free(seen);
      return cb_error_errno(err, e, "lower directory \"%s\"", o->lowerdirs[i]);
    }
    for (size_t j = 0; j < n && !dup; j++)
      dup = seen[j].st_dev == st.st_dev && seen[j].st_ino == st.st_ino;
    if (dup)
      continue;
    seen[n] = st;
    v[n++] = o->lowerdirs[i];
  }
  free(seen);
  *out = v;
  *nout = n;
  return 0;
}

int runner_overlay_mount_at(const struct runner_setup *s, const struct runner_overlay *o,
                            struct cb_error *err)
{
  cleanup_free const char **lowers = NULL;
  struct runner_overlay o2 = *o;
  size_t n = 0;
  int rc;

  if (dedupe_lowers(o, &lowers, &n, err) < 0)
    return cb_error_wrap(err, "mount the overlay on \"%s\"", o->mountpoint);
  /* Without an upperdir overlayfs wants two lowers; with none at all
   * there is nothing to show but an empty directory. */
  if (n == 0 && !o->upperdir) {
    if (mount(o->empty, o->mountpoint, NULL, MS_BIND, NULL) < 0)
      return cb_error_errno(err, errno, "bind-mount \"%s\" on \"%s\"", o->empty, o->mountpoint);
    return 0;
  }
  if (n == 0 || (n == 1 && !o->upperdir))
    lowers[n++] = o->empty;
  o2.lowerdirs = lowers;
  o2.n_lowerdirs = n;
  if (runner_use_mount_api()) {
    rc = overlay_mount_api(s, &o2, err);
    if (rc <= 0)
      return rc;
  }
  return overlay_mount_legacy(s, &o2, err);
}

int runner_overlay_mount(const struct runner_setup *s, struct cb_error *err)
{
  cleanup_free char *empty = xasprintf("%s/empty", s->statedir);
  cleanup_free char *stubs = xasprintf("%s/stubs", s->statedir);
  cleanup_free const char **lowers = xcalloc(s->c->n_lowerdirs + 1, sizeof(*lowers));
  struct runner_overlay o;
  /* The stubs go last, under the image: mount targets it may lack. */
  for (size_t i = 0; i < s->c->n_lowerdirs; i++)
    lowers[i] = s->c->lowerdirs[i];
  lowers[s->c->n_lowerdirs] = stubs;
  memset(&o, 0, sizeof(o));
  o.lowerdirs = lowers;
  o.n_lowerdirs = s->c->n_lowerdirs + 1;
  o.upperdir = s->c->upperdir;
  o.workdir = s->c->workdir;
  o.empty = empty;
  o.mountpoint = s->rootdir;
  return runner_overlay_mount_at(s, &o, err);
}
