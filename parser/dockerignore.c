/*
 * .dockerignore: read the file into patterns and match context paths against
 * them, with the semantics `docker build` and BuildKit get from
 * moby/patternmatcher (ignorefile.ReadAll, then New, then
 * MatchesOrParentMatches).
 *
 * patternmatcher checks a pattern's syntax with Go's filepath.Match, then
 * sorts it into one of four kinds: an exact string, a prefix (plain text
 * then `**`), a suffix (`**` then plain text) or a regular expression,
 * which it builds by rewriting the pattern textually and hands to Go's
 * regexp package.  That rewriting has corners where it does not behave like
 * filepath.Match: `[!a]` is a class of '!' and 'a', not a negation; `\d` is
 * a digit; `[[:digit:]]` is a POSIX class; `**foo` matches "xfoo".  People
 * write their .dockerignore against what Docker does, so we reproduce it:
 * we build the same regular expression text, parse it with the part of Go's
 * RE2 syntax that the rewriting can produce, and run it as a Thompson NFA.
 * The simulation costs path length times program size whatever the pattern,
 * so a hostile pattern such as `*a*a*a*a*a*b` cannot make matching explode.
 */
#include "parser.h"

/* ---- UTF-8 and Go's string helpers ---- */

/*
 * Decode one rune from s[0..n), n > 0, as Go's utf8.DecodeRune does: an
 * invalid, overlong, surrogate or truncated sequence yields U+FFFD with a
 * width of 1.  Go's regexp and text/scanner both read runes this way.
 */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *r)
{
  unsigned c = s[0];
  unsigned lo = 0x80, hi = 0xbf;
  size_t need;
  uint32_t cp;

  if (c < 0x80) {
    *r = c;
    return 1;
  }
  if (c >= 0xc2 && c <= 0xdf) {
    need = 1;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    need = 2;
    cp = c & 0x0f;
    if (c == 0xe0)
      lo = 0xa0; /* overlong */
    else if (c == 0xed)
      hi = 0x9f; /* surrogates */
  } else if (c >= 0xf0 && c <= 0xf4) {
    need = 3;
    cp = c & 0x07;
    if (c == 0xf0)
      lo = 0x90; /* overlong */
    else if (c == 0xf4)
      hi = 0x8f; /* above U+10FFFF */
  } else {
    goto bad;
  }
  if (n <= need || s[1] < lo || s[1] > hi)
    goto bad;
  cp = (cp << 6) | (s[1] & 0x3f);
  for (size_t i = 2; i <= need; i++) {
    if ((s[i] & 0xc0) != 0x80)
      goto bad;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  *r = cp;
  return need + 1;
bad:
  *r = 0xfffd;
  return 1;
}

/* Go's unicode.IsSpace, which strings.TrimSpace uses. */
static bool go_is_space(uint32_t r)
{
  switch (r) {
  case '\t': case '\n': case '\v': case '\f': case '\r': case ' ':
  case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029:
  case 0x202f: case 0x205f: case 0x3000:
    return true;
  default:
    return r >= 0x2000 && r <= 0x200a;
  }
}

/* strings.TrimSpace on s[0..*n), in place. */
static void go_trim_space(const char **s, size_t *n)
{
  const unsigned char *p = (const unsigned char *)*s;
  size_t len = *n, pos = 0, end = 0;
  uint32_t r;

  while (pos < len) {
    size_t w = utf8_decode(p + pos, len - pos, &r);
    if (!go_is_space(r))
      break;
    pos += w;
  }
  p += pos;
  len -= pos;
  /*
   * Go trims the right end by decoding backwards; decoding forwards and
   * remembering where the last non-space rune ends gives the same answer,
   * because both see the same rune at every lead byte.
   */
  for (pos = 0; pos < len;) {
    size_t w = utf8_decode(p + pos, len - pos, &r);
    pos += w;
    if (!go_is_space(r))
      end = pos;
  }
  *s = (const char *)p;
  *n = end;
}

/*
 * Go's filepath.Clean on Unix, from p[0..n) into out: collapse repeated
 * slashes, drop "." elements and a trailing slash, and resolve ".." against
 * the element before it, lexically.  The empty path becomes ".".
 */
static void path_clean(const char *p, size_t n, struct strbuf *out)
{
  bool rooted = n > 0 && p[0] == '/';
  /* out->len below which ".." must not remove anything: the root, or
   * leading ".." elements of a relative path. */
  size_t floor = 0;
  size_t i = 0;

  strbuf_reset(out);
  if (rooted) {
    strbuf_addch(out, '/');
    floor = 1;
  }
  while (i < n) {
    size_t j = i;
    if (p[i] == '/') {
      i++;
      continue;
    }
    while (j < n && p[j] != '/')
      j++;
    if (j - i == 1 && p[i] == '.') {
      /* "." names the same directory */
    } else if (j - i == 2 && p[i] == '.' && p[i + 1] == '.') {
      if (out->len > floor) {
        size_t k = out->len - 1;
        while (k > floor && out->buf[k] != '/')
          k--;
        strbuf_setlen(out, k);
      } else if (!rooted) {
        if (out->len > 0)
          strbuf_addch(out, '/');
        strbuf_addstr(out, "..");
        floor = out->len;
      }
      /* ".." at the root stays at the root */
    } else {
      if (out->len > (rooted ? 1u : 0u))
        strbuf_addch(out, '/');
      strbuf_add(out, p + i, j - i);
    }
    i = j;
  }
  if (out->len == 0)
    strbuf_addch(out, '.');
}

/* ---- a small regular-expression engine for Go's RE2 syntax ---- */

enum re_op {
  RE_CLASS,  /* consume a rune in pairs x .. x + y of ranges (not in them if arg) */
  RE_ANY,    /* consume any rune but '\n' (Go's `.` without the s flag) */
  RE_ASSERT, /* empty-width test `arg` (enum re_assert), then go on */
  RE_SPLIT,  /* go on at x and at y */
  RE_JMP,    /* go on at x */
  RE_MATCH,
};

enum re_assert {
  RE_BEGIN_TEXT,
  RE_END_TEXT,
  RE_WORD_BOUNDARY,
  RE_NOT_WORD_BOUNDARY,
};

/* Consuming instructions and assertions go on at the next instruction. */
struct re_inst {
  uint8_t op;
  uint8_t arg; /* RE_CLASS: negated; RE_ASSERT: enum re_assert */
  uint32_t x, y;
};

struct re_prog {
  struct re_inst *inst;
  size_t n, alloc;
  uint32_t *ranges; /* lo, hi pairs of the classes, inclusive */
  size_t nranges;   /* pairs */
  size_t ranges_alloc;
};

static void re_prog_release(struct re_prog *prog)
{
  free(prog->inst);
  free(prog->ranges);
  memset(prog, 0, sizeof(*prog));
}

static uint32_t re_emit(struct re_prog *prog, enum re_op op, uint8_t arg,
                        uint32_t x, uint32_t y)
{
  CB_GROW(prog->inst, prog->n + 1, prog->alloc);
  prog->inst[prog->n] = (struct re_inst){ (uint8_t)op, arg, x, y };
  return (uint32_t)prog->n++;
}

static void re_range_add(struct re_prog *prog, uint32_t lo, uint32_t hi)
{
  CB_GROW(prog->ranges, st_mult(prog->nranges + 1, 2), prog->ranges_alloc);
  prog->ranges[2 * prog->nranges] = lo;
  prog->ranges[2 * prog->nranges + 1] = hi;
  prog->nranges++;
}

/* Add a sorted, disjoint table of pairs, or its complement. */
static void re_ranges_add_table(struct re_prog *prog, const uint32_t *t,
                                size_t npairs, bool negate)
{
  uint32_t next = 0;
  for (size_t i = 0; i < npairs; i++) {
    if (!negate)
      re_range_add(prog, t[2 * i], t[2 * i + 1]);
    else if (t[2 * i] > next)
      re_range_add(prog, next, t[2 * i] - 1);
    next = t[2 * i + 1] + 1;
  }
  if (negate && next <= 0x10ffff)
    re_range_add(prog, next, 0x10ffff);
}

static const uint32_t re_tab_digit[] = { '0', '9' };
static const uint32_t re_tab_space_perl[] = { '\t', '\n', '\f', '\r', ' ', ' ' };
static const uint32_t re_tab_word[] = { '0', '9', 'A', 'Z', '_', '_', 'a', 'z' };
static const uint32_t re_tab_alnum[] = { '0', '9', 'A', 'Z', 'a', 'z' };
static const uint32_t re_tab_alpha[] = { 'A', 'Z', 'a', 'z' };
static const uint32_t re_tab_ascii[] = { 0, 0x7f };
static const uint32_t re_tab_blank[] = { '\t', '\t', ' ', ' ' };
static const uint32_t re_tab_cntrl[] = { 0, 0x1f, 0x7f, 0x7f };
static const uint32_t re_tab_graph[] = { '!', '~' };
static const uint32_t re_tab_lower[] = { 'a', 'z' };
static const uint32_t re_tab_print[] = { ' ', '~' };
static const uint32_t re_tab_punct[] = { '!', '/', ':', '@', '[', '`', '{', '~' };
static const uint32_t re_tab_space[] = { '\t', '\r', ' ', ' ' };
static const uint32_t re_tab_upper[] = { 'A', 'Z' };
static const uint32_t re_tab_xdigit[] = { '0', '9', 'A', 'F', 'a', 'f' };

struct re_table {
  const char *name;
  const uint32_t *t;
  size_t npairs;
};
#define RE_TABLE(name, t) { name, t, CB_ARRAY_SIZE(t) / 2 }

/* The POSIX classes RE2 accepts inside brackets, all ASCII. */
static const struct re_table re_posix[] = {
  RE_TABLE("alnum", re_tab_alnum), RE_TABLE("alpha", re_tab_alpha),
  RE_TABLE("ascii", re_tab_ascii), RE_TABLE("blank", re_tab_blank),
  RE_TABLE("cntrl", re_tab_cntrl), RE_TABLE("digit", re_tab_digit),
  RE_TABLE("graph", re_tab_graph), RE_TABLE("lower", re_tab_lower),
  RE_TABLE("print", re_tab_print), RE_TABLE("punct", re_tab_punct),
  RE_TABLE("space", re_tab_space), RE_TABLE("upper", re_tab_upper),
  RE_TABLE("word", re_tab_word), RE_TABLE("xdigit", re_tab_xdigit),
};

/* The table for the Perl class escape \c (d, s, w and their upper-case
 * negations), or NULL. */
static const struct re_table *re_perl_class(unsigned char c, bool *negate)
{
  static const struct re_table d = RE_TABLE("d", re_tab_digit);
  static const struct re_table s = RE_TABLE("s", re_tab_space_perl);
  static const struct re_table w = RE_TABLE("w", re_tab_word);

  *negate = c == 'D' || c == 'S' || c == 'W';
  switch (c) {
  case 'd': case 'D': return &d;
  case 's': case 'S': return &s;
  case 'w': case 'W': return &w;
  default: return NULL;
  }
}

/*
 * The parser turns the expression into a flat list of tokens; groups are an
 * OPEN and a CLOSE token carrying the same repetition, so that compiling
 * needs neither a tree nor recursion.
 */
enum re_tok_kind { TOK_CLASS, TOK_ANY, TOK_ASSERT, TOK_OPEN, TOK_CLOSE };

struct re_tok {
  uint8_t kind;
  uint8_t arg;   /* TOK_CLASS: negated; TOK_ASSERT: enum re_assert */
  char quant;    /* 0, '*', '+' or '?' */
  uint32_t off;  /* TOK_CLASS: first pair in prog->ranges */
  uint32_t cnt;  /* TOK_CLASS: number of pairs */
  size_t open;   /* TOK_CLOSE: index of its TOK_OPEN */
};

struct re_parser {
  const unsigned char *s;
  size_t n, pos;
  struct re_prog *prog;
  struct re_tok *toks;
  size_t ntoks, toks_alloc;
  size_t *opens; /* indexes of the OPEN tokens not yet closed */
  size_t nopens, opens_alloc;
  const char *err;
};

static size_t re_tok_push(struct re_parser *p, enum re_tok_kind kind,
                          uint8_t arg)
{
  CB_GROW(p->toks, p->ntoks + 1, p->toks_alloc);
  p->toks[p->ntoks] = (struct re_tok){ .kind = (uint8_t)kind, .arg = arg };
  return p->ntoks++;
}

/* Push a class token for the ranges added since pair `off`. */
static size_t re_tok_class(struct re_parser *p, size_t off, bool negated)
{
  size_t t = re_tok_push(p, TOK_CLASS, negated);
  p->toks[t].off = (uint32_t)off;
  p->toks[t].cnt = (uint32_t)(p->prog->nranges - off);
  return t;
}

static size_t re_tok_literal(struct re_parser *p, uint32_t r)
{
  size_t off = p->prog->nranges;
  re_range_add(p->prog, r, r);
  return re_tok_class(p, off, false);
}

static int re_fail(struct re_parser *p, const char *why)
{
  p->err = why;
  return -1;
}

static int re_unhex(uint32_t c)
{
  if (c >= '0' && c <= '9')
    return (int)(c - '0');
  if (c >= 'a' && c <= 'f')
    return (int)(c - 'a' + 10);
  if (c >= 'A' && c <= 'F')
    return (int)(c - 'A' + 10);
  return -1;
}

static bool re_isalnum(uint32_t c)
{
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z');
}

/* A single-rune escape at p->pos (which holds the backslash), as RE2's
 * parseEscape reads it. */
static int re_parse_escape(struct re_parser *p, uint32_t *r)
{
  uint32_t c;

  p->pos++;
  if (p->pos >= p->n)
    return re_fail(p, "trailing backslash at end of expression");
  p->pos += utf8_decode(p->s + p->pos, p->n - p->pos, &c);
  /* Escaped punctuation always stands for itself. */
  if (c < 0x80 && !re_isalnum(c)) {
    *r = c;
    return 0;
  }
  switch (c) {
  case '1': case '2': case '3': case '4': case '5': case '6': case '7':
    /* A lone digit would be a backreference, which RE2 lacks. */
    if (p->pos >= p->n || p->s[p->pos] < '0' || p->s[p->pos] > '7')
      break;
    /* fall through */
  case '0':
    *r = c - '0';
    for (int i = 1; i < 3 && p->pos < p->n && p->s[p->pos] >= '0' &&
                    p->s[p->pos] <= '7'; i++)
      *r = *r * 8 + (uint32_t)(p->s[p->pos++] - '0');
    return 0;
  case 'x': {
    /* Only \xHH can reach us: the rewriting escapes '{', so \x{...} is
     * never well-formed here. */
    uint32_t a, b;
    if (p->pos >= p->n)
      break;
    p->pos += utf8_decode(p->s + p->pos, p->n - p->pos, &a);
    if (p->pos >= p->n)
      break;
    p->pos += utf8_decode(p->s + p->pos, p->n - p->pos, &b);
    if (re_unhex(a) < 0 || re_unhex(b) < 0)
      break;
    *r = (uint32_t)(re_unhex(a) * 16 + re_unhex(b));
    return 0;
  }
  case 'a': *r = '\a'; return 0;
  case 'f': *r = '\f'; return 0;
  case 'n': *r = '\n'; return 0;
  case 'r': *r = '\r'; return 0;
  case 't': *r = '\t'; return 0;
  case 'v': *r = '\v'; return 0;
  default:
    break;
  }
  return re_fail(p, "invalid escape sequence");
}

static int re_class_char(struct re_parser *p, uint32_t *r)
{
  if (p->pos >= p->n)
    return re_fail(p, "missing closing ]");
  if (p->s[p->pos] == '\\')
    return re_parse_escape(p, r);
  p->pos += utf8_decode(p->s + p->pos, p->n - p->pos, r);
  return 0;
}

/*
 * A POSIX class such as "[:digit:]" or "[:^digit:]" at p->pos.  Like RE2,
 * look for the closing ":]" anywhere further on; without one the '[' is an
 * ordinary character.  Returns 1 when one was added, 0 when there is none,
 * -1 on an unknown name.
 */
static int re_posix_class(struct re_parser *p)
{
  const unsigned char *start = p->s + p->pos + 2;
  const unsigned char *end = NULL;
  size_t rest = p->n - p->pos - 2;
  bool negate = false;

  for (size_t i = 0; i + 1 < rest; i++) {
    if (start[i] == ':' && start[i + 1] == ']') {
      end = start + i;
      break;
    }
  }
  if (end == NULL)
    return 0;
  if (start < end && *start == '^') {
    negate = true;
    start++;
  }
  for (size_t i = 0; i < CB_ARRAY_SIZE(re_posix); i++) {
    size_t len = strlen(re_posix[i].name);
    if ((size_t)(end - start) == len && memcmp(start, re_posix[i].name, len) == 0) {
      re_ranges_add_table(p->prog, re_posix[i].t, re_posix[i].npairs, negate);
      p->pos = (size_t)(end + 2 - p->s);
      return 1;
    }
  }
  return re_fail(p, "invalid character class range");
}

/* A bracketed class at p->pos, following RE2's parseClass in Perl mode. */
static int re_parse_class(struct re_parser *p)
{
  size_t off = p->prog->nranges;
  bool negated = false, first = true;

  p->pos++;
  if (p->pos < p->n && p->s[p->pos] == '^') {
    negated = true;
    p->pos++;
  }
  for (;;) {
    uint32_t lo, hi;
    bool neg;
    const struct re_table *perl;

    if (p->pos >= p->n)
      return re_fail(p, "missing closing ]");
    /* A ']' right after the opening bracket is an ordinary character. */
    if (p->s[p->pos] == ']' && !first) {
      p->pos++;
      break;
    }
    first = false;
    if (p->n - p->pos > 2 && p->s[p->pos] == '[' && p->s[p->pos + 1] == ':') {
      int rc = re_posix_class(p);
      if (rc < 0)
        return -1;
      if (rc > 0)
        continue;
    }
    if (p->n - p->pos >= 2 && p->s[p->pos] == '\\') {
      unsigned char c = p->s[p->pos + 1];
      if (c == 'p' || c == 'P')
        return re_fail(p, "Unicode classes (\\p, \\P) are not supported");
      perl = re_perl_class(c, &neg);
      if (perl != NULL) {
        re_ranges_add_table(p->prog, perl->t, perl->npairs, neg);
        p->pos += 2;
        continue;
      }
    }
    if (re_class_char(p, &lo) < 0)
      return -1;
    hi = lo;
    /* "a-]" is 'a' and '-'; "a-z" a range. */
    if (p->n - p->pos >= 2 && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
      p->pos++;
      if (re_class_char(p, &hi) < 0)
        return -1;
      if (hi < lo)
        return re_fail(p, "invalid character class range");
    }
    re_range_add(p->prog, lo, hi);
  }
  re_tok_class(p, off, negated);
  return 0;
}

/*
 * Parse p->s into tokens.  This accepts what Go's regexp.Compile accepts for
 * the texts the pattern rewriting can produce, and fails with RE2's reason
 * on what it rejects; the few RE2 features it lacks (\p classes, (?flags),
 * alternation, counted repetition) fail as unsupported.
 */
static int re_parse(struct re_parser *p)
{
  while (p->pos < p->n) {
    unsigned char c = p->s[p->pos];
    /* The token a following repetition operator applies to, if any. */
    size_t atom = SIZE_MAX;

    switch (c) {
    case '(':
      if (p->pos + 1 < p->n && p->s[p->pos + 1] == '?')
        return re_fail(p, "(? groups are not supported");
      CB_GROW(p->opens, p->nopens + 1, p->opens_alloc);
      p->opens[p->nopens++] = re_tok_push(p, TOK_OPEN, 0);
      p->pos++;
      continue;
    case ')':
      if (p->nopens == 0)
        return re_fail(p, "unexpected )");
      atom = re_tok_push(p, TOK_CLOSE, 0);
      p->toks[atom].open = p->opens[--p->nopens];
      p->pos++;
      break;
    case '|':
      return re_fail(p, "alternation is not supported");
    case '{':
      return re_fail(p, "counted repetition is not supported");
    case '*': case '+': case '?':
      return re_fail(p, "missing argument to repetition operator");
    case '^':
      atom = re_tok_push(p, TOK_ASSERT, RE_BEGIN_TEXT);
      p->pos++;
      break;
    case '$':
      atom = re_tok_push(p, TOK_ASSERT, RE_END_TEXT);
      p->pos++;
      break;
    case '.':
      atom = re_tok_push(p, TOK_ANY, 0);
      p->pos++;
      break;
    case '[':
      if (re_parse_class(p) < 0)
        return -1;
      atom = p->ntoks - 1;
      break;
    case '\\': {
      unsigned char e = p->pos + 1 < p->n ? p->s[p->pos + 1] : 0;
      const struct re_table *perl;
      bool neg;
      uint32_t r;

      if (e == 'A' || e == 'z' || e == 'b' || e == 'B') {
        enum re_assert a = e == 'A'   ? RE_BEGIN_TEXT
                           : e == 'z' ? RE_END_TEXT
                           : e == 'b' ? RE_WORD_BOUNDARY
                                      : RE_NOT_WORD_BOUNDARY;
        atom = re_tok_push(p, TOK_ASSERT, (uint8_t)a);
        p->pos += 2;
        break;
      }
      if (e == 'C')
        return re_fail(p, "invalid escape sequence");
      if (e == 'p' || e == 'P')
        return re_fail(p, "Unicode classes (\\p, \\P) are not supported");
      if (e == 'Q') {
        /* \Q...\E: everything up to \E (or the end) is literal text. */
        p->pos += 2;
        while (p->pos < p->n) {
          if (p->s[p->pos] == '\\' && p->pos + 1 < p->n && p->s[p->pos + 1] == 'E') {
            p->pos += 2;
            break;
          }
          p->pos += utf8_decode(p->s + p->pos, p->n - p->pos, &r);
          atom = re_tok_literal(p, r);
        }
        break;
      }
      perl = e ? re_perl_class(e, &neg) : NULL;
      if (perl != NULL) {
        size_t off = p->prog->nranges;
        re_ranges_add_table(p->prog, perl->t, perl->npairs, false);
        atom = re_tok_class(p, off, neg);
        p->pos += 2;
        break;
      }
      if (re_parse_escape(p, &r) < 0)
        return -1;
      atom = re_tok_literal(p, r);
      break;
    }
    default: {
      uint32_t r;
      p->pos += utf8_decode(p->s + p->pos, p->n - p->pos, &r);
      atom = re_tok_literal(p, r);
      break;
    }
    }

    if (p->pos < p->n && (p->s[p->pos] == '*' || p->s[p->pos] == '+' ||
                          p->s[p->pos] == '?')) {
      char q = (char)p->s[p->pos++];
      if (atom == SIZE_MAX)
        return re_fail(p, "missing argument to repetition operator");
      p->toks[atom].quant = q;
      if (p->toks[atom].kind == TOK_CLOSE)
        p->toks[p->toks[atom].open].quant = q;
      /* A non-greedy marker matches the same strings. */
      if (p->pos < p->n && p->s[p->pos] == '?')
        p->pos++;
      if (p->pos < p->n && (p->s[p->pos] == '*' || p->s[p->pos] == '+' ||
                            p->s[p->pos] == '?'))
        return re_fail(p, "invalid nested repetition operator");
    }
  }
  if (p->nopens > 0)
    return re_fail(p, "missing closing )");
  return 0;
}

/* Open a repetition: for '?' and '*' a split whose second branch
 * re_quant_end() patches.  Returns the split, or UINT32_MAX. */
static uint32_t re_quant_begin(struct re_prog *prog, char quant)
{
  if (quant != '?' && quant != '*')
    return UINT32_MAX;
  return re_emit(prog, RE_SPLIT, 0, (uint32_t)prog->n + 1, 0);
}

static void re_quant_end(struct re_prog *prog, char quant, uint32_t split,
                         uint32_t body)
{
  uint32_t pc;

  switch (quant) {
  case '?':
    prog->inst[split].y = (uint32_t)prog->n;
    break;
  case '*':
    re_emit(prog, RE_JMP, 0, split, 0);
    prog->inst[split].y = (uint32_t)prog->n;
    break;
  case '+':
    pc = re_emit(prog, RE_SPLIT, 0, body, 0);
    prog->inst[pc].y = pc + 1;
    break;
  default:
    break;
  }
}

/* Thompson's construction over the flat token list. */
static void re_compile(struct re_prog *prog, const struct re_tok *toks,
                       size_t n)
{
  struct frame {
    uint32_t split, body;
  } *frames = NULL;
  size_t nframes = 0, frames_alloc = 0;

  for (size_t k = 0; k < n; k++) {
    const struct re_tok *t = &toks[k];
    uint32_t split, body;

    switch (t->kind) {
    case TOK_OPEN:
      CB_GROW(frames, nframes + 1, frames_alloc);
      frames[nframes].split = re_quant_begin(prog, t->quant);
      frames[nframes].body = (uint32_t)prog->n;
      nframes++;
      break;
    case TOK_CLOSE:
      /* re_parse() pairs every CLOSE with an earlier OPEN. */
      if (nframes == 0)
        break;
      nframes--;
      re_quant_end(prog, t->quant, frames[nframes].split, frames[nframes].body);
      break;
    default:
      split = re_quant_begin(prog, t->quant);
      body = (uint32_t)prog->n;
      if (t->kind == TOK_CLASS)
        re_emit(prog, RE_CLASS, t->arg, t->off, t->cnt);
      else if (t->kind == TOK_ANY)
        re_emit(prog, RE_ANY, 0, 0, 0);
      else
        re_emit(prog, RE_ASSERT, t->arg, 0, 0);
      re_quant_end(prog, t->quant, split, body);
      break;
    }
  }
  re_emit(prog, RE_MATCH, 0, 0, 0);
  free(frames);
}

/* Compile the expression s[0..n) into prog; on failure return -1 with
 * *why set to a static reason. */
static int re_prog_build(struct re_prog *prog, const char *s, size_t n,
                         const char **why)
{
  struct re_parser p = { .s = (const unsigned char *)s, .n = n, .prog = prog };
  int rc = re_parse(&p);

  if (rc == 0)
    re_compile(prog, p.toks, p.ntoks);
  else
    *why = p.err;
  free(p.toks);
  free(p.opens);
  return rc;
}

/* ---- running a program ---- */

/* A set of instruction indexes with O(1) insert, test and clear. */
struct re_set {
  uint32_t *dense, *sparse;
  size_t n;
};

/* Scratch space for one match, sized for the largest program. */
struct re_work {
  struct re_set a, b, c;
  uint32_t *stack, *seeds;
};

static void re_set_init(struct re_set *s, size_t k)
{
  /* Zeroed, so that the sparse array holds no indeterminate values. */
  s->dense = xcalloc(k, sizeof(uint32_t));
  s->sparse = xcalloc(k, sizeof(uint32_t));
  s->n = 0;
}

static void re_work_init(struct re_work *w, size_t ninst)
{
  size_t k = ninst ? ninst : 1;
  re_set_init(&w->a, k);
  re_set_init(&w->b, k);
  re_set_init(&w->c, k);
  w->stack = xcalloc(k, sizeof(uint32_t));
  w->seeds = xcalloc(k, sizeof(uint32_t));
}

static void re_work_release(struct re_work *w)
{
  struct re_set *sets[] = { &w->a, &w->b, &w->c };
  for (size_t i = 0; i < CB_ARRAY_SIZE(sets); i++) {
    free(sets[i]->dense);
    free(sets[i]->sparse);
  }
  free(w->stack);
  free(w->seeds);
}

static bool re_set_has(const struct re_set *s, uint32_t pc)
{
  return s->sparse[pc] < s->n && s->dense[s->sparse[pc]] == pc;
}

static void re_set_add(struct re_set *s, uint32_t pc)
{
  s->sparse[pc] = (uint32_t)s->n;
  s->dense[s->n++] = pc;
}

/* What the empty-width assertions can see at one position. */
struct re_ctx {
  int64_t prev, next; /* runes around the position, -1 at either end */
  bool next_known;    /* false past a known prefix (dir walks) */
};

static bool re_is_word(int64_t r)
{
  return r >= 0 && (re_isalnum((uint32_t)r) || r == '_');
}

static bool re_assert_holds(uint8_t kind, const struct re_ctx *c)
{
  switch (kind) {
  case RE_BEGIN_TEXT:
    return c->prev < 0;
  case RE_END_TEXT:
    return c->next_known && c->next < 0;
  case RE_WORD_BOUNDARY:
    return !c->next_known || re_is_word(c->prev) != re_is_word(c->next);
  case RE_NOT_WORD_BOUNDARY:
    return !c->next_known || re_is_word(c->prev) == re_is_word(c->next);
  default:
    return false;
  }
}

/*
 * Add pc and everything reachable from it without consuming a rune to set.
 * Each instruction enters the set, and the stack, at most once, so cycles
 * of empty-width steps end and the stack needs no more than n slots.
 */
static void re_add(const struct re_prog *prog, struct re_set *set,
                   uint32_t *stack, uint32_t pc, const struct re_ctx *ctx)
{
  size_t sp = 0;

  if (re_set_has(set, pc))
    return;
  re_set_add(set, pc);
  stack[sp++] = pc;
  while (sp > 0) {
    const struct re_inst *in = &prog->inst[stack[--sp]];
    uint32_t next[2];
    int nnext = 0;

    if (in->op == RE_JMP) {
      next[nnext++] = in->x;
    } else if (in->op == RE_SPLIT) {
      next[nnext++] = in->y;
      next[nnext++] = in->x;
    } else if (in->op == RE_ASSERT && re_assert_holds(in->arg, ctx)) {
      next[nnext++] = (uint32_t)(in - prog->inst) + 1;
    }
    for (int i = 0; i < nnext; i++) {
      if (!re_set_has(set, next[i])) {
        re_set_add(set, next[i]);
        stack[sp++] = next[i];
      }
    }
  }
}

static bool re_consumes(const struct re_prog *prog, const struct re_inst *in,
                        uint32_t r)
{
  if (in->op == RE_ANY)
    return r != '\n';
  if (in->op != RE_CLASS)
    return false;
  for (uint32_t i = in->x; i < in->x + in->y; i++) {
    if (prog->ranges[2 * i] <= r && r <= prog->ranges[2 * i + 1])
      return !in->arg;
  }
  return in->arg;
}

static int64_t re_rune_at(const unsigned char *s, size_t len, size_t pos)
{
  uint32_t r;
  if (pos >= len)
    return -1;
  utf8_decode(s + pos, len - pos, &r);
  return r;
}

static bool re_set_has_match(const struct re_prog *prog, const struct re_set *s)
{
  for (size_t i = 0; i < s->n; i++) {
    if (prog->inst[s->dense[i]].op == RE_MATCH)
      return true;
  }
  return false;
}

enum re_mode {
  RE_WHOLE,     /* does the text match? */
  RE_OR_PARENT, /* does the text, or its part before some '/', match? */
  RE_PREFIX,    /* the text is only the start: see re_can_extend() */
};

/*
 * Run prog over s[0..len).  The expression starts with `^`, so only a
 * match from position 0 counts, and like Go's MatchString any match does.
 *
 * RE_OR_PARENT answers for s and for each parent s[0..k), s[k] == '/', in
 * the same pass: a parent reads exactly like s up to k, and only the
 * closure at k can tell that its text ends there, so at each '/' we close
 * the states just entered once more as if the text ended.  This keeps a
 * deep path at one pass instead of one per parent.
 *
 * With RE_PREFIX, s is only the start of the text: leave in w->a the
 * instructions alive once s is consumed, with the rune after s unknown.
 */
static bool re_run(const struct re_prog *prog, const char *str, size_t len,
                   enum re_mode mode, struct re_work *w)
{
  const unsigned char *s = (const unsigned char *)str;
  bool open_end = mode == RE_PREFIX;
  struct re_ctx ctx = { -1, re_rune_at(s, len, 0), !open_end || len > 0 };
  size_t pos = 0;

  w->a.n = 0;
  re_add(prog, &w->a, w->stack, 0, &ctx);
  for (;;) {
    struct re_set tmp;
    uint32_t r;
    size_t nseeds = 0;

    if (!open_end && re_set_has_match(prog, &w->a))
      return true;
    if (pos >= len || w->a.n == 0)
      return false;
    pos += utf8_decode(s + pos, len - pos, &r);
    ctx.prev = r;
    ctx.next = re_rune_at(s, len, pos);
    ctx.next_known = !open_end || pos < len;
    w->b.n = 0;
    for (size_t i = 0; i < w->a.n; i++) {
      uint32_t pc = w->a.dense[i];
      if (re_consumes(prog, &prog->inst[pc], r)) {
        w->seeds[nseeds++] = pc + 1;
        re_add(prog, &w->b, w->stack, pc + 1, &ctx);
      }
    }
    if (mode == RE_OR_PARENT && pos < len && s[pos] == '/') {
      struct re_ctx end = { r, -1, true };
      w->c.n = 0;
      for (size_t i = 0; i < nseeds; i++)
        re_add(prog, &w->c, w->stack, w->seeds[i], &end);
      if (re_set_has_match(prog, &w->c))
        return true;
    }
    tmp = w->a;
    w->a = w->b;
    w->b = tmp;
  }
}

/*
 * Whether some text that starts with prefix[0..len) and goes on for at
 * least one more rune could match.  Over-approximates on purpose: past the
 * prefix every class counts as matchable and every assertion as true.
 */
static bool re_can_extend(const struct re_prog *prog, const char *prefix,
                          size_t len, struct re_work *w)
{
  size_t sp = 0;

  re_run(prog, prefix, len, RE_PREFIX, w);
  w->b.n = 0;
  for (size_t i = 0; i < w->a.n; i++) {
    uint32_t pc = w->a.dense[i];
    uint8_t op = prog->inst[pc].op;
    if ((op == RE_CLASS || op == RE_ANY) && !re_set_has(&w->b, pc + 1)) {
      re_set_add(&w->b, pc + 1);
      w->stack[sp++] = pc + 1;
    }
  }
  while (sp > 0) {
    const struct re_inst *in = &prog->inst[w->stack[--sp]];
    uint32_t pc = (uint32_t)(in - prog->inst);
    uint32_t next[2];
    int nnext = 0;

    switch (in->op) {
    case RE_MATCH:
      return true;
    case RE_JMP:
      next[nnext++] = in->x;
      break;
    case RE_SPLIT:
      next[nnext++] = in->x;
      next[nnext++] = in->y;
      break;
    default:
      next[nnext++] = pc + 1;
      break;
    }
    for (int i = 0; i < nnext; i++) {
      if (!re_set_has(&w->b, next[i])) {
        re_set_add(&w->b, next[i]);
        w->stack[sp++] = next[i];
      }
    }
  }
  return false;
}

/* ---- patterns ---- */

/* patternmatcher's matchType. */
enum ig_kind {
  IG_EXACT,  /* the path equals the pattern */
  IG_PREFIX, /* the pattern is plain text then "**": a prefix of the path */
  IG_SUFFIX, /* the pattern is "**" then plain text: a suffix of the path */
  IG_REGEXP,
};

struct ig_pattern {
  char *text; /* cleaned, without the '!'; may hold NUL bytes */
  size_t len;
  bool exclusion; /* a `!` line: matching paths are not excluded */
  enum ig_kind kind;
  struct re_prog prog; /* IG_REGEXP only */
};

struct parser_ignore {
  struct ig_pattern *v;
  size_t n, alloc;
  bool exclusions;  /* some pattern is an exception */
  size_t max_inst;  /* the largest program, to size struct re_work */
};

/* Lines longer than this make Go's bufio.Scanner, and so Docker, fail. */
#define IG_MAX_LINE 65535

/*
 * One end of a range in a filepath.Match character class (Go's getEsc):
 * a character, maybe escaped, that must not be '-' or ']' and must be
 * valid UTF-8, and the class must go on after it.  Returns NULL with *i
 * moved past it, or why not.
 */
static const char *ig_class_char(const unsigned char *s, size_t len, size_t *i)
{
  uint32_t r;
  size_t w;

  if (*i >= len)
    return "unterminated character class";
  if (s[*i] == '-' || s[*i] == ']')
    return "'-' or ']' out of place in character class";
  if (s[*i] == '\\' && ++*i >= len)
    return "unterminated character class";
  w = utf8_decode(s + *i, len - *i, &r);
  if (r == 0xfffd && w == 1)
    return "invalid UTF-8 in character class";
  *i += w;
  return *i < len ? NULL : "unterminated character class";
}

/*
 * Whether the pattern text is well-formed for Go's filepath.Match, which
 * patternmatcher calls only to reject bad patterns.  Returns NULL or why
 * not.  Current Go checks the whole pattern, even past the point where a
 * match against "." has failed (Go 1.19 and older stopped there).
 */
static const char *ig_check_syntax(const char *text, size_t len)
{
  const unsigned char *s = (const unsigned char *)text;
  const char *why;
  size_t i = 0;

  while (i < len) {
    if (s[i] == '\\') {
      /* escapes the next byte */
      if (i + 1 >= len)
        return "trailing backslash";
      i += 2;
    } else if (s[i] == '[') {
      i++;
      if (i < len && s[i] == '^')
        i++;
      /* one range or more, each "c" or "lo-hi", then ']' */
      for (size_t nrange = 0;; nrange++) {
        if (nrange > 0 && i < len && s[i] == ']') {
          i++;
          break;
        }
        if ((why = ig_class_char(s, len, &i)) != NULL)
          return why;
        if (s[i] == '-') {
          i++;
          if ((why = ig_class_char(s, len, &i)) != NULL)
            return why;
        }
      }
    } else {
      i++;
    }
  }
  return NULL;
}

/*
 * patternmatcher's compile(): sort the pattern into a kind and, for
 * IG_REGEXP, rewrite it into Go regexp syntax in re.  `*` becomes "[^/]*",
 * `?` "[^/]", and `**` with one '/' after it becomes an optional group of
 * ".*" then '/' (any run of directories), or ".*" at the end.  The
 * characters in ".+()|{}$" are escaped, `\x` is kept as is, and everything
 * else, '[', ']' and '^' included, passes through.
 */
static enum ig_kind ig_rewrite(const char *text, size_t len, struct strbuf *re)
{
  const unsigned char *s = (const unsigned char *)text;
  enum ig_kind kind = IG_EXACT;
  size_t pos = 0;
  uint32_t ch;

  strbuf_reset(re);
  strbuf_addch(re, '^');
  /* Go's text/scanner, which reads the pattern, skips a leading BOM. */
  if (len >= 3 && utf8_decode(s, len, &ch) == 3 && ch == 0xfeff)
    pos = 3;
  for (size_t i = 0; pos < len; i++) {
    pos += utf8_decode(s + pos, len - pos, &ch);
    if (ch == '*' && pos < len && s[pos] == '*') {
      pos++;
      if (pos < len && s[pos] == '/')
        pos++;
      if (pos == len) {
        /* a trailing "**" matches everything below */
        if (kind == IG_EXACT) {
          kind = IG_PREFIX;
        } else {
          strbuf_addstr(re, ".*");
          kind = IG_REGEXP;
        }
      } else {
        strbuf_addstr(re, "(.*/)?");
        kind = IG_REGEXP;
      }
      if (i == 0)
        kind = IG_SUFFIX;
    } else if (ch == '*') {
      strbuf_addstr(re, "[^/]*");
      kind = IG_REGEXP;
    } else if (ch == '?') {
      strbuf_addstr(re, "[^/]");
      kind = IG_REGEXP;
    } else if (ch != 0 && ch < 0x80 && strchr(".+()|{}$", (int)ch) != NULL) {
      strbuf_addch(re, '\\');
      strbuf_addch(re, (int)ch);
    } else if (ch == '\\') {
      /* filepath.Match rejected a trailing backslash already. */
      strbuf_addch(re, '\\');
      if (pos < len) {
        pos += utf8_decode(s + pos, len - pos, &ch);
        strbuf_add_utf8(re, ch);
        kind = IG_REGEXP;
      }
    } else if (ch == '[' || ch == ']') {
      strbuf_addch(re, (int)ch);
      kind = IG_REGEXP;
    } else {
      strbuf_add_utf8(re, ch);
    }
  }
  if (kind == IG_REGEXP)
    strbuf_addch(re, '$');
  return kind;
}

static void ig_pattern_release(struct ig_pattern *pt)
{
  free(pt->text);
  re_prog_release(&pt->prog);
}

/* Fill pt from the cleaned pattern text; on a pattern Go's regexp would
 * reject, return -1 with *why set. */
static int ig_pattern_init(struct ig_pattern *pt, const char *text, size_t len,
                           bool exclusion, const char **why)
{
  cleanup_strbuf struct strbuf re = STRBUF_INIT;

  memset(pt, 0, sizeof(*pt));
  pt->text = xmalloc(st_add(len, 1));
  memcpy(pt->text, text, len);
  pt->text[len] = '\0';
  pt->len = len;
  pt->exclusion = exclusion;
  pt->kind = ig_rewrite(text, len, &re);
  if (pt->kind == IG_REGEXP && re_prog_build(&pt->prog, re.buf, re.len, why) < 0) {
    ig_pattern_release(pt);
    return -1;
  }
  return 0;
}

/* patternmatcher's Pattern.match on path[0..len). */
static bool ig_pattern_match(const struct ig_pattern *pt, const char *path,
                             size_t len, struct re_work *w)
{
  const char *suffix;
  size_t n;

  switch (pt->kind) {
  case IG_EXACT:
    return len == pt->len && memcmp(path, pt->text, len) == 0;
  case IG_PREFIX:
    n = pt->len - 2; /* without the "**" */
    return len >= n && memcmp(path, pt->text, n) == 0;
  case IG_SUFFIX:
    /* Byte offsets, as in Go: the "**" is the first two bytes. */
    suffix = pt->text + 2;
    n = pt->len - 2;
    if (len >= n && memcmp(path + len - n, suffix, n) == 0)
      return true;
    /* "**" + "/foo" also matches "foo" */
    return n > 0 && suffix[0] == '/' && len == n - 1 &&
           memcmp(path, suffix + 1, n - 1) == 0;
  case IG_REGEXP:
    return re_run(&pt->prog, path, len, RE_WHOLE, w);
  }
  return false;
}

/* Whether pt matches the clean path[0..len) or one of its parents. */
static bool ig_pattern_match_or_parent(const struct ig_pattern *pt,
                                       const char *path, size_t len,
                                       struct re_work *w)
{
  if (pt->kind == IG_REGEXP)
    return re_run(&pt->prog, path, len, RE_OR_PARENT, w);
  if (ig_pattern_match(pt, path, len, w))
    return true;
  for (size_t k = 0; k < len; k++) {
    if (path[k] == '/' && ig_pattern_match(pt, path, k, w))
      return true;
  }
  return false;
}

/*
 * Whether pt could match a path below the directory whose path plus '/'
 * is prefix[0..len) (empty for the root): some prefix + s with s non-empty.
 * Parents of such a path that are below the directory have the same form,
 * so this covers matches through parents too.
 */
static bool ig_pattern_may_match_below(const struct ig_pattern *pt,
                                       const char *prefix, size_t len,
                                       struct re_work *w)
{
  size_t n;

  switch (pt->kind) {
  case IG_EXACT:
    return pt->len > len && memcmp(pt->text, prefix, len) == 0;
  case IG_PREFIX:
    n = pt->len - 2;
    return memcmp(pt->text, prefix, n < len ? n : len) == 0;
  case IG_SUFFIX:
    return true; /* prefix + "x" + suffix ends with the suffix */
  case IG_REGEXP:
    return re_can_extend(&pt->prog, prefix, len, w);
  }
  return true;
}

/* ---- reading ---- */

static void ig_error(struct parser_error *err, const char *file, int line,
                     const char *fmt, ...) CB_PRINTF(4, 5);

static void ig_error(struct parser_error *err, const char *file, int line,
                     const char *fmt, ...)
{
  va_list ap;

  if (err == NULL)
    return;
  snprintf(err->file, sizeof(err->file), "%s", file ? file : ".dockerignore");
  err->line = line;
  err->column = 0;
  va_start(ap, fmt);
  vsnprintf(err->text, sizeof(err->text), fmt, ap);
  va_end(ap);
}

struct ig_scratch {
  struct strbuf a, b, c;
};

/*
 * One line, already without its newline, CR and BOM, and not a comment:
 * first what ignorefile.ReadAll does (trim, split off '!', clean, drop a
 * leading '/'), then what patternmatcher.New does with the result (trim and
 * clean again, split off '!', check the syntax).  Doing both steps as Go
 * does keeps odd lines such as "!/" (which becomes "!") the same.
 */
static int ig_add_line(struct parser_ignore *ig, const char *line, size_t len,
                       struct ig_scratch *sc, const char *file, int lineno,
                       struct parser_error *err)
{
  const char *t = line, *body;
  size_t tlen = len, blen;
  bool invert;
  const char *why;
  struct ig_pattern pt;

  go_trim_space(&t, &tlen);
  if (tlen == 0)
    return 0;
  invert = t[0] == '!';
  body = invert ? t + 1 : t;
  blen = invert ? tlen - 1 : tlen;
  if (invert)
    go_trim_space(&body, &blen);
  strbuf_reset(&sc->b);
  if (invert)
    strbuf_addch(&sc->b, '!');
  if (blen > 0) {
    path_clean(body, blen, &sc->a);
    if (sc->a.len > 1 && sc->a.buf[0] == '/')
      strbuf_add(&sc->b, sc->a.buf + 1, sc->a.len - 1);
    else
      strbuf_add(&sc->b, sc->a.buf, sc->a.len);
  }

  /* patternmatcher.New */
  body = sc->b.buf;
  blen = sc->b.len;
  go_trim_space(&body, &blen);
  if (blen == 0)
    return 0;
  path_clean(body, blen, &sc->c);
  body = sc->c.buf;
  blen = sc->c.len;
  invert = body[0] == '!';
  if (invert) {
    if (blen == 1) {
      ig_error(err, file, lineno, "illegal exclusion pattern: \"!\"");
      return -1;
    }
    body++;
    blen--;
  }
  why = ig_check_syntax(body, blen);
  if (why == NULL && ig_pattern_init(&pt, body, blen, invert, &why) == 0) {
    CB_GROW(ig->v, ig->n + 1, ig->alloc);
    ig->v[ig->n++] = pt;
    ig->exclusions |= invert;
    if (pt.prog.n > ig->max_inst)
      ig->max_inst = pt.prog.n;
    return 0;
  }
  ig_error(err, file, lineno, "bad pattern \"%.*s\": %s",
           tlen > 200 ? 200 : (int)tlen, t, why);
  return -1;
}

struct parser_ignore *parser_ignore_new(const char *file, const char *data,
                                        size_t size, struct parser_error *err)
{
  struct parser_ignore *ig = xcalloc(1, sizeof(*ig));
  struct ig_scratch sc = { STRBUF_INIT, STRBUF_INIT, STRBUF_INIT };
  size_t pos = 0;
  int lineno = 0;

  if (data == NULL)
    size = 0;
  while (pos < size) {
    const char *line = data + pos;
    const char *nl = memchr(line, '\n', size - pos);
    size_t len = nl ? (size_t)(nl - line) : size - pos;

    pos += len + (nl != NULL);
    if (lineno < INT32_MAX)
      lineno++;
    if (len > IG_MAX_LINE) {
      ig_error(err, file, lineno, "line too long (more than %d bytes)",
               IG_MAX_LINE);
      goto fail;
    }
    /* bufio.ScanLines drops one CR before the newline. */
    if (len > 0 && line[len - 1] == '\r')
      len--;
    if (lineno == 1 && len >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
      line += 3;
      len -= 3;
    }
    /* A comment only in column 1, before any trimming. */
    if (len > 0 && line[0] == '#')
      continue;
    if (ig_add_line(ig, line, len, &sc, file, lineno, err) < 0)
      goto fail;
  }
  strbuf_release(&sc.a);
  strbuf_release(&sc.b);
  strbuf_release(&sc.c);
  return ig;

fail:
  strbuf_release(&sc.a);
  strbuf_release(&sc.b);
  strbuf_release(&sc.c);
  parser_ignore_free(ig);
  return NULL;
}

void parser_ignore_free(struct parser_ignore *ig)
{
  if (ig == NULL)
    return;
  for (size_t i = 0; i < ig->n; i++)
    ig_pattern_release(&ig->v[i]);
  free(ig->v);
  free(ig);
}

size_t parser_ignore_count(const struct parser_ignore *ig)
{
  return ig->n;
}

/* ---- matching ---- */

/* Clean a context path as the patterns are cleaned: "." is the root. */
static void ig_clean_path(const char *path, struct strbuf *out)
{
  path_clean(path ? path : "", path ? strlen(path) : 0, out);
  if (out->len > 1 && out->buf[0] == '/') {
    memmove(out->buf, out->buf + 1, out->len - 1);
    strbuf_setlen(out, out->len - 1);
  } else if (out->len == 1 && out->buf[0] == '/') {
    out->buf[0] = '.';
  }
}

bool parser_ignore_match(const struct parser_ignore *ig, const char *path)
{
  cleanup_strbuf struct strbuf p = STRBUF_INIT;
  struct re_work w;
  bool excluded = false;

  ig_clean_path(path, &p);
  /* Like patternmatcher's MatchesOrParentMatches helper: never the root. */
  if (ig->n == 0 || strcmp(p.buf, ".") == 0)
    return false;
  re_work_init(&w, ig->max_inst);
  for (size_t i = 0; i < ig->n; i++) {
    const struct ig_pattern *pt = &ig->v[i];
    /* An exception can only change an excluded path and a normal pattern
     * an included one; skipping the others changes nothing. */
    if (pt->exclusion != excluded)
      continue;
    if (ig_pattern_match_or_parent(pt, p.buf, p.len, &w))
      excluded = !pt->exclusion;
  }
  re_work_release(&w);
  return excluded;
}

/*
 * Every pattern that matches dir or one of its parents also matches
 * everything below dir (through the parent rule).  So for a path below an
 * excluded dir, the last pattern that decides it is either the last one
 * that matched dir, or a later one; only exceptions after that point can
 * bring a path back, and only those that can match below dir.
 */
bool parser_ignore_dir_needs_walk(const struct parser_ignore *ig,
                                  const char *dir)
{
  cleanup_strbuf struct strbuf d = STRBUF_INIT;
  struct re_work w;
  size_t start = 0;
  bool walk = false;

  if (!ig->exclusions)
    return false;
  ig_clean_path(dir, &d);
  re_work_init(&w, ig->max_inst);
  if (strcmp(d.buf, ".") == 0) {
    strbuf_reset(&d); /* below the root: any path */
  } else {
    for (size_t i = 0; i < ig->n; i++) {
      if (ig_pattern_match_or_parent(&ig->v[i], d.buf, d.len, &w))
        start = i + 1;
    }
    /* An exception decides dir itself: it is not excluded, so walk it. */
    walk = start > 0 && ig->v[start - 1].exclusion;
    strbuf_addch(&d, '/');
  }
  for (size_t i = start; i < ig->n && !walk; i++) {
    if (ig->v[i].exclusion)
      walk = ig_pattern_may_match_below(&ig->v[i], d.buf, d.len, &w);
  }
  re_work_release(&w);
  return walk;
}
