/*
 * Phase 2: build args, the global ARG scope, the stage graph and variable
 * substitution, following BuildKit's dockerfile2llb:
 *  - global ARGs (before the first FROM) are visible to FROM lines only,
 *    unless a stage declares them again with ARG;
 *  - a stage's ARG takes effect from its line on; its value is the
 *    --build-arg, else its default, else the global ARG's value;
 *  - ENV always wins over an ARG of the same name;
 *  - every word of one instruction is substituted with the scope as it was
 *    before that instruction (ENV a=1 b=$a gives b the old a).
 */
#include "parser-internal.h"

#include <strings.h>
#include <sys/utsname.h>

/* ---- variables ---- */

void parser_vars_set(struct parser_vars *vars, const char *name, const char *value,
                     enum parser_var_kind kind)
{
  for (size_t i = 0; i < vars->n; i++) {
    struct parser_var *v = &vars->v[i];
    if (v->kind == kind && strcmp(v->name, name) == 0) {
      free(v->value);
      v->value = value ? xstrdup(value) : NULL;
      return;
    }
  }
  CB_GROW(vars->v, vars->n + 1, vars->alloc);
  vars->v[vars->n].name = xstrdup(name);
  vars->v[vars->n].value = value ? xstrdup(value) : NULL;
  vars->v[vars->n].kind = kind;
  vars->n++;
}

const char *parser_vars_get(const struct parser_vars *vars, const char *name)
{
  const char *arg = NULL;
  for (size_t i = 0; i < vars->n; i++) {
    const struct parser_var *v = &vars->v[i];
    if (strcmp(v->name, name) != 0 || !v->value)
      continue;
    if (v->kind == PARSER_VAR_ENV)
      return v->value;
    arg = v->value;
  }
  return arg;
}

void parser_vars_copy(struct parser_vars *dst, const struct parser_vars *src)
{
  for (size_t i = 0; i < src->n; i++)
    parser_vars_set(dst, src->v[i].name, src->v[i].value, src->v[i].kind);
}

void parser_vars_release(struct parser_vars *vars)
{
  for (size_t i = 0; i < vars->n; i++) {
    free(vars->v[i].name);
    free(vars->v[i].value);
  }
  free(vars->v);
  vars->v = NULL;
  vars->n = vars->alloc = 0;
}

/* ---- build args and platforms ---- */

void parser_build_args_set(struct parser_build_args *ba, const char *key, const char *value)
{
  for (size_t i = 0; i < ba->n_kvs; i++) {
    if (strcmp(ba->kvs[i].key, key) == 0) {
      free(ba->kvs[i].value);
      ba->kvs[i].value = xstrdup(value);
      return;
    }
  }
  ba->kvs = xreallocarray(ba->kvs, ba->n_kvs + 1, sizeof(*ba->kvs));
  ba->kvs[ba->n_kvs].key = xstrdup(key);
  ba->kvs[ba->n_kvs].value = xstrdup(value);
  ba->n_kvs++;
}

void parser_build_args_release(struct parser_build_args *ba)
{
  for (size_t i = 0; i < ba->n_kvs; i++) {
    free(ba->kvs[i].key);
    free(ba->kvs[i].value);
  }
  free(ba->kvs);
  ba->kvs = NULL;
  ba->n_kvs = 0;
}

static const char *build_arg(const struct parser_build_args *ba, const char *key)
{
  for (size_t i = 0; ba && i < ba->n_kvs; i++)
    if (strcmp(ba->kvs[i].key, key) == 0)
      return ba->kvs[i].value;
  return NULL;
}

const char *parser_host_platform(void)
{
  static char platform[sizeof(((struct utsname *)0)->machine) + 16];
  struct utsname u;
  const char *arch = "amd64", *variant = "";
  if (platform[0])
    return platform;
  if (uname(&u) == 0) {
    if (strcmp(u.machine, "x86_64") == 0)
      arch = "amd64";
    else if (strcmp(u.machine, "aarch64") == 0 || strcmp(u.machine, "arm64") == 0)
      arch = "arm64";
    else if (strncmp(u.machine, "armv7", 5) == 0) {
      arch = "arm";
      variant = "/v7";
    } else if (strncmp(u.machine, "armv6", 5) == 0) {
      arch = "arm";
      variant = "/v6";
    } else if (strcmp(u.machine, "i686") == 0 || strcmp(u.machine, "i386") == 0)
      arch = "386";
    else if (strcmp(u.machine, "ppc64le") == 0 || strcmp(u.machine, "s390x") == 0 ||
             strcmp(u.machine, "riscv64") == 0 || strcmp(u.machine, "mips64") == 0)
      arch = u.machine;
  }
  snprintf(platform, sizeof(platform), "linux/%s%s", arch, variant);
  return platform;
}

/* Set PREFIXPLATFORM, PREFIXOS, PREFIXARCH and PREFIXVARIANT from "os/arch[/variant]". */
static void set_platform_args(struct parser_vars *vars, const char *prefix, const char *platform)
{
  char name[32];
  const char *s1 = strchr(platform, '/');
  const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
  cleanup_free char *os = xstrndup(platform, s1 ? (size_t)(s1 - platform) : strlen(platform));
  cleanup_free char *arch =
      s1 ? xstrndup(s1 + 1, s2 ? (size_t)(s2 - s1 - 1) : strlen(s1 + 1)) : xstrdup("");
  snprintf(name, sizeof(name), "%sPLATFORM", prefix);
  parser_vars_set(vars, name, platform, PARSER_VAR_ARG);
  snprintf(name, sizeof(name), "%sOS", prefix);
  parser_vars_set(vars, name, os, PARSER_VAR_ARG);
  snprintf(name, sizeof(name), "%sARCH", prefix);
  parser_vars_set(vars, name, arch, PARSER_VAR_ARG);
  snprintf(name, sizeof(name), "%sVARIANT", prefix);
  parser_vars_set(vars, name, s2 ? s2 + 1 : "", PARSER_VAR_ARG);
}

static const char *const proxy_args[] = {
  "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
  "ftp_proxy",  "NO_PROXY",   "no_proxy",    "ALL_PROXY",   "all_proxy",
};

void parser_run_env(const struct parser_vars *scope, const struct parser_build_args *ba,
                    struct strvec *env)
{
  for (size_t i = 0; i < CB_ARRAY_SIZE(proxy_args); i++) {
    const char *v = build_arg(ba, proxy_args[i]);
    if (v && !parser_vars_get(scope, proxy_args[i]))
      strvec_pushf(env, "%s=%s", proxy_args[i], v);
  }
  for (size_t i = 0; i < scope->n; i++) {
    const char *v = parser_vars_get(scope, scope->v[i].name);
    bool dup = false;
    if (!v)
      continue;
    for (size_t j = 0; j < i; j++)
      dup |= strcmp(scope->v[j].name, scope->v[i].name) == 0;
    if (!dup)
      strvec_pushf(env, "%s=%s", scope->v[i].name, v);
  }
}

/* ---- substitution helpers ---- */

static int expand_in_place(const struct parser_dockerfile *df, int line, char **word,
                           const struct parser_vars *scope, const char *what,
                           struct parser_error *err)
{
  struct strbuf out = STRBUF_INIT;
  char errbuf[900];
  if (!*word)
    return 0;
  if (parser_expand_word(*word, df->directives.escape, scope, &out, errbuf, sizeof(errbuf)) < 0) {
    strbuf_release(&out);
    return parser_error_set(err, df->file, line, "%s: %s", what, errbuf);
  }
  free(*word);
  *word = strbuf_detach(&out, NULL);
  return 0;
}

/* The meta ARG scope: platforms, then the global ARGs in order. */
static int meta_scope(struct parser_dockerfile *df, const struct parser_build_args *ba,
                      struct parser_vars *meta, struct parser_error *err)
{
  const char *build = ba && ba->build_platform ? ba->build_platform : parser_host_platform();
  const char *target = ba && ba->target_platform ? ba->target_platform : build;
  size_t alloc = 0;
  set_platform_args(meta, "BUILD", build);
  set_platform_args(meta, "TARGET", target);
  for (size_t i = 0; i < meta->n; i++) {
    CB_GROW(df->meta_args, df->n_meta_args + 1, alloc);
    df->meta_args[df->n_meta_args].key = xstrdup(meta->v[i].name);
    df->meta_args[df->n_meta_args].value = xstrdup(meta->v[i].value);
    df->n_meta_args++;
  }
  for (size_t i = 0; i < df->n_global_args; i++) {
    const struct parser_step *st = &df->global_args[i];
    struct parser_kv *kvs = xcalloc(st->n_kvs ? st->n_kvs : 1, sizeof(*kvs));
    int rc = 0;
    for (size_t k = 0; k < st->n_kvs; k++) {
      kvs[k].key = xstrdup(st->kvs[k].key);
      kvs[k].value = st->kvs[k].value ? xstrdup(st->kvs[k].value) : NULL;
      if (rc == 0)
        rc = expand_in_place(df, st->line, &kvs[k].key, meta, "ARG", err);
      if (rc == 0)
        rc = expand_in_place(df, st->line, &kvs[k].value, meta, "ARG", err);
    }
    for (size_t k = 0; k < st->n_kvs; k++) {
      const char *given = build_arg(ba, kvs[k].key);
      const char *value = given ? given : kvs[k].value;
      if (rc == 0) {
        parser_vars_set(meta, kvs[k].key, value, PARSER_VAR_ARG);
        CB_GROW(df->meta_args, df->n_meta_args + 1, alloc);
        df->meta_args[df->n_meta_args].key = xstrdup(kvs[k].key);
        df->meta_args[df->n_meta_args].value = value ? xstrdup(value) : NULL;
        df->n_meta_args++;
      }
      free(kvs[k].key);
      free(kvs[k].value);
    }
    free(kvs);
    if (rc < 0)
      return -1;
  }
  return 0;
}

/* ---- the stage graph ---- */

/*
 * The stage a --from or from= names: a stage name, or a stage index
 * (digits only); NULL-safe.  Returns the index or -1 for an image.
 */
static int stage_ref(const struct parser_dockerfile *df, const char *name, int line,
                     const char *what, struct parser_error *err, bool *failed)
{
  int idx = parser_stage_find(df, name);
  if (idx >= 0)
    return idx;
  if (name[0] && strspn(name, "0123456789") == strlen(name)) {
    long n = strlen(name) > 9 ? -1 : atol(name);
    if (n < 0 || (size_t)n >= df->n_stages) {
      parser_error_set(err, df->file, line, "%s: invalid stage index %s: there are %zu stages",
                       what, name, df->n_stages);
      *failed = true;
      return -1;
    }
    return (int)n;
  }
  return -1;
}

/*
 * BuildKit refuses variables in --from and in a mount's from=: the stage
 * graph must be known before any stage's variables are.  A value that
 * substitution would change is an error, as there.
 */
static int from_check(const struct parser_dockerfile *df, const char *raw, int line,
                      const char *what, struct parser_error *err)
{
  struct parser_vars none = PARSER_VARS_INIT;
  cleanup_strbuf struct strbuf out = STRBUF_INIT;
  char errbuf[512];
  if (parser_expand_word(raw, df->directives.escape, &none, &out, errbuf, sizeof(errbuf)) < 0 ||
      strcmp(out.buf, raw) != 0)
    return parser_error_set(err, df->file, line,
                            "%s=%s: variable expansion is not supported for --from; define a "
                            "stage with FROM using a global ARG instead",
                            what, raw);
  return 0;
}

static int resolve_stage_refs(struct parser_dockerfile *df, struct parser_stage *st,
                              struct parser_error *err)
{
  for (size_t s = 0; s < st->n_steps; s++) {
    struct parser_step *step = &st->steps[s];
    bool failed = false;
    if (step->from) {
      if (from_check(df, step->from, step->line, "COPY --from", err) < 0)
        return -1;
      step->from_stage = stage_ref(df, step->from, step->line, "COPY --from", err, &failed);
      if (failed)
        return -1;
    }
    /* Parse the mounts as written to learn their from= stages; one that
     * only parses after substitution is checked then. */
    for (size_t m = 0; m < step->n_mounts; m++)
      parser_mount_release(&step->mounts[m]);
    free(step->mounts);
    step->mounts = xcalloc(step->mount_specs.n + 1, sizeof(*step->mounts));
    step->n_mounts = 0;
    for (size_t m = 0; m < step->mount_specs.n; m++) {
      struct parser_mount *mnt = &step->mounts[step->n_mounts];
      char errbuf[512];
      if (parser_mount_parse(step->mount_specs.v[m], mnt, errbuf, sizeof(errbuf)) < 0)
        continue;
      step->n_mounts++;
      if (!mnt->from)
        continue;
      if (from_check(df, mnt->from, step->line, "RUN --mount from", err) < 0)
        return -1;
      mnt->from_stage = stage_ref(df, mnt->from, step->line, "RUN --mount from", err, &failed);
      if (failed)
        return -1;
    }
  }
  return 0;
}

/* Stages that stage i needs directly, appended to deps. */
static void stage_deps(const struct parser_dockerfile *df, int i, int *deps, size_t *n)
{
  const struct parser_stage *st = &df->stages[i];
  if (st->base_stage >= 0)
    deps[(*n)++] = st->base_stage;
  for (size_t s = 0; s < st->n_steps; s++) {
    const struct parser_step *step = &st->steps[s];
    if (step->from_stage >= 0)
      deps[(*n)++] = step->from_stage;
    for (size_t m = 0; m < step->n_mounts; m++)
      if (step->mounts[m].from_stage >= 0)
        deps[(*n)++] = step->mounts[m].from_stage;
  }
}

static size_t stage_dep_bound(const struct parser_stage *st)
{
  size_t n = 1;
  for (size_t s = 0; s < st->n_steps; s++)
    n += 1 + st->steps[s].n_mounts;
  return n;
}

/* Depth-first walk: mark reachable stages, find cycles. */
static int visit(struct parser_dockerfile *df, int i, char *color, struct parser_error *err)
{
  struct parser_stage *st = &df->stages[i];
  int *deps;
  size_t n = 0;
  if (color[i] == 2)
    return 0;
  if (color[i] == 1)
    return parser_error_set(err, df->file, st->from->line,
                            "circular dependency detected on stage \"%s\"",
                            st->name ? st->name : st->base);
  color[i] = 1;
  st->reachable = true;
  deps = xcalloc(stage_dep_bound(st), sizeof(*deps));
  stage_deps(df, i, deps, &n);
  for (size_t d = 0; d < n; d++) {
    if (visit(df, deps[d], color, err) < 0) {
      free(deps);
      return -1;
    }
  }
  free(deps);
  color[i] = 2;
  return 0;
}

int parser_resolve(struct parser_dockerfile *df, const struct parser_build_args *ba,
                   struct parser_error *err)
{
  struct parser_vars meta = PARSER_VARS_INIT;
  cleanup_free char *color = NULL;
  int rc = -1;

  memset(err, 0, sizeof(*err));
  if (meta_scope(df, ba, &meta, err) < 0)
    goto out;
  for (size_t i = 0; i < df->n_stages; i++) {
    struct parser_stage *st = &df->stages[i];
    free(st->base);
    st->base = xstrdup(st->from->args.v[0]);
    if (expand_in_place(df, st->from->line, &st->base, &meta, "FROM", err) < 0)
      goto out;
    if (st->base[0] == '\0') {
      parser_error_set(err, df->file, st->from->line, "base name (%s) should not be blank",
                       st->from->args.v[0]);
      goto out;
    }
    free(st->platform);
    st->platform = NULL;
    if (st->from->platform) {
      st->platform = xstrdup(st->from->platform);
      if (expand_in_place(df, st->from->line, &st->platform, &meta, "FROM --platform", err) < 0)
        goto out;
    }
    st->base_stage = -1;
    st->base_scratch = strcmp(st->base, "scratch") == 0;
    /* FROM sees only the stages defined before it. */
    for (size_t j = 0; j < i; j++)
      if (df->stages[j].name && cb_streq_ci(df->stages[j].name, st->base))
        st->base_stage = (int)j;
    st->reachable = false;
  }
  for (size_t i = 0; i < df->n_stages; i++)
    if (resolve_stage_refs(df, &df->stages[i], err) < 0)
      goto out;

  df->target = (int)df->n_stages - 1;
  if (ba && ba->target) {
    df->target = parser_stage_find(df, ba->target);
    if (df->target < 0) {
      parser_error_set(err, df->file, 0, "target stage \"%s\" could not be found", ba->target);
      goto out;
    }
  }
  color = xcalloc(df->n_stages, 1);
  if (visit(df, df->target, color, err) < 0)
    goto out;
  rc = 0;
out:
  parser_vars_release(&meta);
  return rc;
}

/* ---- expanding a stage ---- */

static void heredocs_copy(const struct parser_step *src, struct parser_step *dst)
{
  for (size_t h = 0; h < dst->n_heredocs && h < src->n_heredocs; h++) {
    free(dst->heredocs[h].content);
    dst->heredocs[h].content = xstrdup(src->heredocs[h].content);
  }
}

static int step_dup(const struct parser_dockerfile *df, const struct parser_step *src,
                    struct parser_step *dst, struct parser_error *err)
{
  /* Parsing is deterministic: a copy is the same text parsed again, plus
   * what came from the following lines (heredoc bodies). */
  if (parser_instruction_parse(df->file, src->text, df->directives.escape, src->line,
                               src->end_line, dst, err) < 0)
    return -1;
  heredocs_copy(src, dst);
  if (src->trigger && dst->trigger) {
    heredocs_copy(src->trigger, dst->trigger);
    free(dst->args.v[0]);
    dst->args.v[0] = xstrdup(src->args.v[0]);
  }
  dst->from_stage = src->from_stage;
  return 0;
}

static int expand_kvs(const struct parser_dockerfile *df, struct parser_step *step,
                      const struct parser_vars *scope, struct parser_error *err)
{
  const char *what = parser_instr_name(step->instr);
  for (size_t k = 0; k < step->n_kvs; k++) {
    if (expand_in_place(df, step->line, &step->kvs[k].key, scope, what, err) < 0 ||
        expand_in_place(df, step->line, &step->kvs[k].value, scope, what, err) < 0)
      return -1;
  }
  return 0;
}

static int expand_args(const struct parser_dockerfile *df, struct parser_step *step,
                       const struct parser_vars *scope, struct parser_error *err)
{
  const char *what = parser_instr_name(step->instr);
  for (size_t i = 0; i < step->args.n; i++)
    if (expand_in_place(df, step->line, &step->args.v[i], scope, what, err) < 0)
      return -1;
  return 0;
}

static bool chmod_valid(const char *s)
{
  size_t n = strlen(s);
  if (n == 0 || n > 5 || strspn(s, "01234567") != n)
    return false;
  return strtol(s, NULL, 8) <= 07777;
}

static bool checksum_valid(const char *s)
{
  static const struct {
    const char *alg;
    size_t hex;
  } algs[] = { { "sha256:", 64 }, { "sha384:", 96 }, { "sha512:", 128 } };
  for (size_t i = 0; i < CB_ARRAY_SIZE(algs); i++) {
    size_t n = strlen(algs[i].alg);
    if (strncmp(s, algs[i].alg, n) == 0)
      return strlen(s + n) == algs[i].hex && strspn(s + n, "0123456789abcdef") == algs[i].hex;
  }
  return false;
}

static int expand_copy(const struct parser_dockerfile *df, struct parser_step *step,
                       const struct parser_vars *scope, struct parser_error *err)
{
  const char *what = parser_instr_name(step->instr);
  char errbuf[900];
  if (expand_args(df, step, scope, err) < 0 ||
      expand_in_place(df, step->line, &step->chown, scope, what, err) < 0 ||
      expand_in_place(df, step->line, &step->chmod, scope, what, err) < 0 ||
      expand_in_place(df, step->line, &step->checksum, scope, what, err) < 0)
    return -1;
  for (size_t i = 0; i < step->excludes.n; i++)
    if (expand_in_place(df, step->line, &step->excludes.v[i], scope, what, err) < 0)
      return -1;
  if (step->chmod && !chmod_valid(step->chmod))
    return parser_error_set(err, df->file, step->line,
                            "%s: invalid --chmod \"%s\": want an octal mode such as 0755", what,
                            step->chmod);
  if (step->checksum && !checksum_valid(step->checksum))
    return parser_error_set(err, df->file, step->line,
                            "ADD: invalid --checksum \"%s\": want sha256:<64 hex digits>",
                            step->checksum);
  for (size_t h = 0; h < step->n_heredocs; h++) {
    struct strbuf out = STRBUF_INIT;
    struct parser_heredoc *doc = &step->heredocs[h];
    if (!doc->expand)
      continue;
    if (parser_expand_heredoc(doc->content, scope, &out, errbuf, sizeof(errbuf)) < 0) {
      strbuf_release(&out);
      return parser_error_set(err, df->file, step->line, "%s: heredoc \"%s\": %s", what,
                              doc->name, errbuf);
    }
    free(doc->content);
    doc->content = strbuf_detach(&out, NULL);
  }
  return 0;
}

static int expand_expose(const struct parser_dockerfile *df, struct parser_step *step,
                         const struct parser_vars *scope, struct parser_error *err)
{
  struct strvec ports = STRVEC_INIT;
  char errbuf[900];
  for (size_t i = 0; i < step->args.n; i++) {
    struct strvec words = STRVEC_INIT;
    int rc = parser_expand_words(step->args.v[i], df->directives.escape, scope, &words, errbuf,
                                 sizeof(errbuf));
    for (size_t w = 0; rc == 0 && w < words.n; w++)
      rc = parser_port_parse(words.v[w], &ports, errbuf, sizeof(errbuf));
    strvec_clear(&words);
    if (rc < 0) {
      strvec_clear(&ports);
      return parser_error_set(err, df->file, step->line, "EXPOSE: %s", errbuf);
    }
  }
  strvec_clear(&step->args);
  step->args = ports;
  return 0;
}

static int expand_run(const struct parser_dockerfile *df, struct parser_step *step,
                      const struct parser_vars *scope, struct parser_error *err)
{
  char errbuf[900];
  step->mounts = xcalloc(step->mount_specs.n ? step->mount_specs.n : 1, sizeof(*step->mounts));
  for (size_t m = 0; m < step->mount_specs.n; m++) {
    struct parser_mount *mnt = &step->mounts[m];
    if (expand_in_place(df, step->line, &step->mount_specs.v[m], scope, "RUN --mount", err) < 0)
      return -1;
    if (parser_mount_parse(step->mount_specs.v[m], mnt, errbuf, sizeof(errbuf)) < 0)
      return parser_error_set(err, df->file, step->line, "RUN --mount=%s: %s",
                              step->mount_specs.v[m], errbuf);
    step->n_mounts++;
    if (mnt->from) {
      bool failed = false;
      mnt->from_stage = stage_ref(df, mnt->from, step->line, "RUN --mount from", err, &failed);
      if (failed)
        return -1;
    }
  }
  return 0;
}

/* ARG in a stage: declare, with a value from --build-arg, the default or
 * the global ARG of the same name. */
static void apply_arg(const struct parser_dockerfile *df, struct parser_step *step,
                      const struct parser_build_args *ba, struct parser_vars *scope,
                      struct strvec *used)
{
  for (size_t k = 0; k < step->n_kvs; k++) {
    const char *key = step->kvs[k].key;
    const char *value = build_arg(ba, key);
    if (value) {
      if (used && strvec_find(used, key) < 0)
        strvec_push(used, key);
    } else if (step->kvs[k].value) {
      value = step->kvs[k].value;
    } else {
      /* The global ARG of that name, platform ARGs included. */
      for (size_t m = 0; m < df->n_meta_args; m++)
        if (strcmp(df->meta_args[m].key, key) == 0)
          value = df->meta_args[m].value;
    }
    parser_vars_set(scope, key, value, PARSER_VAR_ARG);
    /* The step now records the value in effect, not just the default. */
    if (value != step->kvs[k].value) {
      char *v = value ? xstrdup(value) : NULL;
      free(step->kvs[k].value);
      step->kvs[k].value = v;
    }
  }
}

static int expand_step(const struct parser_dockerfile *df, struct parser_step *step,
                       const struct parser_build_args *ba, struct parser_vars *scope,
                       struct strvec *used, struct parser_error *err)
{
  const char *what = parser_instr_name(step->instr);
  switch (step->instr) {
  case PARSER_ARG:
    if (expand_kvs(df, step, scope, err) < 0)
      return -1;
    apply_arg(df, step, ba, scope, used);
    return 0;
  case PARSER_ENV:
    if (expand_kvs(df, step, scope, err) < 0)
      return -1;
    for (size_t k = 0; k < step->n_kvs; k++)
      parser_vars_set(scope, step->kvs[k].key, step->kvs[k].value, PARSER_VAR_ENV);
    return 0;
  case PARSER_LABEL:
    return expand_kvs(df, step, scope, err);
  case PARSER_COPY:
  case PARSER_ADD:
    return expand_copy(df, step, scope, err);
  case PARSER_EXPOSE:
    return expand_expose(df, step, scope, err);
  case PARSER_WORKDIR:
  case PARSER_USER:
  case PARSER_VOLUME:
    if (expand_args(df, step, scope, err) < 0)
      return -1;
    for (size_t i = 0; i < step->args.n; i++)
      if (step->args.v[i][0] == '\0')
        return parser_error_set(err, df->file, step->line, "%s: \"%s\" expands to an empty value",
                                what, step->text);
    return 0;
  case PARSER_STOPSIGNAL:
    if (expand_args(df, step, scope, err) < 0)
      return -1;
    if (!parser_signal_valid(step->args.v[0]))
      return parser_error_set(err, df->file, step->line, "STOPSIGNAL: invalid signal \"%s\"",
                              step->args.v[0]);
    return 0;
  case PARSER_RUN:
    parser_run_env(scope, ba, &step->run_env);
    return expand_run(df, step, scope, err);
  default:
    /* CMD, ENTRYPOINT, SHELL, HEALTHCHECK: the shell substitutes at run
     * time; ONBUILD triggers are substituted in the child build;
     * MAINTAINER is taken as written. */
    return 0;
  }
}

int parser_stage_expand(const struct parser_dockerfile *df, int index,
                        const struct parser_build_args *ba, struct parser_vars *scope,
                        struct parser_step **out, struct strvec *used_args,
                        struct parser_error *err)
{
  const struct parser_stage *st;
  struct parser_step *steps;
  memset(err, 0, sizeof(*err));
  *out = NULL;
  if (index < 0 || (size_t)index >= df->n_stages)
    return parser_error_set(err, df->file, 0, "no stage %d", index);
  st = &df->stages[index];
  steps = xcalloc(st->n_steps ? st->n_steps : 1, sizeof(*steps));
  for (size_t i = 0; i < st->n_steps; i++) {
    if (step_dup(df, &st->steps[i], &steps[i], err) < 0 ||
        expand_step(df, &steps[i], ba, scope, used_args, err) < 0) {
      parser_steps_free(steps, i + 1);
      return -1;
    }
  }
  *out = steps;
  return 0;
}
