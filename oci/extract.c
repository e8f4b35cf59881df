/*
 * Extracting a tar archive (plain, gzip, bzip2, xz or zstd, told apart by
 * content) into a directory that may already hold files: ADD of a local
 * archive, and the layers of a stage being materialized.
 *
 * The archive is hostile.  Nothing here uses archive_write_disk, which
 * works on paths relative to the process's cwd; every file is made with
 * *at() calls on directory fds found by confined resolution, so nothing
 * depends on the cwd and the builder may run threads meanwhile.
 *
 * Confinement, entry by entry:
 *
 *  - The entry's name is cleaned lexically as Go's filepath.Clean does for
 *    Docker's Untar: "." and empty components go, ".." removes the one
 *    before it.  A relative name whose ".." climbs above the destination is
 *    refused ("path leaves the destination").  A leading "/" makes the name
 *    relative to the destination, where ".." stops as it stops at "/";
 *    Docker does the same (filepath.Join(dest, Clean(name))).
 *
 *  - The parent directory is opened with openat2(RESOLVE_IN_ROOT |
 *    RESOLVE_NO_MAGICLINKS) from the destination: symlinks on the way are
 *    followed as if the destination were "/" (a chroot, as Docker's
 *    chrootarchive and containerd's fs.RootPath do), so "link -> /etc" then
 *    "link/passwd" can only reach <dest>/etc/passwd.  Missing parents are
 *    created 0755, but never inside a symlink's target.
 *
 *  - The last component is never followed: whatever is there (file,
 *    symlink, hardlink, directory) is removed and made anew with
 *    O_CREAT|O_EXCL|O_NOFOLLOW, mkdirat, symlinkat, linkat or mknodat.
 *    Only a directory over a directory is kept and merged.  So an entry
 *    never writes into an inode that existed before it.
 *
 *  - A hardlink's target is cleaned the same way and its directory opened
 *    with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS: a target above the
 *    destination or through any symlink is refused, not confined.  linkat()
 *    without AT_SYMLINK_FOLLOW links a final symlink itself, not its target.
 *
 *  - Symlinks are made as they are, whatever they point at: they are data,
 *    and the rules above never follow one out of the destination.
 *
 * Where openat2 is missing (ENOSYS) resolution falls back, for the whole
 * process, to a walk that opens one component at a time with O_NOFOLLOW,
 * reads symlinks itself, and keeps a stack of directory fds so that ".."
 * pops a directory it came through instead of opening "..".
 * CBUILD_NO_OPENAT2=1 forces the walk, so that tests cover it.  The only
 * thing remembered from one entry to the next is the directory fd of the
 * last parent, used again only for an entry with the very same parent: an
 * entry makes or removes one name inside its parent, never the parent
 * itself or a directory above it, so that fd still is what the lookup
 * would find.  Any other parent is looked up anew.
 *
 * Fewer system calls per entry (a base image's first unpacking is often
 * hundreds of symlinks): the name is made first and looked at only when
 * something is already there (EEXIST), and a chown that would change
 * nothing (the entry's ids are ours, the parent is not set-group-id) is
 * not made.
 *
 * What is an archive: a tar (ustar, pax, GNU) as is or compressed with
 * gzip, bzip2, xz or zstd, Docker's set, whose first header reads; an
 * empty tar counts.  Anything else (an unknown format, or a stream that
 * does not decompress) sets *not_archive before anything is written, and
 * the caller copies the file as it is; an error reading the fd is a failure.
 *
 * Metadata: modes (with set-id bits), mtimes to the nanosecond, owners only
 * when asked (chown before chmod), and on files and directories the xattrs
 * layers keep (user.* and security.capability; ENOTSUP and EPERM are
 * ignored, as Docker does).  Others, trusted.overlay.* among them, which
 * would steer overlayfs, are not applied.
 * Directories are made 0700 and get their mode and times once everything
 * is written, deepest first, so that a read-only directory can still be
 * filled and its mtime survives its children.  Device nodes need
 * CAP_MKNOD: without it (EPERM, a rootless build) they are skipped, as
 * Docker skips them in a user namespace.
 *
 * oci_layer_unpack_overlay() runs the same code for a layer that becomes
 * an overlayfs lower directory (a snapshot), with these differences:
 *
 *  - ".wh.NAME" becomes what overlayfs takes for a deleted NAME: a 0/0
 *    character device (mknod of that one device needs no privilege since
 *    Linux 5.8, in a user namespace or not).  ".wh..wh..opq" sets the
 *    opaque xattr on its directory; other ".wh..wh." names are AUFS
 *    bookkeeping and are skipped, as Docker skips them.
 *
 *  - A whiteout hides only what lower layers have (the image spec): when
 *    this layer itself also has NAME, in either order, NAME stays, and a
 *    directory NAME is made opaque, since it replaced the deleted one.
 *
 *  - Owners are kept.  A chown refused with EPERM when not root (a rootless
 *    build unpacking outside its user namespace) leaves the caller's own
 *    ids: the user namespace maps them to root later.  Any other failure,
 *    EINVAL for an id the namespace does not map included, is an error.
 *
 *  - xattrs named user.overlay.* are not applied either: with userxattr
 *    they steer overlayfs as trusted.overlay.* do otherwise.  Only the
 *    opaque marker this code sets itself ever reaches the snapshot.
 */
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <linux/openat2.h>

#include <archive.h>
#include <archive_entry.h>

#define EXTRACT_READ_BLOCK ((size_t)64 << 10)
/* As the kernel's MAXSYMLINKS. */
#define EXTRACT_MAX_SYMLINKS 40
/* openat2 fails with EAGAIN when a rename races with ".."; retry a little. */
#define EXTRACT_OPENAT2_RETRIES 32
/* libarchive's ARCHIVE_ERRNO_FILE_FORMAT and ARCHIVE_ERRNO_MISC, which
 * archive.h leaves commented out (archive_private.h has them on Linux). */
#define EXTRACT_ERRNO_FILE_FORMAT EILSEQ
#define EXTRACT_ERRNO_MISC (-1)

/* Whiteouts as layer tars spell them (the image spec's AUFS names). */
#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_META_PREFIX ".wh..wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"
/* overlayfs's own xattrs in the user namespace (mounts with userxattr). */
#define OVERLAY_USER_XATTR_PREFIX "user.overlay."

/* 0 unknown, 1 use it, -1 fall back; threads may race to set it, to the
 * same value. */
static int openat2_state;

static bool use_openat2(void)
{
  int state = __atomic_load_n(&openat2_state, __ATOMIC_RELAXED);
  if (state == 0) {
    const char *e = getenv("CBUILD_NO_OPENAT2");
    state = e && *e && strcmp(e, "0") != 0 ? -1 : 1;
    __atomic_store_n(&openat2_state, state, __ATOMIC_RELAXED);
  }
  return state > 0;
}

enum resolve_mode {
  RESOLVE_MODE_IN_ROOT,     /* follow symlinks, with rootfd as "/" */
  RESOLVE_MODE_NO_SYMLINKS, /* any symlink on the way is ELOOP */
};

static int open_root(int rootfd)
{
  return openat(rootfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
}

static void close_stack(int *stack, size_t depth)
{
  for (size_t i = 0; i < depth; i++)
    close(stack[i]);
}

/* The target of the symlink fd (O_PATH | O_NOFOLLOW), into sb. */
static int read_link_fd(int fd, struct strbuf *sb)
{
  size_t size = 256;
  for (;;) {
    strbuf_reset(sb);
    strbuf_grow(sb, size);
    ssize_t n = readlinkat(fd, "", sb->buf, size);
    if (n < 0)
      return -1;
    if ((size_t)n < size) {
      /* strbuf_setlen only shortens: the bytes are in place already */
      sb->len = (size_t)n;
      sb->buf[n] = '\0';
      return 0;
    }
    if (size >= PATH_MAX) {
      errno = ENAMETOOLONG;
      return -1;
    }
    size *= 2;
  }
}

/*
 * What openat2 does with RESOLVE_IN_ROOT (or RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) for a directory, done by hand.  stack[0] is the
 * root, stack[depth - 1] where the walk is.  Each component is opened with
 * O_NOFOLLOW from the directory above it; a symlink is read from the fd
 * that was opened, so what is read is what was checked.  ".." pops the
 * stack and never leaves stack[0].
 */
static int resolve_dir_walk(int rootfd, const char *path, enum resolve_mode mode)
{
  cleanup_strbuf struct strbuf rest = STRBUF_INIT;
  cleanup_strbuf struct strbuf target = STRBUF_INIT;
  cleanup_free int *stack = NULL;
  size_t depth = 0, alloc = 0, pos = 0;
  int links = 0, e;

  if (strlen(path) >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  strbuf_addstr(&rest, path);
  CB_GROW(stack, 1, alloc);
  stack[0] = open_root(rootfd);
  if (stack[0] < 0)
    return -1;
  depth = 1;

  while (pos < rest.len) {
    struct stat st;
    size_t len;
    const char *comp;
    int fd;

    while (rest.buf[pos] == '/')
      pos++;
    comp = rest.buf + pos;
    len = strcspn(comp, "/");
    pos += len;
    if (len == 0 || (len == 1 && comp[0] == '.'))
      continue;
    if (len == 2 && comp[0] == '.' && comp[1] == '.') {
      if (mode == RESOLVE_MODE_NO_SYMLINKS) {
        /* RESOLVE_BENEATH: ".." is allowed only while it stays below */
        if (depth == 1) {
          e = EXDEV;
          goto fail;
        }
      }
      if (depth > 1)
        close(stack[--depth]);
      continue;
    }
    {
      cleanup_free char *name = xstrndup(comp, len);
      fd = openat(stack[depth - 1], name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0 || fstat(fd, &st) < 0) {
      e = errno;
      if (fd >= 0)
        close(fd);
      goto fail;
    }
    if (S_ISLNK(st.st_mode)) {
      struct strbuf next = STRBUF_INIT;
      if (mode == RESOLVE_MODE_NO_SYMLINKS || ++links > EXTRACT_MAX_SYMLINKS) {
        close(fd);
        e = ELOOP;
        goto fail;
      }
      if (read_link_fd(fd, &target) < 0) {
        e = errno;
        close(fd);
        goto fail;
      }
      close(fd);
      if (target.len == 0) {
        e = ENOENT;
        goto fail;
      }
      if (target.buf[0] == '/') {
        close_stack(stack + 1, depth - 1);
        depth = 1;
      }
      /* the target takes the link's place in what is left to walk */
      strbuf_add(&next, target.buf, target.len);
      strbuf_addch(&next, '/');
      strbuf_add(&next, rest.buf + pos, rest.len - pos);
      strbuf_release(&rest);
      rest = next;
      pos = 0;
      continue;
    }
    if (!S_ISDIR(st.st_mode)) {
      close(fd);
      e = ENOTDIR;
      goto fail;
    }
    CB_GROW(stack, depth + 1, alloc);
    stack[depth++] = fd;
  }
  close_stack(stack, depth - 1);
  return stack[depth - 1];

fail:
  close_stack(stack, depth);
  errno = e;
  return -1;
}

/*
 * Open the directory path (clean, relative; "" for the root) inside
 * rootfd as an O_PATH fd.  -1 with errno: ENOENT, ENOTDIR, ELOOP (a loop,
 * or any symlink with RESOLVE_MODE_NO_SYMLINKS), EXDEV...
 */
static int resolve_dir(int rootfd, const char *path, enum resolve_mode mode)
{
  if (*path == '\0')
    return open_root(rootfd);
  if (use_openat2()) {
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = mode == RESOLVE_MODE_IN_ROOT ? RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
                                               : RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
    for (int tries = 0;; tries++) {
      long fd = syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
      if (fd >= 0)
        return (int)fd;
      if (errno == EAGAIN && tries < EXTRACT_OPENAT2_RETRIES)
        continue;
      if (errno != ENOSYS)
        return -1;
      break;
    }
    __atomic_store_n(&openat2_state, -1, __ATOMIC_RELAXED);
  }
  return resolve_dir_walk(rootfd, path, mode);
}

/*
 * Open the parent directory path (clean, relative) inside rootfd, following
 * symlinks inside it and creating what is missing with mode 0755, as
 * Docker does.  A dangling symlink on the way is ENOENT: nothing is created
 * inside a symlink's target.
 */
static int open_parent(int rootfd, const char *path)
{
  cleanup_close int cur = -1;
  bool creating = false;
  size_t i = 0;
  int fd = resolve_dir(rootfd, path, RESOLVE_MODE_IN_ROOT);

  if (fd >= 0 || errno != ENOENT)
    return fd;
  /* Find the first missing component, then make it and the rest. */
  cur = open_root(rootfd);
  if (cur < 0)
    return -1;
  while (path[i] != '\0') {
    size_t end = i + strcspn(path + i, "/");
    cleanup_free char *comp = xstrndup(path + i, end - i);
    cleanup_free char *prefix = xstrndup(path, end);

    fd = creating ? -1 : resolve_dir(rootfd, prefix, RESOLVE_MODE_IN_ROOT);
    if (fd < 0 && !creating && errno != ENOENT)
      return -1;
    if (fd < 0) {
      if (mkdirat(cur, comp, 0755) == 0) {
        /* ours and new, opened without following; 0755 whatever the umask */
        fd = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0 && fchmod(fd, 0755) < 0) {
          int e = errno;
          close(fd);
          errno = e;
          return -1;
        }
        creating = true;
      } else if (errno == EEXIST && !creating) {
        /* a dangling symlink (ENOENT again), or made meanwhile */
        fd = resolve_dir(rootfd, prefix, RESOLVE_MODE_IN_ROOT);
      } else {
        return -1;
      }
      if (fd < 0)
        return -1;
    }
    close(cur);
    cur = fd;
    i = path[end] == '/' ? end + 1 : end;
  }
  fd = cur;
  cur = -1;
  return fd;
}

/*
 * Clean name as Go's filepath.Clean does, into out without a leading "/"
 * ("" is the destination itself).  -1 when a relative name's ".." climbs
 * above it; in an absolute name ".." stops at the top, as at "/".
 */
static int clean_path(const char *name, struct strbuf *out)
{
  bool rooted = name[0] == '/';
  const char *p = name;

  strbuf_reset(out);
  while (*p != '\0') {
    size_t len;
    while (*p == '/')
      p++;
    len = strcspn(p, "/");
    if (len == 0 || (len == 1 && p[0] == '.')) {
      /* nothing */
    } else if (len == 2 && p[0] == '.' && p[1] == '.') {
      if (out->len > 0) {
        char *slash = memrchr(out->buf, '/', out->len);
        strbuf_setlen(out, slash ? (size_t)(slash - out->buf) : 0);
      } else if (!rooted) {
        return -1;
      }
    } else {
      if (out->len > 0)
        strbuf_addch(out, '/');
      strbuf_add(out, p, len);
    }
    p += len;
  }
  return 0;
}

/* Split a clean, non-empty path at its last '/': *name points into it. */
static char *split_parent(const char *path, const char **name)
{
  const char *slash = strrchr(path, '/');
  *name = slash ? slash + 1 : path;
  return slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup("");
}

/* A directory whose mode and times are set at the end. */
struct dir_fixup {
  char *path;
  mode_t mode;
  struct timespec times[2];
  size_t depth, index;
};

struct extractor {
  struct archive *a;
  int rootfd;
  bool keep_owners;
  bool overlay;     /* oci_layer_unpack_overlay(): whiteouts for overlayfs */
  bool userxattr;   /* its opaque xattr is user.overlay.opaque */
  bool lax_owners;  /* a chown refused with EPERM is not an error */
  const char *archive_name; /* for messages */
  const char *entry;        /* the entry's name as the archive spells it */
  struct strbuf path;       /* the entry's clean name */
  struct strbuf link;       /* a hardlink target's clean name */
  struct dir_fixup *dirs;
  size_t n_dirs, alloc_dirs;
  uid_t euid;               /* the owner of what is made here */
  gid_t egid;
  /* The last entry's parent directory (see the top). */
  struct strbuf parent;
  int parent_fd;            /* -1: none */
  bool parent_setgid;       /* what is made there takes its group */
};

/* A name from the archive as messages show it: control characters, '"'
 * and '\\' escaped, so that the message stays one line. */
static char *shown(const char *s)
{
  struct strbuf sb = STRBUF_INIT;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      strbuf_addf(&sb, "\\%c", *p);
    else if (*p == '\n')
      strbuf_addstr(&sb, "\\n");
    else if (*p < 0x20 || *p == 0x7f)
      strbuf_addf(&sb, "\\x%02x", *p);
    else
      strbuf_addch(&sb, (char)*p);
  }
  return strbuf_detach(&sb, NULL);
}

static int entry_error(struct extractor *x, struct cb_error *err, const char *fmt, ...)
    CB_PRINTF(3, 4);
static int entry_error(struct extractor *x, struct cb_error *err, const char *fmt, ...)
{
  struct strbuf sb = STRBUF_INIT;
  va_list ap;
  va_start(ap, fmt);
  strbuf_vaddf(&sb, fmt, ap);
  va_end(ap);
  cleanup_free char *entry = shown(x->entry);
  cb_error_set(err, "extract \"%s\": entry \"%s\": %s", x->archive_name, entry, sb.buf);
  strbuf_release(&sb);
  return -1;
}

static int entry_errno(struct extractor *x, struct cb_error *err, int errnum, const char *what)
{
  entry_error(x, err, "%s: %s", what, strerror(errnum));
  err->code = errnum;
  return -1;
}

static void entry_times(struct archive_entry *e, struct timespec times[2])
{
  times[1].tv_sec = archive_entry_mtime(e);
  times[1].tv_nsec = archive_entry_mtime_nsec(e);
  if (archive_entry_atime_is_set(e)) {
    times[0].tv_sec = archive_entry_atime(e);
    times[0].tv_nsec = archive_entry_atime_nsec(e);
  } else {
    times[0] = times[1];
  }
}

/* Whether a chown that failed with errno e fails the entry. */
static bool chown_fatal(const struct extractor *x, int e)
{
  return !(x->lax_owners && e == EPERM);
}

/* A refused chown; EINVAL is an id the user namespace does not map. */
static int chown_error(struct extractor *x, struct archive_entry *e, int errnum,
                       struct cb_error *err)
{
  if (errnum != EINVAL)
    return entry_errno(x, err, errnum, "chown");
  entry_error(x, err,
              "owner %lld:%lld is not mapped in this user namespace (a rootless build needs "
              "a range for its user in /etc/subuid and /etc/subgid, and newuidmap)",
              (long long)archive_entry_uid(e), (long long)archive_entry_gid(e));
  err->code = errnum;
  return -1;
}

/* Whether something just made in the current parent already has e's
 * owner, so that a chown would change nothing. */
static bool owner_is_ours(const struct extractor *x, struct archive_entry *e)
{
  return (uid_t)archive_entry_uid(e) == x->euid && (gid_t)archive_entry_gid(e) == x->egid &&
         !x->parent_setgid;
}

/* The xattrs a layer keeps (oci_entry's); others are not applied. */
static bool xattr_kept(const char *name)
{
  return cb_starts_with(name, "user.") || strcmp(name, "security.capability") == 0;
}

static int set_xattrs(struct extractor *x, struct archive_entry *e, int fd,
                      struct cb_error *err)
{
  const char *name;
  const void *value;
  size_t size;

  if (archive_entry_xattr_reset(e) == 0)
    return 0;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if (name == NULL || !xattr_kept(name) ||
        (x->overlay && cb_starts_with(name, OVERLAY_USER_XATTR_PREFIX)))
      continue;
    /* ENOTSUP: the filesystem has none; EPERM: security.* needs privilege. */
    if (fsetxattr(fd, name, value, size, 0) < 0 && errno != ENOTSUP && errno != EPERM) {
      cleanup_free char *what = xasprintf("set xattr \"%s\"", name);
      return entry_errno(x, err, errno, what);
    }
  }
  return 0;
}

/* Owner, mode and times of what was made at parentfd/name (not a regular
 * file, not a directory: those go through their fd). */
static int set_meta_at(struct extractor *x, struct archive_entry *e, int parentfd,
                       const char *name, bool chmod, struct cb_error *err)
{
  struct timespec times[2];
  if (x->keep_owners && !owner_is_ours(x, e) &&
      fchownat(parentfd, name, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
               AT_SYMLINK_NOFOLLOW) < 0 &&
      chown_fatal(x, errno))
    return chown_error(x, e, errno, err);
  if (chmod && fchmodat(parentfd, name, archive_entry_perm(e) & 07777, AT_SYMLINK_NOFOLLOW) < 0)
    return entry_errno(x, err, errno, "chmod");
  entry_times(e, times);
  if (utimensat(parentfd, name, times, AT_SYMLINK_NOFOLLOW) < 0)
    return entry_errno(x, err, errno, "set times");
  return 0;
}

static int write_all_at(int fd, const char *p, size_t n, int64_t off)
{
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, (off_t)off);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
    off += w;
  }
  return 0;
}

/*
 * The make_* functions below return MADE_TAKEN, with err untouched and
 * nothing consumed, when the name is already there (EEXIST) and `taken`
 * allows it: the caller clears the name and calls again.
 */
#define MADE_TAKEN 1

/* Making the entry (what) failed with errno e: MADE_TAKEN for a name
 * already there when `taken` allows it, else the entry's error. */
static int make_failed(struct extractor *x, int e, bool taken, const char *what,
                       struct cb_error *err)
{
  if (e == EEXIST && taken)
    return MADE_TAKEN;
  return entry_errno(x, err, e, what);
}

static int make_file(struct extractor *x, struct archive_entry *e, int parentfd,
                     const char *name, bool taken, struct cb_error *err)
{
  cleanup_close int fd = -1;
  struct timespec times[2];
  int64_t end = 0, size = archive_entry_size(e);
  int r;

  fd = openat(parentfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return make_failed(x, errno, taken, "create", err);
  for (;;) {
    const void *buf;
    size_t n;
    la_int64_t off;
    r = archive_read_data_block(x->a, &buf, &n, &off);
    if (r == ARCHIVE_EOF)
      break;
    if (r < ARCHIVE_WARN)
      return entry_error(x, err, "read: %s", archive_error_string(x->a));
    if (write_all_at(fd, buf, n, off) < 0)
      return entry_errno(x, err, errno, "write");
    if (off + (int64_t)n > end)
      end = off + (int64_t)n;
  }
  /* a sparse file's last hole */
  if (end < size && ftruncate(fd, (off_t)size) < 0)
    return entry_errno(x, err, errno, "write");
  if (x->keep_owners && !owner_is_ours(x, e) &&
      fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0 &&
      chown_fatal(x, errno))
    return chown_error(x, e, errno, err);
  if (fchmod(fd, archive_entry_perm(e) & 07777) < 0)
    return entry_errno(x, err, errno, "chmod");
  if (set_xattrs(x, e, fd, err) < 0)
    return -1;
  entry_times(e, times);
  if (futimens(fd, times) < 0)
    return entry_errno(x, err, errno, "set times");
  r = close(fd);
  fd = -1;
  if (r < 0)
    return entry_errno(x, err, errno, "write");
  return 0;
}

static int make_dir(struct extractor *x, struct archive_entry *e, int parentfd,
                    const char *name, bool exists, bool taken, struct cb_error *err)
{
  cleanup_close int fd = -1;
  struct dir_fixup *f;
  size_t depth = 1;

  if (!exists && mkdirat(parentfd, name, 0700) < 0)
    return make_failed(x, errno, taken, "mkdir", err);
  fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return entry_errno(x, err, errno, "open");
  /* a directory merged into keeps its owner unless changed */
  if (x->keep_owners && (exists || !owner_is_ours(x, e)) &&
      fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0 &&
      chown_fatal(x, errno))
    return chown_error(x, e, errno, err);
  if (set_xattrs(x, e, fd, err) < 0)
    return -1;
  for (const char *p = x->path.buf; *p; p++)
    depth += *p == '/';
  CB_GROW(x->dirs, x->n_dirs + 1, x->alloc_dirs);
  f = &x->dirs[x->n_dirs];
  f->path = xstrdup(x->path.buf);
  f->mode = archive_entry_perm(e) & 07777;
  entry_times(e, f->times);
  f->depth = depth;
  f->index = x->n_dirs++;
  return 0;
}

static int make_hardlink(struct extractor *x, const char *link, int parentfd,
                         const char *name, bool taken, struct cb_error *err)
{
  cleanup_close int tfd = -1;
  cleanup_free char *tparent = NULL;
  cleanup_free char *target = shown(link);
  const char *tname;

  if (clean_path(link, &x->link) < 0)
    return entry_error(x, err, "hardlink target \"%s\" leaves the destination", target);
  if (x->link.len == 0)
    return entry_error(x, err, "hardlink target \"%s\" is the destination itself", target);
  tparent = split_parent(x->link.buf, &tname);
  tfd = resolve_dir(x->rootfd, tparent, RESOLVE_MODE_NO_SYMLINKS);
  if (tfd < 0 && errno == ELOOP)
    return entry_error(x, err, "hardlink target \"%s\" goes through a symlink", target);
  if (tfd < 0 && errno == EXDEV)
    return entry_error(x, err, "hardlink target \"%s\" leaves the destination", target);
  if (tfd < 0) {
    cleanup_free char *what = xasprintf("hardlink target \"%s\"", target);
    return entry_errno(x, err, errno, what);
  }
  /* flags 0: a symlink named as the target is linked itself, not followed */
  if (linkat(tfd, tname, parentfd, name, 0) < 0) {
    int e = errno;
    cleanup_free char *what = xasprintf("hardlink to \"%s\"", target);
    return make_failed(x, e, taken, what, err);
  }
  return 0;
}

/* ---- overlayfs snapshots ---- */

/* What overlayfs reads as a deleted entry: a 0/0 character device. */
static bool is_overlay_whiteout(const struct stat *st)
{
  return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

/* Mark the directory name in parentfd (O_PATH is fine; "." for parentfd
 * itself) opaque: nothing of it in lower layers shows through. */
static int set_opaque_at(struct extractor *x, int parentfd, const char *name,
                         struct cb_error *err)
{
  const char *attr = x->userxattr ? "user.overlay.opaque" : "trusted.overlay.opaque";
  cleanup_close int fd =
      openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return entry_errno(x, err, errno, "open the directory to make opaque");
  if (fsetxattr(fd, attr, "y", 1, 0) < 0) {
    int e = errno;
    cleanup_free char *what = xasprintf("set xattr \"%s\"%s", attr,
                                        e == EPERM && !x->userxattr
                                            ? " (without privilege, snapshots need userxattr)"
                                            : "");
    return entry_errno(x, err, e, what);
  }
  return 0;
}

/*
 * A whiteout entry, name being its last component (".wh.NAME"), in the
 * directory parentfd: see the overlay notes at the top.  The entry's own
 * type, mode and owner do not matter.
 */
static int overlay_whiteout(struct extractor *x, int parentfd, const char *name,
                            struct cb_error *err)
{
  const char *target = name + strlen(WHITEOUT_PREFIX);
  struct stat st;

  if (strcmp(name, WHITEOUT_OPAQUE) == 0)
    return set_opaque_at(x, parentfd, ".", err);
  if (cb_starts_with(name, WHITEOUT_META_PREFIX))
    return 0;
  if (*target == '\0' || strcmp(target, ".") == 0 || strcmp(target, "..") == 0)
    return entry_error(x, err, "whiteout names no file");
  if (fstatat(parentfd, target, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    /* Made by this layer (the destination starts empty): it stays. */
    if (S_ISDIR(st.st_mode))
      return set_opaque_at(x, parentfd, target, err);
    return 0;
  }
  if (errno != ENOENT)
    return entry_errno(x, err, errno, "stat the whited-out file");
  if (mknodat(parentfd, target, S_IFCHR | 0, makedev(0, 0)) < 0) {
    int e = errno;
    return entry_errno(x, err, e,
                       e == EPERM ? "make whiteout (a 0/0 character device; without "
                                    "privilege that needs Linux 5.8 or later)"
                                  : "make whiteout");
  }
  return 0;
}

/* Make entry e as parentfd/name; see MADE_TAKEN for `taken`. */
static int make_entry(struct extractor *x, struct archive_entry *e, int parentfd,
                      const char *name, bool exists, bool opaque, bool taken,
                      struct cb_error *err)
{
  const char *hardlink = archive_entry_hardlink(e);
  mode_t type = archive_entry_filetype(e);
  int r;

  if (hardlink != NULL)
    return make_hardlink(x, hardlink, parentfd, name, taken, err);

  switch (type) {
  case AE_IFREG:
    return make_file(x, e, parentfd, name, taken, err);
  case AE_IFDIR:
    r = make_dir(x, e, parentfd, name, exists, taken, err);
    if (r != 0)
      return r;
    return opaque ? set_opaque_at(x, parentfd, name, err) : 0;
  case AE_IFLNK: {
    const char *target = archive_entry_symlink(e);
    if (target == NULL || *target == '\0')
      return entry_error(x, err, "symlink without a target");
    if (symlinkat(target, parentfd, name) < 0)
      return make_failed(x, errno, taken, "symlink", err);
    return set_meta_at(x, e, parentfd, name, false, err);
  }
  case AE_IFIFO:
    if (mknodat(parentfd, name, S_IFIFO | 0600, 0) < 0)
      return make_failed(x, errno, taken, "mkfifo", err);
    return set_meta_at(x, e, parentfd, name, true, err);
  case AE_IFCHR:
  case AE_IFBLK:
    if (mknodat(parentfd, name, type | 0600, archive_entry_rdev(e)) < 0) {
      /* no CAP_MKNOD (rootless): skipped, as Docker skips them in a userns */
      if (errno == EPERM)
        return 0;
      return make_failed(x, errno, taken, "mknod", err);
    }
    return set_meta_at(x, e, parentfd, name, true, err);
  default:
    return entry_error(x, err, "unsupported file type 0%o", (unsigned)type);
  }
}

/* The parent directory of the entry, x->parent_fd: the last entry's when
 * it is the same (see the top). */
static int entry_parent(struct extractor *x, const char *parent, struct cb_error *err)
{
  struct stat st;
  int fd;

  if (x->parent_fd >= 0 && strcmp(x->parent.buf, parent) == 0)
    return x->parent_fd;
  if (x->parent_fd >= 0)
    close(x->parent_fd);
  x->parent_fd = -1;
  fd = open_parent(x->rootfd, parent);
  if (fd < 0 || fstat(fd, &st) < 0) {
    cleanup_free char *what = xasprintf("open \"%s\"", parent);
    int e = errno;
    if (fd >= 0)
      close(fd);
    return entry_errno(x, err, e, what);
  }
  x->parent_fd = fd;
  x->parent_setgid = (st.st_mode & S_ISGID) != 0;
  strbuf_reset(&x->parent);
  strbuf_addstr(&x->parent, parent);
  return fd;
}

static int extract_entry(struct extractor *x, struct archive_entry *e, struct cb_error *err)
{
  cleanup_free char *parent = NULL;
  const char *name;
  bool is_dir = archive_entry_hardlink(e) == NULL && archive_entry_filetype(e) == AE_IFDIR;
  bool exists = false, opaque = false;
  struct stat st;
  int parentfd, r;

  if (clean_path(x->entry, &x->path) < 0)
    return entry_error(x, err, "path leaves the destination");
  if (x->path.len == 0) {
    /* "." or "/": Docker leaves the destination itself alone */
    if (is_dir)
      return 0;
    return entry_error(x, err, "names the destination itself but is not a directory");
  }
  parent = split_parent(x->path.buf, &name);
  parentfd = entry_parent(x, parent, err);
  if (parentfd < 0)
    return -1;

  if (x->overlay && cb_starts_with(name, WHITEOUT_PREFIX))
    return overlay_whiteout(x, parentfd, name, err);

  r = make_entry(x, e, parentfd, name, false, false, true, err);
  if (r != MADE_TAKEN)
    return r;
  /* Something is there already. */
  if (fstatat(parentfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return entry_errno(x, err, errno, "stat");
  if (is_dir && S_ISDIR(st.st_mode))
    exists = true; /* merged, as Docker merges directories */
  else if (cb_remove_tree(parentfd, name) < 0)
    return entry_errno(x, err, errno, "remove what was there");
  /* a directory where this layer deleted one: it replaces it whole */
  opaque = x->overlay && is_dir && is_overlay_whiteout(&st);
  return make_entry(x, e, parentfd, name, exists, opaque, false, err);
}

static int fixup_cmp(const void *pa, const void *pb)
{
  const struct dir_fixup *a = pa, *b = pb;
  if (a->depth != b->depth)
    return a->depth > b->depth ? -1 : 1;
  return a->index < b->index ? -1 : a->index > b->index;
}

/*
 * Directories' modes and times, deepest first, once nothing more is
 * written into them.  Each path is resolved again; one that a later entry
 * replaced by something else is left alone.
 */
static int fix_dirs(struct extractor *x, struct cb_error *err)
{
  if (x->n_dirs > 1)
    if (x->n_dirs > 1)
    qsort(x->dirs, x->n_dirs, sizeof(*x->dirs), fixup_cmp);
  for (size_t i = 0; i < x->n_dirs; i++) {
    struct dir_fixup *f = &x->dirs[i];
    cleanup_free char *parent = NULL;
    cleanup_close int parentfd = -1, fd = -1;
    const char *name;

    x->entry = f->path;
    parent = split_parent(f->path, &name);
    parentfd = resolve_dir(x->rootfd, parent, RESOLVE_MODE_IN_ROOT);
    if (parentfd >= 0)
      fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (parentfd < 0 || fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
        continue;
      return entry_errno(x, err, errno, "open");
    }
    if (fchmod(fd, f->mode) < 0)
      return entry_errno(x, err, errno, "chmod");
    if (futimens(fd, f->times) < 0)
      return entry_errno(x, err, errno, "set times");
  }
  return 0;
}

/* The archive's file name for messages: its base name, when it has one. */
static char *archive_display_name(int fd)
{
  char link[64], target[PATH_MAX];
  ssize_t n;
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  n = readlink(link, target, sizeof(target) - 1);
  if (n <= 0 || target[0] != '/')
    return xstrdup("archive");
  target[n] = '\0';
  const char *base = strrchr(target, '/') + 1;
  return shown(*base ? base : target);
}

static bool first_header_not_archive(struct archive *a)
{
  /* An unknown format, or compressed data that does not decode (Docker
   * copies such a file as it is); an errno from reading the fd (EIO,
   * EISDIR...) is a failure. */
  int e = archive_errno(a);
  return e == EXTRACT_ERRNO_FILE_FORMAT || e == EXTRACT_ERRNO_MISC;
}

/*
 * libarchive converts pax names with the current locale; C.UTF-8 on this
 * thread keeps UTF-8 names as they are, and the caller's locale does not
 * matter (the layer writer does the same).
 */
static locale_t extract_locale(void)
{
  locale_t l = newlocale(LC_ALL_MASK, "C.UTF-8", (locale_t)0);
  if (l == (locale_t)0)
    l = newlocale(LC_ALL_MASK, "C", (locale_t)0);
  return l;
}

/*
 * Docker's set (tar; gzip, bzip2, xz, zstd), not libarchive's "all", which
 * also runs external programs for some formats.  ARCHIVE_WARN: a filter
 * that will use an external program in this libarchive build.
 */
static bool support_filters(struct archive *a)
{
  return archive_read_support_filter_gzip(a) >= ARCHIVE_WARN &&
         archive_read_support_filter_bzip2(a) >= ARCHIVE_WARN &&
         archive_read_support_filter_xz(a) >= ARCHIVE_WARN &&
         archive_read_support_filter_zstd(a) >= ARCHIVE_WARN;
}

/*
 * A layer read once (oci_layer_unpack_overlay(), oci_layer_diff_id()): the
 * file's bytes are hashed into the blob digest as they are read; an outer
 * reader with libarchive's "raw" format decompresses them (libarchive
 * hands out decompressed data only through a format: "raw" takes the
 * whole stream as one entry), and what it gives is hashed into the diff_id
 * as the tar reader, if any, takes it.  Once the tar's end is read the
 * rest of both streams is hashed too (the padding after the end blocks,
 * anything after the compressed stream): the digests cover every byte.
 */
struct layer_stream {
  int fd;
  const char *name;        /* for messages */
  struct archive *raw;
  struct oci_hasher *blob; /* of the file as read */
  struct oci_hasher *diff; /* of its decompressed stream */
  char *buf;               /* EXTRACT_READ_BLOCK, the file's bytes */
};

static la_ssize_t layer_stream_read_file(struct archive *a, void *data, const void **out)
{
  struct layer_stream *ls = data;
  ssize_t n;
  do
    n = read(ls->fd, ls->buf, EXTRACT_READ_BLOCK);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    archive_set_error(a, errno, "%s", strerror(errno));
    return -1;
  }
  oci_hasher_update(ls->blob, ls->buf, (size_t)n);
  *out = ls->buf;
  return n;
}

/* The raw reader's error as one phrase (a truncated gzip stream fails
 * without a word). */
static const char *layer_stream_why(struct layer_stream *ls)
{
  const char *why = archive_error_string(ls->raw);
  return why ? why : "the stream is truncated or damaged";
}

static int layer_stream_error(struct layer_stream *ls, struct cb_error *err)
{
  int code = archive_errno(ls->raw);
  cb_error_set(err, "read layer \"%s\": %s", ls->name, layer_stream_why(ls));
  err->code = code > 0 ? code : 0;
  return -1;
}

static int layer_stream_open(struct layer_stream *ls, int fd, const char *name,
                             struct cb_error *err)
{
  struct archive_entry *e;
  int r;

  memset(ls, 0, sizeof(*ls));
  ls->fd = fd;
  ls->name = name;
  ls->raw = archive_read_new();
  if (ls->raw == NULL)
    cb_die("out of memory");
  ls->blob = oci_hasher_new();
  ls->diff = oci_hasher_new();
  ls->buf = xmalloc(EXTRACT_READ_BLOCK);
  if (archive_read_support_format_raw(ls->raw) != ARCHIVE_OK || !support_filters(ls->raw))
    return cb_error_set(err, "read layer \"%s\": %s", name, archive_error_string(ls->raw));
  r = archive_read_open(ls->raw, ls, NULL, layer_stream_read_file, NULL);
  if (r >= ARCHIVE_WARN)
    r = archive_read_next_header(ls->raw, &e);
  return r < ARCHIVE_WARN ? layer_stream_error(ls, err) : 0;
}

/* The next decompressed bytes, hashed: their length, 0 at the end, -1 on
 * an error (the raw reader has it). */
static la_ssize_t layer_stream_next(struct layer_stream *ls, const void **out)
{
  size_t n;
  la_int64_t offset;
  int r = archive_read_data_block(ls->raw, out, &n, &offset);
  if (r == ARCHIVE_EOF)
    return 0;
  if (r != ARCHIVE_OK) /* even a warning here means bytes missing */
    return -1;
  oci_hasher_update(ls->diff, *out, n);
  return (la_ssize_t)n;
}

/* The tar reader's read callback. */
static la_ssize_t layer_stream_read_tar(struct archive *a, void *data, const void **out)
{
  struct layer_stream *ls = data;
  la_ssize_t n = layer_stream_next(ls, out);
  if (n < 0) {
    int code = archive_errno(ls->raw);
    archive_set_error(a, code > 0 ? code : EXTRACT_ERRNO_MISC, "%s", layer_stream_why(ls));
  }
  return n;
}

/* Hash what is left of both streams and give both digests. */
static int layer_stream_finish(struct layer_stream *ls, char digest[OCI_DIGEST_SIZE],
                               char diff_id[OCI_DIGEST_SIZE], struct cb_error *err)
{
  const void *p;
  la_ssize_t n;
  while ((n = layer_stream_next(ls, &p)) > 0)
    ;
  if (n < 0)
    return layer_stream_error(ls, err);
  while ((n = layer_stream_read_file(ls->raw, ls, &p)) > 0)
    ;
  if (n < 0)
    return layer_stream_error(ls, err);
  if (digest != NULL)
    oci_hasher_final(ls->blob, digest);
  oci_hasher_final(ls->diff, diff_id);
  return 0;
}

static void layer_stream_close(struct layer_stream *ls)
{
  if (ls->raw != NULL)
    archive_read_free(ls->raw);
  if (ls->blob != NULL)
    oci_hasher_free(ls->blob);
  if (ls->diff != NULL)
    oci_hasher_free(ls->diff);
  free(ls->buf);
}

/* Open x->a on archive_fd (any of Docker's compressions), or on the
 * decompressed stream of layer (a tar, no filter of its own). */
static int extract_open(struct extractor *x, int archive_fd, struct layer_stream *layer)
{
  if (layer != NULL)
    return archive_read_support_format_tar(x->a) != ARCHIVE_OK
               ? ARCHIVE_FATAL
               : archive_read_open(x->a, layer, NULL, layer_stream_read_tar, NULL);
  if (archive_read_support_format_tar(x->a) != ARCHIVE_OK || !support_filters(x->a))
    return ARCHIVE_FATAL;
  return archive_read_open_fd(x->a, archive_fd, EXTRACT_READ_BLOCK);
}

static int extract_all(struct extractor *x, int archive_fd, struct layer_stream *layer,
                       bool *not_archive, struct cb_error *err)
{
  struct archive_entry *e;
  int r;

  /* It is an archive when its first header reads (an empty tar's end
   * counts); nothing is written before that. */
  r = extract_open(x, archive_fd, layer);
  if (r >= ARCHIVE_WARN)
    r = archive_read_next_header(x->a, &e);
  if (r < ARCHIVE_WARN) {
    int code = archive_errno(x->a);
    if (first_header_not_archive(x->a)) {
      *not_archive = true;
      return cb_error_set(err, "extract \"%s\": not a tar archive: %s", x->archive_name,
                          archive_error_string(x->a));
    }
    cb_error_set(err, "extract \"%s\": read: %s", x->archive_name,
                 archive_error_string(x->a));
    err->code = code > 0 ? code : 0;
    return -1;
  }

  for (; r != ARCHIVE_EOF; r = archive_read_next_header(x->a, &e)) {
    if (r < ARCHIVE_WARN)
      return cb_error_set(err, "extract \"%s\": read: %s", x->archive_name,
                          archive_error_string(x->a));
    x->entry = archive_entry_pathname(e);
    if (x->entry == NULL)
      return cb_error_set(err, "extract \"%s\": an entry without a name", x->archive_name);
    if (extract_entry(x, e, err) < 0)
      return -1;
  }
  return fix_dirs(x, err);
}

/* Run x (its flags set) on archive_fd, or on layer when not NULL (opened
 * on archive_fd); the rest of x is set up here. */
static int extract_fd(struct extractor *x, int archive_fd, struct layer_stream *layer,
                      int dirfd, bool *not_archive, struct cb_error *err)
{
  cleanup_free char *archive_name = archive_display_name(archive_fd);
  locale_t loc, old;
  int r;

  *not_archive = false;
  x->rootfd = dirfd;
  x->archive_name = archive_name;
  strbuf_init(&x->path, 256);
  strbuf_init(&x->link, 256);
  strbuf_init(&x->parent, 256);
  x->parent_fd = -1;
  x->euid = geteuid();
  x->egid = getegid();
  x->a = archive_read_new();
  if (x->a == NULL)
    cb_die("out of memory");
  loc = extract_locale();
  if (loc == (locale_t)0) {
    r = cb_error_errno(err, errno, "extract \"%s\": create the C locale", archive_name);
  } else {
    old = uselocale(loc);
    r = extract_all(x, archive_fd, layer, not_archive, err);
    uselocale(old);
    freelocale(loc);
  }
  archive_read_free(x->a);
  for (size_t i = 0; i < x->n_dirs; i++)
    free(x->dirs[i].path);
  free(x->dirs);
  strbuf_release(&x->path);
  strbuf_release(&x->link);
  strbuf_release(&x->parent);
  if (x->parent_fd >= 0)
    close(x->parent_fd);
  return r;
}

int oci_archive_extract(int archive_fd, int dirfd, bool keep_owners, bool *not_archive,
                        struct cb_error *err)
{
  struct extractor x;
  memset(&x, 0, sizeof(x));
  x.keep_owners = keep_owners;
  return extract_fd(&x, archive_fd, NULL, dirfd, not_archive, err);
}

int oci_layer_unpack_overlay(int layer_fd, int dirfd, bool userxattr,
                             char digest[OCI_DIGEST_SIZE], char diff_id[OCI_DIGEST_SIZE],
                             struct cb_error *err)
{
  cleanup_free char *name = archive_display_name(layer_fd);
  struct layer_stream ls;
  struct extractor x;
  bool not_archive;
  int r;

  memset(&x, 0, sizeof(x));
  x.keep_owners = true;
  x.overlay = true;
  x.userxattr = userxattr;
  x.lax_owners = geteuid() != 0;
  r = layer_stream_open(&ls, layer_fd, name, err);
  if (r == 0)
    r = extract_fd(&x, layer_fd, &ls, dirfd, &not_archive, err);
  if (r == 0)
    r = layer_stream_finish(&ls, digest, diff_id, err);
  layer_stream_close(&ls);
  return r;
}

int oci_layer_diff_id(int layer_fd, char out[OCI_DIGEST_SIZE], struct cb_error *err)
{
  cleanup_free char *name = archive_display_name(layer_fd);
  struct layer_stream ls;
  int r = layer_stream_open(&ls, layer_fd, name, err);
  if (r == 0)
    r = layer_stream_finish(&ls, NULL, out, err);
  layer_stream_close(&ls);
  return r;
}
