#include "unit.h"

#include <errno.h>
#include <fcntl.h>

int unit_failures;

void unit_fail(const char *file, int line, const char *fmt, ...)
{
  va_list ap;
  printf("# %s:%d: ", file, line);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  unit_failures++;
}

int unit_main(const struct unit_test *tests, size_t n, int argc, char **argv)
{
  int failed = 0;
  printf("1..%zu\n", n);
  for (size_t i = 0; i < n; i++) {
    int before = unit_failures;
    if (argc > 1 && strstr(tests[i].name, argv[1]) == NULL) {
      printf("ok %zu - %s # SKIP not selected\n", i + 1, tests[i].name);
      continue;
    }
    fflush(stdout);
    tests[i].fn();
    if (unit_failures != before) {
      printf("not ok %zu - %s\n", i + 1, tests[i].name);
      failed++;
    } else {
      printf("ok %zu - %s\n", i + 1, tests[i].name);
    }
    fflush(stdout);
  }
  return failed ? 1 : 0;
}

char *unit_slurp(const char *path)
{
  struct strbuf sb = STRBUF_INIT;
  struct cb_error err;
  if (cb_read_file(path, &sb, &err) < 0) {
    strbuf_release(&sb);
    return NULL;
  }
  return strbuf_detach(&sb, NULL);
}

static int cmp_name(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

char *unit_list_dir(const char *dir)
{
  struct strvec names = STRVEC_INIT;
  struct strbuf sb = STRBUF_INIT;
  if (cb_list_dir(AT_FDCWD, dir, &names) < 0) {
    strvec_clear(&names);
    return xstrdup("?");
  }
  if (names.n > 1)
    qsort(names.v, names.n, sizeof(*names.v), cmp_name);
  for (size_t i = 0; i < names.n; i++) {
    if (i > 0)
      strbuf_addch(&sb, ',');
    strbuf_addstr(&sb, names.v[i]);
  }
  strvec_clear(&names);
  return strbuf_detach(&sb, NULL);
}

char *unit_temp_dir(const char *what)
{
  const char *tmp = getenv("TMPDIR");
  char *dir = xasprintf("%s/cbuild-%s-%s.XXXXXX", tmp && *tmp ? tmp : "/tmp",
                        program_invocation_short_name, what);
  if (mkdtemp(dir) == NULL)
    cb_die("mkdtemp %s: %s", dir, strerror(errno));
  return dir;
}
