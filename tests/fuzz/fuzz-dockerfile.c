/*
 * libFuzzer target: any bytes as a Dockerfile.  Parse, resolve with a build
 * arg and a target, expand every reachable stage, and free it all: nothing
 * may crash, leak or hang.
 */
#include "../../parser/parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  struct parser_error err;
  struct parser_build_args ba = { 0 };
  struct parser_dockerfile *df = parser_parse("Dockerfile", (const char *)data, size, &err);
  char line[2048];
  if (!df) {
    parser_error_format(&err, line, sizeof(line));
    return 0;
  }
  parser_build_args_set(&ba, "A", "x y");
  ba.target = size % 3 == 0 ? "build" : NULL;
  if (parser_resolve(df, &ba, &err) == 0) {
    struct parser_vars *scopes = xcalloc(df->n_stages, sizeof(*scopes));
    for (size_t i = 0; i < df->n_stages; i++) {
      struct parser_step *steps = NULL;
      struct strvec used = STRVEC_INIT;
      if (!df->stages[i].reachable)
        continue;
      if (df->stages[i].base_stage >= 0)
        parser_vars_copy(&scopes[i], &scopes[df->stages[i].base_stage]);
      if (parser_stage_expand(df, (int)i, &ba, &scopes[i], &steps, &used, &err) == 0) {
        struct strvec env = STRVEC_INIT;
        parser_run_env(&scopes[i], &ba, &env);
        strvec_clear(&env);
        parser_steps_free(steps, df->stages[i].n_steps);
      }
      strvec_clear(&used);
    }
    for (size_t i = 0; i < df->n_stages; i++)
      parser_vars_release(&scopes[i]);
    free(scopes);
  }
  ba.target = NULL;
  parser_build_args_release(&ba);
  parser_dockerfile_free(df);
  return 0;
}
