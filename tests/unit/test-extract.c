/*
 * Extracting archives safely (oci/extract.c).  Every archive is made here
 * with libarchive's writer, hostile ones included.  Each test extracts into
 * TOP/dest while TOP/canary holds one file, "keep": after each test TOP must
 * still hold exactly dest and canary, and canary exactly keep, unchanged
 * and with no other link to it.
 *
 * The confinement tests run three times: with openat2 (the default here),
 * in a child where a seccomp filter makes openat2 fail with ENOSYS (the
 * fallback must be chosen by itself), and in a re-executed child with
 * CBUILD_NO_OPENAT2=1 where openat2 kills the process (the fallback must be
 * all that runs).
 */
#include "unit.h"
#include "../../oci/oci.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>

#include <archive.h>
#include <archive_entry.h>

#define T0 ((int64_t)1600000000)

/* ---- making archives ---- */

/* One entry to write.  Zeroes mean: 0644 files, 0755 dirs, mtime T0;
 * PERM_0000 is a real 0000. */
#define PERM_0000 ((mode_t)010000)
struct tent {
  char type;        /* 'f' file, 'd' dir, 'l' symlink, 'h' hardlink, 'p' fifo, 'c' char dev */
  const char *path;
  const char *data; /* content, or the link's target */
  mode_t perm;
  int64_t mtime;
  long nsec;
  uid_t uid;
  gid_t gid;
  const char *xattr; /* "name=value" */
};

enum tfilter { TF_NONE, TF_GZIP, TF_BZIP2, TF_XZ, TF_ZSTD };
enum tformat { TFMT_PAX, TFMT_USTAR, TFMT_GNU };

static bool add_filter(struct archive *a, enum tfilter f)
{
  switch (f) {
  case TF_NONE:
    return true;
  case TF_GZIP:
    return archive_write_add_filter_gzip(a) == ARCHIVE_OK;
  case TF_BZIP2:
    return archive_write_add_filter_bzip2(a) == ARCHIVE_OK;
  case TF_XZ:
    return archive_write_add_filter_xz(a) == ARCHIVE_OK;
  case TF_ZSTD:
    return archive_write_add_filter_zstd(a) == ARCHIVE_OK;
  }
  return false;
}

static void write_tar_fmt(const char *file, enum tformat fmt, enum tfilter filter,
                          const struct tent *ents, size_t n)
{
  struct archive *a = archive_write_new();
  int r = fmt == TFMT_USTAR ? archive_write_set_format_ustar(a)
          : fmt == TFMT_GNU ? archive_write_set_format_gnutar(a)
                            : archive_write_set_format_pax(a);
  if (r != ARCHIVE_OK || !add_filter(a, filter) ||
      archive_write_open_filename(a, file) != ARCHIVE_OK)
    cb_die("write %s: %s", file, archive_error_string(a));
  for (size_t i = 0; i < n; i++) {
    const struct tent *t = &ents[i];
    struct archive_entry *e = archive_entry_new();
    size_t size = 0;
    archive_entry_set_pathname(e, t->path);
    archive_entry_set_mtime(e, t->mtime ? t->mtime : T0, t->nsec);
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
      archive_entry_set_perm(e, t->perm ? t->perm & 07777 : 0755);
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
    case 'p':
      archive_entry_set_filetype(e, AE_IFIFO);
      archive_entry_set_perm(e, t->perm ? t->perm : 0644);
      break;
    case 'c':
      archive_entry_set_filetype(e, AE_IFCHR);
      archive_entry_set_perm(e, t->perm ? t->perm : 0666);
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
    if (archive_write_header(a, e) != ARCHIVE_OK)
      cb_die("write %s: %s: %s", file, t->path, archive_error_string(a));
    if (size > 0 && archive_write_data(a, t->data, size) != (la_ssize_t)size)
      cb_die("write %s: %s: %s", file, t->path, archive_error_string(a));
    archive_entry_free(e);
  }
  if (archive_write_close(a) != ARCHIVE_OK)
    cb_die("write %s: %s", file, archive_error_string(a));
  archive_write_free(a);
}

#define write_tar(file, filter, ents) \
  write_tar_fmt((file), TFMT_PAX, (filter), (ents), CB_ARRAY_SIZE(ents))

/* data compressed as is, with no tar around it (libarchive's "raw"). */
static void write_compressed(const char *file, enum tfilter filter, const char *data)
{
  struct archive *a = archive_write_new();
  struct archive_entry *e = archive_entry_new();
  if (archive_write_set_format_raw(a) != ARCHIVE_OK || !add_filter(a, filter) ||
      archive_write_open_filename(a, file) != ARCHIVE_OK)
    cb_die("write %s: %s", file, archive_error_string(a));
  archive_entry_set_pathname(e, "data");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, (la_int64_t)strlen(data));
  if (archive_write_header(a, e) != ARCHIVE_OK ||
      archive_write_data(a, data, strlen(data)) != (la_ssize_t)strlen(data) ||
      archive_write_close(a) != ARCHIVE_OK)
    cb_die("write %s: %s", file, archive_error_string(a));
  archive_entry_free(e);
  archive_write_free(a);
}

static void write_bytes(const char *file, const void *data, size_t n)
{
  int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || (n > 0 && write(fd, data, n) != (ssize_t)n) || close(fd) < 0)
    cb_die("write %s: %s", file, strerror(errno));
}

/* ---- the fixture ---- */

struct fx {
  char *top;    /* TOP: dest and canary, nothing else */
  char *dest;   /* where archives go */
  char *canary; /* a sibling of dest, holding only "keep" */
  char *keep;
  char *in;     /* the archives, apart from TOP */
  int destfd;   /* O_PATH, as the builder opens its staging directories */
};

static void fx_init(struct fx *f)
{
  f->top = unit_temp_dir("top");
  f->in = unit_temp_dir("in");
  f->dest = xasprintf("%s/dest", f->top);
  f->canary = xasprintf("%s/canary", f->top);
  f->keep = xasprintf("%s/keep", f->canary);
  if (mkdir(f->dest, 0755) < 0 || mkdir(f->canary, 0755) < 0)
    cb_die("mkdir: %s", strerror(errno));
  write_bytes(f->keep, "canary\n", 7);
  f->destfd = open(f->dest, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (f->destfd < 0)
    cb_die("open %s: %s", f->dest, strerror(errno));
}

static void fx_release(struct fx *f)
{
  close(f->destfd);
  cb_remove_tree(AT_FDCWD, f->top);
  cb_remove_tree(AT_FDCWD, f->in);
  free(f->top);
  free(f->in);
  free(f->dest);
  free(f->canary);
  free(f->keep);
}

/* The path of an archive named name in f->in, which the caller frees. */
static char *fx_archive(struct fx *f, const char *name)
{
  return xasprintf("%s/%s", f->in, name);
}

static int fx_extract_opts(struct fx *f, const char *archive, bool keep_owners,
                           bool *not_archive, struct cb_error *err)
{
  int fd = open(archive, O_RDONLY | O_CLOEXEC);
  int r;
  if (fd < 0)
    cb_die("open %s: %s", archive, strerror(errno));
  *not_archive = true; /* must be reset by the callee */
  err->msg[0] = '\0';
  r = oci_archive_extract(fd, f->destfd, keep_owners, not_archive, err);
  close(fd);
  if (r < 0 && strchr(err->msg, '\n') != NULL)
    unit_fail(__FILE__, __LINE__, "message on more than one line: %s", err->msg);
  if (r < 0 && err->msg[0] == '\0')
    unit_fail(__FILE__, __LINE__, "failure without a message");
  return r;
}

static int fx_extract(struct fx *f, const char *archive, bool *not_archive,
                      struct cb_error *err)
{
  return fx_extract_opts(f, archive, false, not_archive, err);
}

static char *in_dest(struct fx *f, const char *rel)
{
  return xasprintf("%s/%s", f->dest, rel);
}

/* dest/rel's content, or NULL. */
static char *dest_file(struct fx *f, const char *rel)
{
  cleanup_free char *p = in_dest(f, rel);
  return unit_slurp(p);
}

static bool dest_lstat(struct fx *f, const char *rel, struct stat *st)
{
  cleanup_free char *p = in_dest(f, rel);
  return lstat(p, st) == 0;
}

static bool dest_exists(struct fx *f, const char *rel)
{
  struct stat st;
  return dest_lstat(f, rel, &st);
}

/* dest/rel's symlink target, or NULL. */
static char *dest_readlink(struct fx *f, const char *rel)
{
  cleanup_free char *p = in_dest(f, rel);
  char buf[4096];
  ssize_t n = readlink(p, buf, sizeof(buf) - 1);
  if (n < 0)
    return NULL;
  buf[n] = '\0';
  return xstrdup(buf);
}

/* Nothing was written next to dest: TOP holds dest and canary, canary holds
 * keep, keep is as it was and has no other link. */
static bool outside_untouched(struct fx *f)
{
  cleanup_free char *top = unit_list_dir(f->top);
  cleanup_free char *canary = unit_list_dir(f->canary);
  cleanup_free char *keep = unit_slurp(f->keep);
  struct stat st;
  bool ok = true;
  if (strcmp(top, "canary,dest") != 0) {
    printf("# %s holds %s\n", f->top, top);
    ok = false;
  }
  if (strcmp(canary, "keep") != 0) {
    printf("# %s holds %s\n", f->canary, canary);
    ok = false;
  }
  if (keep == NULL || strcmp(keep, "canary\n") != 0 || lstat(f->keep, &st) < 0 ||
      !S_ISREG(st.st_mode) || st.st_nlink != 1) {
    printf("# %s changed\n", f->keep);
    ok = false;
  }
  return ok;
}

static bool dest_empty(struct fx *f)
{
  cleanup_free char *names = unit_list_dir(f->dest);
  return strcmp(names, "") == 0;
}

/* ---- archives that are fine ---- */

static void test_plain_tar(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  struct stat a, b;
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "plain.tar");
  const struct tent ents[] = {
    { 'd', "etc/", NULL, 0755, 0, 0, 0, 0, NULL },
    { 'f', "etc/hosts", "127.0.0.1 localhost\n", 0644, 0, 0, 0, 0, NULL },
    { 'f', "bin/tool", "#!/bin/sh\necho hi\n", 0755, 0, 0, 0, 0, NULL },
    { 'l', "bin/link", "tool", 0, 0, 0, 0, 0, NULL },
    { 'h', "bin/hard", "bin/tool", 0, 0, 0, 0, 0, NULL },
    { 'f', "empty", NULL, 0600, 0, 0, 0, 0, NULL },
  };
  write_tar_fmt(tar, TFMT_USTAR, TF_NONE, ents, CB_ARRAY_SIZE(ents));
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  CHECK(!na);
  cleanup_free char *hosts = dest_file(&f, "etc/hosts");
  cleanup_free char *tool = dest_file(&f, "bin/tool");
  cleanup_free char *empty = dest_file(&f, "empty");
  cleanup_free char *link = dest_readlink(&f, "bin/link");
  CHECK_STR(hosts, "127.0.0.1 localhost\n");
  CHECK_STR(tool, "#!/bin/sh\necho hi\n");
  CHECK_STR(empty, "");
  CHECK_STR(link, "tool");
  CHECK(dest_lstat(&f, "bin/tool", &a) && dest_lstat(&f, "bin/hard", &b));
  CHECK(a.st_ino == b.st_ino && a.st_dev == b.st_dev);
  CHECK_INT(a.st_nlink, 2);
  CHECK_INT(a.st_mode, S_IFREG | 0755);
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* A compressed tar, named without an extension: found by content. */
static void check_compressed(enum tfilter filter)
{
  struct fx f;
  struct cb_error err;
  bool na;
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "archive-without-extension");
  const struct tent ents[] = {
    { 'd', "d/", NULL, 0750, 0, 0, 0, 0, NULL },
    { 'f', "d/f", "compressed content\n", 0640, 0, 0, 0, 0, NULL },
  };
  struct archive *probe = archive_write_new();
  bool have = add_filter(probe, filter);
  archive_write_free(probe);
  if (!have) {
    printf("# skipped: this libarchive cannot write filter %d\n", (int)filter);
    fx_release(&f);
    return;
  }
  write_tar(tar, filter, ents);
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  CHECK(!na);
  cleanup_free char *content = dest_file(&f, "d/f");
  CHECK_STR(content, "compressed content\n");
  struct stat st;
  CHECK(dest_lstat(&f, "d", &st) && st.st_mode == (S_IFDIR | 0750));
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

static void test_gzip(void) { check_compressed(TF_GZIP); }
static void test_bzip2(void) { check_compressed(TF_BZIP2); }
static void test_xz(void) { check_compressed(TF_XZ); }
static void test_zstd(void) { check_compressed(TF_ZSTD); }

/* A tar compressed by the system's own tools, where they exist. */
static void test_system_compressors(void)
{
  static const char *const tools[] = { "gzip", "bzip2", "xz", "zstd -q" };
  struct fx f;
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "t.tar");
  const struct tent ents[] = { { 'f', "from-tool", "x\n", 0, 0, 0, 0, 0, NULL } };
  write_tar(tar, TF_NONE, ents);
  for (size_t i = 0; i < CB_ARRAY_SIZE(tools); i++) {
    struct cb_error err;
    bool na;
    cleanup_free char *out = xasprintf("%s/t.%zu", f.in, i);
    cleanup_free char *cmd = xasprintf("command -v %.5s >/dev/null 2>&1 && %s -c < '%s' > '%s'",
                                       tools[i], tools[i], tar, out);
    if (system(cmd) != 0) {
      printf("# skipped: %s\n", tools[i]);
      continue;
    }
    CHECK_INT(fx_extract(&f, out, &na, &err), 0);
    cleanup_free char *content = dest_file(&f, "from-tool");
    CHECK_STR(content, "x\n");
    cleanup_free char *p = in_dest(&f, "from-tool");
    unlink(p);
  }
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

static void test_empty_tar(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "empty.tar");
  cleanup_free char *tgz = fx_archive(&f, "empty.tgz");
  write_tar_fmt(tar, TFMT_PAX, TF_NONE, NULL, 0);
  write_tar_fmt(tgz, TFMT_PAX, TF_GZIP, NULL, 0);
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  CHECK(!na);
  CHECK_INT(fx_extract(&f, tgz, &na, &err), 0);
  CHECK(!na);
  CHECK(dest_empty(&f));
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

static void test_not_archive(void)
{
  struct fx f;
  unsigned char noise[8192];
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  fx_init(&f);
  for (size_t i = 0; i < sizeof(noise); i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    noise[i] = (unsigned char)x;
  }
  const char *text = "just some text, not a tar\n";
  struct {
    const char *name;
    enum tfilter filter; /* compressed text; TF_NONE: written as below */
  } cases[] = {
    { "noise.tar", TF_NONE }, { "empty.tar", TF_NONE }, { "text.tar", TF_NONE },
    { "text.gz", TF_GZIP },   { "text.bz2", TF_BZIP2 }, { "text.xz", TF_XZ },
    { "text.zst", TF_ZSTD },
  };
  for (size_t i = 0; i < CB_ARRAY_SIZE(cases); i++) {
    struct cb_error err;
    bool na = false;
    cleanup_free char *p = fx_archive(&f, cases[i].name);
    if (i == 0)
      write_bytes(p, noise, sizeof(noise));
    else if (i == 1)
      write_bytes(p, "", 0);
    else if (i == 2)
      write_bytes(p, text, strlen(text));
    else
      write_compressed(p, cases[i].filter, text);
    CHECK_INT(fx_extract(&f, p, &na, &err), -1);
    if (!na)
      printf("# %s: %s\n", cases[i].name, err.msg);
    CHECK(na);
    cleanup_free char *want = xasprintf("extract \"%s\": not a tar archive", cases[i].name);
    CHECK(cb_starts_with(err.msg, want));
    CHECK(dest_empty(&f));
  }
  {
    /* a compressed stream that does not decode: copied as is, like Docker */
    struct cb_error err;
    bool na = false;
    cleanup_free char *p = fx_archive(&f, "bad.gz");
    static const char bad[] = "\x1f\x8b\x08\x00garbage garbage garbage";
    write_bytes(p, bad, sizeof(bad) - 1);
    CHECK_INT(fx_extract(&f, p, &na, &err), -1);
    CHECK(na);
  }
  CHECK(dest_empty(&f));
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* A directory is not an archive, and not "not an archive" either: reading it
 * fails (EISDIR), which must not be taken for a plain file. */
static void test_read_error(void)
{
  struct fx f;
  struct cb_error err;
  bool na = true;
  fx_init(&f);
  int fd = open(f.in, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CHECK(fd >= 0);
  CHECK_INT(oci_archive_extract(fd, f.destfd, false, &na, &err), -1);
  CHECK(!na);
  CHECK_INT(err.code, EISDIR);
  close(fd);
  CHECK(dest_empty(&f));
  fx_release(&f);
}

static void test_truncated(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  struct strbuf big = STRBUF_INIT;
  fx_init(&f);
  for (int i = 0; i < 2000; i++)
    strbuf_addstr(&big, "0123456789");
  cleanup_free char *tar = fx_archive(&f, "cut.tar");
  const struct tent ents[] = { { 'f', "big", big.buf, 0, 0, 0, 0, 0, NULL } };
  write_tar(tar, TF_NONE, ents);
  CHECK(truncate(tar, 4096) == 0);
  CHECK_INT(fx_extract(&f, tar, &na, &err), -1);
  CHECK(!na);
  CHECK_CONTAINS(err.msg, "extract \"cut.tar\": entry \"big\": read: ");
  strbuf_release(&big);
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* ---- hostile archives ---- */

/* A leading "/" is relative to the destination, as in Docker. */
static void test_absolute_path(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "abs.tar");
  cleanup_free char *host = xasprintf("%s/pwned", f.canary);
  const struct tent ents[] = {
    { 'f', "/etc/x", "abs\n", 0, 0, 0, 0, 0, NULL },
    { 'f', "/../../up", "up\n", 0, 0, 0, 0, 0, NULL },
    { 'f', host, "host\n", 0, 0, 0, 0, 0, NULL },
  };
  write_tar(tar, TF_NONE, ents);
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  cleanup_free char *x = dest_file(&f, "etc/x");
  cleanup_free char *up = dest_file(&f, "up");
  cleanup_free char *inside = dest_file(&f, host + 1);
  CHECK_STR(x, "abs\n");
  CHECK_STR(up, "up\n");
  CHECK_STR(inside, "host\n");
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

static void test_dotdot(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  fx_init(&f);
  cleanup_free char *evil = fx_archive(&f, "evil.tar");
  cleanup_free char *evil2 = fx_archive(&f, "evil2.tar");
  cleanup_free char *fine = fx_archive(&f, "fine.tar");
  const struct tent e1[] = { { 'f', "../canary/pwned", "x", 0, 0, 0, 0, 0, NULL } };
  const struct tent e2[] = {
    { 'd', "a/", NULL, 0, 0, 0, 0, 0, NULL },
    { 'f', "a/../../canary/pwned", "x", 0, 0, 0, 0, 0, NULL },
  };
  const struct tent e3[] = { { 'f', "a/../b/./c", "in\n", 0, 0, 0, 0, 0, NULL } };
  write_tar(evil, TF_NONE, e1);
  write_tar(evil2, TF_NONE, e2);
  write_tar(fine, TF_NONE, e3);
  CHECK_INT(fx_extract(&f, evil, &na, &err), -1);
  CHECK(!na);
  CHECK_STR(err.msg, "extract \"evil.tar\": entry \"../canary/pwned\": path leaves the destination");
  CHECK_INT(fx_extract(&f, evil2, &na, &err), -1);
  CHECK_STR(err.msg,
            "extract \"evil2.tar\": entry \"a/../../canary/pwned\": path leaves the destination");
  CHECK_INT(fx_extract(&f, fine, &na, &err), 0);
  cleanup_free char *c = dest_file(&f, "b/c");
  CHECK_STR(c, "in\n");
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* A symlink, then a file written through it: confined to the destination,
 * as if it were "/". */
static void test_symlink_write_through(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  fx_init(&f);
  cleanup_free char *t1 = fx_archive(&f, "rel.tar");
  cleanup_free char *t2 = fx_archive(&f, "abs.tar");
  cleanup_free char *t3 = fx_archive(&f, "root.tar");
  cleanup_free char *t4 = fx_archive(&f, "replace.tar");
  const struct tent e1[] = {
    { 'l', "link", "../canary", 0, 0, 0, 0, 0, NULL },
    { 'f', "link/pwned", "x", 0, 0, 0, 0, 0, NULL },
  };
  const struct tent e2[] = {
    { 'l', "abs", f.canary, 0, 0, 0, 0, 0, NULL },
    { 'f', "abs/pwned", "x", 0, 0, 0, 0, 0, NULL },
  };
  const struct tent e3[] = {
    { 'l', "up", "../../../../..", 0, 0, 0, 0, 0, NULL },
    { 'l', "slash", "/", 0, 0, 0, 0, 0, NULL },
    { 'f', "up/sub/f", "confined\n", 0, 0, 0, 0, 0, NULL },
    { 'f', "slash/g", "root\n", 0, 0, 0, 0, 0, NULL },
  };
  const struct tent e4[] = {
    { 'l', "victim", f.keep, 0, 0, 0, 0, 0, NULL },
    { 'f', "victim", "replaced\n", 0, 0, 0, 0, 0, NULL },
    { 'l', "vdir", f.canary, 0, 0, 0, 0, 0, NULL },
    { 'd', "vdir/", NULL, 0700, 0, 0, 0, 0, NULL },
  };
  write_tar(t1, TF_NONE, e1);
  write_tar(t2, TF_NONE, e2);
  write_tar(t3, TF_NONE, e3);
  write_tar(t4, TF_NONE, e4);

  /* ../canary from the top is <dest>/canary, which does not exist */
  CHECK_INT(fx_extract(&f, t1, &na, &err), -1);
  CHECK_STR(err.msg, "extract \"rel.tar\": entry \"link/pwned\": open \"link\": "
                     "No such file or directory");
  CHECK(!dest_exists(&f, "canary"));
  CHECK_INT(fx_extract(&f, t2, &na, &err), -1);
  CHECK_CONTAINS(err.msg, "entry \"abs/pwned\": open \"abs\": No such file or directory");
  CHECK(outside_untouched(&f));

  CHECK_INT(fx_extract(&f, t3, &na, &err), 0);
  cleanup_free char *sub = dest_file(&f, "sub/f");
  cleanup_free char *g = dest_file(&f, "g");
  CHECK_STR(sub, "confined\n");
  CHECK_STR(g, "root\n");

  /* the last component is replaced, never followed */
  CHECK_INT(fx_extract(&f, t4, &na, &err), 0);
  cleanup_free char *victim = dest_file(&f, "victim");
  CHECK_STR(victim, "replaced\n");
  struct stat st;
  CHECK(dest_lstat(&f, "vdir", &st) && st.st_mode == (S_IFDIR | 0700));
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* The last entry's parent is used again only for entries with that same
 * parent: a parent replaced by a symlink in between is looked up anew,
 * through the symlink and inside the destination. */
static void test_parent_replaced(void)
{
  struct fx f;
  struct cb_error err;
  struct stat st;
  bool na;
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "parent.tar");
  const struct tent ents[] = {
    { 'd', "t/", NULL, 0, 0, 0, 0, 0, NULL },
    { 'd', "d/", NULL, 0, 0, 0, 0, 0, NULL },
    { 'f', "d/x", "x\n", 0, 0, 0, 0, 0, NULL },
    { 'l', "d", "t", 0, 0, 0, 0, 0, NULL },
    { 'f', "d/y", "y\n", 0, 0, 0, 0, 0, NULL },
    { 'f', "d/z", "z\n", 0, 0, 0, 0, 0, NULL },
    { 'l', "d", "/", 0, 0, 0, 0, 0, NULL },
    { 'f', "d/top", "top\n", 0, 0, 0, 0, 0, NULL },
    { 'f', "d/y", "y again\n", 0, 0, 0, 0, 0, NULL },
  };
  write_tar(tar, TF_NONE, ents);
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  cleanup_free char *y = dest_file(&f, "t/y");
  cleanup_free char *z = dest_file(&f, "t/z");
  cleanup_free char *top = dest_file(&f, "top");
  cleanup_free char *y2 = dest_file(&f, "y");
  CHECK_STR(y, "y\n");
  CHECK_STR(z, "z\n");
  CHECK_STR(top, "top\n");
  CHECK_STR(y2, "y again\n");
  CHECK(!dest_exists(&f, "t/x"));
  CHECK(dest_lstat(&f, "d", &st) && S_ISLNK(st.st_mode));
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* An absolute symlink is kept as written, and means a path inside. */
static void test_absolute_symlink_kept(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  struct stat st;
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "abslink.tar");
  const struct tent ents[] = {
    { 'd', "sub/", NULL, 0, 0, 0, 0, 0, NULL },
    { 'l', "abs", "/sub", 0, 0, 0, 0, 0, NULL },
    { 'f', "abs/f", "through\n", 0, 0, 0, 0, 0, NULL },
    { 'l', "host", f.canary, 0, 0, 0, 0, 0, NULL },
    { 'l', "dangling", "/no/such/dir", 0, 0, 0, 0, 0, NULL },
  };
  write_tar(tar, TF_NONE, ents);
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  cleanup_free char *abs = dest_readlink(&f, "abs");
  cleanup_free char *host = dest_readlink(&f, "host");
  cleanup_free char *dangling = dest_readlink(&f, "dangling");
  cleanup_free char *through = dest_file(&f, "sub/f");
  CHECK_STR(abs, "/sub");
  CHECK_STR(host, f.canary);
  CHECK_STR(dangling, "/no/such/dir");
  CHECK_STR(through, "through\n");
  CHECK(dest_lstat(&f, "abs", &st) && S_ISLNK(st.st_mode));
  CHECK(!dest_exists(&f, "no"));
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

static void test_hardlink_outside(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  fx_init(&f);
  cleanup_free char *t1 = fx_archive(&f, "hl.tar");
  cleanup_free char *t2 = fx_archive(&f, "hlabs.tar");
  const struct tent e1[] = { { 'h', "h", "../canary/keep", 0, 0, 0, 0, 0, NULL } };
  const struct tent e2[] = { { 'h', "h2", f.keep, 0, 0, 0, 0, 0, NULL } };
  write_tar(t1, TF_NONE, e1);
  write_tar(t2, TF_NONE, e2);
  CHECK_INT(fx_extract(&f, t1, &na, &err), -1);
  CHECK_STR(err.msg,
            "extract \"hl.tar\": entry \"h\": hardlink target \"../canary/keep\" leaves the destination");
  /* an absolute target is inside, where there is no such file */
  CHECK_INT(fx_extract(&f, t2, &na, &err), -1);
  CHECK_CONTAINS(err.msg, "No such file or directory");
  CHECK(!dest_exists(&f, "h"));
  CHECK(!dest_exists(&f, "h2"));
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

static void test_hardlink_through_symlink(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  fx_init(&f);
  cleanup_free char *t1 = fx_archive(&f, "hls.tar");
  cleanup_free char *t2 = fx_archive(&f, "hls2.tar");
  cleanup_free char *t3 = fx_archive(&f, "hls3.tar");
  const struct tent e1[] = {
    { 'l', "sl", f.canary, 0, 0, 0, 0, 0, NULL },
    { 'h', "h", "sl/keep", 0, 0, 0, 0, 0, NULL },
  };
  const struct tent e2[] = {
    { 'l', "up", "..", 0, 0, 0, 0, 0, NULL },
    { 'h', "h", "up/canary/keep", 0, 0, 0, 0, 0, NULL },
  };
  /* even a symlink that stays inside */
  const struct tent e3[] = {
    { 'd', "d/", NULL, 0, 0, 0, 0, 0, NULL },
    { 'f', "d/f", "f\n", 0, 0, 0, 0, 0, NULL },
    { 'l', "here", "d", 0, 0, 0, 0, 0, NULL },
    { 'h', "h", "here/f", 0, 0, 0, 0, 0, NULL },
  };
  write_tar(t1, TF_NONE, e1);
  write_tar(t2, TF_NONE, e2);
  write_tar(t3, TF_NONE, e3);
  CHECK_INT(fx_extract(&f, t1, &na, &err), -1);
  CHECK_STR(err.msg,
            "extract \"hls.tar\": entry \"h\": hardlink target \"sl/keep\" goes through a symlink");
  CHECK_INT(fx_extract(&f, t2, &na, &err), -1);
  CHECK_CONTAINS(err.msg, "hardlink target \"up/canary/keep\" goes through a symlink");
  CHECK_INT(fx_extract(&f, t3, &na, &err), -1);
  CHECK_CONTAINS(err.msg, "hardlink target \"here/f\" goes through a symlink");
  CHECK(!dest_exists(&f, "h"));
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* Symlink chains with "..", loops and dangling links on the way. */
static void test_symlink_chains(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  fx_init(&f);
  cleanup_free char *t1 = fx_archive(&f, "chain.tar");
  cleanup_free char *t2 = fx_archive(&f, "loop.tar");
  cleanup_free char *t3 = fx_archive(&f, "dangling.tar");
  const struct tent e1[] = {
    { 'd', "b/", NULL, 0, 0, 0, 0, 0, NULL },
    { 'd', "c/", NULL, 0, 0, 0, 0, 0, NULL },
    { 'l', "b/up", "..", 0, 0, 0, 0, 0, NULL },
    { 'l', "a", "b/../c", 0, 0, 0, 0, 0, NULL },
    { 'l', "x", "/a", 0, 0, 0, 0, 0, NULL },
    { 'f', "x/f", "chained\n", 0, 0, 0, 0, 0, NULL },
    { 'f', "b/up/b/up/b/up/new/g", "deep\n", 0, 0, 0, 0, 0, NULL },
    /* an absolute target starts again from the top, wherever the link is */
    { 'l', "b/top", "/c", 0, 0, 0, 0, 0, NULL },
    { 'f', "b/top/h", "top\n", 0, 0, 0, 0, 0, NULL },
  };
  const struct tent e2[] = {
    { 'l', "l1", "l2", 0, 0, 0, 0, 0, NULL },
    { 'l', "l2", "/l1", 0, 0, 0, 0, 0, NULL },
    { 'f', "l1/f", "x", 0, 0, 0, 0, 0, NULL },
  };
  const struct tent e3[] = {
    { 'l', "d", "/nowhere/at/all", 0, 0, 0, 0, 0, NULL },
    { 'f', "d/f", "x", 0, 0, 0, 0, 0, NULL },
  };
  write_tar(t1, TF_NONE, e1);
  write_tar(t2, TF_NONE, e2);
  write_tar(t3, TF_NONE, e3);
  CHECK_INT(fx_extract(&f, t1, &na, &err), 0);
  cleanup_free char *chained = dest_file(&f, "c/f");
  cleanup_free char *deep = dest_file(&f, "new/g");
  CHECK_STR(chained, "chained\n");
  CHECK_STR(deep, "deep\n");
  cleanup_free char *top = dest_file(&f, "c/h");
  CHECK_STR(top, "top\n");
  CHECK_INT(fx_extract(&f, t2, &na, &err), -1);
  CHECK_STR(err.msg, "extract \"loop.tar\": entry \"l1/f\": open \"l1\": "
                     "Too many levels of symbolic links");
  CHECK_INT(fx_extract(&f, t3, &na, &err), -1);
  CHECK_CONTAINS(err.msg, "entry \"d/f\": open \"d\": No such file or directory");
  CHECK(!dest_exists(&f, "nowhere"));
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* A name with a newline stays on one line in the message. */
static void test_message_one_line(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "nl.tar");
  const struct tent ents[] = { { 'f', "../x\n\"y", "x", 0, 0, 0, 0, 0, NULL } };
  write_tar(tar, TF_NONE, ents);
  CHECK_INT(fx_extract(&f, tar, &na, &err), -1);
  CHECK_STR(err.msg, "extract \"nl.tar\": entry \"../x\\n\\\"y\": path leaves the destination");
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* ---- metadata and merging ---- */

static mode_t mode_of(struct fx *f, const char *rel)
{
  struct stat st;
  return dest_lstat(f, rel, &st) ? st.st_mode : 0;
}

static void test_nested_dirs_and_modes(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  mode_t old_umask = umask(077);
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "modes.tar");
  const struct tent ents[] = {
    { 'f', "a/b/c/file", "deep\n", 0640, 0, 0, 0, 0, NULL },
    { 'd', "ro/", NULL, 0555, 0, 0, 0, 0, NULL },
    { 'f', "ro/inside", "in a read-only dir\n", 0444, 0, 0, 0, 0, NULL },
    { 'd', "ro/none/", NULL, PERM_0000, 0, 0, 0, 0, NULL },
    { 'd', "tmp/", NULL, 01777, 0, 0, 0, 0, NULL },
    { 'd', "private/", NULL, 0700, 0, 0, 0, 0, NULL },
    { 'f', "suid", "s", 04755, 0, 0, 0, 0, NULL },
    { 'f', "sgid", "g", 02711, 0, 0, 0, 0, NULL },
    { 'p', "fifo", NULL, 0620, 0, 0, 0, 0, NULL },
  };
  write_tar(tar, TF_NONE, ents);
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  umask(old_umask);
  cleanup_free char *deep = dest_file(&f, "a/b/c/file");
  cleanup_free char *inside = dest_file(&f, "ro/inside");
  CHECK_STR(deep, "deep\n");
  CHECK_STR(inside, "in a read-only dir\n");
  /* parents made for an entry are 0755 whatever the umask, as Docker's */
  CHECK_INT(mode_of(&f, "a"), S_IFDIR | 0755);
  CHECK_INT(mode_of(&f, "a/b"), S_IFDIR | 0755);
  CHECK_INT(mode_of(&f, "a/b/c"), S_IFDIR | 0755);
  CHECK_INT(mode_of(&f, "a/b/c/file"), S_IFREG | 0640);
  CHECK_INT(mode_of(&f, "ro"), S_IFDIR | 0555);
  CHECK_INT(mode_of(&f, "ro/inside"), S_IFREG | 0444);
  CHECK_INT(mode_of(&f, "ro/none"), S_IFDIR | 0000);
  CHECK_INT(mode_of(&f, "tmp"), S_IFDIR | 01777);
  CHECK_INT(mode_of(&f, "private"), S_IFDIR | 0700);
  CHECK_INT(mode_of(&f, "suid"), S_IFREG | 04755);
  CHECK_INT(mode_of(&f, "sgid"), S_IFREG | 02711);
  CHECK_INT(mode_of(&f, "fifo"), S_IFIFO | 0620);
  CHECK(outside_untouched(&f));
  /* cb_remove_tree needs to get into ro/none */
  cleanup_free char *none = in_dest(&f, "ro/none");
  chmod(none, 0700);
  fx_release(&f);
}

static void test_mtimes(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  struct stat st;
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "times.tar");
  const struct tent ents[] = {
    { 'd', "dir/", NULL, 0, 1000000000, 0, 0, 0, NULL },
    { 'f', "dir/file", "x", 0, 1234567890, 123456789, 0, 0, NULL },
    { 'l', "dir/link", "file", 0, 1111111111, 0, 0, 0, NULL },
    { 'd', "dir/sub/", NULL, 0, 1222222222, 0, 0, 0, NULL },
    { 'f', "dir/sub/late", "y", 0, 1300000000, 0, 0, 0, NULL },
    { 'f', "old", "z", 0, 86400, 0, 0, 0, NULL },
  };
  write_tar(tar, TF_NONE, ents);
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  CHECK(dest_lstat(&f, "dir/file", &st));
  CHECK_INT(st.st_mtim.tv_sec, 1234567890);
  CHECK_INT(st.st_mtim.tv_nsec, 123456789);
  CHECK(dest_lstat(&f, "dir/link", &st));
  CHECK_INT(st.st_mtim.tv_sec, 1111111111);
  /* directories keep theirs although entries were made in them later */
  CHECK(dest_lstat(&f, "dir", &st));
  CHECK_INT(st.st_mtim.tv_sec, 1000000000);
  CHECK(dest_lstat(&f, "dir/sub", &st));
  CHECK_INT(st.st_mtim.tv_sec, 1222222222);
  CHECK(dest_lstat(&f, "old", &st));
  CHECK_INT(st.st_mtim.tv_sec, 86400);
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* Extracting over what is there: directories merge, anything else is
 * replaced, never written through. */
static void test_existing_merged(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  struct stat st;
  fx_init(&f);
  cleanup_free char *d = in_dest(&f, "d");
  cleanup_free char *old = in_dest(&f, "d/old");
  cleanup_free char *hard = in_dest(&f, "hard");
  cleanup_free char *x = in_dest(&f, "x");
  cleanup_free char *xin = in_dest(&f, "x/in");
  cleanup_free char *s = in_dest(&f, "s");
  CHECK(mkdir(d, 0700) == 0);
  write_bytes(old, "old\n", 4);
  CHECK(link(f.keep, hard) == 0); /* as if an earlier layer had it */
  CHECK(mkdir(x, 0755) == 0);
  write_bytes(xin, "in\n", 3);
  CHECK(symlink(f.canary, s) == 0);
  cleanup_free char *tar = fx_archive(&f, "over.tar");
  const struct tent ents[] = {
    { 'd', "d/", NULL, 0751, 0, 0, 0, 0, NULL },
    { 'f', "d/new", "new\n", 0, 0, 0, 0, 0, NULL },
    { 'f', "hard", "replaced\n", 0, 0, 0, 0, 0, NULL },
    { 'f', "x", "file now\n", 0, 0, 0, 0, 0, NULL },
    { 'd', "s/", NULL, 0, 0, 0, 0, 0, NULL },
    { 'f', "s/f", "real dir\n", 0, 0, 0, 0, 0, NULL },
  };
  write_tar(tar, TF_NONE, ents);
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  cleanup_free char *list = unit_list_dir(d);
  cleanup_free char *hard_c = unit_slurp(hard);
  cleanup_free char *x_c = unit_slurp(x);
  cleanup_free char *sf = dest_file(&f, "s/f");
  CHECK_STR(list, "new,old");
  CHECK_INT(mode_of(&f, "d"), S_IFDIR | 0751);
  CHECK_STR(hard_c, "replaced\n");
  CHECK_STR(x_c, "file now\n");
  CHECK_STR(sf, "real dir\n");
  CHECK(dest_lstat(&f, "s", &st) && S_ISDIR(st.st_mode));
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* Layer-style names: "./" prefixes, and "." itself, which is left alone. */
static void test_dot_entries(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  struct stat before, after;
  fx_init(&f);
  CHECK(stat(f.dest, &before) == 0);
  cleanup_free char *tar = fx_archive(&f, "layer.tar");
  const struct tent ents[] = {
    { 'd', "./", NULL, 0700, 5, 0, 0, 0, NULL },
    { 'd', "./usr/", NULL, 0, 0, 0, 0, 0, NULL },
    { 'f', "./usr/.wh.gone", NULL, 0, 0, 0, 0, 0, NULL },
    { 'f', ".//usr//bin/./x", "x\n", 0, 0, 0, 0, 0, NULL },
  };
  write_tar_fmt(tar, TFMT_GNU, TF_GZIP, ents, CB_ARRAY_SIZE(ents));
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  cleanup_free char *xc = dest_file(&f, "usr/bin/x");
  CHECK_STR(xc, "x\n");
  CHECK(dest_exists(&f, "usr/.wh.gone"));
  CHECK(stat(f.dest, &after) == 0);
  CHECK_INT(after.st_mode, before.st_mode);
  CHECK(after.st_mtim.tv_sec != 5);
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

static void test_owners(void)
{
  struct fx f;
  struct stat st;
  fx_init(&f);
  if (geteuid() != 0) {
    printf("# skipped: owners need root\n");
    fx_release(&f);
    return;
  }
  cleanup_free char *tar = fx_archive(&f, "owners.tar");
  const struct tent ents[] = {
    { 'd', "d/", NULL, 02755, 0, 0, 1234, 5678, NULL },
    { 'f', "d/f", "x", 04750, 0, 0, 1234, 5678, NULL },
    { 'l', "d/l", "f", 0, 0, 0, 1234, 5678, NULL },
  };
  write_tar(tar, TF_NONE, ents);
  for (int keep = 0; keep <= 1; keep++) {
    struct cb_error err;
    bool na;
    uid_t uid = keep ? 1234 : geteuid();
    gid_t gid = keep ? 5678 : getegid();
    CHECK_INT(fx_extract_opts(&f, tar, keep, &na, &err), 0);
    CHECK(dest_lstat(&f, "d", &st));
    CHECK(st.st_uid == uid && st.st_gid == gid);
    CHECK(dest_lstat(&f, "d/f", &st));
    CHECK(st.st_uid == uid && st.st_gid == gid);
    /* chown before chmod: set-id bits survive */
    CHECK_INT(st.st_mode, S_IFREG | 04750);
    CHECK(dest_lstat(&f, "d/l", &st));
    CHECK(st.st_uid == uid && st.st_gid == gid);
    CHECK_INT(mode_of(&f, "d"), S_IFDIR | 02755);
  }
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* A chown that would change nothing is skipped, but not in a set-group-id
 * directory that was there before, whose group what is made there takes. */
static void test_owners_setgid_parent(void)
{
  struct fx f;
  struct stat st;
  struct cb_error err;
  bool na;
  fx_init(&f);
  if (geteuid() != 0) {
    printf("# skipped: owners need root\n");
    fx_release(&f);
    return;
  }
  cleanup_free char *tar = fx_archive(&f, "setgid.tar");
  cleanup_free char *g = in_dest(&f, "g");
  const struct tent ents[] = {
    { 'f', "g/f", "x", 0640, 0, 0, 0, 0, NULL },
    { 'l', "g/l", "f", 0, 0, 0, 0, 0, NULL },
    { 'd', "g/d/", NULL, 0750, 0, 0, 0, 0, NULL },
    { 'f', "g/o", "x", 0640, 0, 0, 1234, 5678, NULL },
  };
  write_tar(tar, TF_NONE, ents);
  if (mkdir(g, 0755) < 0 || chown(g, 0, 4321) < 0 || chmod(g, 02775) < 0)
    cb_die("make %s: %s", g, strerror(errno));
  CHECK_INT(fx_extract_opts(&f, tar, true, &na, &err), 0);
  CHECK(dest_lstat(&f, "g/f", &st) && st.st_uid == 0 && st.st_gid == 0);
  CHECK(dest_lstat(&f, "g/l", &st) && st.st_uid == 0 && st.st_gid == 0);
  CHECK(dest_lstat(&f, "g/d", &st) && st.st_uid == 0 && st.st_gid == 0);
  CHECK(dest_lstat(&f, "g/o", &st) && st.st_uid == 1234 && st.st_gid == 5678);
  CHECK(dest_lstat(&f, "g", &st) && st.st_gid == 4321);
  fx_release(&f);
}

static void test_xattrs_and_devices(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  struct stat st;
  char buf[64];
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "xattr.tar");
  const struct tent ents[] = {
    { 'f', "f", "x", 0, 0, 0, 0, 0, "user.test=hello" },
    { 'd', "d/", NULL, 0, 0, 0, 0, 0, "user.dir=yes" },
    { 'f', "ov", "x", 0, 0, 0, 0, 0, "trusted.overlay.redirect=/etc" },
    { 'c', "null", NULL, 0666, 0, 0, 0, 0, NULL },
  };
  write_tar(tar, TF_NONE, ents);
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  cleanup_free char *fp = in_dest(&f, "f");
  cleanup_free char *dp = in_dest(&f, "d");
  cleanup_free char *ov = in_dest(&f, "ov");
  ssize_t n = lgetxattr(fp, "user.test", buf, sizeof(buf));
  if (n < 0 && errno == ENOTSUP) {
    printf("# skipped: no user xattrs on %s\n", f.top);
  } else {
    CHECK_INT(n, 5);
    CHECK(n == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK_INT(lgetxattr(dp, "user.dir", buf, sizeof(buf)), 3);
  }
  /* trusted.overlay.* would steer overlayfs: never applied */
  CHECK_INT(lgetxattr(ov, "trusted.overlay.redirect", buf, sizeof(buf)), -1);
  /* a device node needs CAP_MKNOD; without it the entry is skipped */
  if (dest_lstat(&f, "null", &st)) {
    CHECK(S_ISCHR(st.st_mode));
    CHECK(st.st_rdev == makedev(1, 3));
    CHECK_INT(st.st_mode & 07777, 0666);
  } else {
    printf("# no device node made (no CAP_MKNOD here)\n");
    CHECK(geteuid() != 0);
  }
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

static void test_utf8_names(void)
{
  struct fx f;
  struct cb_error err;
  bool na;
  fx_init(&f);
  cleanup_free char *tar = fx_archive(&f, "utf8.tar");
  cleanup_free char *gnu = fx_archive(&f, "raw.tar");
  const struct tent ents[] = { { 'f', "caf\xc3\xa9/\xc3\xbc.txt", "u\n", 0, 0, 0, 0, 0, NULL } };
  const struct tent raw[] = { { 'f', "raw\xe9", "r\n", 0, 0, 0, 0, 0, NULL } };
  /* pax stores names in UTF-8: write them from a UTF-8 locale; the
   * extraction must not depend on the caller's (C) locale */
  locale_t utf8 = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
  CHECK(utf8 != (locale_t)0);
  if (utf8 == (locale_t)0) {
    fx_release(&f);
    return;
  }
  locale_t old = uselocale(utf8);
  write_tar(tar, TF_NONE, ents);
  uselocale(old);
  freelocale(utf8);
  write_tar_fmt(gnu, TFMT_GNU, TF_NONE, raw, CB_ARRAY_SIZE(raw));
  CHECK_INT(fx_extract(&f, tar, &na, &err), 0);
  CHECK_INT(fx_extract(&f, gnu, &na, &err), 0);
  cleanup_free char *u = dest_file(&f, "caf\xc3\xa9/\xc3\xbc.txt");
  CHECK_STR(u, "u\n");
  cleanup_free char *names = unit_list_dir(f.dest);
  CHECK_STR(names, "caf\xc3\xa9,raw\xe9");
  CHECK(outside_untouched(&f));
  fx_release(&f);
}

/* ---- the same hostile cases without openat2 ---- */

static const struct unit_test confinement_tests[] = {
  { "absolute_path", test_absolute_path },
  { "dotdot", test_dotdot },
  { "symlink_write_through", test_symlink_write_through },
  { "absolute_symlink_kept", test_absolute_symlink_kept },
  { "parent_replaced", test_parent_replaced },
  { "hardlink_outside", test_hardlink_outside },
  { "hardlink_through_symlink", test_hardlink_through_symlink },
  { "symlink_chains", test_symlink_chains },
  { "plain_tar", test_plain_tar },
  { "nested_dirs_and_modes", test_nested_dirs_and_modes },
  { "mtimes", test_mtimes },
  { "existing_merged", test_existing_merged },
  { "dot_entries", test_dot_entries },
};

/* Make openat2 answer with action (SECCOMP_RET_ERRNO | e, or a kill). */
static int filter_openat2(uint32_t action)
{
  /* openat2 is 437 on every architecture (new syscalls share numbers) */
  struct sock_filter filter[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, action),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { (unsigned short)CB_ARRAY_SIZE(filter), filter };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static bool openat2_answers(int *err)
{
  struct open_how how;
  memset(&how, 0, sizeof(how));
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT;
  long fd = syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof(how));
  if (fd >= 0) {
    close((int)fd);
    return true;
  }
  *err = errno;
  return false;
}

static void run_confinement_tests(const char *how)
{
  for (size_t i = 0; i < CB_ARRAY_SIZE(confinement_tests); i++) {
    int before = unit_failures;
    confinement_tests[i].fn();
    if (unit_failures != before)
      printf("# %s failed %s\n", confinement_tests[i].name, how);
  }
}

static void wait_child(pid_t pid, const char *what)
{
  int status;
  CHECK(pid > 0);
  if (pid <= 0)
    return;
  CHECK(waitpid(pid, &status, 0) == pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    unit_fail(__FILE__, __LINE__, "%s: child %s %d", what,
              WIFEXITED(status) ? "exited" : "died of signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* The kernel "has no openat2": the fallback must be taken by itself. */
static void test_fallback_enosys(void)
{
  pid_t pid;
  int e = 0;
  if (!openat2_answers(&e))
    printf("# openat2 is missing here already (%s): the default run was the fallback\n",
           strerror(e));
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    if (filter_openat2(SECCOMP_RET_ERRNO | ENOSYS) < 0) {
      printf("# seccomp: %s\n", strerror(errno));
      _exit(2);
    }
    if (openat2_answers(&e) || e != ENOSYS) {
      printf("# the filter did not take\n");
      _exit(2);
    }
    run_confinement_tests("with openat2 failing with ENOSYS");
    fflush(stdout);
    _exit(unit_failures ? 1 : 0);
  }
  wait_child(pid, "openat2 failing with ENOSYS");
}

/* CBUILD_NO_OPENAT2=1: the fallback is all that runs; a call to openat2
 * kills the child. */
static void test_fallback_env(void)
{
  pid_t pid;
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    char *argv[] = { (char *)"test-extract", (char *)"--fallback-child", NULL };
    setenv("CBUILD_NO_OPENAT2", "1", 1);
    execv("/proc/self/exe", argv);
    printf("# exec /proc/self/exe: %s\n", strerror(errno));
    _exit(2);
  }
  wait_child(pid, "CBUILD_NO_OPENAT2=1");
}

static int fallback_child(void)
{
  if (filter_openat2(SECCOMP_RET_KILL_PROCESS) < 0) {
    printf("# seccomp: %s\n", strerror(errno));
    return 2;
  }
  run_confinement_tests("with CBUILD_NO_OPENAT2=1");
  return unit_failures ? 1 : 0;
}

static const struct unit_test tests[] = {
  { "plain_tar", test_plain_tar },
  { "gzip", test_gzip },
  { "bzip2", test_bzip2 },
  { "xz", test_xz },
  { "zstd", test_zstd },
  { "system_compressors", test_system_compressors },
  { "empty_tar", test_empty_tar },
  { "not_archive", test_not_archive },
  { "read_error", test_read_error },
  { "truncated", test_truncated },
  { "absolute_path", test_absolute_path },
  { "dotdot", test_dotdot },
  { "symlink_write_through", test_symlink_write_through },
  { "absolute_symlink_kept", test_absolute_symlink_kept },
  { "hardlink_outside", test_hardlink_outside },
  { "hardlink_through_symlink", test_hardlink_through_symlink },
  { "symlink_chains", test_symlink_chains },
  { "message_one_line", test_message_one_line },
  { "nested_dirs_and_modes", test_nested_dirs_and_modes },
  { "mtimes", test_mtimes },
  { "existing_merged", test_existing_merged },
  { "dot_entries", test_dot_entries },
  { "owners", test_owners },
  { "owners_setgid_parent", test_owners_setgid_parent },
  { "xattrs_and_devices", test_xattrs_and_devices },
  { "utf8_names", test_utf8_names },
  { "fallback_enosys", test_fallback_enosys },
  { "fallback_env", test_fallback_env },
};

int main(int argc, char **argv)
{
  if (argc == 2 && strcmp(argv[1], "--fallback-child") == 0)
    return fallback_child();
  return unit_main(tests, CB_ARRAY_SIZE(tests), argc, argv);
}
