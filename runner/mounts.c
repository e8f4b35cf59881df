/*
 * The step's filesystem, made by the init in its new mount namespace:
 * the overlay, a fresh /proc, a tmpfs /dev, a read-only /sys, the etc
 * files, the extra mounts, Docker's masked and read-only paths, and then
 * pivot_root.
 *
 * Mount targets live in the image, which is hostile input: a symlink
 * "etc -> /etc" must not make us mount over, or create files in, the
 * host's /etc.  Every target is therefore resolved beneath the rootfs one
 * component at a time with O_NOFOLLOW, symlinks expanded by us as if the
 * rootfs were "/", and the mount goes onto the descriptor through
 * /proc/self/fd.  Nothing from the image runs before pivot_root, so the
 * tree cannot change under us meanwhile.
 */
#include "runner-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct mctx {
  const struct runner_setup *s;
  int rootfd;
  dev_t rootdev;
};

struct fdpath {
  char p[40];
};

static struct fdpath fdpath(int fd)
{
  struct fdpath r;
  snprintf(r.p, sizeof(r.p), "/proc/self/fd/%d", fd);
  return r;
}

enum resolve_mode {
  FIND_EXISTING,
  MAKE_DIR,  /* create missing components as directories */
  MAKE_FILE, /* ... the last one as an empty file */
};

/* Push the components of path onto the front of the queue q. */
static void queue_path(struct strvec *q, const char *path)
{
  cleanup_strvec struct strvec comps = STRVEC_INIT;
  cleanup_free char *copy = xstrdup(path);
  char *save = NULL;
  for (char *p = strtok_r(copy, "/", &save); p; p = strtok_r(NULL, "/", &save))
    if (strcmp(p, ".") != 0)
      strvec_push(&comps, p);
  /* q holds the components in reverse: the next one is last */
  for (size_t i = comps.n; i-- > 0;)
    strvec_push(q, comps.v[i]);
}

static char *queue_pop(struct strvec *q)
{
  char *c = q->v[--q->n];
  q->v[q->n] = NULL;
  return c;
}

static int open_rel(struct mctx *m, const struct strvec *done)
{
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  for (size_t i = 0; i < done->n; i++)
    strbuf_addf(&sb, "%s%s", i ? "/" : "", done->v[i]);
  return cb_open_beneath(m->rootfd, sb.buf, O_PATH | O_DIRECTORY);
}

static char *joined(const struct strvec *done, const char *last)
{
  struct strbuf sb = STRBUF_INIT;
  for (size_t i = 0; i < done->n; i++)
    strbuf_addf(&sb, "%s%s", i ? "/" : "", done->v[i]);
  if (last)
    strbuf_addf(&sb, "%s%s", done->n ? "/" : "", last);
  return strbuf_detach(&sb, NULL);
}

/*
 * Open path in the rootfs (O_PATH), resolving symlinks as if the rootfs
 * were "/" -- one component at a time, never letting the kernel follow a
 * link, ".." stopping at the root -- and creating what is missing when
 * mode says so (securejoin's MkdirAll, as runc does it).  What is created
 * on the rootfs itself lands in the upperdir: it is reported as a stub.
 */
static int resolve(struct mctx *m, const char *path, enum resolve_mode mode,
                   struct cb_error *err)
{
  cleanup_strvec struct strvec q = STRVEC_INIT;
  cleanup_strvec struct strvec done = STRVEC_INIT;
  int cur = dup(m->rootfd), links = 0;

  if (cur < 0)
    return cb_error_errno(err, errno, "dup");
  queue_path(&q, path);
  while (q.n > 0) {
    cleanup_free char *c = queue_pop(&q);
    bool last = q.n == 0;
    struct stat st;
    int fd;

    if (strcmp(c, "..") == 0) {
      if (done.n)
        free(queue_pop(&done));
      close(cur);
      if ((cur = open_rel(m, &done)) < 0)
        return cb_error_errno(err, errno, "open \"/%s\"", path);
      continue;
    }
    fd = openat(cur, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && mode != FIND_EXISTING) {
      cleanup_free char *rel = joined(&done, c);
      bool dir = !last || mode == MAKE_DIR;
      int rc = dir ? mkdirat(cur, c, 0755)
                   : openat(cur, c, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (rc < 0) {
        int e = errno;
        close(cur);
        return cb_error_errno(err, e, "create \"/%s\"", rel);
      }
      if (!dir)
        close(rc);
      if (fstat(cur, &st) == 0 && st.st_dev == m->rootdev)
        runner_msg_send(m->s->msgfd, last ? RUNNER_MSG_STUB : RUNNER_MSG_STUB_DIR, rel,
                        strlen(rel));
      fd = openat(cur, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0 || fstat(fd, &st) < 0) {
      int e = errno;
      cleanup_free char *rel = joined(&done, c);
      if (fd >= 0)
        close(fd);
      close(cur);
      return cb_error_errno(err, e, "open \"/%s\"", rel);
    }
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = readlinkat(fd, "", target, sizeof(target) - 1);
      close(fd);
      if (n < 0 || ++links > 40) {
        int e = n < 0 ? errno : ELOOP;
        close(cur);
        return cb_error_errno(err, e, "resolve \"/%s\"", path);
      }
      target[n] = '\0';
      queue_path(&q, target);
      if (target[0] == '/') {
        strvec_clear(&done);
        close(cur);
        if ((cur = dup(m->rootfd)) < 0)
          return cb_error_errno(err, errno, "dup");
      }
      continue;
    }
    close(cur);
    cur = fd;
    if (!last && !S_ISDIR(st.st_mode)) {
      cleanup_free char *rel = joined(&done, c);
      close(cur);
      return cb_error_errno(err, ENOTDIR, "open \"/%s\"", rel);
    }
    strvec_push(&done, c);
  }
  return cur;
}

static int check_type(int fd, const char *path, bool want_dir, struct cb_error *err)
{
  struct stat st;
  if (fstat(fd, &st) < 0)
    return cb_error_errno(err, errno, "stat mount target \"/%s\"", path);
  if (want_dir && !S_ISDIR(st.st_mode))
    return cb_error_set(err, "mount target \"/%s\" is not a directory", path);
  if (!want_dir && S_ISDIR(st.st_mode))
    return cb_error_set(err, "mount target \"/%s\" is a directory, not a file", path);
  return 0;
}

/* Open the mount target path, creating it -- a directory, or an empty
 * file -- and its missing parents. */
static int ensure_target(struct mctx *m, const char *path, bool want_dir, struct cb_error *err)
{
  int fd = resolve(m, path, want_dir ? MAKE_DIR : MAKE_FILE, err);
  while (*path == '/')
    path++;
  if (fd < 0)
    return cb_error_wrap(err, "mount target \"/%s\"", path);
  if (check_type(fd, path, want_dir, err) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int mount_on(int fd, const char *src, const char *type, unsigned long flags,
                    const char *data, const char *what, struct cb_error *err)
{
  if (mount(src, fdpath(fd).p, type, flags, data) < 0)
    return cb_error_errno(err, errno, "mount %s", what);
  return 0;
}

static unsigned long statvfs_flags(const struct statvfs *sv)
{
  static const struct {
    unsigned long st, ms;
  } map[] = {
    { ST_NOSUID, MS_NOSUID },     { ST_NODEV, MS_NODEV },
    { ST_NOEXEC, MS_NOEXEC },     { ST_NOATIME, MS_NOATIME },
    { ST_NODIRATIME, MS_NODIRATIME }, { ST_RELATIME, MS_RELATIME },
  };
  unsigned long f = 0;
  for (size_t i = 0; i < CB_ARRAY_SIZE(map); i++)
    if (sv->f_flag & map[i].st)
      f |= map[i].ms;
  return f;
}

/* Make the mount now at path read-only, with what is mounted below it. */
static int make_readonly(struct mctx *m, const char *path, struct cb_error *err)
{
  cleanup_close int fd = resolve(m, path, FIND_EXISTING, err);
  struct statvfs sv;
  if (fd < 0)
    return -1;
  if (runner_use_mount_api()) {
    struct mount_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.attr_set = MOUNT_ATTR_RDONLY;
    if (mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) == 0)
      return 0;
    if (errno != ENOSYS)
      return cb_error_errno(err, errno, "make \"/%s\" read-only", path);
  }
  /* Only the top mount; a remount in a user namespace keeps the locked flags. */
  if (fstatvfs(fd, &sv) < 0)
    return cb_error_errno(err, errno, "statvfs \"/%s\"", path);
  if (mount(NULL, fdpath(fd).p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | statvfs_flags(&sv),
            NULL) < 0)
    return cb_error_errno(err, errno, "make \"/%s\" read-only", path);
  return 0;
}

static int setup_proc(struct mctx *m, struct cb_error *err)
{
  cleanup_close int fd = ensure_target(m, "proc", true, err);
  if (fd < 0)
    return -1;
  return mount_on(fd, "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL,
                  "a new /proc for the sandbox's PID namespace", err);
}

static int setup_sys(struct mctx *m, struct cb_error *err)
{
  cleanup_close int fd = ensure_target(m, "sys", true, err);
  if (fd < 0)
    return -1;
  if (mount("sysfs", fdpath(fd).p, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            NULL) == 0)
    return 0;
  /* A user namespace may mount sysfs only for a network namespace it owns:
   * with the host's network, show the host's /sys, read-only. */
  if (!m->s->rootless || (errno != EPERM && errno != EACCES))
    return cb_error_errno(err, errno, "mount /sys");
  if (mount("/sys", fdpath(fd).p, NULL, MS_BIND | MS_REC, NULL) < 0)
    return cb_error_errno(err, errno, "bind-mount the host's /sys");
  return make_readonly(m, "sys", err);
}

struct dev_node {
  const char *name;
  unsigned maj, min;
};

static const struct dev_node dev_nodes[] = {
  { "null", 1, 3 },    { "zero", 1, 5 }, { "full", 1, 7 },
  { "random", 1, 8 },  { "urandom", 1, 9 }, { "tty", 5, 0 },
};

static int setup_dev(struct mctx *m, struct cb_error *err)
{
  static const char *const links[][2] = {
    { "fd", "/proc/self/fd" }, { "stdin", "/proc/self/fd/0" },
    { "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
    { "ptmx", "pts/ptmx" },
  };
  cleanup_close int fd = ensure_target(m, "dev", true, err);
  cleanup_close int devfd = -1;
  cleanup_close int ptsfd = -1;
  cleanup_close int shmfd = -1;

  if (fd < 0)
    return -1;
  if (mount_on(fd, "tmpfs", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k",
               "a tmpfs on /dev", err) < 0)
    return -1;
  devfd = resolve(m, "dev", FIND_EXISTING, err);
  if (devfd < 0)
    return -1;

  for (size_t i = 0; i < CB_ARRAY_SIZE(dev_nodes); i++) {
    const struct dev_node *d = &dev_nodes[i];
    if (!m->s->rootless) {
      if (mknodat(devfd, d->name, S_IFCHR | 0666, makedev(d->maj, d->min)) < 0)
        return cb_error_errno(err, errno, "mknod /dev/%s", d->name);
      continue;
    }
    /* Device nodes made in a user namespace do not open: bind the host's. */
    {
      cleanup_free char *host = xasprintf("/dev/%s", d->name);
      cleanup_close int nfd = -1;
      int f = openat(devfd, d->name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
      if (f < 0)
        return cb_error_errno(err, errno, "create /dev/%s", d->name);
      close(f);
      nfd = openat(devfd, d->name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (nfd < 0 || mount(host, fdpath(nfd).p, NULL, MS_BIND, NULL) < 0)
        return cb_error_errno(err, errno, "bind-mount the host's %s", host);
    }
  }
  for (size_t i = 0; i < CB_ARRAY_SIZE(links); i++)
    if (symlinkat(links[i][1], devfd, links[i][0]) < 0)
      return cb_error_errno(err, errno, "symlink /dev/%s", links[i][0]);

  if (mkdirat(devfd, "pts", 0755) < 0 ||
      (ptsfd = openat(devfd, "pts", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
    return cb_error_errno(err, errno, "create /dev/pts");
  /* gid=5 (tty) exists only where the group is mapped. */
  if (mount("devpts", fdpath(ptsfd).p, "devpts", MS_NOSUID | MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0 &&
      mount_on(ptsfd, "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=0620", "devpts on /dev/pts", err) < 0)
    return -1;

  if (mkdirat(devfd, "shm", 01777) < 0 ||
      (shmfd = openat(devfd, "shm", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
    return cb_error_errno(err, errno, "create /dev/shm");
  return mount_on(shmfd, "shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=1777,size=65536k", "a tmpfs on /dev/shm", err);
}

/* Copy the file open at sfd to path (for a writable bind of a file whose
 * writes are thrown away). */
static int copy_to(int sfd, const char *path, struct cb_error *err)
{
  cleanup_close int in = open(fdpath(sfd).p, O_RDONLY | O_CLOEXEC);
  cleanup_close int out = -1;
  struct stat st;
  char buf[65536];
  ssize_t n;
  if (in < 0 || fstat(in, &st) < 0)
    return cb_error_errno(err, errno, "open the bind source to copy it");
  out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, st.st_mode & 07777);
  if (out < 0)
    return cb_error_errno(err, errno, "create \"%s\"", path);
  while ((n = cb_read_retry(in, buf, sizeof(buf))) > 0)
    if (cb_write_all(out, buf, (size_t)n) < 0)
      return cb_error_errno(err, errno, "write \"%s\"", path);
  if (n < 0)
    return cb_error_errno(err, errno, "read the bind source");
  if (fchown(out, st.st_uid, st.st_gid) < 0 || fchmod(out, st.st_mode & 07777) < 0)
    return cb_error_errno(err, errno, "set the owner and mode of \"%s\"", path);
  return 0;
}

/* /etc/hosts, /etc/resolv.conf and /etc/hostname: copies, in the step's
 * tmpfs, of what the caller wrote for every step (the command may write to
 * them, and no other step may see that). */
static int setup_etc(struct mctx *m, struct cb_error *err)
{
  static const char *const names[] = { "hosts", "resolv.conf", "hostname" };
  for (size_t i = 0; i < CB_ARRAY_SIZE(names); i++) {
    cleanup_free char *target = xasprintf("etc/%s", names[i]);
    cleanup_free char *orig = xasprintf("%s/%s", m->s->etcdir, names[i]);
    cleanup_free char *src = xasprintf("%s/%s", m->s->tmpdir, names[i]);
    cleanup_free char *what = xasprintf("/etc/%s", names[i]);
    cleanup_close int ofd = open(orig, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    cleanup_close int fd = -1;
    if (ofd < 0)
      return cb_error_errno(err, errno, "open \"%s\"", orig);
    if (copy_to(ofd, src, err) < 0)
      return -1;
    fd = ensure_target(m, target, false, err);
    if (fd < 0 || mount_on(fd, src, NULL, MS_BIND, NULL, what, err) < 0)
      return -1;
  }
  return 0;
}

/* Mount an overlay at tmpdir/mnt-N, and open what is to be mounted from
 * it: its root, or the path source inside it. */
static int overlay_source(struct mctx *m, const struct runner_overlay *ov, size_t index,
                          const char *source, struct cb_error *err)
{
  cleanup_free char *mp = xasprintf("%s/mnt-%zu", m->s->tmpdir, index);
  cleanup_free char *empty = xasprintf("%s/empty", m->s->statedir);
  struct runner_overlay o = *ov;
  struct mctx sub;
  struct stat st;
  int fd;
  if (mkdir(mp, 0700) < 0)
    return cb_error_errno(err, errno, "create \"%s\"", mp);
  o.mountpoint = mp;
  o.empty = empty;
  if (runner_overlay_mount_at(m->s, &o, err) < 0)
    return -1;
  sub = *m;
  sub.rootfd = open(mp, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (sub.rootfd < 0 || fstat(sub.rootfd, &st) < 0) {
    int e = errno;
    if (sub.rootfd >= 0)
      close(sub.rootfd);
    return cb_error_errno(err, e, "open \"%s\"", mp);
  }
  if (!source || !*source)
    return sub.rootfd;
  /* A path of the image, resolved in it as in the rootfs; nothing is
   * created there. */
  sub.rootdev = st.st_dev;
  fd = resolve(&sub, source, FIND_EXISTING, err);
  close(sub.rootfd);
  if (fd < 0)
    return cb_error_wrap(err, "mount source");
  return fd;
}

/* Give the directory fd the owner, mode and times of the one at src
 * (an owner the namespace does not map is left as is). */
static int copy_dir_attrs(int src, int fd, const char *what, struct cb_error *err)
{
  struct stat st;
  struct timespec ts[2];
  if (fstat(src, &st) < 0)
    return cb_error_errno(err, errno, "stat the source of \"%s\"", what);
  if (fchown(fd, st.st_uid, st.st_gid) < 0 && errno != EINVAL && errno != EPERM)
    return cb_error_errno(err, errno, "chown \"%s\"", what);
  ts[0] = st.st_atim;
  ts[1] = st.st_mtim;
  if (fchmod(fd, st.st_mode & 07777) < 0 || futimens(fd, ts) < 0)
    return cb_error_errno(err, errno, "set the mode of \"%s\"", what);
  return 0;
}

/*
 * An overlay layer that hides paths below the directory open at sfd: a
 * whiteout for each (mknod of 0/0, which a user namespace may do), in
 * directories that look like the source's, since the top layer's win.  A
 * path whose parents are no longer directories there hides nothing.
 */
static int make_mask(int sfd, const char *mask, const char *const *hide, size_t n,
                     struct cb_error *err)
{
  cleanup_close int rootfd = -1;
  if (mkdir(mask, 0700) < 0)
    return cb_error_errno(err, errno, "create \"%s\"", mask);
  rootfd = open(mask, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (rootfd < 0)
    return cb_error_errno(err, errno, "open \"%s\"", mask);
  for (size_t i = 0; i < n; i++) {
    cleanup_free char *copy = xstrdup(hide[i]);
    cleanup_close int cur = dup(rootfd);
    cleanup_close int src = dup(sfd);
    char *save = NULL, *next;
    char *c = strtok_r(copy, "/", &save);
    if (cur < 0 || src < 0)
      return cb_error_errno(err, errno, "dup");
    if (!c || hide[i][0] == '/')
      return cb_error_set(err, "invalid path to hide \"%s\"", hide[i]);
    for (; c; c = next) {
      int fd, sub;
      next = strtok_r(NULL, "/", &save);
      if (strcmp(c, "..") == 0 || strcmp(c, ".") == 0)
        return cb_error_set(err, "invalid path to hide \"%s\"", hide[i]);
      if (!next) {
        if (mknodat(cur, c, S_IFCHR | 0000, makedev(0, 0)) < 0 && errno != EEXIST)
          return cb_error_errno(err, errno, "hide \"%s\"", hide[i]);
        break;
      }
      sub = openat(src, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0)
        break;
      close(src);
      src = sub;
      if (mkdirat(cur, c, 0700) < 0 && errno != EEXIST)
        return cb_error_errno(err, errno, "hide \"%s\"", hide[i]);
      fd = openat(cur, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0)
        return cb_error_errno(err, errno, "hide \"%s\"", hide[i]);
      close(cur);
      cur = fd;
      if (copy_dir_attrs(src, cur, hide[i], err) < 0)
        return -1;
    }
  }
  /* the merged root is the top layer's */
  return copy_dir_attrs(sfd, rootfd, mask, err);
}

/* Open the source of a bind: the caller's; an overlay over it that hides
 * what the caller asked; for a writable bind with an upperdir a throwaway
 * overlay over it (a copy of a file). */
static int bind_source(struct mctx *m, const struct runner_mount *rm, size_t index,
                       struct cb_error *err)
{
  cleanup_close int sfd = -1;
  struct stat st;
  /* Opened here, in the step's mount namespace: a descriptor of the
   * caller's would name a mount of another namespace, which bind refuses. */
  if (rm->source_root) {
    cleanup_close int rootfd = open(rm->source_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
      return cb_error_errno(err, errno, "open \"%s\"", rm->source_root);
    sfd = cb_open_beneath(rootfd, rm->source, O_PATH);
    if (sfd < 0)
      return cb_error_errno(err, errno, "bind mount source \"%s\" in \"%s\"", rm->source,
                            rm->source_root);
  } else {
    sfd = open(rm->source, O_PATH | O_CLOEXEC);
  }
  if (sfd < 0 || fstat(sfd, &st) < 0)
    return cb_error_errno(err, errno, "bind mount source \"%s\"", rm->source);
  /* O_PATH|O_NOFOLLOW opens a symlink itself: never mount through one */
  if (rm->source_root && S_ISLNK(st.st_mode))
    return cb_error_errno(err, ELOOP, "bind mount source \"%s\" in \"%s\"", rm->source,
                          rm->source_root);
  if (rm->source_root && rm->n_hide && S_ISDIR(st.st_mode)) {
    cleanup_free char *mask = xasprintf("%s/mask-%zu", m->s->tmpdir, index);
    struct fdpath lp = fdpath(sfd);
    const char *lowers[2];
    struct runner_overlay o;
    if (make_mask(sfd, mask, rm->hide, rm->n_hide, err) < 0)
      return -1;
    lowers[0] = mask;
    lowers[1] = lp.p;
    memset(&o, 0, sizeof(o));
    o.lowerdirs = lowers;
    o.n_lowerdirs = 2;
    if (!rm->readonly) {
      o.upperdir = rm->upperdir;
      o.workdir = rm->workdir;
    }
    return overlay_source(m, &o, index, NULL, err);
  }
  if (rm->readonly || !rm->upperdir) {
    int fd = sfd;
    sfd = -1;
    return fd;
  }
  if (S_ISDIR(st.st_mode)) {
    struct runner_overlay o;
    struct fdpath lp = fdpath(sfd);
    const char *lower = lp.p;
    memset(&o, 0, sizeof(o));
    o.lowerdirs = &lower;
    o.n_lowerdirs = 1;
    o.upperdir = rm->upperdir;
    o.workdir = rm->workdir;
    return overlay_source(m, &o, index, NULL, err);
  }
  {
    cleanup_free char *copy = xasprintf("%s/file", rm->upperdir);
    int fd;
    if (copy_to(sfd, copy, err) < 0)
      return -1;
    fd = open(copy, O_PATH | O_CLOEXEC);
    if (fd < 0)
      return cb_error_errno(err, errno, "open \"%s\"", copy);
    return fd;
  }
}

/* A file of the caller's data, on a tmpfs that holds nothing else,
 * bound read-only on the target. */
static int setup_file(struct mctx *m, const struct runner_mount *rm, size_t index,
                      const char *target, struct cb_error *err)
{
  cleanup_free char *dir = xasprintf("%s/file-%zu", m->s->tmpdir, index);
  cleanup_free char *path = xasprintf("%s/file", dir);
  /* room for the content and the inode, in pages */
  size_t size = (rm->data_len / 4096 + 2) * 4096;
  cleanup_free char *opts = xasprintf("mode=700,size=%zu", size);
  cleanup_close int ffd = -1;
  cleanup_close int tfd = -1;
  if (mkdir(dir, 0700) < 0)
    return cb_error_errno(err, errno, "create \"%s\"", dir);
  if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
    return cb_error_errno(err, errno, "mount a tmpfs for \"%s\"", rm->target);
  ffd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (ffd < 0 || cb_write_all(ffd, rm->data, rm->data_len) < 0)
    return cb_error_errno(err, errno, "write the file for \"%s\"", rm->target);
  if (fchown(ffd, rm->uid, rm->gid) < 0)
    return cb_error_errno(err, errno, "chown the file for \"%s\" to %lu:%lu", rm->target,
                          (unsigned long)rm->uid, (unsigned long)rm->gid);
  if (fchmod(ffd, rm->mode & 07777) < 0)
    return cb_error_errno(err, errno, "chmod the file for \"%s\"", rm->target);
  tfd = ensure_target(m, target, false, err);
  if (tfd < 0)
    return -1;
  if (mount(path, fdpath(tfd).p, NULL, MS_BIND, NULL) < 0)
    return cb_error_errno(err, errno, "bind-mount a file on \"%s\"", rm->target);
  if (make_readonly(m, target, err) < 0)
    return -1;
  /* The bind keeps the tmpfs; its other name goes. */
  if (umount2(dir, MNT_DETACH) < 0)
    return cb_error_errno(err, errno, "unmount \"%s\"", dir);
  return 0;
}

static int setup_extra(struct mctx *m, const struct runner_mount *rm, size_t index,
                       struct cb_error *err)
{
  const char *target = rm->target;
  cleanup_close int sfd = -1;
  cleanup_close int fd = -1;
  bool readonly = rm->readonly;
  struct stat st;
  while (*target == '/')
    target++;
  switch (rm->type) {
  case RUNNER_MOUNT_TMPFS: {
    cleanup_free char *opts =
        rm->size > 0 ? xasprintf("mode=1777,size=%lld", rm->size) : xstrdup("mode=1777");
    unsigned long fl = MS_NOSUID | MS_NODEV | (rm->readonly ? MS_RDONLY : 0);
    fd = ensure_target(m, target, true, err);
    if (fd < 0)
      return -1;
    if (mount("tmpfs", fdpath(fd).p, "tmpfs", fl, opts) < 0)
      return cb_error_errno(err, errno, "mount a tmpfs on \"%s\"", rm->target);
    return 0;
  }
  case RUNNER_MOUNT_FILE:
    return setup_file(m, rm, index, target, err);
  case RUNNER_MOUNT_OVERLAY: {
    struct runner_overlay o;
    memset(&o, 0, sizeof(o));
    o.lowerdirs = rm->lowerdirs;
    o.n_lowerdirs = rm->n_lowerdirs;
    o.upperdir = rm->upperdir;
    o.workdir = rm->workdir;
    readonly |= !rm->upperdir;
    sfd = overlay_source(m, &o, index, rm->source, err);
    break;
  }
  case RUNNER_MOUNT_BIND:
    sfd = bind_source(m, rm, index, err);
    break;
  }
  if (sfd < 0)
    return cb_error_wrap(err, "mount on \"%s\"", rm->target);
  if (fstat(sfd, &st) < 0)
    return cb_error_errno(err, errno, "mount source for \"%s\"", rm->target);
  fd = ensure_target(m, target, S_ISDIR(st.st_mode), err);
  if (fd < 0)
    return -1;
  if (mount(fdpath(sfd).p, fdpath(fd).p, NULL, MS_BIND | MS_REC, NULL) < 0) {
    if (rm->type == RUNNER_MOUNT_BIND && !rm->source_root)
      return cb_error_errno(err, errno, "bind-mount \"%s\" on \"%s\"", rm->source, rm->target);
    return cb_error_errno(err, errno, "bind-mount on \"%s\"", rm->target);
  }
  if (readonly && make_readonly(m, target, err) < 0)
    return -1;
  return 0;
}

/* Docker's masked and read-only paths: kernel knobs a container must not
 * turn, even as root. */
static int setup_masks(struct mctx *m, struct cb_error *err)
{
  static const char *const masked[] = {
    "proc/asound",     "proc/acpi",       "proc/kcore",        "proc/keys",
    "proc/latency_stats", "proc/timer_list", "proc/timer_stats", "proc/sched_debug",
    "proc/scsi",       "sys/firmware",    "sys/devices/virtual/powercap",
  };
  static const char *const readonly[] = {
    "proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger",
  };
  for (size_t i = 0; i < CB_ARRAY_SIZE(masked); i++) {
    cleanup_close int fd = resolve(m, masked[i], FIND_EXISTING, err);
    struct stat st;
    int rc;
    if (fd < 0 && err->code == ENOENT)
      continue;
    if (fd < 0)
      return -1;
    if (fstat(fd, &st) < 0)
      return cb_error_errno(err, errno, "stat \"/%s\"", masked[i]);
    if (S_ISDIR(st.st_mode))
      rc = mount("tmpfs", fdpath(fd).p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 "size=4k,mode=555");
    else
      rc = mount("/dev/null", fdpath(fd).p, NULL, MS_BIND, NULL);
    if (rc < 0)
      return cb_error_errno(err, errno, "mask \"/%s\"", masked[i]);
  }
  for (size_t i = 0; i < CB_ARRAY_SIZE(readonly); i++) {
    cleanup_close int fd = resolve(m, readonly[i], FIND_EXISTING, err);
    if (fd < 0 && err->code == ENOENT)
      continue;
    if (fd < 0)
      return -1;
    if (mount(fdpath(fd).p, fdpath(fd).p, NULL, MS_BIND | MS_REC, NULL) < 0)
      return cb_error_errno(err, errno, "bind-mount \"/%s\"", readonly[i]);
    if (make_readonly(m, readonly[i], err) < 0)
      return -1;
  }
  return 0;
}

static int pivot(struct mctx *m, struct cb_error *err)
{
  /* The old root goes on top of the new one, and is then detached: no
   * directory for it is needed in the image (runc's way). */
  if (fchdir(m->rootfd) < 0)
    return cb_error_errno(err, errno, "chdir to the rootfs");
  if (syscall(SYS_pivot_root, ".", ".") < 0)
    return cb_error_errno(err, errno, "pivot_root");
  if (umount2(".", MNT_DETACH) < 0)
    return cb_error_errno(err, errno, "detach the old root");
  if (chdir("/") < 0)
    return cb_error_errno(err, errno, "chdir to /");
  return 0;
}

int runner_mounts_setup(const struct runner_setup *s, struct cb_error *err)
{
  const struct runner_config *c = s->c;
  struct mctx m;
  struct stat st;
  int ret = -1;

  memset(&m, 0, sizeof(m));
  m.s = s;
  m.rootfd = -1;
  if (unshare(CLONE_NEWNS | CLONE_NEWCGROUP) < 0)
    return cb_error_errno(err, errno, "create the mount and cgroup namespaces: unshare");
  /* Nothing mounted from here on may reach the host. */
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
    return cb_error_errno(err, errno, "make the mounts private");
  /* This step's own scratch space, seen by no other (statedir.c). */
  if (mount("tmpfs", s->tmpdir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") < 0)
    return cb_error_errno(err, errno, "mount a tmpfs on \"%s\"", s->tmpdir);
  if (runner_overlay_mount(s, err) < 0)
    return -1;
  m.rootfd = open(s->rootdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (m.rootfd < 0 || fstat(m.rootfd, &st) < 0)
    return cb_error_errno(err, errno, "open the rootfs \"%s\"", s->rootdir);
  m.rootdev = st.st_dev;

  if (setup_proc(&m, err) < 0 || setup_dev(&m, err) < 0 || setup_sys(&m, err) < 0 ||
      setup_etc(&m, err) < 0)
    goto out;
  for (size_t i = 0; i < c->n_mounts; i++)
    if (setup_extra(&m, &c->mounts[i], i, err) < 0)
      goto out;
  if (setup_masks(&m, err) < 0 || pivot(&m, err) < 0)
    goto out;
  ret = 0;
out:
  if (m.rootfd >= 0)
    close(m.rootfd);
  return ret;
}

/* ---- in the caller, after the run ---- */

static bool is_stub(const struct strvec *stubs, const char *rel)
{
  return strvec_find(stubs, rel) >= 0;
}

static bool only_stubs(int upperfd, const char *dir, const struct strvec *stubs)
{
  int fd = cb_open_beneath(upperfd, dir, O_RDONLY | O_DIRECTORY);
  DIR *d;
  struct dirent *de;
  bool only = true;
  if (fd < 0)
    return false;
  d = fdopendir(fd);
  if (!d) {
    close(fd);
    return false;
  }
  while (only && (de = readdir(d)) != NULL) {
    cleanup_free char *rel = NULL;
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    rel = xasprintf("%s/%s", dir, de->d_name);
    only = is_stub(stubs, rel);
  }
  closedir(d);
  return only;
}

static int by_depth_desc(const void *a, const void *b)
{
  const char *x = *(const char *const *)a, *y = *(const char *const *)b;
  size_t dx = 0, dy = 0;
  for (; *x; x++)
    dx += *x == '/';
  for (; *y; y++)
    dy += *y == '/';
  return dx < dy ? 1 : dx > dy ? -1 : 0;
}

void runner_stubs_finish(struct runner_result *res, const struct strvec *dirs,
                         const char *upperdir)
{
  cleanup_close int upperfd = -1;
  cleanup_strvec struct strvec cand = STRVEC_INIT;

  /* Candidates: the directories made for stubs, and every directory above
   * a stub, which overlayfs copied up only because a stub went in. */
  for (size_t i = 0; i < dirs->n; i++)
    if (strvec_find(&cand, dirs->v[i]) < 0)
      strvec_push(&cand, dirs->v[i]);
  for (size_t i = 0; i < res->mount_stubs.n; i++) {
    cleanup_free char *p = xstrdup(res->mount_stubs.v[i]);
    char *slash;
    while ((slash = strrchr(p, '/')) != NULL) {
      *slash = '\0';
      if (*p && strvec_find(&cand, p) < 0)
        strvec_push(&cand, p);
    }
  }
  if (cand.n == 0)
    return;
  upperfd = open(upperdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (upperfd < 0)
    return;
  qsort(cand.v, cand.n, sizeof(*cand.v), by_depth_desc);
  /* Such a directory is left out, unless the command put something of
   * its own in it. */
  for (size_t i = 0; i < cand.n; i++)
    if (only_stubs(upperfd, cand.v[i], &res->mount_stubs))
      strvec_push(&res->mount_stubs, cand.v[i]);
}
