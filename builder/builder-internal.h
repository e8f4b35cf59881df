/* The builder's private pieces: the image filesystem view, the build
 * context, COPY/ADD, and the state of a stage being built. */
#ifndef CBUILD_BUILDER_INTERNAL_H
#define CBUILD_BUILDER_INTERNAL_H

#include "builder.h"

#include "../cache/cache.h"
#include "../oci/oci.h"

#include <pthread.h>

/* ---- what the commands share ---- */

/* Print "cbuild: MSG" and return the failure status. */
int builder_cmd_fail(const struct cb_error *err);
/* Print a usage error pointing at the command's help; returns status 2. */
int builder_cmd_usage(const char *cmd, const char *text);
/* The store for --root (or its default), created when missing. */
struct cache_store *builder_cmd_store(const char *root_flag, struct cb_error *err);

/* The registry flags that build and the registry commands share, as
 * getopt_long codes of their own (above every command's), in one table. */
enum {
  BUILDER_OPT_AUTHFILE = 0x1000,
  BUILDER_OPT_INSECURE_REGISTRY,
  BUILDER_OPT_TLS_CA_CERT,
};
#define BUILDER_REGISTRY_OPTIONS                                                   \
  { "authfile", required_argument, NULL, BUILDER_OPT_AUTHFILE },                   \
  { "insecure-registry", required_argument, NULL, BUILDER_OPT_INSECURE_REGISTRY }, \
  { "tls-ca-cert", required_argument, NULL, BUILDER_OPT_TLS_CA_CERT }
/* Take option opt (a getopt_long code) with arg into r when it is one of
 * those; false when it is not. */
bool builder_registry_option(struct builder_registry *r, int opt, const char *arg);

/* A client of registry/repository with the registry flags of reg (the
 * credentials given, else looked up as oci.h says). */
struct oci_registry *builder_registry_client(const struct builder_registry *reg,
                                             const char *registry, const char *repository,
                                             const struct oci_credentials *creds,
                                             struct cb_error *err);

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
  char *real_dir; /* resolved: what names this context in the store's caches */
  int dirfd;      /* O_PATH|O_DIRECTORY of the root */
  struct parser_ignore *ignore; /* NULL without a .dockerignore */
};

int context_open(struct build_context *c, const char *dir, struct cb_error *err);
void context_close(struct build_context *c);
/* Whether a context path (relative, cleaned) is excluded by .dockerignore. */
bool context_excluded(const struct build_context *c, const char *path);

/* ---- archive output files ---- */

/*
 * The file of an archive output (output.c): dest followed through
 * symlinks; a file that is not a regular one (/dev/null, a fifo) written in
 * place; a regular one written aside and renamed over it once whole.
 */
struct builder_out_file {
  char *path;    /* the file written, or replaced */
  char *tmp;     /* what is renamed onto path, or NULL (in place) */
  int fd;        /* where to write */
  bool unnamed;  /* fd is unnamed (O_TMPFILE), named tmp once whole */
};
/* Open what dest names; on failure f holds nothing. */
int builder_out_file_open(struct builder_out_file *f, const char *dest, struct cb_error *err);
/* An unnamed file beside what dest names, for an archive written while
 * the build runs; -1 (and f holding nothing) where there can be none:
 * written in place, or no O_TMPFILE there. */
int builder_out_file_open_unnamed(struct builder_out_file *f, const char *dest);
/* After the archive was written (rc 0) or failed (rc < 0): closed, and on
 * success complete under its name, on failure gone.  Returns rc, or -1 if
 * completing it failed. */
int builder_out_file_finish(struct builder_out_file *f, int rc, struct cb_error *err);
/* Close and free f, naming nothing: an unnamed file given up is gone. */
void builder_out_file_release(struct builder_out_file *f);

/* ---- a stage being built ---- */

struct stage_state {
  struct oci_config config;
  struct oci_descriptor *layers;
  size_t n_layers;
  bool cmd_set;        /* CMD given in this stage (ENTRYPOINT then keeps it) */
  char key[OCI_DIGEST_SIZE]; /* the cache key of the last step (or the base) */
  struct fsview view;
  bool view_ready;
  struct strvec keys; /* the cache keys of its steps, in order */
};

void stage_state_release(struct stage_state *st);
/* Load an image of the local store into st (its layers and config);
 * digest gets its manifest's digest. */
int builder_image_load(struct cache_store *store, const char *name, struct stage_state *st,
                       char digest[OCI_DIGEST_SIZE], struct cb_error *err);
struct fsview *stage_view(struct stage_state *st, struct cache_store *store);

/* The stages being built, shared by the worker threads. */
struct build_sched {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int *status; /* enum stage_status, per stage */
  int n;
  int running;
  bool failed;
  struct cb_error err; /* the first failure */
};

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
  struct cache_stat_cache *stat_cache; /* the context's, loaded when needed */
  pthread_mutex_t stat_lock;           /* held while COPY hashes sources */
  struct build_sched *sched;           /* while stages are being built */
  struct runner_netns *netns;          /* RUN's default network, made once */
  struct runner_netns *netns_none;     /* --network=none's: lo only, made once */
  pthread_mutex_t net_lock;
  char *spare_step_dir;                /* a RUN's emptied upper/work, for the next */
  pthread_mutex_t spare_lock;
  /* The first archive output to a file, written as the image's layers are
   * (oci_tar_stream), and its unnamed file, which the export names. */
  struct oci_tar_stream *stream;
  const struct builder_output *stream_output;
  struct builder_out_file stream_file;
  bool *in_image; /* per stage: its layers begin the image's (the target, and what it is FROM) */
};

/* The archive output the layer a step of st is about to write is copied
 * into as it is written (for oci_layer_options.stream), or NULL. */
struct oci_tar_stream *builder_layer_stream(struct build_run *run, struct stage_state *st);

/*
 * Shared caches (cache-share.c): import every --cache-from before the
 * stages are built (their entries join the store's step cache, their
 * layers are fetched only when a step or the image needs them), export
 * every --cache-to after.  builder_cache_import_end() stops the fetching.
 */
struct cache_import;
int builder_cache_import(struct build_run *run, struct cache_import **out, struct cb_error *err);
void builder_cache_import_end(struct build_run *run, struct cache_import *ci);
int builder_cache_export(struct build_run *run, struct progress *p, struct cb_error *err);

/* The network namespace RUN steps of this network (the default, or none)
 * share, started at the first call (the default's slirp4netns comes up
 * while the step is prepared; runner_run waits).  *out stays NULL for the
 * others. */
int builder_netns(struct build_run *run, enum runner_network network,
                  struct runner_netns **out, struct cb_error *err);

struct progress;

/* Remove the spare step directory a build's RUN steps may have left. */
void builder_step_dir_cleanup(struct build_run *run);
/* Remove the step directories killed builds left in the store, when no
 * build runs (cache_build_lock exclusive, not waited for).  Before the
 * build takes its own lock.  Best effort. */
void builder_step_dirs_tidy(struct cache_store *store);

/* Run a RUN step in the sandbox; its output goes to progress step id. */
int builder_run_step(struct build_run *run, int stage, const struct parser_step *step,
                     struct progress *p, int id, struct cb_error *err);

/* Run a COPY or ADD step on the stage: makes one layer. */
int builder_copy(struct build_run *run, int stage, const struct parser_step *step,
                 struct cb_error *err);

/* The same in two halves, for the cache: prepare finds every source (and
 * downloads URLs, unpacks archives); commit writes the layer.  With
 * for_key, prepare does not read the image to learn whether a destination
 * without a final '/' is a directory, nor the ids --chown names (the key
 * needs no answer: the parent's key fixes them); commit asks, gives the
 * items their owner, and prepares again when the destination turns out
 * to be a directory. */
struct copy_prep;
int builder_copy_prepare(struct build_run *run, int stage, const struct parser_step *step,
                         bool for_key, struct copy_prep **out, struct cb_error *err);
/* One line per file the step copies, "name\tdigest", sorted by
 * destination: the digest covers type, mode, owner, link target, xattrs
 * and content (through the stat cache for context files), not mtimes. */
int builder_copy_inputs(struct copy_prep *cp, struct cache_stat_cache *sc, struct strvec *files,
                        struct cb_error *err);
int builder_copy_commit(struct copy_prep *cp, struct cb_error *err);
/* Have commit take each file's content digest as it writes the layer, so
 * that builder_copy_inputs() after it reads nothing again; false when the
 * layer's files cannot give the key's lines (--chown by name). */
bool builder_copy_hash_in_layer(struct copy_prep *cp);
/* The same lines for what RUN --mount=type=bind shows of the context at
 * source, named below prefix. */
int builder_bind_inputs(struct build_run *run, int stage, const struct parser_step *step,
                        const char *source, const char *prefix, struct cache_stat_cache *sc,
                        struct strvec *files, struct cb_error *err);
void builder_copy_free(struct copy_prep *cp);

/* ---- cache keys (cachekey.c) ---- */

/* What a step's key is made of, besides its parent's key. */
struct step_inputs {
  char *instruction;            /* builder_step_canonical() */
  char from_key[OCI_DIGEST_SIZE]; /* COPY --from=stage: that stage's key */
  struct strvec files;          /* COPY/ADD: builder_copy_inputs() */
  struct copy_prep *copy;       /* COPY/ADD: prepared, to commit on a miss */
  bool files_later;             /* files left for step_inputs_finish() */
};

/* The key a stage's chain starts from: what ("image", "scratch") and its
 * identity (a manifest digest, a platform), with the build's layer
 * options. */
void builder_key_base(struct build_run *run, const char *what, const char *id,
                      char out[OCI_DIGEST_SIZE]);
/*
 * A step's inputs, given its parent's key.  A COPY or ADD whose key cannot
 * match any entry (`lookup` false, or no entry was ever recorded for this
 * parent and instruction) leaves its files for step_inputs_finish(), after
 * the layer is written: each file is hashed as the layer reads it, rather
 * than read once more before.
 */
int step_inputs_collect(struct build_run *run, int stage, const struct parser_step *step,
                        const char *parent, bool lookup, struct step_inputs *in,
                        struct cb_error *err);
/* The files left for later (the step has run); a no-op when none were. */
int step_inputs_finish(struct build_run *run, struct step_inputs *in, struct cb_error *err);
/* Record that an entry now exists for this parent and instruction (after
 * cache_entry_put()): later builds hash the files before their lookup. */
int step_inputs_recorded(struct build_run *run, const char *parent,
                         const struct step_inputs *in, struct cb_error *err);
/* Record that the store holds entries of a shared cache (--cache-from),
 * which any step may hit: their files are always hashed before the lookup
 * (until prune --all). */
int builder_seen_imported(struct build_run *run, struct cb_error *err);
void step_inputs_release(struct step_inputs *in);
void step_key(const char *parent, const struct step_inputs *in, char out[OCI_DIGEST_SIZE]);
/*
 * Compare with what the last build of this step (by place) saw and record
 * this one.  why gets the reason the key differs from last time ("2 files
 * changed: a, b"), and stays empty when the key is the same.
 */
int builder_explain(struct build_run *run, int stage, size_t index, const char *parent,
                    const struct step_inputs *in, const char *key, struct strbuf *why,
                    struct cb_error *err);
/* Write the stat cache back, and free it. */
int builder_stat_cache_save(struct build_run *run, struct cb_error *err);

/* The step as JSON for its key: substituted, with flags, without its line
 * and spelling; RUN with its environment. */
char *builder_step_canonical(const struct parser_step *s);

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
