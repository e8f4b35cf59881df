/*
 * libFuzzer target: any bytes as a .dockerignore, matched against paths
 * taken from the same input.
 */
#include "../../parser/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static const char *const paths[] = { "a", "a/b", "a/b/c.md", "src/main.c", ".git/HEAD",
                                       "node_modules/x/y", "docs/README.md", "" };
  struct parser_error err;
  struct parser_ignore *ig = parser_ignore_new(".dockerignore", (const char *)data, size, &err);
  if (!ig)
    return 0;
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    (void)parser_ignore_match(ig, paths[i]);
    (void)parser_ignore_dir_needs_walk(ig, paths[i]);
  }
  /* The input's own lines as paths, too. */
  {
    char *copy = xstrndup((const char *)data, size);
    char *save = NULL;
    for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
      (void)parser_ignore_match(ig, l);
      (void)parser_ignore_dir_needs_walk(ig, l);
    }
    free(copy);
  }
  parser_ignore_free(ig);
  return 0;
}
