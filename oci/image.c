/*
 * The image JSON: configs, manifests and indexes (see oci.h).
 *
 * Writing: one canonical encoding, jansson's JSON_COMPACT | JSON_SORT_KEYS,
 * with every empty optional member left out, so that the same image always
 * has the same digest.  Strings that are not valid UTF-8 (a label from a
 * Dockerfile can be anything) get U+FFFD for each bad byte, as Go's
 * encoding/json does, instead of making the JSON invalid.
 *
 * Reading: configs, manifests and indexes come from registries and
 * archives, so they are hostile input.  jansson bounds the nesting depth;
 * the readers below check the type of every member they use, every digest
 * and every size, and name the member that is wrong in a one-line message:
 *
 *   invalid image manifest: "layers[2].digest" is not a valid digest: "sha256:zz"
 *
 * Unknown members are ignored, and null counts as absent, as it does for
 * Go's encoding/json (Docker writes "Cmd": null, "Volumes": null, ...).
 */
#include "oci.h"

#include <jansson.h>
#include <limits.h>

/* ---- writing ---- */

static json_t *jcheck(json_t *j)
{
  if (j == NULL)
    cb_die("out of memory");
  return j;
}

/* Length of the valid UTF-8 sequence at s, or 0 when the byte at s does not
 * start one (overlong forms, surrogates and code points past U+10FFFF are
 * invalid). */
static size_t utf8_len(const unsigned char *s)
{
  unsigned char c = s[0];
  unsigned char lo = 0x80, hi = 0xbf;
  size_t n;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    n = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    n = 3;
    if (c == 0xe0)
      lo = 0xa0;
    else if (c == 0xed)
      hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4;
    if (c == 0xf0)
      lo = 0x90;
    else if (c == 0xf4)
      hi = 0x8f;
  } else {
    return 0;
  }
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return n;
}

/* s as valid UTF-8: NULL when s already is, else a copy the caller frees. */
static char *utf8_clean(const char *s)
{
  const unsigned char *p = (const unsigned char *)s;
  struct strbuf sb = STRBUF_INIT;
  bool bad = false;
  while (*p) {
    size_t n = utf8_len(p);
    if (n == 0) {
      strbuf_add_utf8(&sb, 0xfffd);
      p++;
      bad = true;
    } else {
      strbuf_add(&sb, p, n);
      p += n;
    }
  }
  if (!bad) {
    strbuf_release(&sb);
    return NULL;
  }
  return strbuf_detach(&sb, NULL);
}

static json_t *jstr(const char *s)
{
  cleanup_free char *clean = utf8_clean(s);
  return jcheck(json_string_nocheck(clean ? clean : s));
}

static json_t *jobj(void) { return jcheck(json_object()); }
static json_t *jarr(void) { return jcheck(json_array()); }
static json_t *jint(int64_t v) { return jcheck(json_integer((json_int_t)v)); }

/* o[key] = v, taking v's reference. */
static void jset(json_t *o, const char *key, json_t *v)
{
  cleanup_free char *clean = utf8_clean(key);
  if (json_object_set_new_nocheck(o, clean ? clean : key, v) < 0)
    cb_die("out of memory");
}

static void jpush(json_t *a, json_t *v)
{
  if (json_array_append_new(a, v) < 0)
    cb_die("out of memory");
}

/* A string member, left out when NULL or empty. */
static void jset_str(json_t *o, const char *key, const char *s)
{
  if (s != NULL && *s != '\0')
    jset(o, key, jstr(s));
}

static json_t *strvec_array(const struct strvec *sv)
{
  json_t *a = jarr();
  for (size_t i = 0; i < sv->n; i++)
    jpush(a, jstr(sv->v[i]));
  return a;
}

/* A set as Go writes map[string]struct{}: {"80/tcp":{}} */
static json_t *strvec_set(const struct strvec *sv)
{
  json_t *o = jobj();
  for (size_t i = 0; i < sv->n; i++)
    jset(o, sv->v[i], jobj());
  return o;
}

static json_t *kv_object(const struct oci_kv *kv, size_t n)
{
  json_t *o = jobj();
  for (size_t i = 0; i < n; i++)
    jset(o, kv[i].key, jstr(kv[i].value));
  return o;
}

static char *jdump(const json_t *root)
{
  char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
  if (s == NULL)
    cb_die("out of memory");
  return s;
}

/* ---- reading ---- */

struct reader {
  const char *what; /* "image config", for messages */
  struct cb_error *err;
};

/* A member's place for messages: "config.Env[2]".  Long paths are cut,
 * which only shortens a message. */
struct rpath {
  char s[160];
};

/* Mark a cut path with "..." at its end. */
static const char *rpath_done(struct rpath *p, int len)
{
  if (len < 0 || (size_t)len >= sizeof(p->s))
    memcpy(p->s + sizeof(p->s) - 4, "...", 4);
  return p->s;
}

static const char *rpath_key(struct rpath *p, const char *prefix, const char *key)
{
  if (prefix && *prefix)
    return rpath_done(p, snprintf(p->s, sizeof(p->s), "%s.%s", prefix, key));
  return rpath_done(p, snprintf(p->s, sizeof(p->s), "%s", key));
}

static const char *rpath_index(struct rpath *p, const char *prefix, size_t i)
{
  return rpath_done(p, snprintf(p->s, sizeof(p->s), "%s[%zu]", prefix, i));
}

/* Append s to sb as a one-line quotable text: printable ASCII as is,
 * anything else (newlines, escapes, UTF-8) as \xNN, at most max bytes. */
static void add_escaped(struct strbuf *sb, const char *s, size_t max)
{
  size_t i;
  for (i = 0; s[i] && i < max; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      strbuf_addf(sb, "\\%c", c);
    else if (c >= 0x20 && c < 0x7f)
      strbuf_addch(sb, c);
    else
      strbuf_addf(sb, "\\x%02x", c);
  }
  if (s[i])
    strbuf_addstr(sb, "...");
}

static int rfail(struct reader *r, const char *path, const char *problem, const char *value)
{
  cleanup_strbuf struct strbuf where = STRBUF_INIT;
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  /* a path holds keys from the document: escape it too */
  add_escaped(&where, path, sizeof(((struct rpath *)0)->s));
  if (value) {
    add_escaped(&sb, value, 100);
    return cb_error_set(r->err, "invalid %s: \"%s\" %s: \"%s\"", r->what, where.buf, problem,
                        sb.buf);
  }
  return cb_error_set(r->err, "invalid %s: \"%s\" %s", r->what, where.buf, problem);
}

static json_t *rload(struct reader *r, const char *json, size_t n)
{
  json_error_t jerr;
  json_t *root = json_loadb(json, n, 0, &jerr);
  if (root == NULL) {
    cleanup_strbuf struct strbuf sb = STRBUF_INIT;
    add_escaped(&sb, jerr.text, 160);
    cb_error_set(r->err, "invalid %s: line %d column %d: %s", r->what, jerr.line, jerr.column,
                 sb.buf);
    return NULL;
  }
  if (!json_is_object(root)) {
    json_decref(root);
    cb_error_set(r->err, "invalid %s: not a JSON object", r->what);
    return NULL;
  }
  return root;
}

/* o[key], or NULL when it is absent or null. */
static json_t *rget(json_t *o, const char *key)
{
  json_t *v = json_object_get(o, key);
  return json_is_null(v) ? NULL : v;
}

/* An optional string; *out stays NULL when absent. */
static int rstring(struct reader *r, json_t *o, const char *prefix, const char *key, char **out)
{
  struct rpath p;
  json_t *v = rget(o, key);
  if (v == NULL)
    return 0;
  if (!json_is_string(v))
    return rfail(r, rpath_key(&p, prefix, key), "is not a string", NULL);
  free(*out);
  *out = xstrdup(json_string_value(v));
  return 0;
}

/* An optional array of strings, appended to out; *present tells whether it
 * was there. */
static int rstrvec(struct reader *r, json_t *o, const char *prefix, const char *key,
                   struct strvec *out, bool *present)
{
  struct rpath p, q;
  size_t i;
  json_t *v = rget(o, key), *e;
  if (present)
    *present = v != NULL;
  if (v == NULL)
    return 0;
  if (!json_is_array(v))
    return rfail(r, rpath_key(&p, prefix, key), "is not an array", NULL);
  rpath_key(&p, prefix, key);
  json_array_foreach(v, i, e) {
    if (!json_is_string(e))
      return rfail(r, rpath_index(&q, p.s, i), "is not a string", NULL);
    strvec_push(out, json_string_value(e));
  }
  return 0;
}

/* An optional set written as an object whose values are {}: its keys. */
static int rset(struct reader *r, json_t *o, const char *prefix, const char *key,
                struct strvec *out)
{
  struct rpath p, q;
  const char *k;
  json_t *v = rget(o, key), *e;
  if (v == NULL)
    return 0;
  rpath_key(&p, prefix, key);
  if (!json_is_object(v))
    return rfail(r, p.s, "is not an object", NULL);
  json_object_foreach(v, k, e) {
    if (!json_is_object(e) && !json_is_null(e))
      return rfail(r, rpath_key(&q, p.s, k), "is not an object", NULL);
    strvec_push(out, k);
  }
  return 0;
}

/* An optional object of strings (labels, annotations). */
static int rkv(struct reader *r, json_t *o, const char *prefix, const char *key,
               struct oci_kv **out, size_t *n)
{
  struct rpath p, q;
  const char *k;
  json_t *v = rget(o, key), *e;
  size_t i = 0;
  if (v == NULL)
    return 0;
  rpath_key(&p, prefix, key);
  if (!json_is_object(v))
    return rfail(r, p.s, "is not an object", NULL);
  json_object_foreach(v, k, e) {
    if (!json_is_string(e))
      return rfail(r, rpath_key(&q, p.s, k), "is not a string", NULL);
  }
  *out = xcalloc(json_object_size(v) ? json_object_size(v) : 1, sizeof(**out));
  json_object_foreach(v, k, e) {
    (*out)[i].key = xstrdup(k);
    (*out)[i].value = xstrdup(json_string_value(e));
    *n = ++i;
  }
  return 0;
}

/* An integer in [min, max]; *present tells whether it was there. */
static int rinteger(struct reader *r, json_t *o, const char *prefix, const char *key, int64_t min,
                int64_t max, int64_t *out, bool *present)
{
  struct rpath p;
  json_t *v = rget(o, key);
  json_int_t x;
  if (present)
    *present = v != NULL;
  if (v == NULL)
    return 0;
  rpath_key(&p, prefix, key);
  if (!json_is_integer(v))
    return rfail(r, p.s, "is not an integer", NULL);
  x = json_integer_value(v);
  if (x < min)
    return rfail(r, p.s, min == 0 ? "is negative" : "is too small", NULL);
  if (x > max)
    return rfail(r, p.s, "is too large", NULL);
  *out = (int64_t)x;
  return 0;
}

static int rbool(struct reader *r, json_t *o, const char *prefix, const char *key, bool *out)
{
  struct rpath p;
  json_t *v = rget(o, key);
  if (v == NULL)
    return 0;
  if (!json_is_boolean(v))
    return rfail(r, rpath_key(&p, prefix, key), "is not a boolean", NULL);
  *out = json_is_true(v);
  return 0;
}

/* A required member of the given type. */
static json_t *rrequire(struct reader *r, json_t *o, const char *prefix, const char *key,
                        json_type type)
{
  struct rpath p;
  json_t *v = rget(o, key);
  static const char *const names[] = {
    [JSON_OBJECT] = "an object", [JSON_ARRAY] = "an array", [JSON_STRING] = "a string",
    [JSON_INTEGER] = "an integer",
  };
  char problem[40];
  rpath_key(&p, prefix, key);
  if (v == NULL) {
    rfail(r, p.s, "is missing", NULL);
    return NULL;
  }
  if (json_typeof(v) != type) {
    snprintf(problem, sizeof(problem), "is not %s",
             type < CB_ARRAY_SIZE(names) && names[type] ? names[type] : "of the right type");
    rfail(r, p.s, problem, NULL);
    return NULL;
  }
  return v;
}

/* ---- descriptors ---- */

static struct oci_kv *kv_copy(const struct oci_kv *kv, size_t n)
{
  struct oci_kv *c;
  if (n == 0)
    return NULL;
  c = xcalloc(n, sizeof(*c));
  for (size_t i = 0; i < n; i++) {
    c[i].key = xstrdup(kv[i].key);
    c[i].value = xstrdup(kv[i].value);
  }
  return c;
}

static void kv_free(struct oci_kv *kv, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(kv[i].key);
    free(kv[i].value);
  }
  free(kv);
}

/* Set or replace key in the array. */
static void kv_set(struct oci_kv **kv, size_t *n, const char *key, const char *value)
{
  for (size_t i = 0; i < *n; i++) {
    if (strcmp((*kv)[i].key, key) == 0) {
      char *v = xstrdup(value);
      free((*kv)[i].value);
      (*kv)[i].value = v;
      return;
    }
  }
  *kv = xreallocarray(*kv, st_add(*n, 1), sizeof(**kv));
  (*kv)[*n].key = xstrdup(key);
  (*kv)[*n].value = xstrdup(value);
  (*n)++;
}

static char *xstrdup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

void oci_descriptor_release(struct oci_descriptor *d)
{
  free(d->media_type);
  free(d->digest);
  kv_free(d->annotations, d->n_annotations);
  free(d->platform_os);
  free(d->platform_arch);
  free(d->platform_variant);
  memset(d, 0, sizeof(*d));
}

void oci_descriptor_copy(struct oci_descriptor *dst, const struct oci_descriptor *src)
{
  dst->media_type = xstrdup_or_null(src->media_type);
  dst->digest = xstrdup_or_null(src->digest);
  dst->size = src->size;
  dst->annotations = kv_copy(src->annotations, src->n_annotations);
  dst->n_annotations = src->n_annotations;
  dst->platform_os = xstrdup_or_null(src->platform_os);
  dst->platform_arch = xstrdup_or_null(src->platform_arch);
  dst->platform_variant = xstrdup_or_null(src->platform_variant);
}

void oci_descriptor_annotate(struct oci_descriptor *d, const char *key, const char *value)
{
  kv_set(&d->annotations, &d->n_annotations, key, value);
}

const char *oci_descriptor_annotation(const struct oci_descriptor *d, const char *key)
{
  for (size_t i = 0; i < d->n_annotations; i++)
    if (strcmp(d->annotations[i].key, key) == 0)
      return d->annotations[i].value;
  return NULL;
}

static json_t *descriptor_json(const struct oci_descriptor *d)
{
  json_t *o = jobj();
  jset_str(o, "mediaType", d->media_type);
  jset_str(o, "digest", d->digest);
  jset(o, "size", jint(d->size));
  if (d->n_annotations)
    jset(o, "annotations", kv_object(d->annotations, d->n_annotations));
  if ((d->platform_os && *d->platform_os) || (d->platform_arch && *d->platform_arch)) {
    json_t *p = jobj();
    /* both are required members of a platform */
    jset(p, "architecture", jstr(d->platform_arch ? d->platform_arch : ""));
    jset(p, "os", jstr(d->platform_os ? d->platform_os : ""));
    jset_str(p, "variant", d->platform_variant);
    jset(o, "platform", p);
  }
  return o;
}

static int descriptor_read(struct reader *r, json_t *o, const char *path, struct oci_descriptor *d)
{
  struct rpath p;
  json_t *v, *plat;
  if (!json_is_object(o))
    return rfail(r, path, "is not an object", NULL);
  if (rrequire(r, o, path, "mediaType", JSON_STRING) == NULL ||
      rstring(r, o, path, "mediaType", &d->media_type) < 0)
    return -1;
  if ((v = rrequire(r, o, path, "digest", JSON_STRING)) == NULL)
    return -1;
  if (!oci_digest_valid(json_string_value(v)))
    return rfail(r, rpath_key(&p, path, "digest"), "is not a valid digest",
                 json_string_value(v));
  d->digest = xstrdup(json_string_value(v));
  if (rrequire(r, o, path, "size", JSON_INTEGER) == NULL ||
      rinteger(r, o, path, "size", 0, INT64_MAX, &d->size, NULL) < 0)
    return -1;
  if (rkv(r, o, path, "annotations", &d->annotations, &d->n_annotations) < 0)
    return -1;
  if ((plat = rget(o, "platform")) != NULL) {
    rpath_key(&p, path, "platform");
    if (!json_is_object(plat))
      return rfail(r, p.s, "is not an object", NULL);
    if (rstring(r, plat, p.s, "architecture", &d->platform_arch) < 0 ||
        rstring(r, plat, p.s, "os", &d->platform_os) < 0 ||
        rstring(r, plat, p.s, "variant", &d->platform_variant) < 0)
      return -1;
  }
  return 0;
}

/* An array of descriptors; NULL or absent is empty unless required. */
static int descriptors_read(struct reader *r, json_t *o, const char *key,
                            struct oci_descriptor **out, size_t *n)
{
  struct rpath p;
  size_t i;
  json_t *a = rrequire(r, o, NULL, key, JSON_ARRAY), *e;
  if (a == NULL)
    return -1;
  *out = xcalloc(json_array_size(a) ? json_array_size(a) : 1, sizeof(**out));
  *n = json_array_size(a);
  json_array_foreach(a, i, e) {
    if (descriptor_read(r, e, rpath_index(&p, key, i), &(*out)[i]) < 0)
      return -1;
  }
  return 0;
}

/* schemaVersion 2 and, when present, one of the accepted media types. */
static int header_read(struct reader *r, json_t *root, const char *const *types, size_t n_types,
                       const char *not_this)
{
  int64_t version = 0;
  char *mt = NULL;
  bool ok = false;
  if (rrequire(r, root, NULL, "schemaVersion", JSON_INTEGER) == NULL ||
      rinteger(r, root, NULL, "schemaVersion", INT64_MIN, INT64_MAX, &version, NULL) < 0)
    return -1;
  if (version != 2)
    return cb_error_set(r->err, "invalid %s: \"schemaVersion\" is %lld, not 2", r->what,
                        (long long)version);
  if (rstring(r, root, NULL, "mediaType", &mt) < 0)
    return -1;
  if (mt == NULL)
    return 0;
  for (size_t i = 0; i < n_types; i++)
    ok = ok || strcmp(mt, types[i]) == 0;
  if (!ok) {
    cleanup_strbuf struct strbuf sb = STRBUF_INIT;
    add_escaped(&sb, mt, 100);
    cb_error_set(r->err, "invalid %s: media type \"%s\" is not %s", r->what, sb.buf, not_this);
  }
  free(mt);
  return ok ? 0 : -1;
}

/* ---- manifests ---- */

void oci_manifest_release(struct oci_manifest *m)
{
  oci_descriptor_release(&m->config);
  for (size_t i = 0; i < m->n_layers; i++)
    oci_descriptor_release(&m->layers[i]);
  free(m->layers);
  kv_free(m->annotations, m->n_annotations);
  memset(m, 0, sizeof(*m));
}

char *oci_manifest_json(const struct oci_manifest *m)
{
  cleanup_json json_t *root = jobj();
  json_t *layers = jarr();
  jset(root, "schemaVersion", jint(2));
  jset(root, "mediaType", jstr(OCI_MEDIA_TYPE_MANIFEST));
  jset(root, "config", descriptor_json(&m->config));
  for (size_t i = 0; i < m->n_layers; i++)
    jpush(layers, descriptor_json(&m->layers[i]));
  jset(root, "layers", layers);
  if (m->n_annotations)
    jset(root, "annotations", kv_object(m->annotations, m->n_annotations));
  return jdump(root);
}

static const char *const manifest_types[] = {
  OCI_MEDIA_TYPE_MANIFEST,
  OCI_MEDIA_TYPE_DOCKER_MANIFEST,
};

int oci_manifest_parse(const char *json, size_t n, struct oci_manifest *m, struct cb_error *err)
{
  struct reader r = { "image manifest", err };
  cleanup_json json_t *root = NULL;
  json_t *config;
  memset(m, 0, sizeof(*m));
  if ((root = rload(&r, json, n)) == NULL)
    return -1;
  if (rget(root, "manifests") != NULL && rget(root, "layers") == NULL)
    return cb_error_set(err, "invalid image manifest: it is an image index");
  if (header_read(&r, root, manifest_types, CB_ARRAY_SIZE(manifest_types),
                  "an image manifest") < 0)
    goto fail;
  if ((config = rrequire(&r, root, NULL, "config", JSON_OBJECT)) == NULL ||
      descriptor_read(&r, config, "config", &m->config) < 0 ||
      descriptors_read(&r, root, "layers", &m->layers, &m->n_layers) < 0 ||
      rkv(&r, root, NULL, "annotations", &m->annotations, &m->n_annotations) < 0)
    goto fail;
  return 0;
fail:
  oci_manifest_release(m);
  return -1;
}

/* ---- indexes ---- */

void oci_index_release(struct oci_index *x)
{
  for (size_t i = 0; i < x->n_manifests; i++)
    oci_descriptor_release(&x->manifests[i]);
  free(x->manifests);
  memset(x, 0, sizeof(*x));
}

char *oci_index_json(const struct oci_index *x)
{
  cleanup_json json_t *root = jobj();
  json_t *manifests = jarr();
  jset(root, "schemaVersion", jint(2));
  jset(root, "mediaType", jstr(OCI_MEDIA_TYPE_INDEX));
  for (size_t i = 0; i < x->n_manifests; i++)
    jpush(manifests, descriptor_json(&x->manifests[i]));
  jset(root, "manifests", manifests);
  return jdump(root);
}

static const char *const index_types[] = {
  OCI_MEDIA_TYPE_INDEX,
  OCI_MEDIA_TYPE_DOCKER_LIST,
};

int oci_index_parse(const char *json, size_t n, struct oci_index *x, struct cb_error *err)
{
  struct reader r = { "image index", err };
  cleanup_json json_t *root = NULL;
  memset(x, 0, sizeof(*x));
  if ((root = rload(&r, json, n)) == NULL)
    return -1;
  if (header_read(&r, root, index_types, CB_ARRAY_SIZE(index_types), "an image index") < 0 ||
      descriptors_read(&r, root, "manifests", &x->manifests, &x->n_manifests) < 0) {
    oci_index_release(x);
    return -1;
  }
  return 0;
}

char *oci_media_type_of_json(const char *json, size_t n)
{
  json_error_t je;
  cleanup_json json_t *root = json_loadb(json, n, 0, &je);
  const char *mt = root ? json_string_value(json_object_get(root, "mediaType")) : NULL;
  if (!mt && root && json_is_array(json_object_get(root, "manifests")))
    mt = OCI_MEDIA_TYPE_INDEX;
  else if (!mt && root && json_is_object(json_object_get(root, "config")))
    mt = OCI_MEDIA_TYPE_MANIFEST;
  return mt ? xstrdup(mt) : NULL;
}

/* ---- configs ---- */

static void health_free(struct oci_health *h)
{
  if (h == NULL)
    return;
  strvec_clear(&h->test);
  free(h);
}

static void history_release(struct oci_history *h)
{
  free(h->created);
  free(h->created_by);
  free(h->comment);
}

void oci_config_release(struct oci_config *c)
{
  free(c->architecture);
  free(c->os);
  free(c->variant);
  free(c->created);
  free(c->author);
  strvec_clear(&c->env);
  strvec_clear(&c->cmd);
  strvec_clear(&c->entrypoint);
  free(c->working_dir);
  free(c->user);
  free(c->stop_signal);
  strvec_clear(&c->exposed_ports);
  strvec_clear(&c->volumes);
  kv_free(c->labels, c->n_labels);
  health_free(c->healthcheck);
  strvec_clear(&c->shell);
  strvec_clear(&c->onbuild);
  strvec_clear(&c->diff_ids);
  for (size_t i = 0; i < c->n_history; i++)
    history_release(&c->history[i]);
  free(c->history);
  memset(c, 0, sizeof(*c));
}

void oci_config_copy(struct oci_config *dst, const struct oci_config *src)
{
  memset(dst, 0, sizeof(*dst));
  dst->architecture = xstrdup_or_null(src->architecture);
  dst->os = xstrdup_or_null(src->os);
  dst->variant = xstrdup_or_null(src->variant);
  dst->created = xstrdup_or_null(src->created);
  dst->author = xstrdup_or_null(src->author);
  strvec_copy(&dst->env, &src->env);
  strvec_copy(&dst->cmd, &src->cmd);
  dst->has_cmd = src->has_cmd;
  strvec_copy(&dst->entrypoint, &src->entrypoint);
  dst->has_entrypoint = src->has_entrypoint;
  dst->working_dir = xstrdup_or_null(src->working_dir);
  dst->user = xstrdup_or_null(src->user);
  dst->stop_signal = xstrdup_or_null(src->stop_signal);
  strvec_copy(&dst->exposed_ports, &src->exposed_ports);
  strvec_copy(&dst->volumes, &src->volumes);
  dst->labels = kv_copy(src->labels, src->n_labels);
  dst->n_labels = src->n_labels;
  if (src->healthcheck) {
    dst->healthcheck = xcalloc(1, sizeof(*dst->healthcheck));
    *dst->healthcheck = *src->healthcheck;
    memset(&dst->healthcheck->test, 0, sizeof(dst->healthcheck->test));
    strvec_copy(&dst->healthcheck->test, &src->healthcheck->test);
  }
  strvec_copy(&dst->shell, &src->shell);
  strvec_copy(&dst->onbuild, &src->onbuild);
  strvec_copy(&dst->diff_ids, &src->diff_ids);
  if (src->n_history) {
    dst->history = xcalloc(src->n_history, sizeof(*dst->history));
    for (size_t i = 0; i < src->n_history; i++) {
      const struct oci_history *h = &src->history[i];
      dst->history[i].created = xstrdup_or_null(h->created);
      dst->history[i].created_by = xstrdup_or_null(h->created_by);
      dst->history[i].comment = xstrdup_or_null(h->comment);
      dst->history[i].empty_layer = h->empty_layer;
    }
    dst->n_history = src->n_history;
  }
}

/* Whether the Env entry e ("K=V", or a bare "K") sets key. */
static bool env_is(const char *e, const char *key)
{
  size_t n = strlen(key);
  return strncmp(e, key, n) == 0 && (e[n] == '=' || e[n] == '\0');
}

void oci_config_set_env(struct oci_config *c, const char *key, const char *value)
{
  char *e = xasprintf("%s=%s", key, value);
  for (size_t i = 0; i < c->env.n; i++) {
    if (env_is(c->env.v[i], key)) {
      free(c->env.v[i]);
      c->env.v[i] = e;
      return;
    }
  }
  strvec_push_nodup(&c->env, e);
}

const char *oci_config_get_env(const struct oci_config *c, const char *key)
{
  size_t n = strlen(key);
  for (size_t i = 0; i < c->env.n; i++)
    if (env_is(c->env.v[i], key))
      return c->env.v[i][n] == '=' ? c->env.v[i] + n + 1 : "";
  return NULL;
}

void oci_config_set_label(struct oci_config *c, const char *key, const char *value)
{
  kv_set(&c->labels, &c->n_labels, key, value);
}

void oci_config_add_history(struct oci_config *c, const char *created, const char *created_by,
                            bool empty_layer)
{
  struct oci_history *h;
  c->history = xreallocarray(c->history, st_add(c->n_history, 1), sizeof(*c->history));
  h = &c->history[c->n_history++];
  h->created = xstrdup_or_null(created);
  h->created_by = xstrdup_or_null(created_by);
  h->comment = NULL;
  h->empty_layer = empty_layer;
}

static json_t *health_json(const struct oci_health *h)
{
  json_t *o = jobj();
  if (h->test.n)
    jset(o, "Test", strvec_array(&h->test));
  if (h->interval)
    jset(o, "Interval", jint(h->interval));
  if (h->timeout)
    jset(o, "Timeout", jint(h->timeout));
  if (h->start_period)
    jset(o, "StartPeriod", jint(h->start_period));
  if (h->start_interval)
    jset(o, "StartInterval", jint(h->start_interval));
  if (h->retries)
    jset(o, "Retries", jint(h->retries));
  return o;
}

/* The "config" member: the runtime defaults. */
static json_t *runtime_json(const struct oci_config *c)
{
  json_t *o = jobj();
  if (c->env.n)
    jset(o, "Env", strvec_array(&c->env));
  if (c->has_entrypoint || c->entrypoint.n)
    jset(o, "Entrypoint", strvec_array(&c->entrypoint));
  if (c->has_cmd || c->cmd.n)
    jset(o, "Cmd", strvec_array(&c->cmd));
  jset_str(o, "WorkingDir", c->working_dir);
  jset_str(o, "User", c->user);
  if (c->exposed_ports.n)
    jset(o, "ExposedPorts", strvec_set(&c->exposed_ports));
  if (c->volumes.n)
    jset(o, "Volumes", strvec_set(&c->volumes));
  if (c->n_labels)
    jset(o, "Labels", kv_object(c->labels, c->n_labels));
  jset_str(o, "StopSignal", c->stop_signal);
  if (c->healthcheck)
    jset(o, "Healthcheck", health_json(c->healthcheck));
  if (c->shell.n)
    jset(o, "Shell", strvec_array(&c->shell));
  if (c->onbuild.n)
    jset(o, "OnBuild", strvec_array(&c->onbuild));
  return o;
}

char *oci_config_json(const struct oci_config *c)
{
  cleanup_json json_t *root = jobj();
  json_t *rootfs = jobj(), *history;
  jset_str(root, "architecture", c->architecture);
  jset_str(root, "os", c->os);
  jset_str(root, "variant", c->variant);
  jset_str(root, "created", c->created);
  jset_str(root, "author", c->author);
  jset(root, "config", runtime_json(c));
  jset(rootfs, "type", jstr("layers"));
  jset(rootfs, "diff_ids", strvec_array(&c->diff_ids));
  jset(root, "rootfs", rootfs);
  if (c->n_history) {
    history = jarr();
    for (size_t i = 0; i < c->n_history; i++) {
      const struct oci_history *h = &c->history[i];
      json_t *e = jobj();
      jset_str(e, "created", h->created);
      jset_str(e, "created_by", h->created_by);
      jset_str(e, "comment", h->comment);
      if (h->empty_layer)
        jset(e, "empty_layer", jcheck(json_true()));
      jpush(history, e);
    }
    jset(root, "history", history);
  }
  return jdump(root);
}

static int health_read(struct reader *r, json_t *o, struct oci_health *h)
{
  static const char *const p = "config.Healthcheck";
  int64_t retries = 0;
  if (!json_is_object(o))
    return rfail(r, p, "is not an object", NULL);
  if (rstrvec(r, o, p, "Test", &h->test, NULL) < 0 ||
      rinteger(r, o, p, "Interval", 0, INT64_MAX, &h->interval, NULL) < 0 ||
      rinteger(r, o, p, "Timeout", 0, INT64_MAX, &h->timeout, NULL) < 0 ||
      rinteger(r, o, p, "StartPeriod", 0, INT64_MAX, &h->start_period, NULL) < 0 ||
      rinteger(r, o, p, "StartInterval", 0, INT64_MAX, &h->start_interval, NULL) < 0 ||
      rinteger(r, o, p, "Retries", 0, INT_MAX, &retries, NULL) < 0)
    return -1;
  h->retries = (int)retries;
  return 0;
}

static int runtime_read(struct reader *r, json_t *o, struct oci_config *c)
{
  static const char *const p = "config";
  json_t *health;
  if (!json_is_object(o))
    return rfail(r, p, "is not an object", NULL);
  if (rstrvec(r, o, p, "Env", &c->env, NULL) < 0 ||
      rstrvec(r, o, p, "Entrypoint", &c->entrypoint, &c->has_entrypoint) < 0 ||
      rstrvec(r, o, p, "Cmd", &c->cmd, &c->has_cmd) < 0 ||
      rstring(r, o, p, "WorkingDir", &c->working_dir) < 0 ||
      rstring(r, o, p, "User", &c->user) < 0 ||
      rset(r, o, p, "ExposedPorts", &c->exposed_ports) < 0 ||
      rset(r, o, p, "Volumes", &c->volumes) < 0 ||
      rkv(r, o, p, "Labels", &c->labels, &c->n_labels) < 0 ||
      rstring(r, o, p, "StopSignal", &c->stop_signal) < 0 ||
      rstrvec(r, o, p, "Shell", &c->shell, NULL) < 0 ||
      rstrvec(r, o, p, "OnBuild", &c->onbuild, NULL) < 0)
    return -1;
  if ((health = rget(o, "Healthcheck")) != NULL) {
    c->healthcheck = xcalloc(1, sizeof(*c->healthcheck));
    if (health_read(r, health, c->healthcheck) < 0)
      return -1;
  }
  return 0;
}

static int rootfs_read(struct reader *r, json_t *root, struct oci_config *c)
{
  struct rpath p;
  char *type = NULL;
  json_t *rootfs = rrequire(r, root, NULL, "rootfs", JSON_OBJECT), *ids, *e;
  size_t i;
  bool layers;
  if (rootfs == NULL || rstring(r, rootfs, "rootfs", "type", &type) < 0)
    return -1;
  layers = type != NULL && strcmp(type, "layers") == 0;
  if (!layers)
    rfail(r, "rootfs.type", "is not \"layers\"", NULL);
  free(type);
  if (!layers)
    return -1;
  if ((ids = rrequire(r, rootfs, "rootfs", "diff_ids", JSON_ARRAY)) == NULL)
    return -1;
  json_array_foreach(ids, i, e) {
    rpath_index(&p, "rootfs.diff_ids", i);
    if (!json_is_string(e))
      return rfail(r, p.s, "is not a string", NULL);
    if (!oci_digest_valid(json_string_value(e)))
      return rfail(r, p.s, "is not a valid digest", json_string_value(e));
    strvec_push(&c->diff_ids, json_string_value(e));
  }
  return 0;
}

static int history_read(struct reader *r, json_t *root, struct oci_config *c)
{
  struct rpath p;
  json_t *a = rget(root, "history"), *e;
  size_t i;
  if (a == NULL)
    return 0;
  if (!json_is_array(a))
    return rfail(r, "history", "is not an array", NULL);
  c->history = xcalloc(json_array_size(a) ? json_array_size(a) : 1, sizeof(*c->history));
  c->n_history = json_array_size(a);
  json_array_foreach(a, i, e) {
    struct oci_history *h = &c->history[i];
    rpath_index(&p, "history", i);
    if (!json_is_object(e))
      return rfail(r, p.s, "is not an object", NULL);
    if (rstring(r, e, p.s, "created", &h->created) < 0 ||
        rstring(r, e, p.s, "created_by", &h->created_by) < 0 ||
        rstring(r, e, p.s, "comment", &h->comment) < 0 ||
        rbool(r, e, p.s, "empty_layer", &h->empty_layer) < 0)
      return -1;
  }
  return 0;
}

int oci_config_parse(const char *json, size_t n, struct oci_config *c, struct cb_error *err)
{
  struct reader r = { "image config", err };
  cleanup_json json_t *root = NULL;
  json_t *runtime;
  memset(c, 0, sizeof(*c));
  if ((root = rload(&r, json, n)) == NULL)
    return -1;
  if (rstring(&r, root, NULL, "architecture", &c->architecture) < 0 ||
      rstring(&r, root, NULL, "os", &c->os) < 0 ||
      rstring(&r, root, NULL, "variant", &c->variant) < 0 ||
      rstring(&r, root, NULL, "created", &c->created) < 0 ||
      rstring(&r, root, NULL, "author", &c->author) < 0)
    goto fail;
  if ((runtime = rget(root, "config")) != NULL && runtime_read(&r, runtime, c) < 0)
    goto fail;
  if (rootfs_read(&r, root, c) < 0 || history_read(&r, root, c) < 0)
    goto fail;
  return 0;
fail:
  oci_config_release(c);
  return -1;
}

/* ---- platforms ---- */

static bool variant_matches(const char *arch, const char *want, const char *have)
{
  if (!want || !*want)
    return true;
  if (have && *have)
    return strcmp(want, have) == 0;
  return strcmp(arch, "arm64") == 0 && strcmp(want, "v8") == 0;
}

int oci_index_select_platform(const struct oci_index *x, const char *platform,
                              struct cb_error *err)
{
  cleanup_free char *os = NULL, *arch = NULL, *variant = NULL;
  const char *s1 = strchr(platform, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
  cleanup_strbuf struct strbuf have = STRBUF_INIT;
  int loose = -1;
  if (!s1)
    return cb_error_set(err, "invalid platform \"%s\": want os/arch[/variant]", platform);
  os = xstrndup(platform, (size_t)(s1 - platform));
  arch = s2 ? xstrndup(s1 + 1, (size_t)(s2 - s1 - 1)) : xstrdup(s1 + 1);
  variant = s2 ? xstrdup(s2 + 1) : NULL;
  for (size_t i = 0; i < x->n_manifests; i++) {
    const struct oci_descriptor *d = &x->manifests[i];
    if (!d->platform_os || !d->platform_arch || strcmp(d->platform_os, os) != 0 ||
        strcmp(d->platform_arch, arch) != 0 || !variant_matches(arch, variant, d->platform_variant))
      continue;
    if (variant || !d->platform_variant || !*d->platform_variant)
      return (int)i;
    if (loose < 0)
      loose = (int)i;
  }
  if (loose >= 0)
    return loose;
  for (size_t i = 0; i < x->n_manifests && have.len < 400; i++) {
    const struct oci_descriptor *d = &x->manifests[i];
    if (!d->platform_os || !d->platform_arch || strcmp(d->platform_os, "unknown") == 0)
      continue;
    strbuf_addf(&have, "%s%.40s/%.40s%s%.40s", have.len ? ", " : "", d->platform_os,
                d->platform_arch, d->platform_variant && *d->platform_variant ? "/" : "",
                d->platform_variant ? d->platform_variant : "");
  }
  return cb_error_set(err, "no image for platform \"%s\" (the index has: %s)", platform,
                      have.len ? have.buf : "none");
}
