/*
 * The local store: an OCI image layout with a lock file and a tmp/ dir.
 *
 * Every file is reached relative to a directory fd held open from
 * cache_store_open(), by one path component at a time with O_NOFOLLOW, so
 * a symlink planted inside the store is never followed and a name built
 * from a digest (validated first) cannot climb out of blobs/sha256.  With
 * single components and O_NOFOLLOW there is nothing left for openat2's
 * RESOLVE_* flags to do, and so no fallback path to get wrong.
 */
#include "cache.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STORE_DIR_MODE 0755
#define STORE_FILE_MODE 0644
#define SHA256_PREFIX "sha256:"
/* Temporary files left by a crash are removed once this old. */
#define STALE_TEMP_SECONDS 3600

static const char *const temp_prefixes[] = { "blob-", "index-", "layout-" };

/* cache/ and each of the cache's subdirectories: cache_store_cache_dir */
#define STORE_KEPT_DIRS 8

struct kept_dir {
  char *sub; /* NULL: ROOT/cache itself */
  int fd;
};

struct cache_store {
  char *root;
  int root_fd;
  int blobs_fd; /* ROOT/blobs/sha256 */
  int tmp_fd;   /* ROOT/tmp */
  struct oci_checked_source checked; /* for cache_blob_source() */
  struct cache_remote remote;        /* has == NULL: none */
  pthread_mutex_t remote_lock;       /* one fetch at a time */
  /* Blob files this process verified and renamed into place, by inode:
   * the archive writers copy those without hashing them again. */
  struct committed_blob *committed;
  size_t n_committed, alloc_committed;
  pthread_mutex_t committed_lock;
  /* ROOT/cache and its subdirectories, opened once (cache_store_cache_dir) */
  struct kept_dir kept[STORE_KEPT_DIRS];
  size_t n_kept;
  pthread_mutex_t kept_lock;
};

struct committed_blob {
  char digest[OCI_DIGEST_SIZE];
  dev_t dev;
  ino_t ino;
  off_t size;
  struct timespec ctime; /* a write or chmod since changes it */
};

static int blob_source_open_unchecked(void *data, const char *digest, int64_t *size,
                                      struct cb_error *err);
static int blob_source_corrupt(void *data, const char *digest, int fd, const char *got,
                               struct cb_error *err);
static bool blob_source_verified(void *data, const char *digest, int fd);

/* ---- small file helpers ---- */

static int fsync_retry(int fd)
{
  int r;
  do
    r = fsync(fd);
  while (r < 0 && errno == EINTR);
  return r;
}

/*
 * Open the regular file `name` in dirfd, refusing a symlink and anything
 * that is not a regular file.  O_NONBLOCK keeps a planted FIFO from
 * blocking the open; it is cleared again once the type is known.
 */
static int open_regular(int dirfd, const char *name, struct stat *st)
{
  int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
  int flags;
  if (fd < 0)
    return -1;
  if (fstat(fd, st) < 0)
    goto fail;
  if (!S_ISREG(st->st_mode)) {
    close(fd);
    errno = S_ISDIR(st->st_mode) ? EISDIR : EINVAL;
    return -1;
  }
  flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
    goto fail;
  return fd;
fail: {
  int e = errno;
  close(fd);
  errno = e;
  return -1;
}
}

/* Describe an open failure; ELOOP means O_NOFOLLOW met a symlink. */
static int open_error(struct cb_error *err, int e, const char *what, const char *root)
{
  if (e == ELOOP)
    return cb_error_set(err, "open %s in store \"%s\": it is a symbolic link", what, root);
  return cb_error_errno(err, e, "open %s in store \"%s\"", what, root);
}

/* A fresh random temporary name: prefix and 16 hex digits. */
static void temp_name(char *buf, size_t size, const char *prefix)
{
  static unsigned counter;
  uint64_t r;
  if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r = ((uint64_t)getpid() << 40) ^ ((uint64_t)ts.tv_nsec << 8) ^ (uint64_t)ts.tv_sec ^
        (uint64_t)++counter;
  }
  snprintf(buf, size, "%s%016llx", prefix, (unsigned long long)r);
}

/* Create a new temporary file in tmp/; name gets its name. */
static int temp_create(struct cache_store *s, const char *prefix, char *name, size_t size,
                       struct cb_error *err)
{
  for (int tries = 0; tries < 100; tries++) {
    int fd;
    temp_name(name, size, prefix);
    fd = openat(s->tmp_fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                STORE_FILE_MODE);
    if (fd >= 0)
      return fd;
    if (errno != EEXIST)
      return cb_error_errno(err, errno, "create a temporary file in \"%s/tmp\"", s->root);
  }
  return cb_error_set(err, "create a temporary file in \"%s/tmp\": no free name", s->root);
}

/*
 * Write data to a new file and rename it to `name` in the root: readers see
 * the old content or the new one, and never a part.
 */
static int replace_file(struct cache_store *s, const char *name, const char *data, size_t n,
                        struct cb_error *err)
{
  char tmp[64];
  cleanup_close int fd = temp_create(s, strcmp(name, "index.json") == 0 ? "index-" : "layout-",
                                     tmp, sizeof(tmp), err);
  if (fd < 0)
    return cb_error_wrap(err, "write \"%s\"", name);
  if (cb_write_all(fd, data, n) < 0 || fsync_retry(fd) < 0) {
    cb_error_errno(err, errno, "write \"%s/tmp/%s\"", s->root, tmp);
    goto fail;
  }
  if (renameat(s->tmp_fd, tmp, s->root_fd, name) < 0) {
    cb_error_errno(err, errno, "rename \"tmp/%s\" to \"%s\" in store \"%s\"", tmp, name,
                   s->root);
    goto fail;
  }
  if (fsync_retry(s->root_fd) < 0)
    return cb_error_errno(err, errno, "sync store \"%s\"", s->root);
  return 0;
fail:
  unlinkat(s->tmp_fd, tmp, 0);
  return -1;
}

/* ---- the lock ---- */

/*
 * Lock ROOT/lock, shared or exclusive; close the returned fd to unlock.
 * The file is opened afresh each time: flock() belongs to the open file
 * description, which a forked child shares with its parent, so a lock fd
 * kept in the store would not keep two such processes apart.
 */
static int store_lock(struct cache_store *s, int op, struct cb_error *err)
{
  int fd = openat(s->root_fd, "lock", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
  if (fd < 0 && errno == ENOENT)
    fd = openat(s->root_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
                STORE_FILE_MODE);
  if (fd < 0)
    return open_error(err, errno, "\"lock\"", s->root);
  while (flock(fd, op) < 0) {
    if (errno != EINTR) {
      int e = errno;
      close(fd);
      return cb_error_errno(err, e, "lock \"%s/lock\"", s->root);
    }
  }
  return fd;
}

/* ---- opening ---- */

/* Open the directory `name` in parent, creating it when missing. */
static int open_subdir(int parent, const char *name, const char *what, const char *root,
                       struct cb_error *err)
{
  int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    if (mkdirat(parent, name, STORE_DIR_MODE) < 0 && errno != EEXIST)
      return cb_error_errno(err, errno, "create %s in store \"%s\"", what, root);
    /* The new entry must survive a crash as long as what it will hold. */
    fsync_retry(parent);
    fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0)
    return open_error(err, errno, what, root);
  return fd;
}

/* mkdir -p root; root itself may be reached through symlinks (the user's choice). */
/*
 * Create the file `name` with content data unless something is there; what
 * is there must be a regular file.  Done under the lock so that a store
 * opened twice at once never replaces an index.json holding new tags.
 */
static int ensure_file(struct cache_store *s, const char *name, const char *data,
                       struct cb_error *err)
{
  struct stat st;
  if (fstatat(s->root_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISREG(st.st_mode))
      return cb_error_set(err, "open store \"%s\": \"%s\" is not a regular file", s->root,
                          name);
    return 0;
  }
  if (errno != ENOENT)
    return cb_error_errno(err, errno, "open \"%s\" in store \"%s\"", name, s->root);
  return replace_file(s, name, data, strlen(data), err);
}

static bool is_temp_name(const char *name)
{
  for (size_t i = 0; i < CB_ARRAY_SIZE(temp_prefixes); i++)
    if (cb_starts_with(name, temp_prefixes[i]))
      return true;
  return false;
}

/*
 * Remove temporary files a crashed process left behind.  Best effort: a
 * failure here never fails the open.  A writer touches its file with every
 * write, so only a file idle for an hour is taken for abandoned.
 */
static void remove_stale_temps(struct cache_store *s)
{
  struct strvec names = STRVEC_INIT;
  time_t now = time(NULL);
  if (cb_list_dir(s->tmp_fd, ".", &names) < 0)
    return;
  for (size_t i = 0; i < names.n; i++) {
    struct stat st;
    if (!is_temp_name(names.v[i]))
      continue;
    if (fstatat(s->tmp_fd, names.v[i], &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
      continue;
    if (st.st_mtime < now - STALE_TEMP_SECONDS)
      unlinkat(s->tmp_fd, names.v[i], 0);
  }
  strvec_clear(&names);
}

struct cache_store *cache_store_open(const char *root, struct cb_error *err)
{
  struct cache_store *s;
  cleanup_free char *empty_index = NULL;
  int blobs_fd, lock_fd, r;

  if (root == NULL || *root == '\0') {
    cb_error_set(err, "open store: empty path");
    return NULL;
  }
  s = xcalloc(1, sizeof(*s));
  s->root = xstrdup(root);
  s->root_fd = s->blobs_fd = s->tmp_fd = -1;
  pthread_mutex_init(&s->remote_lock, NULL);
  pthread_mutex_init(&s->committed_lock, NULL);
  pthread_mutex_init(&s->kept_lock, NULL);
  s->checked.open_unchecked = blob_source_open_unchecked;
  s->checked.corrupt = blob_source_corrupt;
  s->checked.verified = blob_source_verified;
  s->checked.data = s;

  s->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->root_fd < 0 && errno == ENOENT) {
    if (cb_mkdir_p(root, STORE_DIR_MODE, err) < 0) {
      cb_error_wrap(err, "create store \"%s\"", root);
      goto fail;
    }
    s->root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  if (s->root_fd < 0) {
    cb_error_errno(err, errno, "open store \"%s\"", root);
    goto fail;
  }
  blobs_fd = open_subdir(s->root_fd, "blobs", "\"blobs\"", root, err);
  if (blobs_fd < 0)
    goto fail;
  s->blobs_fd = open_subdir(blobs_fd, "sha256", "\"blobs/sha256\"", root, err);
  close(blobs_fd);
  if (s->blobs_fd < 0)
    goto fail;
  s->tmp_fd = open_subdir(s->root_fd, "tmp", "\"tmp\"", root, err);
  if (s->tmp_fd < 0)
    goto fail;

  lock_fd = store_lock(s, LOCK_EX, err);
  if (lock_fd < 0)
    goto fail;
  {
    struct oci_index none = { NULL, 0 };
    empty_index = oci_index_json(&none);
  }
  r = ensure_file(s, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}", err);
  if (r == 0)
    r = ensure_file(s, "index.json", empty_index, err);
  close(lock_fd);
  if (r < 0)
    goto fail;

  remove_stale_temps(s);
  return s;
fail:
  cache_store_close(s);
  return NULL;
}

void cache_store_close(struct cache_store *s)
{
  if (s == NULL)
    return;
  pthread_mutex_destroy(&s->remote_lock);
  pthread_mutex_destroy(&s->committed_lock);
  free(s->committed);
  pthread_mutex_destroy(&s->kept_lock);
  for (size_t i = 0; i < s->n_kept; i++) {
    free(s->kept[i].sub);
    close(s->kept[i].fd);
  }
  if (s->root_fd >= 0)
    close(s->root_fd);
  if (s->blobs_fd >= 0)
    close(s->blobs_fd);
  if (s->tmp_fd >= 0)
    close(s->tmp_fd);
  free(s->root);
  free(s);
}

const char *cache_store_root(const struct cache_store *s) { return s->root; }

/* Look sub up among the kept directories; -1 when not kept yet. */
static int kept_find(struct cache_store *s, const char *sub)
{
  for (size_t i = 0; i < s->n_kept; i++)
    if (sub == NULL ? s->kept[i].sub == NULL
                    : s->kept[i].sub != NULL && strcmp(s->kept[i].sub, sub) == 0)
      return s->kept[i].fd;
  return -1;
}

int cache_store_cache_dir(struct cache_store *s, const char *sub, struct cb_error *err)
{
  int cachefd, fd;

  pthread_mutex_lock(&s->kept_lock);
  fd = kept_find(s, sub);
  if (fd >= 0)
    goto out;
  cachefd = kept_find(s, NULL);
  if (cachefd < 0) {
    cachefd = cb_open_dir_made(s->root_fd, "cache", 0700);
    if (cachefd < 0) {
      fd = cb_error_errno(err, errno, "open \"%s/cache\"", s->root);
      goto out;
    }
    s->kept[s->n_kept++] = (struct kept_dir){ NULL, cachefd };
  }
  if (sub == NULL) {
    fd = cachefd;
    goto out;
  }
  fd = cb_open_dir_made(cachefd, sub, 0700);
  if (fd < 0) {
    fd = cb_error_errno(err, errno, "open \"%s/cache/%s\"", s->root, sub);
    goto out;
  }
  /* a fixed handful of names ("steps", "last", "stat", ...): beyond the
   * table's room, the caller could only leak; that is a bug here */
  if (s->n_kept == STORE_KEPT_DIRS)
    cb_die("cache_store_cache_dir: more than %d directories", STORE_KEPT_DIRS - 1);
  s->kept[s->n_kept++] = (struct kept_dir){ xstrdup(sub), fd };
out:
  pthread_mutex_unlock(&s->kept_lock);
  return fd;
}

/* ---- blobs ---- */

/*
 * The file name of a blob in blobs/sha256.  Digests come from manifests,
 * registries and the command line: hostile input, checked before it
 * becomes a path ("sha256:../../x" must never reach openat).
 */
static const char *blob_name(const struct cache_store *s, const char *digest,
                             struct cb_error *err)
{
  if (digest == NULL || !oci_digest_valid(digest)) {
    cb_error_set(err, "invalid blob digest \"%s\": want sha256: and 64 lowercase hex digits",
                 digest ? digest : "(null)");
    return NULL;
  }
  return digest + strlen(SHA256_PREFIX);
}

int cache_blob_create(struct cache_store *s, char **path, struct cb_error *err)
{
  char name[64];
  int fd = temp_create(s, "blob-", name, sizeof(name), err);
  if (fd < 0)
    return -1;
  *path = xasprintf("%s/tmp/%s", s->root, name);
  return fd;
}

/*
 * The name in tmp/ of a path made by cache_blob_create(), or NULL when
 * path is not one of ours.
 */
static const char *temp_path_name(const struct cache_store *s, const char *path)
{
  size_t n = strlen(s->root);
  const char *name;
  if (path == NULL || strncmp(path, s->root, n) != 0 || !cb_starts_with(path + n, "/tmp/"))
    return NULL;
  name = path + n + strlen("/tmp/");
  if (!cb_starts_with(name, "blob-") || strchr(name, '/') != NULL)
    return NULL;
  return name;
}

void cache_blob_abort(struct cache_store *s, int fd, const char *path)
{
  const char *name = temp_path_name(s, path);
  if (name != NULL)
    unlinkat(s->tmp_fd, name, 0);
  if (fd >= 0)
    close(fd);
}

static bool committed_same(const struct committed_blob *c, const char *digest,
                           const struct stat *st)
{
  return c->dev == st->st_dev && c->ino == st->st_ino && c->size == st->st_size &&
         c->ctime.tv_sec == st->st_ctim.tv_sec && c->ctime.tv_nsec == st->st_ctim.tv_nsec &&
         strcmp(c->digest, digest) == 0;
}

static void committed_add(struct cache_store *s, const char *digest, const struct stat *st)
{
  pthread_mutex_lock(&s->committed_lock);
  CB_GROW(s->committed, s->n_committed + 1, s->alloc_committed);
  struct committed_blob *c = &s->committed[s->n_committed++];
  snprintf(c->digest, sizeof(c->digest), "%s", digest);
  c->dev = st->st_dev;
  c->ino = st->st_ino;
  c->size = st->st_size;
  c->ctime = st->st_ctim;
  pthread_mutex_unlock(&s->committed_lock);
}

int cache_blob_commit(struct cache_store *s, int fd, const char *path, const char *digest,
                      bool trusted, struct cb_error *err)
{
  const char *tmp = temp_path_name(s, path);
  const char *hex;
  struct stat st, tmp_st, have;
  bool renamed = false;
  int r = -1;

  /* path must name the very file written through fd: it is what we remove. */
  if (tmp == NULL || fstat(fd, &st) < 0 ||
      fstatat(s->tmp_fd, tmp, &tmp_st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
      st.st_dev != tmp_st.st_dev || st.st_ino != tmp_st.st_ino) {
    cb_error_set(err, "commit blob: \"%s\" is not a temporary file of store \"%s\"",
                 path ? path : "(null)", s->root);
    if (fd >= 0)
      close(fd);
    return -1;
  }
  hex = blob_name(s, digest, err);
  if (hex == NULL) {
    cb_error_wrap(err, "commit blob");
    goto out;
  }
  if (fsync_retry(fd) < 0) {
    cb_error_errno(err, errno, "commit blob %s: sync \"%s\"", digest, path);
    goto out;
  }
  if (!trusted) {
    char got[OCI_DIGEST_SIZE];
    int64_t size;
    if (lseek(fd, 0, SEEK_SET) < 0) {
      cb_error_errno(err, errno, "commit blob %s: seek \"%s\"", digest, path);
      goto out;
    }
    if (oci_digest_fd(fd, got, &size, err) < 0) {
      cb_error_wrap(err, "commit blob %s", digest);
      goto out;
    }
    if (strcmp(got, digest) != 0) {
      cb_error_set(err, "commit blob %s: its content hashes to %s", digest, got);
      goto out;
    }
  }
  /*
   * Another writer may have stored it already: keep that one.  A file of
   * another size there is damaged, and the rename below replaces it.
   */
  if (fstatat(s->blobs_fd, hex, &have, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(have.st_mode) &&
      have.st_size == st.st_size) {
    r = 0;
    goto out;
  }
  if (renameat(s->tmp_fd, tmp, s->blobs_fd, hex) < 0) {
    cb_error_errno(err, errno, "commit blob %s: rename \"%s\" into \"%s/blobs/sha256\"",
                   digest, path, s->root);
    goto out;
  }
  renamed = true;
  if (fsync_retry(s->blobs_fd) < 0) {
    cb_error_errno(err, errno, "commit blob %s: sync \"%s/blobs/sha256\"", digest, s->root);
    goto out;
  }
  if (fstat(fd, &st) == 0) /* its ctime, as the rename left it */
    committed_add(s, digest, &st);
  r = 0;
out:
  if (!renamed)
    unlinkat(s->tmp_fd, tmp, 0);
  close(fd);
  return r;
}

bool cache_blob_exists(struct cache_store *s, const char *digest)
{
  struct cb_error err;
  struct stat st;
  const char *hex = blob_name(s, digest, &err);
  return hex != NULL && fstatat(s->blobs_fd, hex, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         S_ISREG(st.st_mode);
}

int cache_blob_put(struct cache_store *s, const void *data, size_t n, char out[OCI_DIGEST_SIZE],
                   struct cb_error *err)
{
  cleanup_free char *path = NULL;
  struct stat st;
  int fd;

  oci_digest_buf(data, n, out);
  if (fstatat(s->blobs_fd, out + strlen(SHA256_PREFIX), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISREG(st.st_mode) && (uint64_t)st.st_size == n)
    return 0;
  fd = cache_blob_create(s, &path, err);
  if (fd < 0)
    return cb_error_wrap(err, "store blob %s", out);
  if (cb_write_all(fd, data, n) < 0) {
    int e = errno;
    cache_blob_abort(s, fd, path);
    return cb_error_errno(err, e, "store blob %s: write \"%s\"", out, path);
  }
  /* Trusted: these are the very bytes just hashed. */
  return cache_blob_commit(s, fd, path, out, true, err);
}

void cache_store_set_remote(struct cache_store *s, const struct cache_remote *r)
{
  pthread_mutex_lock(&s->remote_lock);
  if (r)
    s->remote = *r;
  else
    memset(&s->remote, 0, sizeof(s->remote));
  pthread_mutex_unlock(&s->remote_lock);
}

bool cache_blob_available(struct cache_store *s, const char *digest)
{
  bool has;
  if (cache_blob_exists(s, digest))
    return true;
  pthread_mutex_lock(&s->remote_lock);
  has = s->remote.has && s->remote.has(s->remote.data, digest);
  pthread_mutex_unlock(&s->remote_lock);
  return has;
}

/* Bring a missing blob in from the remote: 0 done, 1 it has none, -1 error. */
static int remote_fetch(struct cache_store *s, const char *digest, struct cb_error *err)
{
  cleanup_free char *path = NULL;
  int fd, r = 1;
  pthread_mutex_lock(&s->remote_lock);
  /* another thread may have fetched it meanwhile */
  if (cache_blob_exists(s, digest))
    r = 0;
  else if (s->remote.has && s->remote.has(s->remote.data, digest)) {
    fd = cache_blob_create(s, &path, err);
    r = fd < 0 ? -1 : s->remote.fetch(s->remote.data, digest, fd, err);
    if (r != 0 && fd >= 0)
      cache_blob_abort(s, fd, path);
    /* checked here whatever the remote did */
    else if (r == 0 && cache_blob_commit(s, fd, path, digest, false, err) < 0)
      r = -1;
  }
  pthread_mutex_unlock(&s->remote_lock);
  return r;
}

int cache_blob_open(struct cache_store *s, const char *digest, int64_t *size,
                    struct cb_error *err)
{
  struct stat st;
  const char *hex = blob_name(s, digest, err);
  int fd;
  if (hex == NULL)
    return cb_error_wrap(err, "open blob");
  fd = open_regular(s->blobs_fd, hex, &st);
  if (fd < 0 && errno == ENOENT && s->remote.has) {
    int r = remote_fetch(s, digest, err);
    if (r < 0)
      return -1;
    if (r == 0)
      fd = open_regular(s->blobs_fd, hex, &st);
    else
      errno = ENOENT;
  }
  if (fd < 0) {
    if (errno == ENOENT)
      return cb_error_errno(err, errno, "blob %s is not in store \"%s\"", digest, s->root);
    if (errno == ELOOP || errno == EINVAL || errno == EISDIR)
      return cb_error_set(err, "blob %s in store \"%s\" is not a regular file", digest,
                          s->root);
    return cb_error_errno(err, errno, "open blob %s in store \"%s\"", digest, s->root);
  }
  if (size)
    *size = st.st_size;
  return fd;
}

/*
 * A blob whose content does not hash to its name is removed, so that it
 * reads as missing and is fetched or built again.  Only the file we read
 * is removed: a good copy a concurrent commit put in its place stays.
 */
static int blob_corrupt(struct cache_store *s, const char *digest, int fd, const char *got,
                        struct cb_error *err)
{
  struct stat st, now;
  const char *hex = digest + strlen(SHA256_PREFIX);
  if (fstat(fd, &st) == 0 && fstatat(s->blobs_fd, hex, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
      st.st_dev == now.st_dev && st.st_ino == now.st_ino)
    unlinkat(s->blobs_fd, hex, 0);
  return cb_error_set(err, "blob %s is corrupt (its content hashes to %s): removed", digest,
                      got);
}

/* Hash the open blob from its start; -1 with err when it does not match. */
static int blob_check_fd(struct cache_store *s, const char *digest, int fd, int64_t *size,
                         struct cb_error *err)
{
  char got[OCI_DIGEST_SIZE];
  if (lseek(fd, 0, SEEK_SET) < 0)
    return cb_error_errno(err, errno, "read blob %s", digest);
  if (oci_digest_fd(fd, got, size, err) < 0)
    return cb_error_wrap(err, "read blob %s", digest);
  if (strcmp(got, digest) != 0)
    return blob_corrupt(s, digest, fd, got, err);
  return 0;
}

int cache_blob_verify(struct cache_store *s, const char *digest, struct cb_error *err)
{
  int64_t size;
  cleanup_close int fd = cache_blob_open(s, digest, &size, err);
  if (fd < 0)
    return -1;
  return blob_check_fd(s, digest, fd, &size, err);
}

int cache_blob_read(struct cache_store *s, const char *digest, struct strbuf *out,
                    struct cb_error *err)
{
  int64_t size;
  size_t start = out->len;
  char got[OCI_DIGEST_SIZE];
  struct oci_hasher *h;
  cleanup_close int fd = cache_blob_open(s, digest, &size, err);
  if (fd < 0)
    return -1;
  if (size > 0 && (uint64_t)size < SIZE_MAX)
    strbuf_grow(out, (size_t)size);
  h = oci_hasher_new();
  for (;;) {
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      cb_error_errno(err, errno, "read blob %s in store \"%s\"", digest, s->root);
      goto fail;
    }
    if (n == 0)
      break;
    oci_hasher_update(h, buf, (size_t)n);
    strbuf_add(out, buf, (size_t)n);
  }
  oci_hasher_final(h, got);
  oci_hasher_free(h);
  if (strcmp(got, digest) != 0) {
    strbuf_setlen(out, start);
    return blob_corrupt(s, digest, fd, got, err);
  }
  return 0;
fail:
  oci_hasher_free(h);
  strbuf_setlen(out, start);
  return -1;
}

/*
 * The archive writers' source, a checked one (oci.h): other readers get
 * the blob hashed before its fd, while the writers open it unchecked and
 * hash it as they copy it, reading each exported blob once instead of
 * twice.  A mismatch found either way removes the blob, as for every other
 * reader.
 */
static int blob_source_open_unchecked(void *data, const char *digest, int64_t *size,
                                      struct cb_error *err)
{
  int fd = cache_blob_open(data, digest, size, err);
  /* the whole blob is read once, front to back */
  if (fd >= 0)
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return fd;
}

static int blob_source_corrupt(void *data, const char *digest, int fd, const char *got,
                               struct cb_error *err)
{
  return blob_corrupt(data, digest, fd, got, err);
}

/* fd (open_unchecked's) is the very file this process verified and
 * committed as digest, unchanged since. */
static bool blob_source_verified(void *data, const char *digest, int fd)
{
  struct cache_store *s = data;
  struct stat st;
  bool found = false;
  if (fstat(fd, &st) < 0)
    return false;
  pthread_mutex_lock(&s->committed_lock);
  for (size_t i = s->n_committed; i-- > 0 && !found;)
    found = committed_same(&s->committed[i], digest, &st);
  pthread_mutex_unlock(&s->committed_lock);
  return found;
}

void cache_blob_source(struct cache_store *s, struct oci_blob_source *src)
{
  src->open = oci_checked_source_open;
  src->data = &s->checked;
}

/* ---- tags ---- */

/*
 * index.json is edited as JSON rather than through struct oci_index, so
 * that descriptors other tools put there keep every field they had.  Our
 * own descriptors go through oci_index_json()/oci_index_parse() one at a
 * time, for the one canonical encoding.
 */

/* The tag's names: full ("docker.io/library/app:latest") and short ("app"). */
struct tag_names {
  char *full;
  char *short_name;
};

static void tag_names_release(struct tag_names *t)
{
  free(t->full);
  free(t->short_name);
}

static int tag_names_parse(const char *name, struct tag_names *t, struct cb_error *err)
{
  struct oci_reference ref;
  size_t n;
  t->full = t->short_name = NULL;
  if (oci_reference_parse(name, &ref, err) < 0)
    return -1;
  if (ref.digest != NULL) {
    oci_reference_release(&ref);
    return cb_error_set(err, "invalid tag \"%s\": a tag cannot name a digest", name);
  }
  t->full = oci_reference_string(&ref);
  t->short_name = oci_reference_familiar(&ref);
  n = strlen(t->short_name);
  if (cb_ends_with(t->short_name, ":latest"))
    t->short_name[n - strlen(":latest")] = '\0';
  oci_reference_release(&ref);
  return 0;
}

static const char *json_annotation(json_t *desc, const char *key)
{
  json_t *a = json_object_get(desc, "annotations");
  return json_string_value(json_object_get(a, key));
}

/*
 * The full name of a descriptor that is one of our tags: one whose
 * io.containerd.image.name is a reference with a tag and no digest.
 * NULL for anything else, which is left alone.
 */
static char *json_tag_name(json_t *desc)
{
  const char *v = json_annotation(desc, OCI_ANNOTATION_IMAGE_NAME);
  struct oci_reference ref;
  struct cb_error err;
  char *full = NULL;
  if (v == NULL || oci_reference_parse(v, &ref, &err) < 0)
    return NULL;
  if (ref.digest == NULL && ref.tag != NULL)
    full = oci_reference_string(&ref);
  oci_reference_release(&ref);
  return full;
}

static int index_load(struct cache_store *s, json_t **out, struct cb_error *err)
{
  struct stat st;
  cleanup_close int fd = open_regular(s->root_fd, "index.json", &st);
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  json_error_t jerr;
  json_t *root, *m;
  if (fd < 0)
    return open_error(err, errno, "\"index.json\"", s->root);
  for (;;) {
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return cb_error_errno(err, errno, "read \"%s/index.json\"", s->root);
    if (n == 0)
      break;
    strbuf_add(&sb, buf, (size_t)n);
  }
  root = json_loadb(sb.buf, sb.len, 0, &jerr);
  if (root == NULL)
    return cb_error_set(err, "read \"%s/index.json\": line %d: %s", s->root, jerr.line,
                        jerr.text);
  m = json_object_get(root, "manifests");
  if (!json_is_object(root) || json_integer_value(json_object_get(root, "schemaVersion")) != 2 ||
      (m != NULL && !json_is_array(m))) {
    json_decref(root);
    return cb_error_set(err, "read \"%s/index.json\": not an OCI image index", s->root);
  }
  if (m == NULL)
    json_object_set_new(root, "manifests", json_array());
  *out = root;
  return 0;
}

/* One descriptor as JSON, in oci_index_json()'s encoding. */
static json_t *descriptor_to_json(const struct oci_descriptor *d)
{
  struct oci_index one = { (struct oci_descriptor *)d, 1 };
  cleanup_free char *text = oci_index_json(&one);
  json_t *x = json_loads(text, 0, NULL), *m;
  if (x == NULL)
    cb_die("oci_index_json wrote invalid JSON");
  m = json_array_get(json_object_get(x, "manifests"), 0);
  json_incref(m);
  json_decref(x);
  if (m == NULL)
    cb_die("oci_index_json wrote no descriptor");
  return m;
}

static int descriptor_from_json(struct cache_store *s, json_t *j, struct oci_descriptor *d,
                                struct cb_error *err)
{
  struct oci_index x = { NULL, 0 };
  cleanup_json json_t *wrap = json_pack("{s:i, s:[O]}", "schemaVersion", 2, "manifests", j);
  cleanup_free char *text = json_dumps(wrap, JSON_COMPACT | JSON_SORT_KEYS);
  if (text == NULL)
    cb_die("out of memory");
  if (oci_index_parse(text, strlen(text), &x, err) < 0)
    return cb_error_wrap(err, "read \"%s/index.json\"", s->root);
  if (x.n_manifests != 1) {
    oci_index_release(&x);
    return cb_error_set(err, "read \"%s/index.json\": a descriptor did not parse", s->root);
  }
  oci_descriptor_copy(d, &x.manifests[0]);
  oci_index_release(&x);
  return 0;
}

struct sort_item {
  json_t *desc;
  char *name; /* NULL: not one of our tags */
  size_t pos;
};

static int sort_item_cmp(const void *a, const void *b)
{
  const struct sort_item *x = a, *y = b;
  int c;
  /* Other tools' descriptors first, in their order; then ours by name. */
  if ((x->name == NULL) != (y->name == NULL))
    return x->name == NULL ? -1 : 1;
  if (x->name != NULL && (c = strcmp(x->name, y->name)) != 0)
    return c;
  return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Sort root's manifests and write index.json; the caller holds the lock. */
static int index_store(struct cache_store *s, json_t *root, struct cb_error *err)
{
  json_t *m = json_object_get(root, "manifests");
  size_t n = json_array_size(m);
  struct sort_item *items = xcalloc(n ? n : 1, sizeof(*items));
  json_t *sorted = json_array();
  cleanup_free char *text = NULL;
  int r;

  for (size_t i = 0; i < n; i++) {
    items[i].desc = json_array_get(m, i);
    items[i].name = json_tag_name(items[i].desc);
    items[i].pos = i;
  }
  qsort(items, n, sizeof(*items), sort_item_cmp);
  for (size_t i = 0; i < n; i++) {
    json_array_append(sorted, items[i].desc);
    free(items[i].name);
  }
  free(items);
  json_object_set_new(root, "manifests", sorted);
  text = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
  if (text == NULL)
    cb_die("out of memory");
  r = replace_file(s, "index.json", text, strlen(text), err);
  if (r < 0)
    return cb_error_wrap(err, "update \"%s/index.json\"", s->root);
  return 0;
}

/*
 * Remove the descriptors of the tag t from the array m.  Besides our own
 * (by full name), that is one another tool wrote with the same ref.name
 * and no full name (`skopeo copy ... oci:ROOT:app`): two descriptors with
 * one ref.name would leave `oci:ROOT:app` ambiguous.
 */
static size_t index_remove_tag(json_t *m, const struct tag_names *t)
{
  size_t removed = 0;
  for (size_t i = 0; i < json_array_size(m);) {
    json_t *d = json_array_get(m, i);
    cleanup_free char *full = json_tag_name(d);
    const char *ref = json_annotation(d, OCI_ANNOTATION_REF_NAME);
    bool same = full != NULL ? strcmp(full, t->full) == 0
                             : json_annotation(d, OCI_ANNOTATION_IMAGE_NAME) == NULL &&
                                   ref != NULL && strcmp(ref, t->short_name) == 0;
    if (same) {
      json_array_remove(m, i);
      removed++;
    } else {
      i++;
    }
  }
  return removed;
}

int cache_tag_set(struct cache_store *s, const char *name, const struct oci_descriptor *manifest,
                  struct cb_error *err)
{
  struct tag_names t;
  struct oci_descriptor d;
  cleanup_json json_t *root = NULL;
  cleanup_close int lock = -1;
  int r = -1;

  if (tag_names_parse(name, &t, err) < 0)
    return cb_error_wrap(err, "tag \"%s\"", name);
  if (manifest->media_type == NULL || *manifest->media_type == '\0' || manifest->size < 0) {
    cb_error_set(err, "tag \"%s\": the manifest descriptor lacks a media type or size", name);
    goto out;
  }
  if (blob_name(s, manifest->digest, err) == NULL) {
    cb_error_wrap(err, "tag \"%s\"", name);
    goto out;
  }
  if (!cache_blob_exists(s, manifest->digest)) {
    cb_error_set(err, "tag \"%s\": manifest %s is not in store \"%s\"", name, manifest->digest,
                 s->root);
    goto out;
  }
  lock = store_lock(s, LOCK_EX, err);
  if (lock < 0 || index_load(s, &root, err) < 0) {
    cb_error_wrap(err, "tag \"%s\"", name);
    goto out;
  }
  /* already so: nothing to write (a rebuild that changed nothing) */
  {
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(root, "manifests"), i, m) {
      const char *full = json_annotation(m, OCI_ANNOTATION_IMAGE_NAME);
      const char *ref = json_annotation(m, OCI_ANNOTATION_REF_NAME);
      const char *dg = json_string_value(json_object_get(m, "digest"));
      if (full && ref && dg && strcmp(full, t.full) == 0 && strcmp(ref, t.short_name) == 0 &&
          strcmp(dg, manifest->digest) == 0) {
        r = 0;
        goto out;
      }
    }
  }
  memset(&d, 0, sizeof(d));
  oci_descriptor_copy(&d, manifest);
  oci_descriptor_annotate(&d, OCI_ANNOTATION_REF_NAME, t.short_name);
  oci_descriptor_annotate(&d, OCI_ANNOTATION_IMAGE_NAME, t.full);
  index_remove_tag(json_object_get(root, "manifests"), &t);
  json_array_append_new(json_object_get(root, "manifests"), descriptor_to_json(&d));
  oci_descriptor_release(&d);
  r = index_store(s, root, err);
  if (r < 0)
    cb_error_wrap(err, "tag \"%s\"", name);
out:
  tag_names_release(&t);
  return r;
}

int cache_tag_get(struct cache_store *s, const char *name, struct oci_descriptor *manifest,
                  struct cb_error *err)
{
  struct tag_names t;
  cleanup_json json_t *root = NULL;
  cleanup_close int lock = -1;
  json_t *m;
  int r = 1;

  memset(manifest, 0, sizeof(*manifest));
  if (tag_names_parse(name, &t, err) < 0)
    return cb_error_wrap(err, "find image \"%s\"", name);
  lock = store_lock(s, LOCK_SH, err);
  if (lock < 0 || index_load(s, &root, err) < 0) {
    r = cb_error_wrap(err, "find image \"%s\"", name);
    goto out;
  }
  m = json_object_get(root, "manifests");
  for (size_t i = 0; i < json_array_size(m); i++) {
    cleanup_free char *full = json_tag_name(json_array_get(m, i));
    if (full != NULL && strcmp(full, t.full) == 0) {
      r = descriptor_from_json(s, json_array_get(m, i), manifest, err) < 0 ? -1 : 0;
      if (r < 0)
        cb_error_wrap(err, "find image \"%s\"", name);
      break;
    }
  }
out:
  tag_names_release(&t);
  return r;
}

int cache_tag_remove(struct cache_store *s, const char *name, struct cb_error *err)
{
  struct tag_names t;
  cleanup_json json_t *root = NULL;
  cleanup_close int lock = -1;
  int r = 1;

  if (tag_names_parse(name, &t, err) < 0)
    return cb_error_wrap(err, "untag \"%s\"", name);
  lock = store_lock(s, LOCK_EX, err);
  if (lock < 0 || index_load(s, &root, err) < 0) {
    r = cb_error_wrap(err, "untag \"%s\"", name);
    goto out;
  }
  if (index_remove_tag(json_object_get(root, "manifests"), &t) > 0) {
    r = index_store(s, root, err);
    if (r < 0)
      cb_error_wrap(err, "untag \"%s\"", name);
  }
out:
  tag_names_release(&t);
  return r;
}

static int cache_tag_cmp(const void *a, const void *b)
{
  const struct cache_tag *x = a, *y = b;
  return strcmp(x->name, y->name);
}

int cache_tags_list(struct cache_store *s, struct cache_tag **tags, size_t *n,
                    struct cb_error *err)
{
  cleanup_json json_t *root = NULL;
  cleanup_close int lock = -1;
  struct cache_tag *v = NULL;
  size_t len = 0, alloc = 0;
  json_t *m;

  *tags = NULL;
  *n = 0;
  lock = store_lock(s, LOCK_SH, err);
  if (lock < 0 || index_load(s, &root, err) < 0)
    return cb_error_wrap(err, "list images");
  m = json_object_get(root, "manifests");
  for (size_t i = 0; i < json_array_size(m); i++) {
    char *full = json_tag_name(json_array_get(m, i));
    if (full == NULL)
      continue;
    CB_GROW(v, len + 1, alloc);
    memset(&v[len], 0, sizeof(v[len]));
    v[len].name = full;
    if (descriptor_from_json(s, json_array_get(m, i), &v[len].manifest, err) < 0) {
      cache_tags_free(v, len + 1);
      return cb_error_wrap(err, "list images");
    }
    len++;
  }
  if (len > 1)
    qsort(v, len, sizeof(*v), cache_tag_cmp);
  *tags = v;
  *n = len;
  return 0;
}

void cache_tags_free(struct cache_tag *tags, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(tags[i].name);
    oci_descriptor_release(&tags[i].manifest);
  }
  free(tags);
}
