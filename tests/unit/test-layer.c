/* Digests and the streaming layer writer (oci/digest.c, oci/layer-write.c). */
#include "unit.h"
#include "../../oci/oci.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

/* ---- helpers ---- */

/* A temporary file, unlinked at once: the fd is all we need. */
static int temp_fd(void)
{
  const char *dir = getenv("TMPDIR");
  char *path = xasprintf("%s/cbuild-test-layer.XXXXXX", dir && *dir ? dir : "/tmp");
  int fd = mkstemp(path);
  if (fd < 0)
    cb_die("mkstemp %s: %s", path, strerror(errno));
  unlink(path);
  free(path);
  return fd;
}

/* A named temporary file, for the tools run with system(). */
static char *temp_path(void)
{
  const char *dir = getenv("TMPDIR");
  char *path = xasprintf("%s/cbuild-test-layer.XXXXXX", dir && *dir ? dir : "/tmp");
  int fd = mkstemp(path);
  if (fd < 0)
    cb_die("mkstemp %s: %s", path, strerror(errno));
  close(fd);
  return path;
}

static void read_all_fd(int fd, struct strbuf *out)
{
  char buf[65536];
  ssize_t n;
  strbuf_reset(out);
  if (lseek(fd, 0, SEEK_SET) < 0)
    cb_die("lseek: %s", strerror(errno));
  while ((n = read(fd, buf, sizeof(buf))) > 0)
    strbuf_add(out, buf, (size_t)n);
}

static int fd_with_content(const void *data, size_t n)
{
  int fd = temp_fd();
  if (n > 0 && write(fd, data, n) != (ssize_t)n)
    cb_die("write: %s", strerror(errno));
  lseek(fd, 0, SEEK_SET);
  return fd;
}

/* Deterministic "mixed" bytes: runs of words and runs of noise. */
static uint64_t rng_state;
static uint64_t rng_next(void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void fill_mixed(unsigned char *buf, size_t n, uint64_t seed)
{
  static const char *words[] = { "layer ", "image ", "the ", "digest ", "tar ", "of ",
                                 "container\n", "build ", "sha256 ", "zstd ", "gzip ", "a " };
  rng_state = seed | 1;
  size_t i = 0;
  while (i < n) {
    size_t run = 4096 + rng_next() % 65536;
    bool text = (rng_next() & 1) == 0;
    for (size_t k = 0; k < run && i < n;) {
      if (text) {
        const char *w = words[rng_next() % CB_ARRAY_SIZE(words)];
        for (; *w && i < n && k < run; w++, k++)
          buf[i++] = (unsigned char)*w;
      } else {
        uint64_t r = rng_next();
        for (int b = 0; b < 8 && i < n && k < run; b++, k++)
          buf[i++] = (unsigned char)(r >> (8 * b));
      }
    }
  }
}

static struct oci_layer_options opts(enum oci_compression c, int threads)
{
  struct oci_layer_options o = { c, 0, threads, -1, NULL };
  return o;
}

static const unsigned char cap_value[] = { 0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00 };

/* The sample layer: every kind of entry.  Returns the blob on fd, or -1. */
static int write_sample(const struct oci_layer_options *o, struct oci_layer_info *info,
                        struct cb_error *err)
{
  int fd = temp_fd();
  struct oci_layer_writer *w = oci_layer_writer_new(fd, o, err);
  if (w == NULL) {
    close(fd);
    return -1;
  }
  struct oci_xattr xattrs[] = {
    { "user.zeta", "z", 1 },
    { "trusted.secret", "t", 1 },
    { "security.capability", cap_value, sizeof(cap_value) },
    { "security.selinux", "system_u:object_r:bin_t:s0", 26 },
    { "user.alpha", "a\0b", 3 },
  };
  static const char hello[] = "hello, layer\n";
  struct oci_entry entries[] = {
    { .path = "bin", .mode = S_IFDIR | 0755, .mtime = 1000 },
    { .path = "bin/ping", .mode = S_IFREG | 04755, .uid = 0, .gid = 0, .mtime = 2000,
      .size = sizeof(hello) - 1, .xattrs = xattrs, .n_xattrs = CB_ARRAY_SIZE(xattrs) },
    { .path = "bin/ping6", .mode = S_IFREG | 04755, .mtime = 2000, .hardlink = "bin/ping" },
    { .path = "bin/sh", .mode = S_IFLNK | 0777, .mtime = 3000, .symlink = "/bin/busybox" },
    { .path = "dev", .mode = S_IFDIR | 0755, .uid = 1, .gid = 2, .mtime = 1000 },
    { .path = "dev/fifo", .mode = S_IFIFO | 0600, .mtime = 1000 },
    { .path = "dev/null", .mode = S_IFCHR | 0666, .mtime = 1000, .rdev = makedev(1, 3) },
    { .path = "dev/sda", .mode = S_IFBLK | 0660, .gid = 6, .mtime = 1000,
      .rdev = makedev(8, 0) },
    { .path = "empty", .mode = S_IFREG | 0644, .uid = 1000, .gid = 1000, .mtime = 5 },
    { .path = "home", .mode = S_IFDIR | 0700, .uid = 1000, .gid = 100, .mtime = 4000 },
    { .path = "home/heredoc", .mode = S_IFREG | 0640, .uid = 1000, .gid = 100, .mtime = 4000,
      .size = 5 },
  };
  for (size_t i = 0; i < CB_ARRAY_SIZE(entries); i++) {
    int r;
    if (strcmp(entries[i].path, "bin/ping") == 0) {
      int cfd = fd_with_content(hello, sizeof(hello) - 1);
      r = oci_layer_writer_add(w, &entries[i], cfd, err);
      close(cfd);
    } else if (strcmp(entries[i].path, "home/heredoc") == 0) {
      r = oci_layer_writer_add_data(w, &entries[i], "hi!\n\n", err);
    } else {
      r = oci_layer_writer_add(w, &entries[i], -1, err);
    }
    if (r < 0) {
      oci_layer_writer_free(w);
      close(fd);
      return -1;
    }
  }
  int r = oci_layer_writer_finish(w, info, err);
  oci_layer_writer_free(w);
  if (r < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The decompressed stream of a blob, through libarchive's raw format. */
static void decompress_fd(int fd, struct strbuf *out)
{
  struct archive *a = archive_read_new();
  struct archive_entry *ae;
  char buf[65536];
  la_ssize_t n;

  strbuf_reset(out);
  lseek(fd, 0, SEEK_SET);
  archive_read_support_filter_all(a);
  archive_read_support_format_raw(a);
  if (archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK ||
      archive_read_next_header(a, &ae) != ARCHIVE_OK) {
    unit_fail(__FILE__, __LINE__, "raw read: %s", archive_error_string(a));
    archive_read_free(a);
    return;
  }
  while ((n = archive_read_data(a, buf, sizeof(buf))) > 0)
    strbuf_add(out, buf, (size_t)n);
  if (n < 0)
    unit_fail(__FILE__, __LINE__, "raw read data: %s", archive_error_string(a));
  archive_read_free(a);
}

static bool xattr_find(struct archive_entry *ae, const char *name, const void **v, size_t *n)
{
  const char *xn;
  archive_entry_xattr_reset(ae);
  while (archive_entry_xattr_next(ae, &xn, v, n) == ARCHIVE_OK)
    if (strcmp(xn, name) == 0)
      return true;
  return false;
}

static struct oci_layer_writer *new_writer(int fd, const struct oci_layer_options *o)
{
  struct cb_error err;
  struct oci_layer_writer *w = oci_layer_writer_new(fd, o, &err);
  if (w == NULL)
    cb_die("oci_layer_writer_new: %s", err.msg);
  return w;
}

/* ---- digests ---- */

/* Incremental, and reusable after final. */
static void check_incremental(struct oci_hasher *h)
{
  char d[OCI_DIGEST_SIZE];
  const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  oci_hasher_update(h, "a", 1);
  oci_hasher_update(h, "", 0);
  oci_hasher_update(h, "bc", 2);
  oci_hasher_final(h, d);
  CHECK_STR(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  oci_hasher_final(h, d);
  CHECK_STR(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  oci_hasher_update(h, msg, strlen(msg));
  oci_hasher_final(h, d);
  CHECK_STR(d, "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_digest_known(void)
{
  char d[OCI_DIGEST_SIZE];
  oci_digest_buf("", 0, d);
  CHECK_STR(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  oci_digest_buf("abc", 3, d);
  CHECK_STR(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

  struct oci_hasher *h = oci_hasher_new();
  check_incremental(h);
  oci_hasher_free(h);
  oci_hasher_free(NULL);
}

/* The threaded hasher gives the same digests, whatever the pieces: tiny,
 * odd-sized across the ring's wrap, larger than the ring. */
static void test_digest_threaded(void)
{
  char d[OCI_DIGEST_SIZE], want[OCI_DIGEST_SIZE];
  struct oci_hasher *h = oci_hasher_new_threaded();
  struct oci_hasher *plain = oci_hasher_new();
  size_t n = (size_t)11 << 20;
  unsigned char *buf = xmalloc(n);

  check_incremental(h);
  for (size_t i = 0; i < n; i++)
    buf[i] = (unsigned char)(i * 2654435761u >> 13);
  oci_hasher_update(plain, buf, n);
  oci_hasher_final(plain, want);
  for (size_t at = 0, k = 1; at < n; k = k * 3 + 7) {
    size_t piece = k % ((size_t)3 << 20);
    if (piece > n - at)
      piece = n - at;
    oci_hasher_update(h, buf + at, piece);
    at += piece;
  }
  oci_hasher_final(h, d);
  CHECK_STR(d, want);

  /* final_later(): many streams back to back, of every size (empty, a
   * byte, across the ring's wrap, larger than the ring), each digest the
   * one a plain hasher gives, written by the time wait() returns */
  {
    enum { STREAMS = 64 };
    static char got[STREAMS][OCI_DIGEST_SIZE], exp[STREAMS][OCI_DIGEST_SIZE];
    size_t at = 0;
    for (size_t i = 0; i < STREAMS; i++) {
      size_t len = i == 0 ? 0 : i == 1 ? 1 : i == 40 ? ((size_t)5 << 20) : (i * 104729) % 300000;
      if (at + len > n)
        at = 0;
      oci_hasher_update(h, buf + at, len);
      oci_hasher_final_later(h, got[i]);
      oci_hasher_update(plain, buf + at, len);
      oci_hasher_final_later(plain, exp[i]); /* no thread: at once */
      at += len;
    }
    oci_hasher_wait(h);
    for (size_t i = 0; i < STREAMS; i++)
      CHECK_STR(got[i], exp[i]);
    CHECK_STR(exp[0], "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* and after them, final() gives the next stream's own digest */
    oci_hasher_update(h, buf, n);
    oci_hasher_final(h, d);
    CHECK_STR(d, want);
  }

  /* wait() returns only once the last digest is written, each time (the
   * thread used to let it go as it took the mark, before writing) */
  {
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
      char got[OCI_DIGEST_SIZE] = "", exp[OCI_DIGEST_SIZE];
      size_t len = (size_t)(i % 97);
      oci_hasher_update(h, buf, len);
      oci_hasher_final_later(h, got);
      oci_hasher_wait(h);
      oci_hasher_update(plain, buf, len);
      oci_hasher_final(plain, exp);
      bad += strcmp(got, exp) != 0;
    }
    CHECK_INT(bad, 0);
  }

  /* freed with data still to hash, and a digest asked for */
  oci_hasher_update(h, buf, n);
  {
    char never[OCI_DIGEST_SIZE];
    oci_hasher_final_later(h, never);
    oci_hasher_update(h, buf, n);
    oci_hasher_free(h);
  }
  oci_hasher_free(plain);
  free(buf);
}

static void test_digest_fd_and_valid(void)
{
  struct cb_error err;
  char d[OCI_DIGEST_SIZE];
  int64_t size = -1;
  int fd = fd_with_content("abc", 3);
  CHECK_INT(oci_digest_fd(fd, d, &size, &err), 0);
  CHECK_STR(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK_INT(size, 3);
  close(fd);

  /* A million 'a's, across several reads. */
  size_t n = 1000000;
  char *buf = xmalloc(n);
  memset(buf, 'a', n);
  fd = fd_with_content(buf, n);
  free(buf);
  CHECK_INT(oci_digest_fd(fd, d, &size, &err), 0);
  CHECK_STR(d, "sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  CHECK_INT(size, 1000000);
  close(fd);

  CHECK_INT(oci_digest_fd(-1, d, &size, &err), -1);
  CHECK_CONTAINS(err.msg, "Bad file descriptor");

  CHECK(oci_digest_valid("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  CHECK(!oci_digest_valid("sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  CHECK(!oci_digest_valid("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a"));
  CHECK(!oci_digest_valid("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0"));
  CHECK(!oci_digest_valid("sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  CHECK(!oci_digest_valid("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  CHECK(!oci_digest_valid(""));
  CHECK(!oci_digest_valid(NULL));
}

static void test_compression_names(void)
{
  enum oci_compression c = OCI_COMPRESSION_NONE;
  CHECK_INT(oci_compression_parse("gzip", &c), 0);
  CHECK_INT(c, OCI_COMPRESSION_GZIP);
  CHECK_INT(oci_compression_parse("zstd", &c), 0);
  CHECK_INT(c, OCI_COMPRESSION_ZSTD);
  CHECK_INT(oci_compression_parse("none", &c), 0);
  CHECK_INT(c, OCI_COMPRESSION_NONE);
  CHECK_INT(oci_compression_parse("xz", &c), -1);
  CHECK_INT(oci_compression_parse("GZIP", &c), -1);
  CHECK_STR(oci_compression_media_type(OCI_COMPRESSION_GZIP),
            "application/vnd.oci.image.layer.v1.tar+gzip");
  CHECK_STR(oci_compression_media_type(OCI_COMPRESSION_ZSTD),
            "application/vnd.oci.image.layer.v1.tar+zstd");
  CHECK_STR(oci_compression_media_type(OCI_COMPRESSION_NONE),
            "application/vnd.oci.image.layer.v1.tar");

  struct cb_error err;
  struct oci_layer_options o = opts(OCI_COMPRESSION_GZIP, 1);
  o.level = 13;
  CHECK(oci_layer_writer_new(1, &o, &err) == NULL);
  CHECK_STR(err.msg, "gzip compression level 13 out of range (1-12)");
  o.compression = OCI_COMPRESSION_ZSTD;
  o.level = -1;
  CHECK(oci_layer_writer_new(1, &o, &err) == NULL);
  CHECK_CONTAINS(err.msg, "zstd compression level -1 out of range");
}

/* ---- layer contents ---- */

/* Every header field of the sample layer, read back with libarchive. */
static void test_layer_fields(void)
{
  struct cb_error err;
  struct oci_layer_info info;
  struct oci_layer_options o = opts(OCI_COMPRESSION_GZIP, 2);
  int fd = write_sample(&o, &info, &err);
  if (fd < 0) {
    unit_fail(__FILE__, __LINE__, "write_sample: %s", err.msg);
    return;
  }
  CHECK_STR(info.media_type, "application/vnd.oci.image.layer.v1.tar+gzip");

  struct archive *a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_all(a);
  lseek(fd, 0, SEEK_SET);
  CHECK_INT(archive_read_open_fd(a, fd, 65536), ARCHIVE_OK);
  CHECK_INT(archive_filter_code(a, 0), ARCHIVE_FILTER_GZIP);

  static const struct {
    const char *name;
    mode_t mode;
    int64_t uid, gid, mtime, size;
    const char *link; /* symlink or hardlink target */
  } want[] = {
    { "bin/", S_IFDIR | 0755, 0, 0, 1000, 0, NULL },
    { "bin/ping", S_IFREG | 04755, 0, 0, 2000, 13, NULL },
    { "bin/ping6", S_IFREG | 04755, 0, 0, 2000, 0, "bin/ping" },
    { "bin/sh", S_IFLNK | 0777, 0, 0, 3000, 0, "/bin/busybox" },
    { "dev/", S_IFDIR | 0755, 1, 2, 1000, 0, NULL },
    { "dev/fifo", S_IFIFO | 0600, 0, 0, 1000, 0, NULL },
    { "dev/null", S_IFCHR | 0666, 0, 0, 1000, 0, NULL },
    { "dev/sda", S_IFBLK | 0660, 0, 6, 1000, 0, NULL },
    { "empty", S_IFREG | 0644, 1000, 1000, 5, 0, NULL },
    { "home/", S_IFDIR | 0700, 1000, 100, 4000, 0, NULL },
    { "home/heredoc", S_IFREG | 0640, 1000, 100, 4000, 5, NULL },
  };
  struct archive_entry *ae;
  size_t i = 0;
  int r;
  while ((r = archive_read_next_header(a, &ae)) == ARCHIVE_OK) {
    if (i >= CB_ARRAY_SIZE(want)) {
      unit_fail(__FILE__, __LINE__, "extra entry %s", archive_entry_pathname(ae));
      break;
    }
    CHECK_STR(archive_entry_pathname(ae), want[i].name);
    CHECK_INT(archive_entry_uid(ae), want[i].uid);
    CHECK_INT(archive_entry_gid(ae), want[i].gid);
    CHECK(archive_entry_uname(ae) == NULL || *archive_entry_uname(ae) == '\0');
    CHECK(archive_entry_gname(ae) == NULL || *archive_entry_gname(ae) == '\0');
    CHECK_INT(archive_entry_mtime(ae), want[i].mtime);
    CHECK_INT(archive_entry_mtime_nsec(ae), 0);
    CHECK(!archive_entry_atime_is_set(ae));
    CHECK(!archive_entry_ctime_is_set(ae));
    CHECK(!archive_entry_birthtime_is_set(ae));
    CHECK_INT(archive_entry_size(ae), want[i].size);
    if (want[i].link != NULL && (want[i].mode & S_IFMT) == S_IFLNK) {
      CHECK_INT(archive_entry_mode(ae), want[i].mode);
      CHECK_STR(archive_entry_symlink(ae), want[i].link);
    } else if (want[i].link != NULL) {
      CHECK_STR(archive_entry_hardlink(ae), want[i].link);
      CHECK_INT(archive_entry_perm(ae), want[i].mode & 07777);
    } else {
      CHECK_INT(archive_entry_mode(ae), want[i].mode);
      CHECK(archive_entry_hardlink(ae) == NULL);
    }
    if (strcmp(want[i].name, "dev/null") == 0) {
      CHECK_INT(archive_entry_rdevmajor(ae), 1);
      CHECK_INT(archive_entry_rdevminor(ae), 3);
    }
    if (strcmp(want[i].name, "dev/sda") == 0) {
      CHECK_INT(archive_entry_rdevmajor(ae), 8);
      CHECK_INT(archive_entry_rdevminor(ae), 0);
    }
    const void *v;
    size_t vn;
    if (strcmp(want[i].name, "bin/ping") == 0) {
      char buf[64] = "";
      CHECK_INT(archive_read_data(a, buf, sizeof(buf)), 13);
      CHECK_STR(buf, "hello, layer\n");
      CHECK(xattr_find(ae, "security.capability", &v, &vn));
      CHECK(vn == sizeof(cap_value) && memcmp(v, cap_value, vn) == 0);
      CHECK(xattr_find(ae, "user.alpha", &v, &vn));
      CHECK(vn == 3 && memcmp(v, "a\0b", 3) == 0);
      CHECK(xattr_find(ae, "user.zeta", &v, &vn));
      CHECK(vn == 1 && memcmp(v, "z", 1) == 0);
      CHECK(!xattr_find(ae, "trusted.secret", &v, &vn));
      CHECK(!xattr_find(ae, "security.selinux", &v, &vn));
    } else {
      CHECK(!xattr_find(ae, "user.zeta", &v, &vn));
    }
    if (strcmp(want[i].name, "home/heredoc") == 0) {
      char buf[64] = "";
      CHECK_INT(archive_read_data(a, buf, sizeof(buf)), 5);
      CHECK_STR(buf, "hi!\n\n");
    }
    i++;
  }
  CHECK_INT(r, ARCHIVE_EOF);
  CHECK_INT(i, CB_ARRAY_SIZE(want));
  archive_read_free(a);

  /* What Go's archive/tar and containerd read: SCHILY.xattr records,
   * and nothing of atime, ctime or the dropped xattrs. */
  cleanup_strbuf struct strbuf tar = STRBUF_INIT;
  decompress_fd(fd, &tar);
  CHECK(memmem(tar.buf, tar.len, "SCHILY.xattr.security.capability=", 33) != NULL);
  CHECK(memmem(tar.buf, tar.len, "SCHILY.xattr.user.alpha=a\0b\n", 28) != NULL);
  CHECK(memmem(tar.buf, tar.len, "atime", 5) == NULL);
  CHECK(memmem(tar.buf, tar.len, "ctime", 5) == NULL);
  CHECK(memmem(tar.buf, tar.len, "trusted", 7) == NULL);
  CHECK(memmem(tar.buf, tar.len, "selinux", 7) == NULL);
  CHECK(memmem(tar.buf, tar.len, "PaxHeader.", 10) == NULL);
  /* Sorted xattrs: alpha before zeta whatever the input order. */
  char *alpha = memmem(tar.buf, tar.len, "SCHILY.xattr.user.alpha", 23);
  char *zeta = memmem(tar.buf, tar.len, "SCHILY.xattr.user.zeta", 22);
  CHECK(alpha != NULL && zeta != NULL && alpha < zeta);
  /* No 10 KiB record padding: the tar ends after two zero blocks. */
  CHECK_INT(tar.len % 512, 0);
  CHECK(tar.len >= 1024 && tar.len % 10240 != 0);
  bool zeros = true;
  for (size_t k = tar.len - 1024; k < tar.len; k++)
    zeros = zeros && tar.buf[k] == 0;
  CHECK(zeros);
  /* The last entry, home/heredoc: its header, one data block, the end. */
  CHECK(tar.len >= 2048 && memcmp(tar.buf + tar.len - 2048, "home/heredoc", 13) == 0);
  CHECK(tar.len >= 2048 && memcmp(tar.buf + tar.len - 2048 + 257, "ustar", 6) == 0);
  close(fd);
}

/* diff_id is the tar's digest, digest the blob's, for each compression. */
static void test_layer_digests(void)
{
  static const enum oci_compression cs[] = { OCI_COMPRESSION_GZIP, OCI_COMPRESSION_ZSTD,
                                             OCI_COMPRESSION_NONE };
  cleanup_strbuf struct strbuf tar = STRBUF_INIT;
  cleanup_strbuf struct strbuf blob = STRBUF_INIT;
  char d[OCI_DIGEST_SIZE], first_diff_id[OCI_DIGEST_SIZE] = "";
  for (size_t i = 0; i < CB_ARRAY_SIZE(cs); i++) {
    struct cb_error err;
    struct oci_layer_info info;
    struct oci_layer_options o = opts(cs[i], 0);
    int fd = write_sample(&o, &info, &err);
    if (fd < 0) {
      unit_fail(__FILE__, __LINE__, "write_sample: %s", err.msg);
      continue;
    }
    read_all_fd(fd, &blob);
    CHECK_INT(info.size, blob.len);
    oci_digest_buf(blob.buf, blob.len, d);
    CHECK_STR(info.digest, d);
    decompress_fd(fd, &tar);
    oci_digest_buf(tar.buf, tar.len, d);
    CHECK_STR(info.diff_id, d);
    CHECK(oci_digest_valid(info.diff_id));
    /* The same tar whatever the compression. */
    if (i == 0)
      memcpy(first_diff_id, info.diff_id, OCI_DIGEST_SIZE);
    else
      CHECK_STR(info.diff_id, first_diff_id);
    if (cs[i] == OCI_COMPRESSION_NONE) {
      CHECK_STR(info.diff_id, info.digest);
      CHECK_STR(info.media_type, "application/vnd.oci.image.layer.v1.tar");
    } else {
      CHECK(strcmp(info.diff_id, info.digest) != 0);
    }
    if (cs[i] == OCI_COMPRESSION_ZSTD) {
      CHECK_STR(info.media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
      CHECK(blob.len >= 4 && memcmp(blob.buf, "\x28\xb5\x2f\xfd", 4) == 0);
    }
    close(fd);
  }
}

/* A layer of `n` mixed bytes in a few files, from one generated buffer. */
static int write_big(const struct oci_layer_options *o, const unsigned char *data, size_t n,
                     struct oci_layer_info *info)
{
  struct cb_error err;
  int fd = temp_fd();
  struct oci_layer_writer *w = new_writer(fd, o);
  struct oci_entry dir = { .path = "data", .mode = S_IFDIR | 0755, .mtime = 1 };
  CHECK_INT(oci_layer_writer_add(w, &dir, -1, &err), 0);
  /* Unequal files so that entries straddle the 1 MiB blocks. */
  size_t sizes[] = { n / 2 + 12345, 777, n / 3, 0 };
  sizes[3] = n - sizes[0] - sizes[1] - sizes[2];
  size_t off = 0;
  for (size_t i = 0; i < CB_ARRAY_SIZE(sizes); i++) {
    char *path = xasprintf("data/f%zu", i);
    struct oci_entry e = { .path = path, .mode = S_IFREG | 0644, .mtime = 1,
                           .size = (int64_t)sizes[i] };
    if (i % 2 == 0) {
      CHECK_INT(oci_layer_writer_add_data(w, &e, data + off, &err), 0);
    } else {
      int cfd = fd_with_content(data + off, sizes[i]);
      CHECK_INT(oci_layer_writer_add(w, &e, cfd, &err), 0);
      close(cfd);
    }
    off += sizes[i];
    free(path);
  }
  if (oci_layer_writer_finish(w, info, &err) < 0)
    unit_fail(__FILE__, __LINE__, "finish: %s", err.msg);
  oci_layer_writer_free(w);
  return fd;
}

/* oci_layer_writer_add_hashed(): the hasher sees exactly the content the
 * layer holds, after what the caller put in first; the layer is the one
 * oci_layer_writer_add() makes. */
static void test_layer_content_hashed(void)
{
  size_t n = 3u << 20; /* several reads of the writer's */
  unsigned char *data = xmalloc(n);
  struct oci_layer_options o = opts(OCI_COMPRESSION_GZIP, 1);
  struct oci_layer_info plain, hashed;
  struct oci_entry e = { .path = "f", .mode = S_IFREG | 0644, .mtime = 1, .size = (int64_t)n };
  struct oci_entry d = { .path = "g", .mode = S_IFDIR | 0755, .mtime = 1 };
  struct cb_error err;
  char got[OCI_DIGEST_SIZE], want[OCI_DIGEST_SIZE];
  fill_mixed(data, n, 7);
  for (int with = 0; with <= 1; with++) {
    int fd = temp_fd(), cfd = fd_with_content(data, n);
    struct oci_layer_writer *w = new_writer(fd, &o);
    struct oci_hasher *h = oci_hasher_new();
    oci_hasher_update(h, "prefix", 6);
    if (with) {
      CHECK_INT(oci_layer_writer_add_hashed(w, &e, cfd, h, &err), 0);
      oci_hasher_final(h, got);
      /* a directory has no content: the hasher gets nothing */
      oci_hasher_update(h, "prefix", 6);
      CHECK_INT(oci_layer_writer_add_hashed(w, &d, -1, h, &err), 0);
      oci_hasher_final(h, want);
      CHECK_STR(want, "sha256:e7a2e8b216e5aec3facf743962d3997f2e7d70088ef257de472d6a258049832e");
    } else {
      CHECK_INT(oci_layer_writer_add(w, &e, cfd, &err), 0);
      CHECK_INT(oci_layer_writer_add(w, &d, -1, &err), 0);
    }
    CHECK_INT(oci_layer_writer_finish(w, with ? &hashed : &plain, &err), 0);
    oci_layer_writer_free(w);
    oci_hasher_free(h);
    close(cfd);
    close(fd);
  }
  struct oci_hasher *h = oci_hasher_new();
  oci_hasher_update(h, "prefix", 6);
  oci_hasher_update(h, data, n);
  oci_hasher_final(h, want);
  oci_hasher_free(h);
  CHECK_STR(got, want);
  CHECK_STR(hashed.digest, plain.digest);
  CHECK_STR(hashed.diff_id, plain.diff_id);
  free(data);
}

/* Byte-identical blobs for 1, 2 and 3 threads, with gzip and zstd. */
static void test_layer_threads_identical(void)
{
  size_t n = 20u << 20; /* several gzip blocks and zstd jobs */
  unsigned char *data = xmalloc(n);
  fill_mixed(data, n, 42);
  static const enum oci_compression cs[] = { OCI_COMPRESSION_GZIP, OCI_COMPRESSION_ZSTD };
  for (size_t c = 0; c < CB_ARRAY_SIZE(cs); c++) {
    cleanup_strbuf struct strbuf first = STRBUF_INIT;
    cleanup_strbuf struct strbuf other = STRBUF_INIT;
    char first_digest[OCI_DIGEST_SIZE] = "";
    for (int threads = 1; threads <= 3; threads++) {
      struct oci_layer_info info;
      struct oci_layer_options o = opts(cs[c], threads);
      int fd = write_big(&o, data, n, &info);
      if (threads == 1) {
        read_all_fd(fd, &first);
        memcpy(first_digest, info.digest, OCI_DIGEST_SIZE);
        /* Compressed: the text halves shrink. */
        CHECK(first.len < n * 3 / 4);
      } else {
        read_all_fd(fd, &other);
        CHECK_INT(other.len, first.len);
        CHECK(other.len == first.len && memcmp(other.buf, first.buf, first.len) == 0);
        CHECK_STR(info.digest, first_digest);
      }
      close(fd);
    }
  }
  free(data);
}

static void test_layer_source_date_epoch(void)
{
  struct cb_error err;
  struct oci_layer_info info;
  int64_t mtimes[] = { 0, 999, 1000, 1001, 2000000000 };
  int64_t epochs[] = { 1000, -1, 0 };
  for (size_t k = 0; k < CB_ARRAY_SIZE(epochs); k++) {
    struct oci_layer_options o = opts(OCI_COMPRESSION_NONE, 1);
    o.source_date_epoch = epochs[k];
    int fd = temp_fd();
    struct oci_layer_writer *w = new_writer(fd, &o);
    for (size_t i = 0; i < CB_ARRAY_SIZE(mtimes); i++) {
      char *path = xasprintf("f%zu", i);
      struct oci_entry e = { .path = path, .mode = S_IFREG | 0644, .mtime = mtimes[i] };
      CHECK_INT(oci_layer_writer_add_data(w, &e, "", &err), 0);
      free(path);
    }
    CHECK_INT(oci_layer_writer_finish(w, &info, &err), 0);
    oci_layer_writer_free(w);

    struct archive *a = archive_read_new();
    struct archive_entry *ae;
    archive_read_support_format_tar(a);
    lseek(fd, 0, SEEK_SET);
    CHECK_INT(archive_read_open_fd(a, fd, 65536), ARCHIVE_OK);
    for (size_t i = 0; i < CB_ARRAY_SIZE(mtimes); i++) {
      if (archive_read_next_header(a, &ae) != ARCHIVE_OK) {
        unit_fail(__FILE__, __LINE__, "entry %zu missing", i);
        break;
      }
      int64_t want = mtimes[i];
      if (epochs[k] >= 0 && want > epochs[k])
        want = epochs[k];
      CHECK_INT(archive_entry_mtime(ae), want);
      CHECK(!archive_entry_atime_is_set(ae));
      CHECK(!archive_entry_ctime_is_set(ae));
    }
    archive_read_free(a);
    close(fd);
  }
}

static void test_layer_rejects_bad_order_and_paths(void)
{
  struct cb_error err;
  struct oci_layer_info info;
  struct oci_layer_options o = opts(OCI_COMPRESSION_GZIP, 1);
  int fd = temp_fd();
  struct oci_layer_writer *w = new_writer(fd, &o);
  struct oci_entry e = { .path = "etc", .mode = S_IFDIR | 0755 };
  CHECK_INT(oci_layer_writer_add(w, &e, -1, &err), 0);
  e.path = "etc/passwd";
  e.mode = S_IFREG | 0644;
  CHECK_INT(oci_layer_writer_add_data(w, &e, "", &err), 0);

  e.path = "etc/group"; /* sorts before etc/passwd */
  CHECK_INT(oci_layer_writer_add_data(w, &e, "", &err), -1);
  CHECK_STR(err.msg, "layer entry \"etc/group\" comes after \"etc/passwd\": entries must be "
                     "sorted by path");
  e.path = "etc/passwd";
  CHECK_INT(oci_layer_writer_add_data(w, &e, "", &err), -1);
  CHECK_STR(err.msg, "layer entry \"etc/passwd\" added twice");

  static const char *bad[] = { "", "/abs", "x/", "x//y", "./x", "x/./y", "x/..", "../x" };
  for (size_t i = 0; i < CB_ARRAY_SIZE(bad); i++) {
    e.path = bad[i];
    CHECK_INT(oci_layer_writer_add_data(w, &e, "", &err), -1);
    CHECK_CONTAINS(err.msg, "invalid path");
  }
  /* A hardlink must point back at an earlier entry. */
  struct oci_entry hl = { .path = "etc/shadow", .mode = S_IFREG | 0640,
                          .hardlink = "etc/whatever" };
  CHECK_INT(oci_layer_writer_add(w, &hl, -1, &err), -1);
  CHECK_CONTAINS(err.msg, "hardlink \"etc/shadow\" to \"etc/whatever\"");
  struct oci_entry sock = { .path = "run.sock", .mode = S_IFSOCK | 0600 };
  CHECK_INT(oci_layer_writer_add(w, &sock, -1, &err), -1);
  CHECK_STR(err.msg, "socket \"run.sock\" cannot be stored in a layer");
  struct oci_entry link = { .path = "link", .mode = S_IFLNK | 0777 };
  CHECK_INT(oci_layer_writer_add(w, &link, -1, &err), -1);
  CHECK_STR(err.msg, "symlink \"link\" has no target");

  /* Refused entries write nothing: the layer can go on. */
  e.path = "etc/shadow";
  CHECK_INT(oci_layer_writer_add_data(w, &e, "", &err), 0);
  CHECK_INT(oci_layer_writer_finish(w, &info, &err), 0);
  CHECK_INT(oci_layer_writer_finish(w, &info, &err), -1);
  CHECK_CONTAINS(err.msg, "already finished");
  CHECK_INT(oci_layer_writer_add_data(w, &e, "", &err), -1);
  oci_layer_writer_free(w);
  close(fd);
}

static void test_layer_content_size_mismatch(void)
{
  struct cb_error err;
  struct oci_layer_info info;
  struct oci_layer_options o = opts(OCI_COMPRESSION_ZSTD, 1);

  /* Shorter than the header says. */
  int fd = temp_fd();
  struct oci_layer_writer *w = new_writer(fd, &o);
  struct oci_entry e = { .path = "app/data.bin", .mode = S_IFREG | 0644, .size = 10 };
  int cfd = fd_with_content("12345", 5);
  CHECK_INT(oci_layer_writer_add(w, &e, cfd, &err), -1);
  CHECK_STR(err.msg, "read \"app/data.bin\": file shrank while being read (5 of 10 bytes)");
  close(cfd);
  /* The tar is broken now: nothing more goes in, and it does not finish. */
  e.path = "app/other";
  e.size = 0;
  CHECK_INT(oci_layer_writer_add(w, &e, -1, &err), -1);
  CHECK_CONTAINS(err.msg, "failed earlier");
  CHECK_INT(oci_layer_writer_finish(w, &info, &err), -1);
  oci_layer_writer_free(w);
  close(fd);

  /* Longer: it grew after its size was taken. */
  fd = temp_fd();
  w = new_writer(fd, &o);
  e.path = "app/log";
  e.size = 3;
  cfd = fd_with_content("12345", 5);
  CHECK_INT(oci_layer_writer_add(w, &e, cfd, &err), -1);
  CHECK_STR(err.msg, "read \"app/log\": file grew while being read (more than 3 bytes)");
  close(cfd);
  oci_layer_writer_free(w);
  close(fd);

  /* Unreadable: a directory fd. */
  fd = temp_fd();
  w = new_writer(fd, &o);
  e.path = "x";
  cfd = open("/", O_RDONLY | O_DIRECTORY);
  CHECK_INT(oci_layer_writer_add(w, &e, cfd, &err), -1);
  CHECK_STR(err.msg, "read \"x\": Is a directory");
  close(cfd);
  oci_layer_writer_free(w);
  close(fd);

  /* No content at all for a non-empty file. */
  fd = temp_fd();
  w = new_writer(fd, &o);
  CHECK_INT(oci_layer_writer_add(w, &e, -1, &err), -1);
  CHECK_STR(err.msg, "add \"x\": no content given for 3 bytes");
  oci_layer_writer_free(w);
  close(fd);
}

/* A write error names the cause and poisons the layer. */
static void test_layer_write_error(void)
{
  struct cb_error err;
  struct oci_layer_info info;
  int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    unit_fail(__FILE__, __LINE__, "open /dev/full: %s", strerror(errno));
    return;
  }
  static const enum oci_compression cs[] = { OCI_COMPRESSION_NONE, OCI_COMPRESSION_GZIP,
                                             OCI_COMPRESSION_ZSTD };
  size_t n = 3u << 20;
  unsigned char *data = xmalloc(n);
  fill_mixed(data, n, 7);
  for (size_t i = 0; i < CB_ARRAY_SIZE(cs); i++) {
    struct oci_layer_options o = opts(cs[i], 2);
    struct oci_layer_writer *w = new_writer(fd, &o);
    struct oci_entry e = { .path = "big", .mode = S_IFREG | 0644, .size = (int64_t)n };
    int r = oci_layer_writer_add_data(w, &e, data, &err);
    if (r == 0)
      r = oci_layer_writer_finish(w, &info, &err);
    CHECK_INT(r, -1);
    CHECK_CONTAINS(err.msg, "write layer: No space left on device");
    oci_layer_writer_free(w);
  }
  free(data);
  close(fd);
}

/* A 64 MiB layer: many gzip members, valid for gzip(1) and tar(1). */
static void test_layer_large_gzip_valid(void)
{
  size_t n = 64u << 20;
  unsigned char *data = xmalloc(n);
  fill_mixed(data, n, 1234);
  struct oci_layer_info info;
  struct oci_layer_options o = opts(OCI_COMPRESSION_GZIP, 0);
  int fd = write_big(&o, data, n, &info);
  free(data);

  cleanup_free char *path = temp_path();
  cleanup_strbuf struct strbuf blob = STRBUF_INIT;
  read_all_fd(fd, &blob);
  CHECK(blob.len > 64 && blob.len < n);
  /* Member headers: no name, no time, XFL 0, OS 255. */
  CHECK(memcmp(blob.buf, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10) == 0);
  size_t members = 0;
  for (size_t k = 0; k + 10 <= blob.len; k++)
    if (memcmp(blob.buf + k, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10) == 0)
      members++;
  CHECK(members >= 64);
  int out = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
  CHECK(out >= 0 && write(out, blob.buf, blob.len) == (ssize_t)blob.len);
  close(out);
  close(fd);

  cleanup_free char *cmd = xasprintf("gzip -t '%s'", path);
  CHECK_INT(system(cmd), 0);
  free(cmd);
  cmd = xasprintf("zcat '%s' | tar tvf - | grep -c '^-rw-r--r-- 0/0' | grep -qx 4", path);
  CHECK_INT(system(cmd), 0);
  free(cmd);
  cmd = xasprintf("test \"sha256:$(zcat '%s' | sha256sum | cut -c1-64)\" = '%s'", path,
                  info.diff_id);
  CHECK_INT(system(cmd), 0);
  unlink(path);
}

/* zstd(1) reads the frame, and the sample layer lists with tar(1). */
static void test_layer_zstd_valid(void)
{
  if (system("command -v zstd >/dev/null 2>&1") != 0) {
    printf("# zstd(1) missing: only libarchive checks the frame\n");
  }
  struct cb_error err;
  struct oci_layer_info info;
  struct oci_layer_options o = opts(OCI_COMPRESSION_ZSTD, 2);
  int fd = write_sample(&o, &info, &err);
  if (fd < 0) {
    unit_fail(__FILE__, __LINE__, "write_sample: %s", err.msg);
    return;
  }
  cleanup_free char *path = temp_path();
  cleanup_strbuf struct strbuf blob = STRBUF_INIT;
  read_all_fd(fd, &blob);
  close(fd);
  int out = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
  CHECK(out >= 0 && write(out, blob.buf, blob.len) == (ssize_t)blob.len);
  close(out);
  if (system("command -v zstd >/dev/null 2>&1") == 0) {
    cleanup_free char *cmd = xasprintf("zstd -q -t '%s'", path);
    CHECK_INT(system(cmd), 0);
    free(cmd);
    cmd = xasprintf("zstd -q -dc '%s' | tar tf - 2>/dev/null | tr '\\n' ' ' | "
                    "grep -qx 'bin/ bin/ping bin/ping6 bin/sh dev/ dev/fifo dev/null "
                    "dev/sda empty home/ home/heredoc '", path);
    CHECK_INT(system(cmd), 0);
  }
  unlink(path);
}

/* Non-ASCII names give the same bytes whatever the process locale. */
static void test_layer_locale_independent(void)
{
  char *saved = xstrdup(setlocale(LC_ALL, NULL));
  static const char *locales[] = { "C", "C.UTF-8" };
  char digests[2][OCI_DIGEST_SIZE];
  cleanup_strbuf struct strbuf tar = STRBUF_INIT;
  for (size_t i = 0; i < CB_ARRAY_SIZE(locales); i++) {
    struct cb_error err;
    struct oci_layer_info info;
    if (setlocale(LC_ALL, locales[i]) == NULL) {
      printf("# locale %s missing\n", locales[i]);
      memcpy(digests[i], i ? digests[0] : "", i ? OCI_DIGEST_SIZE : 1);
      continue;
    }
    struct oci_layer_options o = opts(OCI_COMPRESSION_NONE, 1);
    int fd = temp_fd();
    struct oci_layer_writer *w = new_writer(fd, &o);
    struct oci_entry d = { .path = "caf\xc3\xa9", .mode = S_IFDIR | 0755 };
    CHECK_INT(oci_layer_writer_add(w, &d, -1, &err), 0);
    struct oci_entry f = { .path = "caf\xc3\xa9/men\xc3\xbc", .mode = S_IFREG | 0644 };
    CHECK_INT(oci_layer_writer_add_data(w, &f, "", &err), 0);
    struct oci_entry s = { .path = "caf\xc3\xa9/raw\xff", .mode = S_IFLNK | 0777,
                           .symlink = "men\xc3\xbc" };
    CHECK_INT(oci_layer_writer_add(w, &s, -1, &err), 0);
    CHECK_INT(oci_layer_writer_finish(w, &info, &err), 0);
    oci_layer_writer_free(w);
    memcpy(digests[i], info.diff_id, OCI_DIGEST_SIZE);
    read_all_fd(fd, &tar);
    /* UTF-8 names go in "path" records as they are; only the non-UTF-8
     * one needs hdrcharset. */
    CHECK(memmem(tar.buf, tar.len, "path=caf\xc3\xa9/men\xc3\xbc\n", 18) != NULL);
    CHECK(memmem(tar.buf, tar.len, "linkpath=men\xc3\xbc\n", 16) != NULL);
    char *bin = memmem(tar.buf, tar.len, "hdrcharset=BINARY", 17);
    CHECK(bin != NULL && bin > (char *)memmem(tar.buf, tar.len, "men\xc3\xbc\n", 6));
    close(fd);
  }
  setlocale(LC_ALL, saved);
  free(saved);
  CHECK_STR(digests[0], digests[1]);
}

/* Long names and ids take pax records, which are the same run to run. */
static void test_layer_long_names_reproducible(void)
{
  char digests[2][OCI_DIGEST_SIZE];
  cleanup_strbuf struct strbuf longname = STRBUF_INIT;
  for (int i = 0; i < 30; i++)
    strbuf_addstr(&longname, "abcdefghi/");
  strbuf_addstr(&longname, "file");
  for (int run = 0; run < 2; run++) {
    struct cb_error err;
    struct oci_layer_info info;
    struct oci_layer_options o = opts(OCI_COMPRESSION_GZIP, run + 1);
    int fd = temp_fd();
    struct oci_layer_writer *w = new_writer(fd, &o);
    struct oci_entry e = { .path = longname.buf, .mode = S_IFREG | 0644, .uid = 3000000,
                           .gid = 4000000, .mtime = 7, .size = 2 };
    CHECK_INT(oci_layer_writer_add_data(w, &e, "ok", &err), 0);
    CHECK_INT(oci_layer_writer_finish(w, &info, &err), 0);
    oci_layer_writer_free(w);
    memcpy(digests[run], info.digest, OCI_DIGEST_SIZE);

    struct archive *a = archive_read_new();
    struct archive_entry *ae;
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    lseek(fd, 0, SEEK_SET);
    CHECK_INT(archive_read_open_fd(a, fd, 65536), ARCHIVE_OK);
    CHECK_INT(archive_read_next_header(a, &ae), ARCHIVE_OK);
    CHECK_STR(archive_entry_pathname(ae), longname.buf);
    CHECK_INT(archive_entry_uid(ae), 3000000);
    CHECK_INT(archive_entry_gid(ae), 4000000);
    CHECK(!archive_entry_atime_is_set(ae));
    CHECK(!archive_entry_ctime_is_set(ae));
    CHECK_INT(archive_read_next_header(a, &ae), ARCHIVE_EOF);
    archive_read_free(a);
    close(fd);
  }
  CHECK_STR(digests[0], digests[1]);
}

static const struct unit_test tests[] = {
  { "digest_known", test_digest_known },
  { "digest_threaded", test_digest_threaded },
  { "digest_fd_and_valid", test_digest_fd_and_valid },
  { "compression_names", test_compression_names },
  { "layer_fields", test_layer_fields },
  { "layer_digests", test_layer_digests },
  { "layer_threads_identical", test_layer_threads_identical },
  { "layer_content_hashed", test_layer_content_hashed },
  { "layer_source_date_epoch", test_layer_source_date_epoch },
  { "layer_rejects_bad_order_and_paths", test_layer_rejects_bad_order_and_paths },
  { "layer_content_size_mismatch", test_layer_content_size_mismatch },
  { "layer_write_error", test_layer_write_error },
  { "layer_large_gzip_valid", test_layer_large_gzip_valid },
  { "layer_zstd_valid", test_layer_zstd_valid },
  { "layer_locale_independent", test_layer_locale_independent },
  { "layer_long_names_reproducible", test_layer_long_names_reproducible },
};
UNIT_MAIN(tests)
