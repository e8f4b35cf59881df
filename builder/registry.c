/*
 * Images between the store and registries: pull (FROM's fallback and
 * `cbuild pull`) and push (`cbuild push`, `build --push`).  Blobs move a
 * few at a time in parallel; each is checked against its digest before it
 * enters the store, and a tag is set only once everything it needs is in.
 *
 * The store remembers which repositories of a registry hold a blob
 * (ROOT/cache/blob-sources/<hex>, one "registry/repository" per line), so
 * a push can mount it from there instead of uploading it again.
 */
#include "builder-internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define TRANSFER_THREADS 3
#define SOURCES_DIR "blob-sources"
#define SOURCES_MAX 16

bool builder_registry_option(struct builder_registry *r, int opt, const char *arg)
{
  switch (opt) {
  case BUILDER_OPT_AUTHFILE:
    free(r->authfile);
    r->authfile = xstrdup(arg);
    return true;
  case BUILDER_OPT_INSECURE_REGISTRY:
    strvec_push(&r->insecure, arg);
    return true;
  case BUILDER_OPT_TLS_CA_CERT:
    free(r->ca_cert);
    r->ca_cert = xstrdup(arg);
    return true;
  default:
    return false;
  }
}

void builder_registry_release(struct builder_registry *r)
{
  strvec_clear(&r->insecure);
  free(r->ca_cert);
  free(r->authfile);
  free(r->platform);
  memset(r, 0, sizeof(*r));
}

int builder_pull_policy_parse(const char *s, enum builder_pull_policy *p)
{
  if (strcmp(s, "always") == 0 || strcmp(s, "true") == 0)
    *p = BUILDER_PULL_ALWAYS;
  else if (strcmp(s, "missing") == 0 || strcmp(s, "false") == 0)
    *p = BUILDER_PULL_MISSING;
  else if (strcmp(s, "never") == 0)
    *p = BUILDER_PULL_NEVER;
  else
    return -1;
  return 0;
}

struct oci_registry *builder_registry_client(const struct builder_registry *reg,
                                             const char *registry, const char *repository,
                                             const struct oci_credentials *creds,
                                             struct cb_error *err)
{
  struct oci_registry_options o = { 0 };
  o.insecure = &reg->insecure;
  o.ca_cert = reg->ca_cert;
  o.authfile = reg->authfile;
  o.credentials = creds;
  o.retries = -1;
  o.user_agent = "cbuild/" CBUILD_VERSION;
  return oci_registry_new(registry, repository, &o, err);
}

/* ---- blob sources ---- */

static void sources_read(struct cache_store *store, const char *digest, struct strvec *out)
{
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  struct cb_error ignored;
  char *line, *save = NULL;
  if (cache_file_read(store, SOURCES_DIR, digest, &text, &ignored) != 0)
    return;
  for (line = strtok_r(text.buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    if (*line && out->n < SOURCES_MAX)
      strvec_push(out, line);
}

/* Remember that registry/repository holds digest (newest first, bounded). */
static void sources_add(struct cache_store *store, const char *digest, const char *where)
{
  cleanup_strvec struct strvec v = STRVEC_INIT;
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  struct cb_error ignored;
  sources_read(store, digest, &v);
  strbuf_addf(&text, "%s\n", where);
  for (size_t i = 0; i < v.n && i + 1 < SOURCES_MAX; i++)
    if (strcmp(v.v[i], where) != 0)
      strbuf_addf(&text, "%s\n", v.v[i]);
  /* only a hint for later pushes: a failure to write it changes nothing */
  cache_file_write(store, SOURCES_DIR, digest, text.buf, text.len, &ignored);
}

/* ---- progress: one line on a terminal, updated as bytes move ---- */

struct transfer_progress {
  const char *verb; /* "pull", "push" */
  const char *what; /* "127.0.0.1:5000/app:v1" */
  bool tty;
  pthread_mutex_t lock;
  int64_t total, *done; /* per blob */
  size_t n_blobs, finished;
  struct timespec last;
};

static double mib(int64_t n)
{
  return (double)n / (1024.0 * 1024.0);
}

static void progress_show(struct transfer_progress *tp, bool force)
{
  struct timespec now;
  int64_t done = 0;
  if (!tp->tty)
    return;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (!force && (now.tv_sec - tp->last.tv_sec) * 1000 + (now.tv_nsec - tp->last.tv_nsec) / 1000000 < 100)
    return;
  tp->last = now;
  for (size_t i = 0; i < tp->n_blobs; i++)
    done += tp->done[i];
  fprintf(stderr, "\r\033[K%s %s: %zu/%zu blobs, %.1f/%.1f MiB", tp->verb, tp->what,
          tp->finished, tp->n_blobs, mib(done), mib(tp->total));
  fflush(stderr);
}

struct blob_job {
  struct transfer_progress *tp;
  size_t index;
};

static void on_progress(void *data, int64_t done, int64_t total)
{
  struct blob_job *j = data;
  pthread_mutex_lock(&j->tp->lock);
  j->tp->done[j->index] = done;
  progress_show(j->tp, false);
  pthread_mutex_unlock(&j->tp->lock);
}

static void progress_finish_blob(struct transfer_progress *tp, size_t i, int64_t size)
{
  pthread_mutex_lock(&tp->lock);
  tp->done[i] = size;
  tp->finished++;
  progress_show(tp, false);
  pthread_mutex_unlock(&tp->lock);
}

static void progress_init(struct transfer_progress *tp, const char *verb, const char *what,
                          const struct builder_registry *reg, const struct oci_descriptor *blobs,
                          size_t n)
{
  memset(tp, 0, sizeof(*tp));
  tp->verb = verb;
  tp->what = what;
  tp->tty = !reg->quiet && isatty(STDERR_FILENO);
  pthread_mutex_init(&tp->lock, NULL);
  tp->done = xcalloc(n + 1, sizeof(*tp->done));
  tp->n_blobs = n;
  for (size_t i = 0; i < n; i++)
    tp->total += blobs[i].size;
}

static void progress_end(struct transfer_progress *tp)
{
  if (tp->tty) {
    progress_show(tp, true);
    fputc('\n', stderr);
  }
  free(tp->done);
  pthread_mutex_destroy(&tp->lock);
}

/* ---- parallel blob transfers ---- */

struct transfer {
  struct cache_store *store;
  struct oci_registry *client;
  const struct oci_reference *ref;
  const struct oci_descriptor *blobs;
  size_t n;
  atomic_size_t next;
  atomic_bool failed;
  pthread_mutex_t err_lock;
  struct cb_error err;
  struct transfer_progress progress;
  int (*one)(struct transfer *t, size_t i, struct cb_error *err);
};

static void *transfer_worker(void *p)
{
  struct transfer *t = p;
  for (;;) {
    size_t i = atomic_fetch_add(&t->next, 1);
    struct cb_error err;
    if (i >= t->n || atomic_load(&t->failed))
      return NULL;
    if (t->one(t, i, &err) < 0) {
      pthread_mutex_lock(&t->err_lock);
      if (!atomic_exchange(&t->failed, true))
        t->err = err;
      pthread_mutex_unlock(&t->err_lock);
      return NULL;
    }
    progress_finish_blob(&t->progress, i, t->blobs[i].size);
  }
}

/* Run t->one over every blob, a few at a time; the first error wins. */
static int transfer_run(struct transfer *t, struct cb_error *err)
{
  pthread_t threads[TRANSFER_THREADS];
  size_t n_threads = t->n < TRANSFER_THREADS ? t->n : TRANSFER_THREADS, started = 0;
  atomic_init(&t->next, 0);
  atomic_init(&t->failed, false);
  pthread_mutex_init(&t->err_lock, NULL);
  for (; started + 1 < n_threads; started++)
    if (pthread_create(&threads[started], NULL, transfer_worker, t) != 0)
      break;
  transfer_worker(t);
  for (size_t i = 0; i < started; i++)
    pthread_join(threads[i], NULL);
  pthread_mutex_destroy(&t->err_lock);
  if (atomic_load(&t->failed)) {
    *err = t->err;
    return -1;
  }
  return 0;
}

/* Move blobs with `one`, showing progress as "VERB DISPLAY: ...". */
static int transfer_all(struct cache_store *store, struct oci_registry *client,
                        const struct oci_reference *ref, const struct builder_registry *reg,
                        const char *verb, const char *display, const struct oci_descriptor *blobs,
                        size_t n, int (*one)(struct transfer *t, size_t i, struct cb_error *err),
                        struct cb_error *err)
{
  struct transfer t;
  int r;
  memset(&t, 0, sizeof(t));
  t.store = store;
  t.client = client;
  t.ref = ref;
  t.blobs = blobs;
  t.n = n;
  t.one = one;
  progress_init(&t.progress, verb, display, reg, blobs, n);
  r = transfer_run(&t, err);
  progress_end(&t.progress);
  return r;
}

/* The blobs a manifest names, its config first (not owned: m's). */
static struct oci_descriptor *manifest_blobs(const struct oci_manifest *m)
{
  struct oci_descriptor *blobs = xcalloc(m->n_layers + 1, sizeof(*blobs));
  blobs[0] = m->config;
  for (size_t i = 0; i < m->n_layers; i++)
    blobs[i + 1] = m->layers[i];
  return blobs;
}

/* ---- pull ---- */

static int pull_blob(struct transfer *t, size_t i, struct cb_error *err)
{
  const struct oci_descriptor *d = &t->blobs[i];
  struct blob_job job = { &t->progress, i };
  cleanup_free char *path = NULL;
  int fd;
  if (cache_blob_exists(t->store, d->digest))
    return 0;
  fd = cache_blob_create(t->store, &path, err);
  if (fd < 0)
    return -1;
  if (oci_registry_blob_get(t->client, d->digest, d->size, fd, on_progress, &job, err) < 0) {
    cache_blob_abort(t->store, fd, path);
    return -1;
  }
  /* the client hashed exactly these bytes as they arrived */
  if (cache_blob_commit(t->store, fd, path, d->digest, true, err) < 0)
    return -1;
  {
    cleanup_free char *where = xasprintf("%s/%s", t->ref->registry, t->ref->repository);
    sources_add(t->store, d->digest, where);
  }
  return 0;
}

/* Keep a manifest or index as the registry sent it; its digest was checked. */
static int put_json_blob(struct cache_store *store, const struct strbuf *body, const char *digest,
                         struct cb_error *err)
{
  char got[OCI_DIGEST_SIZE];
  if (cache_blob_put(store, body->buf, body->len, got, err) < 0)
    return -1;
  if (strcmp(got, digest) != 0)
    return cb_error_set(err, "stored manifest %s as %s", digest, got);
  return 0;
}

/* The tag-only form of a reference, for the store's tags. */
static char *tag_name(const struct oci_reference *ref)
{
  struct oci_reference t = *ref;
  t.digest = NULL;
  return oci_reference_string(&t);
}

int builder_pull(struct cache_store *store, const struct builder_registry *reg, const char *name,
                 const char *platform, struct oci_descriptor *manifest, struct cb_error *err)
{
  struct oci_reference ref;
  struct oci_registry *client;
  cleanup_strbuf struct strbuf body = STRBUF_INIT;
  cleanup_free char *media_type = NULL;
  cleanup_free char *display = NULL;
  char digest[OCI_DIGEST_SIZE];
  struct oci_manifest m;
  struct oci_descriptor *blobs = NULL;
  int r, ret = -1;

  memset(manifest, 0, sizeof(*manifest));
  memset(&m, 0, sizeof(m));
  if (oci_reference_parse(name, &ref, err) < 0)
    return -1;
  if (!platform)
    platform = reg->platform ? reg->platform : parser_host_platform();
  display = oci_reference_familiar(&ref);
  client = builder_registry_client(reg, ref.registry, ref.repository, NULL, err);
  if (!client)
    goto out;
  r = oci_registry_manifest_get(client, ref.digest ? ref.digest : ref.tag, &body, &media_type,
                                digest, err);
  if (r > 0)
    cb_error_set(err, "manifest unknown: %s has no \"%s\"", oci_registry_name(client),
                 ref.digest ? ref.digest : ref.tag);
  if (r != 0)
    goto out;
  if (oci_media_type_is_index(media_type)) {
    struct oci_index x;
    int i;
    if (oci_index_parse(body.buf, body.len, &x, err) < 0)
      goto out;
    i = oci_index_select_platform(&x, platform, err);
    if (i >= 0 && ref.digest && put_json_blob(store, &body, digest, err) < 0)
      i = -1;
    if (i < 0) {
      oci_index_release(&x);
      goto out;
    }
    {
      cleanup_free char *child = xstrdup(x.manifests[i].digest);
      oci_index_release(&x);
      free(media_type);
      media_type = NULL;
      r = oci_registry_manifest_get(client, child, &body, &media_type, digest, err);
      if (r > 0)
        cb_error_set(err, "manifest unknown: %s has no \"%s\" (the index names it)",
                     oci_registry_name(client), child);
      if (r != 0)
        goto out;
    }
    if (!oci_media_type_is_manifest(media_type)) {
      cb_error_set(err, "the index entry for \"%s\" is not an image manifest", platform);
      goto out;
    }
  }
  if (oci_manifest_parse(body.buf, body.len, &m, err) < 0)
    goto out;

  blobs = manifest_blobs(&m);
  r = transfer_all(store, client, &ref, reg, "pull", display, blobs, m.n_layers + 1, pull_blob,
                   err);
  if (r < 0 || put_json_blob(store, &body, digest, err) < 0)
    goto out;

  manifest->media_type = xstrdup(media_type);
  manifest->digest = xstrdup(digest);
  manifest->size = (int64_t)body.len;
  if (ref.tag) {
    cleanup_free char *tag = tag_name(&ref);
    if (cache_tag_set(store, tag, manifest, err) < 0) {
      oci_descriptor_release(manifest);
      goto out;
    }
  }
  ret = 0;
out:
  if (ret < 0)
    cb_error_wrap(err, "pull \"%s\"", display ? display : name);
  free(blobs);
  oci_manifest_release(&m);
  oci_registry_free(client);
  oci_reference_release(&ref);
  return ret;
}

/* A digest's blob in the store: a manifest, or an index to choose from. */
static int resolve_digest(struct cache_store *store, const char *digest, const char *platform,
                          struct oci_descriptor *manifest, struct cb_error *err)
{
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  cleanup_free char *mt = NULL;
  struct oci_index x;
  int i;
  if (!cache_blob_exists(store, digest))
    return 1;
  if (cache_blob_read(store, digest, &text, err) < 0)
    return -1;
  mt = oci_media_type_of_json(text.buf, text.len);
  if (!oci_media_type_is_index(mt)) {
    manifest->media_type = xstrdup(mt ? mt : OCI_MEDIA_TYPE_MANIFEST);
    manifest->digest = xstrdup(digest);
    manifest->size = (int64_t)text.len;
    return 0;
  }
  if (oci_index_parse(text.buf, text.len, &x, err) < 0)
    return -1;
  i = oci_index_select_platform(&x, platform, err);
  if (i >= 0 && !cache_blob_exists(store, x.manifests[i].digest))
    i = -2;
  if (i >= 0)
    oci_descriptor_copy(manifest, &x.manifests[i]);
  oci_index_release(&x);
  return i == -2 ? 1 : i < 0 ? -1 : 0;
}

int builder_image_resolve(struct cache_store *store, const struct builder_registry *reg,
                          const char *name, const char *platform,
                          struct oci_descriptor *manifest, struct cb_error *err)
{
  struct oci_reference ref;
  int r;
  memset(manifest, 0, sizeof(*manifest));
  if (oci_reference_parse(name, &ref, err) < 0)
    return -1;
  if (!platform)
    platform = reg && reg->platform ? reg->platform : parser_host_platform();
  if (ref.digest)
    r = resolve_digest(store, ref.digest, platform, manifest, err);
  else if (reg && reg->pull == BUILDER_PULL_ALWAYS)
    r = 1;
  else
    r = cache_tag_get(store, name, manifest, err);
  oci_reference_release(&ref);
  if (r != 1)
    return r;
  if (!reg || reg->pull == BUILDER_PULL_NEVER)
    return 1;
  return builder_pull(store, reg, name, platform, manifest, err) < 0 ? -1 : 0;
}

/* ---- push ---- */

static int push_blob(struct transfer *t, size_t i, struct cb_error *err)
{
  const struct oci_descriptor *d = &t->blobs[i];
  struct blob_job job = { &t->progress, i };
  cleanup_strvec struct strvec sources = STRVEC_INIT;
  cleanup_free char *here = xasprintf("%s/%s", t->ref->registry, t->ref->repository);
  size_t reg_len = strlen(t->ref->registry);
  cleanup_close int fd = -1;
  int64_t size;
  int r = oci_registry_blob_exists(t->client, d->digest, err);
  if (r < 0)
    return -1;
  if (r == 0)
    goto done;
  /* another repository of this registry may hold it */
  sources_read(t->store, d->digest, &sources);
  for (size_t k = 0; k < sources.n; k++) {
    const char *s = sources.v[k];
    if (strncmp(s, t->ref->registry, reg_len) != 0 || s[reg_len] != '/' ||
        strcmp(s, here) == 0)
      continue;
    r = oci_registry_blob_mount(t->client, d->digest, s + reg_len + 1, err);
    if (r < 0)
      return -1;
    if (r == 0)
      goto done;
  }
  /* the registry checks the digest of what it receives: a blob gone bad
   * in the store is refused there, and nothing is published */
  fd = cache_blob_open(t->store, d->digest, &size, err);
  if (fd < 0)
    return -1;
  if (d->size >= 0 && size != d->size)
    return cb_error_set(err, "blob %s is %lld bytes in the store, the manifest says %lld",
                        d->digest, (long long)size, (long long)d->size);
  if (oci_registry_blob_put(t->client, d->digest, size, fd, on_progress, &job, err) < 0)
    return -1;
done:
  sources_add(t->store, d->digest, here);
  return 0;
}

int builder_push_manifest(struct cache_store *store, const struct builder_registry *reg,
                          const struct oci_descriptor *desc, const char *dest,
                          char digest[OCI_DIGEST_SIZE], struct cb_error *err)
{
  struct oci_reference ref;
  struct oci_manifest m;
  struct oci_registry *client = NULL;
  cleanup_strbuf struct strbuf body = STRBUF_INIT;
  cleanup_free char *display = NULL;
  struct oci_descriptor *blobs = NULL;
  int ret = -1;

  memset(&m, 0, sizeof(m));
  if (oci_reference_parse(dest, &ref, err) < 0)
    return cb_error_wrap(err, "push");
  display = oci_reference_familiar(&ref);
  if (cache_blob_read(store, desc->digest, &body, err) < 0 ||
      oci_manifest_parse(body.buf, body.len, &m, err) < 0)
    goto out;
  client = builder_registry_client(reg, ref.registry, ref.repository, NULL, err);
  if (!client)
    goto out;
  blobs = manifest_blobs(&m);
  if (transfer_all(store, client, &ref, reg, "push", display, blobs, m.n_layers + 1, push_blob,
                   err) < 0)
    goto out;
  /* the manifest last, under the tag (or its own digest) */
  if (oci_registry_manifest_put(client, ref.digest && !ref.tag ? ref.digest : ref.tag,
                                desc->media_type ? desc->media_type : OCI_MEDIA_TYPE_MANIFEST,
                                body.buf, body.len, digest, err) < 0)
    goto out;
  if (ref.digest && strcmp(ref.digest, digest) != 0) {
    cb_error_set(err, "the image's digest is %s, not %s", digest, ref.digest);
    goto out;
  }
  ret = 0;
out:
  if (ret < 0)
    cb_error_wrap(err, "push \"%s\"", display ? display : dest);
  free(blobs);
  oci_manifest_release(&m);
  oci_registry_free(client);
  oci_reference_release(&ref);
  return ret;
}

int builder_push(struct cache_store *store, const struct builder_registry *reg, const char *name,
                 const char *dest, char digest[OCI_DIGEST_SIZE], struct cb_error *err)
{
  struct oci_descriptor desc;
  int r = builder_image_resolve(store, NULL, name, NULL, &desc, err);
  if (r > 0)
    cb_error_set(err, "no image \"%s\" in the store", name);
  if (r != 0)
    return cb_error_wrap(err, "push \"%s\"", dest ? dest : name);
  r = builder_push_manifest(store, reg, &desc, dest ? dest : name, digest, err);
  oci_descriptor_release(&desc);
  return r;
}
