#include "common.h"

#include <errno.h>
#include <sched.h>
#include <unistd.h>

char cb_strbuf_slopbuf[1];

void cb_die(const char *fmt, ...)
{
  va_list ap;
  fputs("cbuild: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

static void *check_alloc(void *p, size_t n)
{
  if (p == NULL && n != 0)
    cb_die("out of memory allocating %zu bytes", n);
  return p;
}

void *xmalloc(size_t n) { return check_alloc(malloc(n ? n : 1), 1); }

void *xcalloc(size_t nmemb, size_t size)
{
  return check_alloc(calloc(nmemb ? nmemb : 1, size ? size : 1), 1);
}

void *xrealloc(void *p, size_t n) { return check_alloc(realloc(p, n ? n : 1), 1); }

void *xreallocarray(void *p, size_t nmemb, size_t size)
{
  return xrealloc(p, st_mult(nmemb, size));
}

char *xstrdup(const char *s) { return check_alloc(strdup(s), 1); }

char *xstrndup(const char *s, size_t n) { return check_alloc(strndup(s, n), 1); }

char *xasprintf(const char *fmt, ...)
{
  struct strbuf sb = STRBUF_INIT;
  va_list ap;
  va_start(ap, fmt);
  strbuf_vaddf(&sb, fmt, ap);
  va_end(ap);
  return strbuf_detach(&sb, NULL);
}

size_t st_add(size_t a, size_t b)
{
  size_t r;
  if (__builtin_add_overflow(a, b, &r))
    cb_die("size overflow: %zu + %zu", a, b);
  return r;
}

size_t st_mult(size_t a, size_t b)
{
  size_t r;
  if (__builtin_mul_overflow(a, b, &r))
    cb_die("size overflow: %zu * %zu", a, b);
  return r;
}

void cb_cleanup_freep(void *p)
{
  void **pp = p;
  free(*pp);
}

void cb_cleanup_closep(int *fd)
{
  if (*fd >= 0)
    close(*fd);
}

void cb_cleanup_fclosep(FILE **f)
{
  if (*f)
    fclose(*f);
}

/* ---- strbuf ---- */

void strbuf_init(struct strbuf *sb, size_t hint)
{
  sb->alloc = sb->len = 0;
  sb->buf = cb_strbuf_slopbuf;
  if (hint)
    strbuf_grow(sb, hint);
}

void strbuf_release(struct strbuf *sb)
{
  if (sb->alloc)
    free(sb->buf);
  strbuf_init(sb, 0);
}

char *strbuf_detach(struct strbuf *sb, size_t *len)
{
  char *r;
  if (len)
    *len = sb->len;
  if (!sb->alloc)
    strbuf_grow(sb, 0);
  r = sb->buf;
  strbuf_init(sb, 0);
  return r;
}

void strbuf_grow(struct strbuf *sb, size_t extra)
{
  size_t need = st_add(st_add(sb->len, extra), 1);
  bool fresh = sb->alloc == 0;
  if (need <= sb->alloc)
    return;
  if (fresh)
    sb->buf = NULL;
  CB_GROW(sb->buf, need, sb->alloc);
  if (fresh)
    sb->buf[0] = '\0';
}

void strbuf_setlen(struct strbuf *sb, size_t len)
{
  if (len > sb->len)
    cb_die("strbuf_setlen beyond the buffer: %zu > %zu", len, sb->len);
  sb->len = len;
  if (sb->alloc)
    sb->buf[len] = '\0';
}

void strbuf_add(struct strbuf *sb, const void *data, size_t len)
{
  strbuf_grow(sb, len);
  memcpy(sb->buf + sb->len, data, len);
  sb->len += len;
  sb->buf[sb->len] = '\0';
}

void strbuf_addstr(struct strbuf *sb, const char *s) { strbuf_add(sb, s, strlen(s)); }

void strbuf_addch(struct strbuf *sb, int c)
{
  strbuf_grow(sb, 1);
  sb->buf[sb->len++] = (char)c;
  sb->buf[sb->len] = '\0';
}

void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap)
{
  va_list cp;
  int n;
  va_copy(cp, ap);
  n = vsnprintf(sb->buf + sb->len, sb->alloc ? sb->alloc - sb->len : 0, fmt, cp);
  va_end(cp);
  if (n < 0)
    cb_die("strbuf_vaddf: bad format \"%s\"", fmt);
  if ((size_t)n >= (sb->alloc ? sb->alloc - sb->len : 0)) {
    strbuf_grow(sb, (size_t)n);
    n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, ap);
  }
  sb->len += (size_t)n;
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  strbuf_vaddf(sb, fmt, ap);
  va_end(ap);
}

void strbuf_add_utf8(struct strbuf *sb, uint32_t cp)
{
  char b[4];
  size_t n;
  if (cp < 0x80) {
    b[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    b[0] = (char)(0xc0 | (cp >> 6));
    b[1] = (char)(0x80 | (cp & 0x3f));
    n = 2;
  } else if (cp < 0x10000) {
    b[0] = (char)(0xe0 | (cp >> 12));
    b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    b[2] = (char)(0x80 | (cp & 0x3f));
    n = 3;
  } else {
    b[0] = (char)(0xf0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (char)(0x80 | (cp & 0x3f));
    n = 4;
  }
  strbuf_add(sb, b, n);
}

void cb_cleanup_strbufp(struct strbuf *sb) { strbuf_release(sb); }

/* ---- strvec ---- */

void strvec_push_nodup(struct strvec *sv, char *s)
{
  CB_GROW(sv->v, st_add(sv->n, 2), sv->alloc);
  sv->v[sv->n++] = s;
  sv->v[sv->n] = NULL;
}

void strvec_push(struct strvec *sv, const char *s) { strvec_push_nodup(sv, xstrdup(s)); }

void strvec_pushf(struct strvec *sv, const char *fmt, ...)
{
  struct strbuf sb = STRBUF_INIT;
  va_list ap;
  va_start(ap, fmt);
  strbuf_vaddf(&sb, fmt, ap);
  va_end(ap);
  strvec_push_nodup(sv, strbuf_detach(&sb, NULL));
}

void strvec_clear(struct strvec *sv)
{
  for (size_t i = 0; i < sv->n; i++)
    free(sv->v[i]);
  free(sv->v);
  sv->v = NULL;
  sv->n = sv->alloc = 0;
}

void strvec_copy(struct strvec *dst, const struct strvec *src)
{
  for (size_t i = 0; i < src->n; i++)
    strvec_push(dst, src->v[i]);
}

ssize_t strvec_find(const struct strvec *sv, const char *s)
{
  for (size_t i = 0; i < sv->n; i++)
    if (strcmp(sv->v[i], s) == 0)
      return (ssize_t)i;
  return -1;
}

static int strp_cmp(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void strvec_sort(struct strvec *sv)
{
  if (sv->n > 1)
    qsort(sv->v, sv->n, sizeof(*sv->v), strp_cmp);
}

ssize_t strvec_bsearch(const struct strvec *sv, const char *s)
{
  char *const *hit;
  if (!s || !sv->n)
    return -1;
  hit = bsearch(&s, sv->v, sv->n, sizeof(*sv->v), strp_cmp);
  return hit ? hit - sv->v : -1;
}

void cb_cleanup_strvecp(struct strvec *sv) { strvec_clear(sv); }

/* ---- errors ---- */

static void error_vset(struct cb_error *err, const char *fmt, va_list ap) CB_PRINTF(2, 0);
static void error_vset(struct cb_error *err, const char *fmt, va_list ap)
{
  vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int cb_error_set(struct cb_error *err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  error_vset(err, fmt, ap);
  va_end(ap);
  err->code = 0;
  return -1;
}

int cb_error_errno(struct cb_error *err, int errnum, const char *fmt, ...)
{
  size_t n;
  va_list ap;
  va_start(ap, fmt);
  error_vset(err, fmt, ap);
  va_end(ap);
  n = strlen(err->msg);
  snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(errnum));
  err->code = errnum;
  return -1;
}

int cb_error_wrap(struct cb_error *err, const char *fmt, ...)
{
  struct strbuf sb = STRBUF_INIT;
  size_t n;
  va_list ap;
  va_start(ap, fmt);
  strbuf_vaddf(&sb, fmt, ap);
  va_end(ap);
  strbuf_addstr(&sb, ": ");
  strbuf_addstr(&sb, err->msg);
  /* A message longer than the buffer keeps its start: the context. */
  n = sb.len < sizeof(err->msg) - 1 ? sb.len : sizeof(err->msg) - 1;
  memcpy(err->msg, sb.buf, n);
  err->msg[n] = '\0';
  strbuf_release(&sb);
  return -1;
}

/* ---- strings and files ---- */

bool cb_starts_with(const char *s, const char *prefix)
{
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool cb_ends_with(const char *s, const char *suffix)
{
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

bool cb_streq_ci(const char *a, const char *b)
{
  for (; *a && *b; a++, b++) {
    int ca = *a >= 'A' && *a <= 'Z' ? *a + 32 : *a;
    int cbb = *b >= 'A' && *b <= 'Z' ? *b + 32 : *b;
    if (ca != cbb)
      return false;
  }
  return *a == *b;
}

int cb_read_stream(FILE *f, const char *what, struct strbuf *out, struct cb_error *err)
{
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
    strbuf_add(out, buf, n);
  if (ferror(f))
    return cb_error_errno(err, errno, "read \"%s\"", what);
  return 0;
}

int cb_read_file(const char *path, struct strbuf *out, struct cb_error *err)
{
  cleanup_fclose FILE *f = fopen(path, "re");
  if (f == NULL)
    return cb_error_errno(err, errno, "open \"%s\"", path);
  return cb_read_stream(f, path, out, err);
}

/* Sizes as docker's units.RAMInBytes: "64m", "1g", "512k", "100"; k, m, g,
 * t and p are powers of 1024, and a trailing "b" is allowed. */
int cb_parse_size(const char *v, long long *out)
{
  char *end;
  double n;
  long long mult = 1;
  errno = 0;
  n = strtod(v, &end);
  if (end == v || errno || n < 0)
    return -1;
  switch (*end | 0x20) {
  case 'k': mult = 1LL << 10; end++; break;
  case 'm': mult = 1LL << 20; end++; break;
  case 'g': mult = 1LL << 30; end++; break;
  case 't': mult = 1LL << 40; end++; break;
  case 'p': mult = 1LL << 50; end++; break;
  case 'b': break;
  default:
    if (*end)
      return -1;
  }
  if ((*end | 0x20) == 'b')
    end++;
  if (*end || n * (double)mult > 9e18)
    return -1;
  *out = (long long)(n * (double)mult);
  return 0;
}

int cb_cpu_count(void)
{
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
