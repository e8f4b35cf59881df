/*
 * Digests: SHA-256 through OpenSSL's EVP interface, spelled the way OCI
 * writes them ("sha256:" and 64 lowercase hex digits).
 */
#include "oci.h"

#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include <openssl/evp.h>

#define DIGEST_PREFIX "sha256:"
#define DIGEST_PREFIX_LEN 7
#define DIGEST_HEX_LEN 64

struct oci_hasher {
  EVP_MD_CTX *ctx;
  struct hasher_thread *thread; /* NULL: hashed by the caller */
};

/*
 * A hasher with a thread of its own (oci_hasher_new_threaded): update()
 * copies the data into a ring and returns, and the thread hashes it while
 * the caller goes on (compressing, reading the next file).  final() waits
 * for the ring to drain.  final_later() leaves a mark in the stream: when
 * the thread reaches it, it writes the digest of what came before and
 * starts again, so that many small streams (one per file) cost the caller
 * no wait each.
 */
#define HASHER_RING_SIZE ((size_t)2 << 20)
#define HASHER_PIECE ((size_t)256 << 10) /* hashed at once, then freed */

struct hasher_mark {
  uint64_t at; /* the stream's offset where the digest ends */
  char *out;
};

struct hasher_thread {
  pthread_t id;
  pthread_mutex_t mu;
  pthread_cond_t more;  /* data or a mark was added, or stop */
  pthread_cond_t space; /* data was hashed, or a mark written */
  unsigned char *ring;
  uint64_t added, hashed; /* bytes, since the start */
  struct hasher_mark *marks; /* [first_mark, n_marks) are pending */
  size_t first_mark, n_marks, alloc_marks;
  bool stop;
};

static void hasher_start(struct oci_hasher *h)
{
  /* Only fails when OpenSSL cannot allocate: not recoverable. */
  if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
    cb_die("cannot initialize SHA-256");
}

struct oci_hasher *oci_hasher_new(void)
{
  struct oci_hasher *h = xcalloc(1, sizeof(*h));
  h->ctx = EVP_MD_CTX_new();
  if (h->ctx == NULL)
    cb_die("out of memory");
  hasher_start(h);
  return h;
}

static void hash_now(struct oci_hasher *h, const void *data, size_t n)
{
  if (n > 0 && EVP_DigestUpdate(h->ctx, data, n) != 1)
    cb_die("SHA-256 update failed");
}

static void final_now(struct oci_hasher *h, char out[OCI_DIGEST_SIZE]);

static bool mark_pending(const struct hasher_thread *t)
{
  return t->first_mark < t->n_marks;
}

static void *hasher_thread_run(void *data)
{
  struct oci_hasher *h = data;
  struct hasher_thread *t = h->thread;

  pthread_mutex_lock(&t->mu);
  for (;;) {
    while (!t->stop && t->hashed == t->added && !mark_pending(t))
      pthread_cond_wait(&t->more, &t->mu);
    if (t->stop)
      break;
    if (mark_pending(t) && t->marks[t->first_mark].at == t->hashed) {
      /* The mark stays pending until its digest is written: wait() must
       * not return (nor final() touch the context) before. */
      char *out = t->marks[t->first_mark].out;
      pthread_mutex_unlock(&t->mu);
      final_now(h, out);
      pthread_mutex_lock(&t->mu);
      if (++t->first_mark == t->n_marks)
        t->first_mark = t->n_marks = 0;
      pthread_cond_signal(&t->space);
      continue;
    }
    size_t at = (size_t)(t->hashed % HASHER_RING_SIZE);
    size_t n = (size_t)(t->added - t->hashed);
    if (mark_pending(t) && t->marks[t->first_mark].at - t->hashed < n)
      n = (size_t)(t->marks[t->first_mark].at - t->hashed);
    pthread_mutex_unlock(&t->mu);
    /* [hashed, added) is the thread's alone until hashed moves */
    if (n > HASHER_RING_SIZE - at)
      n = HASHER_RING_SIZE - at;
    if (n > HASHER_PIECE)
      n = HASHER_PIECE;
    hash_now(h, t->ring + at, n);
    pthread_mutex_lock(&t->mu);
    t->hashed += n;
    pthread_cond_signal(&t->space);
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

static void hasher_thread_free(struct hasher_thread *t)
{
  pthread_mutex_destroy(&t->mu);
  pthread_cond_destroy(&t->more);
  pthread_cond_destroy(&t->space);
  free(t->ring);
  free(t->marks);
  free(t);
}

struct oci_hasher *oci_hasher_new_threaded(void)
{
  struct oci_hasher *h = oci_hasher_new();
  struct hasher_thread *t = xcalloc(1, sizeof(*t));
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->more, NULL);
  pthread_cond_init(&t->space, NULL);
  t->ring = xmalloc(HASHER_RING_SIZE);
  h->thread = t;
  if (pthread_create(&t->id, NULL, hasher_thread_run, h) != 0) {
    /* no thread: the caller hashes, as with oci_hasher_new() */
    h->thread = NULL;
    hasher_thread_free(t);
  }
  return h;
}

void oci_hasher_update(struct oci_hasher *h, const void *data, size_t n)
{
  struct hasher_thread *t = h->thread;
  const unsigned char *p = data;

  if (t == NULL) {
    hash_now(h, data, n);
    return;
  }
  while (n > 0) {
    pthread_mutex_lock(&t->mu);
    while (t->added - t->hashed == HASHER_RING_SIZE)
      pthread_cond_wait(&t->space, &t->mu);
    size_t at = (size_t)(t->added % HASHER_RING_SIZE);
    size_t k = HASHER_RING_SIZE - (size_t)(t->added - t->hashed);
    pthread_mutex_unlock(&t->mu);
    /* [added, hashed + size) is the caller's alone until added moves */
    if (k > HASHER_RING_SIZE - at)
      k = HASHER_RING_SIZE - at;
    if (k > n)
      k = n;
    memcpy(t->ring + at, p, k);
    pthread_mutex_lock(&t->mu);
    t->added += k;
    pthread_cond_signal(&t->more);
    pthread_mutex_unlock(&t->mu);
    p += k;
    n -= k;
  }
}

void oci_hasher_wait(struct oci_hasher *h)
{
  struct hasher_thread *t = h->thread;
  if (t == NULL)
    return;
  pthread_mutex_lock(&t->mu);
  while (t->hashed != t->added || mark_pending(t))
    pthread_cond_wait(&t->space, &t->mu);
  pthread_mutex_unlock(&t->mu);
}

void oci_hasher_final(struct oci_hasher *h, char out[OCI_DIGEST_SIZE])
{
  oci_hasher_wait(h);
  final_now(h, out);
}

void oci_hasher_final_later(struct oci_hasher *h, char out[OCI_DIGEST_SIZE])
{
  struct hasher_thread *t = h->thread;
  if (t == NULL) {
    final_now(h, out);
    return;
  }
  pthread_mutex_lock(&t->mu);
  CB_GROW(t->marks, t->n_marks + 1, t->alloc_marks);
  t->marks[t->n_marks].at = t->added;
  t->marks[t->n_marks].out = out;
  t->n_marks++;
  pthread_cond_signal(&t->more);
  pthread_mutex_unlock(&t->mu);
}

/* The digest of what was hashed so far, into out; then start again. */
static void final_now(struct oci_hasher *h, char out[OCI_DIGEST_SIZE])
{
  static const char hex[] = "0123456789abcdef";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;

  if (EVP_DigestFinal_ex(h->ctx, md, &len) != 1 || len != DIGEST_HEX_LEN / 2)
    cb_die("SHA-256 final failed");
  memcpy(out, DIGEST_PREFIX, DIGEST_PREFIX_LEN);
  for (unsigned int i = 0; i < len; i++) {
    out[DIGEST_PREFIX_LEN + 2 * i] = hex[md[i] >> 4];
    out[DIGEST_PREFIX_LEN + 2 * i + 1] = hex[md[i] & 0xf];
  }
  out[DIGEST_PREFIX_LEN + DIGEST_HEX_LEN] = '\0';
  hasher_start(h);
}

void oci_hasher_free(struct oci_hasher *h)
{
  struct hasher_thread *t;
  if (h == NULL)
    return;
  t = h->thread;
  if (t) {
    pthread_mutex_lock(&t->mu);
    t->stop = true;
    pthread_cond_signal(&t->more);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->id, NULL);
    hasher_thread_free(t);
  }
  EVP_MD_CTX_free(h->ctx);
  free(h);
}

void oci_digest_buf(const void *data, size_t n, char out[OCI_DIGEST_SIZE])
{
  struct oci_hasher *h = oci_hasher_new();
  oci_hasher_update(h, data, n);
  oci_hasher_final(h, out);
  oci_hasher_free(h);
}

int oci_digest_fd(int fd, char out[OCI_DIGEST_SIZE], int64_t *size, struct cb_error *err)
{
  enum { CHUNK = 256 * 1024 };
  cleanup_free unsigned char *buf = xmalloc(CHUNK);
  struct oci_hasher *h = oci_hasher_new();
  int64_t total = 0;

  for (;;) {
    ssize_t n = read(fd, buf, CHUNK);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      int saved = errno;
      oci_hasher_free(h);
      return cb_error_errno(err, saved, "read blob for its digest");
    }
    if (n == 0)
      break;
    oci_hasher_update(h, buf, (size_t)n);
    total += n;
  }
  oci_hasher_final(h, out);
  oci_hasher_free(h);
  if (size != NULL)
    *size = total;
  return 0;
}

bool oci_digest_valid(const char *d)
{
  if (d == NULL || strncmp(d, DIGEST_PREFIX, DIGEST_PREFIX_LEN) != 0)
    return false;
  d += DIGEST_PREFIX_LEN;
  for (int i = 0; i < DIGEST_HEX_LEN; i++) {
    char c = d[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  }
  return d[DIGEST_HEX_LEN] == '\0';
}
