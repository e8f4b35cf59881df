/*
 * COPY and ADD: select sources (context paths, globs, heredocs, URLs,
 * archives, another stage's files), decide where each lands with Docker's
 * rules, and write them as one layer.
 *
 * Docker's rules, in short: a directory source copies its contents; a
 * destination ending in '/' (or ".") is a directory, as is one that exists
 * as a directory in the image; several sources need a directory
 * destination; a relative destination is relative to WORKDIR; a source
 * symlink named explicitly is followed when it stays inside the context,
 * and copied as a symlink otherwise; symlinks inside a copied directory
 * stay symlinks.
 */
#include "builder-internal.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* Hashing this much or more is worth threads of its own. */
#define HASH_THREADS_MIN_BYTES ((int64_t)4 << 20)

struct item {
  char *dest;      /* tar path: relative, no leading '/' */
  mode_t mode;
  uid_t uid;
  gid_t gid;
  int64_t mtime;
  int64_t size;
  char *symlink;
  int rootfd;      /* where src lives; not owned */
  char *src;       /* path beneath rootfd, or NULL */
  char *data;      /* in-memory content (heredocs) */
  dev_t dev;
  ino_t ino;
  nlink_t nlink;
  struct timespec src_mtime, src_ctime; /* as the walk saw src, for the stat cache */
  const char *hardlink; /* an earlier item's dest */
  size_t order;          /* position before sorting: later sources win */
};

struct copy_op {
  struct build_run *run;
  struct stage_state *st;
  const struct parser_step *step;
  const char *what;          /* "COPY" or "ADD" */
  const struct build_context *ctx; /* for .dockerignore; NULL when not the context */
  uid_t uid;
  gid_t gid;
  long chmod;                /* -1: keep modes */
  bool keep_owners;          /* take uid/gid from the source (ADD archives) */
  int64_t now;
  struct item *items;
  size_t n, alloc;
  /* builder_copy_hash_in_layer(): each item's content digest and stat,
   * taken as write_layer() reads it ("" where it read nothing) */
  struct oci_hasher *pass_hasher;
  char (*pass_digests)[OCI_DIGEST_SIZE];
  struct stat *pass_stats;
  struct strvec tmpdirs;     /* staging directories to remove */
  int *fds;                  /* fds on staging directories, closed at the end */
  size_t n_fds, fds_alloc;
};

/* Keep fd open until the step ends (items refer to files beneath it). */
static void op_keep_fd(struct copy_op *op, int fd)
{
  CB_GROW(op->fds, op->n_fds + 1, op->fds_alloc);
  op->fds[op->n_fds++] = fd;
}

static int op_error(struct copy_op *op, struct cb_error *err, const char *fmt, ...)
    CB_PRINTF(3, 4);
static int op_error(struct copy_op *op, struct cb_error *err, const char *fmt, ...)
{
  char msg[1500];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return cb_error_set(err, "%s:%d: %s: %s", op->run->plan->df->file, op->step->line, op->what,
                      msg);
}

static struct item *item_new(struct copy_op *op, const char *dest)
{
  struct item *it;
  CB_GROW(op->items, op->n + 1, op->alloc);
  it = &op->items[op->n++];
  memset(it, 0, sizeof(*it));
  it->dest = xstrdup(dest);
  it->rootfd = -1;
  it->uid = op->uid;
  it->gid = op->gid;
  it->mtime = op->now;
  return it;
}

static void items_free(struct copy_op *op)
{
  for (size_t i = 0; i < op->n; i++) {
    free(op->items[i].dest);
    free(op->items[i].symlink);
    free(op->items[i].src);
    free(op->items[i].data);
  }
  free(op->items);
  op->items = NULL;
  op->n = op->alloc = 0;
  oci_hasher_free(op->pass_hasher);
  op->pass_hasher = NULL;
  free(op->pass_digests);
  op->pass_digests = NULL;
  free(op->pass_stats);
  op->pass_stats = NULL;
}

/* "a/b" + "c" -> "a/b/c", with "." meaning the root on either side. */
static char *join(const char *a, const char *b)
{
  if (!a || !*a || strcmp(a, ".") == 0)
    return xstrdup(b);
  if (!*b || strcmp(b, ".") == 0)
    return xstrdup(a);
  return xasprintf("%s/%s", a, b);
}

static mode_t apply_chmod(const struct copy_op *op, mode_t mode)
{
  if (op->chmod < 0 || S_ISLNK(mode))
    return mode;
  return (mode & S_IFMT) | (mode_t)op->chmod;
}

/* ---- sources beneath a root ---- */

/* Add one filesystem object found at src (beneath rootfd) as dest. */
static int add_object(struct copy_op *op, int rootfd, const char *src, const struct stat *st,
                      const char *dest, struct cb_error *err)
{
  struct item *it = item_new(op, dest);
  it->mode = apply_chmod(op, st->st_mode);
  it->mtime = st->st_mtim.tv_sec;
  if (op->keep_owners) {
    it->uid = st->st_uid;
    it->gid = st->st_gid;
  }
  it->rootfd = rootfd;
  it->src = xstrdup(src);
  it->dev = st->st_dev;
  it->ino = st->st_ino;
  it->nlink = st->st_nlink;
  it->src_mtime = st->st_mtim;
  it->src_ctime = st->st_ctim;
  if (S_ISREG(st->st_mode)) {
    it->size = st->st_size;
  } else if (S_ISLNK(st->st_mode)) {
    char buf[4096];
    cleanup_close int dfd = -1;
    cleanup_free char *dir = xstrdup(src);
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;
    ssize_t n;
    if (slash)
      *slash = '\0';
    dfd = cb_open_beneath(rootfd, slash ? dir : ".", O_PATH | O_DIRECTORY);
    if (dfd < 0)
      return op_error(op, err, "open \"%s\": %s", dir, strerror(errno));
    n = readlinkat(dfd, base, buf, sizeof(buf) - 1);
    if (n < 0)
      return op_error(op, err, "read the symlink \"%s\": %s", src, strerror(errno));
    buf[n] = '\0';
    it->symlink = xstrdup(buf);
  } else if (!S_ISDIR(st->st_mode)) {
    /* sockets, fifos and devices in a context are left out, as Docker does */
    free(it->dest);
    free(it->src);
    op->n--;
  }
  return 0;
}

static int stat_beneath(int rootfd, const char *path, struct stat *st)
{
  cleanup_free char *dir = xstrdup(path);
  char *slash = strrchr(dir, '/');
  cleanup_close int dfd = -1;
  if (strcmp(path, ".") == 0)
    return fstatat(rootfd, "", st, AT_EMPTY_PATH);
  if (slash)
    *slash = '\0';
  dfd = cb_open_beneath(rootfd, slash ? dir : ".", O_PATH | O_DIRECTORY);
  if (dfd < 0)
    return -1;
  return fstatat(dfd, slash ? slash + 1 : path, st, AT_SYMLINK_NOFOLLOW);
}

/* Open directory dir beneath rootfd for reading, or NULL with err. */
static DIR *open_dir(struct copy_op *op, int rootfd, const char *dir, struct cb_error *err)
{
  int fd = cb_open_beneath(rootfd, dir, O_RDONLY | O_DIRECTORY);
  DIR *d;
  if (fd < 0) {
    op_error(op, err, "open \"%s\": %s", dir, strerror(errno));
    return NULL;
  }
  d = fdopendir(fd);
  if (!d) {
    op_error(op, err, "read \"%s\": %s", dir, strerror(errno));
    close(fd);
  }
  return d;
}

/* Copy the contents of directory src (beneath rootfd) into dest. */
static int walk_dir(struct copy_op *op, int rootfd, const char *src, const char *dest,
                    struct cb_error *err)
{
  DIR *d = open_dir(op, rootfd, src, err);
  struct dirent *de;
  struct strvec names = STRVEC_INIT;
  int rc = 0;
  if (!d)
    return -1;
  while ((errno = 0, de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    strvec_push(&names, de->d_name);
  }
  if (errno)
    rc = op_error(op, err, "read \"%s\": %s", src, strerror(errno));
  for (size_t i = 0; rc == 0 && i < names.n; i++) {
    cleanup_free char *s = join(src, names.v[i]);
    cleanup_free char *t = join(dest, names.v[i]);
    struct stat st;
    bool excluded = op->ctx && context_excluded(op->ctx, s);
    if (fstatat(dirfd(d), names.v[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
      rc = op_error(op, err, "stat \"%s\": %s", s, strerror(errno));
      break;
    }
    if (excluded && !(S_ISDIR(st.st_mode) && parser_ignore_dir_needs_walk(op->ctx->ignore, s)))
      continue;
    if (!excluded)
      rc = add_object(op, rootfd, s, &st, t, err);
    if (rc == 0 && S_ISDIR(st.st_mode))
      rc = walk_dir(op, rootfd, s, t, err);
  }
  strvec_clear(&names);
  closedir(d);
  return rc;
}

/*
 * A source named explicitly that is a symlink is followed while its target
 * stays inside the root (relative targets only: an absolute one names the
 * host's filesystem).  Returns the path it leads to, or NULL to copy the
 * link itself.
 */
static char *follow_named(int rootfd, const char *src)
{
  cleanup_free char *cur = xstrdup(src);
  for (int hops = 0; hops < 40; hops++) {
    struct stat st;
    char buf[4096];
    cleanup_free char *dir = NULL;
    cleanup_close int dfd = -1;
    char *slash;
    ssize_t n;
    if (stat_beneath(rootfd, cur, &st) < 0)
      return NULL;
    if (!S_ISLNK(st.st_mode))
      return steal_pointer(&cur);
    dir = xstrdup(cur);
    slash = strrchr(dir, '/');
    if (slash)
      *slash = '\0';
    dfd = cb_open_beneath(rootfd, slash ? dir : ".", O_PATH | O_DIRECTORY);
    if (dfd < 0)
      return NULL;
    n = readlinkat(dfd, slash ? slash + 1 : cur, buf, sizeof(buf) - 1);
    if (n <= 0 || buf[0] == '/')
      return NULL;
    buf[n] = '\0';
    {
      /* Resolve lexically; a target climbing above the root leaves it. */
      cleanup_free char *joined = slash ? xasprintf("%s/%s", dir, buf) : xstrdup(buf);
      int depth = 0;
      for (char *p = joined; *p;) {
        char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
          if (--depth < 0)
            return NULL;
        } else if (len && !(len == 1 && p[0] == '.')) {
          depth++;
        }
        p += len + (e ? 1 : 0);
      }
      free(cur);
      cur = builder_path_clean(joined);
    }
  }
  return NULL;
}

static bool has_glob(const char *s) { return strpbrk(s, "*?[") != NULL; }

/* Every path beneath rootfd matching pattern (Go's filepath.Match rules). */
static int glob_walk(struct copy_op *op, int rootfd, const char *dir, const char *pattern,
                     struct strvec *out, struct cb_error *err)
{
  DIR *d = open_dir(op, rootfd, dir, err);
  struct dirent *de;
  struct strvec subdirs = STRVEC_INIT;
  int rc = 0;
  if (!d)
    return -1;
  while ((de = readdir(d)) != NULL) {
    cleanup_free char *p = NULL;
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    p = join(dir, de->d_name);
    if (op->ctx && context_excluded(op->ctx, p) &&
        !(de->d_type == DT_DIR && parser_ignore_dir_needs_walk(op->ctx->ignore, p)))
      continue;
    if (!(op->ctx && context_excluded(op->ctx, p)) && fnmatch(pattern, p, FNM_PATHNAME) == 0)
      strvec_push(out, p);
    if (de->d_type == DT_DIR)
      strvec_push(&subdirs, p);
  }
  closedir(d);
  for (size_t i = 0; rc == 0 && i < subdirs.n; i++)
    rc = glob_walk(op, rootfd, subdirs.v[i], pattern, out, err);
  strvec_clear(&subdirs);
  return rc;
}

/*
 * Expand a source into the paths it names beneath rootfd: itself, or its
 * glob matches (sorted).  An excluded or missing source is "not found".
 */
static int source_paths(struct copy_op *op, int rootfd, const char *src, struct strvec *out,
                        struct cb_error *err)
{
  cleanup_free char *clean = builder_path_clean(src);
  struct stat st;
  if (has_glob(clean)) {
    if (glob_walk(op, rootfd, ".", clean, out, err) < 0)
      return -1;
    strvec_sort(out);
  } else if ((!op->ctx || !context_excluded(op->ctx, clean)) && stat_beneath(rootfd, clean, &st) == 0) {
    strvec_push(out, clean);
  }
  if (out->n == 0)
    return op_error(op, err, "source \"%s\" not found in %s", src,
                    op->ctx ? "build context" : "the source stage");
  return 0;
}

/* ---- ADD: URLs and archives ---- */

static int make_tmpdir(struct copy_op *op, char **path, struct cb_error *err)
{
  char *t = xasprintf("%s/tmp/add-XXXXXX", cache_store_root(op->run->store));
  if (!mkdtemp(t)) {
    int e = errno;
    free(t);
    return cb_error_errno(err, e, "create a staging directory");
  }
  strvec_push(&op->tmpdirs, t);
  *path = t;
  return 0;
}

struct download {
  int fd;
  struct oci_hasher *h;
  int64_t size;
  int werr;
};

static size_t download_write(char *data, size_t size, size_t n, void *p)
{
  struct download *d = p;
  size_t len = size * n;
  if (cb_write_all(d->fd, data, len) < 0) {
    d->werr = errno;
    return 0;
  }
  oci_hasher_update(d->h, data, len);
  d->size += (int64_t)len;
  return len;
}

/* The last path component of a URL, for `ADD URL /dir/`. */
static char *url_basename(const char *url)
{
  const char *p = strstr(url, "://");
  const char *end, *slash;
  p = p ? p + 3 : url;
  end = p + strcspn(p, "?#");
  slash = NULL;
  for (const char *q = p; q < end; q++)
    if (*q == '/')
      slash = q;
  if (!slash || slash + 1 >= end)
    return NULL;
  return xstrndup(slash + 1, (size_t)(end - slash - 1));
}

static int add_url(struct copy_op *op, const char *url, const char *dest_dir,
                   const char *dest_file, struct cb_error *err)
{
  cleanup_free char *dir = NULL;
  cleanup_free char *name = url_basename(url);
  cleanup_free char *target = NULL;
  char digest[OCI_DIGEST_SIZE];
  struct download d = { -1, NULL, 0, 0 };
  CURL *c;
  CURLcode cr;
  long filetime = -1;
  char curlerr[CURL_ERROR_SIZE] = "";
  struct item *it;

  if (!dest_file && !name)
    return op_error(op, err, "cannot determine a file name from \"%s\": give a destination file",
                    url);
  if (make_tmpdir(op, &dir, err) < 0)
    return -1;
  target = xasprintf("%s/download", dir);
  d.fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (d.fd < 0)
    return cb_error_errno(err, errno, "create \"%s\"", target);
  d.h = oci_hasher_new();
  c = curl_easy_init();
  if (!c)
    cb_die("curl_easy_init failed");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(c, CURLOPT_FILETIME, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curlerr);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "cbuild/" CBUILD_VERSION);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, download_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
  cr = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_FILETIME, &filetime);
  curl_easy_cleanup(c);
  oci_hasher_final(d.h, digest);
  oci_hasher_free(d.h);
  if (close(d.fd) < 0 && cr == CURLE_OK)
    return op_error(op, err, "download \"%s\": %s", url, strerror(errno));
  if (d.werr)
    return op_error(op, err, "download \"%s\": %s", url, strerror(d.werr));
  if (cr != CURLE_OK)
    return op_error(op, err, "download \"%s\": %s", url, curlerr[0] ? curlerr : curl_easy_strerror(cr));
  if (op->step->checksum) {
    /* sha256 is what the store hashes; other algorithms are refused by the
     * parser until they are needed. */
    if (!cb_starts_with(op->step->checksum, "sha256:"))
      return op_error(op, err, "--checksum \"%s\": only sha256 is supported", op->step->checksum);
    if (strcmp(op->step->checksum, digest) != 0)
      return op_error(op, err, "download \"%s\": checksum mismatch: expected %s, got %s", url,
                      op->step->checksum, digest);
  }
  {
    cleanup_free char *dest = dest_file ? xstrdup(dest_file) : join(dest_dir, name);
    cleanup_close int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
      return cb_error_errno(err, errno, "open \"%s\"", dir);
    it = item_new(op, dest);
    it->mode = apply_chmod(op, S_IFREG | 0600);
    it->size = d.size;
    it->mtime = filetime > 0 ? filetime : op->now;
    /* The staging dir lives until the layer is written: keep an fd. */
    it->rootfd = dup(dirfd);
    if (it->rootfd < 0)
      return cb_error_errno(err, errno, "open \"%s\"", dir);
    it->src = xstrdup("download");
    op_keep_fd(op, it->rootfd);
  }
  return 0;
}

/* Turn an extracted archive's tree into items under dest_dir. */
static int add_archive(struct copy_op *op, int rootfd, const char *src, const char *dest_dir,
                       bool *not_archive, struct cb_error *err)
{
  cleanup_free char *dir = NULL;
  cleanup_close int afd = cb_open_beneath(rootfd, src, O_RDONLY);
  int dirfd;
  *not_archive = false;
  if (afd < 0)
    return op_error(op, err, "open \"%s\": %s", src, strerror(errno));
  if (make_tmpdir(op, &dir, err) < 0)
    return -1;
  dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    return cb_error_errno(err, errno, "open \"%s\"", dir);
  op_keep_fd(op, dirfd);
  /* Without --chown, ADD keeps the archive's owners, as Docker does; only
   * root can set them while extracting. */
  if (oci_archive_extract(afd, dirfd, !op->step->chown && geteuid() == 0, not_archive, err) < 0) {
    if (*not_archive)
      return 0;
    return cb_error_wrap(err, "%s:%d: ADD \"%s\"", op->run->plan->df->file, op->step->line, src);
  }
  {
    /* ADD of an archive: its contents are copied with the archive's own
     * metadata, but owned by --chown's user (or root); .dockerignore
     * applies to the context, not to what the archive holds. */
    const struct build_context *ctx = op->ctx;
    int r;
    op->ctx = NULL;
    op->keep_owners = !op->step->chown;
    r = walk_dir(op, dirfd, ".", dest_dir, err);
    op->keep_owners = false;
    op->ctx = ctx;
    return r;
  }
}

static bool is_url(const char *s)
{
  return cb_starts_with(s, "http://") || cb_starts_with(s, "https://");
}

/* A heredoc source: "<<NAME" or "<<-NAME". */
static const struct parser_heredoc *heredoc_source(const struct parser_step *step,
                                                   const char *src)
{
  const char *p = src;
  while (*p >= '0' && *p <= '9')
    p++;
  if (strncmp(p, "<<", 2) != 0)
    return NULL;
  p += 2;
  if (*p == '-')
    p++;
  for (size_t i = 0; i < step->n_heredocs; i++)
    if (strcmp(step->heredocs[i].name, p) == 0)
      return &step->heredocs[i];
  return NULL;
}

/* ---- --chown ---- */

/* Look name up in an /etc/passwd- or /etc/group-style file; -1 if absent. */
static long lookup_id(const char *db, const char *name, long *primary_gid)
{
  const char *line = db;
  size_t nlen = strlen(name);
  while (line && *line) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    if (len > nlen && strncmp(line, name, nlen) == 0 && line[nlen] == ':') {
      /* name:x:ID:GID:... */
      const char *f = memchr(line + nlen + 1, ':', len - nlen - 1);
      if (f) {
        char *e;
        long id = strtol(f + 1, &e, 10);
        if (e != f + 1 && *e == ':' && id >= 0) {
          if (primary_gid)
            *primary_gid = strtol(e + 1, NULL, 10);
          return id;
        }
      }
    }
    line = end ? end + 1 : NULL;
  }
  return -1;
}

static bool all_digits(const char *s)
{
  return *s && strspn(s, "0123456789") == strlen(s) && strlen(s) < 11;
}

static int resolve_chown(struct copy_op *op, const char *spec, struct cb_error *err)
{
  cleanup_free char *user = xstrdup(spec);
  char *group = strchr(user, ':');
  long uid = -1, gid = -1, primary = -1;
  if (group)
    *group++ = '\0';
  if (!*user || (group && !*group))
    return op_error(op, err, "invalid --chown \"%s\": want USER[:GROUP]", spec);
  if (all_digits(user)) {
    uid = strtol(user, NULL, 10);
  } else {
    cleanup_strbuf struct strbuf db = STRBUF_INIT;
    int r = fsview_read(stage_view(op->st, op->run->store), "etc/passwd", &db, err);
    if (r < 0)
      return -1;
    uid = r == 0 ? lookup_id(db.buf, user, &primary) : -1;
    if (uid < 0)
      return op_error(op, err, "--chown: unknown user \"%s\" (not in the image's /etc/passwd)",
                      user);
  }
  if (group && all_digits(group)) {
    gid = strtol(group, NULL, 10);
  } else if (group) {
    cleanup_strbuf struct strbuf db = STRBUF_INIT;
    int r = fsview_read(stage_view(op->st, op->run->store), "etc/group", &db, err);
    if (r < 0)
      return -1;
    gid = r == 0 ? lookup_id(db.buf, group, NULL) : -1;
    if (gid < 0)
      return op_error(op, err, "--chown: unknown group \"%s\" (not in the image's /etc/group)",
                      group);
  } else {
    /* USER alone: a name takes its primary group, a number the same number */
    gid = primary >= 0 ? primary : uid;
  }
  if (uid > UINT32_MAX - 1 || gid > UINT32_MAX - 1)
    return op_error(op, err, "invalid --chown \"%s\"", spec);
  op->uid = (uid_t)uid;
  op->gid = (gid_t)gid;
  return 0;
}

/* ---- the layer ---- */

static int cmp_item(const void *a, const void *b)
{
  const struct item *x = a, *y = b;
  int c = strcmp(x->dest, y->dest);
  if (c)
    return c;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* ---- hash tables for items_finish (open addressing, linear probing) ---- */

static uint64_t hash_bytes(uint64_t h, const void *data, size_t n)
{
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 1099511628211ULL; /* FNV-1a */
  return h;
}

#define HASH_SEED 1469598103934665603ULL

/*
 * Item indexes keyed by destination path, or by source file (rootfd,
 * device, inode); SIZE_MAX marks a free slot.  Kept at most half full.
 */
struct item_table {
  size_t *slots;
  size_t size, n;
  bool by_inode;
};

static uint64_t item_key_hash(const struct item_table *t, const struct item *it)
{
  uint64_t h = HASH_SEED;
  if (!t->by_inode)
    return hash_bytes(h, it->dest, strlen(it->dest));
  h = hash_bytes(h, &it->rootfd, sizeof(it->rootfd));
  h = hash_bytes(h, &it->dev, sizeof(it->dev));
  return hash_bytes(h, &it->ino, sizeof(it->ino));
}

static bool item_key_equal(const struct item_table *t, const struct item *a, const struct item *b)
{
  if (!t->by_inode)
    return strcmp(a->dest, b->dest) == 0;
  return a->rootfd == b->rootfd && a->dev == b->dev && a->ino == b->ino;
}

static void item_table_release(struct item_table *t)
{
  free(t->slots);
  memset(t, 0, sizeof(*t));
}
#define cleanup_item_table __attribute__((cleanup(item_table_release)))

/* The index of an item with key's key, or SIZE_MAX. */
static size_t item_table_find(const struct item_table *t, const struct item *items,
                              const struct item *key)
{
  size_t mask = t->size - 1;
  if (t->size == 0)
    return SIZE_MAX;
  for (size_t h = (size_t)item_key_hash(t, key) & mask; t->slots[h] != SIZE_MAX;
       h = (h + 1) & mask)
    if (item_key_equal(t, &items[t->slots[h]], key))
      return t->slots[h];
  return SIZE_MAX;
}

static void item_table_put(struct item_table *t, const struct item *items, size_t idx);

static void item_table_grow(struct item_table *t, const struct item *items)
{
  size_t *old = t->slots, old_size = t->size;
  t->size = old_size ? st_mult(old_size, 2) : 64;
  t->slots = xmalloc(st_mult(t->size, sizeof(*t->slots)));
  memset(t->slots, 0xff, t->size * sizeof(*t->slots));
  t->n = 0;
  for (size_t i = 0; i < old_size; i++)
    if (old[i] != SIZE_MAX)
      item_table_put(t, items, old[i]);
  free(old);
}

/* Add items[idx]; its key must not be in the table yet. */
static void item_table_put(struct item_table *t, const struct item *items, size_t idx)
{
  size_t mask, h;
  if (st_mult(t->n + 1, 2) > t->size)
    item_table_grow(t, items);
  mask = t->size - 1;
  for (h = (size_t)item_key_hash(t, &items[idx]) & mask; t->slots[h] != SIZE_MAX;
       h = (h + 1) & mask)
    ;
  t->slots[h] = idx;
  t->n++;
}

/*
 * Add the destination's missing parent directories, sort by path (a
 * directory before its contents, as the layer writer wants), keep the last
 * of several sources landing on one path, and mark hardlinks: the first
 * path of a (device, inode) pair carries the content, the others link to it.
 * Hash tables keep it linear in the number of items: a context of tens of
 * thousands of files must not cost a strcmp per pair of them.
 */
static int items_finish(struct copy_op *op, struct cb_error *err)
{
  struct fsview *view = stage_view(op->st, op->run->store);
  cleanup_item_table struct item_table dests = { NULL, 0, 0, false };
  cleanup_item_table struct item_table inodes = { NULL, 0, 0, true };
  size_t n0 = op->n, w = 0;
  for (size_t i = 0; i < n0; i++)
    if (item_table_find(&dests, op->items, &op->items[i]) == SIZE_MAX)
      item_table_put(&dests, op->items, i);
  for (size_t i = 0; i < n0; i++) {
    cleanup_free char *p = xstrdup(op->items[i].dest);
    char *slash;
    while ((slash = strrchr(p, '/')) != NULL) {
      const struct fsview_node *node;
      struct item key = { .dest = p };
      *slash = '\0';
      if (item_table_find(&dests, op->items, &key) != SIZE_MAX)
        break;
      if (fsview_lookup(view, p, &node, err) < 0)
        return -1;
      if (node && S_ISDIR(node->mode))
        break;
      item_new(op, p)->mode = S_IFDIR | 0755;
      item_table_put(&dests, op->items, op->n - 1);
    }
  }
  for (size_t i = 0; i < op->n; i++)
    op->items[i].order = i;
  if (op->n > 1)
    qsort(op->items, op->n, sizeof(*op->items), cmp_item);
  for (size_t i = 0; i < op->n; i++) {
    if (i + 1 < op->n && strcmp(op->items[i].dest, op->items[i + 1].dest) == 0) {
      free(op->items[i].dest);
      free(op->items[i].symlink);
      free(op->items[i].src);
      free(op->items[i].data);
      continue;
    }
    op->items[w++] = op->items[i];
  }
  op->n = w;
  /* inodes: the first regular file with a source, per (rootfd, dev, ino) */
  for (size_t i = 0; i < op->n; i++) {
    struct item *it = &op->items[i];
    size_t first;
    if (!S_ISREG(it->mode) || !it->src)
      continue;
    first = item_table_find(&inodes, op->items, it);
    if (first == SIZE_MAX) {
      item_table_put(&inodes, op->items, i);
    } else if (it->nlink >= 2) {
      it->hardlink = op->items[first].dest;
      it->size = 0;
    }
  }
  return 0;
}

/* The xattrs a layer keeps: security.capability and user.*. */
static void read_xattrs(int fd, struct oci_xattr *xa, size_t *n, struct strbuf *store)
{
  char names[4096];
  ssize_t len = flistxattr(fd, names, sizeof(names));
  size_t offs[16][2];
  *n = 0;
  for (ssize_t i = 0; i < len && *n < 16; i += (ssize_t)strlen(names + i) + 1) {
    const char *name = names + i;
    char value[4096];
    ssize_t vlen;
    if (strcmp(name, "security.capability") != 0 && !cb_starts_with(name, "user."))
      continue;
    vlen = fgetxattr(fd, name, value, sizeof(value));
    if (vlen < 0)
      continue;
    offs[*n][0] = store->len;
    strbuf_add(store, name, strlen(name) + 1);
    offs[*n][1] = store->len;
    strbuf_add(store, value, (size_t)vlen);
    xa[*n].size = (size_t)vlen;
    (*n)++;
  }
  /* pointers only once the buffer stops moving */
  for (size_t k = 0; k < *n; k++) {
    xa[k].name = store->buf + offs[k][0];
    xa[k].value = store->buf + offs[k][1];
  }
}

static void content_hash_start(struct oci_hasher *h, const struct oci_xattr *xa, size_t n_xa);

static int write_item(struct copy_op *op, struct oci_layer_writer *w, size_t index,
                      struct cb_error *err)
{
  const struct item *it = &op->items[index];
  struct oci_hasher *content = NULL;
  struct oci_entry e;
  struct oci_xattr xa[16];
  cleanup_strbuf struct strbuf xstore = STRBUF_INIT;
  cleanup_close int fd = -1;
  memset(&e, 0, sizeof(e));
  e.path = it->dest;
  e.mode = it->mode;
  e.uid = it->uid;
  e.gid = it->gid;
  e.mtime = it->mtime;
  e.size = it->size;
  e.symlink = it->symlink;
  e.hardlink = it->hardlink;
  if (it->data)
    return oci_layer_writer_add_data(w, &e, it->data, err);
  if (it->src && !it->hardlink && (S_ISREG(it->mode) || S_ISDIR(it->mode))) {
    fd = cb_open_beneath(it->rootfd, it->src, S_ISDIR(it->mode) ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0)
      return op_error(op, err, "open \"%s\": %s", it->src, strerror(errno));
    read_xattrs(fd, xa, &e.n_xattrs, &xstore);
    e.xattrs = xa;
    if (op->pass_digests) {
      if (fstat(fd, &op->pass_stats[index]) < 0)
        return op_error(op, err, "stat \"%s\": %s", it->src, strerror(errno));
      content = op->pass_hasher;
      content_hash_start(content, xa, e.n_xattrs);
    }
  }
  if (oci_layer_writer_add_hashed(w, &e, S_ISREG(it->mode) && !it->hardlink ? fd : -1, content,
                                  err) < 0)
    return -1;
  if (content)
    oci_hasher_final_later(content, op->pass_digests[index]);
  return 0;
}

static int write_layer(struct copy_op *op, struct cb_error *err)
{
  cleanup_free char *path = NULL;
  struct oci_layer_writer *w;
  struct oci_layer_info info;
  struct oci_layer_options lo = op->run->layer_opts;
  int fd = cache_blob_create(op->run->store, &path, err);
  if (fd < 0)
    return -1;
  lo.stream = builder_layer_stream(op->run, op->st);
  w = oci_layer_writer_new(fd, &lo, err);
  if (!w)
    goto fail;
  for (size_t i = 0; i < op->n; i++)
    if (write_item(op, w, i, err) < 0)
      goto fail;
  if (op->pass_hasher)
    oci_hasher_wait(op->pass_hasher);
  if (oci_layer_writer_finish(w, &info, err) < 0)
    goto fail;
  oci_layer_writer_free(w);
  return builder_add_layer(op->run, op->st, fd, path, &info, op->step->text, err);
fail:
  if (w)
    oci_layer_writer_free(w);
  cache_blob_abort(op->run->store, fd, path);
  return -1;
}

/* ---- another stage's files, for COPY --from ---- */

/* Remove whiteout markers and what they hide, under dir (beneath rootfd). */
static int apply_whiteouts(int rootfd, const char *dir, struct cb_error *err)
{
  int fd = cb_open_beneath(rootfd, dir, O_RDONLY | O_DIRECTORY);
  DIR *d;
  struct dirent *de;
  struct strvec subdirs = STRVEC_INIT, victims = STRVEC_INIT;
  int rc = 0;
  if (fd < 0)
    return cb_error_errno(err, errno, "open \"%s\"", dir);
  d = fdopendir(fd);
  if (!d) {
    close(fd);
    return cb_error_errno(err, errno, "read \"%s\"", dir);
  }
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (cb_starts_with(de->d_name, ".wh.")) {
      strvec_push(&victims, de->d_name);
      continue;
    }
    if (de->d_type == DT_DIR)
      strvec_push(&subdirs, de->d_name);
  }
  for (size_t i = 0; i < victims.n; i++) {
    const char *hidden = victims.v[i] + 4;
    unlinkat(dirfd(d), victims.v[i], 0);
    if (strcmp(victims.v[i], ".wh..wh..opq") != 0 && cb_remove_tree(dirfd(d), hidden) < 0 &&
        errno != ENOENT)
      rc = cb_error_errno(err, errno, "remove \"%s/%s\"", dir, hidden);
  }
  for (size_t i = 0; rc == 0 && i < subdirs.n; i++) {
    cleanup_free char *sub = join(dir, subdirs.v[i]);
    rc = apply_whiteouts(rootfd, sub, err);
  }
  strvec_clear(&subdirs);
  strvec_clear(&victims);
  closedir(d);
  return rc;
}

/*
 * The files of a built stage (or an image's layers), extracted into a
 * staging directory, layer by layer.  Snapshots replace this with the RUN
 * sandbox's overlay later.
 */
static int materialize(struct copy_op *op, const struct oci_descriptor *layers, size_t n,
                       int *rootfd, struct cb_error *err)
{
  cleanup_free char *dir = NULL;
  int dirfd;
  if (make_tmpdir(op, &dir, err) < 0)
    return -1;
  dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    return cb_error_errno(err, errno, "open \"%s\"", dir);
  op_keep_fd(op, dirfd);
  for (size_t i = 0; i < n; i++) {
    int64_t size;
    bool not_archive;
    cleanup_close int fd = -1;
    if (cache_blob_verify(op->run->store, layers[i].digest, err) < 0)
      return -1;
    fd = cache_blob_open(op->run->store, layers[i].digest, &size, err);
    if (fd < 0 || oci_archive_extract(fd, dirfd, false, &not_archive, err) < 0)
      return cb_error_wrap(err, "unpack layer %s", layers[i].digest);
    if (apply_whiteouts(dirfd, ".", err) < 0)
      return -1;
  }
  *rootfd = dirfd;
  return 0;
}

static void cleanup_tmpdirs(struct copy_op *op)
{
  for (size_t i = 0; i < op->n_fds; i++)
    close(op->fds[i]);
  free(op->fds);
  op->fds = NULL;
  op->n_fds = op->fds_alloc = 0;
  /* staging trees are ours, under the store's tmp/ */
  for (size_t i = 0; i < op->tmpdirs.n; i++)
    cb_remove_tree(AT_FDCWD, op->tmpdirs.v[i]);
  strvec_clear(&op->tmpdirs);
}

/* ---- the step ---- */

enum source_kind { SOURCE_PATH, SOURCE_HEREDOC, SOURCE_URL };

struct source {
  enum source_kind kind;
  char *path; /* the path beneath the root, or the URL */
  const struct parser_heredoc *doc;
};

static const char *base_name(const char *p)
{
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

static int copy_path(struct copy_op *op, int rootfd, const char *src, bool dest_dir,
                     const char *dest, struct cb_error *err)
{
  struct stat st;
  cleanup_free char *real = NULL;
  /* a followed symlink keeps its own name in a directory destination */
  cleanup_free char *name = xstrdup(base_name(src));
  if (stat_beneath(rootfd, src, &st) < 0)
    return op_error(op, err, "source \"%s\": %s", src, strerror(errno));
  if (S_ISLNK(st.st_mode) && (real = follow_named(rootfd, src)) != NULL) {
    if (stat_beneath(rootfd, real, &st) < 0)
      return op_error(op, err, "source \"%s\": %s", real, strerror(errno));
    src = real;
  }
  if (S_ISDIR(st.st_mode))
    return walk_dir(op, rootfd, src, dest, err);
  if (op->step->instr == PARSER_ADD && S_ISREG(st.st_mode) && op->ctx) {
    bool not_archive = false;
    if (add_archive(op, rootfd, src, dest, &not_archive, err) < 0)
      return -1;
    if (!not_archive)
      return 0;
  }
  {
    cleanup_free char *target = dest_dir ? join(dest, name) : xstrdup(dest);
    return add_object(op, rootfd, src, &st, target, err);
  }
}

/* Whether a --chown value names a user or group (rather than numbers). */
static bool chown_names(const char *spec)
{
  cleanup_free char *user = xstrdup(spec);
  char *group = strchr(user, ':');
  if (group)
    *group++ = '\0';
  return !all_digits(user) || (group && !all_digits(group));
}

struct copy_prep {
  struct copy_op op;
  int stage;
  /* for_key: the destination, taken for a file name without looking in
   * the image whether it is a directory (the parent's key settles that) */
  char *dest_unchecked;
  bool chown_deferred; /* for_key: --chown names left unresolved (ids 0) */
};

int builder_copy_prepare(struct build_run *run, int stage, const struct parser_step *step,
                         bool for_key, struct copy_prep **out, struct cb_error *err)
{
  struct copy_prep *cp = xcalloc(1, sizeof(*cp));
  struct copy_op *op = &cp->op;
  struct source *srcs = NULL;
  size_t n_srcs = 0, alloc = 0;
  cleanup_free char *dest_abs = NULL;
  cleanup_free char *dest = NULL;
  bool dest_dir;
  int rootfd = run->ctx.dirfd;
  int rc = -1;

  *out = cp;
  cp->stage = stage;
  op->run = run;
  op->st = &run->stages[stage];
  op->step = step;
  op->what = parser_instr_name(step->instr);
  op->ctx = &run->ctx;
  op->chmod = step->chmod ? strtol(step->chmod, NULL, 8) : -1;
  op->now = run->epoch >= 0 ? run->epoch : (int64_t)time(NULL);

  dest_abs = builder_dest_path(op->st->config.working_dir, step->args.v[step->args.n - 1]);
  dest_dir = cb_ends_with(dest_abs, "/");
  dest = builder_path_clean(dest_abs);
  if (step->chown && for_key && chown_names(step->chown)) {
    /* names take the image's /etc/passwd and /etc/group: not read for the
     * key (the parent's key fixes them, the flag is in the instruction) */
    cp->chown_deferred = true;
  } else if (step->chown && resolve_chown(op, step->chown, err) < 0)
    goto out;

  if (step->from && step->from_stage >= 0) {
    const struct stage_state *from = &run->stages[step->from_stage];
    if (materialize(op, from->layers, from->n_layers, &rootfd, err) < 0)
      goto out;
    op->ctx = NULL;
  } else if (step->from) {
    /* an image of the local store */
    struct stage_state image;
    char digest[OCI_DIGEST_SIZE];
    int r;
    memset(&image, 0, sizeof(image));
    r = builder_image_load(run->store, step->from, &image, digest, err);
    if (r == 0)
      r = materialize(op, image.layers, image.n_layers, &rootfd, err);
    stage_state_release(&image);
    if (r < 0) {
      cb_error_wrap(err, "--from=%s", step->from);
      goto out;
    }
    op->ctx = NULL;
  }
  if (step->checksum && !(step->args.n == 2 && is_url(step->args.v[0]))) {
    op_error(op, err, "--checksum needs a single http(s) URL source");
    goto out;
  }

  for (size_t i = 0; i + 1 < step->args.n; i++) {
    const char *s = step->args.v[i];
    const struct parser_heredoc *doc = heredoc_source(step, s);
    struct strvec paths = STRVEC_INIT;
    if (doc || (step->instr == PARSER_ADD && is_url(s))) {
      CB_GROW(srcs, n_srcs + 1, alloc);
      srcs[n_srcs].kind = doc ? SOURCE_HEREDOC : SOURCE_URL;
      srcs[n_srcs].path = xstrdup(s);
      srcs[n_srcs].doc = doc;
      n_srcs++;
      continue;
    }
    if (source_paths(op, rootfd, s, &paths, err) < 0) {
      strvec_clear(&paths);
      goto out;
    }
    for (size_t k = 0; k < paths.n; k++) {
      CB_GROW(srcs, n_srcs + 1, alloc);
      srcs[n_srcs].kind = SOURCE_PATH;
      srcs[n_srcs].path = xstrdup(paths.v[k]);
      srcs[n_srcs].doc = NULL;
      n_srcs++;
    }
    strvec_clear(&paths);
  }
  if (n_srcs > 1 && !dest_dir) {
    op_error(op, err, "with more than one source, the destination \"%s\" must be a directory ending in /",
             step->args.v[step->args.n - 1]);
    goto out;
  }
  if (!dest_dir && strcmp(dest, ".") != 0 && for_key) {
    /* the image's layers are not read until the step has to run */
    cp->dest_unchecked = xstrdup(dest);
  } else if (!dest_dir && strcmp(dest, ".") != 0) {
    const struct fsview_node *node;
    if (fsview_lookup(stage_view(op->st, run->store), dest, &node, err) < 0)
      goto out;
    dest_dir = node && S_ISDIR(node->mode);
  }

  for (size_t i = 0; i < n_srcs; i++) {
    const struct source *s = &srcs[i];
    if (s->kind == SOURCE_HEREDOC) {
      cleanup_free char *target = dest_dir ? join(dest, s->doc->name) : xstrdup(dest);
      struct item *it = item_new(op, target);
      it->mode = apply_chmod(op, S_IFREG | 0644);
      it->data = xstrdup(s->doc->content);
      it->size = (int64_t)strlen(it->data);
    } else if (s->kind == SOURCE_URL) {
      if (add_url(op, s->path, dest_dir ? dest : NULL, dest_dir ? NULL : dest, err) < 0)
        goto out;
    } else if (copy_path(op, rootfd, s->path, dest_dir, dest, err) < 0) {
      goto out;
    }
  }
  if (items_finish(op, err) < 0)
    goto out;
  rc = 0;
out:
  for (size_t i = 0; i < n_srcs; i++)
    free(srcs[i].path);
  free(srcs);
  return rc;
}

bool builder_copy_hash_in_layer(struct copy_prep *cp)
{
  struct copy_op *op = &cp->op;
  /* with --chown names, the ids the key takes are not the layer's */
  if (cp->chown_deferred)
    return false;
  if (op->pass_digests == NULL) {
    int64_t bytes = 0;
    for (size_t i = 0; i < op->n; i++)
      bytes += op->items[i].size;
    /* a thread of its own when there is much to hash: the layer's main
     * loop is busy enough */
    op->pass_hasher = bytes >= HASH_THREADS_MIN_BYTES ? oci_hasher_new_threaded()
                                                      : oci_hasher_new();
    op->pass_digests = xcalloc(op->n ? op->n : 1, sizeof(*op->pass_digests));
    op->pass_stats = xcalloc(op->n ? op->n : 1, sizeof(*op->pass_stats));
  }
  return true;
}

int builder_copy_commit(struct copy_prep *cp, struct cb_error *err)
{
  struct copy_op *op = &cp->op;
  if (cp->dest_unchecked) {
    const struct fsview_node *node;
    if (fsview_lookup(stage_view(op->st, op->run->store), cp->dest_unchecked, &node, err) < 0)
      return -1;
    if (node && S_ISDIR(node->mode)) {
      /* keyed as a file name, it is a directory: the sources go inside */
      struct copy_prep *full = NULL;
      int rc = builder_copy_prepare(op->run, cp->stage, op->step, false, &full, err);
      if (rc == 0)
        rc = write_layer(&full->op, err);
      builder_copy_free(full);
      return rc;
    }
  }
  if (cp->chown_deferred) {
    /* with --chown every item is the named owner's (no archive keeps its
     * own): the ids the key left open, from the image */
    if (resolve_chown(op, op->step->chown, err) < 0)
      return -1;
    for (size_t i = 0; i < op->n; i++) {
      op->items[i].uid = op->uid;
      op->items[i].gid = op->gid;
    }
  }
  return write_layer(op, err);
}

void builder_copy_free(struct copy_prep *cp)
{
  if (cp == NULL)
    return;
  items_free(&cp->op);
  cleanup_tmpdirs(&cp->op);
  free(cp->dest_unchecked);
  free(cp);
}

int builder_copy(struct build_run *run, int stage, const struct parser_step *step,
                 struct cb_error *err)
{
  struct copy_prep *cp = NULL;
  int rc = builder_copy_prepare(run, stage, step, false, &cp, err);
  if (rc == 0)
    rc = builder_copy_commit(cp, err);
  builder_copy_free(cp);
  return rc;
}

/* ---- the inputs of the cache key ---- */

int builder_bind_inputs(struct build_run *run, int stage, const struct parser_step *step,
                        const char *source, const char *prefix, struct cache_stat_cache *sc,
                        struct strvec *files, struct cb_error *err)
{
  struct copy_prep *cp = xcalloc(1, sizeof(*cp));
  struct copy_op *op = &cp->op;
  cleanup_free char *src = builder_path_clean(source && *source ? source : ".");
  int rc;
  op->run = run;
  op->st = &run->stages[stage];
  op->step = step;
  op->what = "RUN --mount";
  op->ctx = &run->ctx;
  op->chmod = -1;
  /* what the step sees through the mount, named below prefix */
  rc = copy_path(op, run->ctx.dirfd, src, true, prefix, err);
  if (rc == 0)
    rc = items_finish(op, err);
  if (rc == 0)
    rc = builder_copy_inputs(cp, sc, files, err);
  builder_copy_free(cp);
  return rc;
}

/* A content digest is sha256 over a file's kept xattrs, then its content
 * (content_digest(), or the layer writer as it reads the file). */
static void content_hash_start(struct oci_hasher *h, const struct oci_xattr *xa, size_t n_xa)
{
  for (size_t i = 0; i < n_xa; i++) {
    char len[32];
    snprintf(len, sizeof(len), "%zu:", xa[i].size);
    oci_hasher_update(h, xa[i].name, strlen(xa[i].name) + 1);
    oci_hasher_update(h, len, strlen(len));
    oci_hasher_update(h, xa[i].value, xa[i].size);
  }
  oci_hasher_update(h, "\0content\0", 9);
}

static int content_digest(struct copy_op *op, const struct item *it, int fd,
                          char out[OCI_DIGEST_SIZE], struct cb_error *err)
{
  struct oci_hasher *h = oci_hasher_new();
  struct oci_xattr xa[16];
  size_t n_xa = 0;
  cleanup_strbuf struct strbuf xstore = STRBUF_INIT;
  char buf[65536];
  ssize_t n;
  read_xattrs(fd, xa, &n_xa, &xstore);
  content_hash_start(h, xa, n_xa);
  if (S_ISREG(it->mode)) {
    while ((n = cb_read_retry(fd, buf, sizeof(buf))) > 0)
      oci_hasher_update(h, buf, (size_t)n);
    if (n < 0) {
      oci_hasher_free(h);
      return op_error(op, err, "read \"%s\": %s", it->src, strerror(errno));
    }
  }
  oci_hasher_final(h, out);
  oci_hasher_free(h);
  return 0;
}

static bool item_from_context(const struct copy_op *op, const struct item *it)
{
  return op->ctx && it->rootfd == op->run->ctx.dirfd && S_ISREG(it->mode);
}

/* The digest of what an item holds when it needs no reading: in-memory
 * data, what has no content, or a context file the stat cache knows. */
static bool item_content_known(struct copy_op *op, const struct item *it,
                               struct cache_stat_cache *sc, char out[OCI_DIGEST_SIZE])
{
  struct stat st;
  if (it->data) {
    oci_digest_buf(it->data, strlen(it->data), out);
    return true;
  }
  if (!it->src || it->hardlink || !(S_ISREG(it->mode) || S_ISDIR(it->mode))) {
    out[0] = '\0';
    return true;
  }
  if (!item_from_context(op, it))
    return false;
  /* the walk's stat of the file, not a second one */
  memset(&st, 0, sizeof(st));
  st.st_dev = it->dev;
  st.st_ino = it->ino;
  st.st_size = (off_t)it->size;
  st.st_mtim = it->src_mtime;
  st.st_ctim = it->src_ctime;
  return cache_stat_lookup(sc, it->src, &st, out);
}

/* The digest of what an item holds, read from its file; *st is the stat
 * of what was read, for the stat cache.  Safe in several threads. */
static int item_content_read(struct copy_op *op, const struct item *it,
                             char out[OCI_DIGEST_SIZE], struct stat *st, struct cb_error *err)
{
  cleanup_close int fd =
    cb_open_beneath(it->rootfd, it->src, S_ISDIR(it->mode) ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0)
    return op_error(op, err, "open \"%s\": %s", it->src, strerror(errno));
  if (fstat(fd, st) < 0)
    return op_error(op, err, "stat \"%s\": %s", it->src, strerror(errno));
  return content_digest(op, it, fd, out, err);
}

/*
 * Reading a cold context is the longest part of a COPY's cache key:
 * files are read and hashed by one thread per CPU (from
 * HASH_THREADS_MIN_BYTES on).  Each takes the next file in order; the
 * error reported is the first file's that failed, as with one thread.
 */

struct hash_work {
  struct copy_op *op;
  const size_t *todo; /* item indexes */
  size_t n_todo;
  char (*digests)[OCI_DIGEST_SIZE]; /* per item */
  struct stat *stats;               /* per todo entry */
  pthread_mutex_t mu;
  size_t next;
  size_t failed_at; /* the first todo entry that failed, or n_todo */
  struct cb_error err;
};

static void *hash_work_run(void *data)
{
  struct hash_work *w = data;
  struct cb_error err;
  for (;;) {
    pthread_mutex_lock(&w->mu);
    size_t i = w->next++;
    bool stop = i >= w->n_todo || i > w->failed_at;
    pthread_mutex_unlock(&w->mu);
    if (stop)
      return NULL;
    size_t k = w->todo[i];
    if (item_content_read(w->op, &w->op->items[k], w->digests[k], &w->stats[i], &err) < 0) {
      pthread_mutex_lock(&w->mu);
      if (i < w->failed_at) {
        w->failed_at = i;
        w->err = err;
      }
      pthread_mutex_unlock(&w->mu);
    }
  }
}

static int hash_items(struct copy_op *op, struct cache_stat_cache *sc,
                      char (*digests)[OCI_DIGEST_SIZE], struct cb_error *err)
{
  cleanup_free size_t *todo = xcalloc(op->n ? op->n : 1, sizeof(*todo));
  cleanup_free pthread_t *threads = NULL;
  struct hash_work w;
  int64_t bytes = 0;
  int n_threads = 0, want;

  memset(&w, 0, sizeof(w));
  for (size_t i = 0; i < op->n; i++)
    if (op->pass_digests && op->pass_digests[i][0]) {
      /* read as the layer was written */
      memcpy(digests[i], op->pass_digests[i], OCI_DIGEST_SIZE);
      if (item_from_context(op, &op->items[i]))
        cache_stat_record(sc, op->items[i].src, &op->pass_stats[i], digests[i]);
    } else if (!item_content_known(op, &op->items[i], sc, digests[i])) {
      todo[w.n_todo++] = i;
      bytes += op->items[i].size;
    }
  if (w.n_todo == 0)
    return 0;
  w.op = op;
  w.todo = todo;
  w.digests = digests;
  w.stats = xcalloc(w.n_todo, sizeof(*w.stats));
  w.failed_at = w.n_todo;
  pthread_mutex_init(&w.mu, NULL);

  want = bytes >= HASH_THREADS_MIN_BYTES ? cb_cpu_count() - 1 : 0;
  if ((size_t)want >= w.n_todo)
    want = (int)w.n_todo - 1;
  if (want > 0)
    threads = xcalloc((size_t)want, sizeof(*threads));
  /* a thread that cannot start leaves its share to the others */
  while (n_threads < want && pthread_create(&threads[n_threads], NULL, hash_work_run, &w) == 0)
    n_threads++;
  hash_work_run(&w);
  for (int i = 0; i < n_threads; i++)
    pthread_join(threads[i], NULL);
  pthread_mutex_destroy(&w.mu);

  if (w.failed_at < w.n_todo) {
    *err = w.err;
    free(w.stats);
    return -1;
  }
  for (size_t i = 0; i < w.n_todo; i++)
    if (item_from_context(op, &op->items[todo[i]]))
      cache_stat_record(sc, op->items[todo[i]].src, &w.stats[i], digests[todo[i]]);
  free(w.stats);
  return 0;
}

int builder_copy_inputs(struct copy_prep *cp, struct cache_stat_cache *sc, struct strvec *files,
                        struct cb_error *err)
{
  struct copy_op *op = &cp->op;
  cleanup_strbuf struct strbuf meta = STRBUF_INIT;
  cleanup_free char(*contents)[OCI_DIGEST_SIZE] = xcalloc(op->n ? op->n : 1, sizeof(*contents));
  if (hash_items(op, sc, contents, err) < 0)
    return -1;
  for (size_t i = 0; i < op->n; i++) {
    const struct item *it = &op->items[i];
    const char *content = contents[i];
    char digest[OCI_DIGEST_SIZE];
    strbuf_reset(&meta);
    strbuf_addf(&meta, "%o %u %u %zu:%s %zu:%s %s", (unsigned)it->mode, (unsigned)it->uid,
                (unsigned)it->gid, it->symlink ? strlen(it->symlink) : 0,
                it->symlink ? it->symlink : "", it->hardlink ? strlen(it->hardlink) : 0,
                it->hardlink ? it->hardlink : "", content);
    oci_digest_buf(meta.buf, meta.len, digest);
    if (it->src && op->ctx) {
      /* the context path too, for the miss explanations (tabs escaped:
       * the line's last tab is the digest's) */
      cleanup_strbuf struct strbuf src = STRBUF_INIT;
      for (const char *c = it->src; *c; c++)
        if (*c == '\t')
          strbuf_addstr(&src, "\\t");
        else
          strbuf_addch(&src, *c);
      strvec_pushf(files, "%s\t%s\t%s", it->dest, src.buf, digest);
    } else
      strvec_pushf(files, "%s\t%s", it->dest, digest);
  }
  return 0;
}


int builder_mkdir_layer(struct build_run *run, int stage, const struct parser_step *step,
                        const char *path, struct cb_error *err)
{
  struct copy_op op;
  int rc;
  memset(&op, 0, sizeof(op));
  op.run = run;
  op.st = &run->stages[stage];
  op.step = step;
  op.what = parser_instr_name(step->instr);
  op.chmod = -1;
  op.now = run->epoch >= 0 ? run->epoch : (int64_t)time(NULL);
  item_new(&op, path)->mode = S_IFDIR | 0755;
  rc = items_finish(&op, err) < 0 || write_layer(&op, err) < 0 ? -1 : 0;
  items_free(&op);
  return rc;
}
