/*
 * Snapshots (cache/snapshot.c, over oci_layer_unpack_overlay in
 * oci/extract.c).  Layers are made here with libarchive's writer, hostile
 * ones included, stored as blobs in a fresh store, and unpacked with
 * cache_snapshot_get().  A canary directory next to the store must never
 * change.  What needs root (trusted.* xattrs, chown, device nodes) is
 * skipped, with a note, without it.
 */
#include "unit.h"
#include "../../cache/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#define T0 ((int64_t)1600000000)

static bool is_root(void) { return geteuid() == 0; }

/* ---- making layers ---- */

struct tent {
  char type; /* 'f' file, 'd' dir, 'l' symlink, 'h' hardlink, 'c' char dev (1,3) */
  const char *path;
  const char *data; /* content, or the link's target */
  mode_t perm;
  uid_t uid;
  gid_t gid;
  const char *xattr; /* "name=value" */
};

static la_ssize_t to_strbuf(struct archive *a, void *data, const void *buf, size_t n)
{
  strbuf_add(data, buf, n);
  return (la_ssize_t)n;
}

/* The tar of ents, uncompressed, into out. */
static void make_tar(const struct tent *ents, size_t n, struct strbuf *out)
{
  struct archive *a = archive_write_new();
  if (archive_write_set_format_pax(a) != ARCHIVE_OK ||
      archive_write_open2(a, out, NULL, to_strbuf, NULL, NULL) != ARCHIVE_OK)
    cb_die("write tar: %s", archive_error_string(a));
  for (size_t i = 0; i < n; i++) {
    const struct tent *t = &ents[i];
    struct archive_entry *e = archive_entry_new();
    size_t size = 0;
    archive_entry_set_pathname(e, t->path);
    archive_entry_set_mtime(e, T0, 0);
    archive_entry_set_uid(e, t->uid);
    archive_entry_set_gid(e, t->gid);
    switch (t->type) {
    case 'f':
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, t->perm ? t->perm : 0644);
      size = t->data ? strlen(t->data) : 0;
      break;
    case 'd':
      archive_entry_set_filetype(e, AE_IFDIR);
      archive_entry_set_perm(e, t->perm ? t->perm : 0755);
      break;
    case 'l':
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_perm(e, 0777);
      archive_entry_set_symlink(e, t->data);
      break;
    case 'h':
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_hardlink(e, t->data);
      break;
    case 'c':
      archive_entry_set_filetype(e, AE_IFCHR);
      archive_entry_set_perm(e, 0666);
      archive_entry_set_rdev(e, makedev(1, 3));
      break;
    default:
      cb_die("bad test entry type %c", t->type);
    }
    archive_entry_set_size(e, (la_int64_t)size);
    if (t->xattr) {
      const char *eq = strchr(t->xattr, '=');
      char *name = xstrndup(t->xattr, (size_t)(eq - t->xattr));
      archive_entry_xattr_add_entry(e, name, eq + 1, strlen(eq + 1));
      free(name);
    }
    if (archive_write_header(a, e) != ARCHIVE_OK ||
        (size > 0 && archive_write_data(a, t->data, size) != (la_ssize_t)size))
      cb_die("write tar: %s: %s", t->path, archive_error_string(a));
    archive_entry_free(e);
  }
  if (archive_write_close(a) != ARCHIVE_OK)
    cb_die("write tar: %s", archive_error_string(a));
  archive_write_free(a);
}

/* data compressed as is (libarchive's "raw" format), into out. */
static void compress(const struct strbuf *data, enum oci_compression c, struct strbuf *out)
{
  struct archive *a = archive_write_new();
  struct archive_entry *e = archive_entry_new();
  int r = archive_write_set_format_raw(a);
  if (r == ARCHIVE_OK)
    r = c == OCI_COMPRESSION_GZIP ? archive_write_add_filter_gzip(a)
                                  : archive_write_add_filter_zstd(a);
  /* no padding of the compressed stream to 10 KiB blocks */
  if (r == ARCHIVE_OK)
    r = archive_write_set_bytes_in_last_block(a, 1);
  if (r != ARCHIVE_OK || archive_write_open2(a, out, NULL, to_strbuf, NULL, NULL) != ARCHIVE_OK)
    cb_die("compress: %s", archive_error_string(a));
  archive_entry_set_pathname(e, "data");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, (la_int64_t)data->len);
  if (archive_write_header(a, e) != ARCHIVE_OK ||
      archive_write_data(a, data->buf, data->len) != (la_ssize_t)data->len ||
      archive_write_close(a) != ARCHIVE_OK)
    cb_die("compress: %s", archive_error_string(a));
  archive_entry_free(e);
  archive_write_free(a);
}

/* A layer in the store: its descriptor's digest and its diff_id. */
struct layer {
  char digest[OCI_DIGEST_SIZE];
  char diff_id[OCI_DIGEST_SIZE];
  struct oci_descriptor desc;
};

static void put_layer(struct cache_store *s, const struct tent *ents, size_t n,
                      enum oci_compression c, struct layer *l)
{
  struct strbuf tar = STRBUF_INIT, blob = STRBUF_INIT;
  struct cb_error err;
  make_tar(ents, n, &tar);
  oci_digest_buf(tar.buf, tar.len, l->diff_id);
  if (c == OCI_COMPRESSION_NONE)
    strbuf_add(&blob, tar.buf, tar.len);
  else
    compress(&tar, c, &blob);
  if (cache_blob_put(s, blob.buf, blob.len, l->digest, &err) < 0)
    cb_die("%s", err.msg);
  memset(&l->desc, 0, sizeof(l->desc));
  l->desc.media_type = (char *)oci_compression_media_type(c);
  l->desc.digest = l->digest;
  l->desc.size = (int64_t)blob.len;
  strbuf_release(&tar);
  strbuf_release(&blob);
}

#define PUT_LAYER(s, ents, c, l) put_layer((s), (ents), CB_ARRAY_SIZE(ents), (c), (l))

/* ---- the fixture ---- */

struct fx {
  char *top;    /* TOP: store and canary */
  char *root;   /* the store */
  char *canary; /* holds "keep" */
  char *keep;
  struct cache_store *s;
};

static void fx_init(struct fx *f)
{
  const char *tmp = getenv("TMPDIR");
  struct cb_error err;
  int fd;
  f->top = xasprintf("%s/cbuild-test-snapshot.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(f->top) == NULL)
    cb_die("mkdtemp %s: %s", f->top, strerror(errno));
  f->root = xasprintf("%s/store", f->top);
  f->canary = xasprintf("%s/canary", f->top);
  f->keep = xasprintf("%s/keep", f->canary);
  if (mkdir(f->canary, 0755) < 0)
    cb_die("mkdir: %s", strerror(errno));
  fd = open(f->keep, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, "canary\n", 7) != 7 || close(fd) < 0)
    cb_die("write %s: %s", f->keep, strerror(errno));
  f->s = cache_store_open(f->root, &err);
  if (f->s == NULL)
    cb_die("%s", err.msg);
}

/* Snapshots hold 0555 and 0000 directories: make them removable. */
static void make_writable(const char *path)
{
  cleanup_free char *cmd = xasprintf("chmod -R u+rwx '%s' 2>/dev/null", path);
  if (system(cmd) != 0) {
    /* some entries may be symlinks or devices: nothing to worry about */
  }
}

static void fx_release(struct fx *f)
{
  cache_store_close(f->s);
  make_writable(f->top);
  cb_remove_tree(AT_FDCWD, f->top);
  free(f->top);
  free(f->root);
  free(f->canary);
  free(f->keep);
}

static char *in(const char *dir, const char *rel) { return xasprintf("%s/%s", dir, rel); }

/* ROOT/snapshots holds exactly `want`, ROOT/tmp no attempt, the canary
 * its one file unchanged. */
static bool store_clean(struct fx *f, const char *want)
{
  cleanup_free char *snaps = in(f->root, "snapshots");
  cleanup_free char *tmp = in(f->root, "tmp");
  cleanup_free char *have = unit_list_dir(snaps);
  cleanup_free char *tmps = unit_list_dir(tmp);
  cleanup_free char *canary = unit_list_dir(f->canary);
  cleanup_free char *top = unit_list_dir(f->top);
  struct strbuf keep = STRBUF_INIT;
  struct cb_error err;
  bool ok = true;
  if (strcmp(have, want) != 0) {
    printf("# snapshots/ holds \"%s\", expected \"%s\"\n", have, want);
    ok = false;
  }
  if (strstr(tmps, "snapshot-") != NULL) {
    printf("# tmp/ holds \"%s\"\n", tmps);
    ok = false;
  }
  if (strcmp(canary, "keep") != 0 || strcmp(top, "canary,store") != 0 ||
      cb_read_file(f->keep, &keep, &err) < 0 || strcmp(keep.buf, "canary\n") != 0) {
    printf("# the canary changed: %s / %s\n", top, canary);
    ok = false;
  }
  strbuf_release(&keep);
  return ok;
}

static int get(struct fx *f, const struct layer *l, const char *diff_id, bool userxattr,
               char **path, struct cb_error *err)
{
  int r;
  err->msg[0] = '\0';
  r = cache_snapshot_get(f->s, &l->desc, diff_id ? diff_id : l->diff_id, userxattr, path, err);
  if (r < 0) {
    printf("# %s\n", err->msg);
    if (err->msg[0] == '\0' || strchr(err->msg, '\n') != NULL)
      unit_fail(__FILE__, __LINE__, "bad message \"%s\"", err->msg);
    if (*path != NULL)
      unit_fail(__FILE__, __LINE__, "a path on failure");
  }
  return r;
}

static char *expected_path(struct fx *f, const struct layer *l, bool userxattr)
{
  return xasprintf("%s/snapshots/%s%s", f->root, l->diff_id + 7, userxattr ? "-u" : "");
}

static bool is_whiteout(const char *path)
{
  struct stat st;
  return lstat(path, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

/* The value of xattr name on path ("" when absent). */
static char *xattr_of(const char *path, const char *name)
{
  char buf[256];
  ssize_t n = lgetxattr(path, name, buf, sizeof(buf) - 1);
  if (n < 0)
    return xstrdup("");
  buf[n] = '\0';
  return xstrdup(buf);
}

/* ---- tests ---- */

static const struct tent basic_layer[] = {
  { 'd', "./", NULL, 0755, 0, 0, NULL },
  { 'd', "etc/", NULL, 0755, 0, 0, NULL },
  { 'f', "etc/.wh.shadow", NULL, 0, 0, 0, NULL },
  { 'f', "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0644, 0, 0, NULL },
  { 'd', "var/", NULL, 0750, 0, 0, NULL },
  { 'f', "var/.wh..wh..opq", NULL, 0, 0, 0, NULL },
  { 'f', "var/log", "log\n", 0600, 0, 0, NULL },
  /* AUFS bookkeeping: not a file, not a whiteout */
  { 'd', "usr/", NULL, 0755, 0, 0, NULL },
  { 'f', "usr/.wh..wh.plnk", NULL, 0, 0, 0, NULL },
  { 'd', "bin/", NULL, 0755, 0, 0, NULL },
  { 'f', "bin/sh", "#!\n", 04755, 1234, 5678, NULL },
  { 'h', "bin/ash", "bin/sh", 0, 0, 0, NULL },
  { 'l', "bin/link", "sh", 0, 0, 0, NULL },
  /* overlayfs's own xattrs from the tar are never applied */
  { 'f', "ov", "x", 0, 0, 0, "trusted.overlay.redirect=/etc" },
  { 'd', "uo/", NULL, 0, 0, 0, "user.overlay.opaque=y" },
  { 'f', "ux", "x", 0, 0, 0, "user.kept=yes" },
  /* one layer deleting and making again: the directory replaces it */
  { 'f', ".wh.replaced", NULL, 0, 0, 0, NULL },
  { 'd', "replaced/", NULL, 0700, 0, 0, NULL },
  /* a file of this layer stays, whatever its whiteout says */
  { 'f', "kept", "kept\n", 0, 0, 0, NULL },
  { 'f', ".wh.kept", NULL, 0, 0, 0, NULL },
  { 'c', "null", NULL, 0, 0, 0, NULL },
};

static void check_basic(struct fx *f, const char *p, bool userxattr)
{
  const char *opq = userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque";
  const char *other = userxattr ? "trusted.overlay.opaque" : "user.overlay.opaque";
  cleanup_free char *shadow = in(p, "etc/shadow");
  cleanup_free char *passwd = in(p, "etc/passwd");
  cleanup_free char *var = in(p, "var");
  cleanup_free char *usr = in(p, "usr");
  cleanup_free char *sh = in(p, "bin/sh");
  cleanup_free char *ash = in(p, "bin/ash");
  cleanup_free char *ov = in(p, "ov");
  cleanup_free char *uo = in(p, "uo");
  cleanup_free char *ux = in(p, "ux");
  cleanup_free char *replaced = in(p, "replaced");
  cleanup_free char *kept = in(p, "kept");
  cleanup_free char *null = in(p, "null");
  struct stat st, st2;

  CHECK(is_whiteout(shadow));
  cleanup_free char *pw = unit_slurp(passwd);
  CHECK_STR(pw, "root:x:0:0::/root:/bin/sh\n");
  cleanup_free char *v1 = xattr_of(var, opq);
  cleanup_free char *v2 = xattr_of(var, other);
  CHECK_STR(v1, "y");
  CHECK_STR(v2, "");
  CHECK(lstat(var, &st) == 0 && st.st_mode == (S_IFDIR | 0750));
  cleanup_free char *usr_list = unit_list_dir(usr);
  CHECK_STR(usr_list, "");
  cleanup_free char *var_list = unit_list_dir(var);
  CHECK_STR(var_list, "log");
  CHECK(lstat(sh, &st) == 0 && lstat(ash, &st2) == 0 && st.st_ino == st2.st_ino);
  CHECK_INT(st.st_mode, S_IFREG | 04755);
  if (is_root()) {
    CHECK_INT(st.st_uid, 1234);
    CHECK_INT(st.st_gid, 5678);
  } else {
    /* chown refused: the caller's ids, which the user namespace maps */
    CHECK_INT(st.st_uid, geteuid());
  }
  cleanup_free char *a = xattr_of(ov, "trusted.overlay.redirect");
  cleanup_free char *b = xattr_of(uo, "user.overlay.opaque");
  cleanup_free char *c = xattr_of(ux, "user.kept");
  CHECK_STR(a, "");
  CHECK_STR(b, "");
  CHECK_STR(c, "yes");
  cleanup_free char *r = xattr_of(replaced, opq);
  CHECK_STR(r, "y");
  CHECK(lstat(replaced, &st) == 0 && st.st_mode == (S_IFDIR | 0700));
  cleanup_free char *k = unit_slurp(kept);
  CHECK_STR(k, "kept\n");
  if (is_root()) {
    CHECK(lstat(null, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
  } else {
    printf("# device node skipped without CAP_MKNOD\n");
    CHECK(lstat(null, &st) < 0);
  }
  cleanup_free char *names = unit_list_dir(p);
  CHECK_STR(names, is_root() ? "bin,etc,kept,null,ov,replaced,uo,usr,ux,var"
                             : "bin,etc,kept,ov,replaced,uo,usr,ux,var");
  (void)f;
}

/* Whiteouts become 0/0 devices, opaque markers the xattr; the snapshot
 * is made once and found after. */
static void test_basic(void)
{
  struct fx f;
  struct layer l;
  struct cb_error err;
  char *p = NULL;
  struct stat st1, st2;
  fx_init(&f);
  if (!is_root()) {
    printf("# skipped: trusted.overlay.opaque needs root (see rootless_key)\n");
    fx_release(&f);
    return;
  }
  PUT_LAYER(f.s, basic_layer, OCI_COMPRESSION_GZIP, &l);
  CHECK_INT(get(&f, &l, NULL, false, &p, &err), 0);
  cleanup_free char *want = expected_path(&f, &l, false);
  CHECK_STR(p, want);
  CHECK(p && p[0] == '/');
  if (p) {
    check_basic(&f, p, false);
    CHECK(lstat(p, &st1) == 0 && st1.st_mode == (S_IFDIR | 0755));
  }
  cleanup_free char *snaps = in(f.root, "snapshots");
  CHECK(lstat(snaps, &st2) == 0 && st2.st_mode == (S_IFDIR | 0700));
  /* again: the same directory, not made anew */
  char *p2 = NULL;
  CHECK_INT(get(&f, &l, NULL, false, &p2, &err), 0);
  CHECK_STR(p2, p);
  CHECK(p2 && lstat(p2, &st2) == 0 && st1.st_ino == st2.st_ino);
  CHECK(store_clean(&f, l.diff_id + 7));
  free(p);
  free(p2);
  fx_release(&f);
}

/* gzip, zstd and none, told apart by content; one diff_id, one snapshot
 * whatever the compression. */
static void test_compressions(void)
{
  static const struct tent ents[] = {
    { 'd', "d/", NULL, 0, 0, 0, NULL },
    { 'f', "d/f", "compressed\n", 0, 0, 0, NULL },
    { 'f', ".wh.x", NULL, 0, 0, 0, NULL },
  };
  static const struct tent other[] = { { 'f', "zstd-only", "z\n", 0, 0, 0, NULL } };
  struct fx f;
  struct layer gz, zs, none, z2;
  struct cb_error err;
  struct stat st1, st2;
  char *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL;
  fx_init(&f);
  PUT_LAYER(f.s, ents, OCI_COMPRESSION_GZIP, &gz);
  PUT_LAYER(f.s, ents, OCI_COMPRESSION_ZSTD, &zs);
  PUT_LAYER(f.s, ents, OCI_COMPRESSION_NONE, &none);
  PUT_LAYER(f.s, other, OCI_COMPRESSION_ZSTD, &z2);
  CHECK(strcmp(gz.digest, zs.digest) != 0 && strcmp(gz.digest, none.digest) != 0);
  CHECK_STR(gz.diff_id, zs.diff_id);
  CHECK_STR(none.digest, none.diff_id);
  /* userxattr: this test runs without root too */
  CHECK_INT(get(&f, &zs, NULL, true, &p1, &err), 0);
  CHECK_INT(get(&f, &gz, NULL, true, &p2, &err), 0);
  CHECK_INT(get(&f, &none, NULL, true, &p3, &err), 0);
  CHECK_STR(p1, p2);
  CHECK_STR(p1, p3);
  CHECK(p1 && p2 && lstat(p1, &st1) == 0 && lstat(p2, &st2) == 0 && st1.st_ino == st2.st_ino);
  cleanup_free char *df = p1 ? in(p1, "d/f") : NULL;
  cleanup_free char *x = p1 ? in(p1, "x") : NULL;
  cleanup_free char *content = df ? unit_slurp(df) : NULL;
  CHECK_STR(content, "compressed\n");
  CHECK(x && is_whiteout(x));
  CHECK_INT(get(&f, &z2, NULL, true, &p4, &err), 0);
  cleanup_free char *zf = p4 ? in(p4, "zstd-only") : NULL;
  cleanup_free char *zc = zf ? unit_slurp(zf) : NULL;
  CHECK_STR(zc, "z\n");
  const char *k1 = gz.diff_id + 7, *k2 = z2.diff_id + 7;
  cleanup_free char *want = strcmp(k1, k2) < 0 ? xasprintf("%s-u,%s-u", k1, k2)
                                               : xasprintf("%s-u,%s-u", k2, k1);
  CHECK(store_clean(&f, want));
  free(p1);
  free(p2);
  free(p3);
  free(p4);
  fx_release(&f);
}

/* Rootless snapshots (userxattr) are kept apart: their opaque marker is
 * in another xattr namespace. */
static void test_rootless_key(void)
{
  struct fx f;
  struct layer l;
  struct cb_error err;
  char *pu = NULL, *pr = NULL;
  fx_init(&f);
  PUT_LAYER(f.s, basic_layer, OCI_COMPRESSION_GZIP, &l);
  CHECK_INT(get(&f, &l, NULL, true, &pu, &err), 0);
  cleanup_free char *want_u = expected_path(&f, &l, true);
  CHECK_STR(pu, want_u);
  if (pu)
    check_basic(&f, pu, true);
  if (is_root()) {
    CHECK_INT(get(&f, &l, NULL, false, &pr, &err), 0);
    cleanup_free char *want_r = expected_path(&f, &l, false);
    CHECK_STR(pr, want_r);
    cleanup_free char *var = pr ? in(pr, "var") : NULL;
    cleanup_free char *v = var ? xattr_of(var, "user.overlay.opaque") : NULL;
    CHECK_STR(v, "");
    cleanup_free char *both = xasprintf("%s,%s-u", l.diff_id + 7, l.diff_id + 7);
    CHECK(store_clean(&f, both));
  } else {
    /* trusted.* cannot be set without privilege: a clear refusal */
    CHECK_INT(get(&f, &l, NULL, false, &pr, &err), -1);
    CHECK_CONTAINS(err.msg, "trusted.overlay.opaque");
    CHECK_CONTAINS(err.msg, "userxattr");
    cleanup_free char *only = xasprintf("%s-u", l.diff_id + 7);
    CHECK(store_clean(&f, only));
  }
  free(pu);
  free(pr);
  fx_release(&f);
}

/* Hostile layers: confined like oci_archive_extract, and a refused one
 * leaves no snapshot and no attempt behind. */
static void check_hostile(void)
{
  struct fx f;
  struct cb_error err;
  struct layer l1, l2, l3, l4;
  char *p = NULL;
  fx_init(&f);
  const struct tent dotdot[] = { { 'f', "../../canary/pwned", "x", 0, 0, 0, NULL } };
  const struct tent wh_dotdot[] = { { 'f', "a/.wh..", NULL, 0, 0, 0, NULL } };
  const struct tent through_link[] = {
    { 'l', "link", f.canary, 0, 0, 0, NULL },
    { 'f', "link/.wh.keep", NULL, 0, 0, 0, NULL },
  };
  const struct tent confined[] = {
    { 'l', "up", "../../../..", 0, 0, 0, NULL },
    { 'd', "etc/", NULL, 0, 0, 0, NULL },
    { 'l', "etc/slash", "/", 0, 0, 0, NULL },
    { 'f', "etc/slash/.wh.keep", NULL, 0, 0, 0, NULL },
    { 'f', "up/.wh..wh..opq", NULL, 0, 0, 0, NULL },
    { 'f', "/abs/file", "abs\n", 0, 0, 0, NULL },
  };
  PUT_LAYER(f.s, dotdot, OCI_COMPRESSION_NONE, &l1);
  PUT_LAYER(f.s, wh_dotdot, OCI_COMPRESSION_GZIP, &l2);
  PUT_LAYER(f.s, through_link, OCI_COMPRESSION_GZIP, &l3);
  PUT_LAYER(f.s, confined, OCI_COMPRESSION_GZIP, &l4);

  CHECK_INT(get(&f, &l1, NULL, true, &p, &err), -1);
  CHECK_CONTAINS(err.msg, "entry \"../../canary/pwned\": path leaves the destination");
  CHECK_INT(get(&f, &l2, NULL, true, &p, &err), -1);
  CHECK_CONTAINS(err.msg, "entry \"a/.wh..\": ");
  /* the link's target does not exist inside the snapshot: nothing made */
  CHECK_INT(get(&f, &l3, NULL, true, &p, &err), -1);
  CHECK_CONTAINS(err.msg, "entry \"link/.wh.keep\": open \"link\": No such file or directory");
  CHECK(store_clean(&f, ""));

  CHECK_INT(get(&f, &l4, NULL, true, &p, &err), 0);
  if (p) {
    cleanup_free char *keep = in(p, "keep");
    cleanup_free char *abs = in(p, "abs/file");
    cleanup_free char *opq = xattr_of(p, "user.overlay.opaque");
    cleanup_free char *content = unit_slurp(abs);
    CHECK(is_whiteout(keep));
    CHECK_STR(opq, "y");
    CHECK_STR(content, "abs\n");
  }
  cleanup_free char *want = xasprintf("%s-u", l4.diff_id + 7);
  CHECK(store_clean(&f, want));
  free(p);
  fx_release(&f);
}

static void test_hostile(void) { check_hostile(); }

/* The same without openat2: a re-executed child with CBUILD_NO_OPENAT2=1. */
static void test_hostile_fallback(void)
{
  int status;
  pid_t pid;
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    char *argv[] = { (char *)"test-snapshot", (char *)"--fallback-child", NULL };
    setenv("CBUILD_NO_OPENAT2", "1", 1);
    execv("/proc/self/exe", argv);
    printf("# exec /proc/self/exe: %s\n", strerror(errno));
    _exit(2);
  }
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A blob that does not match its digest is refused, and removed: one
 * whose tar still reads (uncompressed), and one that no longer decompresses
 * (the blob is unpacked while it is hashed). */
static void test_corrupt_blob(void)
{
  static const struct tent ents[] = { { 'f', "f", "original content\n", 0, 0, 0, NULL } };
  static const enum oci_compression cs[] = { OCI_COMPRESSION_NONE, OCI_COMPRESSION_GZIP };
  for (size_t i = 0; i < CB_ARRAY_SIZE(cs); i++) {
    struct fx f;
    struct layer l;
    struct cb_error err;
    struct stat st;
    char *p = NULL;
    fx_init(&f);
    PUT_LAYER(f.s, ents, cs[i], &l);
    {
      cleanup_free char *blob = xasprintf("%s/blobs/sha256/%s", f.root, l.digest + 7);
      int fd = open(blob, O_RDWR | O_CLOEXEC);
      char c = 0;
      /* one byte changed in the middle, the size kept */
      CHECK(fd >= 0 && fstat(fd, &st) == 0 && pread(fd, &c, 1, st.st_size / 2) == 1);
      c = (char)~c;
      CHECK(pwrite(fd, &c, 1, st.st_size / 2) == 1);
      close(fd);
    }
    CHECK_INT(get(&f, &l, NULL, true, &p, &err), -1);
    cleanup_free char *want = xasprintf("snapshot of layer %s: blob %s is corrupt", l.digest,
                                        l.digest);
    CHECK(cb_starts_with(err.msg, want));
    CHECK(!cache_blob_exists(f.s, l.digest));
    CHECK(store_clean(&f, ""));
    /* and a missing one */
    CHECK_INT(get(&f, &l, NULL, true, &p, &err), -1);
    CHECK_CONTAINS(err.msg, "is not in store");
    fx_release(&f);
  }
}

/* A blob whose content is not the diff_id it is asked for: refused, and
 * nothing of what was unpacked is left. */
static void test_wrong_diff_id(void)
{
  static const struct tent ents[] = { { 'f', "f", "x\n", 0, 0, 0, NULL } };
  static const struct tent others[] = { { 'f', "g", "y\n", 0, 0, 0, NULL } };
  struct fx f;
  struct layer l, o;
  struct cb_error err;
  char *p = NULL;
  fx_init(&f);
  PUT_LAYER(f.s, ents, OCI_COMPRESSION_GZIP, &l);
  PUT_LAYER(f.s, others, OCI_COMPRESSION_GZIP, &o);
  CHECK_INT(get(&f, &l, o.diff_id, true, &p, &err), -1);
  cleanup_free char *want = xasprintf("snapshot of layer %s: its uncompressed content hashes "
                                      "to %s, not to its diff_id %s",
                                      l.digest, l.diff_id, o.diff_id);
  CHECK_STR(err.msg, want);
  CHECK(cache_blob_exists(f.s, l.digest));
  CHECK(store_clean(&f, ""));
  fx_release(&f);
}

/* Digests become paths: checked before anything is touched. */
static void test_invalid_input(void)
{
  static const struct tent ents[] = { { 'f', "f", "x\n", 0, 0, 0, NULL } };
  struct fx f;
  struct layer l;
  struct cb_error err;
  char *p = NULL;
  fx_init(&f);
  PUT_LAYER(f.s, ents, OCI_COMPRESSION_GZIP, &l);
  CHECK_INT(get(&f, &l, "sha256:../../../../tmp/x", true, &p, &err), -1);
  CHECK_CONTAINS(err.msg, "invalid diff_id \"sha256:../../../../tmp/x\"");
  l.desc.digest = (char *)"sha256:../x";
  CHECK_INT(get(&f, &l, NULL, true, &p, &err), -1);
  CHECK_CONTAINS(err.msg, "invalid layer digest \"sha256:../x\"");
  fx_release(&f);
}

/* Not a tar at all (gzip of text): a clear error, nothing left. */
static void test_not_a_layer(void)
{
  struct fx f;
  struct strbuf text = STRBUF_INIT, gz = STRBUF_INIT;
  struct layer l;
  struct cb_error err;
  char *p = NULL;
  fx_init(&f);
  strbuf_addstr(&text, "just text, not a tar\n");
  compress(&text, OCI_COMPRESSION_GZIP, &gz);
  oci_digest_buf(text.buf, text.len, l.diff_id);
  CHECK(cache_blob_put(f.s, gz.buf, gz.len, l.digest, &err) == 0);
  memset(&l.desc, 0, sizeof(l.desc));
  l.desc.digest = l.digest;
  CHECK_INT(get(&f, &l, NULL, true, &p, &err), -1);
  CHECK_CONTAINS(err.msg, "not a tar archive");
  CHECK(store_clean(&f, ""));
  strbuf_release(&text);
  strbuf_release(&gz);
  fx_release(&f);
}

/* Forked processes, each with its own store handle, ask for one snapshot
 * at once: one directory results, which all of them get. */
static void test_concurrent(void)
{
  enum { CHILDREN = 6, FILES = 400 };
  struct fx f;
  struct layer l;
  struct tent *ents = xcalloc(FILES, sizeof(*ents));
  struct strvec names = STRVEC_INIT;
  pid_t pids[CHILDREN];
  int fds[2];
  fx_init(&f);
  for (int i = 0; i < FILES; i++) {
    strvec_pushf(&names, "dir%02d/file%04d", i % 20, i);
    ents[i].type = 'f';
    ents[i].path = names.v[i];
    ents[i].data = "some content to make the unpack take a while\n";
  }
  ents[0].path = ".wh.gone";
  ents[0].data = NULL;
  put_layer(f.s, ents, FILES, OCI_COMPRESSION_GZIP, &l);
  CHECK(pipe(fds) == 0);
  fflush(stdout);
  for (int i = 0; i < CHILDREN; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      struct cb_error err;
      struct cache_store *s;
      char *p = NULL;
      struct stat st;
      char line[256];
      close(fds[0]);
      s = cache_store_open(f.root, &err);
      if (s == NULL || cache_snapshot_get(s, &l.desc, l.diff_id, true, &p, &err) < 0) {
        printf("# child: %s\n", err.msg);
        fflush(stdout);
        _exit(1);
      }
      if (lstat(p, &st) < 0)
        _exit(1);
      snprintf(line, sizeof(line), "%llu %s\n", (unsigned long long)st.st_ino, p);
      if (write(fds[1], line, strlen(line)) != (ssize_t)strlen(line))
        _exit(1);
      _exit(0);
    }
  }
  close(fds[1]);
  for (int i = 0; i < CHILDREN; i++) {
    int status;
    CHECK(pids[i] > 0 && waitpid(pids[i], &status, 0) == pids[i]);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  {
    struct strbuf out = STRBUF_INIT;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof(buf))) > 0)
      strbuf_add(&out, buf, (size_t)n);
    close(fds[0]);
    /* CHILDREN identical lines: one inode, one path */
    const char *first_end = strchr(out.buf, '\n');
    size_t len = first_end ? (size_t)(first_end - out.buf) + 1 : 0;
    CHECK(len > 0);
    CHECK_INT(out.len, len * CHILDREN);
    for (size_t off = 0; len && off + len <= out.len; off += len)
      CHECK(memcmp(out.buf + off, out.buf, len) == 0);
    cleanup_free char *want = expected_path(&f, &l, true);
    CHECK(len > 0 && strstr(out.buf, want) != NULL);
    strbuf_release(&out);
    cleanup_free char *gone = in(want, "gone");
    cleanup_free char *last = in(want, "dir19/file0399");
    CHECK(is_whiteout(gone));
    struct stat st;
    CHECK(lstat(last, &st) == 0 && S_ISREG(st.st_mode));
  }
  cleanup_free char *key = xasprintf("%s-u", l.diff_id + 7);
  CHECK(store_clean(&f, key));
  strvec_clear(&names);
  free(ents);
  fx_release(&f);
}

/* A crash leaves an attempt in tmp/ and a lock file: the next get clears
 * them (even read-only directories) and makes the snapshot. */
static void test_crashed_attempt(void)
{
  static const struct tent ents[] = { { 'f', "f", "x\n", 0, 0, 0, NULL } };
  struct fx f;
  struct layer l;
  struct cb_error err;
  char *p = NULL;
  fx_init(&f);
  PUT_LAYER(f.s, ents, OCI_COMPRESSION_GZIP, &l);
  cleanup_free char *attempt =
      xasprintf("%s/tmp/snapshot-%s-u.0123456789abcdef", f.root, l.diff_id + 7);
  cleanup_free char *ro = in(attempt, "ro");
  cleanup_free char *inside = in(ro, "f");
  /* another key's attempt (the rootful one) is not ours to remove */
  cleanup_free char *other = xasprintf("%s/tmp/snapshot-%s.0123456789abcdef", f.root,
                                       l.diff_id + 7);
  cleanup_free char *snaps = in(f.root, "snapshots");
  cleanup_free char *lock = xasprintf("%s/%s-u.lock", snaps, l.diff_id + 7);
  CHECK(mkdir(attempt, 0700) == 0 && mkdir(ro, 0755) == 0);
  int fd = open(inside, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  CHECK(fd >= 0);
  close(fd);
  CHECK(chmod(ro, 0555) == 0 && chmod(attempt, 0500) == 0);
  CHECK(mkdir(other, 0700) == 0);
  CHECK(mkdir(snaps, 0700) == 0);
  fd = open(lock, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  CHECK(fd >= 0);
  close(fd);
  CHECK_INT(get(&f, &l, NULL, true, &p, &err), 0);
  struct stat st;
  CHECK(lstat(attempt, &st) < 0 && errno == ENOENT);
  CHECK(lstat(other, &st) == 0);
  rmdir(other);
  cleanup_free char *key = xasprintf("%s-u", l.diff_id + 7);
  CHECK(store_clean(&f, key));
  free(p);
  fx_release(&f);
}

/* oci_layer_diff_id(): the digest of the decompressed stream, whatever
 * the compression; a truncated stream is an error, not a short digest. */
static void test_diff_id_pass(void)
{
  static const struct tent ents[] = { { 'f', "f", "diff_id\n", 0, 0, 0, NULL } };
  static const enum oci_compression cs[] = { OCI_COMPRESSION_NONE, OCI_COMPRESSION_GZIP,
                                             OCI_COMPRESSION_ZSTD };
  struct strbuf tar = STRBUF_INIT;
  char want[OCI_DIGEST_SIZE];
  char *dir = xasprintf("%s/cbuild-test-diff-id.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  CHECK(mkdtemp(dir) != NULL);
  make_tar(ents, CB_ARRAY_SIZE(ents), &tar);
  oci_digest_buf(tar.buf, tar.len, want);
  for (size_t i = 0; i < CB_ARRAY_SIZE(cs); i++) {
    struct strbuf blob = STRBUF_INIT;
    struct cb_error err;
    char got[OCI_DIGEST_SIZE];
    cleanup_free char *file = xasprintf("%s/layer%zu", dir, i);
    if (cs[i] == OCI_COMPRESSION_NONE)
      strbuf_add(&blob, tar.buf, tar.len);
    else
      compress(&tar, cs[i], &blob);
    for (int cut = 0; cut <= 1; cut++) {
      int fd = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      size_t n = cut ? blob.len / 2 : blob.len;
      CHECK(fd >= 0 && write(fd, blob.buf, n) == (ssize_t)n && lseek(fd, 0, SEEK_SET) == 0);
      int r = oci_layer_diff_id(fd, got, &err);
      close(fd);
      if (!cut) {
        CHECK_INT(r, 0);
        CHECK_STR(got, want);
      } else if (cs[i] != OCI_COMPRESSION_NONE) {
        /* half a tar is still a stream; half a compressed one is not */
        CHECK_INT(r, -1);
        cleanup_free char *prefix = xasprintf("read layer \"layer%zu\": ", i);
        CHECK(cb_starts_with(err.msg, prefix));
        printf("# %s\n", err.msg);
      }
    }
    strbuf_release(&blob);
  }
  strbuf_release(&tar);
  cb_remove_tree(AT_FDCWD, dir);
  free(dir);
}

static const struct unit_test tests[] = {
  { "basic", test_basic },
  { "diff_id_pass", test_diff_id_pass },
  { "compressions", test_compressions },
  { "rootless_key", test_rootless_key },
  { "hostile", test_hostile },
  { "hostile_fallback", test_hostile_fallback },
  { "corrupt_blob", test_corrupt_blob },
  { "wrong_diff_id", test_wrong_diff_id },
  { "invalid_input", test_invalid_input },
  { "not_a_layer", test_not_a_layer },
  { "concurrent", test_concurrent },
  { "crashed_attempt", test_crashed_attempt },
};

int main(int argc, char **argv)
{
  if (argc == 2 && strcmp(argv[1], "--fallback-child") == 0) {
    check_hostile();
    return unit_failures ? 1 : 0;
  }
  return unit_main(tests, CB_ARRAY_SIZE(tests), argc, argv);
}
