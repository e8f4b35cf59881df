/*
 * The command line of `cbuild build` and `cbuild parse`: docker build's
 * flags, usage errors as one line and exit status 2.
 */
#include "builder-internal.h"

#include "../cache/cache.h"
#include "../oci/oci.h"
#include "../runner/runner.h"
#include "progress-internal.h"

#include <errno.h>
#include <getopt.h>
#include <sys/stat.h>
#include <unistd.h>

static const char build_usage[] =
    "Usage: cbuild [build] [OPTIONS] CONTEXT\n"
    "\n"
    "Build an image from a Dockerfile and a build context, without a daemon.\n"
    "\n"
    "Options:\n"
    "  -t, --tag NAME[:TAG]      name the image (repeatable)\n"
    "  -f, --file FILE           the Dockerfile (default CONTEXT/Dockerfile; - reads stdin)\n"
    "      --build-arg K[=V]     set a build arg; a bare K takes $K from the environment\n"
    "      --target STAGE        build this stage and what it needs\n"
    "      --no-cache            run every step again (and refresh the cache)\n"
    "      --no-cache-filter STAGE  the same for one stage (repeatable)\n"
    "      --explain-cache       say for every step why it hit or missed the cache\n"
    "      --jobs N              build up to N stages at once (default: one per CPU)\n"
    "      --label K=V           add a label to the image\n"
    "      --secret SPEC         id=ID,src=FILE or id=ID,env=VAR: a secret for\n"
    "                            RUN --mount=type=secret (repeatable)\n"
    "      --progress MODE       auto, plain, tty or quiet (default auto)\n"
    "  -q, --quiet               print only errors\n"
    "  -o, --output SPEC         type=oci,dest=FILE[,tar=false] or type=docker,dest=FILE\n"
    "                            (dest=- writes the tar to standard output), or\n"
    "                            type=image,name=REF[,push=true]\n"
    "      --push                push every -t name to its registry once built\n"
    "      --pull[=POLICY]       base images: missing (default: pull what the store\n"
    "                            lacks), always (--pull alone), or never\n"
    "      --platform OS/ARCH[/VARIANT]  the platform to pull base images for\n"
    "      --authfile FILE       registry credentials (default $REGISTRY_AUTH_FILE,\n"
    "                            containers auth.json, ~/.docker/config.json)\n"
    "      --insecure-registry HOST[:PORT]  allow plain HTTP and unverified TLS\n"
    "      --tls-ca-cert FILE    trust this CA too for registries\n"
    "      --cache-to SPEC       export the step cache: type=registry,ref=REF or\n"
    "                            type=local,dest=DIR, with mode=min (the target's\n"
    "                            steps, default) or mode=max (every stage's)\n"
    "      --cache-from SPEC     import one: type=registry,ref=REF (or just REF) or\n"
    "                            type=local,src=DIR (repeatable)\n"
    "      --network MODE        RUN's network: default (outbound, own namespace),\n"
    "                            none or host\n"
    "      --memory SIZE         memory limit of each RUN step (e.g. 512m)\n"
    "      --pids-limit N        process limit of each RUN step\n"
    "      --cpus N              CPU limit of each RUN step (e.g. 1.5)\n"
    "      --cpu-quota US, --cpu-period US  the same as a CFS quota\n"
    "      --compression ALG     layer compression: gzip (default), zstd or none\n"
    "      --compression-level N the compressor's level\n"
    "      --root DIR            the store (default $CBUILD_ROOT, /var/lib/cbuild for root,\n"
    "                            else ~/.local/share/cbuild)\n"
    "  -h, --help                show this help\n";

static const char parse_usage[] =
    "Usage: cbuild parse [OPTIONS] [CONTEXT]\n"
    "\n"
    "Print the stages and steps of a Dockerfile as JSON, after substitution\n"
    "where Docker substitutes (stages the target does not need are shown as\n"
    "written).  A debugging aid.\n"
    "\n"
    "Options:\n"
    "  -f, --file FILE           the Dockerfile (default CONTEXT/Dockerfile; - reads stdin)\n"
    "      --build-arg K[=V]     set a build arg\n"
    "      --target STAGE        resolve for this stage\n"
    "  -h, --help                show this help\n";

enum {
  OPT_BUILD_ARG = 256,
  OPT_TARGET,
  OPT_NO_CACHE,
  OPT_NO_CACHE_FILTER,
  OPT_EXPLAIN_CACHE,
  OPT_JOBS,
  OPT_LABEL,
  OPT_SECRET,
  OPT_PROGRESS,
  OPT_ROOT,
  OPT_COMPRESSION,
  OPT_COMPRESSION_LEVEL,
  OPT_NETWORK,
  OPT_MEMORY,
  OPT_PIDS_LIMIT,
  OPT_CPUS,
  OPT_CPU_QUOTA,
  OPT_CPU_PERIOD,
  OPT_PUSH,
  OPT_PULL,
  OPT_PLATFORM,
  OPT_CACHE_TO,
  OPT_CACHE_FROM,
};

static const struct option build_options[] = {
  { "tag", required_argument, NULL, 't' },
  { "file", required_argument, NULL, 'f' },
  { "build-arg", required_argument, NULL, OPT_BUILD_ARG },
  { "target", required_argument, NULL, OPT_TARGET },
  { "no-cache", no_argument, NULL, OPT_NO_CACHE },
  { "no-cache-filter", required_argument, NULL, OPT_NO_CACHE_FILTER },
  { "explain-cache", no_argument, NULL, OPT_EXPLAIN_CACHE },
  { "jobs", required_argument, NULL, OPT_JOBS },
  { "label", required_argument, NULL, OPT_LABEL },
  { "secret", required_argument, NULL, OPT_SECRET },
  { "progress", required_argument, NULL, OPT_PROGRESS },
  { "quiet", no_argument, NULL, 'q' },
  { "output", required_argument, NULL, 'o' },
  { "root", required_argument, NULL, OPT_ROOT },
  { "compression", required_argument, NULL, OPT_COMPRESSION },
  { "compression-level", required_argument, NULL, OPT_COMPRESSION_LEVEL },
  { "network", required_argument, NULL, OPT_NETWORK },
  { "memory", required_argument, NULL, OPT_MEMORY },
  { "pids-limit", required_argument, NULL, OPT_PIDS_LIMIT },
  { "cpus", required_argument, NULL, OPT_CPUS },
  { "cpu-quota", required_argument, NULL, OPT_CPU_QUOTA },
  { "cpu-period", required_argument, NULL, OPT_CPU_PERIOD },
  { "push", no_argument, NULL, OPT_PUSH },
  { "pull", optional_argument, NULL, OPT_PULL },
  { "platform", required_argument, NULL, OPT_PLATFORM },
  BUILDER_REGISTRY_OPTIONS,
  { "cache-to", required_argument, NULL, OPT_CACHE_TO },
  { "cache-from", required_argument, NULL, OPT_CACHE_FROM },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static const struct option parse_options[] = {
  { "file", required_argument, NULL, 'f' },
  { "build-arg", required_argument, NULL, OPT_BUILD_ARG },
  { "target", required_argument, NULL, OPT_TARGET },
  { "help", no_argument, NULL, 'h' },
  { NULL, 0, NULL, 0 },
};

static int usage_error(const char *cmd, const char *fmt, ...) CB_PRINTF(2, 3);
static int usage_error(const char *cmd, const char *fmt, ...)
{
  va_list ap;
  fputs("cbuild: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (see 'cbuild %s --help')\n", cmd);
  return BUILDER_EXIT_USAGE;
}


void builder_options_release(struct builder_options *o)
{
  free(o->context);
  free(o->file);
  strvec_clear(&o->tags);
  parser_build_args_release(&o->args);
  free((char *)o->args.target);
  strvec_clear(&o->labels);
  for (size_t i = 0; i < o->n_secrets; i++)
    builder_secret_release(&o->secrets[i]);
  free(o->secrets);
  strvec_clear(&o->no_cache_filter);
  for (size_t i = 0; i < o->n_outputs; i++) {
    free(o->outputs[i].type);
    free(o->outputs[i].dest);
  }
  free(o->outputs);
  free(o->root);
  free(o->progress);
  builder_registry_release(&o->registry);
  strvec_clear(&o->push_names);
  for (size_t i = 0; i < o->n_cache_to; i++)
    builder_cache_spec_release(&o->cache_to[i]);
  free(o->cache_to);
  for (size_t i = 0; i < o->n_cache_from; i++)
    builder_cache_spec_release(&o->cache_from[i]);
  free(o->cache_from);
  memset(o, 0, sizeof(*o));
}

static int tag_check(const char *tag, struct cb_error *err);

/* -o type=oci,dest=FILE[,tar=false], or type=image,name=REF[,push=BOOL] */
static int output_parse(const char *spec, struct builder_output *out, struct cb_error *err)
{
  cleanup_free char *copy = xstrdup(spec);
  char *save = NULL;
  memset(out, 0, sizeof(*out));
  out->tar = true;
  if (strncmp(spec, "type=image,", 11) == 0) {
    out->type = xstrdup("image");
    for (char *f = strtok_r(copy + 11, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
      if (strncmp(f, "name=", 5) == 0 && !out->dest) {
        out->dest = xstrdup(f + 5);
        if (tag_check(out->dest, err) < 0)
          return -1;
      } else if (strcmp(f, "push=true") == 0 || strcmp(f, "push=false") == 0)
        out->push = strcmp(f, "push=true") == 0;
      else
        return cb_error_set(err, "invalid output \"%s\": unknown key or value \"%s\" (name=REF, push=true)",
                            spec, f);
    }
    if (!out->dest)
      return cb_error_set(err, "invalid output \"%s\": type=image needs name=REF", spec);
    return 0;
  }
  for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(f, '=');
    if (!eq)
      return cb_error_set(err, "invalid output \"%s\": \"%s\" is not KEY=VALUE", spec, f);
    *eq = '\0';
    if (strcmp(f, "type") == 0) {
      free(out->type);
      out->type = xstrdup(eq + 1);
    } else if (strcmp(f, "dest") == 0) {
      free(out->dest);
      out->dest = xstrdup(eq + 1);
    } else if (strcmp(f, "tar") == 0 && (strcmp(eq + 1, "true") == 0 || strcmp(eq + 1, "false") == 0)) {
      out->tar = strcmp(eq + 1, "true") == 0;
    } else {
      return cb_error_set(err, "invalid output \"%s\": unknown key or value \"%s=%s\"", spec, f,
                          eq + 1);
    }
  }
  if (!out->type)
    return cb_error_set(err, "invalid output \"%s\": missing type= (oci or docker)", spec);
  if (strcmp(out->type, "oci") != 0 && strcmp(out->type, "docker") != 0)
    return cb_error_set(err, "invalid output \"%s\": unsupported type \"%s\" (oci, docker or image)",
                        spec, out->type);
  if (!out->dest || !*out->dest)
    return cb_error_set(err, "invalid output \"%s\": missing dest=", spec);
  if (!out->tar && (strcmp(out->type, "oci") != 0 || strcmp(out->dest, "-") == 0))
    return cb_error_set(err, "invalid output \"%s\": tar=false needs type=oci and a directory",
                        spec);
  return 0;
}

static int parse_count(const char *s, long long *out)
{
  char *end;
  long long v;
  errno = 0;
  v = strtoll(s, &end, 10);
  if (*end || end == s || errno)
    return -1;
  *out = v;
  return 0;
}

static int tag_check(const char *tag, struct cb_error *err)
{
  struct oci_reference ref;
  if (oci_reference_parse(tag, &ref, err) < 0)
    return cb_error_wrap(err, "invalid tag");
  if (ref.digest) {
    oci_reference_release(&ref);
    return cb_error_set(err, "invalid tag \"%s\": a tag cannot hold a digest", tag);
  }
  oci_reference_release(&ref);
  return 0;
}

/*
 * Parse the options of `cmd` into o.  Returns -1 on success (go on), or the
 * exit status to return now (help, or a usage error).
 */
static int options_parse(const char *cmd, const struct option *longopts, const char *shortopts,
                         const char *usage, int argc, char **argv, struct builder_options *o)
{
  struct cb_error err;
  int c;
  optind = 0; /* GNU: reinitialise, permuting options and operands */
  opterr = 0;
  while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
    switch (c) {
    case 't':
      if (tag_check(optarg, &err) < 0)
        return usage_error(cmd, "%s", err.msg);
      strvec_push(&o->tags, optarg);
      break;
    case 'f':
      free(o->file);
      o->file = xstrdup(optarg);
      break;
    case OPT_BUILD_ARG:
      if (builder_build_arg_add(&o->args, optarg, &err) < 0)
        return usage_error(cmd, "%s", err.msg);
      break;
    case OPT_TARGET:
      free((char *)o->args.target);
      o->args.target = xstrdup(optarg);
      break;
    case OPT_NO_CACHE:
      o->no_cache = true;
      break;
    case OPT_NO_CACHE_FILTER:
      strvec_push(&o->no_cache_filter, optarg);
      break;
    case OPT_EXPLAIN_CACHE:
      o->explain_cache = true;
      break;
    case OPT_JOBS: {
      long long v;
      if (parse_count(optarg, &v) < 0 || v < 1 || v > 1024)
        return usage_error(cmd, "--jobs wants a number of stages from 1 to 1024");
      o->jobs = (int)v;
      break;
    }
    case OPT_SECRET:
      o->secrets = xreallocarray(o->secrets, o->n_secrets + 1, sizeof(*o->secrets));
      if (builder_secret_parse(optarg, &o->secrets[o->n_secrets], &err) < 0)
        return usage_error(cmd, "%s", err.msg);
      o->n_secrets++;
      break;
    case OPT_LABEL:
      if (!strchr(optarg, '=') || optarg[0] == '=')
        return usage_error(cmd, "invalid label \"%s\": want KEY=VALUE", optarg);
      strvec_push(&o->labels, optarg);
      break;
    case OPT_PROGRESS: {
      enum progress_mode mode;
      if (progress_mode_parse(optarg, &mode) < 0)
        return usage_error(cmd, "invalid --progress \"%s\": want auto, plain, tty or quiet",
                           optarg);
      free(o->progress);
      o->progress = xstrdup(optarg);
      break;
    }
    case 'q':
      free(o->progress);
      o->progress = xstrdup("quiet");
      break;
    case 'o': {
      struct builder_output *out;
      o->outputs = xreallocarray(o->outputs, o->n_outputs + 1, sizeof(*o->outputs));
      out = &o->outputs[o->n_outputs];
      if (output_parse(optarg, out, &err) < 0) {
        free(out->type);
        free(out->dest);
        return usage_error(cmd, "%s", err.msg);
      }
      if (strcmp(out->type, "image") == 0) {
        /* an image output is a name in the store, pushed when asked */
        strvec_push(&o->tags, out->dest);
        if (out->push)
          strvec_push(&o->push_names, out->dest);
        free(out->type);
        free(out->dest);
      } else
        o->n_outputs++;
      break;
    }
    case OPT_PUSH:
      o->push = true;
      break;
    case OPT_PULL:
      if (builder_pull_policy_parse(optarg ? optarg : "always", &o->registry.pull) < 0)
        return usage_error(cmd, "invalid --pull \"%s\": want always, missing or never", optarg);
      break;
    case OPT_PLATFORM: {
      const char *s1 = strchr(optarg, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
      if (!s1 || s1 == optarg || s1[1] == '/' || !s1[1] || (s2 && (!s2[1] || strchr(s2 + 1, '/'))))
        return usage_error(cmd, "invalid --platform \"%s\": want os/arch[/variant]", optarg);
      free(o->registry.platform);
      o->registry.platform = xstrdup(optarg);
      o->args.target_platform = o->registry.platform;
      break;
    }
    case OPT_CACHE_TO:
    case OPT_CACHE_FROM: {
      bool to = c == OPT_CACHE_TO;
      struct builder_cache_spec **v = to ? &o->cache_to : &o->cache_from;
      size_t *n = to ? &o->n_cache_to : &o->n_cache_from;
      *v = xreallocarray(*v, *n + 1, sizeof(**v));
      if (builder_cache_spec_parse(optarg, to, &(*v)[*n], &err) < 0)
        return usage_error(cmd, "%s", err.msg);
      (*n)++;
      break;
    }
    case OPT_ROOT:
      free(o->root);
      o->root = xstrdup(optarg);
      break;
    case OPT_COMPRESSION:
      if (oci_compression_parse(optarg, &o->layer.compression) < 0)
        return usage_error(cmd, "invalid --compression \"%s\": want gzip, zstd or none", optarg);
      break;
    case OPT_NETWORK:
      if (strcmp(optarg, "default") == 0)
        o->network = PARSER_NET_DEFAULT;
      else if (strcmp(optarg, "none") == 0)
        o->network = PARSER_NET_NONE;
      else if (strcmp(optarg, "host") == 0)
        o->network = PARSER_NET_HOST;
      else
        return usage_error(cmd, "invalid --network \"%s\": want default, none or host", optarg);
      break;
    case OPT_MEMORY:
      if (cb_parse_size(optarg, &o->limits.memory_bytes) < 0 || o->limits.memory_bytes < (1 << 20))
        return usage_error(cmd, "invalid --memory \"%s\": want a size of at least 1m, such as 512m", optarg);
      break;
    case OPT_PIDS_LIMIT:
      if (parse_count(optarg, &o->limits.pids) < 0 || o->limits.pids < 1)
        return usage_error(cmd, "invalid --pids-limit \"%s\": want a positive number", optarg);
      break;
    case OPT_CPUS: {
      char *end;
      double v = strtod(optarg, &end);
      if (*end || end == optarg || v <= 0 || v > 1024)
        return usage_error(cmd, "invalid --cpus \"%s\": want a number such as 1.5", optarg);
      o->limits.cpu_period_us = 100000;
      o->limits.cpu_quota_us = (long long)(v * 100000);
      break;
    }
    case OPT_CPU_QUOTA:
    case OPT_CPU_PERIOD: {
      long long v;
      if (parse_count(optarg, &v) < 0 || v < 1000)
        return usage_error(cmd, "invalid %s \"%s\": want microseconds, at least 1000",
                           c == OPT_CPU_QUOTA ? "--cpu-quota" : "--cpu-period", optarg);
      if (c == OPT_CPU_QUOTA)
        o->limits.cpu_quota_us = v;
      else
        o->limits.cpu_period_us = v;
      break;
    }
    case OPT_COMPRESSION_LEVEL: {
      char *end;
      long v = strtol(optarg, &end, 10);
      if (*end || end == optarg || v < 0 || v > 22)
        return usage_error(cmd, "invalid --compression-level \"%s\": want 0 to 22", optarg);
      o->layer.level = (int)v;
      break;
    }
    case 'h':
      fputs(usage, stdout);
      return BUILDER_EXIT_OK;
    case ':':
      return usage_error(cmd, "flag \"%s\" needs a value", argv[optind - 1]);
    default:
      if (builder_registry_option(&o->registry, c, optarg))
        break;
      if (optopt)
        return usage_error(cmd, "unknown flag \"-%c\"", optopt);
      return usage_error(cmd, "unknown flag \"%s\"", argv[optind - 1]);
    }
  }
  if (argc - optind > 1)
    return usage_error(cmd, "\"%s\" takes one context, got %d", cmd, argc - optind);
  if (o->push) {
    if (!o->tags.n)
      return usage_error(cmd, "--push needs a name to push: -t NAME");
    for (size_t i = 0; i < o->tags.n; i++)
      if (strvec_find(&o->push_names, o->tags.v[i]) < 0)
        strvec_push(&o->push_names, o->tags.v[i]);
  }
  if (argc - optind == 1)
    o->context = xstrdup(argv[optind]);
  return -1;
}

static void print_warnings(const struct builder_plan *plan)
{
  const struct parser_dockerfile *df = plan->df;
  for (size_t i = 0; i < df->warnings.n; i++)
    fprintf(stderr, "cbuild: warning: %s\n", df->warnings.v[i]);
  if (plan->unused_args.n) {
    fputs("cbuild: warning: build args not consumed by any stage:", stderr);
    for (size_t i = 0; i < plan->unused_args.n; i++)
      fprintf(stderr, " %s", plan->unused_args.v[i]);
    fputc('\n', stderr);
  }
}

/* The store, for reading only: NULL when it does not exist yet. */
static struct cache_store *store_if_present(const char *root_flag)
{
  struct cb_error err;
  struct stat st;
  cleanup_free char *root = cache_root(root_flag, &err);
  if (!root || stat(root, &st) < 0 || !S_ISDIR(st.st_mode))
    return NULL;
  return cache_store_open(root, &err);
}

int builder_cmd_parse(int argc, char **argv, const char *root)
{
  struct builder_options o = { 0 };
  struct builder_plan plan;
  struct cb_error err;
  struct cache_store *store = NULL;
  char *json;
  int rc = options_parse("parse", parse_options, ":f:h", parse_usage, argc, argv, &o);
  if (rc >= 0)
    goto out;
  o.plan_only = true;
  store = store_if_present(root);
  if (builder_plan_load(&o, store, &plan, &err) < 0) {
    builder_plan_release(&plan);
    rc = builder_cmd_fail(&err);
    goto out;
  }
  print_warnings(&plan);
  json = builder_plan_json(&plan);
  puts(json);
  free(json);
  builder_plan_release(&plan);
  rc = BUILDER_EXIT_OK;
out:
  if (store)
    cache_store_close(store);
  builder_options_release(&o);
  return rc;
}

int builder_cmd_build(int argc, char **argv, const char *root)
{
  struct builder_options o = { 0 };
  struct builder_plan plan;
  struct cb_error err;
  struct stat stt;
  struct cache_store *store = NULL;
  struct progress *p = NULL;
  enum progress_mode mode = PROGRESS_AUTO;
  char image_id[OCI_DIGEST_SIZE];
  int gc_lock = -1;
  int rc = options_parse("build", build_options, ":t:f:qo:h", build_usage, argc, argv, &o);
  memset(&plan, 0, sizeof(plan));
  if (rc >= 0)
    goto out;
  rc = BUILDER_EXIT_FAIL;
  if (!o.context) {
    rc = usage_error("build", "a build context is required, such as \".\"");
    goto out;
  }
  if (!o.root && root)
    o.root = xstrdup(root);
  {
    char *r = cache_root(o.root, &err);
    if (!r) {
      builder_cmd_fail(&err);
      goto out;
    }
    free(o.root);
    o.root = r;
  }
  if (stat(o.context, &stt) < 0 || !S_ISDIR(stt.st_mode)) {
    cb_error_errno(&err, stat(o.context, &stt) < 0 ? errno : ENOTDIR,
                   "build context \"%s\"", o.context);
    builder_cmd_fail(&err);
    goto out;
  }
  /* Rootless, the build happens as root of a user namespace (the store's
   * location was chosen above, from the real user). */
  if (runner_enter_userns(&err) < 0) {
    builder_cmd_fail(&err);
    goto out;
  }
  store = cache_store_open(o.root, &err);
  if (!store) {
    builder_cmd_fail(&err);
    goto out;
  }
  builder_step_dirs_tidy(store);
  /* held until the build ends: prune waits for it */
  gc_lock = cache_build_lock(store, false, true, &err);
  if (gc_lock < 0) {
    builder_cmd_fail(&err);
    goto out;
  }
  if (builder_plan_load(&o, store, &plan, &err) < 0) {
    builder_cmd_fail(&err);
    goto out;
  }
  print_warnings(&plan);
  if (o.progress)
    progress_mode_parse(o.progress, &mode);
  p = progress_new(mode, STDERR_FILENO);
  if (builder_build(&o, &plan, store, p, image_id, &err) < 0) {
    progress_finish(p);
    builder_cmd_fail(&err);
    goto out;
  }
  progress_finish(p);
  /* docker build -q prints the image ID, unless stdout holds an archive */
  if (mode == PROGRESS_QUIET) {
    bool to_stdout = false;
    for (size_t i = 0; i < o.n_outputs; i++)
      to_stdout |= strcmp(o.outputs[i].dest, "-") == 0;
    if (!to_stdout)
      printf("%s\n", image_id);
  }
  rc = BUILDER_EXIT_OK;
out:
  progress_free(p);
  builder_plan_release(&plan);
  if (gc_lock >= 0)
    close(gc_lock);
  if (store)
    cache_store_close(store);
  builder_options_release(&o);
  return rc;
}
