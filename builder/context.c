/*
 * The build context: a directory the user points at, read as hostile
 * input.  Every path is opened relative to the context's root fd and never
 * through a symlink (openat2 RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS, or a
 * component-by-component O_NOFOLLOW walk where openat2 is missing).
 */
#include "builder-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

char *builder_path_clean(const char *path)
{
  struct strbuf out = STRBUF_INIT;
  const char *p = path;
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    if (len == 0 || (len == 1 && p[0] == '.')) {
      /* an empty or "." component */
    } else if (len == 2 && p[0] == '.' && p[1] == '.') {
      /* ".." never climbs above the root */
      char *last = strrchr(out.buf, '/');
      strbuf_setlen(&out, last ? (size_t)(last - out.buf) : 0);
    } else {
      if (out.len)
        strbuf_addch(&out, '/');
      strbuf_add(&out, p, len);
    }
    p += len;
    if (*p == '/')
      p++;
  }
  if (out.len == 0)
    strbuf_addch(&out, '.');
  return strbuf_detach(&out, NULL);
}

char *builder_dest_path(const char *workdir, const char *dest)
{
  size_t n = strlen(dest);
  bool dir = n == 0 || dest[n - 1] == '/' || strcmp(dest, ".") == 0 ||
             (n >= 2 && strcmp(dest + n - 2, "/.") == 0);
  cleanup_free char *joined =
      dest[0] == '/' ? xstrdup(dest) : xasprintf("%s/%s", workdir ? workdir : "/", dest);
  cleanup_free char *clean = builder_path_clean(joined);
  if (strcmp(clean, ".") == 0)
    return xstrdup("/");
  return xasprintf("/%s%s", clean, dir ? "/" : "");
}

int context_open(struct build_context *c, const char *dir, struct cb_error *err)
{
  cleanup_close int fd = -1;
  struct strbuf text = STRBUF_INIT;
  struct parser_error pe;
  memset(c, 0, sizeof(*c));
  c->dirfd = -1;
  c->dir = xstrdup(dir);
  c->real_dir = realpath(dir, NULL);
  if (c->real_dir == NULL)
    c->real_dir = xstrdup(dir);
  c->dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (c->dirfd < 0)
    return cb_error_errno(err, errno, "open the build context \"%s\"", dir);
  fd = openat(c->dirfd, ".dockerignore", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT)
      return 0;
    return cb_error_errno(err, errno, "open \"%s/.dockerignore\"", dir);
  }
  {
    FILE *f = fdopen(fd, "r");
    int r;
    if (!f)
      return cb_error_errno(err, errno, "read \"%s/.dockerignore\"", dir);
    fd = -1;
    r = cb_read_stream(f, ".dockerignore", &text, err);
    fclose(f);
    if (r < 0) {
      strbuf_release(&text);
      return -1;
    }
  }
  c->ignore = parser_ignore_new(".dockerignore", text.buf, text.len, &pe);
  strbuf_release(&text);
  if (!c->ignore) {
    char line[1300];
    parser_error_format(&pe, line, sizeof(line));
    return cb_error_set(err, "%s", line);
  }
  return 0;
}

void context_close(struct build_context *c)
{
  if (c->dirfd >= 0)
    close(c->dirfd);
  if (c->ignore)
    parser_ignore_free(c->ignore);
  free(c->dir);
  free(c->real_dir);
  memset(c, 0, sizeof(*c));
  c->dirfd = -1;
}

bool context_excluded(const struct build_context *c, const char *path)
{
  return c->ignore && strcmp(path, ".") != 0 && parser_ignore_match(c->ignore, path);
}
