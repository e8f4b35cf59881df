/*
 * Snapshots: each layer unpacked once, as an overlayfs lower directory.
 *
 *   ROOT/snapshots/<diff_id hex>       made with trusted.overlay.opaque
 *   ROOT/snapshots/<diff_id hex>-u     made with user.overlay.opaque (rootless)
 *   ROOT/snapshots/<key>.lock          flock()ed while <key> is being made
 *   ROOT/tmp/snapshot-<key>.<16 hex>   a snapshot being made
 *
 * The two keys differ because overlayfs reads the opaque marker from one
 * xattr namespace or the other, depending on the mount (userxattr).
 *
 * A snapshot is made in ROOT/tmp, synced (one syncfs(), not a fsync per
 * file) and renamed into snapshots/ when complete: a directory there is
 * always whole, and a crash leaves at worst a directory in tmp/.  The
 * blob is read once: it is unpacked while it is hashed, and its
 * decompressed stream too, and the attempt is thrown away unless both
 * digests are what the image says (the unpacking is confined to the
 * attempt's directory whatever the blob holds).  A blob that does not
 * match its digest is removed, so that it reads as missing.
 *
 * Concurrent cbuild processes asking for one snapshot: the first takes
 * <key>.lock and makes it; the others wait on that lock only (no store-
 * wide lock is held), then find the snapshot there.  The lock file is
 * removed by its holder once done; whoever then locks a file no longer
 * linked under that name opens it again (the usual check that the locked
 * inode is the one the name points at).  Holding the lock also means any
 * ROOT/tmp/snapshot-<key>.* is a crashed attempt's: it is removed.  Should
 * the rename still find a snapshot there (another tool, or no flock on
 * this filesystem), theirs is kept and ours removed.
 *
 * snapshots/ is 0700: a snapshot holds an image's set-id files, which no
 * other user of this machine should be able to reach and run.
 */
#include "cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SNAPSHOTS_DIR "snapshots"
#define SNAPSHOTS_DIR_MODE 0700
#define SNAPSHOT_ROOT_MODE 0755
#define TEMP_PREFIX "snapshot-"
#define TEMP_RANDOM_LEN 16
#define LOCK_SUFFIX ".lock"
/* "<64 hex>-u" */
#define KEY_SIZE 68

struct snapshot_ctx {
  struct cache_store *s;
  const char *root;
  const char *digest; /* the layer blob's */
  char key[KEY_SIZE];
  int root_fd, snaps_fd, tmp_fd;
};

static int fsync_retry(int fd)
{
  int r;
  do
    r = fsync(fd);
  while (r < 0 && errno == EINTR);
  return r;
}

/* Open (creating it, mode `mode`) the directory name in parent, never
 * through a symlink. */
static int open_dir(int parent, const char *name, mode_t mode, bool create)
{
  if (create)
    return cb_open_dir_made(parent, name, mode);
  return openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Whether snapshots/<key> is there: 1 yes, 0 no, -1 error (err set). */
static int snapshot_present(struct snapshot_ctx *c, struct cb_error *err)
{
  struct stat st;
  if (fstatat(c->snaps_fd, c->key, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    struct timespec now[2] = { { 0, UTIME_OMIT }, { 0, UTIME_NOW } };
    if (!S_ISDIR(st.st_mode))
      return cb_error_set(err, "snapshot \"%s/" SNAPSHOTS_DIR "/%s\" is not a directory",
                          c->root, c->key);
    /* its mtime says when it was last used, for prune */
    (void)utimensat(c->snaps_fd, c->key, now, AT_SYMLINK_NOFOLLOW);
    return 1;
  }
  if (errno != ENOENT)
    return cb_error_errno(err, errno, "stat snapshot \"%s/" SNAPSHOTS_DIR "/%s\"", c->root,
                          c->key);
  return 0;
}

/*
 * Remove name in parentfd and all it holds.  Unlike cb_remove_tree, a
 * directory is first made writable and searchable by its owner: a
 * snapshot holds the image's 0555 and 0000 directories, which an
 * unprivileged owner could not empty otherwise.
 */
static int remove_forced(int parentfd, const char *name)
{
  struct stat st;
  struct dirent *de;
  DIR *d;
  int fd, rc = 0;

  if (fstatat(parentfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode))
    return unlinkat(parentfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
  fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == EACCES) {
    fchmodat(parentfd, name, 0700, 0);
    fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  if (fd < 0)
    return -1;
  if ((st.st_mode & 0700) != 0700)
    fchmod(fd, 0700);
  d = fdopendir(fd);
  if (d == NULL) {
    close(fd);
    return -1;
  }
  while ((errno = 0, de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (remove_forced(dirfd(d), de->d_name) < 0)
      rc = -1;
  }
  closedir(d);
  if (rc == 0 && unlinkat(parentfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    rc = -1;
  return rc;
}

/* The temporary name of an attempt at key: "snapshot-<key>.<16 hex>". */
static bool is_attempt_of(const char *name, const char *key)
{
  size_t p = strlen(TEMP_PREFIX), k = strlen(key);
  if (strncmp(name, TEMP_PREFIX, p) != 0 || strncmp(name + p, key, k) != 0 ||
      name[p + k] != '.')
    return false;
  name += p + k + 1;
  if (strlen(name) != TEMP_RANDOM_LEN)
    return false;
  return strspn(name, "0123456789abcdef") == TEMP_RANDOM_LEN;
}

/* With the key's lock held, no one else is making it: what an attempt
 * left in tmp/ is a crashed one's.  Best effort. */
static void remove_crashed_attempts(struct snapshot_ctx *c)
{
  struct strvec names = STRVEC_INIT;
  if (cb_list_dir(c->tmp_fd, ".", &names) == 0)
    for (size_t i = 0; i < names.n; i++)
      if (is_attempt_of(names.v[i], c->key))
        remove_forced(c->tmp_fd, names.v[i]);
  strvec_clear(&names);
}

/*
 * Lock snapshots/<key>.lock; returns its fd, which unlock_key() releases.
 * The holder removes the file when done, so a lock taken on a file that
 * is no longer the one under that name is dropped and taken again.
 */
static int lock_key(struct snapshot_ctx *c, struct cb_error *err)
{
  cleanup_free char *name = xasprintf("%s" LOCK_SUFFIX, c->key);
  for (;;) {
    struct stat held, now;
    int fd = openat(c->snaps_fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
                    0600);
    if (fd < 0)
      return cb_error_errno(err, errno, "open \"%s/" SNAPSHOTS_DIR "/%s\"", c->root, name);
    while (flock(fd, LOCK_EX) < 0) {
      if (errno != EINTR) {
        int e = errno;
        close(fd);
        return cb_error_errno(err, e, "lock \"%s/" SNAPSHOTS_DIR "/%s\"", c->root, name);
      }
    }
    if (fstat(fd, &held) == 0 && fstatat(c->snaps_fd, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
        held.st_dev == now.st_dev && held.st_ino == now.st_ino)
      return fd;
    close(fd);
  }
}

/* Remove the lock file, then release it. */
static void unlock_key(struct snapshot_ctx *c, int fd)
{
  cleanup_free char *name = xasprintf("%s" LOCK_SUFFIX, c->key);
  unlinkat(c->snaps_fd, name, 0);
  close(fd);
}

/* mkdir tmp/snapshot-<key>.<random>; name gets the name. */
static int make_attempt_dir(struct snapshot_ctx *c, char *name, size_t size,
                            struct cb_error *err)
{
  for (int tries = 0; tries < 100; tries++) {
    uint64_t r;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      r = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)tries;
    }
    snprintf(name, size, TEMP_PREFIX "%s.%016llx", c->key, (unsigned long long)r);
    if (mkdirat(c->tmp_fd, name, 0700) == 0)
      return 0;
    if (errno != EEXIST)
      return cb_error_errno(err, errno, "create \"%s/tmp/%s\"", c->root, name);
  }
  return cb_error_set(err, "create a directory in \"%s/tmp\": no free name", c->root);
}

/* Unpack the blob on blob_fd into dir_fd, checking it against its digest
 * and diff_id on the way; the caller removes dir_fd on failure. */
static int unpack_checked(struct snapshot_ctx *c, int blob_fd, int dir_fd, const char *diff_id,
                          bool userxattr, struct cb_error *err)
{
  char digest[OCI_DIGEST_SIZE], got[OCI_DIGEST_SIZE];
  int r = oci_layer_unpack_overlay(blob_fd, dir_fd, userxattr, digest, got, err);

  if (r < 0 || strcmp(digest, c->digest) != 0) {
    /* A blob that does not match its digest is named as such, and
     * removed (so that it reads as missing): whatever else failed. */
    if (cache_blob_verify(c->s, c->digest, err) < 0)
      return -1;
    if (r < 0)
      return -1;
    return cb_error_set(err, "blob %s changed while it was read", c->digest);
  }
  if (strcmp(got, diff_id) != 0)
    return cb_error_set(err, "its uncompressed content hashes to %s, not to its diff_id %s",
                        got, diff_id);
  return 0;
}

/* Make snapshots/<key>; the caller holds its lock. */
static int make_snapshot(struct snapshot_ctx *c, const char *diff_id, bool userxattr,
                         struct cb_error *err)
{
  char name[sizeof(TEMP_PREFIX) + KEY_SIZE + TEMP_RANDOM_LEN + 2] = "";
  cleanup_close int blob_fd = -1, dir_fd = -1;
  int64_t size;
  int r = -1;

  remove_crashed_attempts(c);
  blob_fd = cache_blob_open(c->s, c->digest, &size, err);
  if (blob_fd < 0)
    return -1;
  if (make_attempt_dir(c, name, sizeof(name), err) < 0)
    return -1;
  dir_fd = openat(c->tmp_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir_fd < 0) {
    cb_error_errno(err, errno, "open \"%s/tmp/%s\"", c->root, name);
    goto out;
  }
  if (unpack_checked(c, blob_fd, dir_fd, diff_id, userxattr, err) < 0)
    goto out;
  if (fchmod(dir_fd, SNAPSHOT_ROOT_MODE) < 0 || syncfs(dir_fd) < 0) {
    cb_error_errno(err, errno, "sync \"%s/tmp/%s\"", c->root, name);
    goto out;
  }
  if (renameat(c->tmp_fd, name, c->snaps_fd, c->key) < 0) {
    if (errno != EEXIST && errno != ENOTEMPTY) {
      cb_error_errno(err, errno, "rename \"tmp/%s\" to \"" SNAPSHOTS_DIR "/%s\" in store \"%s\"",
                     name, c->key, c->root);
      goto out;
    }
    /* someone else's is there: it is as good as ours (below) */
  } else {
    name[0] = '\0';
    if (fsync_retry(c->snaps_fd) < 0) {
      cb_error_errno(err, errno, "sync \"%s/" SNAPSHOTS_DIR "\"", c->root);
      goto out;
    }
  }
  r = 0;
out:
  if (name[0] != '\0')
    remove_forced(c->tmp_fd, name);
  return r;
}

static int snapshot_get(struct snapshot_ctx *c, const char *diff_id, bool userxattr,
                        struct cb_error *err)
{
  int present, lock, r;

  c->root_fd = open(c->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (c->root_fd < 0)
    return cb_error_errno(err, errno, "open store \"%s\"", c->root);
  c->snaps_fd = open_dir(c->root_fd, SNAPSHOTS_DIR, SNAPSHOTS_DIR_MODE, true);
  if (c->snaps_fd < 0)
    return cb_error_errno(err, errno, "open \"%s/" SNAPSHOTS_DIR "\"", c->root);
  present = snapshot_present(c, err);
  if (present != 0)
    return present < 0 ? -1 : 0;

  c->tmp_fd = open_dir(c->root_fd, "tmp", 0755, false);
  if (c->tmp_fd < 0)
    return cb_error_errno(err, errno, "open \"%s/tmp\"", c->root);
  lock = lock_key(c, err);
  if (lock < 0)
    return -1;
  /* made while we waited for the lock? */
  present = snapshot_present(c, err);
  r = present < 0 ? -1 : present > 0 ? 0 : make_snapshot(c, diff_id, userxattr, err);
  unlock_key(c, lock);
  return r;
}

/* The store's root as an absolute path, which the caller frees. */
static char *absolute_root(const char *root, struct cb_error *err)
{
  char *abs;
  if (root[0] == '/')
    return xstrdup(root);
  abs = realpath(root, NULL);
  if (abs == NULL)
    cb_error_errno(err, errno, "resolve store \"%s\"", root);
  return abs;
}

int cache_snapshot_get(struct cache_store *s, const struct oci_descriptor *layer,
                       const char *diff_id, bool userxattr, char **path, struct cb_error *err)
{
  struct snapshot_ctx c;
  int r;

  *path = NULL;
  /* both become or guard paths: hostile input until checked */
  if (diff_id == NULL || !oci_digest_valid(diff_id))
    return cb_error_set(err, "snapshot: invalid diff_id \"%s\": want sha256: and 64 "
                        "lowercase hex digits", diff_id ? diff_id : "(null)");
  if (layer == NULL || layer->digest == NULL || !oci_digest_valid(layer->digest))
    return cb_error_set(err, "snapshot of %s: invalid layer digest \"%s\"", diff_id,
                        layer && layer->digest ? layer->digest : "(null)");

  memset(&c, 0, sizeof(c));
  c.s = s;
  c.digest = layer->digest;
  c.root_fd = c.snaps_fd = c.tmp_fd = -1;
  c.root = absolute_root(cache_store_root(s), err);
  if (c.root == NULL)
    return cb_error_wrap(err, "snapshot of layer %s", layer->digest);
  snprintf(c.key, sizeof(c.key), "%s%s", diff_id + strlen("sha256:"), userxattr ? "-u" : "");

  r = snapshot_get(&c, diff_id, userxattr, err);
  if (r < 0)
    cb_error_wrap(err, "snapshot of layer %s", layer->digest);
  else
    *path = xasprintf("%s/" SNAPSHOTS_DIR "/%s", c.root, c.key);
  if (c.root_fd >= 0)
    close(c.root_fd);
  if (c.snaps_fd >= 0)
    close(c.snaps_fd);
  if (c.tmp_fd >= 0)
    close(c.tmp_fd);
  free((char *)c.root);
  return r;
}

int cache_snapshot_remove(struct cache_store *s, const char *name, struct cb_error *err)
{
  const char *root = cache_store_root(s);
  cleanup_close int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  cleanup_close int snaps = -1, tmp = -1;
  char doomed[128];
  uint64_t r = 0;
  if (strchr(name, '/') || name[0] == '.' || strlen(name) > 80)
    return cb_error_set(err, "remove snapshot \"%s\": not a snapshot name", name);
  if (rootfd < 0)
    return cb_error_errno(err, errno, "open store \"%s\"", root);
  snaps = open_dir(rootfd, SNAPSHOTS_DIR, SNAPSHOTS_DIR_MODE, false);
  tmp = open_dir(rootfd, "tmp", 0755, false);
  if (snaps < 0 || tmp < 0)
    return cb_error_errno(err, errno, "open \"%s/" SNAPSHOTS_DIR "\"", root);
  /* out of snapshots/ at once, then emptied: never seen half gone */
  if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
    r = (uint64_t)getpid();
  snprintf(doomed, sizeof(doomed), TEMP_PREFIX "%s.%016llx", name, (unsigned long long)r);
  if (renameat(snaps, name, tmp, doomed) < 0)
    return errno == ENOENT ? 0
                           : cb_error_errno(err, errno, "remove snapshot \"%s/" SNAPSHOTS_DIR
                                                        "/%s\"", root, name);
  if (remove_forced(tmp, doomed) < 0)
    return cb_error_errno(err, errno, "remove \"%s/tmp/%s\"", root, doomed);
  return 0;
}
