/*
 * Layers from an overlayfs upperdir (oci/layer-diff.c).  Each test builds
 * an upperdir by hand, as overlayfs would leave it (0/0 character devices
 * for deletions, the opaque xattr on directories made again), makes a
 * layer of it and reads the tar back with libarchive.  What needs root
 * (trusted.* xattrs, device nodes, chown) is skipped, with a note, without.
 */
#include "unit.h"
#include "../../oci/oci.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#define T0 ((int64_t)1600000000)

static bool is_root(void) { return geteuid() == 0; }

/* ---- building an upperdir ---- */

static char *at(const char *dir, const char *rel) { return xasprintf("%s/%s", dir, rel); }

static void set_mtime(const char *path, int64_t t)
{
  struct timespec ts[2] = { { (time_t)t, 0 }, { (time_t)t, 0 } };
  if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0)
    cb_die("utimensat %s: %s", path, strerror(errno));
}

static void put_file(const char *dir, const char *rel, const char *data, mode_t mode)
{
  cleanup_free char *p = at(dir, rel);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || cb_write_all(fd, data, strlen(data)) < 0 || fchmod(fd, mode) < 0 || close(fd) < 0)
    cb_die("write %s: %s", p, strerror(errno));
  set_mtime(p, T0);
}

static void put_dir(const char *dir, const char *rel, mode_t mode)
{
  cleanup_free char *p = at(dir, rel);
  if (mkdir(p, mode) < 0 || chmod(p, mode) < 0)
    cb_die("mkdir %s: %s", p, strerror(errno));
}

static void put_symlink(const char *dir, const char *rel, const char *target)
{
  cleanup_free char *p = at(dir, rel);
  if (symlink(target, p) < 0)
    cb_die("symlink %s: %s", p, strerror(errno));
  set_mtime(p, T0);
}

static void put_link(const char *dir, const char *from, const char *to)
{
  cleanup_free char *a = at(dir, from);
  cleanup_free char *b = at(dir, to);
  if (link(a, b) < 0)
    cb_die("link %s %s: %s", a, b, strerror(errno));
}

/* A 0/0 character device: what overlayfs leaves for a deleted file.  Any
 * user may make one since Linux 5.8. */
static bool put_whiteout(const char *dir, const char *rel)
{
  cleanup_free char *p = at(dir, rel);
  if (mknod(p, S_IFCHR | 0, makedev(0, 0)) < 0) {
    printf("# skipped: mknod whiteout %s: %s\n", rel, strerror(errno));
    return false;
  }
  return true;
}

static bool put_xattr(const char *dir, const char *rel, const char *name, const char *value)
{
  cleanup_free char *p = at(dir, rel);
  if (lsetxattr(p, name, value, strlen(value), 0) < 0) {
    printf("# skipped: setxattr %s on %s: %s\n", name, rel, strerror(errno));
    return false;
  }
  return true;
}

/* Directory mtimes change as entries are made in them: fix them last. */
static void fix_dir_times(const char *dir, const char *const *rels)
{
  for (; *rels; rels++) {
    cleanup_free char *p = at(dir, *rels);
    set_mtime(p, T0);
  }
}

/* ---- making and reading layers ---- */

struct below_set {
  const char *const *dirs;
};

static bool below_cb(void *data, const char *dir)
{
  const struct below_set *b = data;
  for (const char *const *d = b->dirs; d && *d; d++)
    if (strcmp(*d, dir) == 0)
      return true;
  return false;
}

struct made {
  int r;
  bool empty;
  struct oci_layer_info info;
  struct cb_error err;
  char *file; /* the layer's path */
};

static void made_release(struct made *m)
{
  if (m->file)
    unlink(m->file);
  free(m->file);
}

static void make_layer(const char *upper, const struct oci_upper_options *u,
                       enum oci_compression c, int64_t sde, struct made *m)
{
  struct oci_layer_options o = { c, 0, 1, sde, NULL };
  int ufd = open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int fd;
  memset(m, 0, sizeof(*m));
  m->file = xasprintf("%s.layer", upper);
  fd = open(m->file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (ufd < 0 || fd < 0)
    cb_die("open: %s", strerror(errno));
  m->err.msg[0] = '\0';
  m->empty = true; /* must be reset by the callee when it writes */
  m->r = oci_layer_from_upperdir(ufd, u, fd, &o, &m->info, &m->empty, &m->err);
  if (m->r < 0 && (m->err.msg[0] == '\0' || strchr(m->err.msg, '\n')))
    unit_fail(__FILE__, __LINE__, "bad message: \"%s\"", m->err.msg);
  if (m->r < 0)
    printf("# %s\n", m->err.msg);
  close(fd);
  close(ufd);
}

struct rent {
  char *path;
  mode_t mode; /* type and permissions */
  int64_t uid, gid, mtime, size;
  char *hardlink, *symlink;
  dev_t rdev;
  struct strbuf xattrs; /* "name=value;" sorted as in the tar */
  struct strbuf data;
};

struct rtar {
  struct rent *v;
  size_t n, alloc;
};

static void rtar_release(struct rtar *t)
{
  for (size_t i = 0; i < t->n; i++) {
    free(t->v[i].path);
    free(t->v[i].hardlink);
    free(t->v[i].symlink);
    strbuf_release(&t->v[i].xattrs);
    strbuf_release(&t->v[i].data);
  }
  free(t->v);
}

static void read_tar(const char *file, struct rtar *t)
{
  struct archive *a = archive_read_new();
  struct archive_entry *e;
  memset(t, 0, sizeof(*t));
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);
  if (archive_read_open_filename(a, file, 65536) != ARCHIVE_OK)
    cb_die("read %s: %s", file, archive_error_string(a));
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    struct rent *r;
    const char *name;
    const void *value;
    size_t size;
    char buf[4096];
    la_ssize_t n;
    CB_GROW(t->v, t->n + 1, t->alloc);
    r = &t->v[t->n++];
    memset(r, 0, sizeof(*r));
    r->path = xstrdup(archive_entry_pathname(e));
    r->mode = archive_entry_mode(e);
    r->uid = archive_entry_uid(e);
    r->gid = archive_entry_gid(e);
    r->mtime = archive_entry_mtime(e);
    r->size = archive_entry_size(e);
    r->rdev = archive_entry_rdev(e);
    if (archive_entry_hardlink(e))
      r->hardlink = xstrdup(archive_entry_hardlink(e));
    if (archive_entry_symlink(e))
      r->symlink = xstrdup(archive_entry_symlink(e));
    strbuf_init(&r->xattrs, 0);
    strbuf_init(&r->data, 0);
    archive_entry_xattr_reset(e);
    /* pax_restricted writes SCHILY.xattr and LIBARCHIVE.xattr records,
     * and libarchive's reader lists both: one of each name */
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
      struct strbuf one = STRBUF_INIT;
      strbuf_addf(&one, "%s=", name);
      strbuf_add(&one, value, size);
      strbuf_addch(&one, ';');
      if (strstr(r->xattrs.buf, one.buf) == NULL)
        strbuf_add(&r->xattrs, one.buf, one.len);
      strbuf_release(&one);
    }
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0)
      strbuf_add(&r->data, buf, (size_t)n);
  }
  archive_read_free(a);
}

static const struct rent *find(const struct rtar *t, const char *path)
{
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].path, path) == 0)
      return &t->v[i];
  unit_fail(__FILE__, __LINE__, "no entry \"%s\" in the layer", path);
  return NULL;
}

/* The paths, joined by ','. */
static char *paths(const struct rtar *t)
{
  struct strbuf sb = STRBUF_INIT;
  for (size_t i = 0; i < t->n; i++) {
    if (i)
      strbuf_addch(&sb, ',');
    strbuf_addstr(&sb, t->v[i].path);
  }
  return strbuf_detach(&sb, NULL);
}

static void remove_dir(char *dir)
{
  cb_remove_tree(AT_FDCWD, dir);
  free(dir);
}

/* ---- tests ---- */

/* Files, directories, a symlink, a hardlink pair, a FIFO; a socket left
 * out; entries in strcmp order; metadata as on disk. */
static void test_tree(void)
{
  char *upper = unit_temp_dir("tree");
  struct oci_upper_options u = { NULL, false, NULL, NULL };
  struct made m;
  struct rtar t;
  put_file(upper, "a", "hello\n", 0640);
  put_dir(upper, "d", 0750);
  put_file(upper, "d/f", "in d\n", 04755);
  put_file(upper, "h1", "linked\n", 0600);
  put_link(upper, "h1", "d/h2");
  put_symlink(upper, "d/link", "../a");
  {
    cleanup_free char *fifo = at(upper, "fifo");
    cleanup_free char *sock = at(upper, "sock");
    CHECK(mkfifo(fifo, 0620) == 0 && chmod(fifo, 0620) == 0);
    set_mtime(fifo, T0);
    CHECK(mknod(sock, S_IFSOCK | 0600, 0) == 0);
  }
  if (is_root()) {
    cleanup_free char *f = at(upper, "d/f");
    CHECK(lchown(f, 1234, 5678) == 0);
    CHECK(chmod(f, 04755) == 0); /* chown clears set-id bits */
  }
  fix_dir_times(upper, (const char *const[]){ "d", NULL });

  make_layer(upper, &u, OCI_COMPRESSION_NONE, -1, &m);
  CHECK_INT(m.r, 0);
  CHECK(!m.empty);
  read_tar(m.file, &t);
  cleanup_free char *order = paths(&t);
  /* "d/h2" sorts before "h1": it is the file, "h1" the link */
  CHECK_STR(order, "a,d/,d/f,d/h2,d/link,fifo,h1");
  const struct rent *r;
  if ((r = find(&t, "a"))) {
    CHECK_INT(r->mode, S_IFREG | 0640);
    CHECK_INT(r->mtime, T0);
    CHECK_INT(r->size, 6);
    CHECK_STR(r->data.buf, "hello\n");
    CHECK_INT(r->uid, geteuid());
  }
  if ((r = find(&t, "d/"))) {
    CHECK_INT(r->mode, S_IFDIR | 0750);
    CHECK_INT(r->mtime, T0);
  }
  if ((r = find(&t, "d/f"))) {
    CHECK_INT(r->mode, S_IFREG | 04755);
    if (is_root()) {
      CHECK_INT(r->uid, 1234);
      CHECK_INT(r->gid, 5678);
    }
  }
  if ((r = find(&t, "d/h2"))) {
    CHECK(r->hardlink == NULL);
    CHECK_STR(r->data.buf, "linked\n");
  }
  if ((r = find(&t, "h1"))) {
    CHECK_STR(r->hardlink, "d/h2");
    CHECK_INT(r->size, 0);
  }
  if ((r = find(&t, "d/link"))) {
    CHECK_INT(r->mode & S_IFMT, S_IFLNK);
    CHECK_STR(r->symlink, "../a");
  }
  if ((r = find(&t, "fifo")))
    CHECK_INT(r->mode, S_IFIFO | 0620);
  rtar_release(&t);
  made_release(&m);
  remove_dir(upper);
}

/* 0/0 character devices become ".wh.NAME", as containerd writes them;
 * whiteouts sharing an inode stay whiteouts; a real device is kept. */
static void test_whiteouts(void)
{
  char *upper = unit_temp_dir("wh");
  struct oci_upper_options u = { NULL, false, NULL, NULL };
  struct made m;
  struct rtar t;
  bool dev = false;
  put_dir(upper, "d", 0755);
  if (!put_whiteout(upper, "gone") || !put_whiteout(upper, "d/gone")) {
    remove_dir(upper);
    return;
  }
  /* overlayfs links whiteouts to one shared inode */
  put_link(upper, "d/gone", "d/also-gone");
  if (is_root()) {
    cleanup_free char *p = at(upper, "null");
    dev = mknod(p, S_IFCHR | 0666, makedev(1, 3)) == 0 && chmod(p, 0666) == 0;
    CHECK(dev);
  } else {
    printf("# skipped: a real device node needs root\n");
  }
  make_layer(upper, &u, OCI_COMPRESSION_GZIP, -1, &m);
  CHECK_INT(m.r, 0);
  read_tar(m.file, &t);
  cleanup_free char *order = paths(&t);
  CHECK_STR(order, dev ? ".wh.gone,d/,d/.wh.also-gone,d/.wh.gone,null"
                       : ".wh.gone,d/,d/.wh.also-gone,d/.wh.gone");
  static const char *const whs[] = { ".wh.gone", "d/.wh.also-gone", "d/.wh.gone" };
  for (size_t i = 0; i < CB_ARRAY_SIZE(whs); i++) {
    const struct rent *r = find(&t, whs[i]);
    if (!r)
      continue;
    CHECK_INT(r->mode, S_IFREG | 0);
    CHECK_INT(r->uid, 0);
    CHECK_INT(r->gid, 0);
    CHECK_INT(r->mtime, 0);
    CHECK_INT(r->size, 0);
    CHECK(r->hardlink == NULL);
  }
  if (dev) {
    const struct rent *r = find(&t, "null");
    if (r) {
      CHECK_INT(r->mode, S_IFCHR | 0666);
      CHECK(r->rdev == makedev(1, 3));
    }
  }
  rtar_release(&t);
  made_release(&m);
  remove_dir(upper);
}

/* An opaque directory gets its marker only when it exists below. */
static void check_opaque(bool userxattr)
{
  const char *attr = userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque";
  const char *other = userxattr ? "trusted.overlay.opaque" : "user.overlay.opaque";
  char *upper = unit_temp_dir("opq");
  static const char *const below_dirs[] = { "op", "other", "x", NULL };
  struct below_set b = { below_dirs };
  struct oci_upper_options u = { NULL, userxattr, below_cb, &b };
  struct made m;
  struct rtar t;
  if (!userxattr && !is_root()) {
    printf("# skipped: trusted.overlay.opaque needs root\n");
    remove_dir(upper);
    return;
  }
  put_dir(upper, "op", 0755);
  put_file(upper, "op/y", "y\n", 0644);
  put_dir(upper, "newop", 0700);
  put_file(upper, "newop/x", "x\n", 0644);
  put_dir(upper, "x", 0755); /* "x": has xwhiteouts, not opaque */
  put_dir(upper, "other", 0755);
  if (!put_xattr(upper, "op", attr, "y") || !put_xattr(upper, "newop", attr, "y") ||
      !put_xattr(upper, "x", attr, "x")) {
    remove_dir(upper);
    return;
  }
  /* the other namespace's marker means nothing for this mount */
  if (is_root() || !userxattr)
    put_xattr(upper, "other", other, "y");
  make_layer(upper, &u, OCI_COMPRESSION_NONE, -1, &m);
  CHECK_INT(m.r, 0);
  read_tar(m.file, &t);
  cleanup_free char *order = paths(&t);
  CHECK_STR(order, "newop/,newop/x,op/,op/.wh..wh..opq,op/y,other/,x/");
  const struct rent *r = find(&t, "op/.wh..wh..opq");
  if (r) {
    CHECK_INT(r->mode, S_IFREG | 0);
    CHECK_INT(r->uid, 0);
    CHECK_INT(r->mtime, 0);
  }
  /* overlayfs's xattrs never reach the tar */
  for (size_t i = 0; i < t.n; i++)
    CHECK(strstr(t.v[i].xattrs.buf, "overlay") == NULL);
  rtar_release(&t);
  made_release(&m);

  /* without below(), a marker whenever the xattr says so */
  u.below = NULL;
  make_layer(upper, &u, OCI_COMPRESSION_NONE, -1, &m);
  CHECK_INT(m.r, 0);
  read_tar(m.file, &t);
  cleanup_free char *all = paths(&t);
  CHECK_STR(all, "newop/,newop/.wh..wh..opq,newop/x,op/,op/.wh..wh..opq,op/y,other/,x/");
  rtar_release(&t);
  made_release(&m);
  remove_dir(upper);
}

static void test_opaque_trusted(void) { check_opaque(false); }
static void test_opaque_userxattr(void) { check_opaque(true); }

/* user.* and security.capability are kept; overlayfs's own are not. */
static void test_xattrs(void)
{
  char *upper = unit_temp_dir("xattr");
  struct oci_upper_options u = { NULL, true, NULL, NULL };
  struct made m;
  struct rtar t;
  put_file(upper, "f", "x", 0755);
  put_dir(upper, "d", 0755);
  if (!put_xattr(upper, "f", "user.b", "2") || !put_xattr(upper, "f", "user.a", "1") ||
      !put_xattr(upper, "f", "user.overlay.origin", "o") ||
      !put_xattr(upper, "d", "user.dir", "yes")) {
    remove_dir(upper);
    return;
  }
  bool root = is_root();
  if (root) {
    /* a v2 file capability: cap_net_bind_service, effective */
    static const unsigned char cap[20] = { 0x01, 0x00, 0x00, 0x02, 0x00, 0x04 };
    cleanup_free char *p = at(upper, "f");
    CHECK(lsetxattr(p, "security.capability", cap, sizeof(cap), 0) == 0);
    CHECK(put_xattr(upper, "f", "trusted.overlay.origin", "o"));
    CHECK(put_xattr(upper, "f", "trusted.other", "t"));
  }
  make_layer(upper, &u, OCI_COMPRESSION_NONE, -1, &m);
  CHECK_INT(m.r, 0);
  read_tar(m.file, &t);
  const struct rent *r = find(&t, "f");
  if (r) {
    CHECK(strstr(r->xattrs.buf, "user.a=1;") != NULL);
    CHECK(strstr(r->xattrs.buf, "user.b=2;") != NULL);
    CHECK(strstr(r->xattrs.buf, "overlay") == NULL);
    CHECK(strstr(r->xattrs.buf, "trusted") == NULL);
    if (root)
      CHECK(strstr(r->xattrs.buf, "security.capability=") != NULL);
  }
  r = find(&t, "d/");
  if (r)
    CHECK_STR(r->xattrs.buf, "user.dir=yes;");
  rtar_release(&t);
  made_release(&m);
  remove_dir(upper);
}

/* The sandbox's stubs are left out, by exact path; a skipped directory
 * with all it holds; their parents stay unless listed. */
static void test_skip(void)
{
  char *upper = unit_temp_dir("skip");
  struct strvec skip = STRVEC_INIT;
  struct oci_upper_options u = { &skip, false, NULL, NULL };
  struct made m;
  struct rtar t;
  put_dir(upper, "etc", 0755);
  put_file(upper, "etc/hosts", "", 0644);
  put_file(upper, "etc/hostname", "", 0644);
  put_file(upper, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0644);
  put_dir(upper, "proc", 0755);
  put_file(upper, "proc/inside", "", 0644);
  {
    cleanup_free char *p = at(upper, "proc");
    CHECK(chmod(p, 0555) == 0);
  }
  put_dir(upper, "dev", 0755);
  put_file(upper, "hosts", "not a stub\n", 0644);
  strvec_push(&skip, "etc/hosts");
  strvec_push(&skip, "etc/hostname");
  strvec_push(&skip, "proc");
  strvec_push(&skip, "/dev/");
  make_layer(upper, &u, OCI_COMPRESSION_NONE, -1, &m);
  CHECK_INT(m.r, 0);
  read_tar(m.file, &t);
  cleanup_free char *order = paths(&t);
  CHECK_STR(order, "etc/,etc/passwd,hosts");
  rtar_release(&t);
  made_release(&m);
  strvec_clear(&skip);
  {
    cleanup_free char *p = at(upper, "proc");
    chmod(p, 0755);
  }
  remove_dir(upper);
}

/* Nothing changed: *empty, and not a byte written. */
static void test_empty(void)
{
  char *upper = unit_temp_dir("empty");
  struct strvec skip = STRVEC_INIT;
  struct oci_upper_options u = { &skip, false, NULL, NULL };
  struct made m;
  struct stat st;
  make_layer(upper, &u, OCI_COMPRESSION_GZIP, -1, &m);
  CHECK_INT(m.r, 0);
  CHECK(m.empty);
  CHECK(stat(m.file, &st) == 0 && st.st_size == 0);
  made_release(&m);

  /* only stubs and a socket: nothing either */
  put_file(upper, "stub", "", 0644);
  {
    cleanup_free char *sock = at(upper, "sock");
    CHECK(mknod(sock, S_IFSOCK | 0600, 0) == 0);
  }
  strvec_push(&skip, "stub");
  make_layer(upper, &u, OCI_COMPRESSION_GZIP, -1, &m);
  CHECK_INT(m.r, 0);
  CHECK(m.empty);
  CHECK(stat(m.file, &st) == 0 && st.st_size == 0);
  made_release(&m);

  /* and a file makes it a layer */
  put_file(upper, "f", "", 0644);
  make_layer(upper, &u, OCI_COMPRESSION_GZIP, -1, &m);
  CHECK_INT(m.r, 0);
  CHECK(!m.empty);
  CHECK(stat(m.file, &st) == 0 && st.st_size > 0);
  made_release(&m);
  strvec_clear(&skip);
  remove_dir(upper);
}

static void build_same_tree(const char *upper, bool reversed)
{
  /* made in another order: other inode numbers, the same layer */
  if (reversed) {
    put_dir(upper, "z", 0755);
    put_file(upper, "z/last", "zz\n", 0644);
    put_file(upper, "b", "bb\n", 0644);
    put_link(upper, "b", "a");
  } else {
    put_file(upper, "a", "bb\n", 0644);
    put_link(upper, "a", "b");
    put_dir(upper, "z", 0755);
    put_file(upper, "z/last", "zz\n", 0644);
  }
  put_whiteout(upper, "z/gone");
  put_symlink(upper, "s", "z/last");
  fix_dir_times(upper, (const char *const[]){ "z", NULL });
}

/* The same upperdir gives the same bytes, whatever the inode numbers and
 * creation order; diff_id and digest are those of the bytes. */
static void test_deterministic(void)
{
  char *u1 = unit_temp_dir("det1");
  char *u2 = unit_temp_dir("det2");
  struct oci_upper_options u = { NULL, false, NULL, NULL };
  struct made m1, m2, m3;
  build_same_tree(u1, false);
  build_same_tree(u2, true);
  make_layer(u1, &u, OCI_COMPRESSION_GZIP, -1, &m1);
  make_layer(u2, &u, OCI_COMPRESSION_GZIP, -1, &m2);
  CHECK_INT(m1.r, 0);
  CHECK_INT(m2.r, 0);
  cleanup_free char *b1 = unit_slurp(m1.file);
  cleanup_free char *b2 = unit_slurp(m2.file);
  struct stat st;
  CHECK(b1 && b2 && stat(m1.file, &st) == 0);
  CHECK(b1 && b2 && memcmp(b1, b2, (size_t)st.st_size) == 0);
  CHECK_STR(m1.info.digest, m2.info.digest);
  CHECK_STR(m1.info.diff_id, m2.info.diff_id);
  CHECK_INT(m1.info.size, st.st_size);
  {
    char got[OCI_DIGEST_SIZE];
    int64_t size;
    struct cb_error err;
    int fd = open(m1.file, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0 && oci_digest_fd(fd, got, &size, &err) == 0);
    CHECK_STR(got, m1.info.digest);
    CHECK(lseek(fd, 0, SEEK_SET) == 0 && oci_layer_diff_id(fd, got, &err) == 0);
    CHECK_STR(got, m1.info.diff_id);
    close(fd);
  }
  struct rtar t;
  read_tar(m1.file, &t);
  cleanup_free char *order = paths(&t);
  CHECK_STR(order, "a,b,s,z/,z/.wh.gone,z/last");
  const struct rent *r = find(&t, "b");
  if (r)
    CHECK_STR(r->hardlink, "a");
  rtar_release(&t);

  /* SOURCE_DATE_EPOCH clamps file times; whiteouts stay at 0 */
  make_layer(u1, &u, OCI_COMPRESSION_NONE, 1000, &m3);
  CHECK_INT(m3.r, 0);
  read_tar(m3.file, &t);
  for (size_t i = 0; i < t.n; i++)
    CHECK_INT(t.v[i].mtime, strstr(t.v[i].path, ".wh.") ? 0 : 1000);
  rtar_release(&t);
  made_release(&m1);
  made_release(&m2);
  made_release(&m3);
  remove_dir(u1);
  remove_dir(u2);
}

/* What a layer cannot say is refused, not written wrong. */
static void test_refused(void)
{
  struct oci_upper_options u = { NULL, true, NULL, NULL };
  struct made m;
  char *upper = unit_temp_dir("refused");
  put_file(upper, ".wh.looks-deleted", "", 0644);
  make_layer(upper, &u, OCI_COMPRESSION_NONE, -1, &m);
  CHECK_INT(m.r, -1);
  CHECK(!m.empty);
  CHECK_CONTAINS(m.err.msg, "\".wh.looks-deleted\": a name starting with \".wh.\"");
  made_release(&m);
  remove_dir(upper);

  upper = unit_temp_dir("redirect");
  put_dir(upper, "d", 0755);
  put_dir(upper, "d/moved", 0755);
  if (put_xattr(upper, "d/moved", "user.overlay.redirect", "/old")) {
    make_layer(upper, &u, OCI_COMPRESSION_NONE, -1, &m);
    CHECK_INT(m.r, -1);
    CHECK_CONTAINS(m.err.msg, "\"d/moved\" has xattr \"user.overlay.redirect\"");
    CHECK_CONTAINS(m.err.msg, "redirect_dir=off,metacopy=off");
    made_release(&m);
  }
  remove_dir(upper);

  if (is_root()) {
    upper = unit_temp_dir("metacopy");
    put_file(upper, "f", "", 0644);
    u.userxattr = false;
    CHECK(put_xattr(upper, "f", "trusted.overlay.metacopy", ""));
    make_layer(upper, &u, OCI_COMPRESSION_NONE, -1, &m);
    CHECK_INT(m.r, -1);
    CHECK_CONTAINS(m.err.msg, "\"f\" has xattr \"trusted.overlay.metacopy\"");
    made_release(&m);
    remove_dir(upper);
  }
}

/* A layer made from an upperdir and unpacked as a snapshot gives the
 * upperdir's whiteouts and opaque directory back. */
static void test_round_trip(void)
{
  char *upper = unit_temp_dir("rt");
  char *snap = unit_temp_dir("rt-snap");
  static const char *const below_dirs[] = { "op", NULL };
  struct below_set b = { below_dirs };
  struct oci_upper_options u = { NULL, true, below_cb, &b };
  struct made m;
  struct cb_error err;
  struct stat st, st2;
  char buf[8];
  put_dir(upper, "op", 0711);
  put_file(upper, "op/new", "new\n", 0644);
  put_file(upper, "f", "f\n", 0644);
  put_link(upper, "f", "g");
  if (!put_whiteout(upper, "gone") || !put_xattr(upper, "op", "user.overlay.opaque", "y")) {
    remove_dir(upper);
    remove_dir(snap);
    return;
  }
  make_layer(upper, &u, OCI_COMPRESSION_ZSTD, -1, &m);
  CHECK_INT(m.r, 0);
  int lfd = open(m.file, O_RDONLY | O_CLOEXEC);
  int sfd = open(snap, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  char digest[OCI_DIGEST_SIZE], diff_id[OCI_DIGEST_SIZE];
  CHECK_INT(oci_layer_unpack_overlay(lfd, sfd, true, digest, diff_id, &err), 0);
  /* one read gives both digests, as the layer writer had them */
  CHECK_STR(digest, m.info.digest);
  CHECK_STR(diff_id, m.info.diff_id);
  close(lfd);
  close(sfd);
  cleanup_free char *gone = at(snap, "gone");
  cleanup_free char *op = at(snap, "op");
  cleanup_free char *f = at(snap, "f");
  cleanup_free char *g = at(snap, "g");
  cleanup_free char *newf = at(snap, "op/new");
  cleanup_free char *marker = at(snap, "op/.wh..wh..opq");
  CHECK(lstat(gone, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
  CHECK_INT(lgetxattr(op, "user.overlay.opaque", buf, sizeof(buf)), 1);
  CHECK(buf[0] == 'y');
  CHECK(lstat(marker, &st) < 0 && errno == ENOENT);
  CHECK(lstat(op, &st) == 0 && st.st_mode == (S_IFDIR | 0711));
  CHECK(lstat(f, &st) == 0 && lstat(g, &st2) == 0 && st.st_ino == st2.st_ino);
  cleanup_free char *content = unit_slurp(newf);
  CHECK_STR(content, "new\n");
  made_release(&m);
  remove_dir(upper);
  remove_dir(snap);
}

/* below() for a real lower directory. */
static bool below_dir(void *data, const char *dir)
{
  cleanup_free char *p = at(data, dir);
  struct stat st;
  return lstat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* What the kernel leaves in an upperdir, made into a layer: a deleted
 * file, "rm -rf dir && mkdir dir", a file replaced by a directory, a new
 * hardlink pair. */
static void check_real_overlay(bool userxattr)
{
  char *top = unit_temp_dir(userxattr ? "ovl-u" : "ovl");
  cleanup_free char *lower = at(top, "lower");
  cleanup_free char *upper = at(top, "upper");
  cleanup_free char *work = at(top, "work");
  cleanup_free char *merged = at(top, "merged");
  struct oci_upper_options u = { NULL, userxattr, below_dir, lower };
  struct made m;
  struct rtar t;
  int status;
  pid_t pid;

  if (!is_root()) {
    printf("# skipped: mounting overlayfs needs root\n");
    remove_dir(top);
    return;
  }
  CHECK(mkdir(lower, 0755) == 0 && mkdir(upper, 0755) == 0 && mkdir(work, 0700) == 0 &&
        mkdir(merged, 0755) == 0);
  put_file(lower, "keep", "keep\n", 0644);
  put_file(lower, "del", "del\n", 0644);
  put_dir(lower, "dir", 0755);
  put_file(lower, "dir/a", "a\n", 0644);
  put_file(lower, "was-file", "f\n", 0644);
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    cleanup_free char *opts = xasprintf("lowerdir=%s,upperdir=%s,workdir=%s%s", lower, upper,
                                        work, userxattr ? ",userxattr" : "");
    cleanup_free char *del = at(merged, "del");
    cleanup_free char *wf = at(merged, "was-file");
    cleanup_free char *dir = at(merged, "dir");
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("overlay", merged, "overlay", 0, opts) < 0) {
      printf("# skipped: mount overlay: %s\n", strerror(errno));
      _exit(3);
    }
    if (unlink(del) < 0 || cb_remove_tree(AT_FDCWD, dir) < 0)
      _exit(1);
    put_dir(merged, "dir", 0700);
    put_file(merged, "dir/c", "c\n", 0644);
    put_file(merged, "new", "n\n", 0644);
    put_link(merged, "new", "new2");
    if (unlink(wf) < 0)
      _exit(1);
    put_dir(merged, "was-file", 0755);
    _exit(umount(merged) < 0 ? 1 : 0);
  }
  CHECK(waitpid(pid, &status, 0) == pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
    remove_dir(top);
    return;
  }
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  make_layer(upper, &u, OCI_COMPRESSION_GZIP, -1, &m);
  CHECK_INT(m.r, 0);
  read_tar(m.file, &t);
  cleanup_free char *order = paths(&t);
  CHECK_STR(order, ".wh.del,dir/,dir/.wh..wh..opq,dir/c,new,new2,was-file/");
  const struct rent *r = find(&t, "new2");
  if (r)
    CHECK_STR(r->hardlink, "new");
  for (size_t i = 0; i < t.n; i++)
    CHECK(strstr(t.v[i].xattrs.buf, "overlay") == NULL);
  rtar_release(&t);
  made_release(&m);
  remove_dir(top);
}

static void test_real_overlay(void) { check_real_overlay(false); }
static void test_real_overlay_userxattr(void) { check_real_overlay(true); }

static const struct unit_test tests[] = {
  { "tree", test_tree },
  { "whiteouts", test_whiteouts },
  { "opaque_trusted", test_opaque_trusted },
  { "opaque_userxattr", test_opaque_userxattr },
  { "xattrs", test_xattrs },
  { "skip", test_skip },
  { "empty", test_empty },
  { "deterministic", test_deterministic },
  { "refused", test_refused },
  { "round_trip", test_round_trip },
  { "real_overlay", test_real_overlay },
  { "real_overlay_userxattr", test_real_overlay_userxattr },
};

UNIT_MAIN(tests)
