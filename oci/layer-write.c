/*
 * Writing layers: a deterministic PAX tar made by libarchive, compressed and
 * written to a file descriptor in one streaming pass, with both digests
 * computed on the way.
 *
 *   entries -> libarchive -> tar_write() -> diff_id hasher
 *                                         -> 1 MiB input block
 *                                         -> gzip workers | zstd | as is
 *                                         -> blob hasher -> fd
 *
 * With more than one CPU each hasher runs in a thread of its own (see
 * oci_hasher_new_threaded), so the loop that reads files and feeds the
 * compressor does not wait for SHA-256 twice over.
 *
 * The tar stream is cut into fixed blocks of LAYER_BLOCK_SIZE bytes, so what
 * the compressor sees does not depend on how entries arrived, and memory is
 * a fixed number of blocks whatever the layer's size.
 *
 * gzip: each block becomes one gzip member (RFC 1952 allows a stream of
 * members; gunzip, Go's compress/gzip and containerd read them all),
 * compressed by libdeflate in worker threads and written out in order.
 * Members do not share a dictionary, so the output is identical for any
 * number of threads; the cost is a restarted 32 KiB window once per MiB
 * and 18 bytes of header and trailer.
 *
 * zstd: one frame, compressed by zstd's own workers.  With nbWorkers >= 1
 * zstd cuts jobs by size, not by timing, so the frame does not depend on
 * the number of workers; nbWorkers is never 0 (single-threaded zstd writes
 * a different frame) so that every machine writes the same bytes.
 *
 * Directories are written as "dir/", as Go's archive/tar (Docker, BuildKit,
 * containerd) and GNU tar write them.  The tar is not padded to a 10 KiB
 * record: it ends after the two zero blocks, as Go's tars do.
 */
#include "oci-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <pthread.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <libdeflate.h>
#include <zstd.h>

/* Input per gzip member, and per write to the compressor. */
#define LAYER_BLOCK_SIZE ((size_t)1 << 20)
/* zstd's overlapLog: each job reloads 1/2^(9-N) of the window (4: 1/32). */
#define ZSTD_OVERLAP_LOG 4
/* How much of a file is read at once. */
#define LAYER_READ_SIZE ((size_t)256 << 10)
#define LAYER_MAX_THREADS 64
/* Writeback of the blob is started every this many bytes (see write_out). */
#define LAYER_WRITEBACK_SIZE ((int64_t)8 << 20)
#define GZIP_DEFAULT_LEVEL 6
#define GZIP_MAX_LEVEL 12 /* libdeflate goes beyond zlib's 9 */
#define GZIP_HEADER_SIZE 10
#define GZIP_TRAILER_SIZE 8

int oci_compression_parse(const char *s, enum oci_compression *c)
{
  if (strcmp(s, "gzip") == 0)
    *c = OCI_COMPRESSION_GZIP;
  else if (strcmp(s, "zstd") == 0)
    *c = OCI_COMPRESSION_ZSTD;
  else if (strcmp(s, "none") == 0)
    *c = OCI_COMPRESSION_NONE;
  else
    return -1;
  return 0;
}

const char *oci_compression_media_type(enum oci_compression c)
{
  switch (c) {
  case OCI_COMPRESSION_GZIP:
    return "application/vnd.oci.image.layer.v1.tar+gzip";
  case OCI_COMPRESSION_ZSTD:
    return "application/vnd.oci.image.layer.v1.tar+zstd";
  case OCI_COMPRESSION_NONE:
    break;
  }
  return "application/vnd.oci.image.layer.v1.tar";
}

/* ---- parallel gzip ---- */

struct gz_slot {
  unsigned char *in;
  size_t in_len;
  unsigned char *out;
  size_t out_len;
  bool done;
};

struct gz_pool {
  pthread_mutex_t mu;
  pthread_cond_t work; /* a job was submitted, or stop */
  pthread_cond_t done; /* a job was compressed */
  struct gz_slot *slots;
  size_t n_slots;
  size_t out_cap;
  /* Job j lives in slots[j % n_slots]; jobs are taken and written in order. */
  uint64_t submitted, taken, written;
  bool stop;
  int level;
  pthread_t *threads;
  int n_threads;
};

static void gz_put32(unsigned char *p, uint32_t v)
{
  p[0] = v & 0xff;
  p[1] = (v >> 8) & 0xff;
  p[2] = (v >> 16) & 0xff;
  p[3] = (v >> 24) & 0xff;
}

/* One gzip member: no name, MTIME 0, XFL 0, OS 255 (unknown). */
static void gz_compress_slot(struct libdeflate_compressor *c, struct gz_slot *s, size_t cap)
{
  static const unsigned char header[GZIP_HEADER_SIZE] = {
    0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff,
  };
  memcpy(s->out, header, sizeof(header));
  size_t n = libdeflate_deflate_compress(c, s->in, s->in_len, s->out + GZIP_HEADER_SIZE,
                                         cap - GZIP_HEADER_SIZE - GZIP_TRAILER_SIZE);
  /* The buffer has libdeflate's bound, so this cannot happen. */
  if (n == 0)
    cb_die("deflate: output larger than its bound");
  unsigned char *t = s->out + GZIP_HEADER_SIZE + n;
  gz_put32(t, libdeflate_crc32(0, s->in, s->in_len));
  gz_put32(t + 4, (uint32_t)s->in_len);
  s->out_len = GZIP_HEADER_SIZE + n + GZIP_TRAILER_SIZE;
}

static void *gz_worker(void *data)
{
  struct gz_pool *p = data;
  struct libdeflate_compressor *c = libdeflate_alloc_compressor(p->level);
  if (c == NULL)
    cb_die("out of memory");

  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && p->taken == p->submitted)
      pthread_cond_wait(&p->work, &p->mu);
    if (p->stop)
      break;
    struct gz_slot *s = &p->slots[p->taken % p->n_slots];
    p->taken++;
    pthread_mutex_unlock(&p->mu);

    gz_compress_slot(c, s, p->out_cap);

    pthread_mutex_lock(&p->mu);
    s->done = true;
    pthread_cond_broadcast(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  libdeflate_free_compressor(c);
  return NULL;
}

static void gz_pool_free(struct gz_pool *p)
{
  if (p == NULL)
    return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->n_threads; i++)
    pthread_join(p->threads[i], NULL);
  for (size_t i = 0; i < p->n_slots; i++) {
    free(p->slots[i].in);
    free(p->slots[i].out);
  }
  free(p->slots);
  free(p->threads);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->done);
  free(p);
}

static struct gz_pool *gz_pool_new(int threads, int level, struct cb_error *err)
{
  struct gz_pool *p = xcalloc(1, sizeof(*p));
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->done, NULL);
  p->level = level;
  /* Twice the workers: while they compress, as many blocks wait to be
   * written or filled. */
  p->n_slots = 2 * (size_t)threads + 1;
  p->out_cap = libdeflate_deflate_compress_bound(NULL, LAYER_BLOCK_SIZE) + GZIP_HEADER_SIZE +
               GZIP_TRAILER_SIZE;
  p->slots = xcalloc(p->n_slots, sizeof(*p->slots));
  for (size_t i = 0; i < p->n_slots; i++) {
    p->slots[i].in = xmalloc(LAYER_BLOCK_SIZE);
    p->slots[i].out = xmalloc(p->out_cap);
  }
  p->threads = xcalloc((size_t)threads, sizeof(*p->threads));
  for (int i = 0; i < threads; i++) {
    int e = pthread_create(&p->threads[i], NULL, gz_worker, p);
    if (e != 0) {
      cb_error_errno(err, e, "start gzip compression thread");
      gz_pool_free(p);
      return NULL;
    }
    p->n_threads++;
  }
  return p;
}

/* ---- the writer ---- */

struct oci_layer_writer {
  int fd;
  enum oci_compression compression;
  int64_t source_date_epoch;
  struct archive *archive;
  struct archive_entry *entry;
  locale_t locale;
  struct oci_hasher *diff_hasher;
  struct oci_hasher *blob_hasher;
  int64_t blob_size;
  char *prev_path;
  unsigned char *read_buf;
  struct strbuf name; /* the entry's name in the tar */
  int64_t fd_start;     /* fd's offset when the layer began; -1: not a file */
  int64_t writeback_at; /* blob bytes handed to writeback so far */
  struct oci_tar_stream *stream; /* copying the blob into an archive, or NULL */
  uint64_t stream_ticket;

  /* The block being filled: a gzip slot's buffer, or block_buf. */
  unsigned char *block;
  size_t block_len;
  unsigned char *block_buf;

  struct gz_pool *gz;
  ZSTD_CCtx *zstd;
  unsigned char *zstd_out;
  size_t zstd_out_size;

  /* An error below libarchive (compressing, writing), kept for the caller. */
  struct cb_error out_err;
  bool out_failed;
  /* Set once a call failed: the layer is incomplete and must be dropped. */
  bool broken;
  bool finished;
  /* Being freed: libarchive's implicit close must not reach the fd. */
  bool discard;
};

/*
 * Start writing the blob's new pages to disk in the background, a few MiB
 * at a time.  The store fsyncs the blob when it is committed; without this
 * the kernel would hold every page dirty until then (a layer is far below
 * the dirty limits), and the whole write would happen during that fsync
 * with nothing else to do.  Best effort: an error only means the fsync
 * does the work.
 */
static void start_writeback(struct oci_layer_writer *w)
{
  if (w->fd_start < 0 || w->blob_size - w->writeback_at < LAYER_WRITEBACK_SIZE)
    return;
  if (sync_file_range(w->fd, w->fd_start + w->writeback_at, w->blob_size - w->writeback_at,
                      SYNC_FILE_RANGE_WRITE) < 0)
    w->fd_start = -1;
  w->writeback_at = w->blob_size;
}

static int write_out(struct oci_layer_writer *w, const unsigned char *buf, size_t n)
{
  /* Uncompressed, the blob is the tar: its digest is the diff_id. */
  if (w->compression != OCI_COMPRESSION_NONE)
    oci_hasher_update(w->blob_hasher, buf, n);
  if (cb_write_all(w->fd, buf, n) < 0)
    return cb_error_errno(&w->out_err, errno, "write layer");
  w->blob_size += (int64_t)n;
  if (w->stream)
    oci_tar_stream_grow(w->stream, w->stream_ticket, w->blob_size);
  start_writeback(w);
  return 0;
}

/* Write out gzip job `written`, waiting for a worker to finish it. */
static int gz_write_next(struct oci_layer_writer *w)
{
  struct gz_pool *p = w->gz;
  struct gz_slot *s = &p->slots[p->written % p->n_slots];

  pthread_mutex_lock(&p->mu);
  while (!s->done)
    pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
  int r = write_out(w, s->out, s->out_len);
  s->done = false;
  p->written++;
  return r;
}

static int zstd_feed(struct oci_layer_writer *w, const void *buf, size_t n, ZSTD_EndDirective end)
{
  ZSTD_inBuffer in = { buf, n, 0 };
  for (;;) {
    ZSTD_outBuffer out = { w->zstd_out, w->zstd_out_size, 0 };
    size_t left = ZSTD_compressStream2(w->zstd, &out, &in, end);
    if (ZSTD_isError(left)) {
      cb_error_set(&w->out_err, "zstd: %s", ZSTD_getErrorName(left));
      return -1;
    }
    if (out.pos > 0 && write_out(w, w->zstd_out, out.pos) < 0)
      return -1;
    if (end == ZSTD_e_end ? left == 0 : in.pos == in.size)
      return 0;
  }
}

/* Hand the full (or, at the end, last) block to the compressor. */
static int flush_block(struct oci_layer_writer *w)
{
  int r = 0;

  switch (w->compression) {
  case OCI_COMPRESSION_NONE:
    r = write_out(w, w->block, w->block_len);
    break;
  case OCI_COMPRESSION_ZSTD:
    r = zstd_feed(w, w->block, w->block_len, ZSTD_e_continue);
    break;
  case OCI_COMPRESSION_GZIP: {
    struct gz_pool *p = w->gz;
    p->slots[p->submitted % p->n_slots].in_len = w->block_len;
    pthread_mutex_lock(&p->mu);
    p->submitted++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    /* The next slot is free once its previous job is written out. */
    while (r == 0 && p->submitted - p->written >= p->n_slots)
      r = gz_write_next(w);
    w->block = p->slots[p->submitted % p->n_slots].in;
    break;
  }
  }
  w->block_len = 0;
  if (r < 0)
    w->out_failed = true;
  return r;
}

/* libarchive's output: the uncompressed tar, in pieces of any size. */
static la_ssize_t tar_write(struct archive *a, void *data, const void *buf, size_t n)
{
  struct oci_layer_writer *w = data;
  const unsigned char *p = buf;
  size_t left = n;

  if (w->discard)
    return (la_ssize_t)n;
  if (w->out_failed)
    return -1;
  oci_hasher_update(w->diff_hasher, buf, n);
  while (left > 0) {
    size_t k = LAYER_BLOCK_SIZE - w->block_len;
    if (k > left)
      k = left;
    memcpy(w->block + w->block_len, p, k);
    w->block_len += k;
    p += k;
    left -= k;
    if (w->block_len == LAYER_BLOCK_SIZE && flush_block(w) < 0) {
      archive_set_error(a, w->out_err.code ? w->out_err.code : EIO, "%s", w->out_err.msg);
      return -1;
    }
  }
  return (la_ssize_t)n;
}

/*
 * libarchive converts names to UTF-8 for pax headers using the current
 * locale: in "C" a non-ASCII name gets "hdrcharset=BINARY", in a UTF-8
 * locale it does not.  Run libarchive in C.UTF-8 on this thread so the
 * bytes never depend on the caller's locale.
 */
static locale_t layer_locale(void)
{
  locale_t l = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
  if (l == (locale_t)0)
    l = newlocale(LC_ALL_MASK, "C", (locale_t)0);
  return l;
}

static int setup_compression(struct oci_layer_writer *w, const struct oci_layer_options *o,
                             int threads, struct cb_error *err)
{
  int level = o->level;

  switch (o->compression) {
  case OCI_COMPRESSION_NONE:
    break;
  case OCI_COMPRESSION_GZIP:
    if (level == 0)
      level = GZIP_DEFAULT_LEVEL;
    if (level < 1 || level > GZIP_MAX_LEVEL)
      return cb_error_set(err, "gzip compression level %d out of range (1-%d)", level,
                          GZIP_MAX_LEVEL);
    w->gz = gz_pool_new(threads, level, err);
    if (w->gz == NULL)
      return -1;
    w->block = w->gz->slots[0].in;
    return 0;
  case OCI_COMPRESSION_ZSTD: {
    if (level == 0)
      level = ZSTD_CLEVEL_DEFAULT;
    if (level < 1 || level > ZSTD_maxCLevel())
      return cb_error_set(err, "zstd compression level %d out of range (1-%d)", level,
                          ZSTD_maxCLevel());
    w->zstd = ZSTD_createCCtx();
    if (w->zstd == NULL)
      cb_die("out of memory");
    size_t r = ZSTD_CCtx_setParameter(w->zstd, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r))
      r = ZSTD_CCtx_setParameter(w->zstd, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r))
      r = ZSTD_CCtx_setParameter(w->zstd, ZSTD_c_nbWorkers, threads);
    /* zstd's default job is 4 windows (8 MiB at level 3), with buffers
     * for several jobs per worker: 120 MiB peak with two workers.  1 MiB
     * jobs peak near 26 MiB at the same ratio and speed.  The job size,
     * not the worker count, decides the frame, so it is fixed. */
    if (!ZSTD_isError(r))
      r = ZSTD_CCtx_setParameter(w->zstd, ZSTD_c_jobSize, (int)LAYER_BLOCK_SIZE);
    /* Each job first loads the end of the previous one: by default a
     * quarter to an eighth of the window, 256 KiB or more at level 3,
     * which for 1 MiB jobs is a quarter more work.  A 32nd of the window
     * (64 KiB) costs 0.2% in size and saves ~11% of zstd's time. */
    if (!ZSTD_isError(r))
      r = ZSTD_CCtx_setParameter(w->zstd, ZSTD_c_overlapLog, ZSTD_OVERLAP_LOG);
    if (ZSTD_isError(r))
      return cb_error_set(err, "zstd with %d threads: %s", threads, ZSTD_getErrorName(r));
    w->zstd_out_size = ZSTD_CStreamOutSize();
    w->zstd_out = xmalloc(w->zstd_out_size);
    break;
  }
  default:
    return cb_error_set(err, "unknown layer compression %d", (int)o->compression);
  }
  w->block_buf = xmalloc(LAYER_BLOCK_SIZE);
  w->block = w->block_buf;
  return 0;
}

struct oci_layer_writer *oci_layer_writer_new(int fd, const struct oci_layer_options *o,
                                              struct cb_error *err)
{
  struct oci_layer_writer *w = xcalloc(1, sizeof(*w));
  int threads = o->threads > 0 ? o->threads : cb_cpu_count();
  if (threads > LAYER_MAX_THREADS)
    threads = LAYER_MAX_THREADS;

  w->fd = fd;
  w->fd_start = lseek(fd, 0, SEEK_CUR);
  w->compression = o->compression;
  w->source_date_epoch = o->source_date_epoch;
  /* with CPUs to spare, both digests are computed beside the main loop */
  w->diff_hasher = threads > 1 ? oci_hasher_new_threaded() : oci_hasher_new();
  w->blob_hasher = threads > 1 && o->compression != OCI_COMPRESSION_NONE
                     ? oci_hasher_new_threaded()
                     : oci_hasher_new();
  w->read_buf = xmalloc(LAYER_READ_SIZE);
  strbuf_init(&w->name, 256);
  w->locale = layer_locale();
  if (w->locale == (locale_t)0) {
    cb_error_errno(err, errno, "create the C locale for layer headers");
    goto fail;
  }
  if (setup_compression(w, o, threads, err) < 0)
    goto fail;
  if (o->stream && w->fd_start >= 0) {
    w->stream_ticket = oci_tar_stream_begin(o->stream, fd, w->fd_start);
    w->stream = w->stream_ticket ? o->stream : NULL;
  }

  w->archive = archive_write_new();
  w->entry = archive_entry_new();
  if (w->archive == NULL || w->entry == NULL)
    cb_die("out of memory");
  locale_t old = uselocale(w->locale);
  int r = archive_write_set_format_pax_restricted(w->archive);
  /* No 10 KiB records: write each piece as it comes, end after the two
   * zero blocks. */
  if (r == ARCHIVE_OK)
    r = archive_write_set_bytes_per_block(w->archive, 0);
  if (r == ARCHIVE_OK)
    r = archive_write_open2(w->archive, w, NULL, tar_write, NULL, NULL);
  uselocale(old);
  if (r != ARCHIVE_OK) {
    cb_error_set(err, "start layer tar: %s", archive_error_string(w->archive));
    goto fail;
  }
  return w;

fail:
  oci_layer_writer_free(w);
  return NULL;
}

/* Relative, '/'-separated, no empty, "." or ".." component, no trailing '/'. */
static bool entry_path_valid(const char *path)
{
  const char *p = path;

  if (*p == '\0' || *p == '/')
    return false;
  while (*p != '\0') {
    const char *end = strchrnul(p, '/');
    size_t n = (size_t)(end - p);
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
      return false;
    if (*end == '/' && end[1] == '\0')
      return false;
    p = *end == '/' ? end + 1 : end;
  }
  return true;
}

static bool xattr_kept(const char *name)
{
  return strcmp(name, "security.capability") == 0 || cb_starts_with(name, "user.");
}

static int xattr_cmp(const void *a, const void *b)
{
  const struct oci_xattr *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

/* Kept xattrs are written sorted by name, whatever order listxattr gave. */
static void add_xattrs(struct archive_entry *ae, const struct oci_entry *e)
{
  if (e->n_xattrs == 0)
    return;
  cleanup_free const struct oci_xattr **kept = xcalloc(e->n_xattrs, sizeof(*kept));
  size_t n = 0;
  for (size_t i = 0; i < e->n_xattrs; i++)
    if (e->xattrs[i].name != NULL && xattr_kept(e->xattrs[i].name))
      kept[n++] = &e->xattrs[i];
  qsort(kept, n, sizeof(*kept), xattr_cmp);
  /* libarchive writes its xattr list from the last added to the first. */
  for (size_t i = n; i-- > 0;)
    archive_entry_xattr_add_entry(ae, kept[i]->name, kept[i]->value, kept[i]->size);
}

/* Check e and fill w->entry from it. */
static int prepare_entry(struct oci_layer_writer *w, const struct oci_entry *e,
                         struct cb_error *err)
{
  struct archive_entry *ae = w->entry;
  mode_t type = e->mode & S_IFMT;

  if (e->path == NULL || !entry_path_valid(e->path))
    return cb_error_set(err, "invalid path \"%s\" in layer: must be relative, without "
                        "\".\", \"..\", empty components or a trailing \"/\"",
                        e->path ? e->path : "(null)");
  if (w->prev_path != NULL) {
    int c = strcmp(w->prev_path, e->path);
    if (c == 0)
      return cb_error_set(err, "layer entry \"%s\" added twice", e->path);
    if (c > 0)
      return cb_error_set(err, "layer entry \"%s\" comes after \"%s\": entries must be sorted "
                          "by path", e->path, w->prev_path);
  }
  if (e->hardlink != NULL) {
    if (!entry_path_valid(e->hardlink))
      return cb_error_set(err, "hardlink \"%s\" to invalid path \"%s\"", e->path,
                          e->hardlink);
    if (strcmp(e->hardlink, e->path) >= 0)
      return cb_error_set(err, "hardlink \"%s\" to \"%s\": the target must come earlier in "
                          "the layer", e->path, e->hardlink);
  } else {
    switch (type) {
    case S_IFREG:
      if (e->size < 0)
        return cb_error_set(err, "file \"%s\" has negative size %lld", e->path,
                            (long long)e->size);
      break;
    case S_IFLNK:
      if (e->symlink == NULL || e->symlink[0] == '\0')
        return cb_error_set(err, "symlink \"%s\" has no target", e->path);
      break;
    case S_IFDIR:
    case S_IFCHR:
    case S_IFBLK:
    case S_IFIFO:
      break;
    case S_IFSOCK:
      return cb_error_set(err, "socket \"%s\" cannot be stored in a layer", e->path);
    default:
      return cb_error_set(err, "\"%s\" has unknown file type 0%o", e->path,
                          (unsigned)type);
    }
  }

  strbuf_reset(&w->name);
  strbuf_addstr(&w->name, e->path);
  if (type == S_IFDIR && e->hardlink == NULL)
    strbuf_addch(&w->name, '/');

  /* Only what is set here goes in the header: no uname, gname, atime,
   * ctime or birthtime. */
  archive_entry_clear(ae);
  archive_entry_set_pathname(ae, w->name.buf);
  archive_entry_set_mode(ae, e->mode);
  archive_entry_set_uid(ae, e->uid);
  archive_entry_set_gid(ae, e->gid);
  int64_t mtime = e->mtime;
  if (w->source_date_epoch >= 0 && mtime > w->source_date_epoch)
    mtime = w->source_date_epoch;
  archive_entry_set_mtime(ae, (time_t)mtime, 0);
  if (e->hardlink != NULL) {
    archive_entry_set_hardlink(ae, e->hardlink);
    archive_entry_set_size(ae, 0);
  } else if (type == S_IFREG) {
    archive_entry_set_size(ae, e->size);
  } else {
    archive_entry_set_size(ae, 0);
  }
  if (type == S_IFLNK && e->hardlink == NULL)
    archive_entry_set_symlink(ae, e->symlink);
  if (type == S_IFCHR || type == S_IFBLK)
    archive_entry_set_rdev(ae, e->rdev);
  add_xattrs(ae, e);
  return 0;
}

/* Why libarchive failed: our output's error when it was that. */
static int archive_fail(struct oci_layer_writer *w, struct cb_error *err, const char *what,
                        const char *path)
{
  if (w->out_failed) {
    *err = w->out_err;
    return cb_error_wrap(err, "%s \"%s\"", what, path);
  }
  return cb_error_set(err, "%s \"%s\": %s", what, path, archive_error_string(w->archive));
}

static int write_header(struct oci_layer_writer *w, const struct oci_entry *e,
                        struct cb_error *err)
{
  if (w->finished)
    return cb_error_set(err, "add \"%s\": the layer is already finished", e->path);
  if (w->broken)
    return cb_error_set(err, "add \"%s\": the layer failed earlier", e->path);
  if (prepare_entry(w, e, err) < 0)
    return -1;
  locale_t old = uselocale(w->locale);
  int r = archive_write_header(w->archive, w->entry);
  uselocale(old);
  /* ARCHIVE_WARN: a name that is not UTF-8 went in as binary. */
  if (r < ARCHIVE_WARN) {
    w->broken = true;
    return archive_fail(w, err, "write tar header for", e->path);
  }
  free(w->prev_path);
  w->prev_path = xstrdup(e->path);
  return 0;
}

static bool entry_has_data(const struct oci_entry *e)
{
  return e->hardlink == NULL && (e->mode & S_IFMT) == S_IFREG && e->size > 0;
}

static int write_data(struct oci_layer_writer *w, const char *path, const void *buf, size_t n,
                      struct cb_error *err)
{
  la_ssize_t r = archive_write_data(w->archive, buf, n);
  if (r < 0 || (size_t)r != n) {
    w->broken = true;
    return archive_fail(w, err, "write content of", path);
  }
  return 0;
}

int oci_layer_writer_add(struct oci_layer_writer *w, const struct oci_entry *e, int content_fd,
                         struct cb_error *err)
{
  return oci_layer_writer_add_hashed(w, e, content_fd, NULL, err);
}

int oci_layer_writer_add_hashed(struct oci_layer_writer *w, const struct oci_entry *e,
                                int content_fd, struct oci_hasher *content,
                                struct cb_error *err)
{
  if (write_header(w, e, err) < 0)
    return -1;
  if (e->hardlink != NULL || (e->mode & S_IFMT) != S_IFREG)
    return 0;
  if (content_fd < 0) {
    if (e->size == 0)
      return 0;
    w->broken = true;
    return cb_error_set(err, "add \"%s\": no content given for %lld bytes", e->path,
                        (long long)e->size);
  }

  int64_t left = e->size;
  while (left > 0) {
    size_t want = left < (int64_t)LAYER_READ_SIZE ? (size_t)left : LAYER_READ_SIZE;
    ssize_t n = cb_read_retry(content_fd, w->read_buf, want);
    if (n < 0) {
      w->broken = true;
      return cb_error_errno(err, errno, "read \"%s\"", e->path);
    }
    if (n == 0) {
      w->broken = true;
      return cb_error_set(err, "read \"%s\": file shrank while being read (%lld of %lld bytes)",
                          e->path, (long long)(e->size - left), (long long)e->size);
    }
    if (content != NULL)
      oci_hasher_update(content, w->read_buf, (size_t)n);
    if (write_data(w, e->path, w->read_buf, (size_t)n, err) < 0)
      return -1;
    left -= n;
  }
  /* The header said e->size: a file that grew since would not fit. */
  unsigned char extra;
  ssize_t n = cb_read_retry(content_fd, &extra, 1);
  if (n != 0) {
    w->broken = true;
    if (n < 0)
      return cb_error_errno(err, errno, "read \"%s\"", e->path);
    return cb_error_set(err, "read \"%s\": file grew while being read (more than %lld bytes)",
                        e->path, (long long)e->size);
  }
  return 0;
}

int oci_layer_writer_add_data(struct oci_layer_writer *w, const struct oci_entry *e,
                              const void *data, struct cb_error *err)
{
  if (write_header(w, e, err) < 0)
    return -1;
  if (!entry_has_data(e))
    return 0;
  if (data == NULL) {
    w->broken = true;
    return cb_error_set(err, "add \"%s\": no content given for %lld bytes", e->path,
                        (long long)e->size);
  }
  return write_data(w, e->path, data, (size_t)e->size, err);
}

int oci_layer_writer_finish(struct oci_layer_writer *w, struct oci_layer_info *info,
                            struct cb_error *err)
{
  if (w->finished)
    return cb_error_set(err, "finish layer: already finished");
  if (w->broken)
    return cb_error_set(err, "finish layer: an entry failed earlier");
  w->finished = true;

  locale_t old = uselocale(w->locale);
  int r = archive_write_close(w->archive);
  uselocale(old);
  if (r != ARCHIVE_OK) {
    w->broken = true;
    if (w->out_failed) {
      *err = w->out_err;
      return cb_error_wrap(err, "finish layer");
    }
    return cb_error_set(err, "finish layer tar: %s", archive_error_string(w->archive));
  }

  r = 0;
  if (w->block_len > 0)
    r = flush_block(w);
  if (r == 0 && w->gz != NULL) {
    while (r == 0 && w->gz->written < w->gz->submitted)
      r = gz_write_next(w);
  }
  if (r == 0 && w->zstd != NULL && zstd_feed(w, NULL, 0, ZSTD_e_end) < 0)
    r = -1;
  if (r < 0) {
    w->broken = true;
    *err = w->out_err;
    return cb_error_wrap(err, "finish layer");
  }

  oci_hasher_final(w->diff_hasher, info->diff_id);
  if (w->compression == OCI_COMPRESSION_NONE)
    memcpy(info->digest, info->diff_id, OCI_DIGEST_SIZE);
  else
    oci_hasher_final(w->blob_hasher, info->digest);
  info->size = w->blob_size;
  info->media_type = oci_compression_media_type(w->compression);
  return 0;
}

void oci_layer_writer_free(struct oci_layer_writer *w)
{
  if (w == NULL)
    return;
  w->discard = true;
  /* libarchive 3.6 frees its output state on close only, even after a
   * fatal error (a failed write); what close still writes is dropped. */
  if (w->archive != NULL) {
    archive_write_close(w->archive);
    archive_write_free(w->archive);
  }
  if (w->entry != NULL)
    archive_entry_free(w->entry);
  gz_pool_free(w->gz);
  ZSTD_freeCCtx(w->zstd);
  free(w->zstd_out);
  free(w->block_buf);
  if (w->locale != (locale_t)0)
    freelocale(w->locale);
  oci_hasher_free(w->diff_hasher);
  oci_hasher_free(w->blob_hasher);
  free(w->prev_path);
  free(w->read_buf);
  strbuf_release(&w->name);
  free(w);
}
