/*
 * A layer from an overlayfs upperdir: what a RUN step changed, as a tar.
 *
 * Only the upperdir is walked, never the merged tree: overlayfs already
 * put there exactly what the step added or changed (copied up whole), and
 * marked what it deleted.  The walk opens one directory at a time beneath
 * the upperdir (cb_open_beneath: no symlink followed, no ".."), lstat()s
 * its entries from that directory's fd, and reads xattrs through
 * /proc/self/fd/DIR/NAME with the l*xattr calls, which never follow the
 * last component.  Everything is collected first, then sorted by tar path
 * (strcmp, the writer's order) and written; a file's content is opened
 * again, beneath the upperdir, and must still be the inode that was seen.
 *
 * How overlayfs marks changes, and what the tar gets for them:
 *
 *  - A deleted NAME is a 0/0 character device: ".wh.NAME", an empty
 *    regular file with mode 0, uid/gid 0 and mtime 0, the header
 *    containerd's ChangeWriter (which BuildKit uses) writes; containerd
 *    2.0 fixed its time at 0 too, so that it does not depend on when the
 *    layer was made.  (Docker's classic builder kept the device's owner
 *    and gave it 0600.)  overlayfs may make whiteouts as links of one
 *    shared inode: they are never taken for hardlinks.
 *
 *  - A directory with the opaque xattr ("y") was deleted and made again:
 *    the directory itself plus "DIR/.wh..wh..opq", marked like a whiteout,
 *    when below() says DIR exists in a lower layer; otherwise the
 *    directory is simply new, and the marker would say nothing.
 *
 *  - A redirect or metacopy xattr means overlayfs kept a renamed directory
 *    or a copied-up file's data in a lower layer, which a layer cannot
 *    express: that is an error, and the sandbox must mount with
 *    redirect_dir=off,metacopy=off (the defaults, and forced by userxattr).
 *
 * overlayfs's own xattrs (trusted.overlay.*, user.overlay.*) never reach
 * the tar; of the others, security.capability and user.* are kept, as
 * for COPY.  Hardlinks are entries with the same inode: the first in tar
 * order is written as a file, the others as links to it.  Sockets are left
 * out (containerd does the same); a tar cannot hold them.  A name starting
 * with ".wh." that is not a whiteout would read as one: refused.
 *
 * Owners are written as stat() shows them.  In a rootless build the
 * upperdir's ids are the host's (subordinate) ids: call this inside the
 * build's user namespace for them to read as the image's.
 */
#include "oci.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"

enum item_kind {
  ITEM_FILE,     /* anything written as it is: file, dir, symlink, device, fifo */
  ITEM_WHITEOUT, /* ".wh.NAME" for a 0/0 character device NAME */
  ITEM_OPAQUE,   /* "DIR/.wh..wh..opq" */
};

struct item {
  enum item_kind kind;
  char *path;    /* in the tar */
  char *src;     /* in the upperdir (ITEM_FILE) */
  struct stat st;
  char *symlink;
  struct oci_xattr *xattrs; /* names and values owned */
  size_t n_xattrs;
  const char *hardlink; /* another item's path */
};

struct walk {
  int upperfd;
  const struct oci_upper_options *u;
  dev_t dev; /* the upperdir's filesystem */
  const char *opaque_attr, *redirect_attr, *metacopy_attr;
  struct item *items;
  size_t n_items, alloc_items;
  struct strvec dirs; /* directories still to read, relative */
};

static void item_release(struct item *it)
{
  free(it->path);
  free(it->src);
  free(it->symlink);
  for (size_t i = 0; i < it->n_xattrs; i++) {
    free((void *)it->xattrs[i].name);
    free((void *)it->xattrs[i].value);
  }
  free(it->xattrs);
}

static struct item *add_item(struct walk *w, enum item_kind kind, char *path)
{
  struct item *it;
  CB_GROW(w->items, w->n_items + 1, w->alloc_items);
  it = &w->items[w->n_items++];
  memset(it, 0, sizeof(*it));
  it->kind = kind;
  it->path = path;
  return it;
}

static char *join(const char *dir, const char *name)
{
  return *dir ? xasprintf("%s/%s", dir, name) : xstrdup(name);
}

/* Whether rel is in the skip list (spelled with or without "/" around). */
static bool skipped(const struct strvec *skip, const char *rel)
{
  size_t n = strlen(rel);
  if (skip == NULL)
    return false;
  for (size_t i = 0; i < skip->n; i++) {
    const char *s = skip->v[i];
    size_t len;
    while (*s == '/')
      s++;
    len = strlen(s);
    while (len > 0 && s[len - 1] == '/')
      len--;
    if (len == n && memcmp(s, rel, n) == 0)
      return true;
  }
  return false;
}

/* The xattrs a layer keeps: as the writer, less overlayfs's own. */
static bool xattr_kept(const char *name)
{
  if (cb_starts_with(name, "trusted.overlay.") || cb_starts_with(name, "user.overlay."))
    return false;
  return strcmp(name, "security.capability") == 0 || cb_starts_with(name, "user.");
}

/* The value of xattr name of file, into sb; -1 with errno. */
static int get_xattr(const char *file, const char *name, struct strbuf *sb)
{
  for (;;) {
    ssize_t n = lgetxattr(file, name, NULL, 0);
    if (n < 0)
      return -1;
    strbuf_reset(sb);
    strbuf_grow(sb, (size_t)n + 1);
    n = lgetxattr(file, name, sb->buf, (size_t)n + 1);
    if (n >= 0) {
      sb->len = (size_t)n;
      sb->buf[n] = '\0';
      return 0;
    }
    if (errno != ERANGE) /* ERANGE: it grew meanwhile, again */
      return -1;
  }
}

/*
 * Read the xattrs of dfd/name into it: kept ones stored, overlayfs's
 * looked at.  *opaque tells whether the opaque marker is "y".
 */
static int read_xattrs(struct walk *w, int dfd, const char *name, struct item *it,
                       bool *opaque, struct cb_error *err)
{
  cleanup_free char *file = xasprintf("/proc/self/fd/%d/%s", dfd, name);
  cleanup_strbuf struct strbuf list = STRBUF_INIT;
  cleanup_strbuf struct strbuf value = STRBUF_INIT;
  size_t alloc = 0;
  ssize_t n;

  *opaque = false;
  for (;;) {
    n = llistxattr(file, NULL, 0);
    if (n <= 0)
      break;
    strbuf_grow(&list, (size_t)n);
    n = llistxattr(file, list.buf, (size_t)n);
    if (n >= 0) {
      list.len = (size_t)n;
      list.buf[n] = '\0';
      break;
    }
    if (errno != ERANGE) /* it grew meanwhile: again */
      break;
  }
  if (n < 0) {
    if (errno == ENOTSUP)
      return 0;
    return cb_error_errno(err, errno, "list xattrs of \"%s\"", it->src);
  }
  for (const char *p = list.buf; p < list.buf + list.len; p += strlen(p) + 1) {
    bool opaque_attr = strcmp(p, w->opaque_attr) == 0;
    if (strcmp(p, w->redirect_attr) == 0 || strcmp(p, w->metacopy_attr) == 0)
      return cb_error_set(err, "\"%s\" has xattr \"%s\": the overlay must be mounted with "
                          "redirect_dir=off,metacopy=off for its upperdir to make a layer",
                          it->src, p);
    if (!opaque_attr && !xattr_kept(p))
      continue;
    if (get_xattr(file, p, &value) < 0) {
      if (errno == ENODATA) /* removed meanwhile */
        continue;
      return cb_error_errno(err, errno, "read xattr \"%s\" of \"%s\"", p, it->src);
    }
    if (opaque_attr) {
      *opaque = value.len == 1 && value.buf[0] == 'y';
      continue;
    }
    CB_GROW(it->xattrs, it->n_xattrs + 1, alloc);
    it->xattrs[it->n_xattrs].name = xstrdup(p);
    it->xattrs[it->n_xattrs].size = value.len;
    it->xattrs[it->n_xattrs].value = xmalloc(value.len ? value.len : 1);
    memcpy((void *)it->xattrs[it->n_xattrs].value, value.buf, value.len);
    it->n_xattrs++;
  }
  return 0;
}

static int read_symlink(int dfd, const char *name, const struct stat *st, char **out)
{
  size_t size = st->st_size > 0 && st->st_size < PATH_MAX ? (size_t)st->st_size + 1 : 256;
  for (;;) {
    char *buf = xmalloc(size);
    ssize_t n = readlinkat(dfd, name, buf, size);
    if (n < 0) {
      int e = errno;
      free(buf);
      errno = e;
      return -1;
    }
    if ((size_t)n < size) {
      buf[n] = '\0';
      *out = buf;
      return 0;
    }
    free(buf);
    if (size >= PATH_MAX) {
      errno = ENAMETOOLONG;
      return -1;
    }
    size *= 2;
  }
}

/* One entry, dfd/name, found in the directory dir. */
static int walk_entry(struct walk *w, int dfd, const char *dir, const char *name,
                      struct cb_error *err)
{
  cleanup_free char *rel = join(dir, name);
  struct stat st;
  struct item *it;
  bool opaque;

  if (skipped(w->u->skip, rel))
    return 0;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT)
      return 0;
    return cb_error_errno(err, errno, "stat \"%s\"", rel);
  }
  if (S_ISSOCK(st.st_mode))
    return 0;
  if (st.st_dev != w->dev)
    return cb_error_set(err, "\"%s\" is on another filesystem than the upperdir (a mount?)",
                        rel);
  if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
    cleanup_free char *wh = xasprintf(WHITEOUT_PREFIX "%s", name);
    it = add_item(w, ITEM_WHITEOUT, join(dir, wh));
    it->st = st;
    return 0;
  }
  if (cb_starts_with(name, WHITEOUT_PREFIX))
    return cb_error_set(err, "\"%s\": a name starting with \"" WHITEOUT_PREFIX
                        "\" cannot be stored in a layer, where it means a deleted file",
                        rel);

  it = add_item(w, ITEM_FILE, xstrdup(rel));
  it->src = xstrdup(rel);
  it->st = st;
  if (S_ISLNK(st.st_mode) && read_symlink(dfd, name, &st, &it->symlink) < 0)
    return cb_error_errno(err, errno, "read symlink \"%s\"", rel);
  if (read_xattrs(w, dfd, name, it, &opaque, err) < 0)
    return -1;
  if (S_ISDIR(st.st_mode)) {
    strvec_push(&w->dirs, rel);
    if (opaque && (w->u->below == NULL || w->u->below(w->u->below_data, rel))) {
      it = add_item(w, ITEM_OPAQUE, xasprintf("%s/" WHITEOUT_OPAQUE, rel));
      it->st.st_mode = S_IFREG;
    }
  }
  return 0;
}

/* Read the directory dir (relative; "" for the upperdir itself). */
static int walk_dir(struct walk *w, const char *dir, struct cb_error *err)
{
  int fd = *dir ? cb_open_beneath(w->upperfd, dir, O_RDONLY | O_DIRECTORY)
                : openat(w->upperfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct dirent *de;
  DIR *d;
  int r = 0;

  if (fd < 0)
    return cb_error_errno(err, errno, "open \"%s\"", *dir ? dir : ".");
  d = fdopendir(fd);
  if (d == NULL) {
    int e = errno;
    close(fd);
    return cb_error_errno(err, e, "read \"%s\"", *dir ? dir : ".");
  }
  if (*dir == '\0') {
    struct stat st;
    if (fstat(fd, &st) < 0) {
      r = cb_error_errno(err, errno, "stat the upperdir");
      goto out;
    }
    w->dev = st.st_dev;
  }
  for (;;) {
    errno = 0;
    de = readdir(d);
    if (de == NULL) {
      if (errno != 0)
        r = cb_error_errno(err, errno, "read \"%s\"", *dir ? dir : ".");
      break;
    }
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (walk_entry(w, fd, dir, de->d_name, err) < 0) {
      r = -1;
      break;
    }
  }
out:
  closedir(d);
  return r;
}

static int item_path_cmp(const void *a, const void *b)
{
  const struct item *x = a, *y = b;
  return strcmp(x->path, y->path);
}

static bool link_candidate(const struct item *it)
{
  return it->kind == ITEM_FILE && !S_ISDIR(it->st.st_mode) && it->st.st_nlink > 1;
}

static int inode_cmp(const void *a, const void *b)
{
  const struct item *x = *(const struct item *const *)a, *y = *(const struct item *const *)b;
  if (x->st.st_dev != y->st.st_dev)
    return x->st.st_dev < y->st.st_dev ? -1 : 1;
  if (x->st.st_ino != y->st.st_ino)
    return x->st.st_ino < y->st.st_ino ? -1 : 1;
  /* the same inode: tar order (the items are sorted already) */
  return x < y ? -1 : x > y;
}

/* Items sorted by path: each inode seen twice or more becomes one entry
 * and links to it. */
static void find_hardlinks(struct walk *w)
{
  cleanup_free struct item **v = xcalloc(w->n_items ? w->n_items : 1, sizeof(*v));
  size_t n = 0;
  for (size_t i = 0; i < w->n_items; i++)
    if (link_candidate(&w->items[i]))
      v[n++] = &w->items[i];
  qsort(v, n, sizeof(*v), inode_cmp);
  for (size_t i = 1; i < n; i++) {
    struct item *first = v[i - 1]->hardlink ? NULL : v[i - 1];
    if (v[i]->st.st_dev != v[i - 1]->st.st_dev || v[i]->st.st_ino != v[i - 1]->st.st_ino)
      continue;
    v[i]->hardlink = first ? first->path : v[i - 1]->hardlink;
  }
}

/* Write one item; regular files are opened again beneath the upperdir. */
static int write_item(struct walk *w, struct oci_layer_writer *lw, const struct item *it,
                      struct cb_error *err)
{
  struct oci_entry e;
  cleanup_close int fd = -1;

  memset(&e, 0, sizeof(e));
  e.path = it->path;
  if (it->kind != ITEM_FILE) {
    e.mode = S_IFREG;
    return oci_layer_writer_add_data(lw, &e, NULL, err);
  }
  e.mode = it->st.st_mode & (S_IFMT | 07777);
  e.uid = it->st.st_uid;
  e.gid = it->st.st_gid;
  e.mtime = it->st.st_mtim.tv_sec;
  e.symlink = it->symlink;
  e.hardlink = it->hardlink;
  e.rdev = it->st.st_rdev;
  e.xattrs = it->xattrs;
  e.n_xattrs = it->n_xattrs;
  if (S_ISREG(it->st.st_mode) && it->hardlink == NULL) {
    struct stat now;
    e.size = it->st.st_size;
    if (e.size > 0) {
      /* O_NONBLOCK: a FIFO put in its place must not hang the open */
      fd = cb_open_beneath(w->upperfd, it->src, O_RDONLY | O_NONBLOCK | O_NOCTTY);
      if (fd < 0)
        return cb_error_errno(err, errno, "open \"%s\"", it->src);
      if (fstat(fd, &now) < 0)
        return cb_error_errno(err, errno, "stat \"%s\"", it->src);
      if (now.st_dev != it->st.st_dev || now.st_ino != it->st.st_ino || !S_ISREG(now.st_mode))
        return cb_error_set(err, "\"%s\" was replaced while the layer was written", it->src);
    }
  }
  return oci_layer_writer_add(lw, &e, fd, err);
}

int oci_layer_from_upperdir(int upperfd, const struct oci_upper_options *u, int out_fd,
                            const struct oci_layer_options *o, struct oci_layer_info *info,
                            bool *empty, struct cb_error *err)
{
  struct oci_upper_options none = { NULL, false, NULL, NULL };
  struct oci_layer_writer *lw = NULL;
  struct walk w;
  int r = -1;

  *empty = false;
  memset(&w, 0, sizeof(w));
  w.upperfd = upperfd;
  w.u = u ? u : &none;
  w.opaque_attr = w.u->userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque";
  w.redirect_attr = w.u->userxattr ? "user.overlay.redirect" : "trusted.overlay.redirect";
  w.metacopy_attr = w.u->userxattr ? "user.overlay.metacopy" : "trusted.overlay.metacopy";

  /* w.dirs grows while it is read: a queue, one open directory at a time */
  if (walk_dir(&w, "", err) < 0)
    goto out;
  for (size_t i = 0; i < w.dirs.n; i++) {
    cleanup_free char *dir = xstrdup(w.dirs.v[i]);
    if (walk_dir(&w, dir, err) < 0)
      goto out;
  }
  if (w.n_items == 0) {
    *empty = true;
    r = 0;
    goto out;
  }
  qsort(w.items, w.n_items, sizeof(*w.items), item_path_cmp);
  find_hardlinks(&w);

  lw = oci_layer_writer_new(out_fd, o, err);
  if (lw == NULL)
    goto out;
  for (size_t i = 0; i < w.n_items; i++)
    if (write_item(&w, lw, &w.items[i], err) < 0)
      goto out;
  r = oci_layer_writer_finish(lw, info, err);
out:
  if (r < 0)
    cb_error_wrap(err, "layer from upperdir");
  oci_layer_writer_free(lw);
  for (size_t i = 0; i < w.n_items; i++)
    item_release(&w.items[i]);
  free(w.items);
  strvec_clear(&w.dirs);
  return r;
}
