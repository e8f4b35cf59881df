/*
 * The plan as JSON, for `cbuild parse`: a debugging aid and the parser's
 * test surface.  Keys are sorted so the output is stable.
 */
#include "builder-internal.h"

#include <jansson.h>

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *strvec_json(const struct strvec *sv)
{
  json_t *a = json_array();
  for (size_t i = 0; i < sv->n; i++)
    json_array_append_new(a, json_string(sv->v[i]));
  return a;
}

static json_t *kvs_json(const struct parser_kv *kvs, size_t n)
{
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(a, json_pack("{s:s, s:o}", "key", kvs[i].key, "value",
                                       str_or_null(kvs[i].value)));
  return a;
}

static void add_command(json_t *o, const struct parser_step *s)
{
  if (s->json)
    json_object_set_new(o, "exec", strvec_json(&s->args));
  else
    json_object_set_new(o, "shell", json_string(s->args.n ? s->args.v[0] : ""));
}

static json_t *heredocs_json(const struct parser_step *s)
{
  json_t *a = json_array();
  for (size_t i = 0; i < s->n_heredocs; i++) {
    const struct parser_heredoc *h = &s->heredocs[i];
    json_array_append_new(a, json_pack("{s:s, s:s, s:b, s:b, s:i}", "name", h->name, "content",
                                       h->content, "expand", h->expand, "chomp", h->chomp, "fd",
                                       h->fd));
  }
  return a;
}

static json_t *mounts_json(const struct parser_step *s)
{
  static const char *const types[] = { "bind", "cache", "tmpfs", "secret", "ssh" };
  static const char *const sharing[] = { "shared", "private", "locked" };
  json_t *a = json_array();
  for (size_t i = 0; i < s->n_mounts; i++) {
    const struct parser_mount *m = &s->mounts[i];
    json_t *o = json_pack("{s:s, s:o, s:b}", "type", types[m->type], "target",
                          str_or_null(m->target), "readonly", m->readonly);
    if (m->source)
      json_object_set_new(o, "source", json_string(m->source));
    if (m->from) {
      json_object_set_new(o, "from", json_string(m->from));
      json_object_set_new(o, "from_stage",
                          m->from_stage >= 0 ? json_integer(m->from_stage) : json_null());
    }
    if (m->id)
      json_object_set_new(o, "id", json_string(m->id));
    if (m->env)
      json_object_set_new(o, "env", json_string(m->env));
    if (m->type == PARSER_MOUNT_CACHE)
      json_object_set_new(o, "sharing", json_string(sharing[m->sharing]));
    if (m->type == PARSER_MOUNT_SECRET || m->type == PARSER_MOUNT_SSH)
      json_object_set_new(o, "required", json_boolean(m->required));
    if (m->size)
      json_object_set_new(o, "size", json_integer(m->size));
    if (m->uid >= 0)
      json_object_set_new(o, "uid", json_integer(m->uid));
    if (m->gid >= 0)
      json_object_set_new(o, "gid", json_integer(m->gid));
    if (m->mode >= 0)
      json_object_set_new(o, "mode", json_integer(m->mode));
    json_array_append_new(a, o);
  }
  return a;
}

static json_t *step_json(const struct parser_step *s, bool expanded)
{
  static const char *const nets[] = { "default", "none", "host" };
  json_t *o = json_pack("{s:s, s:i, s:i, s:s}", "instruction", parser_instr_name(s->instr), "line",
                        s->line, "end_line", s->end_line, "text", s->text);
  switch (s->instr) {
  case PARSER_RUN:
    add_command(o, s);
    if (expanded)
      json_object_set_new(o, "mounts", mounts_json(s));
    else
      json_object_set_new(o, "mount_specs", strvec_json(&s->mount_specs));
    json_object_set_new(o, "network", json_string(s->network_set ? nets[s->network] : "default"));
    json_object_set_new(o, "security",
                        json_string(s->security == PARSER_SECURITY_INSECURE ? "insecure" : "sandbox"));
    break;
  case PARSER_CMD:
  case PARSER_ENTRYPOINT:
  case PARSER_SHELL:
    add_command(o, s);
    break;
  case PARSER_COPY:
  case PARSER_ADD: {
    struct strvec src = STRVEC_INIT;
    for (size_t i = 0; i + 1 < s->args.n; i++)
      strvec_push(&src, s->args.v[i]);
    json_object_set_new(o, "sources", strvec_json(&src));
    strvec_clear(&src);
    json_object_set_new(o, "dest", json_string(s->args.v[s->args.n - 1]));
    if (s->from) {
      json_object_set_new(o, "from", json_string(s->from));
      json_object_set_new(o, "from_stage", s->from_stage >= 0 ? json_integer(s->from_stage)
                                                              : json_null());
    }
    if (s->chown)
      json_object_set_new(o, "chown", json_string(s->chown));
    if (s->chmod)
      json_object_set_new(o, "chmod", json_string(s->chmod));
    if (s->checksum)
      json_object_set_new(o, "checksum", json_string(s->checksum));
    json_object_set_new(o, "link", json_boolean(s->link));
    json_object_set_new(o, "parents", json_boolean(s->parents));
    if (s->instr == PARSER_ADD)
      json_object_set_new(o, "keep_git_dir", json_boolean(s->keep_git_dir));
    json_object_set_new(o, "exclude", strvec_json(&s->excludes));
    json_object_set_new(o, "json", json_boolean(s->json));
    break;
  }
  case PARSER_ENV:
  case PARSER_LABEL:
  case PARSER_ARG:
    json_object_set_new(o, "pairs", kvs_json(s->kvs, s->n_kvs));
    break;
  case PARSER_EXPOSE:
    json_object_set_new(o, "ports", strvec_json(&s->args));
    break;
  case PARSER_VOLUME:
    json_object_set_new(o, "volumes", strvec_json(&s->args));
    break;
  case PARSER_WORKDIR:
  case PARSER_USER:
  case PARSER_STOPSIGNAL:
  case PARSER_MAINTAINER:
    json_object_set_new(o, "value", json_string(s->args.v[0]));
    break;
  case PARSER_HEALTHCHECK:
    json_object_set_new(o, "test", strvec_json(&s->health.test));
    if (!s->health_none) {
      json_object_set_new(o, "interval_ns", json_integer(s->health.interval_ns));
      json_object_set_new(o, "timeout_ns", json_integer(s->health.timeout_ns));
      json_object_set_new(o, "start_period_ns", json_integer(s->health.start_period_ns));
      json_object_set_new(o, "start_interval_ns", json_integer(s->health.start_interval_ns));
      json_object_set_new(o, "retries", json_integer(s->health.retries));
    }
    break;
  case PARSER_ONBUILD:
    json_object_set_new(o, "trigger", json_string(s->args.v[0]));
    break;
  case PARSER_FROM:
    break;
  }
  if (s->n_heredocs)
    json_object_set_new(o, "heredocs", heredocs_json(s));
  return o;
}

static json_t *stage_json(const struct builder_plan *plan, size_t i)
{
  const struct parser_dockerfile *df = plan->df;
  const struct parser_stage *st = &df->stages[i];
  const struct parser_step *steps = plan->steps[i] ? plan->steps[i] : st->steps;
  json_t *a = json_array();
  json_t *o = json_pack("{s:i, s:o, s:s, s:o, s:b, s:o, s:i, s:b, s:b}", "index", st->index, "name",
                        str_or_null(st->name), "base", st->base, "base_stage",
                        st->base_stage >= 0 ? json_integer(st->base_stage) : json_null(),
                        "scratch", st->base_scratch, "platform", str_or_null(st->platform),
                        "line", st->from->line, "reachable", st->reachable, "expanded",
                        plan->steps[i] != NULL);
  for (size_t s = 0; s < st->n_steps; s++)
    json_array_append_new(a, step_json(&steps[s], plan->steps[i] != NULL));
  json_object_set_new(o, "steps", a);
  return o;
}

char *builder_plan_json(const struct builder_plan *plan)
{
  const struct parser_dockerfile *df = plan->df;
  json_t *root = json_object();
  json_t *stages = json_array();
  json_t *gargs = json_array();
  char esc[2] = { df->directives.escape, 0 };
  char *text;

  json_object_set_new(root, "file", json_string(df->file));
  json_object_set_new(root, "directives",
                      json_pack("{s:o, s:s, s:o}", "syntax", str_or_null(df->directives.syntax),
                                "escape", esc, "check", str_or_null(df->directives.check)));
  for (size_t i = 0; i < df->n_global_args; i++)
    for (size_t k = 0; k < df->global_args[i].n_kvs; k++) {
      const char *key = df->global_args[i].kvs[k].key;
      const char *value = NULL;
      for (size_t m = 0; m < df->n_meta_args; m++)
        if (strcmp(df->meta_args[m].key, key) == 0)
          value = df->meta_args[m].value;
      json_array_append_new(gargs, json_pack("{s:s, s:o, s:i}", "key", key, "value",
                                             str_or_null(value), "line",
                                             df->global_args[i].line));
    }
  json_object_set_new(root, "global_args", gargs);
  json_object_set_new(root, "target", json_integer(df->target));
  for (size_t i = 0; i < df->n_stages; i++)
    json_array_append_new(stages, stage_json(plan, i));
  json_object_set_new(root, "stages", stages);
  json_object_set_new(root, "warnings", strvec_json(&df->warnings));
  json_object_set_new(root, "unused_build_args", strvec_json(&plan->unused_args));
  text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(root);
  if (!text)
    cb_die("out of memory encoding JSON");
  return text;
}

char *builder_step_canonical(const struct parser_step *s)
{
  json_t *o = step_json(s, true);
  char *text;
  /* where the step is written and how it was spelled are not what it does */
  json_object_del(o, "line");
  json_object_del(o, "end_line");
  json_object_del(o, "text");
  if (s->instr == PARSER_RUN)
    json_object_set_new(o, "env", strvec_json(&s->run_env));
  text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  if (!text)
    cb_die("out of memory encoding JSON");
  return text;
}
