/*
 * Image references, read with Docker's grammar and normalization (see
 * oci.h).  References come from Dockerfiles and the command line, so they
 * are hostile input: the scanner below makes single passes over bounded
 * spans and never backtracks, and ref gets its strings only once the whole
 * string has been accepted.
 */
#include "oci.h"

#define REF_DEFAULT_REGISTRY "docker.io"
#define REF_LEGACY_REGISTRY "index.docker.io"
#define REF_OFFICIAL_PREFIX "library/"
#define REF_DEFAULT_TAG "latest"
#define REF_REPOSITORY_MAX 255
#define REF_TAG_MAX 128
/* Quote at most about this many characters of the input, so a huge one
 * leaves the reason visible in the fixed-size error message. */
#define REF_QUOTE_MAX 200

/* ---- characters: ASCII only, whatever the locale ---- */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
static bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static bool is_alpha(char c) { return is_lower(c) || is_upper(c); }
static bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }
static bool is_lower_alnum(char c) { return is_lower(c) || is_digit(c); }
static bool is_lower_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f'); }

static bool is_hex(char c)
{
  return is_lower_hex(c) || (c >= 'A' && c <= 'F');
}

/* \w in Go's regexp syntax */
static bool is_word(char c) { return is_alnum(c) || c == '_'; }

static bool span_has_upper(const char *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (is_upper(p[i]))
      return true;
  return false;
}

static bool span_eq(const char *p, size_t n, const char *s)
{
  return strlen(s) == n && memcmp(p, s, n) == 0;
}

static bool span_eq_ci(const char *p, size_t n, const char *s)
{
  if (strlen(s) != n)
    return false;
  for (size_t i = 0; i < n; i++) {
    char a = is_upper(p[i]) ? (char)(p[i] - 'A' + 'a') : p[i];
    char b = is_upper(s[i]) ? (char)(s[i] - 'A' + 'a') : s[i];
    if (a != b)
      return false;
  }
  return true;
}

/* ---- the grammar's pieces, each checking one whole span ---- */

/* A DNS label as the grammar allows it: [a-zA-Z0-9] or
 * [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]. */
static bool host_label_valid(const char *p, size_t n)
{
  if (n == 0 || !is_alnum(p[0]) || !is_alnum(p[n - 1]))
    return false;
  for (size_t i = 1; i + 1 < n; i++)
    if (!is_alnum(p[i]) && p[i] != '-')
      return false;
  return true;
}

/* host [":" port], where host is labels joined by "." or a bracketed IPv6
 * address; Docker checks neither the IPv6 syntax nor the port's range. */
static bool registry_valid(const char *p, size_t n)
{
  size_t i = 0;

  if (n > 0 && p[0] == '[') {
    i = 1;
    while (i < n && (is_hex(p[i]) || p[i] == ':'))
      i++;
    if (i == 1 || i == n || p[i] != ']')
      return false;
    i++;
  } else {
    for (;;) {
      size_t start = i;
      while (i < n && (is_alnum(p[i]) || p[i] == '-'))
        i++;
      if (!host_label_valid(p + start, i - start))
        return false;
      if (i == n || p[i] != '.')
        break;
      i++;
    }
  }
  if (i == n)
    return true;
  if (p[i] != ':' || i + 1 == n)
    return false;
  for (i++; i < n; i++)
    if (!is_digit(p[i]))
      return false;
  return true;
}

/* [a-z0-9]+ runs joined by exactly one of ".", "_", "__" or "-"+, so a
 * separator can neither lead, trail nor follow another. */
static bool path_component_valid(const char *p, size_t n)
{
  size_t i = 0;

  while (i < n) {
    if (!is_lower_alnum(p[i]))
      return false;
    while (i < n && is_lower_alnum(p[i]))
      i++;
    if (i == n)
      return true;
    if (p[i] == '.') {
      i++;
    } else if (p[i] == '_') {
      i++;
      if (i < n && p[i] == '_')
        i++;
    } else if (p[i] == '-') {
      while (i < n && p[i] == '-')
        i++;
    } else {
      return false;
    }
  }
  return false; /* empty, or ending in a separator */
}

static bool repository_valid(const char *p, size_t n)
{
  size_t start = 0;

  for (size_t i = 0; i <= n; i++) {
    if (i == n || p[i] == '/') {
      if (!path_component_valid(p + start, i - start))
        return false;
      start = i + 1;
    }
  }
  return true;
}

static bool tag_valid(const char *p, size_t n)
{
  if (n == 0 || n > REF_TAG_MAX || !is_word(p[0]))
    return false;
  for (size_t i = 1; i < n; i++)
    if (!is_word(p[i]) && p[i] != '.' && p[i] != '-')
      return false;
  return true;
}

/* The algorithms go-digest registers, whose hex must have their length. */
static const struct {
  const char *name;
  size_t hex_len;
} ref_known_algorithms[] = {
  { "sha256", 64 },
  { "sha384", 96 },
  { "sha512", 128 },
};

static bool digest_algorithm_valid(const char *p, size_t n)
{
  size_t i = 0;

  for (;;) {
    if (i == n || !is_alpha(p[i]))
      return false;
    while (i < n && is_alnum(p[i]))
      i++;
    if (i == n)
      return true;
    if (p[i] != '+' && p[i] != '.' && p[i] != '_' && p[i] != '-')
      return false;
    i++;
  }
}

static bool digest_valid(const char *p, size_t n)
{
  const char *colon = memchr(p, ':', n);
  const char *hex;
  size_t alg_len, hex_len;

  if (colon == NULL)
    return false;
  alg_len = (size_t)(colon - p);
  hex = colon + 1;
  hex_len = n - alg_len - 1;
  if (!digest_algorithm_valid(p, alg_len))
    return false;

  for (size_t k = 0; k < CB_ARRAY_SIZE(ref_known_algorithms); k++) {
    const char *name = ref_known_algorithms[k].name;
    if (!span_eq_ci(p, alg_len, name))
      continue;
    /* "SHA256" is not sha256 to a registry; taking it as some unknown
     * algorithm would let a typo through. */
    if (!span_eq(p, alg_len, name) || hex_len != ref_known_algorithms[k].hex_len)
      return false;
    for (size_t i = 0; i < hex_len; i++)
      if (!is_lower_hex(hex[i]))
        return false;
    return true;
  }

  if (hex_len < 32)
    return false;
  for (size_t i = 0; i < hex_len; i++)
    if (!is_hex(hex[i]))
      return false;
  return true;
}

/* A bare image ID, which Docker will not take as a name. */
static bool is_identifier(const char *s)
{
  size_t i;
  for (i = 0; i < 64; i++)
    if (!is_lower_hex(s[i]))
      return false;
  return s[i] == '\0';
}

/* splitDockerDomain's rule: a first component that could not be a path
 * component (a "." or ":" in it, or an uppercase letter) or is "localhost"
 * names a registry. */
static bool names_registry(const char *p, size_t n)
{
  return span_eq(p, n, "localhost") || memchr(p, '.', n) != NULL ||
         memchr(p, ':', n) != NULL || span_has_upper(p, n);
}

/* ---- errors ---- */

/* Quote s for a one-line message: escapes for quotes, backslashes, control
 * and non-ASCII bytes, and a cut once REF_QUOTE_MAX characters are out. */
static void quote_input(struct strbuf *sb, const char *s)
{
  size_t i;

  for (i = 0; s[i] != '\0' && sb->len < REF_QUOTE_MAX; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      strbuf_addf(sb, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f)
      strbuf_addf(sb, "\\x%02x", c);
    else
      strbuf_addch(sb, c);
  }
  if (s[i] != '\0')
    strbuf_addstr(sb, "...");
}

static int reference_error(struct cb_error *err, const char *s,
                           const char *reason)
{
  cleanup_strbuf struct strbuf quoted = STRBUF_INIT;

  quote_input(&quoted, s);
  return cb_error_set(err, "invalid reference format \"%s\": %s", quoted.buf,
                      reason);
}

/* ---- the API ---- */

int oci_reference_parse(const char *s, struct oci_reference *ref,
                        struct cb_error *err)
{
  const char *registry = NULL, *rest = s, *slash, *at, *colon, *name_end;
  size_t registry_len = 0, path_len, repo_len;
  const char *tag = NULL, *digest = NULL;
  size_t tag_len = 0, digest_len = 0;
  bool official;

  *ref = (struct oci_reference)OCI_REFERENCE_INIT;
  if (*s == '\0')
    return reference_error(err, s, "empty reference");
  if (is_identifier(s))
    return reference_error(err, s,
                           "cannot specify 64-byte hexadecimal strings");

  slash = strchr(s, '/');
  if (slash != NULL && names_registry(s, (size_t)(slash - s))) {
    registry = s;
    registry_len = (size_t)(slash - s);
    rest = slash + 1;
  }

  /*
   * Neither the repository nor the tag may hold "@" or ":", so the first
   * "@" starts the digest and the first ":" before it starts the tag;
   * anything stray then fails the check of the part it landed in.
   */
  at = strchr(rest, '@');
  name_end = at != NULL ? at : rest + strlen(rest);
  colon = memchr(rest, ':', (size_t)(name_end - rest));
  path_len = (size_t)((colon != NULL ? colon : name_end) - rest);
  if (colon != NULL) {
    tag = colon + 1;
    tag_len = (size_t)(name_end - tag);
  }
  if (at != NULL) {
    digest = at + 1;
    digest_len = strlen(digest);
  }

  /* Docker checks case first, so "Foo" gets the helpful message. */
  if (span_has_upper(rest, path_len))
    return reference_error(err, s, "repository name must be lowercase");
  if (registry != NULL && !registry_valid(registry, registry_len))
    return reference_error(err, s, "bad registry host");
  if (!repository_valid(rest, path_len))
    return reference_error(err, s, "bad repository name");
  if (tag != NULL && !tag_valid(tag, tag_len))
    return reference_error(err, s, "bad tag");
  if (digest != NULL && !digest_valid(digest, digest_len))
    return reference_error(err, s, "bad digest");

  if (registry != NULL && span_eq(registry, registry_len, REF_LEGACY_REGISTRY))
    registry = NULL;
  official = registry == NULL || span_eq(registry, registry_len,
                                         REF_DEFAULT_REGISTRY);
  official = official && memchr(rest, '/', path_len) == NULL;

  /* Docker limits the normalized repository, "library/" included, but not
   * the registry (distribution/reference since v0.6.0). */
  repo_len = path_len + (official ? strlen(REF_OFFICIAL_PREFIX) : 0);
  if (repo_len > REF_REPOSITORY_MAX)
    return reference_error(err, s,
                           "repository name must not be more than 255 "
                           "characters");

  ref->registry = registry != NULL ? xstrndup(registry, registry_len)
                                   : xstrdup(REF_DEFAULT_REGISTRY);
  ref->repository = xasprintf("%s%.*s", official ? REF_OFFICIAL_PREFIX : "",
                              (int)path_len, rest);
  if (tag != NULL)
    ref->tag = xstrndup(tag, tag_len);
  else if (digest == NULL)
    ref->tag = xstrdup(REF_DEFAULT_TAG);
  if (digest != NULL)
    ref->digest = xstrndup(digest, digest_len);
  return 0;
}

void oci_reference_release(struct oci_reference *ref)
{
  free(ref->registry);
  free(ref->repository);
  free(ref->tag);
  free(ref->digest);
  *ref = (struct oci_reference)OCI_REFERENCE_INIT;
}

static void add_tag_and_digest(struct strbuf *sb, const struct oci_reference *ref)
{
  if (ref->tag != NULL)
    strbuf_addf(sb, ":%s", ref->tag);
  if (ref->digest != NULL)
    strbuf_addf(sb, "@%s", ref->digest);
}

char *oci_reference_string(const struct oci_reference *ref)
{
  struct strbuf sb = STRBUF_INIT;

  if (ref->registry != NULL)
    strbuf_addf(&sb, "%s/", ref->registry);
  strbuf_addstr(&sb, ref->repository);
  add_tag_and_digest(&sb, ref);
  return strbuf_detach(&sb, NULL);
}

char *oci_reference_familiar(const struct oci_reference *ref)
{
  struct strbuf sb = STRBUF_INIT;
  const char *repo = ref->repository;
  const char *slash = strchr(repo, '/');

  /*
   * Docker shows "docker.io/foo.com/app" as "foo.com/app", which then reads
   * as registry foo.com; keep the registry whenever dropping it would change
   * the meaning, so that the familiar form always parses back to ref.
   */
  if ((ref->registry != NULL &&
       strcmp(ref->registry, REF_DEFAULT_REGISTRY) != 0) ||
      (slash != NULL && names_registry(repo, (size_t)(slash - repo)))) {
    if (ref->registry != NULL)
      strbuf_addf(&sb, "%s/", ref->registry);
  } else if (cb_starts_with(repo, REF_OFFICIAL_PREFIX)) {
    const char *short_name = repo + strlen(REF_OFFICIAL_PREFIX);
    /* "library/a/b" stays whole: dropping the prefix would change it. */
    if (strchr(short_name, '/') == NULL)
      repo = short_name;
  }
  strbuf_addstr(&sb, repo);
  add_tag_and_digest(&sb, ref);
  return strbuf_detach(&sb, NULL);
}

bool oci_reference_valid(const char *s)
{
  struct oci_reference ref;
  struct cb_error err;

  if (oci_reference_parse(s, &ref, &err) < 0)
    return false;
  oci_reference_release(&ref);
  return true;
}
