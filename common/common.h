/*
 * common: the base layer every cbuild module may use, and which uses no
 * other module.  It holds what git keeps in wrapper.c, strbuf.h and strvec.h,
 * and crun in its utils: allocation that cannot fail, cleanup attributes,
 * a growable string buffer, a string vector and the error type.
 */
#ifndef CBUILD_COMMON_H
#define CBUILD_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define CB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CB_NORETURN __attribute__((noreturn))
#define CB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- allocation: out of memory is not recoverable ---- */

CB_NORETURN void cb_die(const char *fmt, ...) CB_PRINTF(1, 2);
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* xreallocarray: p resized to nmemb * size, aborting on overflow. */
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) CB_PRINTF(1, 2);
/* st_add: a + b, aborting on overflow (bubblewrap's xadd). */
size_t st_add(size_t a, size_t b);
size_t st_mult(size_t a, size_t b);

/*
 * Grow an array so that it can hold at least `need` elements; `alloc` is its
 * current capacity, updated in place (git's ALLOC_GROW).
 */
#define CB_GROW(arr, need, alloc)                                              \
  do {                                                                         \
    if ((size_t)(need) > (alloc)) {                                            \
      size_t cb_grow_n_ = (alloc) < 8 ? 8 : st_mult((alloc), 2);               \
      if (cb_grow_n_ < (size_t)(need))                                         \
        cb_grow_n_ = (size_t)(need);                                           \
      (arr) = xreallocarray((arr), cb_grow_n_, sizeof(*(arr)));                \
      (alloc) = cb_grow_n_;                                                    \
    }                                                                          \
  } while (0)

/* ---- cleanup attributes ---- */

void cb_cleanup_freep(void *p);
void cb_cleanup_closep(int *fd);
void cb_cleanup_fclosep(FILE **f);
#define cleanup_free __attribute__((cleanup(cb_cleanup_freep)))
#define cleanup_close __attribute__((cleanup(cb_cleanup_closep)))
#define cleanup_fclose __attribute__((cleanup(cb_cleanup_fclosep)))
/* jansson's own json_decrefp (as its json_auto_t uses): for the modules
 * that include <jansson.h> */
#define cleanup_json __attribute__((cleanup(json_decrefp)))

/* Hand ownership of *pp to the caller, leaving NULL behind. */
static inline void *cb_steal_pointer(void *pp)
{
  void **p = pp;
  void *v = *p;
  *p = NULL;
  return v;
}
#define steal_pointer(pp) cb_steal_pointer(pp)

/* ---- strbuf: a growable string ----
 *
 * Invariants: `buf` is never NULL and always NUL-terminated at `len`;
 * `alloc` is 0 exactly when `buf` points at a shared empty string that must
 * not be written to (so STRBUF_INIT needs no allocation).  `len` counts the
 * bytes before the terminator; the content may hold NUL bytes.
 */
struct strbuf {
  size_t alloc;
  size_t len;
  char *buf;
};
extern char cb_strbuf_slopbuf[];
#define STRBUF_INIT { 0, 0, cb_strbuf_slopbuf }

void strbuf_init(struct strbuf *sb, size_t hint);
void strbuf_release(struct strbuf *sb);
/* Return the buffer, which the caller frees; sb is reset to empty. */
char *strbuf_detach(struct strbuf *sb, size_t *len);
void strbuf_grow(struct strbuf *sb, size_t extra);
void strbuf_setlen(struct strbuf *sb, size_t len);
#define strbuf_reset(sb) strbuf_setlen((sb), 0)
void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_addstr(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, int c);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) CB_PRINTF(2, 3);
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap) CB_PRINTF(2, 0);
/* Append the UTF-8 encoding of code point cp. */
void strbuf_add_utf8(struct strbuf *sb, uint32_t cp);
void cb_cleanup_strbufp(struct strbuf *sb);
#define cleanup_strbuf __attribute__((cleanup(cb_cleanup_strbufp)))

/* ---- strvec: a NULL-terminated array of owned strings ---- */
struct strvec {
  char **v;
  size_t n;
  size_t alloc;
};
#define STRVEC_INIT { NULL, 0, 0 }

void strvec_push(struct strvec *sv, const char *s);
void strvec_push_nodup(struct strvec *sv, char *s);
void strvec_pushf(struct strvec *sv, const char *fmt, ...) CB_PRINTF(2, 3);
void strvec_clear(struct strvec *sv);
void strvec_copy(struct strvec *dst, const struct strvec *src);
/* Index of the first element equal to s, or -1. */
ssize_t strvec_find(const struct strvec *sv, const char *s);
/* Sort in strcmp order; strvec_bsearch then finds an element in a sorted
 * strvec in O(log n): its index, or -1 (s may be NULL: -1). */
void strvec_sort(struct strvec *sv);
ssize_t strvec_bsearch(const struct strvec *sv, const char *s);
void cb_cleanup_strvecp(struct strvec *sv);
#define cleanup_strvec __attribute__((cleanup(cb_cleanup_strvecp)))

/* ---- errors ----
 *
 * One error type for every fallible function outside the parser (which has
 * its own, allocation-free one).  Functions return a negative int and fill
 * the struct cb_error passed as their last argument; callers add context as
 * it travels up with cb_error_wrap(), so that the user reads one line.
 */
struct cb_error {
  int code; /* errno, or 0 */
  char msg[2048];
};

/* Set err to the formatted message; returns -1. */
int cb_error_set(struct cb_error *err, const char *fmt, ...) CB_PRINTF(2, 3);
/* Like cb_error_set, appending ": strerror(errnum)". */
int cb_error_errno(struct cb_error *err, int errnum, const char *fmt, ...)
    CB_PRINTF(3, 4);
/* Prefix the message with "context: ". Returns -1. */
int cb_error_wrap(struct cb_error *err, const char *fmt, ...) CB_PRINTF(2, 3);

/* ---- small string helpers ---- */
bool cb_starts_with(const char *s, const char *prefix);
/* Parses a size such as "512m" or "1g" into bytes; -1 when malformed. */
int cb_parse_size(const char *v, long long *out);
bool cb_ends_with(const char *s, const char *suffix);
/* ASCII case-insensitive equality. */
bool cb_streq_ci(const char *a, const char *b);
/* Read all of a stream or file; returns -1 and fills err on failure. */
int cb_read_stream(FILE *f, const char *what, struct strbuf *out,
                   struct cb_error *err);
int cb_read_file(const char *path, struct strbuf *out, struct cb_error *err);

/* ---- files ---- */

/*
 * Open `path` beneath the directory rootfd without following any symlink
 * and without leaving it (no "..", no absolute escape): openat2 with
 * RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or a component-by-component
 * O_NOFOLLOW walk where openat2 is missing (forced by CBUILD_NO_OPENAT2=1).
 * flags as for openat (O_NOFOLLOW and O_CLOEXEC are added).  Returns the fd,
 * or -1 with errno (ELOOP for a symlink on the way, EXDEV for "..").
 */
int cb_open_beneath(int rootfd, const char *path, int flags);

/* Write all n bytes, retrying short writes and EINTR; -1 with errno. */
int cb_write_all(int fd, const void *data, size_t n);
/* read(2), retried on EINTR. */
ssize_t cb_read_retry(int fd, void *buf, size_t n);

/* The CPUs this process may run on (at least 1). */
int cb_cpu_count(void);

/* mkdir -p: path and the directories above it, each made with mode when
 * missing; -1 with err naming the component that could not be made. */
int cb_mkdir_p(const char *path, mode_t mode, struct cb_error *err);
/* The directory name in parent, never through a symlink; made with mode
 * when missing, and then parent fsynced so that the new entry survives a
 * crash.  -1 with errno. */
int cb_open_dir_made(int parent, const char *name, mode_t mode);

/* Remove name (relative to dirfd) and, for a directory, all it holds,
 * never following symlinks.  -1 with errno on the first failure. */
int cb_remove_tree(int dirfd, const char *name);
/* The names in directory dirfd/name (not "." and ".."; name "." for dirfd
 * itself), unsorted, added to out.  -1 with errno when it cannot be read. */
int cb_list_dir(int dirfd, const char *name, struct strvec *out);

/* git's banned.h: these invite overflows; use strbuf or snprintf. */
#define CB_BANNED(func) sorry_##func##_is_banned_in_cbuild
#undef strcpy
#define strcpy(x, y) CB_BANNED(strcpy)
#undef strcat
#define strcat(x, y) CB_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) CB_BANNED(strncpy)
#undef sprintf
#define sprintf(...) CB_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) CB_BANNED(vsprintf)

#endif
