/*
 * The image's filesystem as COPY sees it, read from the layer tars in the
 * store.  Layers are applied bottom to top with the OCI whiteout rules:
 * ".wh.NAME" deletes NAME, ".wh..wh..opq" hides what lower layers had in
 * its directory.
 */
#include "builder-internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <unistd.h>

#define WHITEOUT ".wh."
#define OPAQUE ".wh..wh..opq"

void fsview_init(struct fsview *v, struct cache_store *store, struct oci_descriptor *layers,
                 size_t n_layers)
{
  memset(v, 0, sizeof(*v));
  v->store = store;
  v->layers = layers;
  v->n_layers = n_layers;
}

static void node_free(struct fsview_node *n)
{
  free(n->path);
  free(n->symlink);
}

void fsview_release(struct fsview *v)
{
  for (size_t i = 0; i < v->n; i++)
    node_free(&v->nodes[i]);
  free(v->nodes);
  free(v->hash);
  memset(v, 0, sizeof(*v));
}

/* A tar path cleaned to our form: no "./", no leading or trailing '/'. */
static char *entry_path(const char *p)
{
  char *c = builder_path_clean(p);
  if (strcmp(c, ".") == 0) {
    free(c);
    return NULL;
  }
  return c;
}

/* ---- a hash of path -> node index (open addressing), rebuilt after removals ---- */

static uint64_t path_hash(const char *s)
{
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

static void hash_insert(struct fsview *v, size_t idx)
{
  size_t mask = v->hash_size - 1;
  size_t h = (size_t)path_hash(v->nodes[idx].path) & mask;
  while (v->hash[h] != SIZE_MAX)
    h = (h + 1) & mask;
  v->hash[h] = idx;
}

static void hash_rebuild(struct fsview *v)
{
  size_t want = 64;
  while (want < v->n * 2 + 2)
    want *= 2;
  free(v->hash);
  v->hash_size = want;
  v->hash = xmalloc(st_mult(want, sizeof(*v->hash)));
  memset(v->hash, 0xff, want * sizeof(*v->hash));
  for (size_t i = 0; i < v->n; i++)
    hash_insert(v, i);
}

static ssize_t find(const struct fsview *v, const char *path)
{
  size_t mask, h;
  if (!v->hash_size)
    return -1;
  mask = v->hash_size - 1;
  for (h = (size_t)path_hash(path) & mask; v->hash[h] != SIZE_MAX; h = (h + 1) & mask)
    if (strcmp(v->nodes[v->hash[h]].path, path) == 0)
      return (ssize_t)v->hash[h];
  return -1;
}

/* Whether path is below dir ("" being the root). */
static bool under(const char *path, const char *dir)
{
  size_t n = strlen(dir);
  if (n == 0)
    return true;
  return strncmp(path, dir, n) == 0 && path[n] == '/';
}

/* Remove path's children (from layers below `layer` when lower_only). */
static void remove_children(struct fsview *v, const char *dir, bool lower_only, size_t layer)
{
  size_t w = 0;
  for (size_t i = 0; i < v->n; i++) {
    if (under(v->nodes[i].path, dir) && (!lower_only || v->nodes[i].layer < layer)) {
      node_free(&v->nodes[i]);
      continue;
    }
    v->nodes[w++] = v->nodes[i];
  }
  if (w != v->n) {
    v->n = w;
    hash_rebuild(v);
  }
}

static void remove_path(struct fsview *v, const char *path)
{
  ssize_t i;
  remove_children(v, path, false, 0);
  i = find(v, path);
  if (i >= 0) {
    node_free(&v->nodes[i]);
    v->nodes[i] = v->nodes[--v->n];
    hash_rebuild(v);
  }
}

static int open_layer(struct fsview *v, size_t layer, struct archive **ap, struct cb_error *err)
{
  int64_t size;
  int fd = cache_blob_open(v->store, v->layers[layer].digest, &size, err);
  struct archive *a;
  if (fd < 0)
    return -1;
  a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  if (archive_read_open_fd(a, fd, 65536) != ARCHIVE_OK) {
    cb_error_set(err, "read layer %s: %s", v->layers[layer].digest, archive_error_string(a));
    archive_read_free(a);
    close(fd);
    return -1;
  }
  /* libarchive leaves the fd open: the caller closes it. */
  *ap = a;
  return fd;
}

static int index_layer(struct fsview *v, size_t layer, struct cb_error *err)
{
  struct archive *a = NULL;
  struct archive_entry *e;
  int fd = open_layer(v, layer, &a, err), r;
  if (fd < 0)
    return -1;
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    cleanup_free char *path = entry_path(archive_entry_pathname(e));
    const char *base;
    ssize_t i;
    if (!path)
      continue;
    base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strcmp(base, OPAQUE) == 0) {
      /* "dir/.wh..wh..opq" -> "dir"; at the top, "" (the root) */
      path[base > path ? base - path - 1 : 0] = '\0';
      remove_children(v, path, true, layer);
      continue;
    }
    if (strncmp(base, WHITEOUT, strlen(WHITEOUT)) == 0) {
      cleanup_free char *victim =
          xasprintf("%.*s%s", (int)(base - path), path, base + strlen(WHITEOUT));
      remove_path(v, victim);
      continue;
    }
    i = find(v, path);
    if (i >= 0 && !(S_ISDIR(v->nodes[i].mode) && S_ISDIR(archive_entry_mode(e)))) {
      remove_path(v, path);
      i = -1;
    }
    if (i < 0) {
      CB_GROW(v->nodes, v->n + 1, v->alloc);
      i = (ssize_t)v->n++;
      memset(&v->nodes[i], 0, sizeof(v->nodes[i]));
      v->nodes[i].path = steal_pointer(&path);
      if (v->n * 2 + 2 > v->hash_size)
        hash_rebuild(v);
      else
        hash_insert(v, (size_t)i);
    }
    v->nodes[i].mode = archive_entry_hardlink(e) ? (mode_t)(S_IFREG | 0644) : archive_entry_mode(e);
    v->nodes[i].layer = layer;
    free(v->nodes[i].symlink);
    v->nodes[i].symlink =
        archive_entry_symlink(e) ? xstrdup(archive_entry_symlink(e)) : NULL;
  }
  if (r != ARCHIVE_EOF)
    cb_error_set(err, "read layer %s: %s", v->layers[layer].digest, archive_error_string(a));
  archive_read_free(a);
  close(fd);
  return r == ARCHIVE_EOF ? 0 : -1;
}

static int fsview_index(struct fsview *v, struct cb_error *err)
{
  while (v->indexed < v->n_layers) {
    if (index_layer(v, v->indexed, err) < 0)
      return -1;
    v->indexed++;
  }
  return 0;
}

/*
 * Resolve path inside the image: symlinks in any component are followed,
 * absolute targets from the image's root, at most 40 of them.
 */
static int resolve(struct fsview *v, const char *path, bool follow_last, struct strbuf *out)
{
  cleanup_free char *work = builder_path_clean(path);
  int hops = 0;
  for (;;) {
    char *p = work;
    bool changed = false;
    strbuf_reset(out);
    while (*p && strcmp(work, ".") != 0) {
      char *slash = strchr(p, '/');
      size_t len = slash ? (size_t)(slash - p) : strlen(p);
      ssize_t i;
      if (out->len)
        strbuf_addch(out, '/');
      strbuf_add(out, p, len);
      i = find(v, out->buf);
      if (i >= 0 && S_ISLNK(v->nodes[i].mode) && (slash || follow_last)) {
        char *next;
        const char *target = v->nodes[i].symlink ? v->nodes[i].symlink : "";
        if (++hops > 40)
          return -1;
        strbuf_setlen(out, out->len - len);
        if (target[0] == '/')
          next = xasprintf("%s%s", target, slash ? slash : "");
        else
          next = xasprintf("%s%s%s", out->buf, target, slash ? slash : "");
        free(work);
        work = builder_path_clean(next);
        free(next);
        changed = true;
        break;
      }
      p = slash ? slash + 1 : p + len;
    }
    if (!changed)
      return 0;
  }
}

int fsview_lookup(struct fsview *v, const char *path, const struct fsview_node **node,
                  struct cb_error *err)
{
  cleanup_strbuf struct strbuf real = STRBUF_INIT;
  ssize_t i;
  *node = NULL;
  if (fsview_index(v, err) < 0)
    return -1;
  if (resolve(v, path, true, &real) < 0)
    return 0; /* a symlink loop: nothing there */
  if (real.len == 0)
    return 0; /* the root */
  i = find(v, real.buf);
  if (i >= 0)
    *node = &v->nodes[i];
  return 0;
}

int fsview_read(struct fsview *v, const char *path, struct strbuf *out, struct cb_error *err)
{
  const struct fsview_node *node;
  struct archive *a = NULL;
  struct archive_entry *e;
  int fd, r;
  if (fsview_lookup(v, path, &node, err) < 0)
    return -1;
  if (!node || !S_ISREG(node->mode))
    return 1;
  fd = open_layer(v, node->layer, &a, err);
  if (fd < 0)
    return -1;
  r = 1;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    cleanup_free char *p = entry_path(archive_entry_pathname(e));
    char buf[65536];
    ssize_t n;
    if (!p || strcmp(p, node->path) != 0)
      continue;
    if (archive_entry_size(e) > 16 << 20) {
      r = cb_error_set(err, "read \"/%s\" of the image: too large", node->path);
      break;
    }
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0)
      strbuf_add(out, buf, (size_t)n);
    r = n < 0 ? cb_error_set(err, "read \"/%s\" of the image: %s", node->path,
                             archive_error_string(a))
              : 0;
    break;
  }
  archive_read_free(a);
  close(fd);
  return r;
}
