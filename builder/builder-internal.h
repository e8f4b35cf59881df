/* The builder's private pieces: the image filesystem view, the build
 * context, COPY/ADD, and the state of a stage being built. */
#ifndef CBUILD_BUILDER_INTERNAL_H
#define CBUILD_BUILDER_INTERNAL_H

#include "builder.h"

#include "../cache/cache.h"
#include "../oci/oci.h"

/* ---- the image's filesystem, read from its layers ----
 *
 * What COPY needs to know of the image it copies into: whether a path
 * exists and is a directory, and the content of /etc/passwd and /etc/group
 * for --chown names.  Built lazily by reading the layer tars from the
 * store, bottom to top, applying whiteouts.
 */
struct fsview_node {
  char *path;   /* relative, no leading '/' */
  mode_t mode;  /* type bits matter */
  size_t layer; /* index of the layer that holds it */
  char *symlink;
};

struct fsview {
  struct cache_store *store;
  struct oci_descriptor *layers; /* not owned */
  size_t n_layers;
  size_t indexed;                /* layers read so far */
  struct fsview_node *nodes;
  size_t n, alloc;
  size_t *hash; /* node indexes by path; SIZE_MAX marks a free slot */
  size_t hash_size;
};

void fsview_init(struct fsview *v, struct cache_store *store, struct oci_descriptor *layers,
                 size_t n_layers);
void fsview_release(struct fsview *v);
/* The node at path (symlinks in parents followed inside the image), or NULL. */
int fsview_lookup(struct fsview *v, const char *path, const struct fsview_node **node,
                  struct cb_error *err);
/* Read a regular file of the image; 1 when it does not exist. */
int fsview_read(struct fsview *v, const char *path, struct strbuf *out, struct cb_error *err);

/* ---- the build context ---- */

struct build_context {
  char *dir;      /* as given */
  int dirfd;      /* O_PATH|O_DIRECTORY of the root */
  struct parser_ignore *ignore; /* NULL without a .dockerignore */
};

int context_open(struct build_context *c, const char *dir, struct cb_error *err);
void context_close(struct build_context *c);
/* Whether a context path (relative, cleaned) is excluded by .dockerignore. */
bool context_excluded(const struct build_context *c, const char *path);

/* ---- a stage being built ---- */

struct stage_state {
  struct oci_config config;
  struct oci_descriptor *layers;
  size_t n_layers;
  bool cmd_set;        /* CMD given in this stage (ENTRYPOINT then keeps it) */
  struct fsview view;
  bool view_ready;
};

void stage_state_release(struct stage_state *st);
struct fsview *stage_view(struct stage_state *st, struct cache_store *store);

/* Everything a step needs. */
struct build_run {
  const struct builder_options *o;
  struct builder_plan *plan;
  struct cache_store *store;
  struct build_context ctx;
  struct stage_state *stages; /* per stage, built ones filled */
  struct oci_layer_options layer_opts;
  int64_t epoch;  /* SOURCE_DATE_EPOCH, or -1 */
  char *created;  /* RFC 3339 time for history and config */
};

struct progress;

/* Run a RUN step in the sandbox; its output goes to progress step id. */
int builder_run_step(struct build_run *run, int stage, const struct parser_step *step,
                     struct progress *p, int id, struct cb_error *err);

/* Run a COPY or ADD step on the stage: makes one layer. */
int builder_copy(struct build_run *run, int stage, const struct parser_step *step,
                 struct cb_error *err);

/* A layer holding the directory path (relative) and its missing parents,
 * for WORKDIR. */
int builder_mkdir_layer(struct build_run *run, int stage, const struct parser_step *step,
                        const char *path, struct cb_error *err);

/* Commit a layer file (written by an oci_layer_writer) to the store and
 * append it to the stage's layers, diff_ids and history. */
int builder_add_layer(struct build_run *run, struct stage_state *st, int fd, const char *path,
                      const struct oci_layer_info *info, const char *created_by,
                      struct cb_error *err);

/* Clean a path lexically like Go's path.Clean, result relative (no leading
 * '/', "." for the root). */
char *builder_path_clean(const char *path);
/* Join WORKDIR and a destination, cleaned, absolute; keeps a trailing '/'. */
char *builder_dest_path(const char *workdir, const char *dest);

#endif
