/*
 * parser: Dockerfiles and .dockerignore files, with Docker's semantics.
 *
 * Two phases, as in BuildKit:
 *
 *  1. parser_parse() reads the text into a struct parser_dockerfile: the
 *     directives, the global ARGs and the stages, each a list of steps whose
 *     flags and arguments are split and checked but not yet substituted.
 *
 *  2. parser_resolve() evaluates the stage graph for a set of build args
 *     and a target: FROM lines are expanded with the global ARGs, stages and
 *     `COPY --from` / `RUN --mount from=` references are resolved, and the
 *     stages reachable from the target are marked.  parser_stage_expand()
 *     then substitutes variables in a stage's steps, in order, starting from
 *     the environment of its base (an image's config Env, or the scope a
 *     parent stage ended with), exactly where Docker substitutes.
 *
 * Errors are reported in a struct parser_error, which carries file, line and
 * a message and allocates nothing, like jansson's json_error_t.
 *
 * The parser uses no other cbuild module, only common/.
 */
#ifndef CBUILD_PARSER_H
#define CBUILD_PARSER_H

#include "../common/common.h"

struct parser_error {
  char file[256];
  int line;   /* 1-based; 0 when the error is not about one line */
  int column; /* 1-based; 0 when unknown */
  char text[1024];
};

/* "FILE:LINE: text" (or "FILE: text" without a line) into buf. */
void parser_error_format(const struct parser_error *e, char *buf, size_t size);

enum parser_instr {
  PARSER_FROM,
  PARSER_RUN,
  PARSER_CMD,
  PARSER_ENTRYPOINT,
  PARSER_COPY,
  PARSER_ADD,
  PARSER_ENV,
  PARSER_ARG,
  PARSER_LABEL,
  PARSER_EXPOSE,
  PARSER_WORKDIR,
  PARSER_USER,
  PARSER_VOLUME,
  PARSER_STOPSIGNAL,
  PARSER_HEALTHCHECK,
  PARSER_SHELL,
  PARSER_ONBUILD,
  PARSER_MAINTAINER,
};

/* "FROM", "RUN", ... */
const char *parser_instr_name(enum parser_instr instr);

struct parser_heredoc {
  char *name;    /* the delimiter word, quotes removed */
  char *content; /* the lines between, each ending in "\n" */
  bool expand;   /* the delimiter was unquoted: substitute in content */
  bool chomp;    /* <<-: leading tabs were stripped */
  int fd;        /* 0 unless written as N<<EOF */
};

/* A key and value: ENV and LABEL pairs, ARG declarations (value NULL when
 * the ARG has no default; after parser_stage_expand(), the value in effect:
 * the --build-arg, else the default, else the global ARG's, else NULL). */
struct parser_kv {
  char *key;
  char *value;
};

enum parser_mount_type {
  PARSER_MOUNT_BIND,
  PARSER_MOUNT_CACHE,
  PARSER_MOUNT_TMPFS,
  PARSER_MOUNT_SECRET,
  PARSER_MOUNT_SSH,
};

enum parser_mount_sharing {
  PARSER_SHARING_SHARED,
  PARSER_SHARING_PRIVATE,
  PARSER_SHARING_LOCKED,
};

/* One RUN --mount, parsed as BuildKit does. */
struct parser_mount {
  enum parser_mount_type type;
  char *target;  /* NULL only for secret/ssh, which have default targets */
  char *source;
  char *from;    /* stage or image, for bind and cache */
  char *id;
  char *env;     /* secret: also expose the secret as this variable */
  enum parser_mount_sharing sharing;
  bool readonly; /* bind: default true; cache: default false */
  bool required; /* secret/ssh */
  long long size; /* tmpfs size in bytes; 0 when unset */
  long uid, gid;  /* -1 when unset */
  long mode;      /* -1 when unset */
  /* Index of the stage `from` names after parser_resolve(), or -1. */
  int from_stage;
};

enum parser_network { PARSER_NET_DEFAULT, PARSER_NET_NONE, PARSER_NET_HOST };
enum parser_security { PARSER_SECURITY_SANDBOX, PARSER_SECURITY_INSECURE };

/* HEALTHCHECK: test is {"NONE"}, {"CMD", args...} or {"CMD-SHELL", cmd}. */
struct parser_health {
  struct strvec test;
  int64_t interval_ns, timeout_ns, start_period_ns, start_interval_ns;
  int retries;
};

/*
 * One instruction.  Before expansion the string fields hold the words as
 * written (quotes and $vars intact where Docker substitutes later); after
 * parser_stage_expand() they hold the substituted values.  Which fields an
 * instruction uses is documented beside each one.
 */
struct parser_step {
  enum parser_instr instr;
  int line;     /* first line of the instruction */
  int end_line; /* last line, heredocs included */
  char *text;   /* as written, continuation lines joined */

  /*
   * Arguments.  RUN/CMD/ENTRYPOINT/SHELL and HEALTHCHECK CMD: the exec-form
   * words when `json`, else one element holding the shell-form command.
   * COPY/ADD: sources then the destination.  FROM: image [AS name].
   * EXPOSE, VOLUME: the words.  WORKDIR, USER, STOPSIGNAL, MAINTAINER:
   * one element.  ONBUILD: the trigger text.
   */
  struct strvec args;
  bool json;

  /* ENV, LABEL, ARG */
  struct parser_kv *kvs;
  size_t n_kvs;
  bool legacy_kv; /* ENV/LABEL written as "key value" */

  /* COPY/ADD flags */
  char *from;     /* --from */
  char *chown;    /* --chown */
  char *chmod;    /* --chmod */
  char *checksum; /* ADD --checksum */
  bool link, parents, keep_git_dir;
  struct strvec excludes; /* --exclude, repeatable */
  int from_stage;         /* after parser_resolve(): stage index, or -1 */

  /* FROM */
  char *platform;   /* --platform */
  char *stage_name; /* AS name, lowercased; NULL without one */

  /* RUN */
  struct strvec run_env;     /* after expansion: "K=V" of the ENV and ARGs in
                                scope, and proxy build args (parser_run_env) */
  struct strvec mount_specs; /* --mount values as written */
  struct parser_mount *mounts; /* parsed by parser_stage_expand() */
  size_t n_mounts;
  char *network_name;  /* --network as written */
  char *security_name; /* --security as written */
  enum parser_network network;
  bool network_set;
  enum parser_security security;

  /* HEALTHCHECK: --interval --timeout --start-period --start-interval
   * --retries as written, and their values */
  char *health_flags[5];
  struct parser_health health;
  bool health_none;

  /* ONBUILD: the trigger parsed, to check it is allowed */
  struct parser_step *trigger;

  /* RUN, COPY, ADD */
  struct parser_heredoc *heredocs;
  size_t n_heredocs;
};

struct parser_stage {
  int index;
  char *name;     /* lowercased AS name, or NULL */
  char *base;     /* FROM's image word; after resolve, expanded */
  struct parser_step *from; /* the FROM step */
  struct parser_step *steps; /* the steps after FROM */
  size_t n_steps;

  /* Filled by parser_resolve() */
  int base_stage;   /* index of the stage FROM names, or -1 for an image */
  bool base_scratch;
  char *platform;   /* expanded --platform, or NULL */
  bool reachable;   /* needed to build the target */
};

struct parser_directives {
  char *syntax;
  char *check;
  char escape; /* '\\' or '`' */
};

struct parser_dockerfile {
  char *file; /* the name used in messages */
  struct parser_directives directives;
  struct parser_step *global_args; /* ARG steps before the first FROM */
  size_t n_global_args;
  struct parser_stage *stages;
  size_t n_stages;
  struct strvec warnings; /* "FILE:LINE: text" lines, for the user */

  /* Filled by parser_resolve() */
  int target;                 /* index of the target stage */
  struct parser_kv *meta_args; /* global ARG values after build args */
  size_t n_meta_args;
};

/*
 * Parse the Dockerfile text (data, size bytes, any bytes at all) read from
 * `file`.  On success returns a new dockerfile; on failure NULL with err
 * filled.
 */
struct parser_dockerfile *parser_parse(const char *file, const char *data,
                                       size_t size, struct parser_error *err);
void parser_dockerfile_free(struct parser_dockerfile *df);

/* Index of the stage named `name` (case-insensitive), or -1. */
int parser_stage_find(const struct parser_dockerfile *df, const char *name);

/* ---- variables and build args ---- */

enum parser_var_kind { PARSER_VAR_ENV, PARSER_VAR_ARG };

struct parser_var {
  char *name;
  char *value;
  enum parser_var_kind kind;
};

/*
 * A scope of variables as seen by one step: ENV values and declared ARGs.
 * ENV overrides ARG; later definitions replace earlier ones.
 */
struct parser_vars {
  struct parser_var *v;
  size_t n, alloc;
};
#define PARSER_VARS_INIT { NULL, 0, 0 }

void parser_vars_set(struct parser_vars *vars, const char *name,
                     const char *value, enum parser_var_kind kind);
/* The value of name, or NULL when unset. */
const char *parser_vars_get(const struct parser_vars *vars, const char *name);
void parser_vars_copy(struct parser_vars *dst, const struct parser_vars *src);
void parser_vars_release(struct parser_vars *vars);

/* The build's inputs: --build-arg values, the target and the platforms. */
struct parser_build_args {
  struct parser_kv *kvs; /* from --build-arg */
  size_t n_kvs;
  const char *target;          /* NULL: the last stage */
  const char *target_platform; /* "linux/amd64"; NULL: the build platform */
  const char *build_platform;  /* NULL: this machine's */
};

/* Add or replace a --build-arg value. */
void parser_build_args_set(struct parser_build_args *ba, const char *key,
                           const char *value);
void parser_build_args_release(struct parser_build_args *ba);

/* This machine's platform as "os/arch[/variant]". */
const char *parser_host_platform(void);

/*
 * Evaluate the global ARGs, expand every FROM, resolve stage references and
 * the target, and mark reachable stages.  Fails on an unknown target, a FROM
 * that expands to nothing, a circular dependency, a bad --from index.
 */
int parser_resolve(struct parser_dockerfile *df,
                   const struct parser_build_args *ba,
                   struct parser_error *err);

/*
 * Substitute variables in stage `index`, whose base environment is `base`
 * (image ENV as PARSER_VAR_ENV, or a parent stage's final scope).  On
 * success, *out holds `n_steps` expanded copies of the stage's steps, and
 * `scope` (which the caller initialises with `base`) the scope after the
 * last step.  `ba` supplies build-arg values for ARG steps; `used_args`,
 * when not NULL, collects the names of build args the stage consumed.
 */
int parser_stage_expand(const struct parser_dockerfile *df, int index,
                        const struct parser_build_args *ba,
                        struct parser_vars *scope, struct parser_step **out,
                        struct strvec *used_args, struct parser_error *err);
void parser_steps_free(struct parser_step *steps, size_t n);

/*
 * The variables a step is run with, ARGs included, for RUN; proxy build
 * args (HTTP_PROXY and friends) are added when given even if undeclared.
 */
void parser_run_env(const struct parser_vars *scope,
                    const struct parser_build_args *ba, struct strvec *env);

/* ---- the shell lexer, for callers that substitute words themselves ---- */

/*
 * Substitute variables in `word` the way Docker's shell lexer does, with
 * quote removal, producing a single word.  `escape` is '\\' or '`'.
 */
int parser_expand_word(const char *word, char escape,
                       const struct parser_vars *vars, struct strbuf *out,
                       char *errbuf, size_t errsize);
/* The same, then split into words on unquoted whitespace (EXPOSE). */
int parser_expand_words(const char *word, char escape,
                        const struct parser_vars *vars, struct strvec *out,
                        char *errbuf, size_t errsize);

/* ---- durations ---- */

/* Parse a Go duration ("1m30s", "500ms", "0"); -1 on a bad one. */
int parser_duration(const char *s, int64_t *ns);

/* ---- .dockerignore ---- */

struct parser_ignore;

/*
 * Read .dockerignore text into a matcher: one pattern a line, `#` comments,
 * `!` exceptions, paths cleaned and a leading `/` dropped, `**` matching any
 * number of directories.  Returns NULL with err set on a bad pattern.
 */
struct parser_ignore *parser_ignore_new(const char *file, const char *data,
                                        size_t size, struct parser_error *err);
void parser_ignore_free(struct parser_ignore *ig);
/*
 * Whether `path` (relative to the context root, '/'-separated) is excluded.
 * A path is excluded when the last pattern matching it or one of its parent
 * directories is not an exception.  Never NULL-safe: pass a matcher.
 */
bool parser_ignore_match(const struct parser_ignore *ig, const char *path);
/*
 * Whether a walk must enter the excluded directory `dir` anyway, because an
 * exception pattern could match something below it.
 */
bool parser_ignore_dir_needs_walk(const struct parser_ignore *ig,
                                  const char *dir);
size_t parser_ignore_count(const struct parser_ignore *ig);

#endif
