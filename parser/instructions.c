/*
 * One instruction: the command word, its --flags and its arguments, split
 * the way BuildKit's parser splits each instruction (JSON or shell form,
 * name=value pairs, whitespace-separated words, one string) and checked
 * for what can be checked before substitution.
 */
#include "parser-internal.h"

#include <errno.h>
#include <jansson.h>
#include <stddef.h>
#include <strings.h>

/* The blanks BuildKit splits instruction words on. */
static bool is_ws(int c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r'; }

static const char *const instr_names[] = {
  [PARSER_FROM] = "FROM",         [PARSER_RUN] = "RUN",
  [PARSER_CMD] = "CMD",           [PARSER_ENTRYPOINT] = "ENTRYPOINT",
  [PARSER_COPY] = "COPY",         [PARSER_ADD] = "ADD",
  [PARSER_ENV] = "ENV",           [PARSER_ARG] = "ARG",
  [PARSER_LABEL] = "LABEL",       [PARSER_EXPOSE] = "EXPOSE",
  [PARSER_WORKDIR] = "WORKDIR",   [PARSER_USER] = "USER",
  [PARSER_VOLUME] = "VOLUME",     [PARSER_STOPSIGNAL] = "STOPSIGNAL",
  [PARSER_HEALTHCHECK] = "HEALTHCHECK", [PARSER_SHELL] = "SHELL",
  [PARSER_ONBUILD] = "ONBUILD",   [PARSER_MAINTAINER] = "MAINTAINER",
};

const char *parser_instr_name(enum parser_instr instr)
{
  return (size_t)instr < CB_ARRAY_SIZE(instr_names) ? instr_names[instr] : "?";
}

/* ---- flags ---- */

enum flag_kind { FLAG_STRING, FLAG_BOOL, FLAG_LIST };

struct flag_def {
  const char *name;
  enum flag_kind kind;
  size_t offset; /* into struct parser_step */
};

#define FSTR(n, f) { n, FLAG_STRING, offsetof(struct parser_step, f) }
#define FBOOL(n, f) { n, FLAG_BOOL, offsetof(struct parser_step, f) }
#define FLIST(n, f) { n, FLAG_LIST, offsetof(struct parser_step, f) }

static const struct flag_def from_flags[] = { FSTR("platform", platform), { NULL, 0, 0 } };
static const struct flag_def run_flags[] = {
  FLIST("mount", mount_specs), FSTR("network", network_name),
  FSTR("security", security_name), { NULL, 0, 0 }
};
static const struct flag_def copy_flags[] = {
  FSTR("from", from), FSTR("chown", chown), FSTR("chmod", chmod), FBOOL("link", link),
  FBOOL("parents", parents), FLIST("exclude", excludes), { NULL, 0, 0 }
};
static const struct flag_def add_flags[] = {
  FSTR("chown", chown), FSTR("chmod", chmod), FBOOL("link", link), FSTR("checksum", checksum),
  FBOOL("keep-git-dir", keep_git_dir), FLIST("exclude", excludes), { NULL, 0, 0 }
};
static const struct flag_def health_flags[] = {
  FSTR("interval", health_flags[0]), FSTR("timeout", health_flags[1]),
  FSTR("start-period", health_flags[2]), FSTR("start-interval", health_flags[3]),
  FSTR("retries", health_flags[4]), { NULL, 0, 0 }
};
static const struct flag_def no_flags[] = { { NULL, 0, 0 } };

/*
 * Split the leading --flags off `line` as BuildKit does: words starting
 * with "--", quotes and backslashes processed; a bare "--" ends them.
 * Returns the rest of the line.
 */
static const char *extract_flags(const char *line, struct strvec *flags)
{
  struct strbuf word = STRBUF_INIT;
  size_t i = 0, n = strlen(line);
  for (;;) {
    bool blank_ok = false;
    char quote = 0;
    while (i < n && parser_is_space((unsigned char)line[i]))
      i++;
    if (i >= n || line[i] != '-' || i + 1 >= n || line[i + 1] != '-')
      break;
    strbuf_reset(&word);
    for (; i < n; i++) {
      char c = line[i];
      if (!quote && parser_is_space((unsigned char)c))
        break;
      if (!quote && (c == '\'' || c == '"')) {
        quote = c;
        blank_ok = true;
        continue;
      }
      if (quote && c == quote) {
        quote = 0;
        continue;
      }
      if (c == '\\') {
        if (i + 1 == n)
          continue;
        c = line[++i];
      }
      strbuf_addch(&word, c);
    }
    if (strcmp(word.buf, "--") == 0 && !blank_ok)
      break;
    if (blank_ok || word.len)
      strvec_push(flags, word.buf);
  }
  strbuf_release(&word);
  return line + i;
}

static int apply_flags(const char *file, int line, struct parser_step *step,
                       const struct flag_def *defs, const struct strvec *flags,
                       struct parser_error *err)
{
  const char *name = parser_instr_name(step->instr);
  bool seen[8] = { false };
  for (size_t i = 0; i < flags->n; i++) {
    const char *f = flags->v[i];
    const char *eq;
    size_t nlen;
    const struct flag_def *d;
    if (!cb_starts_with(f, "--"))
      return parser_error_set(err, file, line, "%s: bad flag \"%s\"", name, f);
    f += 2;
    eq = strchr(f, '=');
    nlen = eq ? (size_t)(eq - f) : strlen(f);
    for (d = defs; d->name; d++)
      if (strlen(d->name) == nlen && strncmp(d->name, f, nlen) == 0)
        break;
    if (!d->name)
      return parser_error_set(err, file, line, "%s: unknown flag: --%.*s", name, (int)nlen, f);
    if (d->kind != FLAG_LIST) {
      if (seen[d - defs])
        return parser_error_set(err, file, line, "%s: duplicate flag specified: --%s", name,
                                d->name);
      seen[d - defs] = true;
    }
    switch (d->kind) {
    case FLAG_STRING:
      if (!eq)
        return parser_error_set(err, file, line, "%s: missing a value on flag: --%s", name,
                                d->name);
      *(char **)((char *)step + d->offset) = xstrdup(eq + 1);
      break;
    case FLAG_LIST:
      if (!eq)
        return parser_error_set(err, file, line, "%s: missing a value on flag: --%s", name,
                                d->name);
      strvec_push((struct strvec *)((char *)step + d->offset), eq + 1);
      break;
    case FLAG_BOOL: {
      bool v = true;
      if (eq) {
        if (cb_streq_ci(eq + 1, "true"))
          v = true;
        else if (cb_streq_ci(eq + 1, "false"))
          v = false;
        else
          return parser_error_set(err, file, line,
                                  "%s: expecting boolean value for flag --%s, not: %s", name,
                                  d->name, eq + 1);
      }
      *(bool *)((char *)step + d->offset) = v;
      break;
    }
    }
  }
  return 0;
}

/* ---- argument forms ---- */

/*
 * Words separated by whitespace, keeping quotes and escapes in them (they
 * are removed at substitution); BuildKit's parseWords.
 */
static void parse_words(const char *rest, char escape, struct strvec *out)
{
  struct strbuf word = STRBUF_INIT;
  size_t i = 0, n = strlen(rest);
  bool blank_ok = false, in_word = false;
  char quote = 0;
  while (i <= n) {
    int32_t c = 0;
    size_t k = 0;
    if (i == n) {
      if (in_word && (blank_ok || word.len))
        strvec_push(out, word.buf);
      break;
    }
    k = parser_utf8_decode(rest + i, n - i, &c);
    if (!in_word) {
      if (parser_is_space(c)) {
        i += k;
        continue;
      }
      in_word = true;
    }
    if (!quote) {
      if (parser_is_space(c)) {
        if (blank_ok || word.len)
          strvec_push(out, word.buf);
        strbuf_reset(&word);
        blank_ok = in_word = false;
        i += k;
        continue;
      }
      if (c == '\'' || c == '"') {
        quote = (char)c;
        blank_ok = true;
      } else if (c == escape) {
        if (i + k == n) {
          i += k;
          continue;
        }
        strbuf_add(&word, rest + i, k);
        i += k;
        k = parser_utf8_decode(rest + i, n - i, &c);
      }
      strbuf_add(&word, rest + i, k);
      i += k;
      continue;
    }
    if (c == quote)
      quote = 0;
    else if (c == escape && quote != '\'') {
      if (i + k == n) {
        i += k;
        quote = 0;
        continue;
      }
      strbuf_add(&word, rest + i, k);
      i += k;
      k = parser_utf8_decode(rest + i, n - i, &c);
    }
    strbuf_add(&word, rest + i, k);
    i += k;
  }
  strbuf_release(&word);
}

static void split_whitespace(const char *rest, struct strvec *out)
{
  size_t i = 0, n = strlen(rest);
  while (i < n) {
    size_t j;
    while (i < n && is_ws((unsigned char)rest[i]))
      i++;
    j = i;
    while (j < n && !is_ws((unsigned char)rest[j]))
      j++;
    if (j > i)
      strvec_push_nodup(out, xstrndup(rest + i, j - i));
    i = j;
  }
}

enum json_result { JSON_NO, JSON_YES, JSON_NOT_STRINGS };

/* A JSON array of strings, as in exec form; Docker falls back to the shell
 * form when the text is not JSON, but refuses JSON that is not strings. */
static enum json_result parse_json_array(const char *rest, struct strvec *out)
{
  json_t *root;
  json_error_t jerr;
  size_t i;
  json_t *v;
  if (rest[0] != '[')
    return JSON_NO;
  root = json_loads(rest, JSON_DECODE_ANY, &jerr);
  if (!root)
    return JSON_NO;
  if (!json_is_array(root)) {
    json_decref(root);
    return JSON_NO;
  }
  json_array_foreach(root, i, v) {
    if (!json_is_string(v)) {
      json_decref(root);
      strvec_clear(out);
      return JSON_NOT_STRINGS;
    }
    strvec_push(out, json_string_value(v));
  }
  json_decref(root);
  return JSON_YES;
}

/* ---- heredocs ---- */

static bool can_have_heredoc(enum parser_instr i)
{
  return i == PARSER_RUN || i == PARSER_COPY || i == PARSER_ADD;
}

static size_t count_quotes(const char *s)
{
  size_t n = 0;
  for (; *s; s++)
    n += *s == '\'' || *s == '"';
  return n;
}

/* Find the <<WORD and N<<-WORD words of an instruction's arguments. */
static int find_heredocs(const char *file, int line, const char *rest, struct parser_step *step,
                         struct parser_error *err)
{
  cleanup_strvec struct strvec words = STRVEC_INIT;
  size_t alloc = 0;
  parse_words(rest, '\\', &words);
  for (size_t w = 0; w < words.n; w++) {
    const char *s = words.v[w];
    const char *p = s;
    struct parser_heredoc *doc;
    struct parser_vars none = PARSER_VARS_INIT;
    cleanup_strbuf struct strbuf name = STRBUF_INIT;
    char errbuf[512];
    int fd = 0;
    bool chomp = false;
    while (*p >= '0' && *p <= '9') {
      if (fd < 100000)
        fd = fd * 10 + (*p - '0');
      p++;
    }
    if (strncmp(p, "<<", 2) != 0)
      continue;
    p += 2;
    if (*p == '-') {
      chomp = true;
      p++;
    }
    if (*p == '\0' || strchr(p, '<'))
      continue;
    if (parser_expand_word(p, '\\', &none, &name, errbuf, sizeof(errbuf)) < 0)
      return parser_error_set(err, file, line, "%s: heredoc: %s",
                              parser_instr_name(step->instr), errbuf);
    if (name.len == 0)
      return parser_error_set(err, file, line, "%s: empty heredoc delimiter in \"%s\"",
                              parser_instr_name(step->instr), s);
    CB_GROW(step->heredocs, step->n_heredocs + 1, alloc);
    doc = &step->heredocs[step->n_heredocs++];
    memset(doc, 0, sizeof(*doc));
    doc->name = strbuf_detach(&name, NULL);
    doc->chomp = chomp;
    doc->fd = fd;
    doc->expand = count_quotes(doc->name) == count_quotes(p);
    doc->content = xstrdup("");
  }
  return 0;
}

/* ---- instruction forms ---- */

/*
 * A JSON array of strings (the exec form), else the rest as written: one
 * string for RUN, CMD, ENTRYPOINT and SHELL, whitespace-separated words for
 * COPY, ADD and VOLUME (`words`).
 */
static int parse_maybe_json(const char *file, int line, const char *rest, bool words,
                            struct parser_step *step, struct parser_error *err)
{
  switch (parse_json_array(rest, &step->args)) {
  case JSON_YES:
    step->json = true;
    return 0;
  case JSON_NOT_STRINGS:
    return parser_error_set(err, file, line, "%s: the JSON array must hold only strings",
                            parser_instr_name(step->instr));
  case JSON_NO:
    break;
  }
  if (words)
    split_whitespace(rest, &step->args);
  else if (*rest)
    strvec_push(&step->args, rest);
  return 0;
}

static void push_kv(struct parser_step *step, size_t *alloc, const char *k, size_t klen,
                    const char *v)
{
  CB_GROW(step->kvs, step->n_kvs + 1, *alloc);
  step->kvs[step->n_kvs].key = xstrndup(k, klen);
  step->kvs[step->n_kvs].value = v ? xstrdup(v) : NULL;
  step->n_kvs++;
}

/* ENV and LABEL: "k=v ..." pairs, or the legacy "k v" with the rest as value. */
static int parse_name_val(const char *file, int line, const char *rest, char escape,
                          struct parser_step *step, struct parser_error *err)
{
  cleanup_strvec struct strvec words = STRVEC_INIT;
  const char *name = parser_instr_name(step->instr);
  size_t alloc = 0;
  parse_words(rest, escape, &words);
  if (words.n == 0)
    return parser_error_set(err, file, line, "%s requires at least one argument", name);
  if (!strchr(words.v[0], '=')) {
    size_t k = 0;
    const char *v;
    while (rest[k] && !is_ws((unsigned char)rest[k]))
      k++;
    v = rest + k;
    while (*v && is_ws((unsigned char)*v))
      v++;
    if (*v == '\0')
      return parser_error_set(err, file, line, "%s must have two arguments", name);
    push_kv(step, &alloc, rest, k, v);
    step->legacy_kv = true;
  } else {
    for (size_t i = 0; i < words.n; i++) {
      const char *eq = strchr(words.v[i], '=');
      if (!eq)
        return parser_error_set(err, file, line,
                                "%s: syntax error - can't find = in \"%s\": must be of the form name=value",
                                name, words.v[i]);
      push_kv(step, &alloc, words.v[i], (size_t)(eq - words.v[i]), eq + 1);
    }
  }
  for (size_t i = 0; i < step->n_kvs; i++)
    if (step->kvs[i].key[0] == '\0')
      return parser_error_set(err, file, line, "%s names can not be blank", name);
  return 0;
}

static int parse_arg(const char *file, int line, const char *rest, char escape,
                     struct parser_step *step, struct parser_error *err)
{
  cleanup_strvec struct strvec words = STRVEC_INIT;
  size_t alloc = 0;
  parse_words(rest, escape, &words);
  if (words.n == 0)
    return parser_error_set(err, file, line, "ARG requires at least one argument");
  for (size_t i = 0; i < words.n; i++) {
    const char *eq = strchr(words.v[i], '=');
    size_t klen = eq ? (size_t)(eq - words.v[i]) : strlen(words.v[i]);
    if (klen == 0)
      return parser_error_set(err, file, line, "ARG names can not be blank");
    push_kv(step, &alloc, words.v[i], klen, eq ? eq + 1 : NULL);
  }
  return 0;
}

static bool is_ws_only(const char *s)
{
  for (; *s; s++)
    if (!is_ws((unsigned char)*s))
      return false;
  return true;
}

static int parse_from(const char *file, int line, const char *rest, struct parser_step *step,
                      struct parser_error *err)
{
  split_whitespace(rest, &step->args);
  if (step->args.n != 1 && step->args.n != 3)
    return parser_error_set(err, file, line, "FROM requires either one or three arguments");
  if (step->args.n == 3) {
    char *name;
    if (!cb_streq_ci(step->args.v[1], "as"))
      return parser_error_set(err, file, line,
                              "FROM: the second of three arguments must be \"AS\", not \"%s\"",
                              step->args.v[1]);
    name = xstrdup(step->args.v[2]);
    for (char *p = name; *p; p++)
      if (*p >= 'A' && *p <= 'Z')
        *p = (char)(*p + 32);
    if (!parser_stage_name_valid(name)) {
      parser_error_set(err, file, line,
                       "invalid name for build stage: \"%s\", name can't start with a number or contain symbols",
                       step->args.v[2]);
      free(name);
      return -1;
    }
    step->stage_name = name;
  }
  return 0;
}

static int parse_healthcheck(const char *file, int line, const char *rest,
                             struct parser_step *step, struct parser_error *err)
{
  size_t sep = 0;
  char type[16];
  const char *cmd;
  while (rest[sep] && !parser_is_space((unsigned char)rest[sep]))
    sep++;
  if (sep == 0)
    return parser_error_set(err, file, line, "HEALTHCHECK requires at least one argument");
  snprintf(type, sizeof(type), "%.*s", (int)(sep < 15 ? sep : 15), rest);
  for (char *p = type; *p; p++)
    if (*p >= 'a' && *p <= 'z')
      *p = (char)(*p - 32);
  cmd = rest + sep;
  while (*cmd && parser_is_space((unsigned char)*cmd))
    cmd++;
  if (sep == 4 && strcmp(type, "NONE") == 0) {
    for (size_t i = 0; i < CB_ARRAY_SIZE(step->health_flags); i++)
      if (step->health_flags[i])
        return parser_error_set(err, file, line, "HEALTHCHECK NONE takes no flags");
    if (*cmd)
      return parser_error_set(err, file, line, "HEALTHCHECK NONE takes no arguments");
    step->health_none = true;
    strvec_push(&step->health.test, "NONE");
    return 0;
  }
  if (sep != 3 || strcmp(type, "CMD") != 0)
    return parser_error_set(err, file, line, "unknown type \"%.*s\" in HEALTHCHECK (try CMD)",
                            (int)sep, rest);
  if (parse_maybe_json(file, line, cmd, false, step, err) < 0)
    return -1;
  if (step->args.n == 0 || (!step->json && is_ws_only(step->args.v[0])))
    return parser_error_set(err, file, line, "missing command after HEALTHCHECK CMD");
  return parser_health_values(file, line, step, err);
}

int parser_health_values(const char *file, int line, struct parser_step *step,
                         struct parser_error *err)
{
  static const char *const names[] = { "interval", "timeout", "start-period", "start-interval" };
  int64_t *dst[] = { &step->health.interval_ns, &step->health.timeout_ns,
                     &step->health.start_period_ns, &step->health.start_interval_ns };
  strvec_clear(&step->health.test);
  strvec_push(&step->health.test, step->json ? "CMD" : "CMD-SHELL");
  for (size_t i = 0; i < step->args.n; i++)
    strvec_push(&step->health.test, step->args.v[i]);
  for (size_t i = 0; i < 4; i++) {
    const char *v = step->health_flags[i];
    int64_t ns = 0;
    if (!v || !*v)
      continue;
    if (parser_duration(v, &ns) < 0)
      return parser_error_set(err, file, line, "HEALTHCHECK: invalid duration \"%s\" for --%s",
                              v, names[i]);
    if (ns < 0)
      return parser_error_set(err, file, line, "HEALTHCHECK: --%s cannot be negative (%s)",
                              names[i], v);
    if (ns > 0 && ns < 1000000)
      return parser_error_set(err, file, line, "HEALTHCHECK: --%s cannot be less than 1ms (%s)",
                              names[i], v);
    *dst[i] = ns;
  }
  if (step->health_flags[4] && *step->health_flags[4]) {
    char *end;
    long long r;
    errno = 0;
    r = strtoll(step->health_flags[4], &end, 10);
    if (*end || end == step->health_flags[4] || errno || r > INT32_MAX || r < INT32_MIN)
      return parser_error_set(err, file, line, "HEALTHCHECK: invalid --retries value \"%s\"",
                              step->health_flags[4]);
    if (r < 0)
      return parser_error_set(err, file, line, "HEALTHCHECK: --retries cannot be negative (%lld)",
                              r);
    step->health.retries = (int)r;
  }
  return 0;
}

static int parse_onbuild(const char *file, int line, int end_line, const char *rest, char escape,
                         struct parser_step *step, struct parser_error *err)
{
  size_t k = 0;
  if (*rest == '\0')
    return parser_error_set(err, file, line, "ONBUILD requires at least one argument");
  while (rest[k] && !is_ws((unsigned char)rest[k]))
    k++;
  if ((k == 7 && strncasecmp(rest, "ONBUILD", 7) == 0))
    return parser_error_set(err, file, line,
                            "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  if ((k == 4 && strncasecmp(rest, "FROM", 4) == 0) ||
      (k == 10 && strncasecmp(rest, "MAINTAINER", 10) == 0))
    return parser_error_set(err, file, line, "%.*s isn't allowed as an ONBUILD trigger", (int)k,
                            rest);
  step->trigger = xcalloc(1, sizeof(*step->trigger));
  if (parser_instruction_parse(file, rest, escape, line, end_line, step->trigger, err) < 0)
    return -1;
  strvec_push(&step->args, rest);
  return 0;
}

static const struct {
  const char *name;
  enum parser_instr instr;
  const struct flag_def *flags;
} instr_table[] = {
  { "from", PARSER_FROM, from_flags },        { "run", PARSER_RUN, run_flags },
  { "cmd", PARSER_CMD, no_flags },            { "entrypoint", PARSER_ENTRYPOINT, no_flags },
  { "copy", PARSER_COPY, copy_flags },        { "add", PARSER_ADD, add_flags },
  { "env", PARSER_ENV, no_flags },            { "arg", PARSER_ARG, no_flags },
  { "label", PARSER_LABEL, no_flags },        { "expose", PARSER_EXPOSE, no_flags },
  { "workdir", PARSER_WORKDIR, no_flags },    { "user", PARSER_USER, no_flags },
  { "volume", PARSER_VOLUME, no_flags },      { "stopsignal", PARSER_STOPSIGNAL, no_flags },
  { "healthcheck", PARSER_HEALTHCHECK, health_flags }, { "shell", PARSER_SHELL, no_flags },
  { "onbuild", PARSER_ONBUILD, no_flags },    { "maintainer", PARSER_MAINTAINER, no_flags },
};

static int check_args(const char *file, int line, struct parser_step *step,
                      struct parser_error *err)
{
  const char *name = parser_instr_name(step->instr);
  switch (step->instr) {
  case PARSER_RUN:
  case PARSER_CMD:
  case PARSER_ENTRYPOINT:
    if (!step->json && (step->args.n == 0 || is_ws_only(step->args.v[0])))
      return parser_error_set(err, file, line, "%s requires at least one argument", name);
    if (step->json && step->args.n == 0 && step->instr == PARSER_RUN)
      return parser_error_set(err, file, line, "RUN requires at least one argument");
    return 0;
  case PARSER_SHELL:
    if (!step->json)
      return parser_error_set(err, file, line, "SHELL requires the arguments to be in JSON form");
    if (step->args.n == 0)
      return parser_error_set(err, file, line, "SHELL requires at least one argument");
    return 0;
  case PARSER_COPY:
  case PARSER_ADD:
    if (step->args.n < 2)
      return parser_error_set(err, file, line,
                              "%s requires at least two arguments: a source and a destination",
                              name);
    return 0;
  case PARSER_EXPOSE:
  case PARSER_VOLUME:
    if (step->args.n == 0)
      return parser_error_set(err, file, line, "%s requires at least one argument", name);
    if (step->instr == PARSER_VOLUME)
      for (size_t i = 0; i < step->args.n; i++)
        if (step->args.v[i][0] == '\0')
          return parser_error_set(err, file, line, "VOLUME specified can not be an empty string");
    return 0;
  case PARSER_WORKDIR:
  case PARSER_USER:
  case PARSER_STOPSIGNAL:
  case PARSER_MAINTAINER:
    if (step->args.n != 1)
      return parser_error_set(err, file, line, "%s requires exactly one argument", name);
    if (step->instr == PARSER_STOPSIGNAL && step->args.v[0][strcspn(step->args.v[0], " \t")])
      return parser_error_set(err, file, line, "STOPSIGNAL requires exactly one argument");
    return 0;
  default:
    return 0;
  }
}

static int check_run_flags(const char *file, int line, struct parser_step *step,
                           struct parser_error *err)
{
  if (step->network_name) {
    step->network_set = true;
    if (strcmp(step->network_name, "default") == 0)
      step->network = PARSER_NET_DEFAULT;
    else if (strcmp(step->network_name, "none") == 0)
      step->network = PARSER_NET_NONE;
    else if (strcmp(step->network_name, "host") == 0)
      step->network = PARSER_NET_HOST;
    else
      return parser_error_set(err, file, line,
                              "RUN: unsupported network mode \"%s\" (use default, none or host)",
                              step->network_name);
  }
  if (step->security_name) {
    if (strcmp(step->security_name, "sandbox") == 0)
      step->security = PARSER_SECURITY_SANDBOX;
    else if (strcmp(step->security_name, "insecure") == 0)
      step->security = PARSER_SECURITY_INSECURE;
    else
      return parser_error_set(err, file, line,
                              "RUN: unsupported security mode \"%s\" (use sandbox or insecure)",
                              step->security_name);
  }
  return 0;
}

int parser_instruction_parse(const char *file, const char *text, char escape, int line,
                             int end_line, struct parser_step *step, struct parser_error *err)
{
  cleanup_strvec struct strvec flags = STRVEC_INIT;
  cleanup_free char *rest = NULL;
  size_t b = 0, e = strlen(text), k;
  const char *after_flags;
  size_t t;

  memset(step, 0, sizeof(*step));
  step->line = line;
  step->end_line = end_line;
  step->from_stage = -1;
  while (b < e && parser_is_space((unsigned char)text[b]))
    b++;
  while (e > b && parser_is_space((unsigned char)text[e - 1]))
    e--;
  step->text = xstrndup(text + b, e - b);

  for (k = 0; step->text[k] && !is_ws((unsigned char)step->text[k]); k++)
    ;
  for (t = 0; t < CB_ARRAY_SIZE(instr_table); t++)
    if (strlen(instr_table[t].name) == k && strncasecmp(step->text, instr_table[t].name, k) == 0)
      break;
  if (t == CB_ARRAY_SIZE(instr_table))
    return parser_error_set(err, file, line, "unknown instruction: %.*s", (int)(k > 64 ? 64 : k),
                            step->text);
  step->instr = instr_table[t].instr;

  while (step->text[k] && is_ws((unsigned char)step->text[k]))
    k++;
  after_flags = extract_flags(step->text + k, &flags);
  if (apply_flags(file, line, step, instr_table[t].flags, &flags, err) < 0)
    return -1;
  rest = xstrdup(after_flags);
  {
    size_t n = strlen(rest);
    while (n > 0 && parser_is_space((unsigned char)rest[n - 1]))
      rest[--n] = '\0';
  }

  switch (step->instr) {
  case PARSER_FROM:
    if (parse_from(file, line, rest, step, err) < 0)
      return -1;
    break;
  case PARSER_RUN:
  case PARSER_CMD:
  case PARSER_ENTRYPOINT:
  case PARSER_SHELL:
    if (parse_maybe_json(file, line, rest, false, step, err) < 0)
      return -1;
    break;
  case PARSER_COPY:
  case PARSER_ADD:
  case PARSER_VOLUME:
    if (parse_maybe_json(file, line, rest, true, step, err) < 0)
      return -1;
    break;
  case PARSER_ENV:
  case PARSER_LABEL:
    if (parse_name_val(file, line, rest, escape, step, err) < 0)
      return -1;
    break;
  case PARSER_ARG:
    if (parse_arg(file, line, rest, escape, step, err) < 0)
      return -1;
    break;
  case PARSER_EXPOSE:
    split_whitespace(rest, &step->args);
    break;
  case PARSER_WORKDIR:
  case PARSER_USER:
  case PARSER_STOPSIGNAL:
  case PARSER_MAINTAINER:
    if (*rest)
      strvec_push(&step->args, rest);
    break;
  case PARSER_HEALTHCHECK:
    if (parse_healthcheck(file, line, rest, step, err) < 0)
      return -1;
    break;
  case PARSER_ONBUILD:
    if (parse_onbuild(file, line, end_line, rest, escape, step, err) < 0)
      return -1;
    break;
  }
  if (check_args(file, line, step, err) < 0)
    return -1;
  if (step->instr == PARSER_RUN && check_run_flags(file, line, step, err) < 0)
    return -1;
  /* Only the shell form can hold heredocs; ONBUILD's trigger holds its own. */
  if (can_have_heredoc(step->instr) && !step->json && strstr(rest, "<<") &&
      find_heredocs(file, line, rest, step, err) < 0)
    return -1;
  return 0;
}

void parser_mount_release(struct parser_mount *m)
{
  free(m->target);
  free(m->source);
  free(m->from);
  free(m->id);
  free(m->env);
  memset(m, 0, sizeof(*m));
}

void parser_step_release(struct parser_step *step)
{
  if (!step)
    return;
  free(step->text);
  strvec_clear(&step->args);
  for (size_t i = 0; i < step->n_kvs; i++) {
    free(step->kvs[i].key);
    free(step->kvs[i].value);
  }
  free(step->kvs);
  free(step->from);
  free(step->chown);
  free(step->chmod);
  free(step->checksum);
  strvec_clear(&step->excludes);
  free(step->platform);
  free(step->stage_name);
  strvec_clear(&step->mount_specs);
  strvec_clear(&step->run_env);
  for (size_t i = 0; i < step->n_mounts; i++)
    parser_mount_release(&step->mounts[i]);
  free(step->mounts);
  free(step->network_name);
  free(step->security_name);
  strvec_clear(&step->health.test);
  for (size_t i = 0; i < CB_ARRAY_SIZE(step->health_flags); i++)
    free(step->health_flags[i]);
  if (step->trigger) {
    parser_step_release(step->trigger);
    free(step->trigger);
  }
  for (size_t i = 0; i < step->n_heredocs; i++) {
    free(step->heredocs[i].name);
    free(step->heredocs[i].content);
  }
  free(step->heredocs);
  memset(step, 0, sizeof(*step));
}
