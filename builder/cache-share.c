/*
 * The step cache shared between machines: --cache-to writes the entries a
 * build used (key, layer, config after the step) as an OCI artifact, in a
 * registry or an OCI layout directory; --cache-from reads them back into
 * the store's step cache.
 *
 * The artifact is an image manifest whose config (media type
 * CACHE_MEDIA_TYPE) is {"entries": [{key, layer, diff_id, config}]} and
 * whose layers are the entries' layers, so a registry keeps them and they
 * travel with it.  An imported entry's layer is not fetched until a step
 * or the final image needs its bytes: the store's remote (cache.h) brings
 * it in then, so a runner with an empty store pulls only what the image it
 * builds is made of.
 *
 * A cache is hostile input like any registry response: entries are
 * checked (digests, descriptors, a config that parses) and blobs are
 * checked against their digests as they enter the store.
 */
#include "builder-internal.h"

#include "progress-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MEDIA_TYPE "application/vnd.cbuild.cache.v1+json"
#define CACHE_LAYOUT_TAG "cache"
#define CACHE_CONFIG_MAX ((int64_t)64 << 20)

void builder_cache_spec_release(struct builder_cache_spec *c)
{
  free(c->ref);
  free(c->dir);
  memset(c, 0, sizeof(*c));
}

int builder_cache_spec_parse(const char *spec, bool to, struct builder_cache_spec *c,
                             struct cb_error *err)
{
  cleanup_free char *copy = xstrdup(spec);
  cleanup_free char *type = NULL;
  char *save = NULL;
  const char *flag = to ? "--cache-to" : "--cache-from";
  memset(c, 0, sizeof(*c));
  if (!strchr(spec, '=')) {
    if (!oci_reference_valid(spec))
      return cb_error_set(err, "invalid %s \"%s\": want type=registry,ref=REF or type=local,%s=DIR",
                          flag, spec, to ? "dest" : "src");
    c->ref = xstrdup(spec);
    return 0;
  }
  for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(f, '=');
    const char *v = eq ? eq + 1 : "";
    if (eq)
      *eq = '\0';
    if (strcmp(f, "type") == 0 && !type)
      type = xstrdup(v);
    else if (strcmp(f, "ref") == 0 && !c->ref)
      c->ref = xstrdup(v);
    else if (strcmp(f, to ? "dest" : "src") == 0 && !c->dir)
      c->dir = xstrdup(v);
    else if (to && strcmp(f, "mode") == 0 && (strcmp(v, "min") == 0 || strcmp(v, "max") == 0))
      c->max = strcmp(v, "max") == 0;
    else {
      builder_cache_spec_release(c);
      return cb_error_set(err, "invalid %s \"%s\": unknown key or value \"%s%s%s\"", flag, spec,
                          f, eq ? "=" : "", v);
    }
  }
  if (type && strcmp(type, "registry") == 0 && c->ref && !c->dir && oci_reference_valid(c->ref))
    return 0;
  if (type && strcmp(type, "local") == 0 && c->dir && *c->dir && !c->ref)
    return 0;
  builder_cache_spec_release(c);
  return cb_error_set(err, "invalid %s \"%s\": want type=registry,ref=REF or type=local,%s=DIR",
                      flag, spec, to ? "dest" : "src");
}

/* ---- the artifact's config ---- */

/* Read one entry of a cache, checked as the store checks its own, with a
 * config that parses; -1 with err when it is not sound. */
static int entry_read(json_t *o, char **key, struct cache_entry *e, struct cb_error *err)
{
  cleanup_free char *text = json_dumps(o, JSON_COMPACT);
  struct oci_config parsed;
  if (!text || cache_entry_from_json(text, strlen(text), key, e) < 0)
    return cb_error_set(err, "an entry is not sound");
  if (oci_config_parse(e->config, strlen(e->config), &parsed, err) < 0) {
    cb_error_wrap(err, "entry %s", *key);
    free(*key);
    *key = NULL;
    cache_entry_release(e);
    return -1;
  }
  oci_config_release(&parsed);
  return 0;
}

/* ---- export ---- */

/* The keys to export: the target's chain of stages, or every stage. */
static void export_keys(struct build_run *run, bool max, struct strvec *keys)
{
  const struct parser_dockerfile *df = run->plan->df;
  if (max) {
    for (size_t i = 0; i < df->n_stages; i++)
      for (size_t k = 0; k < run->stages[i].keys.n; k++)
        strvec_push(keys, run->stages[i].keys.v[k]);
    return;
  }
  for (int i = df->target; i >= 0; i = df->stages[i].base_stage)
    for (size_t k = 0; k < run->stages[i].keys.n; k++)
      strvec_push(keys, run->stages[i].keys.v[k]);
}

/* Write the artifact for these keys into the store: its manifest. */
static int artifact_make(struct build_run *run, const struct strvec *keys,
                         struct oci_descriptor *desc, struct oci_manifest *m, size_t *n_entries,
                         struct cb_error *err)
{
  json_t *root = json_object(), *entries = json_array();
  cleanup_free char *text = NULL, *manifest = NULL;
  char digest[OCI_DIGEST_SIZE];
  size_t alloc = 0;
  int r = -1;

  memset(desc, 0, sizeof(*desc));
  memset(m, 0, sizeof(*m));
  *n_entries = 0;
  for (size_t i = 0; i < keys->n; i++) {
    struct cache_entry e;
    bool seen = false;
    if (cache_entry_get(run->store, keys->v[i], &e, err) != 0)
      continue; /* gone meanwhile (pruned): nothing to share */
    {
      cleanup_free char *one = cache_entry_to_json(keys->v[i], &e);
      json_t *o = one ? json_loads(one, 0, NULL) : NULL;
      if (o)
        json_array_append_new(entries, o);
    }
    (*n_entries)++;
    for (size_t l = 0; e.layer.digest && l < m->n_layers; l++)
      seen |= strcmp(m->layers[l].digest, e.layer.digest) == 0;
    if (e.layer.digest && !seen) {
      CB_GROW(m->layers, m->n_layers + 1, alloc);
      memset(&m->layers[m->n_layers], 0, sizeof(m->layers[0]));
      oci_descriptor_copy(&m->layers[m->n_layers++], &e.layer);
    }
    cache_entry_release(&e);
  }
  json_object_set_new(root, "entries", entries);
  text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(root);
  if (!text)
    cb_die("out of memory");
  if (cache_blob_put(run->store, text, strlen(text), digest, err) < 0)
    goto out;
  m->config.media_type = xstrdup(CACHE_MEDIA_TYPE);
  m->config.digest = xstrdup(digest);
  m->config.size = (int64_t)strlen(text);
  manifest = oci_manifest_json(m);
  if (cache_blob_put(run->store, manifest, strlen(manifest), digest, err) < 0)
    goto out;
  desc->media_type = xstrdup(OCI_MEDIA_TYPE_MANIFEST);
  desc->digest = xstrdup(digest);
  desc->size = (int64_t)strlen(manifest);
  r = 0;
out:
  if (r < 0)
    oci_manifest_release(m);
  return r;
}

int builder_cache_export(struct build_run *run, struct progress *p, struct cb_error *err)
{
  for (size_t i = 0; i < run->o->n_cache_to; i++) {
    const struct builder_cache_spec *spec = &run->o->cache_to[i];
    cleanup_strvec struct strvec keys = STRVEC_INIT;
    cleanup_free char *text = NULL;
    struct oci_descriptor desc;
    struct oci_manifest m;
    size_t n_entries;
    int id, r;
    text = xasprintf("exporting cache to %s", spec->ref ? spec->ref : spec->dir);
    id = progress_step_add(p, NULL, 0, 0, text);
    progress_step_start(p, id);
    export_keys(run, spec->max, &keys);
    r = artifact_make(run, &keys, &desc, &m, &n_entries, err);
    if (r == 0 && spec->ref) {
      char digest[OCI_DIGEST_SIZE];
      struct builder_registry reg = run->o->registry;
      reg.quiet = true;
      r = builder_push_manifest(run->store, &reg, &desc, spec->ref, digest, err);
    } else if (r == 0) {
      struct oci_archive_image img = { &desc, &m, CACHE_LAYOUT_TAG, NULL, NULL };
      struct oci_blob_source src;
      cache_blob_source(run->store, &src);
      r = oci_layout_write_dir(spec->dir, &img, 1, &src, err);
    }
    if (r == 0)
      progress_step_note(p, id, "%zu steps, %zu layers", n_entries, m.n_layers);
    oci_manifest_release(&m);
    oci_descriptor_release(&desc);
    if (r < 0) {
      cb_error_wrap(err, "export the cache to %s", spec->ref ? spec->ref : spec->dir);
      progress_step_error(p, id, "%s", err->msg);
      return -1;
    }
    progress_step_done(p, id);
  }
  return 0;
}

/* ---- import ---- */

/* Where an imported cache's blobs are. */
struct cache_source {
  struct oci_registry *client; /* type=registry */
  int dirfd;                   /* type=local: DIR/blobs/sha256 */
  struct strvec digests;       /* the blobs it has, sorted */
};

struct cache_import {
  struct cache_source *sources;
  size_t n;
};

static bool source_has(const struct cache_source *s, const char *digest)
{
  return strvec_bsearch(&s->digests, digest) >= 0;
}

static bool import_has(void *data, const char *digest)
{
  struct cache_import *ci = data;
  for (size_t i = 0; i < ci->n; i++)
    if (source_has(&ci->sources[i], digest))
      return true;
  return false;
}

/* Copy DIR/blobs/sha256/HEX into fd; the store checks the digest. */
static int local_fetch(int dirfd, const char *digest, int fd, struct cb_error *err)
{
  cleanup_close int in = openat(dirfd, digest + 7, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  char buf[1 << 16];
  ssize_t n;
  if (in < 0)
    return cb_error_errno(err, errno, "open cache blob %s", digest);
  while ((n = cb_read_retry(in, buf, sizeof(buf))) > 0)
    if (cb_write_all(fd, buf, (size_t)n) < 0)
      return cb_error_errno(err, errno, "copy cache blob %s", digest);
  if (n < 0)
    return cb_error_errno(err, errno, "read cache blob %s", digest);
  return 0;
}

static int import_fetch(void *data, const char *digest, int fd, struct cb_error *err)
{
  struct cache_import *ci = data;
  for (size_t i = 0; i < ci->n; i++) {
    const struct cache_source *s = &ci->sources[i];
    if (!source_has(s, digest))
      continue;
    if (s->client)
      return oci_registry_blob_get(s->client, digest, -1, fd, NULL, NULL, err);
    return local_fetch(s->dirfd, digest, fd, err);
  }
  return 1;
}

/* Read a small blob of the source (manifest or config; size -1 when
 * unknown), checked. */
static int source_read(struct cache_source *s, const char *digest, int64_t size,
                       struct strbuf *out, struct cb_error *err)
{
  char got[OCI_DIGEST_SIZE];
  FILE *f = tmpfile();
  int fd, r;
  if (!f)
    return cb_error_errno(err, errno, "read cache blob %s: temporary file", digest);
  fd = fileno(f);
  r = s->client ? oci_registry_blob_get(s->client, digest, size, fd, NULL, NULL, err)
                : local_fetch(s->dirfd, digest, fd, err);
  if (r == 0) {
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size > CACHE_CONFIG_MAX)
      r = cb_error_set(err, "cache blob %s is too large", digest);
    else if (lseek(fd, 0, SEEK_SET) < 0 || cb_read_stream(f, digest, out, err) < 0)
      r = -1;
  }
  fclose(f);
  if (r < 0)
    return -1;
  oci_digest_buf(out->buf, out->len, got);
  if (strcmp(got, digest) != 0)
    return cb_error_set(err, "cache blob %s: its content hashes to %s", digest, got);
  return 0;
}

/* The artifact's manifest: from the registry, or the layout's index. */
static int source_manifest(struct build_run *run, const struct builder_cache_spec *spec,
                           struct cache_source *s, struct strbuf *body, struct cb_error *err)
{
  struct oci_reference ref;
  cleanup_free char *mt = NULL;
  char digest[OCI_DIGEST_SIZE];
  int r;
  if (spec->dir) {
    cleanup_strbuf struct strbuf index_json = STRBUF_INIT;
    cleanup_free char *index_path = xasprintf("%s/index.json", spec->dir);
    cleanup_free char *blobs = xasprintf("%s/blobs/sha256", spec->dir);
    struct oci_index x;
    struct stat st;
    int pick = -1;
    if (stat(index_path, &st) < 0 && errno == ENOENT)
      return 1;
    if (cb_read_file(index_path, &index_json, err) < 0 ||
        oci_index_parse(index_json.buf, index_json.len, &x, err) < 0)
      return -1;
    for (size_t i = 0; i < x.n_manifests; i++) {
      const char *name = oci_descriptor_annotation(&x.manifests[i], "org.opencontainers.image.ref.name");
      if (pick < 0 || (name && strcmp(name, CACHE_LAYOUT_TAG) == 0))
        pick = (int)i;
    }
    if (pick >= 0)
      snprintf(digest, sizeof(digest), "%s", x.manifests[pick].digest);
    oci_index_release(&x);
    if (pick < 0)
      return cb_error_set(err, "\"%s\" holds no manifest", index_path);
    s->dirfd = open(blobs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0)
      return cb_error_errno(err, errno, "open \"%s\"", blobs);
    return source_read(s, digest, -1, body, err);
  }
  if (oci_reference_parse(spec->ref, &ref, err) < 0)
    return -1;
  s->client = builder_registry_client(&run->o->registry, ref.registry, ref.repository, NULL, err);
  r = s->client ? oci_registry_manifest_get(s->client, ref.digest ? ref.digest : ref.tag, body, &mt,
                                            digest, err)
                : -1;
  oci_reference_release(&ref);
  if (r > 0)
    return 1;
  if (r == 0 && !oci_media_type_is_manifest(mt))
    return cb_error_set(err, "not a cbuild cache (a %s)", mt);
  return r;
}

/* Read one --cache-from: its entries into the store, its blobs into s. */
static int import_one(struct build_run *run, const struct builder_cache_spec *spec,
                      struct cache_source *s, struct cb_error *err)
{
  cleanup_strbuf struct strbuf body = STRBUF_INIT;
  cleanup_strbuf struct strbuf config = STRBUF_INIT;
  struct oci_manifest m;
  json_error_t je;
  json_t *root, *entries;
  int r = source_manifest(run, spec, s, &body, err);
  if (r != 0)
    return r;
  if (oci_manifest_parse(body.buf, body.len, &m, err) < 0)
    return -1;
  if (!m.config.media_type || strcmp(m.config.media_type, CACHE_MEDIA_TYPE) != 0 ||
      m.config.size > CACHE_CONFIG_MAX) {
    oci_manifest_release(&m);
    return cb_error_set(err, "not a cbuild cache (its config is \"%s\")",
                        m.config.media_type ? m.config.media_type : "untyped");
  }
  r = source_read(s, m.config.digest, m.config.size, &config, err);
  for (size_t i = 0; r == 0 && i < m.n_layers; i++)
    strvec_push(&s->digests, m.layers[i].digest);
  oci_manifest_release(&m);
  if (r < 0)
    return -1;
  strvec_sort(&s->digests);
  root = json_loadb(config.buf, config.len, 0, &je);
  entries = root ? json_object_get(root, "entries") : NULL;
  if (!json_is_array(entries)) {
    json_decref(root);
    return cb_error_set(err, "not a cbuild cache (no entries)");
  }
  /* before any entry: a COPY whose files would be hashed only with its
   * layer (cachekey.c) must look these up first */
  if (json_array_size(entries) > 0 && builder_seen_imported(run, err) < 0) {
    json_decref(root);
    return -1;
  }
  for (size_t i = 0; i < json_array_size(entries); i++) {
    struct cache_entry e, have;
    cleanup_free char *key = NULL;
    if (entry_read(json_array_get(entries, i), &key, &e, err) < 0) {
      json_decref(root);
      return -1;
    }
    /* an entry whose layer the artifact does not carry would never hit */
    if (e.layer.digest && !source_has(s, e.layer.digest) &&
        !cache_blob_exists(run->store, e.layer.digest)) {
      cache_entry_release(&e);
      continue;
    }
    r = cache_entry_get(run->store, key, &have, err);
    if (r == 0)
      cache_entry_release(&have);
    else if (r > 0)
      r = cache_entry_put(run->store, key, &e, err);
    cache_entry_release(&e);
    if (r < 0) {
      json_decref(root);
      return -1;
    }
  }
  json_decref(root);
  return 0;
}

int builder_cache_import(struct build_run *run, struct cache_import **out, struct cb_error *err)
{
  struct cache_import *ci;
  struct cache_remote remote;
  *out = NULL;
  if (!run->o->n_cache_from)
    return 0;
  ci = xcalloc(1, sizeof(*ci));
  ci->sources = xcalloc(run->o->n_cache_from, sizeof(*ci->sources));
  /* the remote first: entries whose layers it holds count as hits */
  remote.has = import_has;
  remote.fetch = import_fetch;
  remote.data = ci;
  cache_store_set_remote(run->store, &remote);
  *out = ci;
  for (size_t i = 0; i < run->o->n_cache_from; i++) {
    const struct builder_cache_spec *spec = &run->o->cache_from[i];
    struct cache_source *s = &ci->sources[ci->n++];
    int r;
    s->dirfd = -1;
    r = import_one(run, spec, s, err);
    if (r < 0)
      return cb_error_wrap(err, "import the cache from %s", spec->ref ? spec->ref : spec->dir);
    /* no cache there yet is how every shared cache starts */
    if (r > 0)
      fprintf(stderr, "cbuild: no cache at %s yet\n", spec->ref ? spec->ref : spec->dir);
  }
  return 0;
}

void builder_cache_import_end(struct build_run *run, struct cache_import *ci)
{
  if (!ci)
    return;
  cache_store_set_remote(run->store, NULL);
  for (size_t i = 0; i < ci->n; i++) {
    oci_registry_free(ci->sources[i].client);
    if (ci->sources[i].dirfd >= 0)
      close(ci->sources[i].dirfd);
    strvec_clear(&ci->sources[i].digests);
  }
  free(ci->sources);
  free(ci);
}
