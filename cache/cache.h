/*
 * cache: the local store: blobs, tags and (in later issues) unpacked
 * snapshots and the step cache.
 *
 * The store is itself an OCI image layout, so other tools read it as is
 * (`skopeo inspect oci:$ROOT:app`):
 *
 *   ROOT/oci-layout            {"imageLayoutVersion": "1.0.0"}
 *   ROOT/index.json            one manifest descriptor per tag, annotated with
 *                              org.opencontainers.image.ref.name (the short
 *                              name: "app", "app:v1", "localhost:5000/x:y";
 *                              ":latest" dropped) and io.containerd.image.name
 *                              (the full name)
 *   ROOT/blobs/sha256/<hex>    content-addressed blobs
 *   ROOT/tmp/                  blobs being written, never read as blobs
 *   ROOT/lock                  flock()ed while index.json is rewritten
 *
 * A blob is written to ROOT/tmp, synced, its digest checked, and only then
 * renamed into blobs/; index.json is replaced by rename under the lock.  A
 * crash at any moment leaves at worst a stray file in tmp/.  Blobs read for
 * export or unpack are checked against their digest; a bad one is treated
 * as missing (and removed).
 */
#ifndef CBUILD_CACHE_H
#define CBUILD_CACHE_H

#include "../common/common.h"
#include "../oci/oci.h"

/*
 * The store's location: `flag` (--root) when given, else $CBUILD_ROOT, else
 * /var/lib/cbuild for root and $XDG_DATA_HOME/cbuild (or
 * ~/.local/share/cbuild) for other users.  Returns a new string, or NULL
 * with err set when no location can be found (no HOME for a user).
 */
char *cache_root(const char *flag, struct cb_error *err);

struct cache_store;

/* Open the store at root, creating its layout when missing. */
struct cache_store *cache_store_open(const char *root, struct cb_error *err);
void cache_store_close(struct cache_store *s);
const char *cache_store_root(const struct cache_store *s);
/*
 * ROOT/cache/<sub> (sub NULL: ROOT/cache), made 0700 when missing, and
 * opened once per store: the fd stays the store's, never to be closed by
 * the caller.  For the cache's own files (steps.c, statcache.c).
 */
int cache_store_cache_dir(struct cache_store *s, const char *sub, struct cb_error *err);

/* ---- blobs ---- */

/*
 * A new temporary file in the store, for a blob being written; returns its
 * fd (read-write) and path.  Hand it to cache_blob_commit(), or
 * cache_blob_abort() on failure; both close fd, and the caller frees path.
 */
int cache_blob_create(struct cache_store *s, char **path, struct cb_error *err);
/*
 * Make the temporary file at path the blob `digest`: sync it, check that
 * its content hashes to digest (unless `trusted`, when the writer already
 * hashed exactly these bytes), then rename it into blobs/.  The temporary
 * file is gone afterwards in every case.
 */
int cache_blob_commit(struct cache_store *s, int fd, const char *path, const char *digest,
                      bool trusted, struct cb_error *err);
void cache_blob_abort(struct cache_store *s, int fd, const char *path);
/* Store a small blob held in memory; out gets its digest. */
int cache_blob_put(struct cache_store *s, const void *data, size_t n, char out[OCI_DIGEST_SIZE],
                   struct cb_error *err);
bool cache_blob_exists(struct cache_store *s, const char *digest);
/* Open a blob for reading (fetched from the remote, below, when missing);
 * *size gets its size.  Not checked: for that, cache_blob_verify() or the
 * blob source below. */
int cache_blob_open(struct cache_store *s, const char *digest, int64_t *size,
                    struct cb_error *err);
/*
 * Where blobs the store lacks may come from for a while (a build importing
 * a shared cache): has() says whether the remote holds a digest, fetch()
 * writes that blob to fd (0, 1 when it has none after all, -1 with err).
 * cache_blob_open() fetches a missing blob through it, one at a time, and
 * checks it against its digest before it enters the store.  NULL unsets.
 */
struct cache_remote {
  bool (*has)(void *data, const char *digest);
  int (*fetch)(void *data, const char *digest, int fd, struct cb_error *err);
  void *data;
};
void cache_store_set_remote(struct cache_store *s, const struct cache_remote *r);
/* Whether the store has the blob, or its remote. */
bool cache_blob_available(struct cache_store *s, const char *digest);
/* Check a blob against its digest; a bad blob is removed and reported. */
int cache_blob_verify(struct cache_store *s, const char *digest, struct cb_error *err);
/* Read a (small, JSON) blob whole, checked. */
int cache_blob_read(struct cache_store *s, const char *digest, struct strbuf *out,
                    struct cb_error *err);
/*
 * A blob source for the archive writers: blobs are checked as they are
 * read (by open() before it returns; the writers, given open_unchecked(),
 * while they copy), and a bad one is removed.
 */
void cache_blob_source(struct cache_store *s, struct oci_blob_source *src);

/* ---- snapshots ----
 *
 * Each layer is also kept unpacked, once, as an overlayfs lower directory
 * (ROOT/snapshots/<diff_id hex>/), made in ROOT/tmp and renamed into place
 * when complete, so a crash never leaves a half-unpacked snapshot.  The
 * blob is checked against its digest and the result against the diff_id.
 */
int cache_snapshot_get(struct cache_store *s, const struct oci_descriptor *layer,
                       const char *diff_id, bool userxattr, char **path, struct cb_error *err);

/* ---- tags ---- */

struct cache_tag {
  char *name;                       /* the full name: docker.io/library/app:latest */
  struct oci_descriptor manifest;   /* with its annotations */
};

/*
 * Point the tag `name` (any reference Docker accepts; it is normalized) at
 * the manifest, replacing an earlier image of that name.  The manifest must
 * already be in the store.
 */
int cache_tag_set(struct cache_store *s, const char *name, const struct oci_descriptor *manifest,
                  struct cb_error *err);
/* Find a tag by any spelling of its name; 0 found, 1 not found, -1 error. */
int cache_tag_get(struct cache_store *s, const char *name, struct oci_descriptor *manifest,
                  struct cb_error *err);
/* 0 removed, 1 not found, -1 error. */
int cache_tag_remove(struct cache_store *s, const char *name, struct cb_error *err);
/* Every tag, sorted by name; free with cache_tags_free. */
int cache_tags_list(struct cache_store *s, struct cache_tag **tags, size_t *n,
                    struct cb_error *err);
void cache_tags_free(struct cache_tag *tags, size_t n);

/* ---- the step cache (steps.c) ----
 *
 * What a build step with a given key (a digest the builder computes from
 * the parent step's key and the step's inputs) made: its layer, if any,
 * and the image config after it.  Entries appear whole or not at all; one
 * whose layer blob has gone reads as a miss.
 */
struct cache_entry {
  struct oci_descriptor layer; /* digest NULL: the step made no layer */
  char *diff_id;               /* with a layer */
  char *config;                /* the image config JSON after the step */
};

/* 0 hit (e filled), 1 miss, -1 error. */
int cache_entry_get(struct cache_store *s, const char *key, struct cache_entry *e,
                    struct cb_error *err);
/* Record an entry; its layer blob must be in the store already. */
int cache_entry_put(struct cache_store *s, const char *key, const struct cache_entry *e,
                    struct cb_error *err);
void cache_entry_release(struct cache_entry *e);
/* An entry as the JSON the store keeps it in (NULL when e->config is not
 * JSON), and back: an entry read is checked as a stored one is, -1 when it
 * is not sound; *key gets its key (to free). */
char *cache_entry_to_json(const char *key, const struct cache_entry *e);
int cache_entry_from_json(const char *json, size_t n, char **key, struct cache_entry *e);
/* Remove what crashed writers left. */
void cache_steps_tidy(struct cache_store *s);

/* Small files of the builder's, keyed by a digest, in ROOT/cache/<sub>/:
 * read whole (0, or 1 when missing), written whole by rename. */
int cache_file_read(struct cache_store *s, const char *sub, const char *id, struct strbuf *out,
                    struct cb_error *err);
int cache_file_write(struct cache_store *s, const char *sub, const char *id, const void *data,
                     size_t n, struct cb_error *err);

/* ---- the stat cache (statcache.c) ----
 *
 * For the files of one build context (id: a digest naming it), (device,
 * inode, size, mtime, ctime) -> content digest, as git's index keeps:
 * an unchanged context is re-checked by stat() alone.
 */
struct stat;
struct cache_stat_cache;

struct cache_stat_cache *cache_stat_load(struct cache_store *s, const char *id);
/* The recorded digest of path, when st still matches what was recorded. */
bool cache_stat_lookup(struct cache_stat_cache *c, const char *path, const struct stat *st,
                       char digest[OCI_DIGEST_SIZE]);
void cache_stat_record(struct cache_stat_cache *c, const char *path, const struct stat *st,
                       const char *digest);
/* Write it back when anything was recorded. */
int cache_stat_save(struct cache_stat_cache *c, struct cb_error *err);
void cache_stat_free(struct cache_stat_cache *c);

/* ---- maintenance (gc.c) ---- */

/*
 * ROOT/gc.lock: builds hold it shared from start to end, prune exclusive.
 * Returns the fd to close to unlock; -2 when !wait and it is taken.
 */
int cache_build_lock(struct cache_store *s, bool exclusive, bool wait, struct cb_error *err);

/* What the store holds: blobs tags need, blobs only cache entries need,
 * blobs nothing refers to; entries, snapshots and cache mounts. */
struct cache_usage {
  size_t image_blobs, cache_blobs, other_blobs;
  int64_t image_bytes, cache_bytes, other_bytes;
  size_t entries;
  size_t snapshots;
  int64_t snapshot_bytes;
  size_t mounts;
  int64_t mount_bytes;
};
int cache_usage(struct cache_store *s, struct cache_usage *u, struct cb_error *err);

/*
 * Remove cache: step entries not used for keep_duration seconds (-1: any),
 * those that are no step of a tagged image (or all of them, with `all`), oldest
 * first, keeping the most recently used ones whose layers fit in
 * keep_storage bytes (-1: no such limit); then the blobs nothing kept
 * refers to, the snapshots of layers nothing kept uses (all, with `all`),
 * and with `all` the cache mounts and the records that explain misses.
 * What a tag needs stays.  Hold cache_build_lock() exclusive around it.
 * freed gets what went.
 */
struct cache_prune_options {
  bool all;
  long long keep_storage;
  int64_t keep_duration;
};
int cache_prune(struct cache_store *s, const struct cache_prune_options *o,
                struct cache_usage *freed, struct cb_error *err);
/* Remove snapshots/<name>, whole or not at all. */
int cache_snapshot_remove(struct cache_store *s, const char *name, struct cb_error *err);

#endif
