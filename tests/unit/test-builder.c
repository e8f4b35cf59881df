/* Unit tests of the builder's pure logic: path cleaning and COPY's
 * destination rules. */
#include "unit.h"

#include "../../builder/builder-internal.h"

static void check_clean(const char *in, const char *want, int line)
{
  char *got = builder_path_clean(in);
  if (strcmp(got, want) != 0)
    unit_fail(__FILE__, line, "clean(\"%s\") == \"%s\", expected \"%s\"", in, got, want);
  free(got);
}
#define CLEAN(in, want) check_clean(in, want, __LINE__)

static void check_dest(const char *wd, const char *dest, const char *want, int line)
{
  char *got = builder_dest_path(wd, dest);
  if (strcmp(got, want) != 0)
    unit_fail(__FILE__, line, "dest(\"%s\", \"%s\") == \"%s\", expected \"%s\"", wd ? wd : "(null)",
              dest, got, want);
  free(got);
}
#define DEST(wd, dest, want) check_dest(wd, dest, want, __LINE__)

static void test_path_clean(void)
{
  CLEAN("", ".");
  CLEAN("/", ".");
  CLEAN(".", ".");
  CLEAN("a/b", "a/b");
  CLEAN("/a//b/", "a/b");
  CLEAN("./a/./b/.", "a/b");
  CLEAN("a/../b", "b");
  /* ".." never climbs above the root: a context path cannot leave it */
  CLEAN("../../etc/passwd", "etc/passwd");
  CLEAN("/a/../../..", ".");
  CLEAN("a/b/../../../c", "c");
  CLEAN("...", "...");
  CLEAN("a/..b/c", "a/..b/c");
}

static void test_dest_path(void)
{
  DEST(NULL, "/app", "/app");
  DEST(NULL, "/app/", "/app/");
  DEST("/srv", "app", "/srv/app");
  DEST("/srv", "app/", "/srv/app/");
  DEST("/srv", ".", "/srv/");
  DEST("/srv", "./", "/srv/");
  DEST("/srv", "sub/.", "/srv/sub/");
  DEST("/srv", "../x", "/x");
  DEST(NULL, "x", "/x");
  DEST("/", "/", "/");
  DEST("/srv", "/../../etc", "/etc");
}

static const struct unit_test tests[] = {
  { "path_clean", test_path_clean },
  { "dest_path", test_dest_path },
};
UNIT_MAIN(tests)
