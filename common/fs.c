/*
 * Opening paths beneath a root directory without ever following a symlink
 * or leaving the root: openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS) where the kernel has it, else a walk that opens
 * one component at a time with O_NOFOLLOW.  The fallback is forced with
 * CBUILD_NO_OPENAT2=1 so that tests cover it too.
 */
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

static int openat2_state; /* 0 unknown, 1 use it, -1 fall back */

static bool use_openat2(void)
{
  if (openat2_state == 0) {
    const char *e = getenv("CBUILD_NO_OPENAT2");
    openat2_state = e && *e && strcmp(e, "0") != 0 ? -1 : 1;
  }
  return openat2_state > 0;
}

static int open_walk(int rootfd, const char *path, int flags)
{
  cleanup_free char *copy = xstrdup(path);
  char *save = NULL, *part, *next;
  int dirfd = dup(rootfd);
  if (dirfd < 0)
    return -1;
  part = strtok_r(copy, "/", &save);
  if (!part) {
    /* the root itself */
    int fd = openat(dirfd, ".", flags | O_CLOEXEC);
    int e = errno;
    close(dirfd);
    errno = e;
    return fd;
  }
  for (; part; part = next) {
    int fd, e;
    next = strtok_r(NULL, "/", &save);
    if (strcmp(part, "..") == 0) {
      close(dirfd);
      errno = EXDEV;
      return -1;
    }
    if (strcmp(part, ".") == 0 && next)
      continue;
    fd = openat(dirfd, part,
                next ? O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
                     : flags | O_NOFOLLOW | O_CLOEXEC);
    e = errno;
    close(dirfd);
    if (fd < 0) {
      /* a symlink in the middle shows as ENOTDIR: say what it is */
      errno = e == ENOTDIR && next ? ELOOP : e;
      return -1;
    }
    dirfd = fd;
  }
  return dirfd;
}

int cb_open_beneath(int rootfd, const char *path, int flags)
{
  while (*path == '/')
    path++;
  if (*path == '\0')
    path = ".";
  if (use_openat2()) {
    struct open_how how;
    long fd;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    fd = syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
    if (fd >= 0 || errno != ENOSYS)
      return (int)fd;
    openat2_state = -1;
  }
  return open_walk(rootfd, path, flags);
}

int cb_write_all(int fd, const void *data, size_t n)
{
  const char *p = data;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

ssize_t cb_read_retry(int fd, void *buf, size_t n)
{
  ssize_t r;
  do
    r = read(fd, buf, n);
  while (r < 0 && errno == EINTR);
  return r;
}

int cb_remove_tree(int parentfd, const char *name)
{
  struct stat st;
  int fd, rc = 0;
  DIR *d;
  struct dirent *de;
  if (fstatat(parentfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return -1;
  if (!S_ISDIR(st.st_mode))
    return unlinkat(parentfd, name, 0);
  fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return -1;
  d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -1;
  }
  while ((errno = 0, de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (cb_remove_tree(dirfd(d), de->d_name) < 0 && errno != ENOENT)
      rc = -1;
  }
  closedir(d);
  if (rc == 0 && unlinkat(parentfd, name, AT_REMOVEDIR) < 0)
    rc = -1;
  return rc;
}

int cb_list_dir(int dirfd, const char *name, struct strvec *out)
{
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  struct dirent *de;
  DIR *d;
  if (fd < 0)
    return -1;
  d = fdopendir(fd);
  if (d == NULL) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  while ((errno = 0, de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
      strvec_push(out, de->d_name);
  closedir(d);
  return 0;
}

int cb_open_dir_made(int parent, const char *name, mode_t mode)
{
  int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    if (mkdirat(parent, name, mode) < 0 && errno != EEXIST)
      return -1;
    while (fsync(parent) < 0 && errno == EINTR)
      ;
    fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  }
  return fd;
}

int cb_mkdir_p(const char *path, mode_t mode, struct cb_error *err)
{
  cleanup_free char *p = xstrdup(path);
  for (char *c = p + 1;; c++) {
    if (*c == '/' || *c == '\0') {
      char save = *c;
      *c = '\0';
      if (mkdir(p, mode) < 0 && errno != EEXIST)
        return cb_error_errno(err, errno, "mkdir \"%s\"", p);
      *c = save;
      if (save == '\0')
        return 0;
    }
  }
}
