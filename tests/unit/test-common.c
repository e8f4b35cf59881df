#include "unit.h"

static void test_strbuf(void)
{
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  CHECK_STR(sb.buf, "");
  strbuf_addstr(&sb, "abc");
  strbuf_addch(&sb, 'd');
  strbuf_addf(&sb, "-%d-%s", 42, "x");
  CHECK_STR(sb.buf, "abcd-42-x");
  CHECK_INT(sb.len, 9);
  strbuf_setlen(&sb, 2);
  CHECK_STR(sb.buf, "ab");
  for (int i = 0; i < 1000; i++)
    strbuf_addf(&sb, "%04d", i);
  CHECK_INT(sb.len, 4002);
  CHECK(strncmp(sb.buf + 3998, "0999", 4) == 0);
  strbuf_reset(&sb);
  strbuf_add_utf8(&sb, 0xe9);
  strbuf_add_utf8(&sb, 0x20ac);
  strbuf_add_utf8(&sb, 0x1f600);
  CHECK_STR(sb.buf, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
}

static void test_strbuf_detach(void)
{
  struct strbuf sb = STRBUF_INIT;
  size_t len = 99;
  char *s = strbuf_detach(&sb, &len);
  CHECK_STR(s, "");
  CHECK_INT(len, 0);
  free(s);
  CHECK_STR(sb.buf, "");
}

static void test_strvec(void)
{
  cleanup_strvec struct strvec sv = STRVEC_INIT;
  strvec_push(&sv, "a");
  strvec_pushf(&sv, "%s=%d", "b", 2);
  CHECK_INT(sv.n, 2);
  CHECK_STR(sv.v[1], "b=2");
  CHECK(sv.v[2] == NULL);
  CHECK_INT(strvec_find(&sv, "b=2"), 1);
  CHECK_INT(strvec_find(&sv, "c"), -1);
}

static void test_strvec_sorted(void)
{
  cleanup_strvec struct strvec sv = STRVEC_INIT;
  CHECK_INT(strvec_bsearch(&sv, "a"), -1);
  strvec_push(&sv, "b/c");
  strvec_push(&sv, "b");
  strvec_push(&sv, "a");
  strvec_push(&sv, "b.c");
  strvec_sort(&sv);
  CHECK_STR(sv.v[0], "a");
  CHECK_STR(sv.v[1], "b");
  CHECK_STR(sv.v[2], "b.c");
  CHECK_STR(sv.v[3], "b/c");
  CHECK(sv.v[4] == NULL);
  CHECK_INT(strvec_bsearch(&sv, "b.c"), 2);
  CHECK_INT(strvec_bsearch(&sv, "b/c"), 3);
  CHECK_INT(strvec_bsearch(&sv, "bb"), -1);
  CHECK_INT(strvec_bsearch(&sv, NULL), -1);
}

static void test_error_wrap(void)
{
  struct cb_error err;
  CHECK_INT(cb_error_errno(&err, 2, "open \"%s\"", "etc/passwd"), -1);
  cb_error_wrap(&err, "layer %s", "sha256:ab");
  CHECK_STR(err.msg, "layer sha256:ab: open \"etc/passwd\": No such file or directory");
  CHECK_INT(err.code, 2);
}

static void test_strings(void)
{
  CHECK(cb_starts_with("--tag", "--"));
  CHECK(!cb_starts_with("-", "--"));
  CHECK(cb_ends_with("a/", "/"));
  CHECK(cb_streq_ci("FrOm", "from"));
  CHECK(!cb_streq_ci("from", "fro"));
}

static const struct unit_test tests[] = {
  { "strbuf", test_strbuf },
  { "strbuf_detach", test_strbuf_detach },
  { "strvec", test_strvec },
  { "strvec_sorted", test_strvec_sorted },
  { "error_wrap", test_error_wrap },
  { "strings", test_strings },
};
UNIT_MAIN(tests)
