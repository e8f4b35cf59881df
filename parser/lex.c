/*
 * The shell lexer: variable substitution with quote removal, as Docker's
 * (BuildKit's shell.Lex) does it for ADD, COPY, ENV, EXPOSE, FROM, LABEL,
 * STOPSIGNAL, USER, VOLUME and WORKDIR.  It is not a shell: no command
 * substitution, no globbing, no arithmetic; only $name, ${name}, the
 * ${name<op>word} forms, single and double quotes and the escape token.
 */
#include "parser-internal.h"

#define LEX_EOF (-1)

struct lex {
  const char *s;
  size_t len, pos;
  int escape;
  const struct parser_vars *vars;
  bool skip_quotes; /* heredoc bodies: quotes are literal */
  bool raw;         /* keep escape tokens: set while reading a pattern */
  char *errbuf;
  size_t errsize;
};

/* Words being split on unquoted whitespace (EXPOSE's ProcessWords). */
struct words {
  struct strbuf word;
  bool in_word;
  struct strvec *out;
};

static int lex_error(struct lex *l, const char *fmt, ...) CB_PRINTF(2, 3);
static int lex_error(struct lex *l, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(l->errbuf, l->errsize, fmt, ap);
  va_end(ap);
  return -1;
}

/*
 * Length of the UTF-8 sequence at s (1 for a stray byte) and its code
 * point; invalid bytes decode to a value no class below accepts.  What is
 * invalid is what Go's utf8.DecodeRune rejects: overlong forms, surrogates,
 * code points past U+10FFFF and truncated sequences, one byte at a time.
 */
size_t parser_utf8_decode(const char *s, size_t avail, int32_t *cp)
{
  const unsigned char *u = (const unsigned char *)s;
  unsigned char lo = 0x80, hi = 0xbf;
  size_t n;
  int32_t c;
  if (u[0] < 0x80) {
    *cp = u[0];
    return 1;
  }
  if (u[0] >= 0xc2 && u[0] <= 0xdf) {
    n = 2;
    c = u[0] & 0x1f;
  } else if (u[0] >= 0xe0 && u[0] <= 0xef) {
    n = 3;
    c = u[0] & 0x0f;
    if (u[0] == 0xe0)
      lo = 0xa0;
    else if (u[0] == 0xed)
      hi = 0x9f;
  } else if (u[0] >= 0xf0 && u[0] <= 0xf4) {
    n = 4;
    c = u[0] & 0x07;
    if (u[0] == 0xf0)
      lo = 0x90;
    else if (u[0] == 0xf4)
      hi = 0x8f;
  } else {
    goto bad;
  }
  if (n > avail || u[1] < lo || u[1] > hi)
    goto bad;
  for (size_t i = 1; i < n; i++) {
    if ((u[i] & 0xc0) != 0x80)
      goto bad;
    c = (c << 6) | (u[i] & 0x3f);
  }
  *cp = c;
  return n;
bad:
  *cp = 0xdc00 + u[0]; /* a lone surrogate: never a letter or a space */
  return 1;
}

/* Whether c is what parser_utf8_decode() makes of an invalid byte. */
static bool cp_invalid(int32_t c)
{
  return c >= 0xdc80 && c <= 0xdcff;
}

/* Go reads an invalid byte as U+FFFD, and writes that back out. */
#define UTF8_REPLACEMENT "\xef\xbf\xbd"

/* Go's unicode.IsSpace for the code points a Dockerfile may hold. */
bool parser_is_space(int32_t c)
{
  switch (c) {
  case ' ': case '\t': case '\n': case '\v': case '\f': case '\r':
  case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029:
  case 0x202f: case 0x205f: case 0x3000:
    return true;
  }
  return c >= 0x2000 && c <= 0x200a;
}

/* A code point as a C string, for messages. */
static const char *cp_str(int32_t c, char buf[8])
{
  struct strbuf sb = STRBUF_INIT;
  strbuf_add_utf8(&sb, c < 0 || cp_invalid(c) ? 0xfffd : (uint32_t)c);
  snprintf(buf, 8, "%s", sb.buf);
  strbuf_release(&sb);
  return buf;
}

static bool is_digit(int32_t c) { return c >= '0' && c <= '9'; }

/* unicode.IsLetter, approximated by the scripts names are written in. */
static bool is_letter(int32_t c)
{
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return true;
  if (c < 0xc0)
    return c == 0xaa || c == 0xb5 || c == 0xba;
  if (c == 0xd7 || c == 0xf7)
    return false;
  return (c <= 0x2af) || (c >= 0x370 && c <= 0x3ff && c != 0x37e && c != 0x387) ||
         (c >= 0x400 && c <= 0x52f) || (c >= 0x4e00 && c <= 0x9fff) ||
         (c >= 0x3040 && c <= 0x30ff) || (c >= 0xac00 && c <= 0xd7a3);
}

static int32_t lex_peek(const struct lex *l)
{
  int32_t c;
  if (l->pos >= l->len)
    return LEX_EOF;
  parser_utf8_decode(l->s + l->pos, l->len - l->pos, &c);
  return c;
}

/* Consume one character, appending it to out when out is not NULL. */
static int32_t lex_next(struct lex *l, struct strbuf *out)
{
  int32_t c;
  size_t n;
  if (l->pos >= l->len)
    return LEX_EOF;
  n = parser_utf8_decode(l->s + l->pos, l->len - l->pos, &c);
  if (out && cp_invalid(c))
    strbuf_addstr(out, UTF8_REPLACEMENT); /* text/scanner's reading of it */
  else if (out)
    strbuf_add(out, l->s + l->pos, n);
  l->pos += n;
  return c;
}

static void words_add_raw(struct words *w, const char *s, size_t n)
{
  if (!w)
    return;
  strbuf_add(&w->word, s, n);
  w->in_word = true;
}

/* Add characters that came from a variable: whitespace splits words. */
static void words_add(struct words *w, const char *s, size_t n)
{
  size_t i = 0;
  if (!w)
    return;
  while (i < n) {
    int32_t c;
    size_t k = parser_utf8_decode(s + i, n - i, &c);
    if (parser_is_space(c)) {
      if (w->in_word && w->word.len) {
        strvec_push(w->out, w->word.buf);
        strbuf_reset(&w->word);
        w->in_word = false;
      }
    } else if (cp_invalid(c)) {
      /* BuildKit ranges over the value as runes, so the words get U+FFFD */
      words_add_raw(w, UTF8_REPLACEMENT, strlen(UTF8_REPLACEMENT));
    } else {
      words_add_raw(w, s + i, k);
    }
    i += k;
  }
}

static int lex_dollar(struct lex *l, struct strbuf *out);
static int lex_stop_on(struct lex *l, int32_t stop, bool raw_escapes,
                       struct strbuf *result, struct words *w);

/* '...': everything literal up to the next single quote. */
static int lex_single_quote(struct lex *l, struct strbuf *out)
{
  lex_next(l, NULL);
  for (;;) {
    int32_t c = lex_peek(l);
    if (c == LEX_EOF)
      return lex_error(l, "unexpected end of statement while looking for matching single-quote");
    if (c == '\'') {
      lex_next(l, NULL);
      return 0;
    }
    lex_next(l, out);
  }
}

/*
 * "...": literal but for $ and the escape token before " $ or itself.
 * Inside a pattern (l->raw) BuildKit keeps every escape token, so an
 * escape before another character comes out doubled.
 */
static int lex_double_quote(struct lex *l, struct strbuf *out)
{
  lex_next(l, NULL);
  for (;;) {
    int32_t c = lex_peek(l);
    if (c == LEX_EOF)
      return lex_error(l, "unexpected end of statement while looking for matching double-quote");
    if (c == '"') {
      lex_next(l, NULL);
      return 0;
    }
    if (c == '$') {
      if (lex_dollar(l, out) < 0)
        return -1;
      continue;
    }
    if (c == l->escape) {
      int32_t n;
      lex_next(l, NULL);
      if (l->raw)
        strbuf_addch(out, l->escape);
      n = lex_peek(l);
      if (n == LEX_EOF)
        continue; /* an escape at the end is dropped */
      if (n == '"' || n == '$' || n == l->escape)
        lex_next(l, out);
      else
        strbuf_addch(out, l->escape); /* other escapes stay literal */
      continue;
    }
    lex_next(l, out);
  }
}

/* A name: letters, digits and _, or a run of digits, or one special
 * parameter character. */
static void lex_name(struct lex *l, struct strbuf *name)
{
  int32_t c = lex_peek(l);
  if (c != LEX_EOF && is_digit(c)) {
    while ((c = lex_peek(l)) != LEX_EOF && is_digit(c))
      lex_next(l, name);
    return;
  }
  /* c < 0x80: strchr() would truncate U+0124 to '$' */
  if (c > 0 && c < 0x80 && strchr("@*#?-$!0", (int)c)) {
    lex_next(l, name);
    return;
  }
  while ((c = lex_peek(l)) != LEX_EOF && (is_letter(c) || is_digit(c) || c == '_'))
    lex_next(l, name);
}

/*
 * ---- shell patterns, for ${v#p} ${v%p} ${v/p/r} ----
 *
 * BuildKit compiles a pattern to a Go regular expression: '*' is ".*"
 * (".*?" for the shortest match), '?' is ".", and everything else is
 * literal, '[' included: there are no bracket expressions.  '\' escapes
 * '*', '?' and '\', is dropped before '}' and '/', and is an error before
 * anything else.  Go's '.' never matches a newline, so neither '*' nor '?'
 * does here.  We run the pattern as a small NFA instead; for patterns made
 * of literals, '?' and '*', Go's leftmost-first greedy (lazy) match is the
 * leftmost longest (shortest) one, which is what the NFA finds.
 */
enum { PAT_ANY = -2, PAT_STAR = -3 };

struct pattern {
  int32_t *el; /* a code point, PAT_ANY or PAT_STAR */
  size_t n;
};

/* The code points of s, an invalid byte read as U+FFFD as Go reads it;
 * offs, when not NULL, gets each one's byte offset, then len. */
static size_t utf8_runes(const char *s, size_t len, int32_t **runes, size_t **offs)
{
  size_t n = 0;
  *runes = xreallocarray(NULL, len + 1, sizeof(**runes));
  if (offs)
    *offs = xreallocarray(NULL, len + 1, sizeof(**offs));
  for (size_t i = 0; i < len;) {
    int32_t c;
    size_t k = parser_utf8_decode(s + i, len - i, &c);
    if (offs)
      (*offs)[n] = i;
    (*runes)[n++] = cp_invalid(c) ? 0xfffd : c;
    i += k;
  }
  if (offs)
    (*offs)[n] = len;
  return n;
}

static void add_runes(struct strbuf *sb, const int32_t *r, size_t n)
{
  for (size_t i = 0; i < n; i++)
    strbuf_add_utf8(sb, (uint32_t)r[i]);
}

/* Compile BuildKit's pattern syntax; -1 with err set on a bad escape. */
static int pattern_compile(const char *pat, size_t plen, struct pattern *p, char *err,
                           size_t errsize)
{
  int32_t *r;
  size_t n = utf8_runes(pat, plen, &r, NULL), i = 0;
  char cbuf[8];
  p->el = xreallocarray(NULL, n + 1, sizeof(*p->el));
  p->n = 0;
  if (n > 0 && r[0] == 0xfeff)
    i = 1; /* text/scanner skips a byte order mark at the start */
  for (; i < n; i++) {
    int32_t c = r[i];
    if (c == '*') {
      c = PAT_STAR;
    } else if (c == '?') {
      c = PAT_ANY;
    } else if (c == '\\') {
      if (i + 1 < n && (r[i + 1] == '}' || r[i + 1] == '/'))
        continue;
      c = i + 1 < n ? r[++i] : LEX_EOF;
      if (c != '*' && c != '?' && c != '\\') {
        snprintf(err, errsize, "invalid escape '\\%s'", cp_str(c, cbuf));
        free(r);
        free(p->el);
        p->el = NULL;
        return -1;
      }
    }
    p->el[p->n++] = c;
  }
  free(r);
  return 0;
}

static bool el_accepts(int32_t e, int32_t c)
{
  return e < 0 ? c != '\n' : e == c;
}

/* The NFA's threads: for each state (number of elements matched), the
 * leftmost start of a thread in it, or -1.  A star may match nothing. */
static void nfa_close(const struct pattern *p, ssize_t *st)
{
  for (size_t k = 0; k < p->n; k++)
    if (p->el[k] == PAT_STAR && st[k] >= 0 && (st[k + 1] < 0 || st[k] < st[k + 1]))
      st[k + 1] = st[k];
}

static void nfa_step(const struct pattern *p, const ssize_t *cur, ssize_t *next, int32_t c)
{
  for (size_t k = 0; k <= p->n; k++)
    next[k] = -1;
  for (size_t k = 0; k < p->n; k++) {
    size_t to = p->el[k] == PAT_STAR ? k : k + 1;
    if (cur[k] >= 0 && el_accepts(p->el[k], c) && (next[to] < 0 || cur[k] < next[to]))
      next[to] = cur[k];
  }
  nfa_close(p, next);
}

/*
 * Find p in the code points s[from..n): the leftmost match, and of those
 * the longest, or with `shortest` the first to end.  `anchored` allows
 * only matches starting at from.  O(n * pattern length).
 */
static bool pattern_find(const struct pattern *p, const int32_t *s, size_t n, size_t from,
                         bool anchored, bool shortest, size_t *mstart, size_t *mend)
{
  ssize_t *cur = xreallocarray(NULL, p->n + 1, sizeof(*cur));
  ssize_t *next = xreallocarray(NULL, p->n + 1, sizeof(*next));
  ssize_t best = -1;
  for (size_t k = 0; k <= p->n; k++)
    cur[k] = -1;
  for (size_t i = from;; i++) {
    bool alive = false;
    ssize_t *tmp;
    if (best < 0 && (!anchored || i == from)) {
      if (cur[0] < 0)
        cur[0] = (ssize_t)i;
      nfa_close(p, cur);
    }
    if (cur[p->n] >= 0 && (best < 0 || cur[p->n] <= best)) {
      best = cur[p->n];
      *mstart = (size_t)best;
      *mend = i;
      if (shortest)
        break;
    }
    if (i == n)
      break;
    for (size_t k = 0; k <= p->n && !alive; k++)
      alive = cur[k] >= 0 && (best < 0 || cur[k] <= best);
    if (!alive && (anchored || best >= 0))
      break;
    nfa_step(p, cur, next, s[i]);
    tmp = cur;
    cur = next;
    next = tmp;
  }
  free(cur);
  free(next);
  return best >= 0;
}

/* Whether the whole of str matches the pattern; a bad pattern matches
 * nothing. */
bool parser_shell_match(const char *pat, size_t plen, const char *str, size_t slen)
{
  struct pattern p;
  char err[64];
  int32_t *s;
  size_t n, b, e;
  bool m;
  if (pattern_compile(pat, plen, &p, err, sizeof(err)) < 0)
    return false;
  n = utf8_runes(str, slen, &s, NULL);
  m = pattern_find(&p, s, n, 0, true, false, &b, &e) && e == n;
  free(s);
  free(p.el);
  return m;
}

/* ${v#p} ${v##p}: cut the shortest (longest) prefix matching p. */
static int trim_prefix(struct lex *l, const char *pat, size_t plen, const char *v,
                       bool longest, struct strbuf *out)
{
  struct pattern p;
  char err[64];
  int32_t *r;
  size_t *offs, n, b, e;
  if (pattern_compile(pat, plen, &p, err, sizeof(err)) < 0)
    return lex_error(l, "invalid pattern (%.*s) in substitution: %s", (int)plen, pat, err);
  n = utf8_runes(v, strlen(v), &r, &offs);
  if (pattern_find(&p, r, n, 0, true, !longest, &b, &e))
    strbuf_addstr(out, v + offs[e]);
  else
    strbuf_addstr(out, v);
  free(r);
  free(offs);
  free(p.el);
  return 0;
}

/*
 * ${v%p} ${v%%p}: BuildKit reverses the pattern (each escape staying in
 * front of what it escapes) and the value's code points, cuts a prefix and
 * reverses back.  We do the same, so that an error names the reversed
 * pattern and invalid bytes in the value come back as U+FFFD, as there.
 */
static int trim_suffix(struct lex *l, const char *pat, size_t plen, const char *v,
                       bool longest, struct strbuf *out)
{
  cleanup_strbuf struct strbuf rpat = STRBUF_INIT;
  struct pattern p;
  char err[64];
  int32_t *pr, *tmp, *r, *rev;
  size_t np = utf8_runes(pat, plen, &pr, NULL), n, b, e;
  tmp = xreallocarray(NULL, np + 1, sizeof(*tmp));
  for (size_t i = 0; i < np;) {
    size_t o = np - 1 - i;
    if (pr[i] == '\\' && i + 1 < np) {
      tmp[o - 1] = '\\';
      tmp[o] = pr[i + 1];
      i += 2;
    } else {
      tmp[o] = pr[i++];
    }
  }
  add_runes(&rpat, tmp, np);
  free(pr);
  free(tmp);
  if (pattern_compile(rpat.buf, rpat.len, &p, err, sizeof(err)) < 0)
    return lex_error(l, "invalid pattern (%s) in substitution: %s", rpat.buf, err);
  n = utf8_runes(v, strlen(v), &r, NULL);
  rev = xreallocarray(NULL, n + 1, sizeof(*rev));
  for (size_t i = 0; i < n; i++)
    rev[i] = r[n - 1 - i];
  if (!pattern_find(&p, rev, n, 0, true, !longest, &b, &e))
    e = 0;
  add_runes(out, r, n - e);
  free(r);
  free(rev);
  free(p.el);
  return 0;
}

/* Go's Regexp.Expand for a pattern without groups: "$$" is '$', "$0" and
 * "${0}" the match, any other $name or ${name} nothing, and a '$' starting
 * neither stays. */
static void expand_template(const char *t, const char *match, size_t mlen, struct strbuf *out)
{
  const char *d;
  while ((d = strchr(t, '$')) != NULL) {
    const char *name;
    size_t i = 0, nlen;
    bool brace;
    strbuf_add(out, t, (size_t)(d - t));
    t = d + 1;
    if (*t == '$') {
      strbuf_addch(out, '$');
      t++;
      continue;
    }
    brace = *t == '{';
    name = t + brace;
    nlen = strlen(name);
    while (i < nlen) {
      int32_t c;
      size_t k = parser_utf8_decode(name + i, nlen - i, &c);
      if (!is_letter(c) && !is_digit(c) && c != '_')
        break;
      i += k;
    }
    if (i == 0 || (brace && name[i] != '}')) {
      strbuf_addch(out, '$');
      continue;
    }
    if (i == 1 && name[0] == '0')
      strbuf_add(out, match, mlen);
    t = name + i + brace;
  }
  strbuf_addstr(out, t);
}

/*
 * ${v/p/r}: the first match replaced by r as it is.  ${v//p/r}: Go's
 * ReplaceAllString, which expands r as a template and skips an empty match
 * right after another match.
 */
static int replace_pattern(struct lex *l, const char *pat, size_t plen, const char *repl,
                           const char *v, bool all, struct strbuf *out)
{
  struct pattern p;
  char err[64];
  int32_t *r;
  size_t *offs, n, b, e, pos = 0, last = 0;
  if (pattern_compile(pat, plen, &p, err, sizeof(err)) < 0)
    return lex_error(l, "invalid pattern (%.*s) in substitution: %s", (int)plen, pat, err);
  n = utf8_runes(v, strlen(v), &r, &offs);
  if (!all) {
    if (pattern_find(&p, r, n, 0, false, false, &b, &e)) {
      strbuf_add(out, v, offs[b]);
      strbuf_addstr(out, repl);
      last = e;
    }
  } else {
    while (pos <= n && pattern_find(&p, r, n, pos, false, false, &b, &e)) {
      strbuf_add(out, v + offs[last], offs[b] - offs[last]);
      if (e > last || b == 0)
        expand_template(repl, v + offs[b], offs[e] - offs[b], out);
      last = e;
      pos = e > pos + 1 ? e : pos + 1;
    }
  }
  strbuf_addstr(out, v + offs[last]);
  free(r);
  free(offs);
  free(p.el);
  return 0;
}

/* After "${name/": the pattern, then the replacement. */
static int lex_dollar_replace(struct lex *l, const char *name, struct strbuf *out)
{
  cleanup_strbuf struct strbuf pat = STRBUF_INIT;
  cleanup_strbuf struct strbuf repl = STRBUF_INIT;
  const char *value;
  bool all = lex_peek(l) == '/';
  if (all)
    lex_next(l, NULL);
  if (lex_stop_on(l, '/', true, &pat, NULL) < 0) {
    if (lex_peek(l) == LEX_EOF)
      return lex_error(l, "syntax error: missing '/' in ${}");
    return -1;
  }
  if (lex_stop_on(l, '}', true, &repl, NULL) < 0) {
    if (lex_peek(l) == LEX_EOF)
      return lex_error(l, "syntax error: missing '}'");
    return -1;
  }
  value = parser_vars_get(l->vars, name);
  return replace_pattern(l, pat.buf, pat.len, repl.buf, value ? value : "", all, out);
}

static int lex_dollar(struct lex *l, struct strbuf *out)
{
  cleanup_strbuf struct strbuf name = STRBUF_INIT;
  cleanup_strbuf struct strbuf word = STRBUF_INIT;
  const char *value;
  bool null_is_unset = false, unset;
  int32_t c, op;
  char cbuf[8];

  lex_next(l, NULL); /* $ */
  if (lex_peek(l) != '{') {
    lex_name(l, &name);
    if (name.len == 0) {
      strbuf_addch(out, '$');
      return 0;
    }
    value = parser_vars_get(l->vars, name.buf);
    strbuf_addstr(out, value ? value : "");
    return 0;
  }
  lex_next(l, NULL); /* { */
  c = lex_peek(l);
  if (c == LEX_EOF)
    return lex_error(l, "syntax error: missing '}'");
  if (c == '{' || c == '}' || c == ':')
    return lex_error(l, "syntax error: bad substitution");
  lex_name(l, &name);
  /* At the end, op is LEX_EOF: "${v" is an unsupported modifier (U+FFFD)
   * to BuildKit, not a missing '}'. */
  op = lex_next(l, NULL);
  value = parser_vars_get(l->vars, name.buf);
  switch (op) {
  case '}':
    strbuf_addstr(out, value ? value : "");
    return 0;
  case '/':
    return lex_dollar_replace(l, name.buf, out);
  case ':':
    null_is_unset = true;
    op = lex_next(l, NULL);
    /* ${v:#p} and ${v:%p} fail at once; any other ${v:xp} only once p is
     * read, so that a missing '}' or an error inside p comes first. */
    if (op == '#' || op == '%')
      return lex_error(l, "unsupported modifier (:%s) in substitution", cp_str(op, cbuf));
    break;
  case '-': case '+': case '?': case '#': case '%':
    break;
  default:
    return lex_error(l, "unsupported modifier (%s) in substitution", cp_str(op, cbuf));
  }

  if (lex_stop_on(l, '}', op == '#' || op == '%', &word, NULL) < 0) {
    if (lex_peek(l) == LEX_EOF)
      return lex_error(l, "syntax error: missing '}'");
    return -1;
  }
  unset = value == NULL || (null_is_unset && *value == '\0');
  switch (op) {
  case '-':
    strbuf_addstr(out, unset ? word.buf : value);
    return 0;
  case '+':
    if (!unset)
      strbuf_addstr(out, word.buf);
    return 0;
  case '?':
    if (value == NULL)
      return lex_error(l, "%s: %s", name.buf,
                       word.len ? word.buf : "is not allowed to be unset");
    if (unset)
      return lex_error(l, "%s: %s", name.buf,
                       word.len ? word.buf : "is not allowed to be empty");
    strbuf_addstr(out, value);
    return 0;
  case '#':
  case '%': {
    bool longest = word.len > 0 && word.buf[0] == (char)op;
    const char *pat = word.buf + (longest ? 1 : 0);
    size_t plen = word.len - (longest ? 1 : 0);
    if (op == '#')
      return trim_prefix(l, pat, plen, value ? value : "", longest, out);
    return trim_suffix(l, pat, plen, value ? value : "", longest, out);
  }
  default: /* ${v:xp} */
    return lex_error(l, "unsupported modifier (:%s) in substitution", cp_str(op, cbuf));
  }
}

/* Process up to `stop` (or the end when stop is LEX_EOF), appending the
 * result; in patterns (l->raw) the escape token is kept. */
static int lex_scan(struct lex *l, int32_t stop, struct strbuf *result, struct words *w)
{
  while (lex_peek(l) != LEX_EOF) {
    int32_t c = lex_peek(l);
    size_t before = result->len;
    if (stop != LEX_EOF && c == stop) {
      lex_next(l, NULL);
      return 0;
    }
    if (c == '$' || (!l->skip_quotes && (c == '\'' || c == '"'))) {
      int r = c == '$' ? lex_dollar(l, result)
              : c == '\'' ? lex_single_quote(l, result)
                          : lex_double_quote(l, result);
      if (r < 0)
        return -1;
      if (c == '$')
        words_add(w, result->buf + before, result->len - before);
      else
        words_add_raw(w, result->buf + before, result->len - before);
      continue;
    }
    if (c == l->escape) {
      lex_next(l, NULL);
      if (l->raw) {
        strbuf_addch(result, l->escape);
        words_add_raw(w, result->buf + before, 1);
        before++;
      }
      if (lex_next(l, result) == LEX_EOF)
        break;
      words_add_raw(w, result->buf + before, result->len - before);
      continue;
    }
    lex_next(l, result);
    words_add(w, result->buf + before, result->len - before);
  }
  if (stop != LEX_EOF)
  {
    char cbuf[8];
    return lex_error(l, "unexpected end of statement while looking for matching %s",
                     cp_str(stop, cbuf));
  }
  return 0;
}

/* lex_scan with escapes kept raw or not, for this level of nesting only,
 * as BuildKit's processStopOn sets and restores rawEscapes. */
static int lex_stop_on(struct lex *l, int32_t stop, bool raw_escapes,
                       struct strbuf *result, struct words *w)
{
  bool outer = l->raw;
  int r;
  l->raw = raw_escapes;
  r = lex_scan(l, stop, result, w);
  l->raw = outer;
  return r;
}

/* Go's unicode.IsPrint, near enough: graphic characters and ' ', not
 * other spaces, controls, format characters or private use. */
static bool go_is_print(int32_t c)
{
  if (c < 0x100)
    return (c >= 0x20 && c <= 0x7e) || (c >= 0xa1 && c != 0xad);
  return !(parser_is_space(c) || (c >= 0x200b && c <= 0x200f) ||
           (c >= 0x202a && c <= 0x202e) || (c >= 0x2060 && c <= 0x206f) || c == 0xfeff ||
           (c >= 0xfff9 && c <= 0xfffb) || (c >= 0x600 && c <= 0x605) || c == 0x61c ||
           c == 0x6dd || c == 0x70f || c == 0x180e || (c >= 0xd800 && c <= 0xf8ff) ||
           (c >= 0xfdd0 && c <= 0xfdef) || (c & 0xfffe) == 0xfffe ||
           (c >= 0xe0000 && c <= 0xe007f) || c >= 0xf0000);
}

/* Go's strconv.Quote (the %q BuildKit names the word with). */
static void go_quote(struct strbuf *sb, const char *s)
{
  size_t len = strlen(s);
  strbuf_addch(sb, '"');
  for (size_t i = 0; i < len;) {
    int32_t c;
    size_t k = parser_utf8_decode(s + i, len - i, &c);
    const char *esc = NULL;
    switch (c) {
    case '\a': esc = "\\a"; break;
    case '\b': esc = "\\b"; break;
    case '\f': esc = "\\f"; break;
    case '\n': esc = "\\n"; break;
    case '\r': esc = "\\r"; break;
    case '\t': esc = "\\t"; break;
    case '\v': esc = "\\v"; break;
    case '"': esc = "\\\""; break;
    case '\\': esc = "\\\\"; break;
    }
    if (cp_invalid(c))
      strbuf_addf(sb, "\\x%02x", (unsigned char)s[i]);
    else if (esc)
      strbuf_addstr(sb, esc);
    else if (go_is_print(c))
      strbuf_add(sb, s + i, k);
    else if (c < ' ' || c == 0x7f)
      strbuf_addf(sb, "\\x%02x", (unsigned)c);
    else if (c < 0x10000)
      strbuf_addf(sb, "\\u%04x", (unsigned)c);
    else
      strbuf_addf(sb, "\\U%08x", (unsigned)c);
    i += k;
  }
  strbuf_addch(sb, '"');
}

static int lex_run(const char *word, char escape, bool skip_quotes,
                   const struct parser_vars *vars, struct strbuf *out,
                   struct strvec *words, char *errbuf, size_t errsize)
{
  struct lex l = { word, strlen(word), 0, escape, vars, skip_quotes, false, errbuf, errsize };
  struct strvec found = STRVEC_INIT;
  struct words w = { STRBUF_INIT, false, &found };
  int r;
  if (cb_starts_with(word, "\xef\xbb\xbf"))
    l.pos = 3; /* text/scanner skips a byte order mark at the start */
  r = lex_stop_on(&l, LEX_EOF, false, out, words ? &w : NULL);
  if (r == 0 && w.word.len)
    strvec_push(&found, w.word.buf);
  strbuf_release(&w.word);
  /* words are only handed over on success */
  for (size_t i = 0; r == 0 && i < found.n; i++)
    strvec_push(words, found.v[i]);
  strvec_clear(&found);
  if (r < 0) {
    cleanup_strbuf struct strbuf msg = STRBUF_INIT;
    strbuf_addstr(&msg, "failed to process ");
    go_quote(&msg, word);
    strbuf_addf(&msg, ": %s", errbuf);
    snprintf(errbuf, errsize, "%s", msg.buf);
  }
  return r;
}

int parser_expand_word(const char *word, char escape, const struct parser_vars *vars,
                       struct strbuf *out, char *errbuf, size_t errsize)
{
  return lex_run(word, escape, false, vars, out, NULL, errbuf, errsize);
}

int parser_expand_words(const char *word, char escape, const struct parser_vars *vars,
                        struct strvec *out, char *errbuf, size_t errsize)
{
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  return lex_run(word, escape, false, vars, &sb, out, errbuf, errsize);
}

int parser_expand_heredoc(const char *text, const struct parser_vars *vars,
                          struct strbuf *out, char *errbuf, size_t errsize)
{
  /* Heredoc bodies keep their quotes, and always escape with a backslash. */
  return lex_run(text, '\\', true, vars, out, NULL, errbuf, errsize);
}
