/* OCI layouts as tars and directories, and docker archives (oci/layout.c). */
#include "unit.h"

#include "../../oci/oci.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#define LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"

/* ---- a blob source over a directory of files named by hex digest ---- */

struct fixture {
  char dir[64];   /* the test's temporary directory */
  char *src;      /* dir/src: the blobs */
  int opens;      /* how many blobs the writer opened */
  int64_t lie;    /* added to the size the source reports ... */
  const char *lie_digest; /* ... for this blob, or all when NULL */
  bool fail_open; /* the source fails every open */
};

static int fixture_open(void *data, const char *digest, int64_t *size, struct cb_error *err)
{
  struct fixture *f = data;
  cleanup_free char *path = NULL;
  struct stat st;
  int fd;
  f->opens++;
  if (f->fail_open)
    return cb_error_set(err, "not in the store");
  if (!oci_digest_valid(digest))
    return cb_error_set(err, "bad digest");
  path = xasprintf("%s/%s", f->src, digest + 7);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return cb_error_errno(err, errno, "open \"%s\"", path);
  if (fstat(fd, &st) < 0) {
    close(fd);
    return cb_error_errno(err, errno, "stat \"%s\"", path);
  }
  *size = st.st_size;
  if (f->lie_digest == NULL || strcmp(f->lie_digest, digest) == 0)
    *size += f->lie;
  return fd;
}

static struct oci_blob_source fixture_source(struct fixture *f)
{
  struct oci_blob_source s = { fixture_open, f };
  return s;
}

static void write_file(const char *path, const void *data, size_t n)
{
  cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, data, n) != (ssize_t)n)
    cb_die("write \"%s\": %s", path, strerror(errno));
}

static char *read_whole(const char *path, size_t *n)
{
  struct strbuf sb = STRBUF_INIT;
  struct cb_error err;
  if (cb_read_file(path, &sb, &err) < 0) {
    strbuf_release(&sb);
    return NULL;
  }
  return strbuf_detach(&sb, n);
}

static void fixture_init(struct fixture *f)
{
  memset(f, 0, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/cbuild-test-layout.XXXXXX");
  if (mkdtemp(f->dir) == NULL)
    cb_die("mkdtemp: %s", strerror(errno));
  f->src = xasprintf("%s/src", f->dir);
  if (mkdir(f->src, 0755) < 0)
    cb_die("mkdir: %s", strerror(errno));
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
  return remove(path);
}

static void fixture_release(struct fixture *f)
{
  nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(f->src);
}

/* Store data as a blob; fill d with its descriptor. */
static void put_blob(struct fixture *f, const char *media_type, const void *data, size_t n,
                     struct oci_descriptor *d)
{
  char digest[OCI_DIGEST_SIZE];
  cleanup_free char *path = NULL;
  oci_digest_buf(data, n, digest);
  path = xasprintf("%s/%s", f->src, digest + 7);
  write_file(path, data, n);
  memset(d, 0, sizeof(*d));
  d->media_type = xstrdup(media_type);
  d->digest = xstrdup(digest);
  d->size = (int64_t)n;
}

/* An image whose layers hold the given strings (not real tars: the
 * writer does not look inside). */
struct image {
  struct oci_manifest m;
  struct oci_descriptor desc;
  char *config_json, *manifest_json;
  struct strvec tags;
};

/* The config and manifest of the image of im->m's layers. */
static void finish_image(struct fixture *f, struct image *im, const char *os)
{
  struct oci_config c;
  memset(&c, 0, sizeof(c));
  c.architecture = xstrdup("amd64");
  c.os = xstrdup(os);
  for (size_t i = 0; i < im->m.n_layers; i++)
    strvec_push(&c.diff_ids, im->m.layers[i].digest);
  im->config_json = oci_config_json(&c);
  oci_config_release(&c);
  put_blob(f, OCI_MEDIA_TYPE_CONFIG, im->config_json, strlen(im->config_json), &im->m.config);
  im->manifest_json = oci_manifest_json(&im->m);
  put_blob(f, OCI_MEDIA_TYPE_MANIFEST, im->manifest_json, strlen(im->manifest_json), &im->desc);
}

static void make_image(struct fixture *f, struct image *im, const char *os,
                       const char *const *layers, size_t n)
{
  memset(im, 0, sizeof(*im));
  im->m.layers = xcalloc(n ? n : 1, sizeof(*im->m.layers));
  im->m.n_layers = n;
  for (size_t i = 0; i < n; i++)
    put_blob(f, LAYER_GZIP, layers[i], strlen(layers[i]), &im->m.layers[i]);
  finish_image(f, im, os);
}

static void image_release(struct image *im)
{
  oci_manifest_release(&im->m);
  oci_descriptor_release(&im->desc);
  free(im->config_json);
  free(im->manifest_json);
  strvec_clear(&im->tags);
}

static struct oci_archive_image archive_image(struct image *im, const char *ref_name,
                                              const char *image_name)
{
  struct oci_archive_image a = { &im->desc, &im->m, ref_name, image_name, &im->tags };
  return a;
}

/* ---- reading tars back ---- */

struct entry {
  char *path;
  mode_t mode; /* type and permissions */
  int64_t size, mtime, uid, gid;
  bool has_uname;
  char *data;
};

struct tar {
  struct entry *v;
  size_t n;
};

static void tar_release(struct tar *t)
{
  for (size_t i = 0; i < t->n; i++) {
    free(t->v[i].path);
    free(t->v[i].data);
  }
  free(t->v);
  memset(t, 0, sizeof(*t));
}

/* Read the tar in file path; false (and a test failure) when it is not one. */
static bool read_tar(const char *path, struct tar *t)
{
  struct archive *a = archive_read_new();
  struct archive_entry *e;
  size_t alloc = 0;
  int r;
  memset(t, 0, sizeof(*t));
  archive_read_support_format_tar(a);
  if (archive_read_open_filename(a, path, 10240) != ARCHIVE_OK) {
    unit_fail(__FILE__, __LINE__, "open tar: %s", archive_error_string(a));
    archive_read_free(a);
    return false;
  }
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    struct entry *x;
    int64_t size = archive_entry_size(e);
    CB_GROW(t->v, t->n + 1, alloc);
    x = &t->v[t->n++];
    memset(x, 0, sizeof(*x));
    x->path = xstrdup(archive_entry_pathname(e));
    x->mode = archive_entry_mode(e);
    x->size = size;
    x->mtime = archive_entry_mtime(e);
    x->uid = archive_entry_uid(e);
    x->gid = archive_entry_gid(e);
    x->has_uname = (archive_entry_uname(e) && *archive_entry_uname(e)) ||
                   (archive_entry_gname(e) && *archive_entry_gname(e));
    x->data = xmalloc((size_t)size + 1);
    if (archive_read_data(a, x->data, (size_t)size) != size)
      unit_fail(__FILE__, __LINE__, "short entry %s", x->path);
    x->data[size] = '\0';
  }
  if (r != ARCHIVE_EOF)
    unit_fail(__FILE__, __LINE__, "read tar: %s", archive_error_string(a));
  archive_read_free(a);
  return r == ARCHIVE_EOF;
}

static const struct entry *tar_find(const struct tar *t, const char *path)
{
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].path, path) == 0)
      return &t->v[i];
  return NULL;
}

static char *blob_path(const char *digest) { return xasprintf("blobs/sha256/%s", digest + 7); }

/* Write with fn into dir/name; the result of fn. */
typedef int (*tar_writer)(int fd, const struct oci_archive_image *images, size_t n,
                          const struct oci_blob_source *src, struct cb_error *err);

static int write_to(struct fixture *f, const char *name, tar_writer fn,
                    const struct oci_archive_image *images, size_t n, struct cb_error *err)
{
  cleanup_free char *path = xasprintf("%s/%s", f->dir, name);
  cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  struct oci_blob_source src = fixture_source(f);
  if (fd < 0)
    cb_die("open \"%s\": %s", path, strerror(errno));
  return fn(fd, images, n, &src, err);
}

/* Check the blob entry for d holds the source's bytes. */
static void check_blob(const struct tar *t, const struct fixture *f, const struct oci_descriptor *d,
                       int line)
{
  cleanup_free char *path = blob_path(d->digest);
  cleanup_free char *src = xasprintf("%s/%s", f->src, d->digest + 7);
  cleanup_free char *want = NULL;
  size_t n = 0;
  const struct entry *e = tar_find(t, path);
  want = read_whole(src, &n);
  if (e == NULL) {
    unit_fail(__FILE__, line, "no entry %s", path);
    return;
  }
  if (e->size != d->size || (size_t)e->size != n || memcmp(e->data, want, n) != 0)
    unit_fail(__FILE__, line, "entry %s does not hold its blob", path);
}

/* The archive holds exactly the head, these blobs and the index files, in
 * this order. */
static void check_order(const struct tar *t, const struct oci_descriptor *const *blobs, size_t n,
                        bool docker, int line)
{
  struct strvec want = STRVEC_INIT;
  strvec_push(&want, "oci-layout");
  strvec_push(&want, "blobs/");
  strvec_push(&want, "blobs/sha256/");
  for (size_t i = 0; i < n; i++)
    strvec_push_nodup(&want, blob_path(blobs[i]->digest));
  strvec_push(&want, "index.json");
  if (docker)
    strvec_push(&want, "manifest.json");
  if (t->n != want.n)
    unit_fail(__FILE__, line, "%zu entries, expected %zu", t->n, want.n);
  for (size_t i = 0; i < t->n && i < want.n; i++)
    if (strcmp(t->v[i].path, want.v[i]) != 0)
      unit_fail(__FILE__, line, "entry %zu is \"%s\", expected \"%s\"", i, t->v[i].path,
                want.v[i]);
  strvec_clear(&want);
}

/* ---- tests ---- */

static const char *const layers1[] = { "layer one", "layer two, longer than the first" };

static void test_layout_tar_entries(void)
{
  struct fixture f;
  struct image im;
  struct oci_archive_image a;
  struct cb_error err;
  struct tar t;
  struct oci_index x;
  cleanup_free char *tar_path = NULL;
  fixture_init(&f);
  make_image(&f, &im, "linux", layers1, 2);
  a = archive_image(&im, "v1", "docker.io/library/app:v1");
  if (write_to(&f, "out.tar", oci_layout_write_tar, &a, 1, &err) < 0) {
    unit_fail(__FILE__, __LINE__, "write: %s", err.msg);
    goto out;
  }
  CHECK_INT(f.opens, 4);
  tar_path = xasprintf("%s/out.tar", f.dir);
  if (!read_tar(tar_path, &t))
    goto out;

  /* exactly these entries, in this order: the layers first */
  {
    const struct oci_descriptor *blobs[] = { &im.m.layers[0], &im.m.layers[1], &im.m.config,
                                             &im.desc };
    check_order(&t, blobs, 4, false, __LINE__);
  }
  for (size_t i = 0; i < t.n; i++) {
    const struct entry *e = &t.v[i];
    bool dir = cb_ends_with(e->path, "/");
    CHECK_INT(e->mode, dir ? (S_IFDIR | 0755) : (S_IFREG | 0644));
    CHECK_INT(e->mtime, 0);
    CHECK_INT(e->uid, 0);
    CHECK_INT(e->gid, 0);
    CHECK(!e->has_uname);
  }

  check_blob(&t, &f, &im.desc, __LINE__);
  check_blob(&t, &f, &im.m.config, __LINE__);
  check_blob(&t, &f, &im.m.layers[0], __LINE__);
  check_blob(&t, &f, &im.m.layers[1], __LINE__);
  CHECK_STR(tar_find(&t, "oci-layout")->data, "{\"imageLayoutVersion\":\"1.0.0\"}");

  /* index.json names the manifest, both ways */
  const struct entry *ix = tar_find(&t, "index.json");
  if (ix && oci_index_parse(ix->data, (size_t)ix->size, &x, &err) == 0) {
    CHECK_INT(x.n_manifests, 1);
    CHECK_STR(x.manifests[0].digest, im.desc.digest);
    CHECK_INT(x.manifests[0].size, im.desc.size);
    CHECK_STR(x.manifests[0].media_type, OCI_MEDIA_TYPE_MANIFEST);
    CHECK_STR(oci_descriptor_annotation(&x.manifests[0], OCI_ANNOTATION_REF_NAME), "v1");
    CHECK_STR(oci_descriptor_annotation(&x.manifests[0], OCI_ANNOTATION_IMAGE_NAME),
              "docker.io/library/app:v1");
    oci_index_release(&x);
    /* and it is the canonical encoding */
    CHECK(strstr(ix->data, "\"manifests\":[{\"annotations\":{\"io.containerd.image.name\":"
                           "\"docker.io/library/app:v1\",\"org.opencontainers.image.ref.name\":"
                           "\"v1\"},\"digest\":\"") == ix->data + 1);
  } else {
    unit_fail(__FILE__, __LINE__, "index.json: %s", ix ? err.msg : "missing");
  }
  tar_release(&t);
out:
  image_release(&im);
  fixture_release(&f);
}

static void test_layout_tar_deterministic(void)
{
  struct fixture f;
  struct image im;
  struct oci_archive_image a;
  struct cb_error err;
  cleanup_free char *one = NULL, *two = NULL, *p1 = NULL, *p2 = NULL;
  size_t n1 = 0, n2 = 0;
  fixture_init(&f);
  make_image(&f, &im, "linux", layers1, 2);
  a = archive_image(&im, "latest", NULL);
  CHECK_INT(write_to(&f, "1.tar", oci_layout_write_tar, &a, 1, &err), 0);
  /* the source files' own times and modes must not matter */
  cleanup_free char *src0 = xasprintf("%s/%s", f.src, im.m.layers[0].digest + 7);
  struct timespec ts[2] = { { 1234567, 0 }, { 1234567, 0 } };
  CHECK_INT(utimensat(AT_FDCWD, src0, ts, 0), 0);
  CHECK_INT(chmod(src0, 0600), 0);
  CHECK_INT(write_to(&f, "2.tar", oci_layout_write_tar, &a, 1, &err), 0);
  p1 = xasprintf("%s/1.tar", f.dir);
  p2 = xasprintf("%s/2.tar", f.dir);
  one = read_whole(p1, &n1);
  two = read_whole(p2, &n2);
  CHECK(one != NULL && two != NULL);
  CHECK_INT(n1, n2);
  CHECK(n1 > 0 && n1 % 512 == 0);
  CHECK(one && two && n1 == n2 && memcmp(one, two, n1) == 0);
  /* a pipe (dest=-) gets the same bytes as a file */
  int p[2];
  struct oci_blob_source src = fixture_source(&f);
  CHECK_INT(pipe(p), 0);
  CHECK_INT(oci_layout_write_tar(p[1], &a, 1, &src, &err), 0);
  close(p[1]);
  cleanup_free char *piped = xmalloc(n1 + 1);
  ssize_t got = read(p[0], piped, n1 + 1); /* it fits in the pipe's buffer */
  close(p[0]);
  CHECK_INT(got, (ssize_t)n1);
  CHECK(one && got == (ssize_t)n1 && memcmp(one, piped, n1) == 0);
  /* no PAX extended header is needed: plain ustar entries */
  CHECK(one && memmem(one, n1, "ustar", 5) != NULL);
  CHECK(one && memmem(one, n1, "PaxHeader", 9) == NULL);
  image_release(&im);
  fixture_release(&f);
}

static void test_layout_tar_shared_blobs(void)
{
  static const char *const layers2[] = { "layer one", "a third layer" };
  struct fixture f;
  struct image a, b;
  struct oci_archive_image ims[2];
  struct cb_error err;
  struct tar t;
  struct oci_index x;
  cleanup_free char *path = NULL;
  fixture_init(&f);
  make_image(&f, &a, "linux", layers1, 2);
  make_image(&f, &b, "linux", layers2, 2); /* shares "layer one" */
  ims[0] = archive_image(&a, "a", NULL);
  ims[1] = archive_image(&b, "b", NULL);
  f.opens = 0;
  CHECK_INT(write_to(&f, "out.tar", oci_layout_write_tar, ims, 2, &err), 0);
  /* 2 manifests, 2 configs, 3 distinct layers, each opened once */
  CHECK_INT(f.opens, 7);
  path = xasprintf("%s/out.tar", f.dir);
  if (read_tar(path, &t)) {
    /* b's first layer is a's, written once where it first comes */
    const struct oci_descriptor *blobs[] = { &a.m.layers[0], &a.m.layers[1], &a.m.config,
                                             &a.desc,        &b.m.layers[1], &b.m.config,
                                             &b.desc };
    check_order(&t, blobs, 7, false, __LINE__);
    check_blob(&t, &f, &b.m.layers[0], __LINE__);
    check_blob(&t, &f, &b.m.layers[1], __LINE__);
    const struct entry *ix = tar_find(&t, "index.json");
    CHECK(ix != NULL);
    if (ix && oci_index_parse(ix->data, (size_t)ix->size, &x, &err) == 0) {
      CHECK_INT(x.n_manifests, 2);
      if (x.n_manifests == 2) {
        /* in the order given */
        CHECK_STR(x.manifests[0].digest, a.desc.digest);
        CHECK_STR(x.manifests[1].digest, b.desc.digest);
        CHECK_STR(oci_descriptor_annotation(&x.manifests[1], OCI_ANNOTATION_REF_NAME), "b");
        CHECK(oci_descriptor_annotation(&x.manifests[1], OCI_ANNOTATION_IMAGE_NAME) == NULL);
      }
      oci_index_release(&x);
    }
    tar_release(&t);
  }
  image_release(&a);
  image_release(&b);
  fixture_release(&f);
}

/* Whether dir/name ends like a finished tar: two zero blocks, after
 * something. */
static bool looks_complete(struct fixture *f, const char *name)
{
  cleanup_free char *path = xasprintf("%s/%s", f->dir, name);
  cleanup_free char *data = NULL;
  size_t n = 0;
  data = read_whole(path, &n);
  if (data == NULL || n < 2048 || n % 512 != 0)
    return false;
  for (size_t i = n - 1024; i < n; i++)
    if (data[i] != 0)
      return false;
  return true;
}

static void test_layout_blob_errors(void)
{
  struct fixture f;
  struct image im;
  struct oci_archive_image a;
  struct cb_error err;
  char *saved;
  fixture_init(&f);
  make_image(&f, &im, "linux", layers1, 2);
  a = archive_image(&im, "v1", NULL);
  CHECK_INT(write_to(&f, "x.tar", oci_layout_write_tar, &a, 1, &err), 0);
  CHECK(looks_complete(&f, "x.tar"));

  /* the source's size differs from the descriptor's */
  f.lie = 1;
  CHECK_INT(write_to(&f, "x.tar", oci_layout_write_tar, &a, 1, &err), -1);
  CHECK_CONTAINS(err.msg, "size is");
  CHECK_CONTAINS(err.msg, "expected");

  /* the blob is shorter than it says (descriptor and source agree) */
  f.lie_digest = im.m.layers[1].digest;
  im.m.layers[1].size += 5;
  f.lie = 5;
  CHECK_INT(write_to(&f, "x.tar", oci_layout_write_tar, &a, 1, &err), -1);
  CHECK_CONTAINS(err.msg, "ends after");
  CHECK_CONTAINS(err.msg, im.m.layers[1].digest);
  CHECK(!looks_complete(&f, "x.tar"));
  im.m.layers[1].size -= 5;

  /* or longer */
  im.m.layers[1].size -= 3;
  f.lie = -3;
  CHECK_INT(write_to(&f, "x.tar", oci_layout_write_tar, &a, 1, &err), -1);
  CHECK_CONTAINS(err.msg, "longer than");
  im.m.layers[1].size += 3;
  f.lie = 0;
  f.lie_digest = NULL;

  /* the source's own error, with the digest */
  f.fail_open = true;
  CHECK_INT(write_to(&f, "x.tar", oci_docker_archive_write, &a, 1, &err), -1);
  CHECK_CONTAINS(err.msg, ": not in the store");
  CHECK_CONTAINS(err.msg, "blob sha256:");
  f.fail_open = false;

  /* a digest that would be a path is refused before anything is opened */
  saved = im.m.layers[0].digest;
  im.m.layers[0].digest = xstrdup("sha256:../../../../etc/passwd");
  f.opens = 0;
  CHECK_INT(write_to(&f, "x.tar", oci_layout_write_tar, &a, 1, &err), -1);
  CHECK_CONTAINS(err.msg, "invalid digest \"sha256:../../../../etc/passwd\"");
  CHECK_INT(f.opens, 0);
  CHECK_INT(oci_layout_write_dir(f.dir, &a, 1, &(struct oci_blob_source){ fixture_open, &f },
                                 &err),
            -1);
  CHECK_INT(f.opens, 0);
  free(im.m.layers[0].digest);
  im.m.layers[0].digest = saved;

  /* one digest with two sizes */
  im.m.layers[1].size++;
  free(im.m.layers[1].digest);
  im.m.layers[1].digest = xstrdup(im.m.layers[0].digest);
  CHECK_INT(write_to(&f, "x.tar", oci_layout_write_tar, &a, 1, &err), -1);
  CHECK_CONTAINS(err.msg, "is listed with sizes");

  /* a writer that cannot write */
  struct oci_blob_source src = fixture_source(&f);
  int p[2];
  im.m.layers[1].size = im.m.layers[0].size;
  CHECK_INT(pipe(p), 0);
  close(p[0]);
  signal(SIGPIPE, SIG_IGN);
  CHECK_INT(oci_layout_write_tar(p[1], &a, 1, &src, &err), -1);
  CHECK_CONTAINS(err.msg, "archive");
  close(p[1]);

  image_release(&im);
  fixture_release(&f);
}

/* Names in dir starting with '.': temporary files left behind. */
static int count_hidden(const char *dir)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  int n = 0;
  if (d == NULL)
    return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      n++;
  closedir(d);
  return n;
}

static struct oci_index read_dir_index(const char *dir)
{
  struct oci_index x;
  struct cb_error err;
  cleanup_free char *path = xasprintf("%s/index.json", dir);
  cleanup_free char *json = NULL;
  size_t n = 0;
  memset(&x, 0, sizeof(x));
  json = read_whole(path, &n);
  if (json == NULL || oci_index_parse(json, n, &x, &err) < 0)
    unit_fail(__FILE__, __LINE__, "%s: unreadable", path);
  return x;
}

static void test_layout_dir(void)
{
  struct fixture f;
  struct image im;
  struct oci_archive_image a;
  struct oci_blob_source src;
  struct cb_error err;
  struct oci_index x;
  struct stat st;
  cleanup_free char *out = NULL, *layout = NULL, *sha = NULL, *first = NULL, *again = NULL;
  cleanup_free char *index_path = NULL;
  fixture_init(&f);
  src = fixture_source(&f);
  make_image(&f, &im, "linux", layers1, 2);
  a = archive_image(&im, "v1", "localhost/app:v1");
  out = xasprintf("%s/layout", f.dir); /* created by the writer */
  f.opens = 0;
  if (oci_layout_write_dir(out, &a, 1, &src, &err) < 0) {
    unit_fail(__FILE__, __LINE__, "write: %s", err.msg);
    image_release(&im);
    fixture_release(&f);
    return;
  }
  CHECK_INT(f.opens, 4);
  layout = xasprintf("%s/oci-layout", out);
  cleanup_free char *lc = read_whole(layout, NULL);
  CHECK_STR(lc, "{\"imageLayoutVersion\":\"1.0.0\"}");
  sha = xasprintf("%s/blobs/sha256", out);
  const struct oci_descriptor *all[] = { &im.desc, &im.m.config, &im.m.layers[0],
                                         &im.m.layers[1] };
  for (size_t i = 0; i < CB_ARRAY_SIZE(all); i++) {
    cleanup_free char *p = xasprintf("%s/%s", sha, all[i]->digest + 7);
    cleanup_free char *q = xasprintf("%s/%s", f.src, all[i]->digest + 7);
    size_t n1 = 0, n2 = 0;
    cleanup_free char *d1 = read_whole(p, &n1), *d2 = read_whole(q, &n2);
    CHECK(d1 != NULL && d2 != NULL && n1 == n2 && memcmp(d1, d2, n1) == 0);
    CHECK(stat(p, &st) == 0 && S_ISREG(st.st_mode));
  }
  CHECK_INT(count_hidden(sha), 0);
  CHECK_INT(count_hidden(out), 0);
  x = read_dir_index(out);
  CHECK_INT(x.n_manifests, 1);
  if (x.n_manifests == 1) {
    CHECK_STR(x.manifests[0].digest, im.desc.digest);
    CHECK_STR(oci_descriptor_annotation(&x.manifests[0], OCI_ANNOTATION_IMAGE_NAME),
              "localhost/app:v1");
  }
  oci_index_release(&x);

  /* again: every blob is there, so none is read; the index is unchanged */
  index_path = xasprintf("%s/index.json", out);
  first = read_whole(index_path, NULL);
  f.opens = 0;
  CHECK_INT(oci_layout_write_dir(out, &a, 1, &src, &err), 0);
  CHECK_INT(f.opens, 0);
  again = read_whole(index_path, NULL);
  CHECK_STR(again, first);

  /* a damaged blob (wrong size) is written again */
  cleanup_free char *layer0 = xasprintf("%s/%s", sha, im.m.layers[0].digest + 7);
  CHECK_INT(truncate(layer0, 2), 0);
  f.opens = 0;
  CHECK_INT(oci_layout_write_dir(out, &a, 1, &src, &err), 0);
  CHECK_INT(f.opens, 1);
  CHECK(stat(layer0, &st) == 0 && st.st_size == im.m.layers[0].size);

  /* a failure leaves no temporary file behind */
  CHECK_INT(unlink(layer0), 0);
  im.m.layers[0].size += 4;
  f.lie = 4;
  f.lie_digest = im.m.layers[0].digest;
  CHECK_INT(oci_layout_write_dir(out, &a, 1, &src, &err), -1);
  CHECK_CONTAINS(err.msg, "ends after");
  CHECK_INT(count_hidden(sha), 0);
  CHECK(stat(layer0, &st) < 0 && errno == ENOENT);
  im.m.layers[0].size -= 4;
  f.lie = 0;

  /* an index.json that is not one is an error naming it */
  static const char bad_index[] = "{\"schemaVersion\":2,\"manifests\":7}";
  write_file(index_path, bad_index, strlen(bad_index));
  CHECK_INT(oci_layout_write_dir(out, &a, 1, &src, &err), -1);
  CHECK_CONTAINS(err.msg, "read \"");
  CHECK_CONTAINS(err.msg, "/layout/index.json\": invalid image index: \"manifests\" is not an array");
  image_release(&im);
  fixture_release(&f);
}

static void test_layout_dir_merge(void)
{
  static const char *const l2[] = { "other" };
  static const char *const l3[] = { "third" };
  struct fixture f;
  struct image a, b, c;
  struct oci_archive_image ia, ib, ic, iu;
  struct oci_blob_source src;
  struct cb_error err;
  struct oci_index x;
  cleanup_free char *out = NULL;
  fixture_init(&f);
  src = fixture_source(&f);
  make_image(&f, &a, "linux", layers1, 2);
  make_image(&f, &b, "linux", l2, 1);
  make_image(&f, &c, "linux", l3, 1);
  out = xasprintf("%s/layout", f.dir);
  ia = archive_image(&a, "v1", NULL);
  ib = archive_image(&b, "v2", NULL);
  ic = archive_image(&c, "v1", NULL);
  iu = archive_image(&c, NULL, NULL);

  CHECK_INT(oci_layout_write_dir(out, &ia, 1, &src, &err), 0);
  CHECK_INT(oci_layout_write_dir(out, &ib, 1, &src, &err), 0);
  x = read_dir_index(out);
  CHECK_INT(x.n_manifests, 2);
  oci_index_release(&x);

  /* v1 now names c: a's descriptor goes, b's stays */
  CHECK_INT(oci_layout_write_dir(out, &ic, 1, &src, &err), 0);
  x = read_dir_index(out);
  CHECK_INT(x.n_manifests, 2);
  if (x.n_manifests == 2) {
    CHECK_STR(x.manifests[0].digest, b.desc.digest);
    CHECK_STR(oci_descriptor_annotation(&x.manifests[0], OCI_ANNOTATION_REF_NAME), "v2");
    CHECK_STR(x.manifests[1].digest, c.desc.digest);
    CHECK_STR(oci_descriptor_annotation(&x.manifests[1], OCI_ANNOTATION_REF_NAME), "v1");
  }
  oci_index_release(&x);

  /* an unnamed image is added once, however often it is written */
  CHECK_INT(oci_layout_write_dir(out, &iu, 1, &src, &err), 0);
  CHECK_INT(oci_layout_write_dir(out, &iu, 1, &src, &err), 0);
  x = read_dir_index(out);
  CHECK_INT(x.n_manifests, 3);
  if (x.n_manifests == 3)
    CHECK(oci_descriptor_annotation(&x.manifests[2], OCI_ANNOTATION_REF_NAME) == NULL);
  oci_index_release(&x);

  /* a's blobs stay (a layout directory is not garbage-collected here) */
  cleanup_free char *pa = xasprintf("%s/blobs/sha256/%s", out, a.desc.digest + 7);
  CHECK(access(pa, F_OK) == 0);

  image_release(&a);
  image_release(&b);
  image_release(&c);
  fixture_release(&f);
}

static void test_docker_archive(void)
{
  static const char *const l2[] = { "layer one" };
  struct fixture f;
  struct image a, b;
  struct oci_archive_image ims[2];
  struct cb_error err;
  struct tar t;
  cleanup_free char *path = NULL, *want = NULL;
  cleanup_free char *ca = NULL, *l0 = NULL, *l1 = NULL, *cb = NULL;
  fixture_init(&f);
  make_image(&f, &a, "linux", layers1, 2);
  make_image(&f, &b, "freebsd", l2, 1);
  strvec_push(&a.tags, "app:latest");
  strvec_push(&a.tags, "localhost:5000/app:v1");
  ims[0] = archive_image(&a, "latest", "docker.io/library/app:latest");
  ims[1] = archive_image(&b, NULL, NULL);
  if (write_to(&f, "d.tar", oci_docker_archive_write, ims, 2, &err) < 0) {
    unit_fail(__FILE__, __LINE__, "write: %s", err.msg);
    goto done;
  }
  path = xasprintf("%s/d.tar", f.dir);
  if (!read_tar(path, &t))
    goto done;
  {
    const struct oci_descriptor *blobs[] = { &a.m.layers[0], &a.m.layers[1], &a.m.config,
                                             &a.desc,        &b.m.config,    &b.desc };
    check_order(&t, blobs, 6, true, __LINE__);
  }
  ca = blob_path(a.m.config.digest);
  l0 = blob_path(a.m.layers[0].digest);
  l1 = blob_path(a.m.layers[1].digest);
  cb = blob_path(b.m.config.digest);
  want = xasprintf("[{\"Config\":\"%s\",\"Layers\":[\"%s\",\"%s\"],"
                   "\"RepoTags\":[\"app:latest\",\"localhost:5000/app:v1\"]},"
                   "{\"Config\":\"%s\",\"Layers\":[\"%s\"],\"RepoTags\":[]}]",
                   ca, l0, l1, cb, l0);
  const struct entry *m = tar_find(&t, "manifest.json");
  CHECK_STR(m ? m->data : NULL, want);
  /* every path it names is in the archive, with the blob's bytes */
  CHECK(tar_find(&t, ca) && tar_find(&t, l1) && tar_find(&t, cb));
  check_blob(&t, &f, &a.m.config, __LINE__);
  check_blob(&t, &f, &a.m.layers[0], __LINE__);
  /* and the OCI side is there too */
  const struct entry *ix = tar_find(&t, "index.json");
  CHECK_CONTAINS(ix ? ix->data : NULL, "\"io.containerd.image.name\":\"docker.io/library/app:latest\"");
  tar_release(&t);

  /* a tag docker load would refuse is refused here */
  strvec_push(&b.tags, "Not A Tag");
  CHECK_INT(write_to(&f, "e.tar", oci_docker_archive_write, ims, 2, &err), -1);
  CHECK_CONTAINS(err.msg, "invalid repository tag \"Not A Tag\"");
done:
  image_release(&a);
  image_release(&b);
  fixture_release(&f);
}

/* ---- archives written while the image is built (tar-stream.c) ---- */

/*
 * Write a layer of a file of `bytes` pseudo-random bytes (several writes
 * of the blob, so the stream's thread copies it in pieces) with stream s
 * in its options, into the source as a blob; d gets its descriptor.
 * Unless `keep`, the layer is given up before it is finished.
 */
static void stream_layer(struct fixture *f, struct oci_tar_stream *s, unsigned seed, size_t bytes,
                         bool keep, struct oci_descriptor *d)
{
  cleanup_free char *tmp = xasprintf("%s/layer.tmp", f->src);
  cleanup_free char *data = xmalloc(bytes);
  cleanup_free char *path = NULL;
  struct oci_layer_options o = { OCI_COMPRESSION_GZIP, 1, 2, 0, s };
  struct oci_entry e;
  struct oci_layer_info info;
  struct oci_layer_writer *w;
  struct cb_error err;
  int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    cb_die("open \"%s\": %s", tmp, strerror(errno));
  for (size_t i = 0; i < bytes; i++) {
    seed = seed * 1103515245 + 12345;
    data[i] = (char)(seed >> 16);
  }
  memset(&e, 0, sizeof(e));
  e.path = "file";
  e.mode = S_IFREG | 0644;
  e.size = (int64_t)bytes;
  w = oci_layer_writer_new(fd, &o, &err);
  CHECK(w != NULL);
  if (w && oci_layer_writer_add_data(w, &e, data, &err) < 0)
    unit_fail(__FILE__, __LINE__, "add: %s", err.msg);
  if (keep && w && oci_layer_writer_finish(w, &info, &err) < 0)
    unit_fail(__FILE__, __LINE__, "finish: %s", err.msg);
  oci_layer_writer_free(w);
  close(fd);
  if (!keep) {
    unlink(tmp);
    return;
  }
  path = xasprintf("%s/%s", f->src, info.digest + 7);
  if (rename(tmp, path) < 0)
    cb_die("rename: %s", strerror(errno));
  memset(d, 0, sizeof(*d));
  d->media_type = xstrdup(info.media_type);
  d->digest = xstrdup(info.digest);
  d->size = info.size;
}

static void check_same_file(const char *a, const char *b, int line)
{
  size_t na = 0, nb = 0;
  cleanup_free char *x = read_whole(a, &na);
  cleanup_free char *y = read_whole(b, &nb);
  if (x == NULL || y == NULL || na != nb || memcmp(x, y, na) != 0)
    unit_fail(__FILE__, line, "%s (%zu bytes) differs from %s (%zu bytes)", a, na, b, nb);
}

/* A stream over dir/name (dir NULL: the fixture's), a file that already
 * holds junk (a longer archive of an earlier try) to be overwritten and
 * cut; *path gets the file's path. */
static struct oci_tar_stream *stream_open(const struct fixture *f, const char *dir,
                                          const char *name, char **path, int *fd)
{
  cleanup_free char *junk = xmalloc(4 << 20);
  *path = xasprintf("%s/%s", dir ? dir : f->dir, name);
  memset(junk, 0xa5, 4 << 20);
  write_file(*path, junk, 4 << 20);
  *fd = open(*path, O_WRONLY | O_CLOEXEC);
  if (*fd < 0)
    cb_die("open \"%s\": %s", *path, strerror(errno));
  return oci_tar_stream_new(*fd);
}

/*
 * Write image a's archive through stream s (over fd, the file at path),
 * then check that the source was asked for `opens` blobs (the layers in
 * place are not read again) and that the file holds the same bytes as the
 * archive written whole.  Frees s and closes fd.
 */
static void check_stream_write(struct fixture *f, struct oci_tar_stream *s, int fd,
                               const char *path, bool docker, const struct oci_archive_image *a,
                               int opens, int line)
{
  struct oci_blob_source src = fixture_source(f);
  cleanup_free char *whole = xasprintf("%s/whole.tar", f->dir);
  struct cb_error err;
  f->opens = 0;
  if (oci_tar_stream_write(s, docker, a, 1, &src, &err) < 0)
    unit_fail(__FILE__, line, "write through the stream: %s", err.msg);
  if (f->opens != opens)
    unit_fail(__FILE__, line, "%d blobs read from the source, expected %d", f->opens, opens);
  oci_tar_stream_free(s);
  close(fd);
  if (write_to(f, "whole.tar", docker ? oci_docker_archive_write : oci_layout_write_tar, a, 1,
               &err) < 0)
    unit_fail(__FILE__, line, "write whole: %s", err.msg);
  check_same_file(path, whole, line);
}

/* An archive streamed into a file in dir (NULL: beside the blobs). */
static void stream_archive_in(const char *dir)
{
  static const char *const cached[] = { "a layer the store had" };
  struct fixture f;
  struct image im;
  struct oci_archive_image a;
  struct oci_tar_stream *s;
  cleanup_free char *path = NULL;
  int fd;
  fixture_init(&f);
  /* layer 0 was in the store (a cached step); 1 and 2 are written now,
   * with a layer given up (a RUN that changed nothing) between them */
  make_image(&f, &im, "linux", cached, 1);
  im.m.layers = xreallocarray(im.m.layers, 3, sizeof(*im.m.layers));
  s = stream_open(&f, dir, "stream.tar", &path, &fd);
  CHECK_INT(oci_tar_stream_sync(s, im.m.layers, 1), 0);
  stream_layer(&f, s, 1, 3 << 20, true, &im.m.layers[1]);
  oci_tar_stream_end(s, 1, im.m.layers[1].digest, im.m.layers[1].size);
  CHECK_INT(oci_tar_stream_sync(s, im.m.layers, 2), 0);
  stream_layer(&f, s, 2, 2 << 20, false, NULL);
  CHECK_INT(oci_tar_stream_sync(s, im.m.layers, 2), 0);
  stream_layer(&f, s, 3, 1 << 20, true, &im.m.layers[2]);
  oci_tar_stream_end(s, 2, im.m.layers[2].digest, im.m.layers[2].size);
  im.m.n_layers = 3;
  free(im.config_json);
  free(im.manifest_json);
  oci_descriptor_release(&im.m.config);
  oci_descriptor_release(&im.desc);
  finish_image(&f, &im, "linux");
  a = archive_image(&im, "v1", "docker.io/library/app:v1");

  /* the streamed layers are not read again: only layer 0, config, manifest */
  check_stream_write(&f, s, fd, path, false, &a, 3, __LINE__);
  unlink(path);
  image_release(&im);
  fixture_release(&f);
}

static void test_stream_archive(void)
{
  char shm[] = "/dev/shm/cbuild-test-layout.XXXXXX";
  stream_archive_in(NULL);
  /* on another file system (tmpfs) copy_file_range() says EXDEV, and the
   * stream copies by hand */
  if (mkdtemp(shm) == NULL) {
    printf("# no /dev/shm (%s): not tried across file systems\n", strerror(errno));
    return;
  }
  stream_archive_in(shm);
  rmdir(shm);
}

static void test_stream_diverged(void)
{
  static const char *const other[] = { "not the layer that was streamed" };
  struct fixture f;
  struct image im, wrong;
  struct oci_archive_image a;
  struct oci_tar_stream *s;
  struct oci_descriptor d;
  cleanup_free char *path = NULL, *path2 = NULL;
  int fd;
  fixture_init(&f);
  make_image(&f, &wrong, "linux", other, 1);

  /* streamed as layer 0 of a docker archive whose image has another
   * layer 0: written whole, over what the stream copied */
  s = stream_open(&f, NULL, "stream.tar", &path, &fd);
  CHECK_INT(oci_tar_stream_sync(s, NULL, 0), 0);
  stream_layer(&f, s, 4, 1 << 20, true, &d);
  oci_tar_stream_end(s, 0, d.digest, d.size);
  /* an image that left the streamed layers takes no more */
  CHECK_INT(oci_tar_stream_sync(s, wrong.m.layers, 1), -1);
  CHECK_INT(oci_tar_stream_sync(s, &d, 1), -1);
  a = archive_image(&wrong, NULL, NULL);
  check_stream_write(&f, s, fd, path, true, &a, 3, __LINE__);

  /* ended under the wrong index or size: not taken either */
  memset(&im, 0, sizeof(im));
  im.m.layers = xcalloc(1, sizeof(*im.m.layers));
  s = stream_open(&f, NULL, "stream2.tar", &path2, &fd);
  CHECK_INT(oci_tar_stream_sync(s, NULL, 0), 0);
  stream_layer(&f, s, 4, 1 << 20, true, &im.m.layers[0]);
  oci_tar_stream_end(s, 0, im.m.layers[0].digest, im.m.layers[0].size - 1);
  im.m.n_layers = 1;
  finish_image(&f, &im, "linux");
  a = archive_image(&im, NULL, NULL);
  check_stream_write(&f, s, fd, path2, false, &a, 3, __LINE__);

  oci_descriptor_release(&d);
  image_release(&im);
  image_release(&wrong);
  fixture_release(&f);
}

static const struct unit_test tests[] = {
  { "layout_tar_entries", test_layout_tar_entries },
  { "layout_tar_deterministic", test_layout_tar_deterministic },
  { "layout_tar_shared_blobs", test_layout_tar_shared_blobs },
  { "layout_blob_errors", test_layout_blob_errors },
  { "layout_dir", test_layout_dir },
  { "layout_dir_merge", test_layout_dir_merge },
  { "docker_archive", test_docker_archive },
  { "stream_archive", test_stream_archive },
  { "stream_diverged", test_stream_diverged },
};
UNIT_MAIN(tests)
