/*
 * The step cache: what a build step with a given key made, so that a
 * later build with the same key skips it.
 *
 *   ROOT/cache/steps/<key hex>   {"layer": descriptor or null,
 *                                 "diff_id": ..., "config": {...}}
 *   ROOT/cache/<sub>/<hex>       small files keyed by a digest, for the
 *                                builder (what the last build of a step
 *                                saw, to explain a miss) and the stat cache
 *   ROOT/cache/.tmp-*            being written
 *
 * An entry is written whole to a temporary file and renamed into place,
 * after its layer blob is committed: a reader sees a whole entry or none,
 * and an entry whose blob has gone (pruned, or found corrupt and removed)
 * reads as a miss.  No lock is held: two builds making the same entry
 * write the same thing, and the last rename wins.  A read refreshes the
 * entry's mtime, which says when it was last used.
 */
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CACHE_DIR "cache"
#define TEMP_PREFIX ".tmp-"
/* a temporary file this old is a crashed writer's */
#define TEMP_STALE_SECONDS 3600

/* "sha256:<hex>" -> "<hex>", or NULL when it is not a digest. */
static const char *key_hex(const char *key)
{
  return oci_digest_valid(key) ? key + strlen("sha256:") : NULL;
}

static void remove_stale_temps(int dirfd)
{
  struct strvec names = STRVEC_INIT;
  time_t now = time(NULL);
  if (cb_list_dir(dirfd, ".", &names) < 0)
    return;
  for (size_t i = 0; i < names.n; i++) {
    struct stat st;
    if (cb_starts_with(names.v[i], TEMP_PREFIX) &&
        fstatat(dirfd, names.v[i], &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        now - st.st_mtime > TEMP_STALE_SECONDS)
      unlinkat(dirfd, names.v[i], 0);
  }
  strvec_clear(&names);
}

/* Write data as dir/name, whole or not at all (temporary file, rename). */
static int write_replace(struct cache_store *s, int dirfd, const char *what, const char *name,
                         const void *data, size_t n, struct cb_error *err)
{
  int cachefd = cache_store_cache_dir(s, NULL, err);
  char tmp[64];
  uint64_t r = 0;
  int fd;
  if (cachefd < 0)
    return -1;
  if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
    r = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL);
  snprintf(tmp, sizeof(tmp), TEMP_PREFIX "%016llx", (unsigned long long)r);
  fd = openat(cachefd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return cb_error_errno(err, errno, "write the %s: create \"%s/%s/%s\"", what,
                          cache_store_root(s), CACHE_DIR, tmp);
  if (cb_write_all(fd, data, n) < 0) {
    int e = errno;
    close(fd);
    unlinkat(cachefd, tmp, 0);
    return cb_error_errno(err, e, "write the %s \"%s\"", what, name);
  }
  close(fd);
  if (renameat(cachefd, tmp, dirfd, name) < 0) {
    int e = errno;
    unlinkat(cachefd, tmp, 0);
    return cb_error_errno(err, e, "write the %s \"%s\": rename", what, name);
  }
  return 0;
}

/* Read dir/name whole; 1 when it does not exist. */
static int read_whole(int dirfd, const char *name, struct strbuf *out, struct cb_error *err)
{
  cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  char buf[65536];
  ssize_t n;
  if (fd < 0)
    return errno == ENOENT ? 1 : cb_error_errno(err, errno, "open \"%s\"", name);
  while ((n = cb_read_retry(fd, buf, sizeof(buf))) > 0)
    strbuf_add(out, buf, (size_t)n);
  if (n < 0)
    return cb_error_errno(err, errno, "read \"%s\"", name);
  /* the last use, for prune */
  (void)futimens(fd, NULL);
  return 0;
}

/* ---- entries ---- */

void cache_entry_release(struct cache_entry *e)
{
  oci_descriptor_release(&e->layer);
  free(e->diff_id);
  free(e->config);
  memset(e, 0, sizeof(*e));
}

static json_t *descriptor_json(const struct oci_descriptor *d)
{
  return json_pack("{s:s, s:s, s:I}", "mediaType", d->media_type, "digest", d->digest, "size",
                   (json_int_t)d->size);
}

char *cache_entry_to_json(const char *key, const struct cache_entry *e)
{
  json_t *root, *config;
  char *text;
  config = json_loads(e->config, 0, NULL);
  if (config == NULL)
    return NULL;
  root = json_pack("{s:s, s:o, s:s?, s:o}", "key", key,
                   "layer", e->layer.digest ? descriptor_json(&e->layer) : json_null(),
                   "diff_id", e->diff_id, "config", config);
  if (root == NULL)
    cb_die("out of memory");
  text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(root);
  if (text == NULL)
    cb_die("out of memory");
  return text;
}

int cache_entry_put(struct cache_store *s, const char *key, const struct cache_entry *e,
                    struct cb_error *err)
{
  const char *hex = key_hex(key);
  cleanup_free char *text = NULL;
  int dirfd;
  if (hex == NULL)
    return cb_error_set(err, "write a cache entry: invalid key \"%s\"", key);
  text = cache_entry_to_json(key, e);
  if (text == NULL)
    return cb_error_set(err, "write a cache entry: the config is not JSON");
  dirfd = cache_store_cache_dir(s, "steps", err);
  if (dirfd < 0)
    return -1;
  return write_replace(s, dirfd, "cache entry", hex, text, strlen(text), err);
}

/* The entry's fields, checked; -1 when it is not one of ours. */
static int entry_parse(json_t *root, const char *key, struct cache_entry *e)
{
  json_t *layer = json_object_get(root, "layer");
  json_t *config = json_object_get(root, "config");
  const char *k = json_string_value(json_object_get(root, "key"));
  if (!k || strcmp(k, key) != 0 || !json_is_object(config))
    return -1;
  if (layer && !json_is_null(layer)) {
    const char *mt = json_string_value(json_object_get(layer, "mediaType"));
    const char *dg = json_string_value(json_object_get(layer, "digest"));
    const char *di = json_string_value(json_object_get(root, "diff_id"));
    json_t *size = json_object_get(layer, "size");
    if (!mt || !dg || !oci_digest_valid(dg) || !di || !oci_digest_valid(di) ||
        !json_is_integer(size) || json_integer_value(size) < 0)
      return -1;
    e->layer.media_type = xstrdup(mt);
    e->layer.digest = xstrdup(dg);
    e->layer.size = json_integer_value(size);
    e->diff_id = xstrdup(di);
  }
  e->config = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
  if (e->config == NULL)
    cb_die("out of memory");
  return 0;
}

int cache_entry_from_json(const char *json, size_t n, char **key, struct cache_entry *e)
{
  json_t *root = json_loadb(json, n, 0, NULL);
  const char *k = root ? json_string_value(json_object_get(root, "key")) : NULL;
  int r = -1;
  memset(e, 0, sizeof(*e));
  *key = NULL;
  if (k && key_hex(k) && entry_parse(root, k, e) == 0) {
    *key = xstrdup(k);
    r = 0;
  }
  json_decref(root);
  return r;
}

int cache_entry_get(struct cache_store *s, const char *key, struct cache_entry *e,
                    struct cb_error *err)
{
  const char *hex = key_hex(key);
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  int dirfd;
  json_t *root;
  int r;
  memset(e, 0, sizeof(*e));
  if (hex == NULL)
    return 1;
  dirfd = cache_store_cache_dir(s, "steps", err);
  if (dirfd < 0)
    return -1;
  r = read_whole(dirfd, hex, &text, err);
  if (r != 0)
    return r;
  root = json_loadb(text.buf, text.len, 0, NULL);
  r = root ? entry_parse(root, key, e) : -1;
  json_decref(root);
  if (r < 0) {
    /* not ours, or damaged: a miss, and out of the way */
    cache_entry_release(e);
    unlinkat(dirfd, hex, 0);
    return 1;
  }
  /* the layer must still be there (or come with an imported cache) */
  if (e->layer.digest && !cache_blob_available(s, e->layer.digest)) {
    cache_entry_release(e);
    return 1;
  }
  return 0;
}

void cache_steps_tidy(struct cache_store *s)
{
  struct cb_error e;
  int fd = cache_store_cache_dir(s, NULL, &e);
  if (fd >= 0)
    remove_stale_temps(fd);
}

/* ---- small files keyed by a digest: cache/<sub>/<hex> ---- */

int cache_file_read(struct cache_store *s, const char *sub, const char *id, struct strbuf *out,
                    struct cb_error *err)
{
  const char *hex = key_hex(id);
  int dirfd;
  if (hex == NULL)
    return 1;
  dirfd = cache_store_cache_dir(s, sub, err);
  if (dirfd < 0)
    return -1;
  return read_whole(dirfd, hex, out, err);
}

int cache_file_write(struct cache_store *s, const char *sub, const char *id, const void *data,
                     size_t n, struct cb_error *err)
{
  const char *hex = key_hex(id);
  int dirfd;
  if (hex == NULL)
    return cb_error_set(err, "write \"%s/%s/%s/%s\": invalid id", cache_store_root(s), CACHE_DIR,
                        sub, id);
  dirfd = cache_store_cache_dir(s, sub, err);
  if (dirfd < 0)
    return -1;
  return write_replace(s, dirfd, sub, hex, data, n, err);
}
