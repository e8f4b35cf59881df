/*
 * Reading a Dockerfile: lines, parser directives, comments, continuation
 * lines and heredoc bodies, then the instructions grouped into stages.
 * The rules follow BuildKit's parser: a comment is a line whose first
 * non-blank character is '#'; inside a continuation, comment lines and
 * blank lines are skipped; directives are recognised only before anything
 * else, including blank lines and other comments.
 */
#include "parser-internal.h"

int parser_error_set(struct parser_error *err, const char *file, int line,
                     const char *fmt, ...)
{
  va_list ap;
  snprintf(err->file, sizeof(err->file), "%s", file ? file : "Dockerfile");
  err->line = line;
  err->column = 0;
  va_start(ap, fmt);
  vsnprintf(err->text, sizeof(err->text), fmt, ap);
  va_end(ap);
  return -1;
}

void parser_error_format(const struct parser_error *e, char *buf, size_t size)
{
  if (e->line > 0)
    snprintf(buf, size, "%s:%d: %s", e->file, e->line, e->text);
  else
    snprintf(buf, size, "%s: %s", e->file, e->text);
}

struct line {
  const char *s;
  size_t len;
  size_t raw_len; /* with the '\r's of a CRLF ending, which heredocs keep */
};

struct reader {
  const char *file;
  struct line *lines;
  size_t n, alloc;
  size_t next; /* index of the next line to read */
  char escape;
  bool directives_done;
  bool seen_syntax, seen_escape, seen_check;
};

static bool is_blank(int c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r'; }

static void split_lines(struct reader *r, const char *data, size_t size)
{
  size_t i = 0;
  if (size >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0)
    i = 3;
  while (i < size) {
    const char *nl = memchr(data + i, '\n', size - i);
    size_t end = nl ? (size_t)(nl - data) : size;
    size_t len = end - i;
    CB_GROW(r->lines, r->n + 1, r->alloc);
    r->lines[r->n].raw_len = len;
    while (len > 0 && data[i + len - 1] == '\r')
      len--;
    r->lines[r->n].s = data + i;
    r->lines[r->n].len = len;
    r->n++;
    i = end + 1;
  }
}

/* The line without leading whitespace. */
static struct line lstrip(struct line l)
{
  while (l.len > 0 && (is_blank(*l.s) || *l.s == '\n')) {
    l.s++;
    l.len--;
    l.raw_len--;
  }
  return l;
}

static bool is_comment(struct line l)
{
  l = lstrip(l);
  return l.len > 0 && l.s[0] == '#';
}

static bool directive_name_char(char c, bool first)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9');
}

/*
 * A directive is "# key = value" (spaces optional) before anything else.
 * Unknown keys end the directives like any other comment.
 */
static int reader_directive(struct reader *r, struct parser_directives *dirs,
                            struct line l, int lineno, struct parser_error *err)
{
  size_t i = 1, k0, k1, v0, v1;
  char key[32];
  bool *seen;
  char **slot = NULL;

  l = lstrip(l);
  if (l.len == 0 || l.s[0] != '#')
    goto done;
  while (i < l.len && is_blank(l.s[i]))
    i++;
  k0 = i;
  while (i < l.len && directive_name_char(l.s[i], i == k0))
    i++;
  k1 = i;
  while (i < l.len && is_blank(l.s[i]))
    i++;
  if (k1 == k0 || k1 - k0 >= sizeof(key) || i >= l.len || l.s[i] != '=')
    goto done;
  i++;
  while (i < l.len && is_blank(l.s[i]))
    i++;
  v0 = i;
  v1 = l.len;
  while (v1 > v0 && is_blank(l.s[v1 - 1]))
    v1--;
  if (v1 == v0)
    goto done;
  for (size_t j = 0; j < k1 - k0; j++)
    key[j] = (char)(l.s[k0 + j] | 0x20);
  key[k1 - k0] = '\0';

  if (strcmp(key, "syntax") == 0) {
    seen = &r->seen_syntax;
    slot = &dirs->syntax;
  } else if (strcmp(key, "check") == 0) {
    seen = &r->seen_check;
    slot = &dirs->check;
  } else if (strcmp(key, "escape") == 0) {
    seen = &r->seen_escape;
  } else {
    goto done;
  }
  if (*seen)
    return parser_error_set(err, r->file, lineno,
                            "only one %s parser directive can be used", key);
  *seen = true;
  if (slot) {
    *slot = xstrndup(l.s + v0, v1 - v0);
    return 0;
  }
  if (v1 - v0 != 1 || (l.s[v0] != '\\' && l.s[v0] != '`'))
    return parser_error_set(err, r->file, lineno,
                            "invalid escape token '%.*s' does not match ` or \\",
                            (int)(v1 - v0), l.s + v0);
  r->escape = l.s[v0];
  dirs->escape = r->escape;
  return 0;
done:
  r->directives_done = true;
  return 0;
}

/*
 * If the line ends with the escape token (then optional blanks), drop it
 * and return true: the instruction continues on the next line.
 */
static bool trim_continuation(struct reader *r, struct strbuf *sb, size_t from)
{
  size_t n = sb->len;
  while (n > from && (sb->buf[n - 1] == ' ' || sb->buf[n - 1] == '\t'))
    n--;
  if (n > from && sb->buf[n - 1] == r->escape) {
    strbuf_setlen(sb, n - 1);
    return true;
  }
  return false;
}

static struct line trim_leading_tabs(struct line l)
{
  while (l.len > 0 && l.s[0] == '\t') {
    l.s++;
    l.len--;
    l.raw_len--;
  }
  return l;
}

/*
 * Read the bodies of the heredocs the instruction declared, in order.  An
 * ONBUILD trigger's bodies are appended to its text, as BuildKit keeps them.
 */
static int reader_heredocs(struct reader *r, struct parser_step *outer, int start,
                           int *lineno, struct parser_error *err)
{
  struct parser_step *step = outer->trigger ? outer->trigger : outer;
  for (size_t h = 0; h < step->n_heredocs; h++) {
    struct parser_heredoc *doc = &step->heredocs[h];
    struct strbuf body = STRBUF_INIT;
    struct strbuf raw = STRBUF_INIT; /* unchomped, for ONBUILD's text */
    bool terminated = false;
    size_t namelen = strlen(doc->name);
    while (r->next < r->n) {
      struct line l = r->lines[r->next++];
      struct line t = doc->chomp ? trim_leading_tabs(l) : l;
      (*lineno)++;
      if (t.len == namelen && memcmp(t.s, doc->name, namelen) == 0) {
        terminated = true;
        break;
      }
      strbuf_add(&raw, l.s, l.raw_len);
      strbuf_addch(&raw, '\n');
      strbuf_add(&body, t.s, t.raw_len);
      strbuf_addch(&body, '\n');
    }
    free(doc->content);
    doc->content = strbuf_detach(&body, NULL);
    if (!terminated) {
      strbuf_release(&raw);
      return parser_error_set(err, r->file, start,
                              "unterminated heredoc \"%s\": no line \"%s\" before the end of the file",
                              doc->name, doc->name);
    }
    if (outer->trigger) {
      char *t = xasprintf("%s\n%s%s", outer->args.v[0], raw.buf, doc->name);
      free(outer->args.v[0]);
      outer->args.v[0] = t;
    }
    strbuf_release(&raw);
  }
  return 0;
}

/*
 * Read the next instruction, joining continuation lines.  Returns 1 with
 * *text filled, 0 at the end of the file, -1 on error.
 */
static int reader_next(struct reader *r, struct parser_directives *dirs, struct strbuf *text,
                       int *start, int *lineno, bool *empty_continuation,
                       struct parser_error *err)
{
  *empty_continuation = false;
  while (r->next < r->n) {
    struct line l = r->lines[r->next++];
    bool more;
    (*lineno)++;
    if (memchr(l.s, '\0', l.len))
      return parser_error_set(err, r->file, *lineno, "the line holds a NUL byte");
    if (!r->directives_done && reader_directive(r, dirs, l, *lineno, err) < 0)
      return -1;
    if (is_comment(l))
      continue;
    l = lstrip(l);
    strbuf_reset(text);
    strbuf_add(text, l.s, l.len);
    *start = *lineno;
    more = trim_continuation(r, text, 0);
    if (!more && text->len == 0)
      continue;
    while (more && r->next < r->n) {
      struct line c = r->lines[r->next++];
      size_t from = text->len;
      (*lineno)++;
      if (memchr(c.s, '\0', c.len))
        return parser_error_set(err, r->file, *lineno, "the line holds a NUL byte");
      if (is_comment(c))
        continue;
      if (lstrip(c).len == 0) {
        *empty_continuation = true; /* Docker warns and goes on */
        continue;
      }
      strbuf_add(text, c.s, c.len);
      more = trim_continuation(r, text, from);
    }
    return 1;
  }
  return 0;
}

static void stage_push_step(struct parser_stage *st, size_t *alloc, struct parser_step *step)
{
  CB_GROW(st->steps, st->n_steps + 1, *alloc);
  st->steps[st->n_steps++] = *step;
  memset(step, 0, sizeof(*step));
}

int parser_stage_find(const struct parser_dockerfile *df, const char *name)
{
  for (size_t i = 0; i < df->n_stages; i++)
    if (df->stages[i].name && cb_streq_ci(df->stages[i].name, name))
      return (int)i;
  return -1;
}

struct parser_dockerfile *parser_parse(const char *file, const char *data, size_t size,
                                       struct parser_error *err)
{
  struct reader r = { .file = file, .escape = '\\' };
  struct parser_dockerfile *df = xcalloc(1, sizeof(*df));
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  struct parser_step step;
  size_t args_alloc = 0, stages_alloc = 0, steps_alloc = 0;
  int lineno = 0, start = 0, rc;
  bool empty_cont;

  memset(err, 0, sizeof(*err));
  memset(&step, 0, sizeof(step));
  df->file = xstrdup(file);
  df->directives.escape = '\\';
  df->target = -1;
  split_lines(&r, data, size);

  while ((rc = reader_next(&r, &df->directives, &text, &start, &lineno, &empty_cont, err)) > 0) {
    r.directives_done = true;
    if (empty_cont)
      strvec_pushf(&df->warnings, "%s:%d: empty continuation line (they will be errors in a future Docker)",
                   file, start);
    if (parser_instruction_parse(file, text.buf, r.escape, start, lineno, &step, err) < 0)
      goto fail;
    if (step.n_heredocs || (step.trigger && step.trigger->n_heredocs)) {
      if (reader_heredocs(&r, &step, start, &lineno, err) < 0)
        goto fail;
      step.end_line = lineno;
    }

    if (step.instr == PARSER_FROM) {
      struct parser_stage *st;
      CB_GROW(df->stages, df->n_stages + 1, stages_alloc);
      st = &df->stages[df->n_stages];
      memset(st, 0, sizeof(*st));
      st->index = (int)df->n_stages;
      st->base_stage = -1;
      if (step.stage_name) {
        int dup = parser_stage_find(df, step.stage_name);
        if (dup >= 0) {
          parser_error_set(err, file, start, "duplicate stage name \"%s\", first defined on line %d",
                           step.stage_name, df->stages[dup].from->line);
          goto fail;
        }
        st->name = xstrdup(step.stage_name);
      }
      st->base = xstrdup(step.args.v[0]);
      st->from = xmalloc(sizeof(*st->from));
      *st->from = step;
      memset(&step, 0, sizeof(step));
      df->n_stages++;
      steps_alloc = 0;
    } else if (df->n_stages == 0) {
      if (step.instr != PARSER_ARG) {
        parser_error_set(err, file, start,
                         "%s before the first FROM: only ARG may come before FROM",
                         parser_instr_name(step.instr));
        goto fail;
      }
      CB_GROW(df->global_args, df->n_global_args + 1, args_alloc);
      df->global_args[df->n_global_args++] = step;
      memset(&step, 0, sizeof(step));
    } else {
      if (step.instr == PARSER_MAINTAINER)
        strvec_pushf(&df->warnings, "%s:%d: MAINTAINER is deprecated: use LABEL maintainer=...",
                     file, start);
      stage_push_step(&df->stages[df->n_stages - 1], &steps_alloc, &step);
    }
  }
  if (rc < 0)
    goto fail;
  if (df->n_stages == 0) {
    if (df->n_global_args == 0)
      parser_error_set(err, file, lineno ? lineno : 1, "the Dockerfile has no instructions");
    else
      parser_error_set(err, file, lineno, "no FROM instruction: a Dockerfile needs at least one stage");
    goto fail;
  }
  free(r.lines);
  return df;

fail:
  parser_step_release(&step);
  free(r.lines);
  parser_dockerfile_free(df);
  return NULL;
}

void parser_steps_free(struct parser_step *steps, size_t n)
{
  for (size_t i = 0; i < n; i++)
    parser_step_release(&steps[i]);
  free(steps);
}

void parser_dockerfile_free(struct parser_dockerfile *df)
{
  if (!df)
    return;
  free(df->file);
  free(df->directives.syntax);
  free(df->directives.check);
  parser_steps_free(df->global_args, df->n_global_args);
  for (size_t i = 0; i < df->n_stages; i++) {
    struct parser_stage *st = &df->stages[i];
    free(st->name);
    free(st->base);
    free(st->platform);
    if (st->from)
      parser_step_release(st->from);
    free(st->from);
    parser_steps_free(st->steps, st->n_steps);
  }
  free(df->stages);
  for (size_t i = 0; i < df->n_meta_args; i++) {
    free(df->meta_args[i].key);
    free(df->meta_args[i].value);
  }
  free(df->meta_args);
  strvec_clear(&df->warnings);
  free(df);
}
