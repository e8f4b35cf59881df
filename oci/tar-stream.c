/*
 * An archive output written while its image is built (see oci.h).
 *
 * A layout tar or docker archive holds a fixed head, then the image's
 * layers in order (layout.c), so where a layer's bytes go in the file
 * depends only on the sizes of the layers before it.  The stream keeps that
 * list.  A layer being written is copied into its place by a thread of the
 * stream, from the blob file the layer writer fills, each piece as soon as
 * the writer has written it: in the kernel (copy_file_range) from pages
 * still in the cache, on a CPU the compressor leaves idle at times.  Done
 * at the end instead, the copy of a large layer is the longest thing the
 * export does, alone on one CPU.
 *
 * The export (oci_tar_stream_write) then writes the archive as always, over
 * the same file, except that a blob found complete at the very offset where
 * its data goes is skipped over rather than copied.  Anything else (a
 * layer given up, an image whose layers are not the ones streamed, a
 * header of another size) is simply written again.
 */
#include "oci-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

/* A follower copies at most this much per call, to notice a stop. */
#define FOLLOW_CHUNK ((int64_t)8 << 20)

struct stream_entry {
  char digest[OCI_DIGEST_SIZE];
  int64_t size;
  int64_t data_at; /* where its data starts in the archive */
  bool placed;     /* its bytes are there, all of them */
};

struct oci_tar_stream {
  int fd;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct stream_entry *v;
  size_t n, alloc;
  int64_t end; /* where the next layer's header goes */
  /* Set once the builder's layers left the list: nothing more is taken. */
  bool diverged;

  /* The layer being written, if any, and the thread copying it (running
   * while pending). */
  bool pending;
  uint64_t ticket; /* counts begins; a writer's grows name its own */
  int src_fd;
  int64_t src_at;  /* where the blob starts in src_fd */
  int64_t dest_at; /* where its data goes in the archive */
  int64_t grown;  /* bytes of the blob written so far */
  int64_t copied; /* of which in place */
  bool ended;     /* grown is the blob's final size */
  bool stop;
  bool failed;
  pthread_t follower;
};

struct oci_tar_stream *oci_tar_stream_new(int fd)
{
  struct oci_tar_stream *s = xcalloc(1, sizeof(*s));
  s->fd = fd;
  s->src_fd = -1;
  s->end = oci_tar_head_size();
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  return s;
}

/* copy_file_range's stand-in where it cannot copy between these files. */
static ssize_t copy_by_hand(int in_fd, loff_t in, int out_fd, loff_t out, size_t n)
{
  unsigned char buf[64 * 1024];
  size_t done = 0;
  while (done < n) {
    size_t want = n - done < sizeof(buf) ? n - done : sizeof(buf);
    ssize_t r = pread(in_fd, buf, want, in + (loff_t)done);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    for (ssize_t w = 0; w < r;) {
      ssize_t k = pwrite(out_fd, buf + w, (size_t)(r - w), out + (loff_t)done + w);
      if (k < 0 && errno == EINTR)
        continue;
      if (k <= 0)
        return -1;
      w += k;
    }
    done += (size_t)r;
  }
  return done > 0 ? (ssize_t)done : -1;
}

/* Copy what was written of the pending blob into place until it ends, is
 * given up, or a copy fails. */
static void *follow(void *data)
{
  struct oci_tar_stream *s = data;
  bool by_hand = false;
  pthread_mutex_lock(&s->mu);
  while (!s->stop && !s->failed && !(s->ended && s->copied == s->grown)) {
    if (s->copied == s->grown) {
      pthread_cond_wait(&s->cv, &s->mu);
      continue;
    }
    size_t want = (size_t)(s->grown - s->copied < FOLLOW_CHUNK ? s->grown - s->copied
                                                               : FOLLOW_CHUNK);
    loff_t in = s->src_at + s->copied, out = s->dest_at + s->copied;
    ssize_t r = -1;
    pthread_mutex_unlock(&s->mu);
    if (!by_hand) {
      r = copy_file_range(s->src_fd, &in, s->fd, &out, want, 0);
      if (r < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP ||
                    errno == ENOSYS || errno == EBADF))
        by_hand = true;
    }
    if (by_hand)
      r = copy_by_hand(s->src_fd, in, s->fd, out, want);
    pthread_mutex_lock(&s->mu);
    if (r <= 0)
      s->failed = true;
    else
      s->copied += r;
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/*
 * Be done with the pending layer, if any (s->mu held): one that was ended
 * is placed if the follower copied all of it, one never ended is given up
 * (its follower stops).  Either way the follower is waited for and the
 * blob's file let go.
 */
static void close_pending(struct oci_tar_stream *s)
{
  if (!s->pending)
    return;
  if (!s->ended)
    s->stop = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->follower, NULL);
  pthread_mutex_lock(&s->mu);
  if (s->ended)
    s->v[s->n - 1].placed = !s->failed && s->copied == s->grown;
  close(s->src_fd);
  s->src_fd = -1;
  s->pending = false;
}

static void push(struct oci_tar_stream *s, const char *digest, int64_t size)
{
  struct stream_entry *e;
  CB_GROW(s->v, st_add(s->n, 1), s->alloc);
  e = &s->v[s->n++];
  memset(e, 0, sizeof(*e));
  memcpy(e->digest, digest, strlen(digest) + 1);
  e->size = size;
  e->data_at = s->end + OCI_TAR_BLOCK;
  s->end += oci_tar_span(size);
}

int oci_tar_stream_sync(struct oci_tar_stream *s, const struct oci_descriptor *layers, size_t n)
{
  int rc = -1;
  pthread_mutex_lock(&s->mu);
  close_pending(s);
  if (s->diverged || n < s->n)
    goto out;
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i].digest, layers[i].digest) != 0 || s->v[i].size != layers[i].size)
      goto out;
  for (size_t i = s->n; i < n; i++) {
    if (!oci_digest_valid(layers[i].digest) || layers[i].size < 0)
      goto out;
    push(s, layers[i].digest, layers[i].size);
  }
  rc = 0;
out:
  if (rc < 0)
    s->diverged = true;
  pthread_mutex_unlock(&s->mu);
  return rc;
}

uint64_t oci_tar_stream_begin(struct oci_tar_stream *s, int src_fd, int64_t src_at)
{
  uint64_t ticket = 0;
  int e;
  pthread_mutex_lock(&s->mu);
  close_pending(s);
  if (s->diverged)
    goto out;
  s->src_fd = fcntl(src_fd, F_DUPFD_CLOEXEC, 0);
  if (s->src_fd < 0)
    goto out;
  s->src_at = src_at;
  s->dest_at = s->end + OCI_TAR_BLOCK;
  s->grown = s->copied = 0;
  s->ended = s->stop = s->failed = false;
  e = pthread_create(&s->follower, NULL, follow, s);
  if (e != 0) {
    close(s->src_fd);
    s->src_fd = -1;
    goto out;
  }
  s->pending = true;
  ticket = ++s->ticket;
out:
  pthread_mutex_unlock(&s->mu);
  return ticket;
}

void oci_tar_stream_grow(struct oci_tar_stream *s, uint64_t ticket, int64_t size)
{
  pthread_mutex_lock(&s->mu);
  if (s->pending && !s->ended && ticket == s->ticket && size > s->grown) {
    s->grown = size;
    pthread_cond_signal(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
}

void oci_tar_stream_end(struct oci_tar_stream *s, size_t index, const char *digest, int64_t size)
{
  pthread_mutex_lock(&s->mu);
  if (!s->pending || s->ended)
    goto out;
  if (index != s->n || size != s->grown || !oci_digest_valid(digest)) {
    close_pending(s);
    goto out;
  }
  push(s, digest, size);
  s->ended = true;
  /* the follower finishes the copy on its own; placed when next needed */
  pthread_cond_signal(&s->cv);
out:
  pthread_mutex_unlock(&s->mu);
}

int oci_tar_stream_write(struct oci_tar_stream *s, bool docker,
                         const struct oci_archive_image *images, size_t n,
                         const struct oci_blob_source *src, struct cb_error *err)
{
  cleanup_free struct oci_tar_placed *placed = NULL;
  size_t n_placed = 0;

  pthread_mutex_lock(&s->mu);
  close_pending(s);
  placed = xcalloc(s->n ? s->n : 1, sizeof(*placed));
  for (size_t i = 0; i < s->n; i++)
    if (s->v[i].placed) {
      placed[n_placed].digest = s->v[i].digest;
      placed[n_placed].size = s->v[i].size;
      placed[n_placed].data_at = s->v[i].data_at;
      n_placed++;
    }
  pthread_mutex_unlock(&s->mu);
  return oci_tar_write_placed(s->fd, docker, images, n, src, placed, n_placed, err);
}

void oci_tar_stream_free(struct oci_tar_stream *s)
{
  if (s == NULL)
    return;
  pthread_mutex_lock(&s->mu);
  close_pending(s);
  pthread_mutex_unlock(&s->mu);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->v);
  free(s);
}
