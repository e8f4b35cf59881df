/*
 * Store maintenance: what the store holds (cbuild df) and removing what
 * no tag needs (cbuild prune), least recently used first.
 *
 * What a tag needs is never removed: its manifest, config and layer
 * blobs.  The rest is cache: step entries (and the layer blobs only they
 * refer to), snapshots, blobs nothing refers to, cache mounts.
 *
 * Builds hold ROOT/gc.lock shared from start to end; prune takes it
 * exclusive, so it waits for running builds and no build starts while it
 * runs: nothing a running build needs is removed, and no global lock is
 * held between builds.
 */
#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GC_LOCK "gc.lock"

int cache_build_lock(struct cache_store *s, bool exclusive, bool wait, struct cb_error *err)
{
  const char *root = cache_store_root(s);
  cleanup_free char *path = xasprintf("%s/" GC_LOCK, root);
  int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return cb_error_errno(err, errno, "open \"%s\"", path);
  while (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)) < 0) {
    int e = errno;
    if (e == EINTR)
      continue;
    close(fd);
    if (e == EWOULDBLOCK)
      return -2;
    return cb_error_errno(err, e, "lock \"%s\"", path);
  }
  return fd;
}

/* ---- what is there ---- */

struct entry_info {
  char *name; /* hex */
  char *layer;
  char *diff_id;
  char *chain; /* the diff_ids of its config, each ended by '\n' */
  int64_t size; /* the layer blob's */
  int64_t used; /* ns */
  bool keep;
};

struct snap_info {
  char *name;
  char *diff_id;
  int64_t size;
  time_t used;
  bool keep;
};

struct scan {
  struct strvec needed_blobs;   /* by tags */
  struct strvec needed_diff_ids;
  struct strvec tag_chains;     /* per tag: its diff_ids, each ended by '\n' */
  struct entry_info *entries;
  size_t n_entries, entries_alloc;
  struct snap_info *snaps;
  size_t n_snaps, snaps_alloc;
  struct strvec blobs;          /* every blob, "sha256:<hex>" */
  int64_t *blob_sizes;
  int64_t mounts_size;
  size_t n_mounts;
};

static void scan_release(struct scan *sc)
{
  strvec_clear(&sc->needed_blobs);
  strvec_clear(&sc->needed_diff_ids);
  strvec_clear(&sc->tag_chains);
  for (size_t i = 0; i < sc->n_entries; i++) {
    free(sc->entries[i].chain);
    free(sc->entries[i].name);
    free(sc->entries[i].layer);
    free(sc->entries[i].diff_id);
  }
  free(sc->entries);
  for (size_t i = 0; i < sc->n_snaps; i++) {
    free(sc->snaps[i].name);
    free(sc->snaps[i].diff_id);
  }
  free(sc->snaps);
  strvec_clear(&sc->blobs);
  free(sc->blob_sizes);
  memset(sc, 0, sizeof(*sc));
}

/* Disk use of a tree, counted in blocks as du does. */
static int64_t tree_size(int parent, const char *name)
{
  struct stat st;
  int64_t total;
  int fd;
  DIR *d;
  struct dirent *de;
  if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return 0;
  total = (int64_t)st.st_blocks * 512;
  if (!S_ISDIR(st.st_mode))
    return total;
  fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 || (d = fdopendir(fd)) == NULL) {
    if (fd >= 0)
      close(fd);
    return total;
  }
  while ((de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
      total += tree_size(dirfd(d), de->d_name);
  closedir(d);
  return total;
}

/* The names in dir but dot files; none when it does not exist. */
static void list_dir(const char *dir, struct strvec *out)
{
  struct strvec all = STRVEC_INIT;
  if (cb_list_dir(AT_FDCWD, dir, &all) == 0)
    for (size_t i = 0; i < all.n; i++)
      if (all.v[i][0] != '.')
        strvec_push(out, all.v[i]);
  strvec_clear(&all);
}

/* Remove all that ROOT/sub holds; best effort. */
static void empty_dir(const char *root, const char *sub)
{
  struct strvec names = STRVEC_INIT;
  cleanup_free char *d = xasprintf("%s/%s", root, sub);
  int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return;
  cb_list_dir(dfd, ".", &names);
  for (size_t k = 0; k < names.n; k++)
    cb_remove_tree(dfd, names.v[k]);
  close(dfd);
  strvec_clear(&names);
}

static int scan_tags(struct cache_store *s, struct scan *sc, struct cb_error *err)
{
  struct cache_tag *tags;
  size_t n;
  if (cache_tags_list(s, &tags, &n, err) < 0)
    return -1;
  for (size_t i = 0; i < n; i++) {
    cleanup_strbuf struct strbuf text = STRBUF_INIT;
    struct oci_manifest m;
    struct oci_config c;
    memset(&m, 0, sizeof(m));
    memset(&c, 0, sizeof(c));
    strvec_push(&sc->needed_blobs, tags[i].manifest.digest);
    /* a tag whose blobs are damaged keeps what can be read */
    if (cache_blob_read(s, tags[i].manifest.digest, &text, err) < 0 ||
        oci_manifest_parse(text.buf, text.len, &m, err) < 0)
      continue;
    strvec_push(&sc->needed_blobs, m.config.digest);
    for (size_t l = 0; l < m.n_layers; l++)
      strvec_push(&sc->needed_blobs, m.layers[l].digest);
    strbuf_reset(&text);
    if (cache_blob_read(s, m.config.digest, &text, err) == 0 &&
        oci_config_parse(text.buf, text.len, &c, err) == 0) {
      struct strbuf chain = STRBUF_INIT;
      for (size_t l = 0; l < c.diff_ids.n; l++) {
        strvec_push(&sc->needed_diff_ids, c.diff_ids.v[l]);
        strbuf_addf(&chain, "%s\n", c.diff_ids.v[l]);
      }
      strvec_push_nodup(&sc->tag_chains, strbuf_detach(&chain, NULL));
    }
    oci_config_release(&c);
    oci_manifest_release(&m);
  }
  cache_tags_free(tags, n);
  strvec_sort(&sc->needed_blobs);
  strvec_sort(&sc->needed_diff_ids);
  return 0;
}

static int64_t blob_size(const struct scan *sc, const char *digest)
{
  ssize_t i = strvec_bsearch(&sc->blobs, digest);
  return i >= 0 ? sc->blob_sizes[i] : 0;
}

static int scan_store(struct cache_store *s, struct scan *sc, struct cb_error *err)
{
  const char *root = cache_store_root(s);
  struct strvec names = STRVEC_INIT;
  cleanup_free char *dir = NULL;

  memset(sc, 0, sizeof(*sc));
  if (scan_tags(s, sc, err) < 0)
    return -1;

  dir = xasprintf("%s/blobs/sha256", root);
  list_dir(dir, &names);
  for (size_t i = 0; i < names.n; i++)
    strvec_pushf(&sc->blobs, "sha256:%s", names.v[i]);
  strvec_sort(&sc->blobs);
  sc->blob_sizes = xcalloc(sc->blobs.n + 1, sizeof(*sc->blob_sizes));
  for (size_t i = 0; i < sc->blobs.n; i++) {
    cleanup_free char *p = xasprintf("%s/%s", dir, sc->blobs.v[i] + strlen("sha256:"));
    struct stat st;
    if (lstat(p, &st) == 0)
      sc->blob_sizes[i] = (int64_t)st.st_size;
  }
  strvec_clear(&names);

  free(dir);
  dir = xasprintf("%s/cache/steps", root);
  list_dir(dir, &names);
  for (size_t i = 0; i < names.n; i++) {
    cleanup_free char *p = xasprintf("%s/%s", dir, names.v[i]);
    json_t *j = json_load_file(p, 0, NULL);
    struct entry_info *e;
    struct stat st;
    const char *layer = json_string_value(json_object_get(json_object_get(j, "layer"), "digest"));
    const char *diff_id = json_string_value(json_object_get(j, "diff_id"));
    CB_GROW(sc->entries, sc->n_entries + 1, sc->entries_alloc);
    e = &sc->entries[sc->n_entries++];
    memset(e, 0, sizeof(*e));
    e->name = xstrdup(names.v[i]);
    e->layer = layer && oci_digest_valid(layer) ? xstrdup(layer) : NULL;
    e->diff_id = diff_id && oci_digest_valid(diff_id) ? xstrdup(diff_id) : NULL;
    e->size = blob_size(sc, e->layer);
    {
      json_t *ids = json_object_get(json_object_get(json_object_get(j, "config"), "rootfs"),
                                    "diff_ids");
      struct strbuf chain = STRBUF_INIT;
      size_t k;
      json_t *x;
      json_array_foreach(ids, k, x) {
        if (json_string_value(x))
          strbuf_addf(&chain, "%s\n", json_string_value(x));
      }
      e->chain = strbuf_detach(&chain, NULL);
    }
    e->used = lstat(p, &st) == 0 ? (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec : 0;
    json_decref(j);
  }
  strvec_clear(&names);

  free(dir);
  dir = xasprintf("%s/snapshots", root);
  list_dir(dir, &names);
  {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (size_t i = 0; dfd >= 0 && i < names.n; i++) {
      struct snap_info *sn;
      struct stat st;
      size_t hex = strspn(names.v[i], "0123456789abcdef");
      if (hex != 64 || (names.v[i][64] && strcmp(names.v[i] + 64, "-u") != 0))
        continue; /* lock files */
      CB_GROW(sc->snaps, sc->n_snaps + 1, sc->snaps_alloc);
      sn = &sc->snaps[sc->n_snaps++];
      memset(sn, 0, sizeof(*sn));
      sn->name = xstrdup(names.v[i]);
      sn->diff_id = xasprintf("sha256:%.64s", names.v[i]);
      sn->size = tree_size(dfd, names.v[i]);
      sn->used = fstatat(dfd, names.v[i], &st, AT_SYMLINK_NOFOLLOW) == 0 ? st.st_mtime : 0;
    }
    if (dfd >= 0)
      close(dfd);
  }
  strvec_clear(&names);

  free(dir);
  dir = xasprintf("%s/mounts", root);
  {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      list_dir(dir, &names);
      sc->n_mounts = names.n;
      sc->mounts_size = tree_size(dfd, ".");
      close(dfd);
    }
  }
  strvec_clear(&names);
  return 0;
}

static void usage_of(const struct scan *sc, struct cache_usage *u)
{
  struct strvec referenced = STRVEC_INIT;
  memset(u, 0, sizeof(*u));
  for (size_t i = 0; i < sc->n_entries; i++)
    if (sc->entries[i].layer)
      strvec_push(&referenced, sc->entries[i].layer);
  strvec_sort(&referenced);
  for (size_t i = 0; i < sc->blobs.n; i++) {
    const char *b = sc->blobs.v[i];
    if (strvec_bsearch(&sc->needed_blobs, b) >= 0) {
      u->image_blobs++;
      u->image_bytes += sc->blob_sizes[i];
    } else if (strvec_bsearch(&referenced, b) >= 0) {
      u->cache_blobs++;
      u->cache_bytes += sc->blob_sizes[i];
    } else {
      u->other_blobs++;
      u->other_bytes += sc->blob_sizes[i];
    }
  }
  u->entries = sc->n_entries;
  u->snapshots = sc->n_snaps;
  for (size_t i = 0; i < sc->n_snaps; i++)
    u->snapshot_bytes += sc->snaps[i].size;
  u->mounts = sc->n_mounts;
  u->mount_bytes = sc->mounts_size;
  strvec_clear(&referenced);
}

int cache_usage(struct cache_store *s, struct cache_usage *u, struct cb_error *err)
{
  struct scan sc;
  if (scan_store(s, &sc, err) < 0) {
    scan_release(&sc);
    return -1;
  }
  usage_of(&sc, u);
  scan_release(&sc);
  return 0;
}

/* ---- prune ---- */

static int cmp_entry_used(const void *a, const void *b)
{
  const struct entry_info *x = *(struct entry_info *const *)a, *y = *(struct entry_info *const *)b;
  return x->used < y->used ? -1 : x->used > y->used;
}

/* Whether an entry is a step of a tagged image: its layers are the first
 * layers of that image's. */
static bool on_tagged_chain(const struct scan *sc, const struct entry_info *e)
{
  size_t n = strlen(e->chain);
  for (size_t t = 0; t < sc->tag_chains.n; t++)
    if (strncmp(sc->tag_chains.v[t], e->chain, n) == 0)
      return true;
  return false;
}

/* Choose the entries to keep: see cache.h. */
static void choose_entries(struct scan *sc, const struct cache_prune_options *o, time_t now)
{
  struct entry_info **cand = xcalloc(sc->n_entries + 1, sizeof(*cand));
  size_t n = 0;
  int64_t total = 0;
  for (size_t i = 0; i < sc->n_entries; i++) {
    struct entry_info *e = &sc->entries[i];
    bool tagged = on_tagged_chain(sc, e);
    bool recent = o->keep_duration >= 0 && now - e->used / 1000000000 < o->keep_duration;
    e->keep = recent || (!o->all && tagged);
    if (!e->keep)
      cand[n++] = e;
    else if (!tagged)
      total += e->size;
  }
  /* --keep-storage: the most recently used candidates stay while they fit */
  if (o->keep_storage >= 0) {
    qsort(cand, n, sizeof(*cand), cmp_entry_used);
    for (size_t k = n; k-- > 0;) {
      bool tagged = strvec_bsearch(&sc->needed_blobs, cand[k]->layer) >= 0;
      int64_t add = tagged ? 0 : cand[k]->size;
      /* (a layer a tag holds costs nothing more to keep) */
      if (total + add > o->keep_storage)
        break;
      total += add;
      cand[k]->keep = true;
    }
  }
  free(cand);
}

int cache_prune(struct cache_store *s, const struct cache_prune_options *o,
                struct cache_usage *freed, struct cb_error *err)
{
  const char *root = cache_store_root(s);
  struct scan sc;
  struct cache_usage before, after;
  struct strvec keep_blobs = STRVEC_INIT, keep_diff_ids = STRVEC_INIT;
  cleanup_close int steps = -1, blobs = -1;
  cleanup_free char *steps_dir = xasprintf("%s/cache/steps", root);
  cleanup_free char *blobs_dir = xasprintf("%s/blobs/sha256", root);
  time_t now = time(NULL);
  int rc = -1;

  if (scan_store(s, &sc, err) < 0)
    goto out;
  usage_of(&sc, &before);
  choose_entries(&sc, o, now);

  steps = open(steps_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (size_t i = 0; i < sc.n_entries; i++) {
    struct entry_info *e = &sc.entries[i];
    if (e->keep) {
      if (e->layer)
        strvec_push(&keep_blobs, e->layer);
      if (e->diff_id)
        strvec_push(&keep_diff_ids, e->diff_id);
    } else if (steps >= 0 && unlinkat(steps, e->name, 0) < 0 && errno != ENOENT) {
      cb_error_errno(err, errno, "remove \"%s/%s\"", steps_dir, e->name);
      goto out;
    }
  }
  strvec_sort(&keep_blobs);
  strvec_sort(&keep_diff_ids);

  /* blobs: what no tag and no kept entry refers to */
  blobs = open(blobs_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (size_t i = 0; blobs >= 0 && i < sc.blobs.n; i++) {
    const char *b = sc.blobs.v[i];
    if (strvec_bsearch(&sc.needed_blobs, b) >= 0 || strvec_bsearch(&keep_blobs, b) >= 0)
      continue;
    if (unlinkat(blobs, b + strlen("sha256:"), 0) < 0 && errno != ENOENT) {
      cb_error_errno(err, errno, "remove \"%s/%s\"", blobs_dir, b + strlen("sha256:"));
      goto out;
    }
  }

  /* snapshots: of the layers kept; with --all, none but recent ones */
  for (size_t i = 0; i < sc.n_snaps; i++) {
    struct snap_info *sn = &sc.snaps[i];
    bool recent = o->keep_duration >= 0 && now - sn->used < o->keep_duration;
    bool wanted = strvec_bsearch(&sc.needed_diff_ids, sn->diff_id) >= 0 ||
                  strvec_bsearch(&keep_diff_ids, sn->diff_id) >= 0;
    if (recent || (!o->all && wanted))
      continue;
    if (cache_snapshot_remove(s, sn->name, err) < 0)
      goto out;
  }

  if (o->all) {
    /* what explains misses, which steps were ever recorded (so that
     * their files are hashed before the lookup) and the stat cache are
     * cache too */
    empty_dir(root, "cache/last");
    empty_dir(root, "cache/seen");
    empty_dir(root, "cache/stat");
    empty_dir(root, "mounts");
  }
  /* whatever is left in tmp/ belongs to no running build: none runs */
  empty_dir(root, "tmp");

  scan_release(&sc);
  if (scan_store(s, &sc, err) < 0)
    goto out;
  usage_of(&sc, &after);
  memset(freed, 0, sizeof(*freed));
  freed->entries = before.entries - after.entries;
  freed->cache_blobs = before.cache_blobs + before.other_blobs - after.cache_blobs - after.other_blobs;
  freed->cache_bytes = before.cache_bytes + before.other_bytes - after.cache_bytes - after.other_bytes;
  freed->snapshots = before.snapshots - after.snapshots;
  freed->snapshot_bytes = before.snapshot_bytes - after.snapshot_bytes;
  freed->mounts = before.mounts - after.mounts;
  freed->mount_bytes = before.mount_bytes - after.mount_bytes;
  rc = 0;
out:
  strvec_clear(&keep_blobs);
  strvec_clear(&keep_diff_ids);
  scan_release(&sc);
  return rc;
}
