/*
 * A small unit-test harness: each test is a function; CHECK* record a
 * failure with its place and go on.  The program prints TAP ("ok N - name"),
 * which tests/run counts.
 */
#ifndef CBUILD_UNIT_H
#define CBUILD_UNIT_H

#include "../../common/common.h"

struct unit_test {
  const char *name;
  void (*fn)(void);
};

extern int unit_failures;
void unit_fail(const char *file, int line, const char *fmt, ...) CB_PRINTF(3, 4);
int unit_main(const struct unit_test *tests, size_t n, int argc, char **argv);

/* A file's content, or NULL. */
char *unit_slurp(const char *path);
/* The names in dir, sorted and joined by ','; "?" when it cannot be read. */
char *unit_list_dir(const char *dir);
/* A new directory $TMPDIR/cbuild-<program>-<what>.XXXXXX; dies on failure. */
char *unit_temp_dir(const char *what);

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond))                                                               \
      unit_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                       \
  } while (0)

#define CHECK_INT(a, b)                                                        \
  do {                                                                         \
    long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);              \
    if (unit_a_ != unit_b_)                                                    \
      unit_fail(__FILE__, __LINE__, "%s == %lld, expected %lld", #a, unit_a_,  \
                unit_b_);                                                      \
  } while (0)

#define CHECK_STR(a, b)                                                        \
  do {                                                                         \
    const char *unit_a_ = (a), *unit_b_ = (b);                                 \
    if (unit_a_ == NULL || unit_b_ == NULL ? unit_a_ != unit_b_                \
                                           : strcmp(unit_a_, unit_b_) != 0)    \
      unit_fail(__FILE__, __LINE__, "%s == \"%s\", expected \"%s\"", #a,       \
                unit_a_ ? unit_a_ : "(null)", unit_b_ ? unit_b_ : "(null)");   \
  } while (0)

/* Checks that the C string haystack contains needle. */
#define CHECK_CONTAINS(haystack, needle)                                       \
  do {                                                                         \
    const char *unit_h_ = (haystack), *unit_n_ = (needle);                     \
    if (unit_h_ == NULL || strstr(unit_h_, unit_n_) == NULL)                   \
      unit_fail(__FILE__, __LINE__, "%s == \"%s\" lacks \"%s\"", #haystack,    \
                unit_h_ ? unit_h_ : "(null)", unit_n_);                        \
  } while (0)

#define UNIT_MAIN(tests)                                                       \
  int main(int argc, char **argv)                                              \
  {                                                                            \
    return unit_main(tests, CB_ARRAY_SIZE(tests), argc, argv);                 \
  }

#endif
