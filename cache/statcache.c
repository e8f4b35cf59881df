/*
 * The stat cache, as git's index keeps one: for each file of a build
 * context, (device, inode, size, mtime, ctime) -> content digest, so that
 * an unchanged context is re-checked by stat() alone.
 *
 *   ROOT/cache/stat/<hex of the context's id>
 *
 * holds records "dev ino size mtime_ns ctime_ns <64 hex>\t<path>\0"; a
 * path may hold any byte but NUL.  A file changed within the same clock
 * tick as the record was made could keep its stat: records younger than
 * two seconds when saved are left out (git's "racily clean" entries), and
 * such files are hashed again next time.
 */
#include "cache.h"

#include <errno.h>
#include <time.h>

#define RACY_NS (2LL * 1000000000LL)

struct stat_record {
  char *path;
  uint64_t dev, ino;
  int64_t size, mtime_ns, ctime_ns;
  char hex[65];
};

struct cache_stat_cache {
  struct cache_store *store;
  char id[OCI_DIGEST_SIZE];
  struct stat_record *recs;
  size_t n, alloc;
  size_t *slots; /* record index + 1; 0 is free */
  size_t n_slots;
  bool dirty;
};

static uint64_t path_hash(const char *s)
{
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static void slots_insert(struct cache_stat_cache *c, size_t idx)
{
  size_t mask = c->n_slots - 1;
  for (size_t i = path_hash(c->recs[idx].path) & mask;; i = (i + 1) & mask)
    if (c->slots[i] == 0) {
      c->slots[i] = idx + 1;
      return;
    }
}

static void slots_grow(struct cache_stat_cache *c)
{
  if (c->n_slots && (c->n + 1) * 2 <= c->n_slots)
    return;
  free(c->slots);
  c->n_slots = c->n_slots ? c->n_slots * 2 : 1024;
  while ((c->n + 1) * 2 > c->n_slots)
    c->n_slots *= 2;
  c->slots = xcalloc(c->n_slots, sizeof(*c->slots));
  for (size_t i = 0; i < c->n; i++)
    slots_insert(c, i);
}

static struct stat_record *find(const struct cache_stat_cache *c, const char *path)
{
  size_t mask;
  if (c->n_slots == 0)
    return NULL;
  mask = c->n_slots - 1;
  for (size_t i = path_hash(path) & mask; c->slots[i]; i = (i + 1) & mask) {
    struct stat_record *r = &c->recs[c->slots[i] - 1];
    if (strcmp(r->path, path) == 0)
      return r;
  }
  return NULL;
}

static int64_t ts_ns(const struct timespec *t)
{
  return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static void fill(struct stat_record *r, const struct stat *st)
{
  r->dev = (uint64_t)st->st_dev;
  r->ino = (uint64_t)st->st_ino;
  r->size = (int64_t)st->st_size;
  r->mtime_ns = ts_ns(&st->st_mtim);
  r->ctime_ns = ts_ns(&st->st_ctim);
}

static void add(struct cache_stat_cache *c, const char *path, const struct stat *st,
                const char *hex)
{
  struct stat_record *r;
  slots_grow(c);
  CB_GROW(c->recs, c->n + 1, c->alloc);
  r = &c->recs[c->n];
  r->path = xstrdup(path);
  fill(r, st);
  memcpy(r->hex, hex, 64);
  r->hex[64] = '\0';
  slots_insert(c, c->n++);
}

static void parse(struct cache_stat_cache *c, const char *buf, size_t len)
{
  const char *p = buf, *end = buf + len;
  while (p < end) {
    const char *nul = memchr(p, '\0', (size_t)(end - p));
    const char *tab;
    struct stat_record r;
    unsigned long long dev, ino;
    long long size, mt, ct;
    int used = 0;
    if (nul == NULL)
      break;
    tab = memchr(p, '\t', (size_t)(nul - p));
    if (tab && sscanf(p, "%llu %llu %lld %lld %lld %64[0-9a-f]%n", &dev, &ino, &size, &mt, &ct,
                      r.hex, &used) == 6 &&
        p + used == tab && strlen(r.hex) == 64 && tab[1] && !find(c, tab + 1)) {
      struct stat st;
      memset(&st, 0, sizeof(st));
      st.st_dev = (dev_t)dev;
      st.st_ino = (ino_t)ino;
      st.st_size = (off_t)size;
      st.st_mtim.tv_sec = mt / 1000000000LL;
      st.st_mtim.tv_nsec = mt % 1000000000LL;
      st.st_ctim.tv_sec = ct / 1000000000LL;
      st.st_ctim.tv_nsec = ct % 1000000000LL;
      add(c, tab + 1, &st, r.hex);
    }
    p = nul + 1;
  }
}

struct cache_stat_cache *cache_stat_load(struct cache_store *s, const char *id)
{
  struct cache_stat_cache *c = xcalloc(1, sizeof(*c));
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  struct cb_error err;
  c->store = s;
  snprintf(c->id, sizeof(c->id), "%s", id);
  /* a missing or unreadable cache is an empty one */
  if (cache_file_read(s, "stat", id, &text, &err) == 0)
    parse(c, text.buf, text.len);
  return c;
}

bool cache_stat_lookup(struct cache_stat_cache *c, const char *path, const struct stat *st,
                       char digest[OCI_DIGEST_SIZE])
{
  struct stat_record *r = find(c, path);
  struct stat_record now;
  if (r == NULL)
    return false;
  fill(&now, st);
  if (r->dev != now.dev || r->ino != now.ino || r->size != now.size ||
      r->mtime_ns != now.mtime_ns || r->ctime_ns != now.ctime_ns)
    return false;
  snprintf(digest, OCI_DIGEST_SIZE, "sha256:%s", r->hex);
  return true;
}

void cache_stat_record(struct cache_stat_cache *c, const char *path, const struct stat *st,
                       const char *digest)
{
  struct stat_record *r = find(c, path);
  const char *hex = digest + strlen("sha256:");
  c->dirty = true;
  if (r == NULL) {
    add(c, path, st, hex);
    return;
  }
  fill(r, st);
  memcpy(r->hex, hex, 64);
}

int cache_stat_save(struct cache_stat_cache *c, struct cb_error *err)
{
  cleanup_strbuf struct strbuf out = STRBUF_INIT;
  struct timespec now;
  int64_t limit;
  if (!c->dirty)
    return 0;
  clock_gettime(CLOCK_REALTIME, &now);
  limit = ts_ns(&now) - RACY_NS;
  for (size_t i = 0; i < c->n; i++) {
    const struct stat_record *r = &c->recs[i];
    if (r->mtime_ns > limit || r->ctime_ns > limit)
      continue;
    strbuf_addf(&out, "%llu %llu %lld %lld %lld %s\t", (unsigned long long)r->dev,
                (unsigned long long)r->ino, (long long)r->size, (long long)r->mtime_ns,
                (long long)r->ctime_ns, r->hex);
    strbuf_add(&out, r->path, strlen(r->path) + 1);
  }
  if (cache_file_write(c->store, "stat", c->id, out.buf, out.len, err) < 0)
    return -1;
  c->dirty = false;
  return 0;
}

void cache_stat_free(struct cache_stat_cache *c)
{
  if (c == NULL)
    return;
  for (size_t i = 0; i < c->n; i++)
    free(c->recs[i].path);
  free(c->recs);
  free(c->slots);
  free(c);
}
