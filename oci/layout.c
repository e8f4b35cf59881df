/*
 * The archives images travel in (see oci.h): OCI image layouts, as a tar
 * or a directory, and docker archives (the OCI layout plus the
 * manifest.json that `docker load` reads, as Docker 25 and later write it).
 *
 * Tars are deterministic: mtime 0, uid and gid 0 with empty names, mode
 * 0644 for files and 0755 for directories, ustar headers (PAX restricted:
 * no extended header is ever needed for these names and sizes below 8 GiB),
 * and entries in a fixed order: oci-layout, blobs/, blobs/sha256/, then
 * each image's layers in order, its config and its manifest (a blob
 * already written is not written again), then index.json and
 * manifest.json.  Layers come first so that where each goes depends only
 * on the sizes of those before it (tar-stream.c copies them there while
 * they are built).  Blobs are streamed from the blob source, and hashed as
 * they are copied, in the same pass: a blob that does not match its digest
 * fails the write.
 *
 * A digest becomes a file name (blobs/sha256/<hex>), so every digest is
 * checked with oci_digest_valid() before it is used: a descriptor can come
 * from a pulled manifest, and "sha256:../../x" must not reach a path.
 */
#include "oci-internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <unistd.h>

#define LAYOUT_FILE "oci-layout"
#define LAYOUT_CONTENT "{\"imageLayoutVersion\":\"1.0.0\"}"
#define INDEX_FILE "index.json"
#define DOCKER_MANIFEST_FILE "manifest.json"
#define BLOBS_DIR "blobs/sha256/"
/* Blobs are copied in pieces this large: one read, one hash update and one
 * write each, as the tar's data goes straight to the fd (no libarchive
 * blocking, see write_tar). */
#define COPY_BUFFER ((size_t)1 << 20)

/* The hex part of a valid digest: what follows "sha256:". */
static const char *digest_hex(const char *digest) { return digest + strlen("sha256:"); }

/* ---- what goes in ---- */

struct blob {
  const char *digest; /* points into the caller's descriptors */
  int64_t size;
};

struct blob_list {
  struct blob *v;
  size_t n, alloc;
};

static void blob_list_release(struct blob_list *l)
{
  free(l->v);
  l->v = NULL;
  l->n = l->alloc = 0;
}
#define cleanup_blob_list __attribute__((cleanup(blob_list_release)))

static int blob_add(struct blob_list *l, size_t image, const char *what,
                    const struct oci_descriptor *d, struct cb_error *err)
{
  if (d->digest == NULL || !oci_digest_valid(d->digest))
    return cb_error_set(err, "image %zu: %s has an invalid digest \"%.80s\"", image + 1, what,
                        d->digest ? d->digest : "");
  if (d->size < 0)
    return cb_error_set(err, "image %zu: %s %s has a negative size", image + 1, what,
                        d->digest);
  CB_GROW(l->v, st_add(l->n, 1), l->alloc);
  l->v[l->n].digest = d->digest;
  l->v[l->n].size = d->size;
  l->n++;
  return 0;
}

/* Order by digest, then by position: the first of equal digests first. */
static int blob_at_cmp(const void *a, const void *b)
{
  const struct blob *const *x = a, *const *y = b;
  int c = strcmp((*x)->digest, (*y)->digest);
  return c ? c : (*x < *y ? -1 : *x > *y);
}

/* Every blob of the images in archive order (each image's layers, config,
 * manifest), each once, where it first comes. */
static int collect_blobs(const struct oci_archive_image *images, size_t n, struct blob_list *l,
                         struct cb_error *err)
{
  cleanup_free const struct blob **by_digest = NULL;
  cleanup_free bool *again = NULL;
  size_t out = 0;
  for (size_t i = 0; i < n; i++) {
    const struct oci_archive_image *im = &images[i];
    if (im->manifest == NULL || im->parsed == NULL)
      return cb_error_set(err, "image %zu: no manifest given", i + 1);
    for (size_t j = 0; j < im->parsed->n_layers; j++)
      if (blob_add(l, i, "layer", &im->parsed->layers[j], err) < 0)
        return -1;
    if (blob_add(l, i, "config", &im->parsed->config, err) < 0 ||
        blob_add(l, i, "manifest", im->manifest, err) < 0)
      return -1;
  }
  if (l->n == 0)
    return 0;
  by_digest = xcalloc(l->n, sizeof(*by_digest));
  again = xcalloc(l->n, sizeof(*again));
  for (size_t i = 0; i < l->n; i++)
    by_digest[i] = &l->v[i];
  qsort(by_digest, l->n, sizeof(*by_digest), blob_at_cmp);
  for (size_t i = 1; i < l->n; i++) {
    const struct blob *first = by_digest[i - 1], *b = by_digest[i];
    if (strcmp(first->digest, b->digest) != 0)
      continue;
    if (first->size != b->size)
      return cb_error_set(err, "blob %s is listed with sizes %lld and %lld", b->digest,
                          (long long)first->size, (long long)b->size);
    again[b - l->v] = true;
  }
  for (size_t i = 0; i < l->n; i++)
    if (!again[i])
      l->v[out++] = l->v[i];
  l->n = out;
  return 0;
}

/* The index.json of the images: their manifest descriptors, named. */
static void images_index(const struct oci_archive_image *images, size_t n, struct oci_index *x)
{
  x->manifests = xcalloc(n ? n : 1, sizeof(*x->manifests));
  x->n_manifests = n;
  for (size_t i = 0; i < n; i++) {
    struct oci_descriptor *d = &x->manifests[i];
    oci_descriptor_copy(d, images[i].manifest);
    if (d->media_type == NULL)
      d->media_type = xstrdup(OCI_MEDIA_TYPE_MANIFEST);
    if (images[i].ref_name)
      oci_descriptor_annotate(d, OCI_ANNOTATION_REF_NAME, images[i].ref_name);
    if (images[i].image_name)
      oci_descriptor_annotate(d, OCI_ANNOTATION_IMAGE_NAME, images[i].image_name);
  }
}

/* ---- reading blobs from the source ---- */

/* Where copied bytes go: a tar entry or a file. */
typedef int (*blob_sink)(void *ctx, const void *buf, size_t n, struct cb_error *err);

/* The source's checked part, when the writers may check its blobs themselves. */
static const struct oci_checked_source *checked_part(const struct oci_blob_source *src)
{
  return src->open == oci_checked_source_open ? src->data : NULL;
}

/*
 * Open blob b from the source, unchecked when the source allows it (the
 * copy below checks it), and check its size against the descriptor's.
 */
static int open_blob(const struct oci_blob_source *src, const struct blob *b,
                     struct cb_error *err)
{
  const struct oci_checked_source *cs = checked_part(src);
  int64_t size = -1;
  int fd = cs ? cs->open_unchecked(cs->data, b->digest, &size, err)
              : src->open(src->data, b->digest, &size, err);
  if (fd < 0)
    return cb_error_wrap(err, "blob %s", b->digest);
  if (size != b->size) {
    close(fd);
    return cb_error_set(err, "blob %s: size is %lld, expected %lld", b->digest, (long long)size,
                        (long long)b->size);
  }
  return fd;
}

/* A blob that hashed to got: the source's verdict on a mismatch when it has one. */
static int check_digest(const struct oci_checked_source *cs, const char *digest, int fd,
                        const char *got, struct cb_error *err)
{
  if (strcmp(got, digest) == 0)
    return 0;
  if (cs && cs->corrupt)
    return cs->corrupt(cs->data, digest, fd, got, err);
  return cb_error_set(err, "blob %s: its content hashes to %s", digest, got);
}

int oci_checked_source_open(void *checked_source, const char *digest, int64_t *size,
                            struct cb_error *err)
{
  const struct oci_checked_source *cs = checked_source;
  char got[OCI_DIGEST_SIZE];
  int fd = cs->open_unchecked(cs->data, digest, size, err);
  if (fd < 0)
    return -1;
  if (oci_digest_fd(fd, got, size, err) < 0) {
    close(fd);
    return cb_error_wrap(err, "read blob %s", digest);
  }
  if (check_digest(cs, digest, fd, got, err) < 0) {
    close(fd);
    return -1;
  }
  if (lseek(fd, 0, SEEK_SET) < 0) {
    int e = errno;
    close(fd);
    return cb_error_errno(err, e, "read blob %s", digest);
  }
  return fd;
}

/*
 * Copy blob b from fd (from open_blob) into sink: exactly b->size bytes,
 * hashed on the way, in one pass.  A blob that ends early or goes on past
 * its size is an error (it changed under us, or the store is damaged), and
 * so is one that does not hash to its digest.  The last piece is held back
 * until the digest is checked, so a bad blob never reaches the sink whole.
 * A blob the source has verified already (a layer this build just stored)
 * is only copied.
 */
static int copy_blob(const struct oci_blob_source *src, const struct blob *b, int fd,
                     blob_sink sink, void *ctx, struct cb_error *err)
{
  cleanup_free unsigned char *buf = b->size > 0 ? xmalloc(COPY_BUFFER) : NULL;
  const struct oci_checked_source *cs = checked_part(src);
  bool known = cs && cs->verified && cs->verified(cs->data, b->digest, fd);
  struct oci_hasher *h = known ? NULL : oci_hasher_new();
  char got[OCI_DIGEST_SIZE];
  size_t held = 0;
  int64_t left;
  ssize_t r = 0;
  char extra;
  int rc = -1;

  for (left = b->size; left > 0; left -= r) {
    size_t want = left < (int64_t)COPY_BUFFER ? (size_t)left : COPY_BUFFER;
    r = cb_read_retry(fd, buf, want);
    if (r < 0) {
      cb_error_errno(err, errno, "read blob %s", b->digest);
      goto out;
    }
    if (r == 0) {
      cb_error_set(err, "blob %s: ends after %lld of its %lld bytes", b->digest,
                   (long long)(b->size - left), (long long)b->size);
      goto out;
    }
    if (h)
      oci_hasher_update(h, buf, (size_t)r);
    if (r == left && h)
      held = (size_t)r;
    else if (sink(ctx, buf, (size_t)r, err) < 0)
      goto out;
  }
  r = cb_read_retry(fd, &extra, 1);
  if (r < 0) {
    cb_error_errno(err, errno, "read blob %s", b->digest);
    goto out;
  }
  if (r > 0) {
    cb_error_set(err, "blob %s: longer than its %lld bytes", b->digest, (long long)b->size);
    goto out;
  }
  if (h) {
    oci_hasher_final(h, got);
    if (check_digest(cs, b->digest, fd, got, err) < 0)
      goto out;
  }
  /* the held-back last piece, now known good */
  if (held > 0 && sink(ctx, buf, held, err) < 0)
    goto out;
  rc = 0;
out:
  oci_hasher_free(h);
  return rc;
}

/* ---- tars ---- */

static void archive_write_freep(struct archive **a)
{
  if (*a)
    archive_write_free(*a);
}
#define cleanup_archive_write __attribute__((cleanup(archive_write_freep)))

static void archive_entry_freep(struct archive_entry **e)
{
  if (*e)
    archive_entry_free(*e);
}
#define cleanup_archive_entry __attribute__((cleanup(archive_entry_freep)))

/*
 * Where the tar goes: fd, written by our own callback rather than
 * archive_write_open_fd(), for three reasons.  The output is the same bytes
 * whatever fd is (archive_write_open_fd pads the last block only for
 * terminals and devices).  After a failure `discard` drops what libarchive
 * still writes when it is freed: closing would pad a cut blob with zeros
 * and end the tar, making a broken archive look whole.  And a blob already
 * in place in a regular file (`at` counts where the tar is) is skipped
 * over: libarchive, given none of its data, writes zeros for it when the
 * entry ends, and the first `skip` bytes of those are not written.
 */
struct tar_out {
  int fd;
  bool discard;
  bool seekable; /* written with pwrite() at `at` */
  int64_t at;
  int64_t skip;
};

static la_ssize_t tar_out_write(struct archive *a, void *data, const void *buf, size_t n)
{
  struct tar_out *o = data;
  const char *p = buf;
  size_t left = n;
  if (o->discard)
    return (la_ssize_t)n;
  if (o->skip > 0) {
    size_t k = (int64_t)left < o->skip ? left : (size_t)o->skip;
    o->skip -= (int64_t)k;
    o->at += (int64_t)k;
    p += k;
    left -= k;
  }
  while (left > 0) {
    ssize_t w = o->seekable ? pwrite(o->fd, p, left, o->at) : write(o->fd, p, left);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0) {
      archive_set_error(a, errno, "%s", strerror(errno));
      return -1;
    }
    p += w;
    left -= (size_t)w;
    o->at += w;
  }
  return (la_ssize_t)n;
}

static int tar_fail(struct archive *a, const char *path, struct cb_error *err)
{
  int e = archive_errno(a);
  const char *msg = archive_error_string(a);
  if (path)
    return cb_error_set(err, "write \"%s\" to the archive: %s", path,
                        msg ? msg : (e > 0 ? strerror(e) : "unknown error"));
  return cb_error_set(err, "write the archive: %s",
                      msg ? msg : (e > 0 ? strerror(e) : "unknown error"));
}

/* Start an entry with the fixed attributes every entry gets. */
static int tar_header(struct archive *a, const char *path, bool dir, int64_t size,
                      struct cb_error *err)
{
  cleanup_archive_entry struct archive_entry *e = archive_entry_new();
  if (e == NULL)
    cb_die("out of memory");
  archive_entry_set_pathname(e, path);
  archive_entry_set_filetype(e, dir ? AE_IFDIR : AE_IFREG);
  archive_entry_set_perm(e, dir ? 0755 : 0644);
  archive_entry_set_size(e, dir ? 0 : size);
  archive_entry_set_uid(e, 0);
  archive_entry_set_gid(e, 0);
  archive_entry_set_mtime(e, 0, 0);
  if (archive_write_header(a, e) != ARCHIVE_OK)
    return tar_fail(a, path, err);
  return 0;
}

struct tar_sink {
  struct archive *a;
  const char *path;
};

static int tar_sink_write(void *ctx, const void *buf, size_t n, struct cb_error *err)
{
  struct tar_sink *t = ctx;
  la_ssize_t w = archive_write_data(t->a, buf, n);
  if (w < 0 || (size_t)w != n)
    return tar_fail(t->a, t->path, err);
  return 0;
}

static int tar_file(struct archive *a, const char *path, const char *data, struct cb_error *err)
{
  struct tar_sink t = { a, path };
  size_t n = strlen(data);
  if (tar_header(a, path, false, (int64_t)n, err) < 0)
    return -1;
  return tar_sink_write(&t, data, n, err);
}

/* Where placed has blob b's data, or -1. */
static int64_t placed_at(const struct oci_tar_placed *placed, size_t n_placed,
                         const struct blob *b)
{
  for (size_t i = 0; i < n_placed; i++)
    if (strcmp(placed[i].digest, b->digest) == 0 && placed[i].size == b->size)
      return placed[i].data_at;
  return -1;
}

static int tar_blob(struct archive *a, struct tar_out *out, const struct blob *b,
                    const struct oci_blob_source *src, const struct oci_tar_placed *placed,
                    size_t n_placed, struct cb_error *err)
{
  cleanup_free char *path = xasprintf(BLOBS_DIR "%s", digest_hex(b->digest));
  struct tar_sink t = { a, path };
  int64_t at = out->seekable && b->size > 0 ? placed_at(placed, n_placed, b) : -1;
  cleanup_close int fd = -1;
  if (at < 0) {
    fd = open_blob(src, b, err);
    if (fd < 0)
      return -1;
    /* An empty blob's entry is whole with its header: check it first. */
    if (b->size == 0)
      return copy_blob(src, b, fd, tar_sink_write, &t, err) < 0
               ? -1
               : tar_header(a, path, false, 0, err);
  }
  if (tar_header(a, path, false, b->size, err) < 0)
    return -1;
  /* in place already: skipped over as libarchive ends the entry */
  if (at >= 0 && out->at == at) {
    out->skip = b->size;
    return 0;
  }
  /* (placed elsewhere, after a header of another size: copied after all) */
  if (fd < 0 && (fd = open_blob(src, b, err)) < 0)
    return -1;
  return copy_blob(src, b, fd, tar_sink_write, &t, err);
}

static json_t *jcheck(json_t *j)
{
  if (j == NULL)
    cb_die("out of memory");
  return j;
}

static json_t *blob_path_json(const char *digest)
{
  cleanup_free char *p = xasprintf(BLOBS_DIR "%s", digest_hex(digest));
  return jcheck(json_string(p));
}

/*
 * The manifest.json of a docker archive: for each image its config and
 * layers as paths in the archive, and its tags (already checked to be
 * references, so ASCII).
 */
static char *docker_manifest_json(const struct oci_archive_image *images, size_t n)
{
  json_auto_t *root = jcheck(json_array());
  char *s;
  for (size_t i = 0; i < n; i++) {
    const struct oci_manifest *m = images[i].parsed;
    const struct strvec *tags = images[i].repo_tags;
    json_t *item = jcheck(json_object());
    json_t *tags_json = jcheck(json_array()), *layers = jcheck(json_array());
    json_array_append_new(root, item);
    json_object_set_new(item, "Config", blob_path_json(m->config.digest));
    json_object_set_new(item, "RepoTags", tags_json);
    json_object_set_new(item, "Layers", layers);
    for (size_t j = 0; tags && j < tags->n; j++)
      json_array_append_new(tags_json, jcheck(json_string(tags->v[j])));
    for (size_t j = 0; j < m->n_layers; j++)
      json_array_append_new(layers, blob_path_json(m->layers[j].digest));
  }
  s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
  if (s == NULL)
    cb_die("out of memory");
  return s;
}

int64_t oci_tar_span(int64_t size)
{
  return OCI_TAR_BLOCK + (size + OCI_TAR_BLOCK - 1) / OCI_TAR_BLOCK * OCI_TAR_BLOCK;
}

int64_t oci_tar_head_size(void)
{
  return oci_tar_span((int64_t)strlen(LAYOUT_CONTENT)) + 2 * oci_tar_span(0);
}

/* Every entry, in the order of the comment at the top: the head (as long
 * as oci_tar_head_size() says), the blobs, then the index files. */
static int write_entries(struct archive *a, struct tar_out *out, const struct blob_list *blobs,
                         const char *index_json, const char *manifest_json,
                         const struct oci_blob_source *src, const struct oci_tar_placed *placed,
                         size_t n_placed, struct cb_error *err)
{
  if (tar_file(a, LAYOUT_FILE, LAYOUT_CONTENT, err) < 0 ||
      tar_header(a, "blobs/", true, 0, err) < 0 || tar_header(a, BLOBS_DIR, true, 0, err) < 0)
    return -1;
  for (size_t i = 0; i < blobs->n; i++)
    if (tar_blob(a, out, &blobs->v[i], src, placed, n_placed, err) < 0)
      return -1;
  if (tar_file(a, INDEX_FILE, index_json, err) < 0)
    return -1;
  return manifest_json ? tar_file(a, DOCKER_MANIFEST_FILE, manifest_json, err) : 0;
}

static int write_tar(struct tar_out *out, const struct oci_archive_image *images, size_t n,
                     const struct oci_blob_source *src, bool docker,
                     const struct oci_tar_placed *placed, size_t n_placed, struct cb_error *err)
{
  /* out outlives a, which points at it */
  cleanup_blob_list struct blob_list blobs = { NULL, 0, 0 };
  cleanup_archive_write struct archive *a = NULL;
  struct oci_index x = { NULL, 0 };
  cleanup_free char *index_json = NULL;
  cleanup_free char *manifest_json = NULL;

  for (size_t i = 0; docker && i < n; i++)
    for (size_t j = 0; images[i].repo_tags && j < images[i].repo_tags->n; j++)
      if (!oci_reference_valid(images[i].repo_tags->v[j]))
        return cb_error_set(err, "invalid repository tag \"%.200s\"", images[i].repo_tags->v[j]);
  if (collect_blobs(images, n, &blobs, err) < 0)
    return -1;
  images_index(images, n, &x);
  index_json = oci_index_json(&x);
  oci_index_release(&x);
  if (docker)
    manifest_json = docker_manifest_json(images, n);

  if ((a = archive_write_new()) == NULL)
    cb_die("out of memory");
  /*
   * Unblocked: libarchive hands every piece straight to tar_out_write, so a
   * blob goes out in COPY_BUFFER writes rather than 10 KiB records.  The
   * bytes are the same as with records and an unpadded last one.
   */
  if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
      archive_write_add_filter_none(a) != ARCHIVE_OK ||
      archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK ||
      archive_write_open2(a, out, NULL, tar_out_write, NULL, NULL) != ARCHIVE_OK)
    return tar_fail(a, NULL, err);
  if (write_entries(a, out, &blobs, index_json, manifest_json, src, placed, n_placed, err) < 0) {
    out->discard = true;
    /* libarchive 3.6 frees its output state on close only, even after a
     * fatal error (a failed write); what close still writes is dropped. */
    archive_write_close(a);
    return -1;
  }
  if (archive_write_close(a) != ARCHIVE_OK)
    return tar_fail(a, NULL, err);
  return 0;
}

int oci_tar_write_placed(int fd, bool docker, const struct oci_archive_image *images, size_t n,
                         const struct oci_blob_source *src, const struct oci_tar_placed *placed,
                         size_t n_placed, struct cb_error *err)
{
  struct tar_out out = { fd, false, true, 0, 0 };
  if (write_tar(&out, images, n, src, docker, placed, n_placed, err) < 0)
    return -1;
  if (ftruncate(fd, out.at) < 0)
    return cb_error_errno(err, errno, "write the archive");
  return 0;
}

int oci_layout_write_tar(int fd, const struct oci_archive_image *images, size_t n,
                         const struct oci_blob_source *src, struct cb_error *err)
{
  struct tar_out out = { fd, false, false, 0, 0 };
  return write_tar(&out, images, n, src, false, NULL, 0, err);
}

int oci_docker_archive_write(int fd, const struct oci_archive_image *images, size_t n,
                             const struct oci_blob_source *src, struct cb_error *err)
{
  struct tar_out out = { fd, false, false, 0, 0 };
  return write_tar(&out, images, n, src, true, NULL, 0, err);
}

/* ---- directories ---- */

struct file_sink {
  int fd;
  const char *what;
};

static int file_sink_write(void *ctx, const void *buf, size_t n, struct cb_error *err)
{
  struct file_sink *f = ctx;
  if (cb_write_all(f->fd, buf, n) < 0)
    return cb_error_errno(err, errno, "write \"%s\"", f->what);
  return 0;
}

/* Open a directory beneath dirfd, creating it when missing. */
static int open_subdir(int dirfd, const char *dir, const char *name, struct cb_error *err)
{
  int fd;
  if (mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
    return cb_error_errno(err, errno, "create \"%s/%s\"", dir, name);
  fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return cb_error_errno(err, errno, "open \"%s/%s\"", dir, name);
  return fd;
}

/*
 * Write name in dirfd atomically: a temporary file beside it, filled by
 * fill(), then renamed over it.  Readers see the old file or the whole new
 * one, never a part; a failure leaves nothing behind.
 */
typedef int (*file_filler)(int fd, const char *what, void *ctx, struct cb_error *err);

static int replace_file(int dirfd, const char *dir, const char *name, file_filler fill,
                        void *ctx, struct cb_error *err)
{
  static unsigned counter;
  cleanup_free char *what = xasprintf("%s/%s", dir, name);
  cleanup_free char *tmp = NULL;
  cleanup_close int fd = -1;
  for (int tries = 0; fd < 0; tries++) {
    free(tmp);
    tmp = xasprintf(".%s.%ld.%u.tmp", name, (long)getpid(),
                    __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 && (errno != EEXIST || tries > 100))
      return cb_error_errno(err, errno, "create a temporary file in \"%s\"", dir);
  }
  if (fill(fd, what, ctx, err) < 0)
    goto fail;
  if (close(fd) < 0) {
    fd = -1;
    cb_error_errno(err, errno, "write \"%s\"", what);
    goto fail;
  }
  fd = -1;
  if (renameat(dirfd, tmp, dirfd, name) < 0) {
    cb_error_errno(err, errno, "rename into \"%s\"", what);
    goto fail;
  }
  return 0;
fail:
  unlinkat(dirfd, tmp, 0);
  return -1;
}

static int fill_string(int fd, const char *what, void *ctx, struct cb_error *err)
{
  const char *s = ctx;
  if (cb_write_all(fd, s, strlen(s)) < 0)
    return cb_error_errno(err, errno, "write \"%s\"", what);
  return 0;
}

struct blob_fill {
  const struct oci_blob_source *src;
  const struct blob *b;
};

static int fill_blob(int fd, const char *what, void *ctx, struct cb_error *err)
{
  struct blob_fill *f = ctx;
  struct file_sink s = { fd, what };
  cleanup_close int bfd = open_blob(f->src, f->b, err);
  if (bfd < 0)
    return -1;
  return copy_blob(f->src, f->b, bfd, file_sink_write, &s, err);
}

/* Read dir's index.json into x; a missing one is empty. */
static int read_index(int dirfd, const char *dir, struct oci_index *x, struct cb_error *err)
{
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  cleanup_fclose FILE *f = NULL;
  cleanup_free char *what = xasprintf("%s/" INDEX_FILE, dir);
  int fd = openat(dirfd, INDEX_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  memset(x, 0, sizeof(*x));
  if (fd < 0 && errno == ENOENT)
    return 0;
  if (fd < 0)
    return cb_error_errno(err, errno, "open \"%s\"", what);
  if ((f = fdopen(fd, "r")) == NULL) {
    int e = errno;
    close(fd);
    return cb_error_errno(err, e, "open \"%s\"", what);
  }
  if (cb_read_stream(f, what, &sb, err) < 0)
    return -1;
  if (oci_index_parse(sb.buf, sb.len, x, err) < 0)
    return cb_error_wrap(err, "read \"%s\"", what);
  return 0;
}

/*
 * Add d to x, replacing what it stands for: a descriptor with the same
 * ref name or, when d has none, an unnamed one of the same manifest.
 */
static void index_merge(struct oci_index *x, const struct oci_descriptor *d)
{
  const char *ref = oci_descriptor_annotation(d, OCI_ANNOTATION_REF_NAME);
  size_t out = 0;
  for (size_t i = 0; i < x->n_manifests; i++) {
    struct oci_descriptor *e = &x->manifests[i];
    const char *eref = oci_descriptor_annotation(e, OCI_ANNOTATION_REF_NAME);
    bool same = ref ? eref && strcmp(ref, eref) == 0
                    : !eref && e->digest && strcmp(e->digest, d->digest) == 0;
    if (same)
      oci_descriptor_release(e);
    else
      x->manifests[out++] = *e;
  }
  x->n_manifests = out;
  x->manifests = xreallocarray(x->manifests, st_add(out, 1), sizeof(*x->manifests));
  oci_descriptor_copy(&x->manifests[x->n_manifests++], d);
}

static int write_dir(int dfd, const char *dir, const struct oci_archive_image *images, size_t n,
                     const struct oci_blob_source *src, const struct blob_list *blobs,
                     struct cb_error *err)
{
  cleanup_close int bfd = -1, sfd = -1;
  cleanup_free char *blobs_dir = xasprintf("%s/blobs", dir);
  cleanup_free char *sha_dir = xasprintf("%s/blobs/sha256", dir);
  cleanup_free char *index_json = NULL;
  struct oci_index old, add;
  int r;

  if ((bfd = open_subdir(dfd, dir, "blobs", err)) < 0)
    return -1;
  if ((sfd = open_subdir(bfd, blobs_dir, "sha256", err)) < 0)
    return -1;
  for (size_t i = 0; i < blobs->n; i++) {
    const struct blob *b = &blobs->v[i];
    struct blob_fill f = { src, b };
    struct stat st;
    /* a blob is named by its digest: one of the right size is the same */
    if (fstatat(sfd, digest_hex(b->digest), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(st.st_mode) && st.st_size == b->size)
      continue;
    if (replace_file(sfd, sha_dir, digest_hex(b->digest), fill_blob, &f, err) < 0)
      return -1;
  }

  /* the index last, so that it never names a blob that is not there */
  if (read_index(dfd, dir, &old, err) < 0)
    return -1;
  images_index(images, n, &add);
  for (size_t i = 0; i < add.n_manifests; i++)
    index_merge(&old, &add.manifests[i]);
  oci_index_release(&add);
  index_json = oci_index_json(&old);
  oci_index_release(&old);
  r = replace_file(dfd, dir, INDEX_FILE, fill_string, index_json, err);
  if (r == 0)
    r = replace_file(dfd, dir, LAYOUT_FILE, fill_string, (void *)LAYOUT_CONTENT, err);
  return r;
}

int oci_layout_write_dir(const char *dir, const struct oci_archive_image *images, size_t n,
                         const struct oci_blob_source *src, struct cb_error *err)
{
  cleanup_blob_list struct blob_list blobs = { NULL, 0, 0 };
  cleanup_close int dfd = -1;
  if (collect_blobs(images, n, &blobs, err) < 0)
    return -1;
  if (mkdir(dir, 0755) < 0 && errno != EEXIST)
    return cb_error_errno(err, errno, "create \"%s\"", dir);
  dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return cb_error_errno(err, errno, "open \"%s\"", dir);
  return write_dir(dfd, dir, images, n, src, &blobs, err);
}
