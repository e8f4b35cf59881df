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

int builder_add_layer(struct build_run *run, struct stage_state *st, int fd, const char *path,
                      const struct oci_layer_info *info, const char *created_by,
                      struct cb_error *err)
{
  struct oci_descriptor *d;
  if (cache_blob_commit(run->store, fd, path, info->digest, true, err) < 0)
    return -1;
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
static int load_image(struct cache_store *store, const char *name, struct stage_state *st,
                      struct cb_error *err)
{
  struct oci_descriptor desc;
  struct oci_manifest m;
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  int r = cache_tag_get(store, name, &desc, err);
  if (r < 0)
    return -1;
  if (r > 0)
    return cb_error_set(err, "image \"%s\" is not in the local store (pulling from registries is not supported yet)",
                        name);
  memset(&m, 0, sizeof(m));
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
  if (ps->base_stage >= 0) {
    const struct stage_state *from = &run->stages[ps->base_stage];
    oci_config_copy(&st->config, &from->config);
    st->layers = xcalloc(from->n_layers + 1, sizeof(*st->layers));
    for (size_t l = 0; l < from->n_layers; l++)
      oci_descriptor_copy(&st->layers[l], &from->layers[l]);
    st->n_layers = from->n_layers;
    return 0;
  }
  if (ps->base_scratch) {
    platform_split(ps->platform ? ps->platform : parser_host_platform(), &st->config);
    oci_config_set_env(&st->config, "PATH", BUILDER_DEFAULT_PATH);
    return 0;
  }
  if (load_image(run->store, ps->base, st, err) < 0)
    return cb_error_wrap(err, "%s:%d: FROM", run->plan->df->file, ps->from->line);
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
                    struct progress *p, int id, struct cb_error *err)
{
  struct stage_state *st = &run->stages[stage];
  struct oci_config *c = &st->config;
  switch (step->instr) {
  case PARSER_COPY:
  case PARSER_ADD:
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
  free(st->config.created);
  st->config.created = xstrdup(run->created);
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

/* Write an output to a temporary file beside dest, renamed on success, so
 * that a failed build leaves no half-written archive. */
static int export_one(struct build_run *run, const struct builder_output *out,
                      const struct built_image *img, struct cb_error *err)
{
  struct oci_blob_source src;
  struct oci_archive_image ai;
  struct oci_reference ref;
  struct strvec repo_tags = STRVEC_INIT;
  cleanup_free char *full = NULL;
  cleanup_free char *tmp = NULL;
  const char *tag = NULL;
  int fd = -1, rc = -1;

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

  if (!out->tar) {
    rc = oci_layout_write_dir(out->dest, &ai, 1, &src, err);
    goto done;
  }
  if (strcmp(out->dest, "-") == 0) {
    fd = STDOUT_FILENO;
  } else {
    tmp = xasprintf("%s.cbuild-tmp-%d", out->dest, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      cb_error_errno(err, errno, "create \"%s\"", tmp);
      goto done;
    }
  }
  if (strcmp(out->type, "docker") == 0)
    rc = oci_docker_archive_write(fd, &ai, 1, &src, err);
  else
    rc = oci_layout_write_tar(fd, &ai, 1, &src, err);
  if (fd != STDOUT_FILENO) {
    if (rc == 0 && fsync(fd) < 0)
      rc = cb_error_errno(err, errno, "write \"%s\"", out->dest);
    close(fd);
    if (rc == 0 && rename(tmp, out->dest) < 0)
      rc = cb_error_errno(err, errno, "rename \"%s\" to \"%s\"", tmp, out->dest);
    if (rc < 0)
      unlink(tmp);
  }
done:
  if (rc < 0)
    cb_error_wrap(err, "export to \"%s\"", out->dest);
  oci_reference_release(&ref);
  strvec_clear(&repo_tags);
  return rc;
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

int builder_build(const struct builder_options *o, struct builder_plan *plan,
                  struct cache_store *store, struct progress *p,
                  char image_id[OCI_DIGEST_SIZE], struct cb_error *err)
{
  struct build_run run;
  struct built_image img;
  const struct parser_dockerfile *df = plan->df;
  int64_t now;
  int rc = -1;

  memset(&run, 0, sizeof(run));
  memset(&img, 0, sizeof(img));
  run.o = o;
  run.plan = plan;
  run.store = store;
  run.ctx.dirfd = -1;
  run.layer_opts = o->layer;
  if (source_date_epoch(&run.epoch, err) < 0)
    return -1;
  run.layer_opts.source_date_epoch = run.epoch;
  now = run.epoch >= 0 ? run.epoch : (int64_t)time(NULL);
  run.created = rfc3339(now);
  run.stages = xcalloc(df->n_stages, sizeof(*run.stages));
  if (context_open(&run.ctx, o->context, err) < 0)
    goto out;

  for (size_t i = 0; i < df->n_stages; i++) {
    const struct parser_stage *ps = &df->stages[i];
    char label[32];
    const char *name = stage_label(df, i, label, sizeof(label));
    if (!ps->reachable)
      continue;
    if (stage_base(&run, (int)i, err) < 0)
      goto out;
    for (size_t s = 0; s < ps->n_steps; s++) {
      const struct parser_step *step = &plan->steps[i][s];
      int id = progress_step_add(p, name, (int)s + 1, (int)ps->n_steps, step->text);
      progress_step_start(p, id);
      if (run_step(&run, (int)i, step, p, id, err) < 0) {
        /* every step error names its place, once */
        const char *instr = parser_instr_name(step->instr);
        size_t n = strlen(instr);
        bool named = strncmp(err->msg, instr, n) == 0 && err->msg[n] == ' ';
        if (!cb_starts_with(err->msg, df->file) && named)
          cb_error_wrap(err, "%s:%d", df->file, step->line);
        else if (!cb_starts_with(err->msg, df->file))
          cb_error_wrap(err, "%s:%d: %s", df->file, step->line, instr);
        progress_step_error(p, id, "%s", err->msg);
        goto out;
      }
      progress_step_done(p, id);
    }
  }

  {
    int id = progress_step_add(p, NULL, 0, 0, "exporting to image");
    progress_step_start(p, id);
    if (commit_image(&run, &run.stages[df->target], &img, err) < 0) {
      progress_step_error(p, id, "%s", err->msg);
      goto out;
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
  memcpy(image_id, img.config_digest, OCI_DIGEST_SIZE);
  rc = 0;
out:
  built_image_release(&img);
  for (size_t i = 0; i < df->n_stages; i++)
    stage_state_release(&run.stages[i]);
  free(run.stages);
  free(run.created);
  context_close(&run.ctx);
  return rc;
}
