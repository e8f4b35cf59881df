/*
 * Running a build plan: each stage the target needs, in order, from its
 * base (scratch, an earlier stage, or an image of the local store); the
 * metadata instructions change the config and the history, COPY, ADD and
 * a WORKDIR that does not exist yet make layers.  The target's image is
 * tagged and exported only once every step has succeeded.
 */
#include "builder-internal.h"

#include "progress-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

void stage_state_release(struct stage_state *st)
{
  oci_config_release(&st->config);
  for (size_t i = 0; i < st->n_layers; i++)
    oci_descriptor_release(&st->layers[i]);
  free(st->layers);
  if (st->view_ready)
    fsview_release(&st->view);
  strvec_clear(&st->keys);
  memset(st, 0, sizeof(*st));
}

struct fsview *stage_view(struct stage_state *st, struct cache_store *store)
{
  if (!st->view_ready) {
    fsview_init(&st->view, store, st->layers, st->n_layers);
    st->view_ready = true;
  }
  /* layers may have grown since: the view reads the new ones lazily */
  st->view.layers = st->layers;
  st->view.n_layers = st->n_layers;
  return &st->view;
}

struct oci_tar_stream *builder_layer_stream(struct build_run *run, struct stage_state *st)
{
  if (run->stream == NULL || !run->in_image[st - run->stages] ||
      oci_tar_stream_sync(run->stream, st->layers, st->n_layers) < 0)
    return NULL;
  return run->stream;
}

int builder_add_layer(struct build_run *run, struct stage_state *st, int fd, const char *path,
                      const struct oci_layer_info *info, const char *created_by,
                      struct cb_error *err)
{
  struct oci_descriptor *d;
  if (cache_blob_commit(run->store, fd, path, info->digest, true, err) < 0)
    return -1;
  if (run->stream && run->in_image[st - run->stages])
    oci_tar_stream_end(run->stream, st->n_layers, info->digest, info->size);
  st->layers = xreallocarray(st->layers, st->n_layers + 1, sizeof(*st->layers));
  d = &st->layers[st->n_layers++];
  memset(d, 0, sizeof(*d));
  d->media_type = xstrdup(info->media_type);
  d->digest = xstrdup(info->digest);
  d->size = info->size;
  strvec_push(&st->config.diff_ids, info->diff_id);
  oci_config_add_history(&st->config, run->created, created_by, false);
  return 0;
}

/* ---- the base of a stage ---- */

static void platform_split(const char *platform, struct oci_config *c)
{
  const char *s1 = strchr(platform, '/');
  const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
  free(c->os);
  free(c->architecture);
  free(c->variant);
  c->os = xstrndup(platform, s1 ? (size_t)(s1 - platform) : strlen(platform));
  c->architecture = s1 ? xstrndup(s1 + 1, s2 ? (size_t)(s2 - s1 - 1) : strlen(s1 + 1)) : xstrdup("amd64");
  c->variant = s2 && s2[1] ? xstrdup(s2 + 1) : NULL;
}

/* Load an image of the store: its manifest's layers and its config. */
int builder_image_load(struct cache_store *store, const char *name, struct stage_state *st,
                       char digest[OCI_DIGEST_SIZE], struct cb_error *err)
{
  struct oci_descriptor desc;
  struct oci_manifest m;
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  int r = builder_image_resolve(store, NULL, name, NULL, &desc, err);
  if (r < 0)
    return -1;
  if (r > 0)
    return cb_error_set(err, "image \"%s\" is not in the local store", name);
  memset(&m, 0, sizeof(m));
  snprintf(digest, OCI_DIGEST_SIZE, "%s", desc.digest);
  r = cache_blob_read(store, desc.digest, &text, err);
  oci_descriptor_release(&desc);
  if (r < 0 || oci_manifest_parse(text.buf, text.len, &m, err) < 0)
    return cb_error_wrap(err, "image \"%s\"", name);
  strbuf_reset(&text);
  if (cache_blob_read(store, m.config.digest, &text, err) < 0 ||
      oci_config_parse(text.buf, text.len, &st->config, err) < 0) {
    oci_manifest_release(&m);
    return cb_error_wrap(err, "image \"%s\": config", name);
  }
  st->layers = steal_pointer(&m.layers);
  st->n_layers = m.n_layers;
  m.n_layers = 0;
  oci_manifest_release(&m);
  return 0;
}

static int stage_base(struct build_run *run, int i, struct cb_error *err)
{
  const struct parser_stage *ps = &run->plan->df->stages[i];
  struct stage_state *st = &run->stages[i];
  char digest[OCI_DIGEST_SIZE];
  if (ps->base_stage >= 0) {
    const struct stage_state *from = &run->stages[ps->base_stage];
    oci_config_copy(&st->config, &from->config);
    st->layers = xcalloc(from->n_layers + 1, sizeof(*st->layers));
    for (size_t l = 0; l < from->n_layers; l++)
      oci_descriptor_copy(&st->layers[l], &from->layers[l]);
    st->n_layers = from->n_layers;
    memcpy(st->key, from->key, sizeof(st->key));
    return 0;
  }
  if (ps->base_scratch) {
    const char *platform = ps->platform ? ps->platform : parser_host_platform();
    platform_split(platform, &st->config);
    oci_config_set_env(&st->config, "PATH", BUILDER_DEFAULT_PATH);
    builder_key_base(run, "scratch", platform, st->key);
    return 0;
  }
  if (builder_image_load(run->store, ps->base, st, digest, err) < 0)
    return cb_error_wrap(err, "%s:%d: FROM", run->plan->df->file, ps->from->line);
  builder_key_base(run, "image", digest, st->key);
  if (!oci_config_get_env(&st->config, "PATH"))
    oci_config_set_env(&st->config, "PATH", BUILDER_DEFAULT_PATH);
  return 0;
}

/* ---- the instructions ---- */

/* CMD/ENTRYPOINT/HEALTHCHECK in shell form run under SHELL. */
static void command_words(const struct stage_state *st, const struct parser_step *step,
                          struct strvec *out)
{
  strvec_clear(out);
  if (step->json) {
    strvec_copy(out, &step->args);
    return;
  }
  if (st->config.shell.n)
    strvec_copy(out, &st->config.shell);
  else {
    strvec_push(out, "/bin/sh");
    strvec_push(out, "-c");
  }
  strvec_push(out, step->args.v[0]);
}

/* WORKDIR makes its directory when the image lacks it. */
static int workdir_step(struct build_run *run, int stage, const struct parser_step *step,
                        struct cb_error *err)
{
  struct stage_state *st = &run->stages[stage];
  cleanup_free char *path = builder_dest_path(st->config.working_dir, step->args.v[0]);
  const struct fsview_node *node;
  size_t n = strlen(path);
  if (n > 1 && path[n - 1] == '/')
    path[n - 1] = '\0';
  free(st->config.working_dir);
  st->config.working_dir = xstrdup(path);
  if (strcmp(path, "/") == 0)
    goto empty;
  if (fsview_lookup(stage_view(st, run->store), path + 1, &node, err) < 0)
    return -1;
  if (node && S_ISDIR(node->mode))
    goto empty;
  return builder_mkdir_layer(run, stage, step, path + 1, err);
empty:
  oci_config_add_history(&st->config, run->created, step->text, true);
  return 0;
}

static void health_set(struct oci_config *c, const struct parser_step *step)
{
  if (!c->healthcheck)
    c->healthcheck = xcalloc(1, sizeof(*c->healthcheck));
  strvec_clear(&c->healthcheck->test);
  strvec_copy(&c->healthcheck->test, &step->health.test);
  c->healthcheck->interval = step->health.interval_ns;
  c->healthcheck->timeout = step->health.timeout_ns;
  c->healthcheck->start_period = step->health.start_period_ns;
  c->healthcheck->start_interval = step->health.start_interval_ns;
  c->healthcheck->retries = step->health.retries;
}

static int run_step(struct build_run *run, int stage, const struct parser_step *step,
                    struct step_inputs *in, struct progress *p, int id, struct cb_error *err)
{
  struct stage_state *st = &run->stages[stage];
  struct oci_config *c = &st->config;
  switch (step->instr) {
  case PARSER_COPY:
  case PARSER_ADD:
    if (in->copy)
      return builder_copy_commit(in->copy, err);
    return builder_copy(run, stage, step, err);
  case PARSER_WORKDIR:
    return workdir_step(run, stage, step, err);
  case PARSER_RUN:
    return builder_run_step(run, stage, step, p, id, err);
  case PARSER_ENV:
    for (size_t k = 0; k < step->n_kvs; k++)
      oci_config_set_env(c, step->kvs[k].key, step->kvs[k].value);
    break;
  case PARSER_LABEL:
    for (size_t k = 0; k < step->n_kvs; k++)
      oci_config_set_label(c, step->kvs[k].key, step->kvs[k].value);
    break;
  case PARSER_EXPOSE:
    for (size_t k = 0; k < step->args.n; k++)
      if (strvec_find(&c->exposed_ports, step->args.v[k]) < 0)
        strvec_push(&c->exposed_ports, step->args.v[k]);
    break;
  case PARSER_VOLUME:
    for (size_t k = 0; k < step->args.n; k++)
      if (strvec_find(&c->volumes, step->args.v[k]) < 0)
        strvec_push(&c->volumes, step->args.v[k]);
    break;
  case PARSER_USER:
    free(c->user);
    c->user = xstrdup(step->args.v[0]);
    break;
  case PARSER_STOPSIGNAL:
    free(c->stop_signal);
    c->stop_signal = xstrdup(step->args.v[0]);
    break;
  case PARSER_HEALTHCHECK:
    health_set(c, step);
    break;
  case PARSER_SHELL:
    strvec_clear(&c->shell);
    strvec_copy(&c->shell, &step->args);
    break;
  case PARSER_CMD:
    command_words(st, step, &c->cmd);
    c->has_cmd = true;
    st->cmd_set = true;
    break;
  case PARSER_ENTRYPOINT:
    command_words(st, step, &c->entrypoint);
    c->has_entrypoint = c->entrypoint.n > 0;
    /* An ENTRYPOINT drops a CMD inherited from the base, as in Docker. */
    if (!st->cmd_set) {
      strvec_clear(&c->cmd);
      c->has_cmd = false;
    }
    break;
  case PARSER_ONBUILD:
    strvec_push(&c->onbuild, step->args.v[0]);
    break;
  case PARSER_MAINTAINER:
    free(c->author);
    c->author = xstrdup(step->args.v[0]);
    break;
  case PARSER_ARG:
  case PARSER_FROM:
    break;
  }
  oci_config_add_history(c, run->created, step->text, true);
  return 0;
}

/* ---- the cache ---- */

/* Take a cache entry's result: its config, and its layer. */
static int apply_entry(struct stage_state *st, const struct parser_step *step,
                       struct cache_entry *e, struct cb_error *err)
{
  struct oci_config c;
  memset(&c, 0, sizeof(c));
  if (oci_config_parse(e->config, strlen(e->config), &c, err) < 0)
    return cb_error_wrap(err, "read a cache entry");
  if (e->layer.digest) {
    st->layers = xreallocarray(st->layers, st->n_layers + 1, sizeof(*st->layers));
    oci_descriptor_copy(&st->layers[st->n_layers++], &e->layer);
  }
  oci_config_release(&st->config);
  st->config = c;
  if (step->instr == PARSER_CMD)
    st->cmd_set = true;
  return 0;
}

/* Whether the cache may answer for this stage. */
static bool cache_allowed(const struct build_run *run, int stage)
{
  const char *name = run->plan->df->stages[stage].name;
  char index[24];
  if (run->o->no_cache)
    return false;
  snprintf(index, sizeof(index), "%d", stage);
  for (size_t i = 0; i < run->o->no_cache_filter.n; i++) {
    const char *f = run->o->no_cache_filter.v[i];
    if ((name && strcasecmp(f, name) == 0) || strcmp(f, index) == 0)
      return false;
  }
  return true;
}

/*
 * A step through the cache: its key from the parent's and its inputs; a
 * hit takes the recorded result (1), a miss runs the step and records it
 * (0).  A miss says why under the step.
 */
static int cached_step(struct build_run *run, int stage, size_t index,
                       const struct parser_step *step, struct progress *p, int id,
                       struct cb_error *err)
{
  struct stage_state *st = &run->stages[stage];
  struct step_inputs in;
  struct cache_entry e;
  cleanup_strbuf struct strbuf why = STRBUF_INIT;
  char parent[OCI_DIGEST_SIZE], key[OCI_DIGEST_SIZE];
  size_t layers_before = st->n_layers;
  bool allowed = cache_allowed(run, stage), files_later;
  int rc = -1, r;

  memcpy(parent, st->key, sizeof(parent));
  if (step_inputs_collect(run, stage, step, parent, allowed, &in, err) < 0)
    goto out;
  /* no entry can match: the key is known once the layer is written */
  files_later = in.files_later;
  if (files_later) {
    if (run_step(run, stage, step, &in, p, id, err) < 0 || step_inputs_finish(run, &in, err) < 0)
      goto out;
    step_key(parent, &in, key);
    if (builder_explain(run, stage, index, parent, &in, key, &why, err) < 0)
      goto out;
    if (allowed && (why.len || run->o->explain_cache))
      progress_step_note(p, id, "cache miss: %s",
                         why.len ? why.buf : "no cache entry for this step and parent");
    goto record;
  }
  step_key(parent, &in, key);
  if (builder_explain(run, stage, index, parent, &in, key, &why, err) < 0)
    goto out;
  if (allowed) {
    r = cache_entry_get(run->store, key, &e, err);
    if (r < 0)
      goto out;
    if (r == 0) {
      r = apply_entry(st, step, &e, err);
      cache_entry_release(&e);
      if (r < 0)
        goto out;
      memcpy(st->key, key, sizeof(st->key));
      strvec_push(&st->keys, key);
      if (run->o->explain_cache)
        progress_step_note(p, id, "cache hit: the same inputs as before");
      rc = 1;
      goto out;
    }
    /* a step never built here has nothing to explain, unless asked */
    if (why.len)
      progress_step_note(p, id, "cache miss: %s", why.buf);
    else if (run->o->explain_cache)
      progress_step_note(p, id, "cache miss: no cache entry for these inputs (not built before "
                                "in this store, or pruned)");
  }
  if (run_step(run, stage, step, &in, p, id, err) < 0)
    goto out;
record:
  memset(&e, 0, sizeof(e));
  if (st->n_layers > layers_before) {
    e.layer = st->layers[st->n_layers - 1];
    e.diff_id = st->config.diff_ids.v[st->config.diff_ids.n - 1];
  }
  e.config = oci_config_json(&st->config);
  r = cache_entry_put(run->store, key, &e, err);
  free(e.config);
  if (r < 0 || (files_later && step_inputs_recorded(run, parent, &in, err) < 0))
    goto out;
  memcpy(st->key, key, sizeof(st->key));
  strvec_push(&st->keys, key);
  rc = 0;
out:
  step_inputs_release(&in);
  return rc;
}

/* ---- the image and its outputs ---- */

struct built_image {
  struct oci_descriptor manifest;
  struct oci_manifest parsed;
  char config_digest[OCI_DIGEST_SIZE];
};

static void built_image_release(struct built_image *img)
{
  oci_descriptor_release(&img->manifest);
  oci_manifest_release(&img->parsed);
}

static int commit_image(struct build_run *run, struct stage_state *st, struct built_image *img,
                        struct cb_error *err)
{
  cleanup_free char *config = NULL;
  cleanup_free char *manifest = NULL;
  char digest[OCI_DIGEST_SIZE];
  for (size_t i = 0; i < run->o->labels.n; i++) {
    cleanup_free char *k = xstrdup(run->o->labels.v[i]);
    char *eq = strchr(k, '=');
    *eq = '\0';
    oci_config_set_label(&st->config, k, eq + 1);
  }
  /* The image is as new as its newest step: a build that was all cached
   * gives the same image again. */
  free(st->config.created);
  st->config.created =
      xstrdup(st->config.n_history && st->config.history[st->config.n_history - 1].created
                  ? st->config.history[st->config.n_history - 1].created
                  : run->created);
  config = oci_config_json(&st->config);
  if (cache_blob_put(run->store, config, strlen(config), img->config_digest, err) < 0)
    return -1;
  memset(&img->parsed, 0, sizeof(img->parsed));
  img->parsed.config.media_type = xstrdup(OCI_MEDIA_TYPE_CONFIG);
  img->parsed.config.digest = xstrdup(img->config_digest);
  img->parsed.config.size = (int64_t)strlen(config);
  img->parsed.layers = xcalloc(st->n_layers + 1, sizeof(*img->parsed.layers));
  for (size_t i = 0; i < st->n_layers; i++)
    oci_descriptor_copy(&img->parsed.layers[i], &st->layers[i]);
  img->parsed.n_layers = st->n_layers;
  manifest = oci_manifest_json(&img->parsed);
  if (cache_blob_put(run->store, manifest, strlen(manifest), digest, err) < 0)
    return -1;
  memset(&img->manifest, 0, sizeof(img->manifest));
  img->manifest.media_type = xstrdup(OCI_MEDIA_TYPE_MANIFEST);
  img->manifest.digest = xstrdup(digest);
  img->manifest.size = (int64_t)strlen(manifest);
  return 0;
}

/*
 * An archive output: to stdout, or to the file dest names (output.c).  The
 * stream's output was opened before the build (stream_start) and holds
 * the layers already.
 */
static int export_tar(struct build_run *run, const struct builder_output *out,
                      const struct oci_archive_image *ai, const struct oci_blob_source *src,
                      struct cb_error *err)
{
  bool docker = strcmp(out->type, "docker") == 0;
  struct builder_out_file f;
  int rc;

  if (strcmp(out->dest, "-") == 0)
    return docker ? oci_docker_archive_write(STDOUT_FILENO, ai, 1, src, err)
                  : oci_layout_write_tar(STDOUT_FILENO, ai, 1, src, err);
  if (out == run->stream_output) {
    /* the file is this export's now */
    f = run->stream_file;
    memset(&run->stream_file, 0, sizeof(run->stream_file));
    run->stream_file.fd = -1;
    run->stream_output = NULL;
    rc = oci_tar_stream_write(run->stream, docker, ai, 1, src, err);
  } else {
    if (builder_out_file_open(&f, out->dest, err) < 0)
      return -1;
    rc = docker ? oci_docker_archive_write(f.fd, ai, 1, src, err)
                : oci_layout_write_tar(f.fd, ai, 1, src, err);
  }
  return builder_out_file_finish(&f, rc, err);
}

/* Write an output of the image. */
static int export_one(struct build_run *run, const struct builder_output *out,
                      const struct built_image *img, struct cb_error *err)
{
  struct oci_blob_source src;
  struct oci_archive_image ai;
  struct oci_reference ref;
  struct strvec repo_tags = STRVEC_INIT;
  cleanup_free char *full = NULL;
  const char *tag = NULL;
  int rc = -1;

  cache_blob_source(run->store, &src);
  memset(&ai, 0, sizeof(ai));
  ai.manifest = &img->manifest;
  ai.parsed = &img->parsed;
  if (run->o->tags.n && oci_reference_parse(run->o->tags.v[0], &ref, err) == 0) {
    full = oci_reference_string(&ref);
    tag = ref.tag;
    ai.image_name = full;
    ai.ref_name = tag;
    for (size_t i = 0; i < run->o->tags.n; i++) {
      struct oci_reference r2;
      if (oci_reference_parse(run->o->tags.v[i], &r2, err) == 0) {
        strvec_push_nodup(&repo_tags, oci_reference_familiar(&r2));
        oci_reference_release(&r2);
      }
    }
  } else {
    memset(&ref, 0, sizeof(ref));
  }
  ai.repo_tags = &repo_tags;

  rc = out->tar ? export_tar(run, out, &ai, &src, err)
               : oci_layout_write_dir(out->dest, &ai, 1, &src, err);
  if (rc < 0)
    cb_error_wrap(err, "export to \"%s\"", out->dest);
  oci_reference_release(&ref);
  strvec_clear(&repo_tags);
  return rc;
}

/*
 * The first archive output to a file is opened before the build, so that
 * the image's layers can be copied into it as they are written (see
 * oci_tar_stream); the export writes the rest.  The file is made unnamed
 * (O_TMPFILE) in the directory of the file it replaces (output.c) and
 * linked in only once whole, so that a build that fails or is killed
 * leaves nothing there.  Only an optimization: where such a file cannot
 * be made (or the output is written in place), the export writes the
 * archive as it writes the others.
 */
static void stream_start(struct build_run *run)
{
  const struct parser_dockerfile *df = run->plan->df;
  const struct builder_output *out = NULL;

  for (size_t i = 0; i < run->o->n_outputs && out == NULL; i++)
    if (run->o->outputs[i].tar && strcmp(run->o->outputs[i].dest, "-") != 0)
      out = &run->o->outputs[i];
  if (out == NULL)
    return;
  if (builder_out_file_open_unnamed(&run->stream_file, out->dest) < 0)
    return;
  run->in_image = xcalloc(df->n_stages, sizeof(*run->in_image));
  for (int i = df->target; i >= 0 && !run->in_image[i]; i = df->stages[i].base_stage)
    run->in_image[i] = true;
  run->stream = oci_tar_stream_new(run->stream_file.fd);
  run->stream_output = out;
}

static void stream_end(struct build_run *run)
{
  oci_tar_stream_free(run->stream);
  builder_out_file_release(&run->stream_file);
  free(run->in_image);
}

/* ---- the build ---- */

static char *rfc3339(int64_t t)
{
  char buf[64];
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return xstrdup(buf);
}

static int source_date_epoch(int64_t *out, struct cb_error *err)
{
  const char *s = getenv("SOURCE_DATE_EPOCH");
  char *end;
  long long v;
  *out = -1;
  if (!s || !*s)
    return 0;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (*end || errno || v < 0)
    return cb_error_set(err, "invalid SOURCE_DATE_EPOCH \"%s\": want seconds since 1970", s);
  *out = v;
  return 0;
}

static const char *stage_label(const struct parser_dockerfile *df, size_t i, char *buf,
                               size_t size)
{
  if (df->stages[i].name)
    return df->stages[i].name;
  if (df->n_stages == 1)
    return NULL;
  snprintf(buf, size, "stage-%zu", i);
  return buf;
}

int builder_netns(struct build_run *run, enum runner_network network,
                  struct runner_netns **out, struct cb_error *err)
{
  struct runner_netns **n = network == RUNNER_NET_DEFAULT ? &run->netns
                            : network == RUNNER_NET_NONE  ? &run->netns_none
                                                          : NULL;
  int rc = 0;
  *out = NULL;
  if (n == NULL)
    return 0;
  pthread_mutex_lock(&run->net_lock);
  if (*n == NULL)
    rc = runner_netns_start(n, network, err);
  *out = *n;
  pthread_mutex_unlock(&run->net_lock);
  return rc;
}

/* ---- stages, in parallel ---- */

/* Build one stage: its base, then its steps in order. */
static int build_stage(struct build_run *run, int i, struct progress *p, struct cb_error *err)
{
  const struct parser_dockerfile *df = run->plan->df;
  const struct parser_stage *ps = &df->stages[i];
  char label[32];
  const char *name = stage_label(df, (size_t)i, label, sizeof(label));
  if (stage_base(run, i, err) < 0)
    return -1;
  for (size_t s = 0; s < ps->n_steps; s++) {
    const struct parser_step *step = &run->plan->steps[i][s];
    int id, r;
    if (run->sched && run->sched->failed)
      return 1;
    id = progress_step_add(p, name, (int)s + 1, (int)ps->n_steps, step->text);
    progress_step_start(p, id);
    r = cached_step(run, i, s, step, p, id, err);
    if (r < 0) {
      /* every step error names its place, once */
      const char *instr = parser_instr_name(step->instr);
      size_t n = strlen(instr);
      bool named = strncmp(err->msg, instr, n) == 0 && err->msg[n] == ' ';
      if (!cb_starts_with(err->msg, df->file) && named)
        cb_error_wrap(err, "%s:%d", df->file, step->line);
      else if (!cb_starts_with(err->msg, df->file))
        cb_error_wrap(err, "%s:%d: %s", df->file, step->line, instr);
      progress_step_error(p, id, "%s", err->msg);
      return -1;
    }
    if (r > 0)
      progress_step_cached(p, id);
    else
      progress_step_done(p, id);
  }
  return 0;
}

/* Whether stage i needs stage j built first. */
static bool stage_needs(const struct build_run *run, int i, int j)
{
  const struct parser_stage *ps = &run->plan->df->stages[i];
  if (ps->base_stage == j)
    return true;
  for (size_t s = 0; s < ps->n_steps; s++) {
    const struct parser_step *step = &run->plan->steps[i][s];
    if (step->from_stage == j && (step->instr == PARSER_COPY || step->instr == PARSER_ADD))
      return true;
    for (size_t m = 0; m < step->n_mounts; m++)
      if (step->mounts[m].from_stage == j)
        return true;
  }
  return false;
}

enum stage_status { STAGE_SKIP, STAGE_WAITING, STAGE_RUNNING, STAGE_DONE, STAGE_FAILED };

struct worker_arg {
  struct build_run *run;
  struct progress *p;
};

/* The next stage whose needs are built, or -1; called locked. */
static int next_ready(struct build_run *run)
{
  struct build_sched *sc = run->sched;
  for (int i = 0; i < sc->n; i++) {
    bool ready = sc->status[i] == STAGE_WAITING;
    for (int j = 0; ready && j < sc->n; j++)
      if (j != i && sc->status[j] != STAGE_DONE && sc->status[j] != STAGE_SKIP &&
          stage_needs(run, i, j))
        ready = false;
    if (ready)
      return i;
  }
  return -1;
}

static bool any_waiting(const struct build_sched *sc)
{
  for (int i = 0; i < sc->n; i++)
    if (sc->status[i] == STAGE_WAITING)
      return true;
  return false;
}

static void *stage_worker(void *data)
{
  struct worker_arg *a = data;
  struct build_run *run = a->run;
  struct build_sched *sc = run->sched;
  pthread_mutex_lock(&sc->lock);
  for (;;) {
    int i;
    struct cb_error err;
    int r;
    if (sc->failed || !any_waiting(sc))
      break;
    i = next_ready(run);
    if (i < 0) {
      /* what it needs is being built elsewhere */
      if (sc->running == 0)
        break;
      pthread_cond_wait(&sc->cond, &sc->lock);
      continue;
    }
    sc->status[i] = STAGE_RUNNING;
    sc->running++;
    pthread_mutex_unlock(&sc->lock);
    r = build_stage(run, i, a->p, &err);
    pthread_mutex_lock(&sc->lock);
    sc->running--;
    sc->status[i] = r == 0 ? STAGE_DONE : STAGE_FAILED;
    if (r < 0 && !sc->failed) {
      sc->failed = true;
      sc->err = err;
    }
    pthread_cond_broadcast(&sc->cond);
  }
  pthread_cond_broadcast(&sc->cond);
  pthread_mutex_unlock(&sc->lock);
  return NULL;
}

/*
 * Build every stage the target needs: each as soon as the stages it needs
 * are built, up to --jobs at once.  The first failure stops the others
 * at their next step.
 */
static int build_stages(struct build_run *run, struct progress *p, struct cb_error *err)
{
  const struct parser_dockerfile *df = run->plan->df;
  struct build_sched sc;
  struct worker_arg a = { run, p };
  pthread_t *threads;
  int jobs = run->o->jobs > 0 ? run->o->jobs : cb_cpu_count();
  int started = 0, rc = 0;

  memset(&sc, 0, sizeof(sc));
  pthread_mutex_init(&sc.lock, NULL);
  pthread_cond_init(&sc.cond, NULL);
  sc.n = (int)df->n_stages;
  sc.status = xcalloc(df->n_stages, sizeof(*sc.status));
  for (size_t i = 0; i < df->n_stages; i++)
    sc.status[i] = df->stages[i].reachable ? STAGE_WAITING : STAGE_SKIP;
  run->sched = &sc;
  if (jobs < 1)
    jobs = 1;
  if (jobs > sc.n)
    jobs = sc.n;
  threads = xcalloc((size_t)jobs, sizeof(*threads));
  /* the calling thread is one of the workers */
  for (int t = 1; t < jobs; t++)
    if (pthread_create(&threads[t], NULL, stage_worker, &a) == 0)
      started = t;
    else
      break;
  stage_worker(&a);
  for (int t = 1; t <= started; t++)
    pthread_join(threads[t], NULL);
  if (sc.failed) {
    *err = sc.err;
    rc = -1;
  } else if (any_waiting(&sc)) {
    rc = cb_error_set(err, "build the stages: a stage waits on one that was not built");
  }
  run->sched = NULL;
  free(threads);
  free(sc.status);
  pthread_cond_destroy(&sc.cond);
  pthread_mutex_destroy(&sc.lock);
  return rc;
}

int builder_build(const struct builder_options *o, struct builder_plan *plan,
                  struct cache_store *store, struct progress *p,
                  char image_id[OCI_DIGEST_SIZE], struct cb_error *err)
{
  struct build_run run;
  struct built_image img;
  struct cache_import *imported = NULL;
  const struct parser_dockerfile *df = plan->df;
  int64_t now;
  int rc = -1;

  memset(&run, 0, sizeof(run));
  memset(&img, 0, sizeof(img));
  run.o = o;
  run.plan = plan;
  run.store = store;
  run.ctx.dirfd = -1;
  run.stream_file.fd = -1;
  run.layer_opts = o->layer;
  if (source_date_epoch(&run.epoch, err) < 0)
    return -1;
  run.layer_opts.source_date_epoch = run.epoch;
  now = run.epoch >= 0 ? run.epoch : (int64_t)time(NULL);
  run.created = rfc3339(now);
  run.stages = xcalloc(df->n_stages, sizeof(*run.stages));
  pthread_mutex_init(&run.stat_lock, NULL);
  pthread_mutex_init(&run.net_lock, NULL);
  pthread_mutex_init(&run.spare_lock, NULL);
  cache_steps_tidy(store);
  if (context_open(&run.ctx, o->context, err) < 0)
    goto out;
  if (builder_cache_import(&run, &imported, err) < 0)
    goto out;
  stream_start(&run);

  if (build_stages(&run, p, err) < 0)
    goto out;
  /* No step runs any more, and the process exits after the build
   * (builder_build is cli.c's, once): slirp4netns is not waited for. */
  runner_netns_stop(run.netns);
  runner_netns_stop(run.netns_none);
  if (builder_stat_cache_save(&run, err) < 0)
    goto out;

  {
    int id = progress_step_add(p, NULL, 0, 0, "exporting to image");
    progress_step_start(p, id);
    if (commit_image(&run, &run.stages[df->target], &img, err) < 0) {
      progress_step_error(p, id, "%s", err->msg);
      goto out;
    }
    /* an imported cache's layers the image holds come in now, not later */
    for (size_t i = 0; imported && i < img.parsed.n_layers; i++) {
      int fd = cache_blob_open(store, img.parsed.layers[i].digest, NULL, err);
      if (fd < 0) {
        progress_step_error(p, id, "%s", err->msg);
        goto out;
      }
      close(fd);
    }
    progress_step_note(p, id, "writing image %s", img.config_digest);
    for (size_t i = 0; i < o->n_outputs; i++) {
      if (export_one(&run, &o->outputs[i], &img, err) < 0) {
        progress_step_error(p, id, "%s", err->msg);
        goto out;
      }
      progress_step_note(p, id, "exported %s to %s", o->outputs[i].type, o->outputs[i].dest);
    }
    for (size_t i = 0; i < o->tags.n; i++) {
      if (cache_tag_set(store, o->tags.v[i], &img.manifest, err) < 0) {
        progress_step_error(p, id, "%s", err->msg);
        goto out;
      }
      {
        struct oci_reference ref;
        if (oci_reference_parse(o->tags.v[i], &ref, err) == 0) {
          cleanup_free char *full = oci_reference_string(&ref);
          progress_step_note(p, id, "naming to %s", full);
          oci_reference_release(&ref);
        }
      }
    }
    progress_step_done(p, id);
  }
  if (builder_cache_export(&run, p, err) < 0)
    goto out;
  for (size_t i = 0; i < o->push_names.n; i++) {
    const char *name = o->push_names.v[i];
    char digest[OCI_DIGEST_SIZE];
    cleanup_free char *text = xasprintf("pushing %s", name);
    struct builder_registry reg = o->registry;
    int id = progress_step_add(p, NULL, 0, 0, text);
    /* the build's display owns the terminal */
    reg.quiet = true;
    progress_step_start(p, id);
    if (builder_push(store, &reg, name, NULL, digest, err) < 0) {
      progress_step_error(p, id, "%s", err->msg);
      goto out;
    }
    progress_step_note(p, id, "pushed %s@%s", name, digest);
    progress_step_done(p, id);
  }
  memcpy(image_id, img.config_digest, OCI_DIGEST_SIZE);
  rc = 0;
out:
  builder_cache_import_end(&run, imported);
  stream_end(&run);
  built_image_release(&img);
  for (size_t i = 0; i < df->n_stages; i++)
    stage_state_release(&run.stages[i]);
  free(run.stages);
  free(run.created);
  cache_stat_free(run.stat_cache);
  pthread_mutex_destroy(&run.stat_lock);
  runner_netns_free(run.netns);
  runner_netns_free(run.netns_none);
  pthread_mutex_destroy(&run.net_lock);
  builder_step_dir_cleanup(&run);
  pthread_mutex_destroy(&run.spare_lock);
  context_close(&run.ctx);
  return rc;
}
