#include "unit.h"

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
