/*
 * The build plan: read the Dockerfile, resolve the stage graph for the
 * build args and target, check what names images, and substitute the
 * steps of every stage the target needs.
 */
#include "builder.h"

#include "../cache/cache.h"
#include "../oci/oci.h"

#include <errno.h>

static int read_dockerfile(const struct builder_options *o, struct strbuf *text, char **name,
                           struct cb_error *err)
{
  if (o->file && strcmp(o->file, "-") == 0) {
    *name = xstrdup("Dockerfile");
    return cb_read_stream(stdin, "standard input", text, err);
  }
  if (o->file)
    *name = xstrdup(o->file);
  else
    *name = xasprintf("%s/Dockerfile", o->context ? o->context : ".");
  if (cb_read_file(*name, text, err) < 0)
    return cb_error_wrap(err, "read the Dockerfile");
  return 0;
}

/* The name messages use for the Dockerfile: as given, or as the context's. */
static const char *display_name(const struct builder_options *o, const char *path)
{
  if (o->file)
    return strcmp(o->file, "-") == 0 ? "Dockerfile" : o->file;
  (void)path;
  return "Dockerfile";
}

static int parser_fail(struct cb_error *err, const struct parser_error *pe)
{
  char line[sizeof(err->msg)];
  parser_error_format(pe, line, sizeof(line));
  return cb_error_set(err, "%s", line);
}

/* Every image a reachable stage names must be a valid reference. */
static int check_images(const struct parser_dockerfile *df, struct cb_error *err)
{
  for (size_t i = 0; i < df->n_stages; i++) {
    const struct parser_stage *st = &df->stages[i];
    if (!st->reachable)
      continue;
    if (st->base_stage < 0 && !st->base_scratch && !oci_reference_valid(st->base))
      return cb_error_set(err, "%s:%d: FROM: \"%s\" names no earlier stage and is not a valid image reference",
                          df->file, st->from->line, st->base);
    for (size_t s = 0; s < st->n_steps; s++) {
      const struct parser_step *step = &st->steps[s];
      if (step->from && step->from_stage < 0 && !oci_reference_valid(step->from))
        return cb_error_set(err, "%s:%d: %s --from: \"%s\" names no stage and is not a valid image reference",
                            df->file, step->line, parser_instr_name(step->instr), step->from);
      for (size_t m = 0; m < step->n_mounts; m++) {
        const struct parser_mount *mnt = &step->mounts[m];
        if (mnt->from && mnt->from_stage < 0 && !oci_reference_valid(mnt->from))
          return cb_error_set(err, "%s:%d: RUN --mount from=%s: names no stage and is not a valid image reference",
                              df->file, step->line, mnt->from);
      }
    }
  }
  return 0;
}

/*
 * The ENV of a base image, found in the store or pulled as --pull says (a
 * `cbuild parse` has no store, and then no ENV from images).
 */
static int image_env(const struct builder_options *o, struct cache_store *store,
                     const struct parser_stage *st, struct parser_vars *scope,
                     struct cb_error *err)
{
  struct oci_descriptor desc;
  struct oci_manifest m;
  struct oci_config c;
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  bool have_path = false;
  int r;
  r = !store ? 1
             : builder_image_resolve(store, o->plan_only ? NULL : &o->registry, st->base,
                                     st->platform ? st->platform : o->args.target_platform, &desc,
                                     err);
  if (r > 0 && o->plan_only) {
    parser_vars_set(scope, "PATH", BUILDER_DEFAULT_PATH, PARSER_VAR_ENV);
    return 0;
  }
  if (r > 0)
    cb_error_set(err, "image \"%s\" is not in the local store (and --pull=never)", st->base);
  if (r != 0)
    return -1;
  memset(&m, 0, sizeof(m));
  memset(&c, 0, sizeof(c));
  r = cache_blob_read(store, desc.digest, &text, err);
  if (r == 0)
    r = oci_manifest_parse(text.buf, text.len, &m, err);
  if (r == 0) {
    strbuf_reset(&text);
    r = cache_blob_read(store, m.config.digest, &text, err);
  }
  if (r == 0)
    r = oci_config_parse(text.buf, text.len, &c, err);
  if (r == 0) {
    for (size_t i = 0; i < c.env.n; i++) {
      cleanup_free char *k = xstrdup(c.env.v[i]);
      char *eq = strchr(k, '=');
      if (!eq)
        continue;
      *eq = '\0';
      have_path |= strcmp(k, "PATH") == 0;
      parser_vars_set(scope, k, eq + 1, PARSER_VAR_ENV);
    }
  }
  if (!have_path)
    parser_vars_set(scope, "PATH", BUILDER_DEFAULT_PATH, PARSER_VAR_ENV);
  oci_config_release(&c);
  oci_manifest_release(&m);
  oci_descriptor_release(&desc);
  return r < 0 ? cb_error_wrap(err, "image \"%s\"", st->base) : 0;
}

/* Make sure the images COPY --from and RUN --mount from= name are in the
 * store, pulling them as --pull says. */
static int step_images(const struct builder_options *o, struct cache_store *store,
                       const struct parser_dockerfile *df, const struct parser_stage *st,
                       const struct parser_step *steps, struct cb_error *err)
{
  for (size_t k = 0; store && !o->plan_only && k < st->n_steps; k++) {
    const struct parser_step *step = &steps[k];
    struct oci_descriptor d;
    const char *name = step->from && step->from_stage < 0 ? step->from : NULL;
    size_t m = 0;
    for (;;) {
      int r;
      if (name) {
        r = builder_image_resolve(store, &o->registry, name,
                                  st->platform ? st->platform : o->args.target_platform, &d, err);
        if (r == 0)
          oci_descriptor_release(&d);
        /* a missing image is the step's error, said when it runs */
        if (r < 0)
          return cb_error_wrap(err, "%s:%d: %s", df->file, step->line,
                               step->instr == PARSER_RUN ? "RUN --mount" : "COPY --from");
      }
      name = NULL;
      while (m < step->n_mounts && !name) {
        if (step->mounts[m].from && step->mounts[m].from_stage < 0)
          name = step->mounts[m].from;
        m++;
      }
      if (!name)
        break;
    }
  }
  return 0;
}

int builder_plan_load(const struct builder_options *o, struct cache_store *store,
                      struct builder_plan *plan, struct cb_error *err)
{
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  cleanup_free char *path = NULL;
  struct parser_error pe;
  struct parser_dockerfile *df;
  struct strvec used = STRVEC_INIT;

  memset(plan, 0, sizeof(*plan));
  if (read_dockerfile(o, &text, &path, err) < 0)
    return -1;
  df = parser_parse(display_name(o, path), text.buf, text.len, &pe);
  if (!df)
    return parser_fail(err, &pe);
  plan->df = df;
  if (parser_resolve(df, &o->args, &pe) < 0)
    return parser_fail(err, &pe);
  if (check_images(df, err) < 0)
    return -1;

  plan->steps = xcalloc(df->n_stages, sizeof(*plan->steps));
  plan->scopes = xcalloc(df->n_stages, sizeof(*plan->scopes));
  for (size_t i = 0; i < df->n_stages; i++) {
    const struct parser_stage *st = &df->stages[i];
    if (!st->reachable)
      continue;
    /* A stage built on another starts from where that one ended, an image
     * with its ENV; like BuildKit, a base without a PATH gets the default. */
    if (st->base_stage >= 0)
      parser_vars_copy(&plan->scopes[i], &plan->scopes[st->base_stage]);
    else if (st->base_scratch)
      parser_vars_set(&plan->scopes[i], "PATH", BUILDER_DEFAULT_PATH, PARSER_VAR_ENV);
    else if (image_env(o, store, st, &plan->scopes[i], err) < 0) {
      strvec_clear(&used);
      return cb_error_wrap(err, "%s:%d: FROM", df->file, st->from ? st->from->line : 0);
    }
    if (parser_stage_expand(df, (int)i, &o->args, &plan->scopes[i], &plan->steps[i], &used,
                            &pe) < 0) {
      strvec_clear(&used);
      return parser_fail(err, &pe);
    }
    if (step_images(o, store, df, st, plan->steps[i], err) < 0) {
      strvec_clear(&used);
      return -1;
    }
  }
  /* Global ARGs count as consumed too, as in docker build. */
  for (size_t i = 0; i < df->n_global_args; i++)
    for (size_t k = 0; k < df->global_args[i].n_kvs; k++)
      if (strvec_find(&used, df->global_args[i].kvs[k].key) < 0)
        strvec_push(&used, df->global_args[i].kvs[k].key);
  for (size_t i = 0; i < o->args.n_kvs; i++) {
    const char *k = o->args.kvs[i].key;
    if (strvec_find(&used, k) < 0 && !cb_streq_ci(k, "http_proxy") && !cb_streq_ci(k, "https_proxy") &&
        !cb_streq_ci(k, "ftp_proxy") && !cb_streq_ci(k, "no_proxy") && !cb_streq_ci(k, "all_proxy"))
      strvec_push(&plan->unused_args, k);
  }
  strvec_clear(&used);
  return 0;
}

void builder_plan_release(struct builder_plan *plan)
{
  if (plan->df) {
    for (size_t i = 0; i < plan->df->n_stages; i++) {
      if (plan->steps && plan->steps[i])
        parser_steps_free(plan->steps[i], plan->df->stages[i].n_steps);
      if (plan->scopes)
        parser_vars_release(&plan->scopes[i]);
    }
  }
  free(plan->steps);
  free(plan->scopes);
  strvec_clear(&plan->unused_args);
  parser_dockerfile_free(plan->df);
  memset(plan, 0, sizeof(*plan));
}

int builder_build_arg_add(struct parser_build_args *ba, const char *spec, struct cb_error *err)
{
  const char *eq = strchr(spec, '=');
  if (eq == spec || *spec == '\0')
    return cb_error_set(err, "invalid build arg \"%s\": want KEY=VALUE or KEY", spec);
  if (eq) {
    cleanup_free char *key = xstrndup(spec, (size_t)(eq - spec));
    parser_build_args_set(ba, key, eq + 1);
  } else {
    /* A bare KEY takes its value from the environment; unset, it is left out. */
    const char *v = getenv(spec);
    if (v)
      parser_build_args_set(ba, spec, v);
  }
  return 0;
}
