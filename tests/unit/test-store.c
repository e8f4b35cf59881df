#include "unit.h"

#include "../../cache/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HELLO_DIGEST "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

/* ---- helpers ---- */

static char *scratch_dir(void)
{
  char tmpl[] = "/tmp/cbuild-test-store.XXXXXX";
  if (mkdtemp(tmpl) == NULL)
    cb_die("mkdtemp: %s", strerror(errno));
  return xstrdup(tmpl);
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
  remove(path);
  return 0;
}

static void rm_rf(const char *path)
{
  nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Entries in a directory, without "." and "..". */
static int count_entries(const char *dir)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      n++;
  closedir(d);
  return n;
}

static int count_tmp(const char *root)
{
  cleanup_free char *p = xasprintf("%s/tmp", root);
  return count_entries(p);
}

static char *blob_path(const char *root, const char *digest)
{
  return xasprintf("%s/blobs/sha256/%s", root, digest + strlen("sha256:"));
}

static bool path_exists(const char *p)
{
  struct stat st;
  return lstat(p, &st) == 0;
}

static void write_file(const char *path, const char *data)
{
  cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data))
    cb_die("write %s: %s", path, strerror(errno));
}

static json_t *load_json(const char *path)
{
  json_error_t jerr;
  json_t *j = json_load_file(path, 0, &jerr);
  if (j == NULL)
    unit_fail(__FILE__, __LINE__, "%s: %s", path, jerr.text);
  return j;
}

/* Store a small manifest-like blob and describe it. */
static void put_manifest(struct cache_store *s, const char *content, struct oci_descriptor *d)
{
  struct cb_error err;
  char digest[OCI_DIGEST_SIZE];
  memset(d, 0, sizeof(*d));
  if (cache_blob_put(s, content, strlen(content), digest, &err) < 0)
    cb_die("put: %s", err.msg);
  d->media_type = xstrdup(OCI_MEDIA_TYPE_MANIFEST);
  d->digest = xstrdup(digest);
  d->size = (int64_t)strlen(content);
}

static struct cache_store *open_store(const char *root)
{
  struct cb_error err;
  struct cache_store *s = cache_store_open(root, &err);
  if (s == NULL)
    unit_fail(__FILE__, __LINE__, "open \"%s\": %s", root, err.msg);
  return s;
}

/* ---- tests ---- */

static void test_open_layout(void)
{
  cleanup_free char *dir = scratch_dir();
  cleanup_free char *root = xasprintf("%s/a/b/store", dir);
  cleanup_free char *layout = xasprintf("%s/oci-layout", root);
  cleanup_free char *index = xasprintf("%s/index.json", root);
  cleanup_free char *blobs = xasprintf("%s/blobs/sha256", root);
  cleanup_free char *lock = xasprintf("%s/lock", root);
  struct cache_store *s = open_store(root);
  struct stat st;
  json_t *j;

  CHECK(s != NULL);
  if (s == NULL)
    goto out;
  CHECK_STR(cache_store_root(s), root);
  j = load_json(layout);
  CHECK_STR(json_string_value(json_object_get(j, "imageLayoutVersion")), "1.0.0");
  json_decref(j);
  j = load_json(index);
  CHECK_INT(json_integer_value(json_object_get(j, "schemaVersion")), 2);
  CHECK(json_is_array(json_object_get(j, "manifests")));
  CHECK_INT(json_array_size(json_object_get(j, "manifests")), 0);
  json_decref(j);
  CHECK(stat(blobs, &st) == 0 && S_ISDIR(st.st_mode));
  CHECK_INT(st.st_mode & 07777, 0755);
  CHECK(stat(index, &st) == 0 && S_ISREG(st.st_mode));
  CHECK_INT(st.st_mode & 07777, 0644);
  CHECK(stat(lock, &st) == 0 && S_ISREG(st.st_mode));
  CHECK_INT(count_tmp(root), 0);
  cache_store_close(s);

  /* An existing store opens as is, and its index is not rewritten. */
  write_file(index, "{\"schemaVersion\":2,\"manifests\":[]}\n");
  s = open_store(root);
  CHECK(s != NULL);
  cache_store_close(s);
  {
    cleanup_strbuf struct strbuf sb = STRBUF_INIT;
    struct cb_error err;
    CHECK_INT(cb_read_file(index, &sb, &err), 0);
    CHECK_STR(sb.buf, "{\"schemaVersion\":2,\"manifests\":[]}\n");
  }
out:
  rm_rf(dir);
}

static void test_blob_put_read(void)
{
  cleanup_free char *root = scratch_dir();
  struct cache_store *s = open_store(root);
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  char digest[OCI_DIGEST_SIZE];
  struct cb_error err;
  int64_t size = -1;
  int fd;

  CHECK(!cache_blob_exists(s, HELLO_DIGEST));
  CHECK_INT(cache_blob_put(s, "hello", 5, digest, &err), 0);
  CHECK_STR(digest, HELLO_DIGEST);
  CHECK(cache_blob_exists(s, HELLO_DIGEST));
  /* Storing it again is harmless. */
  CHECK_INT(cache_blob_put(s, "hello", 5, digest, &err), 0);
  CHECK_INT(cache_blob_read(s, HELLO_DIGEST, &sb, &err), 0);
  CHECK_STR(sb.buf, "hello");
  CHECK_INT(sb.len, 5);

  fd = cache_blob_open(s, HELLO_DIGEST, &size, &err);
  CHECK(fd >= 0);
  CHECK_INT(size, 5);
  CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  CHECK_INT(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
  close(fd);
  CHECK_INT(cache_blob_verify(s, HELLO_DIGEST, &err), 0);

  /* A missing blob. */
  oci_digest_buf("other", 5, digest);
  CHECK(!cache_blob_exists(s, digest));
  CHECK_INT(cache_blob_open(s, digest, &size, &err), -1);
  CHECK_INT(err.code, ENOENT);
  CHECK_CONTAINS(err.msg, digest);

  /* An empty blob. */
  CHECK_INT(cache_blob_put(s, "", 0, digest, &err), 0);
  strbuf_reset(&sb);
  CHECK_INT(cache_blob_read(s, digest, &sb, &err), 0);
  CHECK_INT(sb.len, 0);
  CHECK_INT(count_tmp(root), 0);
  cache_store_close(s);
  rm_rf(root);
}

static void test_blob_commit(void)
{
  cleanup_free char *root = scratch_dir();
  struct cache_store *s = open_store(root);
  cleanup_free char *path = NULL, *path2 = NULL, *bp = NULL;
  char digest[OCI_DIGEST_SIZE];
  struct cb_error err;
  struct strbuf big = STRBUF_INIT;
  int fd;

  for (int i = 0; i < 100000; i++)
    strbuf_addf(&big, "line %d\n", i);
  oci_digest_buf(big.buf, big.len, digest);

  fd = cache_blob_create(s, &path, &err);
  CHECK(fd >= 0);
  CHECK(cb_starts_with(path, root));
  CHECK(path_exists(path));
  CHECK_INT(write(fd, big.buf, big.len), big.len);
  CHECK_INT(count_tmp(root), 1);
  /* Untrusted: the store reads it back and hashes it. */
  CHECK_INT(cache_blob_commit(s, fd, path, digest, false, &err), 0);
  CHECK(cache_blob_exists(s, digest));
  CHECK(!path_exists(path));
  CHECK_INT(count_tmp(root), 0);
  bp = blob_path(root, digest);
  {
    struct stat st;
    CHECK(stat(bp, &st) == 0);
    CHECK_INT(st.st_size, big.len);
  }

  /* The same blob again: the temporary file is dropped. */
  fd = cache_blob_create(s, &path2, &err);
  CHECK_INT(write(fd, big.buf, big.len), big.len);
  CHECK_INT(cache_blob_commit(s, fd, path2, digest, true, &err), 0);
  CHECK_INT(count_tmp(root), 0);
  CHECK_INT(cache_blob_verify(s, digest, &err), 0);

  /* abort removes the temporary file. */
  free(path);
  path = NULL;
  fd = cache_blob_create(s, &path, &err);
  CHECK(fd >= 0);
  CHECK_INT(count_tmp(root), 1);
  cache_blob_abort(s, fd, path);
  CHECK_INT(count_tmp(root), 0);
  strbuf_release(&big);
  cache_store_close(s);
  rm_rf(root);
}

static void test_commit_wrong_digest(void)
{
  cleanup_free char *root = scratch_dir();
  cleanup_free char *path = NULL, *bp = NULL, *other = NULL;
  struct cache_store *s = open_store(root);
  char wrong[OCI_DIGEST_SIZE];
  struct cb_error err;
  int fd;

  oci_digest_buf("not hello", 9, wrong);
  fd = cache_blob_create(s, &path, &err);
  CHECK_INT(write(fd, "hello", 5), 5);
  CHECK_INT(cache_blob_commit(s, fd, path, wrong, false, &err), -1);
  CHECK_CONTAINS(err.msg, wrong);
  CHECK_CONTAINS(err.msg, "its content hashes to " HELLO_DIGEST);
  CHECK(!cache_blob_exists(s, wrong));
  CHECK(!cache_blob_exists(s, HELLO_DIGEST));
  CHECK(!path_exists(path));
  CHECK_INT(count_tmp(root), 0);
  bp = xasprintf("%s/blobs/sha256", root);
  CHECK_INT(count_entries(bp), 0);

  /* A path that is not one of the store's temporary files is refused. */
  other = xasprintf("%s/index.json", root);
  fd = open(other, O_RDONLY | O_CLOEXEC);
  CHECK_INT(cache_blob_commit(s, fd, other, HELLO_DIGEST, true, &err), -1);
  CHECK_CONTAINS(err.msg, "is not a temporary file");
  CHECK(path_exists(other));
  /* Nor is a temporary name that is not the file written through fd. */
  free(path);
  path = NULL;
  fd = cache_blob_create(s, &path, &err);
  {
    cleanup_free char *path2 = NULL;
    int fd2 = cache_blob_create(s, &path2, &err);
    CHECK_INT(cache_blob_commit(s, fd, path2, HELLO_DIGEST, true, &err), -1);
    CHECK_CONTAINS(err.msg, "is not a temporary file");
    CHECK(path_exists(path2));
    cache_blob_abort(s, fd2, path2);
    cache_blob_abort(s, -1, path);
  }
  CHECK_INT(count_tmp(root), 0);
  cache_store_close(s);
  rm_rf(root);
}

static void test_verify_corrupt(void)
{
  cleanup_free char *root = scratch_dir();
  cleanup_free char *bp = NULL;
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  struct cache_store *s = open_store(root);
  char digest[OCI_DIGEST_SIZE], garbage[OCI_DIGEST_SIZE];
  cleanup_free char *want = NULL;
  struct oci_blob_source src;
  struct cb_error err;
  int64_t size;

  oci_digest_buf("garbage", 7, garbage);
  want = xasprintf("blob %s is corrupt (its content hashes to %s): removed", HELLO_DIGEST,
                   garbage);

  /* verify */
  CHECK_INT(cache_blob_put(s, "hello", 5, digest, &err), 0);
  bp = blob_path(root, digest);
  write_file(bp, "garbage");
  CHECK_INT(cache_blob_verify(s, digest, &err), -1);
  CHECK_STR(err.msg, want);
  CHECK(!path_exists(bp));
  CHECK(!cache_blob_exists(s, digest));

  /* read */
  CHECK_INT(cache_blob_put(s, "hello", 5, digest, &err), 0);
  write_file(bp, "garbage");
  CHECK_INT(cache_blob_read(s, digest, &sb, &err), -1);
  CHECK_STR(err.msg, want);
  CHECK_INT(sb.len, 0);
  CHECK(!path_exists(bp));

  /* the blob source */
  CHECK_INT(cache_blob_put(s, "hello", 5, digest, &err), 0);
  write_file(bp, "garbage");
  cache_blob_source(s, &src);
  CHECK_INT(src.open(src.data, digest, &size, &err), -1);
  CHECK_STR(err.msg, want);
  CHECK(!path_exists(bp));

  /* A truncated blob is healed by the next put of the same content. */
  CHECK_INT(cache_blob_put(s, "hello", 5, digest, &err), 0);
  write_file(bp, "hel");
  CHECK_INT(cache_blob_put(s, "hello", 5, digest, &err), 0);
  CHECK_INT(cache_blob_verify(s, digest, &err), 0);
  cache_store_close(s);
  rm_rf(root);
}

static void test_blob_source(void)
{
  cleanup_free char *root = scratch_dir();
  struct cache_store *s = open_store(root);
  struct oci_blob_source src;
  char digest[OCI_DIGEST_SIZE], buf[16];
  struct cb_error err;
  int64_t size = -1;
  int fd;

  CHECK_INT(cache_blob_put(s, "hello", 5, digest, &err), 0);
  cache_blob_source(s, &src);
  fd = src.open(src.data, digest, &size, &err);
  CHECK(fd >= 0);
  CHECK_INT(size, 5);
  CHECK_INT(lseek(fd, 0, SEEK_CUR), 0);
  CHECK_INT(read(fd, buf, sizeof(buf)), 5);
  CHECK(memcmp(buf, "hello", 5) == 0);
  close(fd);
  CHECK_INT(src.open(src.data, "sha256:x", &size, &err), -1);

  /* The archive writers copy unhashed what this store committed, as it
   * was committed; nothing else. */
  {
    const struct oci_checked_source *cs = src.data;
    cleanup_free char *bp = blob_path(root, digest);
    char other[OCI_DIGEST_SIZE];
    CHECK_INT(cache_blob_put(s, "other", 5, other, &err), 0);
    fd = cs->open_unchecked(cs->data, digest, &size, &err);
    CHECK(cs->verified(cs->data, digest, fd));
    CHECK(!cs->verified(cs->data, other, fd));
    close(fd);
    write_file(bp, "hello, changed");
    fd = cs->open_unchecked(cs->data, digest, &size, &err);
    CHECK(!cs->verified(cs->data, digest, fd));
    close(fd);
    cache_store_close(s);
    s = open_store(root);
    cache_blob_source(s, &src);
    cs = src.data;
    fd = cs->open_unchecked(cs->data, other, &size, &err);
    CHECK(fd >= 0);
    CHECK(!cs->verified(cs->data, other, fd));
    close(fd);
  }
  cache_store_close(s);
  rm_rf(root);
}

static void test_invalid_digest(void)
{
  const char *bad[] = {
    "sha256:../../x",
    "sha256:../sha256/../../x",
    "",
    "sha256:",
    "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
    "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b982",
    "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824/",
    "sha512:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
    NULL, /* sha256:../../../<the root's name>-escaped: a sibling of the root */
  };
  cleanup_free char *root = scratch_dir();
  cleanup_free char *escape = xasprintf("sha256:../../../%s-escaped", strrchr(root, '/') + 1);
  cleanup_free char *sibling = xasprintf("%s-escaped", root);
  struct cache_store *s = open_store(root);
  struct oci_blob_source src;
  struct oci_descriptor d = { 0 };
  char digest[OCI_DIGEST_SIZE];
  struct cb_error err;
  int64_t size;

  CHECK_INT(cache_blob_put(s, "hello", 5, digest, &err), 0);
  cache_blob_source(s, &src);
  bad[CB_ARRAY_SIZE(bad) - 1] = escape;
  for (size_t i = 0; i < CB_ARRAY_SIZE(bad); i++) {
    cleanup_strbuf struct strbuf sb = STRBUF_INIT;
    cleanup_free char *path = NULL;
    int fd;
    CHECK(!cache_blob_exists(s, bad[i]));
    CHECK_INT(cache_blob_open(s, bad[i], &size, &err), -1);
    CHECK_CONTAINS(err.msg, "invalid blob digest");
    CHECK_INT(cache_blob_verify(s, bad[i], &err), -1);
    CHECK_CONTAINS(err.msg, "invalid blob digest");
    CHECK_INT(cache_blob_read(s, bad[i], &sb, &err), -1);
    CHECK_INT(src.open(src.data, bad[i], &size, &err), -1);
    fd = cache_blob_create(s, &path, &err);
    CHECK_INT(write(fd, "x", 1), 1);
    CHECK_INT(cache_blob_commit(s, fd, path, bad[i], true, &err), -1);
    CHECK_CONTAINS(err.msg, "invalid blob digest");
    CHECK_INT(count_tmp(root), 0);
    d.media_type = (char *)OCI_MEDIA_TYPE_MANIFEST;
    d.digest = (char *)bad[i];
    d.size = 1;
    CHECK_INT(cache_tag_set(s, "app", &d, &err), -1);
    CHECK_CONTAINS(err.msg, "invalid blob digest");
  }
  CHECK(!cache_blob_exists(s, NULL));
  /* Nothing landed anywhere near the store. */
  {
    cleanup_free char *x = xasprintf("%s/x", root);
    cleanup_free char *bx = xasprintf("%s/blobs/x", root);
    CHECK(!path_exists(x));
    CHECK(!path_exists(bx));
    CHECK(!path_exists(sibling));
  }
  rm_rf(sibling);
  cache_store_close(s);
  rm_rf(root);
}

static void test_root_not_dir(void)
{
  cleanup_free char *dir = scratch_dir();
  cleanup_free char *file = xasprintf("%s/file", dir);
  cleanup_free char *under = xasprintf("%s/file/store", dir);
  struct cb_error err;

  write_file(file, "x");
  CHECK(cache_store_open(file, &err) == NULL);
  CHECK_CONTAINS(err.msg, file);
  CHECK_CONTAINS(err.msg, "Not a directory");
  CHECK(cache_store_open(under, &err) == NULL);
  CHECK_CONTAINS(err.msg, "Not a directory");
  CHECK(cache_store_open("", &err) == NULL);
  rm_rf(dir);
}

static void test_symlinks_refused(void)
{
  static const char *const parts[] = { "blobs", "blobs/sha256", "tmp", "index.json", "lock",
                                       "oci-layout" };
  cleanup_free char *dir = scratch_dir();
  cleanup_free char *elsewhere = xasprintf("%s/elsewhere", dir);
  struct cb_error err;

  CHECK_INT(mkdir(elsewhere, 0755), 0);
  for (size_t i = 0; i < CB_ARRAY_SIZE(parts); i++) {
    cleanup_free char *root = xasprintf("%s/store%zu", dir, i);
    cleanup_free char *link = xasprintf("%s/%s", root, parts[i]);
    cleanup_free char *blobs = xasprintf("%s/blobs", root);
    struct cache_store *s;
    CHECK_INT(mkdir(root, 0755), 0);
    if (strcmp(parts[i], "blobs/sha256") == 0)
      CHECK_INT(mkdir(blobs, 0755), 0);
    CHECK_INT(symlink(elsewhere, link), 0);
    s = cache_store_open(root, &err);
    if (strcmp(parts[i], "lock") == 0 && s != NULL) {
      /* The lock is opened afresh for each use, and refused then. */
      struct oci_descriptor d;
      CHECK_INT(cache_tag_get(s, "app", &d, &err), -1);
      cache_store_close(s);
      s = NULL;
    }
    CHECK(s == NULL);
    cache_store_close(s);
    CHECK_CONTAINS(err.msg, root);
    CHECK_INT(count_entries(elsewhere), 0);
  }
  /* A symlinked root is the user's choice, and works. */
  {
    cleanup_free char *root = xasprintf("%s/linked", dir);
    struct cache_store *s;
    CHECK_INT(symlink(elsewhere, root), 0);
    s = open_store(root);
    CHECK(s != NULL);
    cache_store_close(s);
  }
  rm_rf(dir);
}

static void test_symlinked_blob(void)
{
  cleanup_free char *root = scratch_dir();
  cleanup_free char *bp = blob_path(root, HELLO_DIGEST);
  cleanup_free char *target = xasprintf("%s/oci-layout", root);
  struct cache_store *s = open_store(root);
  struct cb_error err;
  int64_t size;

  /* A symlink in blobs/ is never followed, not even to a file in the store. */
  CHECK_INT(symlink(target, bp), 0);
  CHECK(!cache_blob_exists(s, HELLO_DIGEST));
  CHECK_INT(cache_blob_open(s, HELLO_DIGEST, &size, &err), -1);
  CHECK_CONTAINS(err.msg, "is not a regular file");
  unlink(bp);
  /* Nor is a FIFO opened (it would block). */
  CHECK_INT(mkfifo(bp, 0644), 0);
  CHECK_INT(cache_blob_open(s, HELLO_DIGEST, &size, &err), -1);
  CHECK_CONTAINS(err.msg, "is not a regular file");
  CHECK_INT(cache_blob_verify(s, HELLO_DIGEST, &err), -1);
  cache_store_close(s);
  rm_rf(root);
}

static void test_tags(void)
{
  cleanup_free char *root = scratch_dir();
  struct cache_store *s = open_store(root);
  struct oci_descriptor m1, m2, got;
  struct cache_tag *tags = NULL;
  struct cb_error err;
  size_t n = 99;

  put_manifest(s, "{\"m\":1}", &m1);
  put_manifest(s, "{\"m\":2}", &m2);
  CHECK_INT(cache_tags_list(s, &tags, &n, &err), 0);
  CHECK_INT(n, 0);
  cache_tags_free(tags, n);

  CHECK_INT(cache_tag_set(s, "app", &m1, &err), 0);
  CHECK_INT(cache_tag_set(s, "docker.io/library/app:v1", &m2, &err), 0);
  CHECK_INT(cache_tag_set(s, "localhost:5000/x:y", &m2, &err), 0);
  static const char *const spellings[] = { "app", "app:latest", "library/app",
                                           "docker.io/library/app",
                                           "index.docker.io/library/app:latest" };
  for (size_t i = 0; i < CB_ARRAY_SIZE(spellings); i++) {
    CHECK_INT(cache_tag_get(s, spellings[i], &got, &err), 0);
    CHECK_STR(got.digest, m1.digest);
    CHECK_STR(got.media_type, OCI_MEDIA_TYPE_MANIFEST);
    CHECK_INT(got.size, m1.size);
    CHECK_STR(oci_descriptor_annotation(&got, OCI_ANNOTATION_REF_NAME), "app");
    CHECK_STR(oci_descriptor_annotation(&got, OCI_ANNOTATION_IMAGE_NAME),
              "docker.io/library/app:latest");
    oci_descriptor_release(&got);
  }
  CHECK_INT(cache_tag_get(s, "app:v1", &got, &err), 0);
  CHECK_STR(got.digest, m2.digest);
  oci_descriptor_release(&got);
  CHECK_INT(cache_tag_get(s, "app:v2", &got, &err), 1);
  CHECK_INT(cache_tag_get(s, "localhost:5000/x", &got, &err), 1);
  CHECK_INT(cache_tag_get(s, "Bad Name", &got, &err), -1);
  CHECK_CONTAINS(err.msg, "Bad Name");

  CHECK_INT(cache_tags_list(s, &tags, &n, &err), 0);
  CHECK_INT(n, 3);
  if (n == 3) {
    CHECK_STR(tags[0].name, "docker.io/library/app:latest");
    CHECK_STR(tags[0].manifest.digest, m1.digest);
    CHECK_STR(tags[1].name, "docker.io/library/app:v1");
    CHECK_STR(tags[2].name, "localhost:5000/x:y");
    CHECK_STR(oci_descriptor_annotation(&tags[2].manifest, OCI_ANNOTATION_REF_NAME),
              "localhost:5000/x:y");
  }
  cache_tags_free(tags, n);

  CHECK_INT(cache_tag_remove(s, "docker.io/library/app:latest", &err), 0);
  CHECK_INT(cache_tag_remove(s, "app", &err), 1);
  CHECK_INT(cache_tag_get(s, "app", &got, &err), 1);
  CHECK_INT(cache_tag_get(s, "app:v1", &got, &err), 0);
  oci_descriptor_release(&got);
  CHECK_INT(cache_tags_list(s, &tags, &n, &err), 0);
  CHECK_INT(n, 2);
  cache_tags_free(tags, n);
  /* Untagging leaves the blob: pruning is another job. */
  CHECK(cache_blob_exists(s, m1.digest));

  oci_descriptor_release(&m1);
  oci_descriptor_release(&m2);
  cache_store_close(s);
  rm_rf(root);
}

static void test_retag_replaces(void)
{
  cleanup_free char *root = scratch_dir();
  cleanup_free char *index = xasprintf("%s/index.json", root);
  struct cache_store *s = open_store(root);
  struct oci_descriptor m1, m2, got;
  struct cb_error err;
  json_t *j;

  put_manifest(s, "{\"m\":1}", &m1);
  put_manifest(s, "{\"m\":2}", &m2);
  CHECK_INT(cache_tag_set(s, "app", &m1, &err), 0);
  CHECK_INT(cache_tag_set(s, "docker.io/library/app:latest", &m2, &err), 0);
  CHECK_INT(cache_tag_get(s, "app", &got, &err), 0);
  CHECK_STR(got.digest, m2.digest);
  oci_descriptor_release(&got);
  j = load_json(index);
  CHECK_INT(json_array_size(json_object_get(j, "manifests")), 1);
  json_decref(j);

  /* Caller's annotations are kept; ours win over stale ones. */
  oci_descriptor_annotate(&m1, "org.example.note", "kept");
  oci_descriptor_annotate(&m1, OCI_ANNOTATION_REF_NAME, "stale");
  CHECK_INT(cache_tag_set(s, "app", &m1, &err), 0);
  CHECK_INT(cache_tag_get(s, "app", &got, &err), 0);
  CHECK_STR(got.digest, m1.digest);
  CHECK_STR(oci_descriptor_annotation(&got, "org.example.note"), "kept");
  CHECK_STR(oci_descriptor_annotation(&got, OCI_ANNOTATION_REF_NAME), "app");
  oci_descriptor_release(&got);

  oci_descriptor_release(&m1);
  oci_descriptor_release(&m2);
  cache_store_close(s);
  rm_rf(root);
}

static void test_index_annotations(void)
{
  static const struct {
    const char *tag, *ref_name, *image_name;
  } want[] = {
    /* in the file's order: sorted by full name */
    { "app", "app", "docker.io/library/app:latest" },
    { "app:v1", "app:v1", "docker.io/library/app:v1" },
    { "user/app:v2", "user/app:v2", "docker.io/user/app:v2" },
    { "ghcr.io/org/tool", "ghcr.io/org/tool", "ghcr.io/org/tool:latest" },
    { "localhost:5000/x:y", "localhost:5000/x:y", "localhost:5000/x:y" },
  };
  cleanup_free char *root = scratch_dir();
  cleanup_free char *index = xasprintf("%s/index.json", root);
  struct cache_store *s = open_store(root);
  struct oci_descriptor m;
  struct cb_error err;
  json_t *j, *arr;

  put_manifest(s, "{\"m\":1}", &m);
  /* Set in reverse order: the file is sorted anyway. */
  for (size_t i = CB_ARRAY_SIZE(want); i-- > 0;)
    CHECK_INT(cache_tag_set(s, want[i].tag, &m, &err), 0);
  j = load_json(index);
  CHECK_INT(json_integer_value(json_object_get(j, "schemaVersion")), 2);
  arr = json_object_get(j, "manifests");
  CHECK_INT(json_array_size(arr), CB_ARRAY_SIZE(want));
  for (size_t i = 0; i < CB_ARRAY_SIZE(want) && i < json_array_size(arr); i++) {
    json_t *d = json_array_get(arr, i);
    json_t *a = json_object_get(d, "annotations");
    CHECK_STR(json_string_value(json_object_get(d, "mediaType")), OCI_MEDIA_TYPE_MANIFEST);
    CHECK_STR(json_string_value(json_object_get(d, "digest")), m.digest);
    CHECK_INT(json_integer_value(json_object_get(d, "size")), m.size);
    CHECK_INT(json_object_size(a), 2);
    CHECK_STR(json_string_value(json_object_get(a, OCI_ANNOTATION_REF_NAME)), want[i].ref_name);
    CHECK_STR(json_string_value(json_object_get(a, OCI_ANNOTATION_IMAGE_NAME)),
              want[i].image_name);
  }
  json_decref(j);
  oci_descriptor_release(&m);
  CHECK_INT(count_tmp(root), 0);
  cache_store_close(s);
  rm_rf(root);
}

static void test_foreign_descriptors(void)
{
  static const char foreign[] =
      "{\"schemaVersion\":2,\"annotations\":{\"org.example\":\"top\"},\"manifests\":["
      "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
      "\"digest\":\"sha256:1111111111111111111111111111111111111111111111111111111111111111\","
      "\"size\":7,\"urls\":[\"https://example.com/x\"],\"artifactType\":\"application/x\","
      "\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"}},"
      "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
      "\"digest\":\"sha256:2222222222222222222222222222222222222222222222222222222222222222\","
      "\"size\":8,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\","
      "\"os.version\":\"x\"}},"
      "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
      "\"digest\":\"sha256:3333333333333333333333333333333333333333333333333333333333333333\","
      "\"size\":9,\"annotations\":{\"org.opencontainers.image.ref.name\":\"app\"}}]}";
  cleanup_free char *root = scratch_dir();
  cleanup_free char *index = xasprintf("%s/index.json", root);
  struct cache_store *s = open_store(root);
  json_t *before = json_loads(foreign, 0, NULL), *after, *arr;
  struct oci_descriptor m;
  struct cache_tag *tags;
  struct cb_error err;
  size_t n;

  write_file(index, foreign);
  CHECK_INT(cache_tags_list(s, &tags, &n, &err), 0);
  CHECK_INT(n, 0);
  cache_tags_free(tags, n);
  put_manifest(s, "{\"m\":1}", &m);
  CHECK_INT(cache_tag_set(s, "other", &m, &err), 0);
  after = load_json(index);
  arr = json_object_get(after, "manifests");
  CHECK_INT(json_array_size(arr), 4);
  for (size_t i = 0; i < 3; i++)
    CHECK(json_equal(json_array_get(arr, i),
                     json_array_get(json_object_get(before, "manifests"), i)));
  CHECK(json_equal(json_object_get(after, "annotations"), json_object_get(before, "annotations")));
  json_decref(after);

  /* "app" is what `skopeo copy ... oci:ROOT:app` wrote: tagging app replaces it. */
  CHECK_INT(cache_tag_set(s, "app", &m, &err), 0);
  after = load_json(index);
  arr = json_object_get(after, "manifests");
  CHECK_INT(json_array_size(arr), 4);
  CHECK(json_equal(json_array_get(arr, 0), json_array_get(json_object_get(before, "manifests"), 0)));
  CHECK(json_equal(json_array_get(arr, 1), json_array_get(json_object_get(before, "manifests"), 1)));
  CHECK_STR(json_string_value(json_object_get(
                json_object_get(json_array_get(arr, 2), "annotations"), OCI_ANNOTATION_IMAGE_NAME)),
            "docker.io/library/app:latest");
  json_decref(after);
  CHECK_INT(cache_tag_remove(s, "app", &err), 0);
  CHECK_INT(cache_tag_remove(s, "other", &err), 0);
  after = load_json(index);
  CHECK_INT(json_array_size(json_object_get(after, "manifests")), 2);
  json_decref(after);

  json_decref(before);
  oci_descriptor_release(&m);
  cache_store_close(s);
  rm_rf(root);
}

static void test_bad_tags(void)
{
  cleanup_free char *root = scratch_dir();
  cleanup_free char *index = xasprintf("%s/index.json", root);
  struct cache_store *s = open_store(root);
  struct oci_descriptor m, missing = { 0 }, got;
  struct cb_error err;
  char digest[OCI_DIGEST_SIZE];
  cleanup_free char *by_digest = NULL;

  put_manifest(s, "{\"m\":1}", &m);
  by_digest = xasprintf("app@%s", m.digest);
  CHECK_INT(cache_tag_set(s, by_digest, &m, &err), -1);
  CHECK_CONTAINS(err.msg, "digest");
  CHECK_INT(cache_tag_get(s, by_digest, &got, &err), -1);
  CHECK_INT(cache_tag_set(s, "App", &m, &err), -1);
  CHECK_CONTAINS(err.msg, "\"App\"");
  /* A manifest that is not in the store cannot be tagged. */
  oci_digest_buf("nowhere", 7, digest);
  missing.media_type = (char *)OCI_MEDIA_TYPE_MANIFEST;
  missing.digest = digest;
  missing.size = 7;
  CHECK_INT(cache_tag_set(s, "app", &missing, &err), -1);
  CHECK_CONTAINS(err.msg, "is not in store");
  CHECK_INT(cache_tag_get(s, "app", &got, &err), 1);

  /* A damaged index.json is an error that names it, not a crash. */
  write_file(index, "{\"schemaVersion\":2,\"manifests\":[");
  CHECK_INT(cache_tag_get(s, "app", &got, &err), -1);
  CHECK_CONTAINS(err.msg, "index.json");
  CHECK_INT(cache_tag_set(s, "app", &m, &err), -1);
  write_file(index, "{\"schemaVersion\":1,\"manifests\":[]}");
  CHECK_INT(cache_tag_get(s, "app", &got, &err), -1);
  CHECK_CONTAINS(err.msg, "not an OCI image index");
  oci_descriptor_release(&m);
  cache_store_close(s);
  rm_rf(root);
}

static void test_stray_temps(void)
{
  cleanup_free char *root = scratch_dir();
  cleanup_free char *old = xasprintf("%s/tmp/blob-0123456789abcdef", root);
  cleanup_free char *fresh = xasprintf("%s/tmp/blob-fedcba9876543210", root);
  cleanup_free char *old_index = xasprintf("%s/tmp/index-0000000000000000", root);
  cleanup_free char *other = xasprintf("%s/tmp/snapshot", root);
  struct cache_store *s = open_store(root);
  struct timespec times[2] = { { time(NULL) - 7200, 0 }, { time(NULL) - 7200, 0 } };
  struct oci_descriptor m, got;
  char digest[OCI_DIGEST_SIZE];
  struct cb_error err;

  cache_store_close(s);
  /* What a crash leaves behind: half-written files of any age. */
  write_file(old, "half a bl");
  write_file(fresh, "half a bl");
  write_file(old_index, "{\"schemaVers");
  CHECK_INT(mkdir(other, 0755), 0);
  CHECK_INT(utimensat(AT_FDCWD, old, times, 0), 0);
  CHECK_INT(utimensat(AT_FDCWD, old_index, times, 0), 0);
  CHECK_INT(utimensat(AT_FDCWD, other, times, 0), 0);

  s = open_store(root);
  CHECK(!path_exists(old));
  CHECK(!path_exists(old_index));
  CHECK(path_exists(fresh));
  CHECK(path_exists(other));
  CHECK_INT(cache_blob_put(s, "hello", 5, digest, &err), 0);
  CHECK_INT(cache_blob_verify(s, digest, &err), 0);
  put_manifest(s, "{\"m\":1}", &m);
  CHECK_INT(cache_tag_set(s, "app", &m, &err), 0);
  CHECK_INT(cache_tag_get(s, "app", &got, &err), 0);
  oci_descriptor_release(&got);
  oci_descriptor_release(&m);
  CHECK_INT(count_tmp(root), 2);
  cache_store_close(s);
  rm_rf(root);
}

#define N_CHILDREN 8
#define N_TAGS 20

/* Wait for every child; true when all exited 0. */
static bool wait_children(const pid_t *pids, int n)
{
  bool ok = true;
  for (int i = 0; i < n; i++) {
    int status;
    if (pids[i] < 0 || waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
      ok = false;
  }
  return ok;
}

static void test_concurrent_tags(void)
{
  cleanup_free char *root = scratch_dir();
  struct cache_store *s = open_store(root);
  struct oci_descriptor m[N_CHILDREN];
  struct cache_tag *tags = NULL;
  struct cb_error err;
  pid_t pids[N_CHILDREN];
  size_t n = 0;

  for (int c = 0; c < N_CHILDREN; c++) {
    cleanup_free char *content = xasprintf("{\"child\":%d}", c);
    put_manifest(s, content, &m[c]);
  }
  fflush(stdout);
  for (int c = 0; c < N_CHILDREN; c++) {
    pids[c] = fork();
    if (pids[c] == 0) {
      /* Half use the store opened before fork (its fds shared), half their own. */
      struct cache_store *cs;
      alarm(120); /* a deadlock fails the test instead of hanging it */
      cs = c % 2 ? cache_store_open(root, &err) : s;
      if (cs == NULL)
        _exit(2);
      for (int t = 0; t < N_TAGS; t++) {
        char name[64];
        snprintf(name, sizeof(name), "child%d:t%d", c, t);
        if (cache_tag_set(cs, name, &m[c], &err) < 0) {
          fprintf(stderr, "child %d: %s\n", c, err.msg);
          _exit(1);
        }
      }
      _exit(0);
    }
  }
  CHECK(wait_children(pids, N_CHILDREN));
  CHECK_INT(cache_tags_list(s, &tags, &n, &err), 0);
  CHECK_INT(n, N_CHILDREN * N_TAGS);
  for (size_t i = 1; i < n; i++)
    CHECK(strcmp(tags[i - 1].name, tags[i].name) < 0);
  cache_tags_free(tags, n);
  for (int c = 0; c < N_CHILDREN; c++) {
    for (int t = 0; t < N_TAGS; t++) {
      char name[64];
      struct oci_descriptor got;
      snprintf(name, sizeof(name), "docker.io/library/child%d:t%d", c, t);
      CHECK_INT(cache_tag_get(s, name, &got, &err), 0);
      CHECK_STR(got.digest, m[c].digest);
      oci_descriptor_release(&got);
    }
    oci_descriptor_release(&m[c]);
  }
  CHECK_INT(count_tmp(root), 0);
  cache_store_close(s);
  rm_rf(root);
}

static void test_concurrent_commits(void)
{
  cleanup_free char *dir = scratch_dir();
  /* Not there yet: the children also race to create the layout. */
  cleanup_free char *root = xasprintf("%s/store", dir);
  cleanup_free char *blobs = xasprintf("%s/blobs/sha256", root);
  struct cache_store *s;
  char digest[OCI_DIGEST_SIZE];
  struct strbuf data = STRBUF_INIT;
  struct cb_error err;
  pid_t pids[N_CHILDREN];

  for (int i = 0; i < 200000; i++)
    strbuf_addf(&data, "%d\n", i);
  oci_digest_buf(data.buf, data.len, digest);
  fflush(stdout);
  for (int c = 0; c < N_CHILDREN; c++) {
    pids[c] = fork();
    if (pids[c] == 0) {
      struct cache_store *cs = cache_store_open(root, &err);
      cleanup_free char *path = NULL;
      int fd;
      alarm(120);
      if (cs == NULL)
        _exit(2);
      for (int round = 0; round < 5; round++) {
        free(path);
        path = NULL;
        fd = cache_blob_create(cs, &path, &err);
        if (fd < 0)
          _exit(3);
        /* Written in pieces, so that commits and writes interleave. */
        for (size_t off = 0; off < data.len; off += 65536) {
          size_t len = data.len - off < 65536 ? data.len - off : 65536;
          if (write(fd, data.buf + off, len) != (ssize_t)len)
            _exit(4);
        }
        if (cache_blob_commit(cs, fd, path, digest, false, &err) < 0) {
          fprintf(stderr, "child %d: %s\n", c, err.msg);
          _exit(1);
        }
        if (cache_blob_verify(cs, digest, &err) < 0) {
          fprintf(stderr, "child %d: %s\n", c, err.msg);
          _exit(5);
        }
      }
      _exit(0);
    }
  }
  CHECK(wait_children(pids, N_CHILDREN));
  s = open_store(root);
  CHECK_INT(cache_blob_verify(s, digest, &err), 0);
  CHECK_INT(count_entries(blobs), 1);
  CHECK_INT(count_tmp(root), 0);
  strbuf_release(&data);
  cache_store_close(s);
  rm_rf(dir);
}

static const struct unit_test tests[] = {
  { "open_layout", test_open_layout },
  { "blob_put_read", test_blob_put_read },
  { "blob_commit", test_blob_commit },
  { "commit_wrong_digest", test_commit_wrong_digest },
  { "verify_corrupt", test_verify_corrupt },
  { "blob_source", test_blob_source },
  { "invalid_digest", test_invalid_digest },
  { "root_not_dir", test_root_not_dir },
  { "symlinks_refused", test_symlinks_refused },
  { "symlinked_blob", test_symlinked_blob },
  { "tags", test_tags },
  { "retag_replaces", test_retag_replaces },
  { "index_annotations", test_index_annotations },
  { "foreign_descriptors", test_foreign_descriptors },
  { "bad_tags", test_bad_tags },
  { "stray_temps", test_stray_temps },
  { "concurrent_tags", test_concurrent_tags },
  { "concurrent_commits", test_concurrent_commits },
};
UNIT_MAIN(tests)
