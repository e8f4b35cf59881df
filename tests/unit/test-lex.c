/*
 * Variable substitution: parser/lex.c against BuildKit's shell lexer
 * (frontend/dockerfile/shell/lex.go).  Each expectation is what BuildKit's
 * ProcessWord / ProcessWords / heredoc ExpandRaw return for the input;
 * where BuildKit differs from a POSIX shell the comment says so.
 */
#include "unit.h"
#include "../../parser/parser-internal.h"

/* ---- helpers ---- */

/* The scope most tests use. */
static void vars_init(struct parser_vars *v)
{
  *v = (struct parser_vars)PARSER_VARS_INIT;
  parser_vars_set(v, "PWD", "/home", PARSER_VAR_ENV);
  parser_vars_set(v, "SHELL", "bash", PARSER_VAR_ENV);
  parser_vars_set(v, "KOREAN", "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4", PARSER_VAR_ENV);
  parser_vars_set(v, "NULL", "", PARSER_VAR_ENV);
  parser_vars_set(v, "X", "x", PARSER_VAR_ENV);
  parser_vars_set(v, "FILE", "/srv/app/main.tar.gz", PARSER_VAR_ENV);
  parser_vars_set(v, "SPACE", "abc  def", PARSER_VAR_ENV);
}

/* What BuildKit's %q makes of a plain ASCII word: " and \ escaped. */
static void quote_simple(struct strbuf *sb, const char *s)
{
  strbuf_addch(sb, '"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      strbuf_addch(sb, '\\');
    strbuf_addch(sb, *s);
  }
  strbuf_addch(sb, '"');
}

static void check_word(int line, const struct parser_vars *vars, char escape, const char *word,
                       const char *want)
{
  struct strbuf out = STRBUF_INIT;
  char err[1024] = "";
  if (parser_expand_word(word, escape, vars, &out, err, sizeof(err)) < 0)
    unit_fail(__FILE__, line, "[%s] failed: %s; expected \"%s\"", word, err, want);
  else if (strcmp(out.buf, want) != 0)
    unit_fail(__FILE__, line, "[%s] == \"%s\", expected \"%s\"", word, out.buf, want);
  strbuf_release(&out);
}

/* The whole message must be `failed to process "<word>": <reason>`. */
static void check_fails(int line, const struct parser_vars *vars, char escape, const char *word,
                        const char *reason)
{
  struct strbuf out = STRBUF_INIT, want = STRBUF_INIT;
  char err[1024] = "";
  strbuf_addstr(&want, "failed to process ");
  quote_simple(&want, word);
  strbuf_addf(&want, ": %s", reason);
  if (parser_expand_word(word, escape, vars, &out, err, sizeof(err)) == 0)
    unit_fail(__FILE__, line, "[%s] == \"%s\", expected the error \"%s\"", word, out.buf,
              reason);
  else if (strcmp(err, want.buf) != 0)
    unit_fail(__FILE__, line, "[%s] error \"%s\", expected \"%s\"", word, err, want.buf);
  strbuf_release(&out);
  strbuf_release(&want);
}

/* want: the words joined by '|', or "" for none. */
static void check_words(int line, const struct parser_vars *vars, char escape, const char *word,
                        const char *want)
{
  struct strvec out = STRVEC_INIT;
  struct strbuf got = STRBUF_INIT;
  char err[1024] = "";
  if (parser_expand_words(word, escape, vars, &out, err, sizeof(err)) < 0) {
    unit_fail(__FILE__, line, "words [%s] failed: %s; expected \"%s\"", word, err, want);
  } else {
    for (size_t i = 0; i < out.n; i++)
      strbuf_addf(&got, "%s%s", i ? "|" : "", out.v[i]);
    if (strcmp(got.buf, want) != 0)
      unit_fail(__FILE__, line, "words [%s] == \"%s\", expected \"%s\"", word, got.buf, want);
  }
  strvec_clear(&out);
  strbuf_release(&got);
}

static void check_heredoc(int line, const struct parser_vars *vars, const char *text,
                          const char *want)
{
  struct strbuf out = STRBUF_INIT;
  char err[1024] = "";
  if (parser_expand_heredoc(text, vars, &out, err, sizeof(err)) < 0)
    unit_fail(__FILE__, line, "heredoc [%s] failed: %s", text, err);
  else if (strcmp(out.buf, want) != 0)
    unit_fail(__FILE__, line, "heredoc [%s] == \"%s\", expected \"%s\"", text, out.buf, want);
  strbuf_release(&out);
}

#define WORD(w, want) check_word(__LINE__, &vars, '\\', (w), (want))
#define WORD_BT(w, want) check_word(__LINE__, &vars, '`', (w), (want))
#define FAILS(w, reason) check_fails(__LINE__, &vars, '\\', (w), (reason))
#define FAILS_BT(w, reason) check_fails(__LINE__, &vars, '`', (w), (reason))
#define WORDS(w, want) check_words(__LINE__, &vars, '\\', (w), (want))
#define HEREDOC(t, want) check_heredoc(__LINE__, &vars, (t), (want))
#define MATCH(p, s) parser_shell_match((p), strlen(p), (s), strlen(s))

#define MISSING_BRACE "syntax error: missing '}'"
#define BAD_SUBST "syntax error: bad substitution"
#define UNSET_MSG(n) n ": is not allowed to be unset"
#define EMPTY_MSG(n) n ": is not allowed to be empty"

/* ---- plain references ---- */

static void test_plain(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  WORD("", "");
  WORD("hello", "hello");
  WORD("$PWD", "/home");
  WORD("${PWD}", "/home");
  WORD("he$PWD", "he/home");
  WORD("he${PWD}xx", "he/homexx");
  WORD("$PWD$SHELL", "/homebash");
  WORD("${PWD}${SHELL}", "/homebash");
  /* a name runs over letters, digits and _ */
  WORD("$PWDxx", "");
  WORD("$PWD_x", "");
  WORD("$PWD1", "");
  WORD("$PWD.x", "/home.x");
  WORD("$PWD-x", "/home-x");
  WORD("$PWD/x", "/home/x");
  WORD("$PWD:x", "/home:x");
  /* unset and empty both give nothing */
  WORD("a${UNSET}b", "ab");
  WORD("a$UNSET", "a");
  WORD("a${NULL}b", "ab");
  WORD("a$NULL", "a");
  /* names are case-sensitive */
  WORD("$pwd", "");
  /* substituted values are not substituted again, nor unquoted */
  parser_vars_set(&vars, "META", "$PWD 'q' \"d\" \\x", PARSER_VAR_ENV);
  WORD("$META", "$PWD 'q' \"d\" \\x");
  /* a later set replaces */
  parser_vars_set(&vars, "X", "y", PARSER_VAR_ENV);
  WORD("$X", "y");
  parser_vars_release(&vars);
}

/* $ followed by what cannot start a name */
static void test_dollar_special(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  WORD("$", "$");
  WORD("a$", "a$");
  WORD("$$$", "$");    /* "$$" is the special parameter $, unset; then "$" */
  WORD("$ x", "$ x");
  WORD("$/", "$/");
  WORD("$.", "$.");
  WORD("$=", "$=");
  WORD("$%", "$%");
  WORD("$}", "$}");
  WORD("$'x'", "$x");  /* no $'...' quoting: "$" then a quoted x */
  WORD("$\"x\"", "$x");
  WORD("\"$\"", "$");
  WORD("\"a$\"", "a$");
  /* a run of digits is one name; special parameters are one character */
  WORD("$1", "");
  WORD("$12x", "x");
  WORD("$@x", "x");
  WORD("$*x", "x");
  WORD("$#x", "x");
  WORD("$?x", "x");
  WORD("$-x", "x");
  WORD("$!x", "x");
  WORD("$0x", "x");
  WORD("${1}", "");
  WORD("${@}", "");
  WORD("${#}", "");
  /* and they are ordinary variables when set */
  parser_vars_set(&vars, "1", "one", PARSER_VAR_ENV);
  parser_vars_set(&vars, "12", "twelve", PARSER_VAR_ENV);
  parser_vars_set(&vars, "@", "at", PARSER_VAR_ENV);
  parser_vars_set(&vars, "$", "dollar", PARSER_VAR_ENV);
  WORD("$1", "one");
  WORD("$12", "twelve");
  WORD("${1}x", "onex");
  WORD("$@", "at");
  WORD("${@}", "at");
  WORD("$$", "dollar");
  WORD("$$$", "dollar$");
  WORD("${$}", "dollar");
  WORD("${1:-d}", "one");
  parser_vars_release(&vars);
}

/* ---- ${v-w} ${v:-w} ${v+w} ${v:+w} ---- */

static void test_default(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  WORD("${PWD:-000}", "/home");
  WORD("${PWD-000}", "/home");
  WORD("${NULL:-000}", "000");
  WORD("${NULL-000}", "");
  WORD("${UNSET:-000}", "000");
  WORD("${UNSET-000}", "000");
  WORD("he${XXX:-000}xx", "he000xx");
  WORD("he${PWD:-000}xx", "he/homexx");
  WORD("${UNSET:-}", "");
  WORD("${UNSET-}", "");
  WORD("${PWD:-}", "/home");
  /* the word is itself substituted and unquoted */
  WORD("${UNSET:-$PWD}", "/home");
  WORD("${UNSET:-\\$PWD:}", "$PWD:");
  WORD("${UNSET:-'$PWD'}", "$PWD");
  WORD("${UNSET:-\"$PWD x\"}", "/home x");
  WORD("${UNSET:-a b  c}", "a b  c");
  WORD("${UNSET:-'}'}", "}");
  WORD("${UNSET:-\\}}", "}");
  WORD("${UNSET:-a:b-c+d?e#f%g/h}", "a:b-c+d?e#f%g/h");
  /* an escape in the word is not kept (unlike # % /) */
  WORD("${UNSET:-a\\*b}", "a*b");
  parser_vars_release(&vars);
}

static void test_alternative(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  WORD("${PWD:+000}", "000");
  WORD("${PWD+000}", "000");
  WORD("${NULL:+000}", "");
  WORD("${NULL+000}", "000");
  WORD("${UNSET:+000}", "");
  WORD("${UNSET+000}", "");
  WORD("he${PWD:+000}xx", "he000xx");
  WORD("he${UNSET:+000}xx", "hexx");
  WORD("${PWD:+${SHELL}}", "bash");
  WORD("${PWD:+}", "");
  WORD("${PWD:+'a b'}", "a b");
  /* BuildKit's release-file idiom */
  parser_vars_set(&vars, "TARGETVARIANT", "v7", PARSER_VAR_ENV);
  WORD("arm${TARGETVARIANT:+-${TARGETVARIANT}}.tgz", "arm-v7.tgz");
  parser_vars_set(&vars, "TARGETVARIANT", "", PARSER_VAR_ENV);
  WORD("arm${TARGETVARIANT:+-${TARGETVARIANT}}.tgz", "arm.tgz");
  parser_vars_release(&vars);
}

/* ---- ${v?msg} ${v:?msg} ---- */

static void test_required(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  parser_vars_set(&vars, "ARG", "x", PARSER_VAR_ENV);
  WORD("${PWD:?msg}", "/home");
  WORD("${PWD?msg}", "/home");
  WORD("${PWD:?}", "/home");
  WORD("${NULL?msg}", "");
  WORD("a${NULL?}b", "ab");
  FAILS("${NULL:?}", EMPTY_MSG("NULL"));
  FAILS("${NULL:?message here$ARG}", "NULL: message herex");
  FAILS("${UNSET:?}", UNSET_MSG("UNSET"));
  FAILS("${UNSET?}", UNSET_MSG("UNSET"));
  FAILS("${UNSET:?message here$ARG}", "UNSET: message herex");
  FAILS("${UNSET?message here$ARG}", "UNSET: message herex");
  FAILS("x${UNSET?'quoted msg'}y", "UNSET: quoted msg");
  /* an empty message word counts as none */
  FAILS("${UNSET?$NULL}", UNSET_MSG("UNSET"));
  /* the first failure wins */
  FAILS("${UNSET?one}${NULL:?two}", "UNSET: one");
  FAILS("${PWD?one}${NULL:?two}", "NULL: two");
  parser_vars_release(&vars);
}

/* ---- ${v#p} ${v##p} ${v%p} ${v%%p} ---- */

static void test_trim_prefix(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  parser_vars_set(&vars, "XY", "xxyy", PARSER_VAR_ENV);
  parser_vars_set(&vars, "Q", "???y", PARSER_VAR_ENV);
  parser_vars_set(&vars, "BAR", "x", PARSER_VAR_ENV);
  WORD("${XY#x}", "xyy");
  WORD("${XY##x}", "xyy");
  WORD("${XY#*x}", "xyy");  /* shortest */
  WORD("${XY##*x}", "yy");  /* longest */
  WORD("${XY#*x*y}", "y");
  WORD("${XY##*x*y}", "");
  WORD("${XY#*}", "xxyy");  /* the shortest match of * is empty */
  WORD("${XY##*}", "");
  WORD("${XY#?}", "xyy");
  WORD("${XY##??}", "yy");
  WORD("${XY#y}", "xxyy");  /* anchored at the start */
  WORD("${XY#}", "xxyy");
  WORD("${XY##}", "xxyy");
  WORD("${XY#xxyyz}", "xxyy");
  WORD("${XY#xxyy}", "");
  WORD("${XY#$BAR}", "xyy"); /* the pattern is substituted */
  WORD("${XY#$NULL}", "xxyy");
  WORD("${Q#?\\?}", "?y");
  WORD("${FILE#*/}", "srv/app/main.tar.gz");
  WORD("${FILE##*/}", "main.tar.gz");
  WORD("${FILE#/srv/}", "app/main.tar.gz");
  WORD("${UNSET#x}", "");
  WORD("${NULL##*}", "");
  /* a pattern word starting with a second # after ## is literal */
  parser_vars_set(&vars, "H", "##x", PARSER_VAR_ENV);
  WORD("${H###}", "#x");
  WORD("${H####}", "x");
  /* quotes group, but do not make * literal: BuildKit has no quoted patterns */
  WORD("${XY#'x'}", "xyy");
  WORD("${XY#'*'x}", "xyy");
  parser_vars_set(&vars, "STAR", "*x", PARSER_VAR_ENV);
  WORD("${STAR#'*'}", "*x");
  parser_vars_release(&vars);
}

static void test_trim_suffix(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  parser_vars_set(&vars, "XY", "xxyy", PARSER_VAR_ENV);
  WORD("${XY%y}", "xxy");
  WORD("${XY%%y}", "xxy");
  WORD("${XY%y*}", "xxy");  /* shortest */
  WORD("${XY%%y*}", "xx");  /* longest */
  WORD("${XY%x}", "xxyy");  /* anchored at the end */
  WORD("${XY%*}", "xxyy");
  WORD("${XY%%*}", "");
  WORD("${XY%?}", "xxy");
  WORD("${XY%%???}", "x");
  WORD("${XY%}", "xxyy");
  WORD("${XY%%$NULL}", "xxyy");
  WORD("${FILE%.*}", "/srv/app/main.tar");
  WORD("${FILE%%.*}", "/srv/app/main");
  WORD("${FILE%/*}", "/srv/app");
  WORD("${FILE%%/*}", "");
  WORD("${UNSET%x}", "");
  WORD("${UNSET:-.}${XY%x}${UNSET:-.}", ".xxyy.");
  /* escapes keep their place when the pattern is reversed */
  parser_vars_set(&vars, "ST", "xx**", PARSER_VAR_ENV);
  WORD("${ST%%\\**}", "xx");
  parser_vars_set(&vars, "ST", "a***yy*", PARSER_VAR_ENV);
  WORD("${ST%%\\**\\*}", "a");
  WORD("${ST%\\**\\*}", "a**");
  parser_vars_set(&vars, "ST", "a\\*b", PARSER_VAR_ENV);
  WORD("${ST%\\\\\\*b}", "a");
  parser_vars_release(&vars);
}

/* BuildKit has no bracket expressions: '[' ']' '^' '!' '-' are literal */
static void test_brackets_literal(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  parser_vars_set(&vars, "V", "abc", PARSER_VAR_ENV);
  parser_vars_set(&vars, "B", "[ab]c-d", PARSER_VAR_ENV);
  WORD("${V#[ab]}", "abc");
  WORD("${V#[a-z]}", "abc");
  WORD("${V%[!a]}", "abc");
  WORD("${V/[abc]/x}", "abc");
  WORD("${B#[ab]}", "c-d");
  WORD("${B#[a?]}", "c-d");
  WORD("${B#[*]}", "c-d");
  WORD("${B%[c]-d}", "[ab]c-d");
  WORD("${B//[ab]/}", "c-d");
  WORD("${B/]/}", "[abc-d");
  /* every regular-expression metacharacter is literal too */
  parser_vars_set(&vars, "RE", "()[]{}^$.*?|\\x", PARSER_VAR_ENV);
  WORD("${RE#()[]{\\}^$.\\*\\?|\\\\}", "x");
  WORD("${RE#.}", "()[]{}^$.*?|\\x");
  parser_vars_set(&vars, "RE", "a.b+c", PARSER_VAR_ENV);
  WORD("${RE/.b+/-}", "a-c");
  WORD("${RE/a|x/-}", "a.b+c");
  parser_vars_release(&vars);
}

/* '\' in a pattern: escapes * ? \, is dropped before } and /, and is an
 * error before anything else -- also when the escape token is '`' */
static void test_pattern_escapes(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  parser_vars_set(&vars, "V", "a*b?c\\d}e/f", PARSER_VAR_ENV);
  WORD("${V#a\\*}", "b?c\\d}e/f");
  WORD("${V#a\\*b\\?}", "c\\d}e/f");
  WORD("${V#*\\\\}", "d}e/f");
  WORD("${V#*\\}}", "e/f");
  WORD("${V#*\\/}", "f");
  WORD("${V/\\//+}", "a*b?c\\d}e+f");
  WORD("${V/\\}/+}", "a*b?c\\d+e/f");
  FAILS("${V#\\a}", "invalid pattern (\\a) in substitution: invalid escape '\\a'");
  FAILS("${V##*\\d}", "invalid pattern (*\\d) in substitution: invalid escape '\\d'");
  FAILS("${V/\\x/y}", "invalid pattern (\\x) in substitution: invalid escape '\\x'");
  FAILS("${V//\\x/y}", "invalid pattern (\\x) in substitution: invalid escape '\\x'");
  /* the pattern of % is reversed first, and reported reversed */
  FAILS("${V%a\\x}", "invalid pattern (\\xa) in substitution: invalid escape '\\x'");
  FAILS("${V%%ab\\q}", "invalid pattern (\\qba) in substitution: invalid escape '\\q'");
  /* the pattern fails even when the variable is unset */
  FAILS("${UNSET#\\a}", "invalid pattern (\\a) in substitution: invalid escape '\\a'");
  /* a backslash that comes from a variable is part of the pattern too */
  parser_vars_set(&vars, "P", "\\*", PARSER_VAR_ENV);
  parser_vars_set(&vars, "S", "**x", PARSER_VAR_ENV);
  WORD("${S#$P}", "*x");
  WORD("${S##$P}", "*x");
  parser_vars_set(&vars, "P", "\\", PARSER_VAR_ENV);
  FAILS("${S#$P}", "invalid pattern (\\) in substitution: invalid escape '\\\xef\xbf\xbd'");
  /* with escape=` the lexer keeps "`" raw, which is then a literal;
   * a backslash still escapes in the pattern */
  parser_vars_set(&vars, "T", "`*x", PARSER_VAR_ENV);
  WORD_BT("${T#`*}", "*x");   /* the shortest: just the backtick */
  WORD_BT("${T##`*}", "");
  WORD_BT("${T#``}", "`*x");  /* pattern "``" */
  FAILS_BT("${T#`}", MISSING_BRACE);
  WORD_BT("${T#`\\*}", "x");
  WORD_BT("${S#\\*}", "*x");
  FAILS_BT("${S#\\a}", "invalid pattern (\\a) in substitution: invalid escape '\\a'");
  /* a double-quoted escape in a pattern is kept, and doubled before
   * other characters */
  parser_vars_set(&vars, "D", "\\\\*x", PARSER_VAR_ENV); /* \\*x */
  WORD("${D#\"\\*\"}", "\\*x");        /* "\*" reads \\* : a backslash, then a star */
  FAILS("${D#\"\\\"\"}", "invalid pattern (\\\") in substitution: invalid escape '\\\"'");
  WORD("${D#\"\\\\\"}", "\\*x");       /* "\\" reads \\ : one backslash */
  parser_vars_release(&vars);
}

/* Go's '.' does not match a newline, and BuildKit's * and ? are '.' */
static void test_pattern_newline(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  parser_vars_set(&vars, "NL", "ab\ncd\nef", PARSER_VAR_ENV);
  WORD("${NL##*}", "\ncd\nef");
  WORD("${NL%%*}", "ab\ncd\n");
  WORD("${NL#*d}", "ab\ncd\nef");
  WORD("${NL#ab?}", "ab\ncd\nef");
  WORD("${NL#ab\n}", "cd\nef");
  WORD("${NL#*\n}", "cd\nef");
  WORD("${NL##*\n*\n}", "ef");
  WORD("${NL//*/X}", "X\nX\nX");
  WORD("${NL/b*/X}", "aX\ncd\nef");
  WORD("${NL//?/.}", "..\n..\n..");
  parser_vars_release(&vars);
}

/* ---- ${v/p/r} ${v//p/r} ---- */

static void test_replace(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  parser_vars_set(&vars, "FOO", "/foo*/*/*.txt", PARSER_VAR_ENV);
  parser_vars_set(&vars, "NEEDLE", "\\*/", PARSER_VAR_ENV);
  WORD("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", "/foo.*/*.txt - /foo..*.txt");
  parser_vars_set(&vars, "FOO", "/tmp/tmp/bar.txt", PARSER_VAR_ENV);
  parser_vars_set(&vars, "NEEDLE", "/tmp", PARSER_VAR_ENV);
  WORD("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", "/tmp/bar.txt - /bar.txt");
  parser_vars_set(&vars, "FOO", "/a/foo/b/c.txt", PARSER_VAR_ENV);
  parser_vars_set(&vars, "NEEDLE", "/?/", PARSER_VAR_ENV);
  parser_vars_set(&vars, "R", "/", PARSER_VAR_ENV);
  WORD("${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}", "/foo/b/c.txt - /foo/c.txt");
  parser_vars_set(&vars, "FOO", "http://google.de", PARSER_VAR_ENV);
  WORD("${FOO/http:\\/\\//https://}", "https://google.de");
  /* escaped separators: dropped in the pattern, kept in the replacement */
  parser_vars_set(&vars, "FOO", "/tmp/foo.txt", PARSER_VAR_ENV);
  WORD("${FOO//\\//\\/}", "\\/tmp\\/foo.txt");
  WORD("${FOO/\\//\\}}", "\\}tmp/foo.txt");
  /* leftmost, then longest */
  parser_vars_set(&vars, "V", "abcabc", PARSER_VAR_ENV);
  WORD("${V/b/X}", "aXcabc");
  WORD("${V//b/X}", "aXcaXc");
  WORD("${V/b*/X}", "aX");
  WORD("${V/?/X}", "Xbcabc");
  WORD("${V//?/X}", "XXXXXX");
  WORD("${V/c*b/X}", "abXc");
  WORD("${V//a*c/X}", "X");
  WORD("${V/z/X}", "abcabc");
  WORD("${V/abcabc/}", "");
  WORD("${V/b/}", "acabc");
  WORD("${V/b/x/y}", "ax/ycabc");   /* the replacement runs to '}' */
  WORD("${V/b/'}'}", "a}cabc");
  WORD("${UNSET/a/b}", "");
  WORD("${UNSET//a/b}", "");
  WORD("x${NULL/a/b}y", "xy");
  /* an empty pattern matches before the first character */
  parser_vars_set(&vars, "V", "xxyy", PARSER_VAR_ENV);
  WORD("${V/$NULL/ww}", "wwxxyy");
  WORD("${V//$NULL/-}", "-x-x-y-y-");
  WORD("${V///}", "xxyy");
  WORD("${UNSET///}", "");
  FAILS("${V//ww}", "syntax error: missing '/' in ${}");
  FAILS("${V//}", "syntax error: missing '/' in ${}");
  FAILS("${V/}", "syntax error: missing '/' in ${}");
  FAILS("${V/a/b", MISSING_BRACE);
  FAILS("${V/'a/b}", "syntax error: missing '/' in ${}");
  parser_vars_release(&vars);
}

/* ${v//p/r} is Go's ReplaceAllString: no replacement for an empty match
 * right after a match, and r is a template where $0 is the match */
static void test_replace_all_go_rules(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  parser_vars_set(&vars, "V", "ab", PARSER_VAR_ENV);
  WORD("${V//*/R}", "R");   /* not "RR" */
  WORD("${V/*/R}", "R");
  WORD("${NULL//*/R}", "R");
  WORD("${NULL/*/R}", "R");
  parser_vars_set(&vars, "V", "a.b.c", PARSER_VAR_ENV);
  WORD("${V//.*/!}", "a!");
  parser_vars_set(&vars, "V", "xyx", PARSER_VAR_ENV);
  parser_vars_set(&vars, "ZERO", "<$0>", PARSER_VAR_ENV);
  parser_vars_set(&vars, "ONE", "<$1>", PARSER_VAR_ENV);
  parser_vars_set(&vars, "TWO", "<$$>", PARSER_VAR_ENV);
  parser_vars_set(&vars, "BR", "<${0}|${0>", PARSER_VAR_ENV);
  parser_vars_set(&vars, "NM", "<$name|$00|$0a|$ |$>", PARSER_VAR_ENV);
  WORD("${V//x/$ZERO}", "<x>y<x>");
  WORD("${V//x/$ONE}", "<>y<>");
  WORD("${V//x/$TWO}", "<$>y<$>");
  WORD("${V//x/$BR}", "<x|${0>y<x|${0>");
  WORD("${V//x/$NM}", "<|||$ |$>y<|||$ |$>");
  /* the single replacement takes r literally */
  WORD("${V/x/$ZERO}", "<$0>yx");
  WORD("${V/x/$TWO}", "<$$>yx");
  /* \$ stays "\$" in a replacement: a template "\" then "$" */
  WORD("${V//y/\\$}", "x\\$x");
  WORD("${V//y/\\$0}", "x\\yx");
  WORD("${V/y/\\$0}", "x\\$0x");
  parser_vars_release(&vars);
}

/* ---- nesting ---- */

static void test_nested(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  WORD("${UNSET:-${PWD}}", "/home");
  WORD("${UNSET:-${UNSET2:-${SHELL}}}", "bash");
  WORD("${UNSET:-${UNSET2:-x}y}z", "xyz");
  WORD("${PWD:+${SHELL:+[$SHELL]}}", "[bash]");
  WORD("${UNSET:-${PWD#/}}", "home");
  WORD("${FILE#${PWD%home}srv/}", "app/main.tar.gz");
  WORD("${FILE/${UNSET:-main}/lib}", "/srv/app/lib.tar.gz");
  WORD("${UNSET:-\"${PWD}\"'${PWD}'}", "/home${PWD}");
  FAILS("${UNSET:-${UNSET2?inner}}", "UNSET2: inner");
  FAILS("${UNSET:-${}}", BAD_SUBST);
  FAILS("${UNSET:-${PWD}", MISSING_BRACE);
  parser_vars_release(&vars);
}

/* ---- quoting ---- */

static void test_single_quotes(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  WORD("he'll'o", "hello");
  WORD("'$PWD'", "$PWD");
  WORD("'${PWD}'", "${PWD}");
  WORD("'hello\\'", "hello\\");
  WORD("'hello\\there'", "hello\\there");
  WORD("'hello\\\\there'", "hello\\\\there");
  WORD("'abc\\tdef'", "abc\\tdef");
  WORD("'\"'", "\"");
  WORD("''", "");
  WORD("'a''b'", "ab");
  WORD("'a b'", "a b");
  WORD("he\\'llo", "he'llo");
  FAILS("he'llo", "unexpected end of statement while looking for matching single-quote");
  FAILS("'hello", "unexpected end of statement while looking for matching single-quote");
  FAILS("he\\\\'llo", "unexpected end of statement while looking for matching single-quote");
  parser_vars_release(&vars);
}

static void test_double_quotes(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  WORD("\"hello\"", "hello");
  WORD("\"hel'lo\"", "hel'lo");
  WORD("\"$PWD\"", "/home");
  WORD("\"${PWD}x\"", "/homex");
  WORD("\"'$PWD'\"", "'/home'");
  WORD("\"a  b\"", "a  b");
  WORD("\"\"", "");
  /* \" \$ \\ are escapes; any other escape stays as written */
  WORD("\"\\\"\"", "\"");
  WORD("\"\\$PWD\"", "$PWD");
  WORD("\"\\\\\"", "\\");
  WORD("\"abc\\tdef\"", "abc\\tdef");
  WORD("\"abc\\\\tdef\"", "abc\\tdef");
  WORD("\"hello\\there\"", "hello\\there");
  WORD("\"\\'\"", "\\'");
  WORD("\"\\a\\b\"", "\\a\\b");
  WORD("\"a\\ b\"", "a\\ b");
  WORD("\"\\`\"", "\\`");
  WORD("\"\\${PWD}\"", "${PWD}");
  FAILS("\"hello", "unexpected end of statement while looking for matching double-quote");
  FAILS("\"hello\\\"", "unexpected end of statement while looking for matching double-quote");
  FAILS("\"hello\\", "unexpected end of statement while looking for matching double-quote");
  FAILS("\"${PWD\"", "unsupported modifier (\") in substitution");
  parser_vars_release(&vars);
}

/* escapes outside quotes */
static void test_escapes(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  WORD("\\$PWD", "$PWD");
  WORD("\\${PWD}", "${PWD}");
  WORD("$\\{PWD}", "${PWD}");
  WORD("abc\\tdef", "abctdef");
  WORD("\\a\\b\\c", "abc");
  WORD("\\\\", "\\");
  WORD("\\\"", "\"");
  WORD("\\'", "'");
  WORD("a\\ b", "a b");
  /* an escape at the end of the word is dropped */
  WORD("hello\\", "hello");
  WORD("hello\\\\", "hello\\");
  WORD("hello\\\\\\", "hello\\");
  WORD("\\", "");
  /* escaping inside ${...} words */
  WORD("${UNSET:-a\\}b}", "a}b");
  WORD("${UNSET:-\\$PWD}", "$PWD");
  FAILS("${UNSET:-\\}", MISSING_BRACE);
  parser_vars_release(&vars);
}

/* # escape=` : the backtick escapes, the backslash is an ordinary character */
static void test_backtick_escape(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  WORD_BT("C:\\Windows\\$X", "C:\\Windows\\x");
  WORD_BT("`$PWD", "$PWD");
  WORD_BT("`${PWD}", "${PWD}");
  WORD_BT("a`b", "ab");
  WORD_BT("``", "`");
  WORD_BT("a` b", "a b");
  WORD_BT("`'", "'");
  WORD_BT("\\'a'", "\\a");
  WORD_BT("hello`", "hello");
  WORD_BT("\"`\"\"", "\"");
  WORD_BT("\"`$PWD\"", "$PWD");
  WORD_BT("\"``\"", "`");
  WORD_BT("\"`x\"", "`x");
  WORD_BT("\"\\$X\"", "\\x");
  WORD_BT("\"\\\"", "\\");
  WORD_BT("${UNSET:-a`}b}", "a}b");
  WORD_BT("${UNSET:-\\}", "\\");
  FAILS_BT("\"a`\"", "unexpected end of statement while looking for matching double-quote");
  parser_vars_release(&vars);
}

/* ---- syntax errors ---- */

static void test_syntax_errors(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  FAILS("${", MISSING_BRACE);
  FAILS("a${", MISSING_BRACE);
  FAILS("${}", BAD_SUBST);
  FAILS("${:}", BAD_SUBST);
  FAILS("${:-x}", BAD_SUBST);
  FAILS("${{PWD}}", BAD_SUBST);
  FAILS("${}PWD", BAD_SUBST);
  /* "${name" then the end is an unsupported modifier (U+FFFD) to BuildKit */
  FAILS("${PWD", "unsupported modifier (\xef\xbf\xbd) in substitution");
  FAILS("he${PWD", "unsupported modifier (\xef\xbf\xbd) in substitution");
  FAILS("${PWD:-000", MISSING_BRACE);
  FAILS("${PWD:+x", MISSING_BRACE);
  FAILS("${PWD?x", MISSING_BRACE);
  FAILS("${PWD#x", MISSING_BRACE);
  FAILS("${PWD%x", MISSING_BRACE);
  FAILS("${PWD:", MISSING_BRACE);
  FAILS("${PWD:-'x}", MISSING_BRACE); /* the quote's own error becomes this */
  FAILS("${PWD:-\"x}", MISSING_BRACE);
  FAILS("${PWD:-'x}'", MISSING_BRACE);
  /* modifiers BuildKit does not have */
  FAILS("${PWD=000}", "unsupported modifier (=) in substitution");
  FAILS("${PWD:=000}", "unsupported modifier (:=) in substitution");
  FAILS("${PWD=:000}", "unsupported modifier (=) in substitution");
  FAILS("${PWD=}", "unsupported modifier (=) in substitution");
  FAILS("${PWD:#x}", "unsupported modifier (:#) in substitution");
  FAILS("${PWD:%x}", "unsupported modifier (:%) in substitution");
  FAILS("${PWD:#x", "unsupported modifier (:#) in substitution");
  FAILS("${PWD:0:2}", "unsupported modifier (:0) in substitution");
  FAILS("${PWD:/a/b}", "unsupported modifier (:/) in substitution");
  FAILS("${PWD:}x}", "unsupported modifier (:}) in substitution");
  FAILS("${PWD.x}", "unsupported modifier (.) in substitution");
  FAILS("${PWD[0]}", "unsupported modifier ([) in substitution");
  FAILS("${#PWD}", "unsupported modifier (P) in substitution");
  FAILS("${ PWD}", "unsupported modifier ( ) in substitution");
  FAILS("${PWD\xe2\x82\xac}", "unsupported modifier (\xe2\x82\xac) in substitution");
  /* ${v:xp} reads p before failing, so errors in p come first */
  FAILS("${PWD:x", MISSING_BRACE);
  FAILS("${PWD:}", MISSING_BRACE);
  FAILS("${PWD:x${}}", BAD_SUBST);
  FAILS("${PWD:x${UNSET?no}}", "UNSET: no");
  /* an error stops at once, whatever follows */
  FAILS("${}$PWD${", BAD_SUBST);
  parser_vars_release(&vars);
}

/* errors are `failed to process <%q of the word>: <reason>` */
static void test_error_format(void)
{
  struct parser_vars vars = PARSER_VARS_INIT;
  struct strbuf out = STRBUF_INIT;
  char err[256];
  static const struct {
    const char *word, *want;
  } cases[] = {
    { "${", "failed to process \"${\": syntax error: missing '}'" },
    { "a\\\"b\\\\${", "failed to process \"a\\\\\\\"b\\\\\\\\${\": syntax error: missing '}'" },
    { "x\ty\n${}", "failed to process \"x\\ty\\n${}\": syntax error: bad substitution" },
    { "\r\a\b\f\v\x01\x7f${}",
      "failed to process \"\\r\\a\\b\\f\\v\\x01\\x7f${}\": syntax error: bad substitution" },
    { "\xed\x95\x9c${}", "failed to process \"\xed\x95\x9c${}\": syntax error: bad substitution" },
    { "\xff${}", "failed to process \"\\xff${}\": syntax error: bad substitution" },
    { "\xc2\xa0\xc2\x85\xe2\x80\x8b${}",
      "failed to process \"\\u00a0\\u0085\\u200b${}\": syntax error: bad substitution" },
    { "\xf0\x9f\x98\x80${}",
      "failed to process \"\xf0\x9f\x98\x80${}\": syntax error: bad substitution" },
    { "\xf3\xa0\x80\x81${}",
      "failed to process \"\\U000e0001${}\": syntax error: bad substitution" },
  };
  for (size_t i = 0; i < CB_ARRAY_SIZE(cases); i++) {
    err[0] = '\0';
    CHECK_INT(parser_expand_word(cases[i].word, '\\', &vars, &out, err, sizeof(err)), -1);
    CHECK_STR(err, cases[i].want);
    strbuf_reset(&out);
  }
  /* a message longer than the buffer is cut, not overrun */
  {
    char small[24];
    CHECK_INT(parser_expand_word("${}", '\\', &vars, &out, small, sizeof(small)), -1);
    CHECK_STR(small, "failed to process \"${}\"");
  }
  strbuf_release(&out);
}

/* ---- ProcessWords ---- */

static void test_words(void)
{
  struct parser_vars vars = PARSER_VARS_INIT;
  parser_vars_set(&vars, "hi", "hi", PARSER_VAR_ENV);
  parser_vars_set(&vars, "space", "abc  def", PARSER_VAR_ENV);
  parser_vars_set(&vars, "leading", "  ab c", PARSER_VAR_ENV);
  parser_vars_set(&vars, "trailing", "ab c   ", PARSER_VAR_ENV);
  parser_vars_set(&vars, "blank", "   ", PARSER_VAR_ENV);
  parser_vars_set(&vars, "empty", "", PARSER_VAR_ENV);
  parser_vars_set(&vars, "tab", "a\tb\nc\vd\fe\rf", PARSER_VAR_ENV);
  parser_vars_set(&vars, "nbsp", "a\xc2\xa0" "b\xe3\x80\x80" "c\xc2\x85" "d", PARSER_VAR_ENV);
  parser_vars_set(&vars, "quoted", "'a b'", PARSER_VAR_ENV);
  WORDS("hello", "hello");
  WORDS("hello${hi}bye", "hellohibye");
  WORDS("hello${undefined}bye", "hellobye");
  WORDS("hello${space}bye", "helloabc|defbye");
  WORDS("hello\"${space}\"bye", "helloabc  defbye");
  WORDS("hello \"${space}\"bye", "hello|abc  defbye");
  WORDS("hello${leading}def", "hello|ab|cdef");
  WORDS("hello\"${leading}\" def", "hello  ab c|def");
  WORDS("hello\"${leading}\"", "hello  ab c");
  WORDS("hello${leading}", "hello|ab|c");
  WORDS("hello${trailing}", "helloab|c");
  WORDS("hello${trailing}d", "helloab|c|d");
  WORDS("hello\"${trailing}\"d", "helloab c   d");
  WORDS("hel\"lo${trailing}\"", "helloab c   ");
  WORDS("hello\" there  \"", "hello there  ");
  WORDS("hello there     ", "hello|there");
  WORDS("   hello   there", "hello|there");
  WORDS("hello\\ there", "hello there");
  WORDS("hello\\\" there", "hello\"|there");
  WORDS("hello\"\\\\there\"", "hello\\there");
  WORDS("hello\"\\there\"", "hello\\there");
  WORDS("hello'\\\\there'", "hello\\\\there");
  WORDS("hello'\\there'", "hello\\there");
  WORDS("hello'$there'", "hello$there");
  WORDS("a 'b c' d", "a|b c|d");
  /* nothing at all, and empty quotes, make no word */
  WORDS("", "");
  WORDS("   ", "");
  WORDS("\"\"", "");
  WORDS("'' \"\"", "");
  WORDS("a \"\" b", "a|b");
  WORDS("$blank", "");
  WORDS("$empty", "");
  WORDS("x${blank}y", "x|y");
  WORDS("${blank}x${blank}", "x");
  /* every Go space splits, in a value or in the text */
  WORDS("$tab", "a|b|c|d|e|f");
  WORDS("$nbsp", "a|b|c|d");
  WORDS("a\xc2\xa0" "b", "a|b");
  WORDS("a\tb", "a|b");
  /* quotes inside a value are not quote marks */
  WORDS("$quoted", "'a|b'");
  /* a ${v:-w} result splits like a value, its quotes already gone */
  WORDS("${undefined:-\"x y\"}", "x|y");
  WORDS("\"${undefined:-x y}\"", "x y");
  /* text before a ${v:-w} stays in its word (the BuildKit releases whose
   * lexer shares one words buffer across nesting lose the "a" here) */
  WORDS("a${undefined:-b}c d", "abc|d");
  WORDS("a\"${undefined:-b}\"c", "abc");
  /* escaped spaces and \$ never split */
  WORDS("a\\ \\ b \\$space", "a  b|$space");
  FAILS("hello\" there", "unexpected end of statement while looking for matching double-quote");
  parser_vars_release(&vars);
}

/* a failure adds no words, even those found before it */
static void test_words_error(void)
{
  struct parser_vars vars = PARSER_VARS_INIT;
  struct strvec out = STRVEC_INIT;
  char err[256] = "";
  strvec_push(&out, "keep");
  CHECK_INT(parser_expand_words("a b c ${", '\\', &vars, &out, err, sizeof(err)), -1);
  CHECK_STR(err, "failed to process \"a b c ${\": syntax error: missing '}'");
  CHECK_INT(out.n, 1);
  CHECK_STR(out.v[0], "keep");
  /* words are appended */
  CHECK_INT(parser_expand_words("d e", '\\', &vars, &out, err, sizeof(err)), 0);
  CHECK_INT(out.n, 3);
  CHECK_STR(out.v[2], "e");
  strvec_clear(&out);
}

/* ---- text beyond ASCII ---- */

static void test_utf8(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  /* valid UTF-8 passes through untouched, quoted or not */
  WORD("$KOREAN", "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4");
  WORD("h\xc3\xa9llo w\xc3\xb6rld", "h\xc3\xa9llo w\xc3\xb6rld");
  WORD("'\xe2\x82\xac'\"\xf0\x9f\x98\x80\"\\\xc3\xa9", "\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9");
  WORD("\"\\\xc3\xa9\"", "\\\xc3\xa9");
  /* names may hold letters of any script */
  parser_vars_set(&vars, "\xc3\xa9t\xc3\xa9", "summer", PARSER_VAR_ENV);
  parser_vars_set(&vars, "\xed\x95\x9c", "han", PARSER_VAR_ENV);
  WORD("$\xc3\xa9t\xc3\xa9!", "summer!");
  WORD("${\xc3\xa9t\xc3\xa9}", "summer");
  WORD("$\xed\x95\x9c.", "han.");
  /* U+0124 is a letter, though its low byte is '$' */
  parser_vars_set(&vars, "\xc4\xa4" "a", "h", PARSER_VAR_ENV);
  WORD("$\xc4\xa4" "a", "h");
  WORD("${\xc4\xa4" "a}", "h");
  /* a non-letter ends a name; U+20AC is a symbol */
  WORD("$X\xe2\x82\xac", "x\xe2\x82\xac");
  /* patterns work on characters, not bytes */
  parser_vars_set(&vars, "E", "\xc3\xa9t\xc3\xa9", PARSER_VAR_ENV);
  WORD("${E#?}", "t\xc3\xa9");
  WORD("${E%?}", "\xc3\xa9t");
  WORD("${E//?/.}", "...");
  WORD("${KOREAN#*\xea\xb5\xad}", "\xec\x96\xb4");
  WORD("${KOREAN%\xea\xb5\xad*}", "\xed\x95\x9c");
  WORD("${KOREAN/\xea\xb5\xad/-}", "\xed\x95\x9c-\xec\x96\xb4");
  /* text/scanner reads a bad byte as U+FFFD, and Go writes that back */
  WORD("a\xff" "b", "a\xef\xbf\xbd" "b");
  WORD("'\xc3'", "\xef\xbf\xbd");
  WORD("\"\xe2\x82\"", "\xef\xbf\xbd\xef\xbf\xbd");
  WORD("\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd");             /* overlong '/' */
  WORD("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
  WORD("\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
  WORD("\\\xff", "\xef\xbf\xbd");
  /* ... but a value is copied as it is, except where BuildKit reverses it */
  parser_vars_set(&vars, "BAD", "a\xff" "b", PARSER_VAR_ENV);
  WORD("$BAD", "a\xff" "b");
  WORD("${BAD#a}", "\xff" "b");
  WORD("${BAD/b/c}", "a\xff" "c");
  WORD("${BAD%b}", "a\xef\xbf\xbd");
  WORD("${BAD%x}", "a\xef\xbf\xbd" "b");
  WORD("${BAD#a?}", "b");
  WORD("${BAD#a\xff}", "b"); /* both are U+FFFD to the regexp */
  /* a byte order mark at the very start is skipped by text/scanner */
  WORD("\xef\xbb\xbf" "a\xef\xbb\xbf", "a\xef\xbb\xbf");
  WORD("\xef\xbb\xbf", "");
  parser_vars_release(&vars);
}

/* ProcessWords ranges over values by rune: a bad byte becomes U+FFFD */
static void test_words_utf8(void)
{
  struct parser_vars vars = PARSER_VARS_INIT;
  parser_vars_set(&vars, "BAD", "a\xff b", PARSER_VAR_ENV);
  parser_vars_set(&vars, "K", "\xed\x95\x9c \xea\xb5\xad", PARSER_VAR_ENV);
  WORDS("$BAD", "a\xef\xbf\xbd|b");
  WORDS("\"$BAD\"", "a\xff b");
  WORDS("$K", "\xed\x95\x9c|\xea\xb5\xad");
  parser_vars_release(&vars);
}

/* ---- heredocs: quotes are literal, escapes are processed ---- */

static void test_heredoc(void)
{
  struct parser_vars vars;
  vars_init(&vars);
  HEREDOC("", "");
  HEREDOC("hello\n", "hello\n");
  HEREDOC("dir=$PWD\nshell=${SHELL}\n", "dir=/home\nshell=bash\n");
  HEREDOC("'$PWD' \"$PWD\"\n", "'/home' \"/home\"\n");
  HEREDOC("<?xml version=\"1.0\"?>\n", "<?xml version=\"1.0\"?>\n");
  HEREDOC("it's\n", "it's\n");
  HEREDOC("\\$PWD \\${PWD}\n", "$PWD ${PWD}\n");
  HEREDOC("a\\\\b a\\nb a\\\"b\n", "a\\b anb a\"b\n");
  HEREDOC("end\\", "end");
  HEREDOC("  indented\n\ttab\n", "  indented\n\ttab\n");
  HEREDOC("${UNSET:-'x y'}\n", "'x y'\n");
  HEREDOC("${UNSET:-\"$PWD\"}\n", "\"/home\"\n");
  HEREDOC("${FILE##*/}\n", "main.tar.gz\n");
  HEREDOC("$\n", "$\n");
  HEREDOC("\xed\x95\x9c\n", "\xed\x95\x9c\n");
  /* the heredoc always escapes with a backslash */
  HEREDOC("`$PWD\n", "`/home\n");
  {
    struct strbuf out = STRBUF_INIT;
    char err[256] = "";
    CHECK_INT(parser_expand_heredoc("line 1\n${PWD\nline 3\n", &vars, &out, err, sizeof(err)), -1);
    /* the word is quoted, the reason is not */
    CHECK_STR(err, "failed to process \"line 1\\n${PWD\\nline 3\\n\": "
                   "unsupported modifier (\n) in substitution");
    err[0] = '\0';
    CHECK_INT(parser_expand_heredoc("it's ${UNSET?not set}\n", &vars, &out, err, sizeof(err)), -1);
    CHECK_STR(err, "failed to process \"it's ${UNSET?not set}\\n\": UNSET: not set");
    strbuf_release(&out);
  }
  parser_vars_release(&vars);
}

/* ---- parser_shell_match: the pattern syntax on its own ---- */

static void test_shell_match(void)
{
  CHECK(MATCH("", ""));
  CHECK(!MATCH("", "a"));
  CHECK(MATCH("abc", "abc"));
  CHECK(!MATCH("abc", "abcd"));
  CHECK(!MATCH("abc", "ab"));
  CHECK(MATCH("*", ""));
  CHECK(MATCH("*", "anything at all"));
  CHECK(MATCH("a*", "a"));
  CHECK(MATCH("a*c", "abbbc"));
  CHECK(MATCH("a*c", "acbc"));
  CHECK(!MATCH("a*c", "acb"));
  CHECK(MATCH("*.tar.gz", "x.tar.gz"));
  CHECK(MATCH("?", "a"));
  CHECK(!MATCH("?", ""));
  CHECK(!MATCH("?", "ab"));
  CHECK(MATCH("a?c", "abc"));
  CHECK(MATCH("**", "ab"));
  CHECK(MATCH("*a*b*c*", "xxaxxbxxcxx"));
  CHECK(!MATCH("*a*b*c*", "xxcxxbxxaxx"));
  CHECK(MATCH("a/*", "a/b/c")); /* * crosses / */
  /* * and ? never match a newline; a literal newline does */
  CHECK(!MATCH("*", "a\nb"));
  CHECK(!MATCH("a?b", "a\nb"));
  CHECK(MATCH("a\n*", "a\nbc"));
  CHECK(MATCH("*\n*", "ab\ncd"));
  CHECK(!MATCH("*\n*", "a\nb\nc"));
  CHECK(MATCH("*\n*\n*", "a\nb\nc"));
  CHECK(MATCH("*a\na*", "xa\nay"));
  /* brackets are literal */
  CHECK(MATCH("[ab]", "[ab]"));
  CHECK(!MATCH("[ab]", "a"));
  CHECK(MATCH("[!a]", "[!a]"));
  CHECK(MATCH("[*]", "[xyz]"));
  /* escapes */
  CHECK(MATCH("\\*", "*"));
  CHECK(!MATCH("\\*", "a"));
  CHECK(MATCH("\\?", "?"));
  CHECK(!MATCH("\\?", "a"));
  CHECK(MATCH("\\\\", "\\"));
  CHECK(MATCH("\\}", "}"));
  CHECK(MATCH("\\/", "/"));
  CHECK(MATCH("a\\**", "a*bc"));
  CHECK(!MATCH("a\\**", "abc"));
  CHECK(!MATCH("\\a", "a"));  /* an invalid escape matches nothing */
  CHECK(!MATCH("\\a", "\\a"));
  CHECK(!MATCH("a\\", "a"));
  /* characters, not bytes */
  CHECK(MATCH("?", "\xc3\xa9"));
  CHECK(MATCH("??", "\xed\x95\x9c\xea\xb5\xad"));
  CHECK(!MATCH("?", "\xed\x95\x9c\xea\xb5\xad"));
  CHECK(MATCH("\xc3\xa9*", "\xc3\xa9t\xc3\xa9"));
  CHECK(MATCH("?", "\xff"));
  CHECK(MATCH("\xef\xbf\xbd", "\xff")); /* both read as U+FFFD */
  /* a leading byte order mark in the pattern is dropped */
  CHECK(MATCH("\xef\xbb\xbf" "a", "a"));
  CHECK(!MATCH("a\xef\xbb\xbf", "a"));
  /* patterns and strings with embedded lengths: only plen/slen count */
  CHECK(parser_shell_match("abX", 2, "abY", 2));
  CHECK(!parser_shell_match("a*", 2, "bcd", 3));
  /* a long input stays linear: this would take ages with backtracking */
  {
    struct strbuf s = STRBUF_INIT;
    for (int i = 0; i < 20000; i++)
      strbuf_addch(&s, 'a');
    CHECK(!MATCH("*a*a*a*a*a*a*a*b", s.buf));
    CHECK(MATCH("*a*a*a*a*a*a*a*", s.buf));
    strbuf_release(&s);
  }
}

/* long values: the pattern operations stay fast and exact */
static void test_long_values(void)
{
  struct parser_vars vars = PARSER_VARS_INIT;
  struct strbuf v = STRBUF_INIT, want = STRBUF_INIT;
  for (int i = 0; i < 5000; i++)
    strbuf_addstr(&v, "ab");
  parser_vars_set(&vars, "L", v.buf, PARSER_VAR_ENV);
  WORD("${L##*a}", "b");
  WORD("${L%%b*}", "a");
  WORD("${L#*c}", v.buf);
  for (int i = 0; i < 5000; i++)
    strbuf_addstr(&want, "aX");
  WORD("${L//b/X}", want.buf);
  WORD("${L//*c/X}", v.buf);
  strbuf_release(&v);
  strbuf_release(&want);
  parser_vars_release(&vars);
}

static const struct unit_test tests[] = {
  { "plain", test_plain },
  { "dollar_special", test_dollar_special },
  { "default", test_default },
  { "alternative", test_alternative },
  { "required", test_required },
  { "trim_prefix", test_trim_prefix },
  { "trim_suffix", test_trim_suffix },
  { "brackets_literal", test_brackets_literal },
  { "pattern_escapes", test_pattern_escapes },
  { "pattern_newline", test_pattern_newline },
  { "replace", test_replace },
  { "replace_all_go_rules", test_replace_all_go_rules },
  { "nested", test_nested },
  { "single_quotes", test_single_quotes },
  { "double_quotes", test_double_quotes },
  { "escapes", test_escapes },
  { "backtick_escape", test_backtick_escape },
  { "syntax_errors", test_syntax_errors },
  { "error_format", test_error_format },
  { "words", test_words },
  { "words_error", test_words_error },
  { "utf8", test_utf8 },
  { "words_utf8", test_words_utf8 },
  { "heredoc", test_heredoc },
  { "shell_match", test_shell_match },
  { "long_values", test_long_values },
};
UNIT_MAIN(tests)
