#include "unit.h"
#include "../../oci/oci.h"

#define HEX16 "0123456789abcdef"
#define HEX64 HEX16 HEX16 HEX16 HEX16
#define SHA256 "sha256:" HEX64

/* Parse in and compare every field; NULL where none is expected. */
static void expect_ref(int line, const char *in, const char *registry,
                       const char *repository, const char *tag,
                       const char *digest)
{
  struct oci_reference ref;
  struct cb_error err;
  const char *want[] = { registry, repository, tag, digest };
  const char *field[] = { "registry", "repository", "tag", "digest" };

  if (oci_reference_parse(in, &ref, &err) < 0) {
    unit_fail(__FILE__, line, "\"%s\" refused: %s", in, err.msg);
    return;
  }
  const char *got[] = { ref.registry, ref.repository, ref.tag, ref.digest };
  for (size_t i = 0; i < CB_ARRAY_SIZE(want); i++) {
    bool same = got[i] == NULL || want[i] == NULL ? got[i] == want[i]
                                                  : strcmp(got[i], want[i]) == 0;
    if (!same)
      unit_fail(__FILE__, line, "\"%s\": %s is \"%s\", expected \"%s\"", in,
                field[i], got[i] ? got[i] : "(null)",
                want[i] ? want[i] : "(null)");
  }
  oci_reference_release(&ref);
}
#define CHECK_REF(in, registry, repository, tag, digest)                       \
  expect_ref(__LINE__, in, registry, repository, tag, digest)

/* Parse in, expecting failure with a message that is exactly msg. */
static void expect_error(int line, const char *in, const char *msg)
{
  struct oci_reference ref;
  struct cb_error err;

  err.msg[0] = '\0';
  if (oci_reference_parse(in, &ref, &err) == 0) {
    unit_fail(__FILE__, line, "\"%s\" accepted", in);
    oci_reference_release(&ref);
    return;
  }
  if (ref.registry || ref.repository || ref.tag || ref.digest)
    unit_fail(__FILE__, line, "\"%s\" left fields set after failing", in);
  if (strcmp(err.msg, msg) != 0)
    unit_fail(__FILE__, line, "\"%s\": error \"%s\", expected \"%s\"", in,
              err.msg, msg);
  if (oci_reference_valid(in))
    unit_fail(__FILE__, line, "oci_reference_valid(\"%s\") is true", in);
}
#define CHECK_ERR(in, msg) expect_error(__LINE__, in, msg)

/* The reason only; for inputs too long to spell out in a message. */
#define CHECK_REFUSED(in, reason)                                              \
  do {                                                                         \
    struct oci_reference r_;                                                   \
    struct cb_error e_;                                                        \
    if (oci_reference_parse((in), &r_, &e_) == 0) {                            \
      unit_fail(__FILE__, __LINE__, "accepted");                               \
      oci_reference_release(&r_);                                              \
    } else {                                                                   \
      CHECK_CONTAINS(e_.msg, reason);                                          \
    }                                                                          \
  } while (0)

/* Parse in and compare its full and familiar forms. */
static void expect_forms(int line, const char *in, const char *full,
                         const char *familiar)
{
  struct oci_reference ref;
  struct cb_error err;
  cleanup_free char *s = NULL;
  cleanup_free char *f = NULL;

  if (oci_reference_parse(in, &ref, &err) < 0) {
    unit_fail(__FILE__, line, "\"%s\" refused: %s", in, err.msg);
    return;
  }
  s = oci_reference_string(&ref);
  f = oci_reference_familiar(&ref);
  if (strcmp(s, full) != 0)
    unit_fail(__FILE__, line, "\"%s\": string \"%s\", expected \"%s\"", in, s,
              full);
  if (strcmp(f, familiar) != 0)
    unit_fail(__FILE__, line, "\"%s\": familiar \"%s\", expected \"%s\"", in,
              f, familiar);
  oci_reference_release(&ref);
}
#define CHECK_FORMS(in, full, familiar)                                        \
  expect_forms(__LINE__, in, full, familiar)

/* A string of n copies of c, followed by suffix; the caller frees it. */
static char *repeat(char c, size_t n, const char *suffix)
{
  struct strbuf sb = STRBUF_INIT;
  for (size_t i = 0; i < n; i++)
    strbuf_addch(&sb, c);
  strbuf_addstr(&sb, suffix);
  return strbuf_detach(&sb, NULL);
}

static void test_docker_hub(void)
{
  CHECK_REF("alpine", "docker.io", "library/alpine", "latest", NULL);
  CHECK_REF("user/app", "docker.io", "user/app", "latest", NULL);
  CHECK_REF("library/alpine:3.19", "docker.io", "library/alpine", "3.19", NULL);
  CHECK_REF("docker.io/alpine", "docker.io", "library/alpine", "latest", NULL);
  CHECK_REF("docker.io/user/app:v1", "docker.io", "user/app", "v1", NULL);
  CHECK_REF("index.docker.io/alpine", "docker.io", "library/alpine", "latest",
            NULL);
  CHECK_REF("index.docker.io/library/alpine:edge", "docker.io",
            "library/alpine", "edge", NULL);
  /* Deeper official paths are kept as written. */
  CHECK_REF("library/a/b", "docker.io", "library/a/b", "latest", NULL);
  /* Without a slash nothing is a registry, not even a host name. */
  CHECK_REF("example.com", "docker.io", "library/example.com", "latest", NULL);
}

static void test_localhost(void)
{
  CHECK_REF("localhost/app", "localhost", "app", "latest", NULL);
  CHECK_REF("localhost:5000/app:v1", "localhost:5000", "app", "v1", NULL);
  /* A lone "localhost:5000" is the image localhost, tag 5000. */
  CHECK_REF("localhost:5000", "docker.io", "library/localhost", "5000", NULL);
  CHECK_REF("localhost", "docker.io", "library/localhost", "latest", NULL);
  /* Only exactly "localhost" is special. */
  CHECK_REF("localhostx/app", "docker.io", "localhostx/app", "latest", NULL);
}

static void test_other_registries(void)
{
  CHECK_REF("127.0.0.1:5000/a/b/c:tag", "127.0.0.1:5000", "a/b/c", "tag", NULL);
  CHECK_REF("[::1]:5000/app", "[::1]:5000", "app", "latest", NULL);
  CHECK_REF("[2001:DB8::1]/app", "[2001:DB8::1]", "app", "latest", NULL);
  CHECK_REF("ghcr.io/org/team/app:1.0", "ghcr.io", "org/team/app", "1.0", NULL);
  CHECK_REF("my-registry.example.com:443/app", "my-registry.example.com:443",
            "app", "latest", NULL);
  CHECK_REF("registry:5000/app", "registry:5000", "app", "latest", NULL);
  /* No library/ outside docker.io. */
  CHECK_REF("quay.io/app", "quay.io", "app", "latest", NULL);
  /* An uppercase first component cannot be a path, so Docker takes it for
   * a registry. */
  CHECK_REF("MyRegistry/app", "MyRegistry", "app", "latest", NULL);
  CHECK_REF("Docker.IO/app", "Docker.IO", "app", "latest", NULL);
}

static void test_digests(void)
{
  CHECK_REF("registry.example.com/org/app@" SHA256, "registry.example.com",
            "org/app", NULL, SHA256);
  CHECK_REF("repo:tag@" SHA256, "docker.io", "library/repo", "tag", SHA256);
  CHECK_REF("alpine@" SHA256, "docker.io", "library/alpine", NULL, SHA256);
  CHECK_REF("localhost:5000/app@" SHA256, "localhost:5000", "app", NULL,
            SHA256);
  CHECK_REF("a@sha512:" HEX64 HEX64, "docker.io", "library/a", NULL,
            "sha512:" HEX64 HEX64);
  CHECK_REF("a@sha384:" HEX64 HEX16 HEX16, "docker.io", "library/a", NULL,
            "sha384:" HEX64 HEX16 HEX16);
  /* Algorithms go-digest does not know need only 32 hex digits or more. */
  CHECK_REF("a@blake3:" HEX16 HEX16, "docker.io", "library/a", NULL,
            "blake3:" HEX16 HEX16);
  CHECK_REF("a@sha256+b64u.v2-x_y:ABCDEF" HEX16 HEX16, "docker.io", "library/a",
            NULL, "sha256+b64u.v2-x_y:ABCDEF" HEX16 HEX16);
  /* "sha256:<hex>" alone is the image sha256 with a 64-character tag. */
  CHECK_REF(SHA256, "docker.io", "library/sha256", HEX64, NULL);
}

static void test_path_separators(void)
{
  CHECK_REF("a-b", "docker.io", "library/a-b", "latest", NULL);
  CHECK_REF("a--b", "docker.io", "library/a--b", "latest", NULL);
  CHECK_REF("a----b/c", "docker.io", "a----b/c", "latest", NULL);
  CHECK_REF("a_b", "docker.io", "library/a_b", "latest", NULL);
  CHECK_REF("a__b", "docker.io", "library/a__b", "latest", NULL);
  CHECK_REF("a.b", "docker.io", "library/a.b", "latest", NULL);
  CHECK_REF("x/0.1-a_b__c--d/e", "docker.io", "x/0.1-a_b__c--d/e", "latest",
            NULL);
  CHECK_REF("a:_tag.With-Caps", "docker.io", "library/a", "_tag.With-Caps",
            NULL);

  CHECK_ERR("a___b", "invalid reference format \"a___b\": bad repository name");
  CHECK_ERR("a..b", "invalid reference format \"a..b\": bad repository name");
  CHECK_ERR("a._b", "invalid reference format \"a._b\": bad repository name");
  CHECK_ERR("a-.b", "invalid reference format \"a-.b\": bad repository name");
  CHECK_ERR("-a", "invalid reference format \"-a\": bad repository name");
  CHECK_ERR("a-", "invalid reference format \"a-\": bad repository name");
  CHECK_ERR("_a", "invalid reference format \"_a\": bad repository name");
  CHECK_ERR("a_", "invalid reference format \"a_\": bad repository name");
  CHECK_ERR(".a/b", "invalid reference format \".a/b\": bad registry host");
  CHECK_ERR("b/a.", "invalid reference format \"b/a.\": bad repository name");
  CHECK_ERR("a b", "invalid reference format \"a b\": bad repository name");
}

static void test_forms(void)
{
  CHECK_FORMS("alpine", "docker.io/library/alpine:latest", "alpine:latest");
  CHECK_FORMS("user/app:v1", "docker.io/user/app:v1", "user/app:v1");
  CHECK_FORMS("index.docker.io/library/alpine",
              "docker.io/library/alpine:latest", "alpine:latest");
  CHECK_FORMS("localhost:5000/app:v1", "localhost:5000/app:v1",
              "localhost:5000/app:v1");
  CHECK_FORMS("alpine@" SHA256, "docker.io/library/alpine@" SHA256,
              "alpine@" SHA256);
  CHECK_FORMS("repo:tag@" SHA256, "docker.io/library/repo:tag@" SHA256,
              "repo:tag@" SHA256);
  CHECK_FORMS("[::1]:5000/app", "[::1]:5000/app:latest",
              "[::1]:5000/app:latest");
  CHECK_FORMS("library/a/b", "docker.io/library/a/b:latest",
              "library/a/b:latest");
  /* Docker would show "foo.com/app", which names another registry. */
  CHECK_FORMS("docker.io/foo.com/app", "docker.io/foo.com/app:latest",
              "docker.io/foo.com/app:latest");
  CHECK_FORMS("docker.io/localhost/app", "docker.io/localhost/app:latest",
              "docker.io/localhost/app:latest");
}

static void test_lowercase(void)
{
  CHECK_ERR("Foo:bar",
            "invalid reference format \"Foo:bar\": repository name must be "
            "lowercase");
  CHECK_ERR("user/App",
            "invalid reference format \"user/App\": repository name must be "
            "lowercase");
  CHECK_ERR("localhost:5000/Foo",
            "invalid reference format \"localhost:5000/Foo\": repository name "
            "must be lowercase");
  CHECK_ERR("MyRegistry/App",
            "invalid reference format \"MyRegistry/App\": repository name "
            "must be lowercase");
  /* Case matters in the path only. */
  CHECK(oci_reference_valid("EXAMPLE.com/app:V1"));
}

static void test_format_errors(void)
{
  CHECK_ERR("", "invalid reference format \"\": empty reference");
  CHECK_ERR("alpine:", "invalid reference format \"alpine:\": bad tag");
  CHECK_ERR("a:b:c", "invalid reference format \"a:b:c\": bad tag");
  CHECK_ERR("a:b/c", "invalid reference format \"a:b/c\": bad registry host");
  CHECK_ERR("a:-x", "invalid reference format \"a:-x\": bad tag");
  CHECK_ERR("a:.x", "invalid reference format \"a:.x\": bad tag");
  CHECK_ERR("a:x!", "invalid reference format \"a:x!\": bad tag");
  CHECK_ERR("a:t@", "invalid reference format \"a:t@\": bad digest");
  CHECK_ERR(":tag", "invalid reference format \":tag\": bad repository name");
  CHECK_ERR("a//b", "invalid reference format \"a//b\": bad repository name");
  CHECK_ERR("/a", "invalid reference format \"/a\": bad repository name");
  CHECK_ERR("a/", "invalid reference format \"a/\": bad repository name");
  CHECK_ERR("example.com/",
            "invalid reference format \"example.com/\": bad repository name");
  CHECK_ERR("example.com//a",
            "invalid reference format \"example.com//a\": bad repository name");
  CHECK_ERR("foo:bar/baz",
            "invalid reference format \"foo:bar/baz\": bad registry host");
  CHECK_ERR("-reg.io/a", "invalid reference format \"-reg.io/a\": bad registry host");
  CHECK_ERR("reg-.io/a", "invalid reference format \"reg-.io/a\": bad registry host");
  CHECK_ERR("reg..io/a", "invalid reference format \"reg..io/a\": bad registry host");
  CHECK_ERR("reg.io:/a", "invalid reference format \"reg.io:/a\": bad registry host");
  CHECK_ERR("reg.io:5x/a", "invalid reference format \"reg.io:5x/a\": bad registry host");
  CHECK_ERR("reg_1.io/a", "invalid reference format \"reg_1.io/a\": bad registry host");
  CHECK_ERR("[::1/a", "invalid reference format \"[::1/a\": bad registry host");
  CHECK_ERR("[]:5000/a", "invalid reference format \"[]:5000/a\": bad registry host");
  CHECK_ERR("[::1]x/a", "invalid reference format \"[::1]x/a\": bad registry host");
  CHECK_ERR("[fe80::1%eth0]/a",
            "invalid reference format \"[fe80::1%eth0]/a\": bad registry host");
}

static void test_tag_length(void)
{
  cleanup_free char *tag128 = repeat('t', 128, "");
  cleanup_free char *ok = xasprintf("a:%s", tag128);
  cleanup_free char *too_long = xasprintf("a:%sx", tag128);
  cleanup_free char *tag65 = repeat('v', 65, "");
  cleanup_free char *ok65 = xasprintf("a:%s", tag65);

  CHECK_REF(ok, "docker.io", "library/a", tag128, NULL);
  CHECK_REF(ok65, "docker.io", "library/a", tag65, NULL);
  CHECK_REFUSED(too_long, ": bad tag");
  CHECK(!oci_reference_valid(too_long));
}

static void test_digest_errors(void)
{
  CHECK_ERR("x@sha256:12", "invalid reference format \"x@sha256:12\": bad digest");
  CHECK_ERR("x@", "invalid reference format \"x@\": bad digest");
  CHECK_ERR("x@sha256:", "invalid reference format \"x@sha256:\": bad digest");
  CHECK_ERR("x@" HEX64, "invalid reference format \"x@" HEX64 "\": bad digest");
  CHECK(!oci_reference_valid("x@" SHA256 "0"));           /* 65 digits */
  CHECK(!oci_reference_valid("x@sha256:" HEX16 HEX16 HEX16 "0123456789abcde"));
  CHECK(!oci_reference_valid("x@sha256:" HEX16 HEX16 HEX16 "0123456789ABCDEF"));
  CHECK(!oci_reference_valid("x@sha512:" HEX64));         /* too short */
  CHECK(!oci_reference_valid("x@SHA256:" HEX64));         /* not sha256 */
  CHECK(!oci_reference_valid("x@" SHA256 "@" SHA256));
  CHECK(!oci_reference_valid("x@sha256:" HEX64 ":" HEX16));
  CHECK(!oci_reference_valid("x@blake3:" HEX16 "0123456789abcde")); /* 31 */
  CHECK(!oci_reference_valid("x@blake3:" HEX16 HEX16 "g"));
  CHECK(!oci_reference_valid("x@1sha:" HEX64));
  CHECK(!oci_reference_valid("x@sha-:" HEX64));
  CHECK(!oci_reference_valid("x@sha--256:" HEX64));
  CHECK(!oci_reference_valid("x@:" HEX64));
  CHECK(!oci_reference_valid("x:@" SHA256));
}

static void test_identifier(void)
{
  CHECK_ERR(HEX64, "invalid reference format \"" HEX64
                   "\": cannot specify 64-byte hexadecimal strings");
  /* Only the bare ID is refused: with anything around it, it is a name. */
  CHECK_REF(HEX64 ":v1", "docker.io", "library/" HEX64, "v1", NULL);
  CHECK_REF("u/" HEX64, "docker.io", "u/" HEX64, "latest", NULL);
  CHECK(oci_reference_valid(HEX16 HEX16 HEX16 "0123456789abcde"));
  CHECK(oci_reference_valid(HEX64 "0"));
}

static void test_name_length(void)
{
  /* 255 characters for the repository, library/ included. */
  cleanup_free char *path255 = repeat('a', 255, "");
  cleanup_free char *at_limit = xasprintf("u/%s", path255 + 2);
  cleanup_free char *over = xasprintf("u/%s", path255 + 1);
  cleanup_free char *official_ok = repeat('b', 255 - 8, "");
  cleanup_free char *official_over = repeat('b', 255 - 7, "");
  /* The registry does not count. */
  cleanup_free char *long_registry =
      xasprintf("%s.example.com:5000/%s", path255 + 200, path255);
  cleanup_free char *huge = repeat('a', 1 << 20, ":tag");

  CHECK(oci_reference_valid(at_limit));
  CHECK_REFUSED(over, "repository name must not be more than 255 characters");
  CHECK(oci_reference_valid(official_ok));
  CHECK_REFUSED(official_over, "must not be more than 255 characters");
  CHECK(oci_reference_valid(long_registry));
  CHECK_REFUSED(huge, "must not be more than 255 characters");
  /* The message quotes the start of a huge input, then says why. */
  {
    struct oci_reference ref;
    struct cb_error err;
    CHECK_INT(oci_reference_parse(huge, &ref, &err), -1);
    CHECK(strlen(err.msg) < 400);
    CHECK_CONTAINS(err.msg, "aaaa...\": repository name must not be");
  }
}

static void test_hostile_bytes(void)
{
  CHECK_ERR("a\nb", "invalid reference format \"a\\x0ab\": bad repository name");
  CHECK_ERR("a\"b\\", "invalid reference format \"a\\\"b\\\\\": bad repository name");
  CHECK_ERR("caf\xc3\xa9", "invalid reference format \"caf\\xc3\\xa9\": bad "
                           "repository name");
  CHECK_ERR("a:t\x7f", "invalid reference format \"a:t\\x7f\": bad tag");
  CHECK_ERR("@", "invalid reference format \"@\": bad repository name");
  CHECK_ERR(":", "invalid reference format \":\": bad repository name");
  CHECK_ERR("/", "invalid reference format \"/\": bad repository name");

  /* Escapes count towards the quoting limit: the line stays short. */
  {
    cleanup_free char *binary = repeat('\xd0', 1000, "");
    struct oci_reference ref;
    struct cb_error err;
    CHECK_INT(oci_reference_parse(binary, &ref, &err), -1);
    CHECK(strlen(err.msg) < 300);
    CHECK(cb_ends_with(err.msg, "\\xd0...\": bad repository name"));
  }

  /* Every single byte: only [a-z0-9] are names. */
  for (int c = 1; c < 256; c++) {
    char s[2] = { (char)c, '\0' };
    bool want = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (oci_reference_valid(s) != want)
      unit_fail(__FILE__, __LINE__, "byte 0x%02x: valid is %d", c, !want);
  }
}

/*
 * Whatever is accepted, its full and familiar forms must parse back to the
 * same fields.  Inputs are random strings over the grammar's alphabet, so
 * that many of them get far into the scanner.
 */
static void test_round_trip(void)
{
  static const char alphabet[] = "ab09AZ.-_:/@[]+ ";
  static const char *const pieces[] = {
    "docker.io/", "index.docker.io/", "localhost/", "localhost:5000/",
    "[::1]:5000/", "library/", "a/", "x.y/", ":v1", "@" SHA256, "-", "__",
  };
  uint32_t state = 12345;
  int accepted = 0;

  for (int round = 0; round < 20000; round++) {
    struct strbuf in = STRBUF_INIT;
    struct oci_reference ref, again;
    struct cb_error err;
    int n;

    state = state * 1103515245u + 12345u;
    n = (int)((state >> 16) % 8);
    for (int i = 0; i < n; i++) {
      state = state * 1103515245u + 12345u;
      if ((state >> 16) % 3 == 0)
        strbuf_addstr(&in, pieces[(state >> 20) % CB_ARRAY_SIZE(pieces)]);
      else
        strbuf_addch(&in, alphabet[(state >> 20) % (sizeof(alphabet) - 1)]);
    }

    if (oci_reference_parse(in.buf, &ref, &err) == 0) {
      char *forms[2] = { oci_reference_string(&ref),
                         oci_reference_familiar(&ref) };
      accepted++;
      for (int k = 0; k < 2; k++) {
        if (oci_reference_parse(forms[k], &again, &err) < 0) {
          unit_fail(__FILE__, __LINE__, "\"%s\" -> \"%s\" refused: %s",
                    in.buf, forms[k], err.msg);
          continue;
        }
        cleanup_free char *s1 = oci_reference_string(&ref);
        cleanup_free char *s2 = oci_reference_string(&again);
        if (strcmp(s1, s2) != 0)
          unit_fail(__FILE__, __LINE__, "\"%s\" -> \"%s\" -> \"%s\"", in.buf,
                    forms[k], s2);
        oci_reference_release(&again);
      }
      free(forms[0]);
      free(forms[1]);
      oci_reference_release(&ref);
    } else {
      CHECK(ref.registry == NULL && ref.repository == NULL);
      CHECK(cb_starts_with(err.msg, "invalid reference format \""));
    }
    strbuf_release(&in);
  }
  /* The generator must reach the accepting paths to test anything. */
  CHECK(accepted > 500);
}

static void test_release(void)
{
  struct oci_reference ref = OCI_REFERENCE_INIT;
  struct cb_error err;

  oci_reference_release(&ref);
  CHECK_INT(oci_reference_parse("a:b@" SHA256, &ref, &err), 0);
  oci_reference_release(&ref);
  CHECK(ref.registry == NULL && ref.repository == NULL && ref.tag == NULL &&
        ref.digest == NULL);
  oci_reference_release(&ref);
  CHECK(oci_reference_valid("alpine"));
}

static const struct unit_test tests[] = {
  { "docker_hub", test_docker_hub },
  { "localhost", test_localhost },
  { "other_registries", test_other_registries },
  { "digests", test_digests },
  { "path_separators", test_path_separators },
  { "forms", test_forms },
  { "lowercase", test_lowercase },
  { "format_errors", test_format_errors },
  { "tag_length", test_tag_length },
  { "digest_errors", test_digest_errors },
  { "identifier", test_identifier },
  { "name_length", test_name_length },
  { "hostile_bytes", test_hostile_bytes },
  { "round_trip", test_round_trip },
  { "release", test_release },
};
UNIT_MAIN(tests)
