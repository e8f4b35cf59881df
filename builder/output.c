/*
 * The files archive outputs go to (`build -o type=oci|docker,dest=FILE`,
 * `save -o FILE`), as docker writes them: through symlinks (a link to a
 * file has that file replaced), and into a file that is not a regular one
 * (a device such as /dev/null, a fifo, /dev/stdout) in place, never
 * replacing it.  A regular file is written aside, as dest.cbuild-tmp-PID
 * or unnamed (O_TMPFILE), and renamed over the file only once whole, so a
 * failed or killed command leaves no half-written archive under its name.
 * Not fsynced, like what docker save, tar or cp write: the file is the
 * user's, not the store's (which syncs what it keeps).
 */
#include "builder-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* The file dest stands for, into f->path: 1 if it is written in place, 0
 * if it is replaced whole. */
static int out_target(struct builder_out_file *f, const char *dest, struct cb_error *err)
{
  struct stat st;
  if (stat(dest, &st) < 0) {
    if (errno != ENOENT)
      return cb_error_errno(err, errno, "stat \"%s\"", dest);
    f->path = xstrdup(dest);
    return 0;
  }
  if (S_ISDIR(st.st_mode))
    return cb_error_set(err, "\"%s\" is a directory", dest);
  if (!S_ISREG(st.st_mode)) {
    f->path = xstrdup(dest);
    return 1;
  }
  f->path = realpath(dest, NULL);
  if (f->path == NULL)
    return cb_error_errno(err, errno, "resolve \"%s\"", dest);
  return 0;
}

static void out_init(struct builder_out_file *f)
{
  memset(f, 0, sizeof(*f));
  f->fd = -1;
}

int builder_out_file_open(struct builder_out_file *f, const char *dest, struct cb_error *err)
{
  int in_place;
  out_init(f);
  in_place = out_target(f, dest, err);
  if (in_place < 0)
    goto fail;
  if (in_place) {
    f->fd = open(f->path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (f->fd < 0) {
      cb_error_errno(err, errno, "open \"%s\"", f->path);
      goto fail;
    }
    return 0;
  }
  f->tmp = xasprintf("%s.cbuild-tmp-%d", f->path, (int)getpid());
  f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f->fd < 0) {
    cb_error_errno(err, errno, "create \"%s\"", f->tmp);
    goto fail;
  }
  return 0;
fail:
  builder_out_file_release(f);
  return -1;
}

int builder_out_file_open_unnamed(struct builder_out_file *f, const char *dest)
{
  struct cb_error ignored;
  const char *slash;
  cleanup_free char *dir = NULL;
  out_init(f);
  if (out_target(f, dest, &ignored) != 0)
    goto fail;
  slash = strrchr(f->path, '/');
  dir = slash == NULL      ? xstrdup(".")
        : slash == f->path ? xstrdup("/")
                           : xstrndup(f->path, (size_t)(slash - f->path));
  f->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
  if (f->fd < 0)
    goto fail;
  f->unnamed = true;
  f->tmp = xasprintf("%s.cbuild-tmp-%d", f->path, (int)getpid());
  return 0;
fail:
  builder_out_file_release(f);
  return -1;
}

/* Give the unnamed file f->fd the name f->tmp. */
static int link_unnamed(struct builder_out_file *f, struct cb_error *err)
{
  char proc[64];
  unlink(f->tmp);
  snprintf(proc, sizeof(proc), "/proc/self/fd/%d", f->fd);
  if (linkat(AT_FDCWD, proc, AT_FDCWD, f->tmp, AT_SYMLINK_FOLLOW) == 0 ||
      linkat(f->fd, "", AT_FDCWD, f->tmp, AT_EMPTY_PATH) == 0)
    return 0;
  return cb_error_errno(err, errno, "create \"%s\"", f->tmp);
}

int builder_out_file_finish(struct builder_out_file *f, int rc, struct cb_error *err)
{
  if (rc == 0 && f->unnamed)
    rc = link_unnamed(f, err);
  if (close(f->fd) < 0 && rc == 0)
    rc = cb_error_errno(err, errno, "write \"%s\"", f->path);
  f->fd = -1;
  if (f->tmp) {
    if (rc == 0 && rename(f->tmp, f->path) < 0)
      rc = cb_error_errno(err, errno, "rename \"%s\" to \"%s\"", f->tmp, f->path);
    if (rc < 0)
      unlink(f->tmp);
  }
  builder_out_file_release(f);
  return rc;
}

void builder_out_file_release(struct builder_out_file *f)
{
  if (f->fd >= 0)
    close(f->fd);
  free(f->path);
  free(f->tmp);
  out_init(f);
}
