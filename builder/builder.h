/*
 * builder: ties the modules together: the cbuild command line, the build
 * plan (a parsed, resolved and substituted Dockerfile), and the commands.
 * builder uses every other module; no module uses builder.
 */
#ifndef CBUILD_BUILDER_H
#define CBUILD_BUILDER_H

#include "../common/common.h"
#include "../oci/oci.h"
#include "../parser/parser.h"
#include "../runner/runner.h"

struct cache_store;
struct progress;

/* The PATH of a base image that sets none, as in Docker. */
#define BUILDER_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Exit statuses: usage errors are 2, failed builds 1. */
enum { BUILDER_EXIT_OK = 0, BUILDER_EXIT_FAIL = 1, BUILDER_EXIT_USAGE = 2 };

/* -o/--output type=...,dest=... */
struct builder_output {
  char *type; /* "oci" or "docker" ("image" while parsing) */
  char *dest; /* a path, or "-" for stdout */
  bool tar;   /* false: an OCI layout directory (oci only) */
  bool push;  /* type=image,push=true (parsing only: such outputs become names) */
};

/* --secret id=ID[,src=FILE|,env=VAR][,type=file|env], as docker build
 * takes it: what RUN --mount=type=secret,id=ID reads. */
struct builder_secret {
  char *id;
  char *file; /* the secret is this file's content, */
  char *env;  /* or this variable's value in cbuild's environment */
};

/* Parse a --secret value; -1 and err when it is malformed or names a file
 * that does not exist. */
int builder_secret_parse(const char *spec, struct builder_secret *s, struct cb_error *err);
void builder_secret_release(struct builder_secret *s);

/* How FROM and --from images are found: --pull=missing|always|never. */
enum builder_pull_policy { BUILDER_PULL_MISSING, BUILDER_PULL_ALWAYS, BUILDER_PULL_NEVER };

/* What the commands that talk to registries share. */
struct builder_registry {
  struct strvec insecure; /* --insecure-registry HOST[:PORT], repeatable */
  char *ca_cert;          /* --tls-ca-cert FILE */
  char *authfile;         /* --authfile FILE */
  enum builder_pull_policy pull;
  char *platform;         /* --platform: what to pull from an index; NULL: the host's */
  bool quiet;             /* no progress on stderr */
};

void builder_registry_release(struct builder_registry *r);
/* Parse a --pull value ("always", "missing", "never", "true", "false"). */
int builder_pull_policy_parse(const char *s, enum builder_pull_policy *p);

/*
 * Pull name (a reference) into the store: the manifest for the platform
 * (from an index when there is one), its config and layers, every blob
 * checked against its digest; a name with a tag is tagged.  `manifest` gets
 * the manifest's descriptor (free it with oci_descriptor_release).
 */
int builder_pull(struct cache_store *store, const struct builder_registry *reg, const char *name,
                 const char *platform, struct oci_descriptor *manifest, struct cb_error *err);
/*
 * Find name in the store, pulling it as reg->pull says: a tag through the
 * store's tags, a digest through the blob it names (an index chooses the
 * platform's manifest).  0 found, 1 missing (only with --pull=never), -1
 * error.
 */
int builder_image_resolve(struct cache_store *store, const struct builder_registry *reg,
                          const char *name, const char *platform,
                          struct oci_descriptor *manifest, struct cb_error *err);
/*
 * Push the store's image `name` to dest (NULL: name itself): the blobs the
 * registry lacks (mounted from another repository of it when the store
 * knows one holds them), then the manifest.  digest gets the manifest's.
 */
int builder_push(struct cache_store *store, const struct builder_registry *reg, const char *name,
                 const char *dest, char digest[OCI_DIGEST_SIZE], struct cb_error *err);
/* The same for a manifest of the store given by its descriptor. */
int builder_push_manifest(struct cache_store *store, const struct builder_registry *reg,
                          const struct oci_descriptor *desc, const char *dest,
                          char digest[OCI_DIGEST_SIZE], struct cb_error *err);

/*
 * --cache-to / --cache-from: the step cache shared through a registry
 * (type=registry,ref=REF) or an OCI layout directory (type=local,dest=DIR
 * to write, src=DIR to read).  mode=min (the default) exports the steps
 * of the target image, mode=max those of every stage built.
 */
struct builder_cache_spec {
  char *ref;  /* type=registry */
  char *dir;  /* type=local */
  bool max;
};

/* Parse a --cache-to (`to`) or --cache-from value; a bare REF means
 * type=registry,ref=REF. */
int builder_cache_spec_parse(const char *spec, bool to, struct builder_cache_spec *c,
                             struct cb_error *err);
void builder_cache_spec_release(struct builder_cache_spec *c);

struct builder_options {
  char *context;         /* the build context directory */
  char *file;            /* -f; NULL: CONTEXT/Dockerfile; "-": stdin */
  struct strvec tags;    /* -t, repeatable */
  struct parser_build_args args; /* --build-arg, --target */
  struct strvec labels;  /* --label K=V */
  struct builder_output *outputs;
  size_t n_outputs;
  char *root; /* --root or CBUILD_ROOT; NULL: the default store */
  char *progress; /* auto, plain, tty or quiet */
  bool no_cache;
  struct strvec no_cache_filter; /* --no-cache-filter STAGE, repeatable */
  bool explain_cache;            /* --explain-cache */
  int jobs;                      /* --jobs: stages at once; 0: one per CPU */
  struct oci_layer_options layer; /* --compression, --compression-level */
  enum parser_network network;    /* --network, for RUN steps without their own */
  struct runner_limits limits;    /* --memory, --pids-limit, --cpus, --cpu-quota/period */
  struct builder_secret *secrets; /* --secret, repeatable */
  size_t n_secrets;
  struct builder_registry registry; /* --pull, --platform, --insecure-registry, ... */
  bool push;                      /* --push: push every -t name after the build */
  struct builder_cache_spec *cache_to;   /* --cache-to, repeatable */
  size_t n_cache_to;
  struct builder_cache_spec *cache_from; /* --cache-from, repeatable */
  size_t n_cache_from;
  bool plan_only;                 /* cbuild parse: no pulls; an image missing
                                     from the store lends no ENV */
  struct strvec push_names;       /* what to push once built: --push's tags and
                                     -o type=image,name=REF,push=true */
};

void builder_options_release(struct builder_options *o);

/*
 * A Dockerfile ready to build: parsed, resolved against the build args and
 * target, with the steps of every reachable stage substituted.
 */
struct builder_plan {
  struct parser_dockerfile *df;
  struct parser_step **steps;   /* per stage: expanded steps, or NULL when unreachable */
  struct parser_vars *scopes;   /* per stage: the variables after its last step */
  struct strvec unused_args;    /* --build-arg names no reachable stage declared */
};

/*
 * Read the Dockerfile named by the options and make its plan.  The store,
 * when given, supplies the ENV of base images it holds.  A failure fills
 * err with one line: "FILE:LINE: what is wrong".
 */
int builder_plan_load(const struct builder_options *o, struct cache_store *store,
                      struct builder_plan *plan, struct cb_error *err);
void builder_plan_release(struct builder_plan *plan);

/*
 * Build the plan's target into the store: tag it, write the outputs, and
 * put the image ID (its config digest) in image_id.  Nothing is tagged or
 * exported unless every step succeeded.
 */
int builder_build(const struct builder_options *o, struct builder_plan *plan,
                  struct cache_store *store, struct progress *p,
                  char image_id[OCI_DIGEST_SIZE], struct cb_error *err);

/* The plan as the JSON `cbuild parse` prints. */
char *builder_plan_json(const struct builder_plan *plan);

/* Commands: each parses its own arguments (argv[0] is the command name)
 * and returns an exit status. */
int builder_cmd_build(int argc, char **argv, const char *root);
int builder_cmd_parse(int argc, char **argv, const char *root);
int builder_cmd_images(int argc, char **argv, const char *root);
int builder_cmd_inspect(int argc, char **argv, const char *root);
int builder_cmd_rmi(int argc, char **argv, const char *root);
int builder_cmd_tag(int argc, char **argv, const char *root);
int builder_cmd_save(int argc, char **argv, const char *root);
int builder_cmd_df(int argc, char **argv, const char *root);
int builder_cmd_prune(int argc, char **argv, const char *root);
int builder_cmd_pull(int argc, char **argv, const char *root);
int builder_cmd_push(int argc, char **argv, const char *root);
int builder_cmd_login(int argc, char **argv, const char *root);
int builder_cmd_logout(int argc, char **argv, const char *root);

/* Parse "K=V" (or a bare K, whose value comes from the environment, as
 * docker does) into a build arg; -1 and err on "=V". */
int builder_build_arg_add(struct parser_build_args *ba, const char *spec, struct cb_error *err);

#endif
