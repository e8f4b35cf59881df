#include <time.h>

#include "unit.h"
#include "../../parser/parser.h"

/* Read text as a .dockerignore; fails the test (and returns NULL) when it
 * does not parse. */
static struct parser_ignore *ig_read_at(const char *text, size_t size,
                                        const char *file, int line)
{
  struct parser_error err;
  struct parser_ignore *ig;

  memset(&err, 0, sizeof(err));
  ig = parser_ignore_new(".dockerignore", text, size, &err);
  if (ig == NULL)
    unit_fail(file, line, "parser_ignore_new failed: %s:%d: %s", err.file,
              err.line, err.text);
  return ig;
}
#define ig_read(text) ig_read_at((text), strlen(text), __FILE__, __LINE__)

/* Expect text not to parse; returns the error for further checks. */
static struct parser_error ig_fail_at(const char *text, size_t size,
                                      const char *file, int line)
{
  struct parser_error err;
  struct parser_ignore *ig;

  memset(&err, 0, sizeof(err));
  ig = parser_ignore_new("ctx/.dockerignore", text, size, &err);
  if (ig != NULL) {
    unit_fail(file, line, "parser_ignore_new accepted \"%s\"", text);
    parser_ignore_free(ig);
  }
  return err;
}
#define ig_fail(text) ig_fail_at((text), strlen(text), __FILE__, __LINE__)

/* Whether the single-pattern file `pattern` excludes path. */
static bool excl(const char *pattern, const char *path)
{
  struct parser_error err;
  struct parser_ignore *ig = parser_ignore_new("x", pattern, strlen(pattern), &err);
  bool r;

  if (ig == NULL)
    return false;
  r = parser_ignore_match(ig, path);
  parser_ignore_free(ig);
  return r;
}

static void test_comments(void)
{
  struct parser_ignore *ig = ig_read("# a comment\nfoo\n #not a comment\n#bar\n");
  if (ig == NULL)
    return;
  /* '#' starts a comment only in column 1, before trimming. */
  CHECK_INT(parser_ignore_count(ig), 2);
  CHECK(parser_ignore_match(ig, "foo"));
  CHECK(parser_ignore_match(ig, "#not a comment"));
  CHECK(!parser_ignore_match(ig, "#bar"));
  CHECK(!parser_ignore_match(ig, "# a comment"));
  parser_ignore_free(ig);
}

static void test_blank_lines(void)
{
  struct parser_ignore *ig = ig_read("\n\n   \n\t foo \t\n\n\xc2\xa0\xe3\x80\x80\n");
  if (ig == NULL)
    return;
  /* Spaces are trimmed as Go's strings.TrimSpace does, Unicode ones too. */
  CHECK_INT(parser_ignore_count(ig), 1);
  CHECK(parser_ignore_match(ig, "foo"));
  CHECK(!parser_ignore_match(ig, " foo"));
  parser_ignore_free(ig);

  ig = ig_read("\xe2\x80\x83" "bar\xc2\xa0");
  if (ig == NULL)
    return;
  CHECK(parser_ignore_match(ig, "bar"));
  parser_ignore_free(ig);

  ig = ig_read("");
  if (ig == NULL)
    return;
  CHECK_INT(parser_ignore_count(ig), 0);
  CHECK(!parser_ignore_match(ig, "foo"));
  parser_ignore_free(ig);
}

static void test_bom(void)
{
  struct parser_ignore *ig = ig_read("\xef\xbb\xbf" "foo\nbar\n");
  if (ig == NULL)
    return;
  CHECK_INT(parser_ignore_count(ig), 2);
  CHECK(parser_ignore_match(ig, "foo"));
  CHECK(parser_ignore_match(ig, "bar"));
  parser_ignore_free(ig);

  /* The BOM goes before the comment check, and only on the first line. */
  ig = ig_read("\xef\xbb\xbf# comment\nx\n\xef\xbb\xbf" "y\n");
  if (ig == NULL)
    return;
  CHECK_INT(parser_ignore_count(ig), 2);
  CHECK(parser_ignore_match(ig, "x"));
  CHECK(!parser_ignore_match(ig, "y"));
  CHECK(parser_ignore_match(ig, "\xef\xbb\xbf" "y"));
  parser_ignore_free(ig);
}

static void test_crlf(void)
{
  struct parser_ignore *ig = ig_read("foo\r\n# c\r\n\r\n!foo/keep\r\nbar");
  if (ig == NULL)
    return;
  CHECK_INT(parser_ignore_count(ig), 3);
  CHECK(parser_ignore_match(ig, "foo"));
  CHECK(parser_ignore_match(ig, "foo/x"));
  CHECK(!parser_ignore_match(ig, "foo/keep"));
  CHECK(parser_ignore_match(ig, "bar"));
  parser_ignore_free(ig);
}

static void test_exception_order(void)
{
  struct parser_ignore *ig = ig_read("*.md\n!README.md\n");
  if (ig == NULL)
    return;
  CHECK(parser_ignore_match(ig, "CHANGES.md"));
  CHECK(!parser_ignore_match(ig, "README.md"));
  CHECK(!parser_ignore_match(ig, "main.c"));
  /* `*` stops at '/', so docs/x.md is not excluded at all */
  CHECK(!parser_ignore_match(ig, "docs/x.md"));
  parser_ignore_free(ig);

  /* The reverse order: the last matching pattern wins. */
  ig = ig_read("!README.md\n*.md\n");
  if (ig == NULL)
    return;
  CHECK(parser_ignore_match(ig, "README.md"));
  CHECK(parser_ignore_match(ig, "CHANGES.md"));
  parser_ignore_free(ig);

  /* Spaces after '!' are trimmed; an exception can be overridden again. */
  ig = ig_read("docs\n!  docs/README.md\ndocs/README.md\n!docs/keep\n");
  if (ig == NULL)
    return;
  CHECK_INT(parser_ignore_count(ig), 4);
  CHECK(parser_ignore_match(ig, "docs"));
  CHECK(parser_ignore_match(ig, "docs/other"));
  CHECK(parser_ignore_match(ig, "docs/README.md"));
  CHECK(!parser_ignore_match(ig, "docs/keep"));
  CHECK(!parser_ignore_match(ig, "docs/keep/deeper"));
  parser_ignore_free(ig);

  /* "!!x" is an exception for the name "!x". */
  ig = ig_read("*\n!!x\n");
  if (ig == NULL)
    return;
  CHECK(!parser_ignore_match(ig, "!x"));
  CHECK(parser_ignore_match(ig, "x"));
  parser_ignore_free(ig);
}

static void test_parent_dirs(void)
{
  CHECK(excl("foo", "foo/bar/baz"));
  CHECK(excl("foo/bar", "foo/bar/baz"));
  CHECK(!excl("foo/bar", "foo/baz"));
  CHECK(!excl("foo", "foobar"));
  CHECK(!excl("bar", "foo/bar")); /* patterns are anchored at the root */
  CHECK(excl("*", "a/b/c"));      /* through the parent "a" */
  CHECK(excl("a*", "ab/c"));
  CHECK(excl("*/b", "a/b/c"));
  CHECK(excl("a*/b", "abc/b"));
  CHECK(!excl("a*/b", "a/c/b"));
  CHECK(excl("a*b*c*d*e*/f", "axbxcxdxexxx/f"));
  CHECK(!excl("a*b*c*d*e*/f", "axbxcxdxe/xxx/f"));
  /* The root itself is never excluded. */
  CHECK(!excl("*", "."));
  CHECK(!excl("*", ""));
  CHECK(!excl("**", "/"));
}

static void test_cleaning(void)
{
  struct parser_ignore *ig = ig_read("/foo\n//bar//baz/\n./a/./b/../c\n"
                                     "x/..\n../up\n/\n");
  if (ig == NULL)
    return;
  CHECK_INT(parser_ignore_count(ig), 6);
  CHECK(parser_ignore_match(ig, "foo"));
  CHECK(parser_ignore_match(ig, "/foo"));
  CHECK(parser_ignore_match(ig, "./foo/"));
  CHECK(parser_ignore_match(ig, "foo/x"));
  CHECK(parser_ignore_match(ig, "bar/baz"));
  CHECK(parser_ignore_match(ig, "bar//baz/file"));
  CHECK(!parser_ignore_match(ig, "bar"));
  CHECK(parser_ignore_match(ig, "a/c"));
  CHECK(!parser_ignore_match(ig, "a/b"));
  CHECK(parser_ignore_match(ig, "a/b/../c"));
  CHECK(parser_ignore_match(ig, "../up"));
  CHECK(!parser_ignore_match(ig, "up"));
  CHECK(!parser_ignore_match(ig, "x"));
  parser_ignore_free(ig);

  /* "!/" cleans to "!", which Docker rejects. */
  CHECK_INT(ig_fail("!/").line, 1);
}

static void test_double_star(void)
{
  /* leading */
  CHECK(excl("**/foo", "foo"));
  CHECK(excl("**/foo", "a/b/foo"));
  CHECK(excl("**/foo", "a/foo/c"));
  CHECK(!excl("**/foo", "afoo"));
  CHECK(excl("**/*.go", "main.go"));
  CHECK(excl("**/*.go", "a/b/main.go"));
  CHECK(!excl("**/*.go", "a/b/main.c"));
  /* Docker's suffix shortcut: "**" then plain text is a plain suffix. */
  CHECK(excl("**.md", "a/b/x.md"));
  CHECK(excl("**foo", "xfoo"));
  /* trailing */
  CHECK(excl("foo/**", "foo/x"));
  CHECK(excl("foo/**", "foo/x/y"));
  CHECK(!excl("foo/**", "foo"));
  CHECK(!excl("foo/**", "foobar"));
  CHECK(excl("a/*.txt**", "a/file.txt"));
  /* middle */
  CHECK(excl("a/**/b", "a/b"));
  CHECK(excl("a/**/b", "a/x/b"));
  CHECK(excl("a/**/b", "a/x/y/b"));
  CHECK(excl("a/**/b", "a/x/y/b/c"));
  CHECK(!excl("a/**/b", "ab"));
  CHECK(!excl("a/**/b", "a/xb"));
  CHECK(excl("a**/*.txt", "a/dir/file.txt"));
  CHECK(excl("**/dir2/**", "dir/dir2/dir3/file"));
  CHECK(!excl("**/**/*.txt2", "dir/dir/file.txt"));
  /* alone */
  CHECK(excl("**", "anything/at/all"));
  CHECK(excl("**/", "x"));
  CHECK(excl("**/**", "dir/file"));
  /* `.` in a regexp pattern does not cross a newline, as in Go */
  CHECK(excl("a/**/b", "a/x/y/b"));
  CHECK(!excl("a/**/b", "a/x\ny/b"));
}

static void test_question_mark(void)
{
  CHECK(excl("a?c", "abc"));
  CHECK(!excl("a?c", "ac"));
  CHECK(!excl("a?c", "a/c"));
  CHECK(!excl("a?c", "abbc"));
  CHECK(excl("a?b", "a\xe2\x98\xba" "b")); /* one rune, three bytes */
  CHECK(!excl("a???b", "a\xe2\x98\xba" "b"));
  CHECK(excl("?", "x/y"));
  CHECK(excl("abc?def", "abcZdef"));
  CHECK(!excl("abc?def", "abcdef"));
}

static void test_char_classes(void)
{
  CHECK(excl("a[b-d]e", "ace"));
  CHECK(!excl("a[b-d]e", "aae"));
  CHECK(!excl("a[b-d]e", "ae"));
  CHECK(excl("a[^b-d]e", "aze"));
  CHECK(!excl("a[^b-d]e", "ace"));
  /* Only `*` and `?` stop at '/'; a negated class does not. */
  CHECK(excl("a[^b]c", "a/c"));
  CHECK(excl("a[^a]b", "a\xe2\x98\xba" "b"));
  CHECK(excl("[a-\xce\xb6]*", "\xce\xb1"));
  CHECK(excl("[\\]a]", "]"));
  CHECK(excl("[x\\-]", "-"));
  CHECK(!excl("[x\\-]", "z"));
  /*
   * Docker hands classes to Go's regexp, where only '^' negates: "[!a]"
   * is the class of '!' and 'a', and POSIX classes work.
   */
  CHECK(excl("[!a]bc", "abc"));
  CHECK(excl("[!a]bc", "!bc"));
  CHECK(!excl("[!a]bc", "xbc"));
  CHECK(excl("v[[:digit:]]", "v7"));
  CHECK(!excl("v[[:digit:]]", "vx"));
  /* Characters that are special only to regexps stay literal. */
  CHECK(excl("a(b)c/def", "a(b)c/def"));
  CHECK(excl("a.|)$(}+{bc", "a.|)$(}+{bc"));
  CHECK(excl("*.a+b", "x.a+b"));
  CHECK(!excl("*.a+b", "x.aab"));
  CHECK(excl(".*", ".foo"));
  CHECK(!excl(".*", "foo"));
  CHECK(!excl("abc.def", "abcZdef"));
}

static void test_escapes(void)
{
  CHECK(excl("a\\*b", "a*b"));
  CHECK(!excl("a\\*b", "axb"));
  CHECK(excl("\\[x\\]", "[x]"));
  CHECK(!excl("\\[x\\]", "x"));
  CHECK(excl("a\\?", "a?"));
  CHECK(!excl("a\\?", "ab"));
  CHECK(excl("foo\\ bar", "foo bar"));
  CHECK(excl("a\\\\", "a\\"));
  CHECK(excl("*\\.txt", "x.txt"));
  CHECK(!excl("*\\.txt", "xatxt"));
}

/*
 * patternmatcher rewrites patterns into Go regexps textually, and Docker
 * users live with the result; these pin down what it does.
 */
static void test_regexp_quirks(void)
{
  /* An escaped letter reaches the regexp as is: `\d` is a digit. */
  CHECK(excl("v\\d", "v5"));
  CHECK(!excl("v\\d", "vd"));
  /* '^' is an anchor in a regexp pattern, a plain character otherwise. */
  CHECK(excl("a^b", "a^b"));
  CHECK(!excl("a^b?", "a^bc"));
  /* "[*]" becomes "[[^/]*]": '[', '^' or '/' repeated, then ']'. */
  CHECK(excl("[*]", "]"));
  CHECK(excl("[*]", "[^]"));
  CHECK(!excl("[*]", "*"));
  /* "**" not followed by '/' still means "any directories, then". */
  CHECK(excl("a**b", "ax/b"));
  CHECK(!excl("a**b", "axb"));
}

static void test_bang_error(void)
{
  struct parser_error err = ig_fail("foo\n\n!\nbar\n");
  CHECK_STR(err.file, "ctx/.dockerignore");
  CHECK_INT(err.line, 3);
  CHECK_STR(err.text, "illegal exclusion pattern: \"!\"");

  err = ig_fail("# c\r\n!   \r\n");
  CHECK_INT(err.line, 2);
  CHECK_CONTAINS(err.text, "illegal exclusion pattern");

  /* ...but "!" followed by something is fine */
  {
    struct parser_ignore *ig = ig_read("!.\n");
    if (ig != NULL) {
      CHECK_INT(parser_ignore_count(ig), 1);
      parser_ignore_free(ig);
    }
  }
}

static void test_bad_patterns(void)
{
  struct parser_error err = ig_fail("ok\n\n[abc\n");
  CHECK_INT(err.line, 3);
  CHECK_CONTAINS(err.text, "bad pattern \"[abc\"");

  err = ig_fail("a\n!docs/[x\n");
  CHECK_INT(err.line, 2);
  CHECK_CONTAINS(err.text, "[x");

  /* filepath.Match's rules */
  CHECK_INT(ig_fail("foo\\").line, 1);
  CHECK_INT(ig_fail("[]a]").line, 1);
  CHECK_INT(ig_fail("[-x]").line, 1);
  CHECK_INT(ig_fail("[x-]").line, 1);
  CHECK_INT(ig_fail("[a-b-c]").line, 1);
  CHECK_INT(ig_fail("[^").line, 1);
  CHECK_INT(ig_fail("x\n[\xff]").line, 2);
  /* patterns Go's regexp rejects */
  CHECK_INT(ig_fail("[z-a]").line, 1);
  CHECK_INT(ig_fail("a\\qb").line, 1);
  CHECK_INT(ig_fail("[[:nope:]]").line, 1);

  /* Go's bufio.Scanner gives up on lines over 64 KiB. */
  {
    size_t n = 70000;
    char *big = xmalloc(n + 3);
    memcpy(big, "a\n", 2);
    memset(big + 2, 'x', n);
    big[n + 2] = '\0';
    err = ig_fail(big);
    CHECK_INT(err.line, 2);
    CHECK_CONTAINS(err.text, "too long");
    free(big);
  }
}

static void test_dir_needs_walk(void)
{
  struct parser_ignore *ig = ig_read("docs\n!docs/README.md\n");
  if (ig == NULL)
    return;
  CHECK(parser_ignore_dir_needs_walk(ig, "docs"));
  CHECK(!parser_ignore_dir_needs_walk(ig, "docs/sub"));
  CHECK(!parser_ignore_dir_needs_walk(ig, "other"));
  parser_ignore_free(ig);

  ig = ig_read("*\n!src/**\n");
  if (ig == NULL)
    return;
  CHECK(parser_ignore_dir_needs_walk(ig, "src"));
  CHECK(parser_ignore_dir_needs_walk(ig, "src/deep"));
  CHECK(!parser_ignore_dir_needs_walk(ig, "build"));
  CHECK(!parser_ignore_match(ig, "src/main.c"));
  parser_ignore_free(ig);

  /* No exceptions: never. */
  ig = ig_read("*\nfoo/**\n");
  if (ig == NULL)
    return;
  CHECK(!parser_ignore_dir_needs_walk(ig, "foo"));
  CHECK(!parser_ignore_dir_needs_walk(ig, "bar"));
  parser_ignore_free(ig);

  /* Exceptions that can match at any depth. */
  ig = ig_read("*\n!**/README.md\n!*/keep/*.txt\n");
  if (ig == NULL)
    return;
  CHECK(parser_ignore_dir_needs_walk(ig, "anything"));
  parser_ignore_free(ig);
  ig = ig_read("*\n!*/keep/*.txt\n");
  if (ig == NULL)
    return;
  CHECK(parser_ignore_dir_needs_walk(ig, "a"));
  CHECK(parser_ignore_dir_needs_walk(ig, "a/keep"));
  CHECK(!parser_ignore_dir_needs_walk(ig, "a/other"));
  CHECK(!parser_ignore_dir_needs_walk(ig, "a/keep/x"));
  parser_ignore_free(ig);

  /* An exception overridden by a later pattern that excludes dir. */
  ig = ig_read("!docs/README.md\ndocs\n");
  if (ig == NULL)
    return;
  CHECK(!parser_ignore_dir_needs_walk(ig, "docs"));
  parser_ignore_free(ig);

  /* Exceptions that name dir itself or a sibling with the same prefix. */
  ig = ig_read("*\n!doc\n!docs2/x\n");
  if (ig == NULL)
    return;
  CHECK(!parser_ignore_dir_needs_walk(ig, "docs"));
  CHECK(parser_ignore_dir_needs_walk(ig, "docs2"));
  parser_ignore_free(ig);
}

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_pathological(void)
{
  cleanup_strbuf struct strbuf pat = STRBUF_INIT;
  cleanup_strbuf struct strbuf path = STRBUF_INIT;
  struct parser_ignore *ig;
  double t0 = now();

  /* A backtracking matcher takes exponential time on these. */
  for (int i = 0; i < 30; i++)
    strbuf_addstr(&pat, "*a");
  strbuf_addstr(&pat, "*b\n");
  for (int i = 0; i < 30; i++)
    strbuf_addstr(&pat, "**/a");
  strbuf_addstr(&pat, "/**/b\n");
  for (int i = 0; i < 3000; i++)
    strbuf_addch(&path, 'a');
  ig = ig_read(pat.buf);
  if (ig == NULL)
    return;
  CHECK(!parser_ignore_match(ig, path.buf));
  strbuf_reset(&path);
  for (int i = 0; i < 200; i++)
    strbuf_addstr(&path, "a/");
  strbuf_addstr(&path, "c");
  CHECK(!parser_ignore_match(ig, path.buf));
  CHECK(!parser_ignore_dir_needs_walk(ig, path.buf));
  parser_ignore_free(ig);
  CHECK(now() - t0 < 5.0);
}

static void test_hostile_bytes(void)
{
  static const char data[] = "a\0b\n\xff\xfe*\n\\\xff\n!\xc3\n[\xc3\xa9]\n";
  struct parser_error err;
  struct parser_ignore *ig;

  /* A NUL inside a pattern is an ordinary byte. */
  ig = parser_ignore_new("x", data, 4, &err);
  CHECK(ig != NULL);
  if (ig != NULL) {
    CHECK(!parser_ignore_match(ig, "a"));
    parser_ignore_free(ig);
  }
  /* An escaped invalid byte becomes U+FFFD, which Go's regexp refuses to
   * see escaped. */
  ig = parser_ignore_new("x", data, sizeof(data) - 1, &err);
  CHECK(ig == NULL);
  CHECK_INT(err.line, 3);

  ig = ig_read("\xff\xfe*\n[\xc3\xa9]\n");
  if (ig == NULL)
    return;
  /* Invalid bytes read as U+FFFD on both sides, as in Go. */
  CHECK(parser_ignore_match(ig, "\xfe\xff" "x"));
  CHECK(parser_ignore_match(ig, "\xc3\xa9"));
  CHECK(!parser_ignore_match(ig, "\xc3"));
  CHECK(!parser_ignore_dir_needs_walk(ig, "\xff"));
  parser_ignore_free(ig);

  ig = parser_ignore_new("x", NULL, 0, &err);
  CHECK(ig != NULL);
  if (ig != NULL) {
    CHECK_INT(parser_ignore_count(ig), 0);
    parser_ignore_free(ig);
  }
  parser_ignore_free(NULL);
}

static const struct unit_test tests[] = {
  { "comments", test_comments },
  { "blank_lines", test_blank_lines },
  { "bom", test_bom },
  { "crlf", test_crlf },
  { "exception_order", test_exception_order },
  { "parent_dirs", test_parent_dirs },
  { "cleaning", test_cleaning },
  { "double_star", test_double_star },
  { "question_mark", test_question_mark },
  { "char_classes", test_char_classes },
  { "escapes", test_escapes },
  { "regexp_quirks", test_regexp_quirks },
  { "bang_error", test_bang_error },
  { "bad_patterns", test_bad_patterns },
  { "dir_needs_walk", test_dir_needs_walk },
  { "pathological", test_pathological },
  { "hostile_bytes", test_hostile_bytes },
};
UNIT_MAIN(tests)
