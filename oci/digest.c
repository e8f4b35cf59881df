/*
 * Digests: SHA-256 through OpenSSL's EVP interface, spelled the way OCI
 * writes them ("sha256:" and 64 lowercase hex digits).
 */
#include "oci.h"

#include <errno.h>
#include <unistd.h>

#include <openssl/evp.h>

#define DIGEST_PREFIX "sha256:"
#define DIGEST_PREFIX_LEN 7
#define DIGEST_HEX_LEN 64

struct oci_hasher {
  EVP_MD_CTX *ctx;
};

static void hasher_start(struct oci_hasher *h)
{
  /* Only fails when OpenSSL cannot allocate: not recoverable. */
  if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
    cb_die("cannot initialize SHA-256");
}

struct oci_hasher *oci_hasher_new(void)
{
  struct oci_hasher *h = xmalloc(sizeof(*h));
  h->ctx = EVP_MD_CTX_new();
  if (h->ctx == NULL)
    cb_die("out of memory");
  hasher_start(h);
  return h;
}

void oci_hasher_update(struct oci_hasher *h, const void *data, size_t n)
{
  if (n > 0 && EVP_DigestUpdate(h->ctx, data, n) != 1)
    cb_die("SHA-256 update failed");
}

void oci_hasher_final(struct oci_hasher *h, char out[OCI_DIGEST_SIZE])
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
  if (h == NULL)
    return;
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
