/*
 * RUN: the stage's layers as overlay snapshots, the command in the
 * runner's sandbox with the step's environment and its --mount mounts,
 * its output streamed to the progress display, and the upperdir turned
 * into the next layer (none when the step changed nothing).
 *
 * RUN --mount, as BuildKit does it:
 *   bind    a path of the context (opened beneath it, never through a
 *           symlink), or of a stage or an image (an overlay of its
 *           snapshots); read-only, or writable with the writes thrown away
 *   cache   a directory of the store kept between builds, --no-cache or
 *           not: ROOT/mounts/cache/<id>/data, with a lock file beside it
 *           (flock: shared, or exclusive for sharing=locked; private takes
 *           a free ROOT/mounts/cache/<id>/private-N when the first is in
 *           use).  With from=, the cache is a persistent upperdir over that
 *           stage's or image's files, keyed by them too.
 *   tmpfs   a new tmpfs
 *   secret  a --secret's content in a file on a tmpfs of its own, or in
 *           a variable of the command's environment; never on a disk of
 *           the store, in a layer, the config or the history
 * None of them reaches the layer: writes go to the mounted directory, not
 * the upperdir, and the targets the sandbox made are left out (stubs).
 */
#include "builder-internal.h"

#include "../runner/runner.h"
#include "progress-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* BuildKit's limit on a secret's size. */
#define SECRET_MAX_SIZE (500 * 1024)

struct run_output {
  struct progress *p;
  int id;
};

static void run_output(void *data, const char *buf, size_t n)
{
  struct run_output *o = data;
  progress_step_output(o->p, o->id, buf, n);
}

/* Does dir exist as a directory in the layers below?  For opaque dirs. */
static bool exists_below(void *data, const char *dir)
{
  struct fsview *view = data;
  const struct fsview_node *node;
  struct cb_error err;
  return fsview_lookup(view, dir, &node, &err) == 0 && node && S_ISDIR(node->mode);
}

/* Is word a heredoc marker ("<<EOF", "<<-EOF", "3<<'X'")? */
static bool is_heredoc_word(const char *w)
{
  while (*w >= '0' && *w <= '9')
    w++;
  return strncmp(w, "<<", 2) == 0;
}

/*
 * The command to run.  Exec form runs as is; shell form under SHELL.  A
 * RUN that is a single heredoc runs its body (a script with a "#!" line is
 * run by that interpreter from a file mounted in); heredocs inside a longer
 * command are handed to the shell, which reads them itself, as BuildKit
 * does.
 */
static int run_argv(const struct stage_state *st, const struct parser_step *step,
                    struct strvec *argv, char **script_file, const char *tmpdir,
                    struct cb_error *err)
{
  const struct strvec *shell = &st->config.shell;
  if (step->json) {
    strvec_copy(argv, &step->args);
    return 0;
  }
  if (shell->n)
    strvec_copy(argv, shell);
  else {
    strvec_push(argv, "/bin/sh");
    strvec_push(argv, "-c");
  }
  if (step->n_heredocs == 0) {
    strvec_push(argv, step->args.v[0]);
    return 0;
  }
  if (step->n_heredocs == 1 && is_heredoc_word(step->args.v[0]) &&
      !strpbrk(step->args.v[0], " \t")) {
    const char *body = step->heredocs[0].content;
    if (cb_starts_with(body, "#!")) {
      /* "#!/usr/bin/env python3" -> /usr/bin/env python3 /dev/cbuild-script */
      cleanup_free char *line = xstrndup(body + 2, strcspn(body + 2, "\n"));
      char *save = NULL;
      int fd;
      strvec_clear(argv);
      for (char *w = strtok_r(line, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        strvec_push(argv, w);
      if (argv->n == 0)
        return cb_error_set(err, "RUN heredoc: an empty \"#!\" line");
      *script_file = xasprintf("%s/script", tmpdir);
      fd = open(*script_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
      if (fd < 0 || cb_write_all(fd, body, strlen(body)) < 0) {
        int e = errno;
        if (fd >= 0)
          close(fd);
        return cb_error_errno(err, e, "write the RUN heredoc script");
      }
      close(fd);
      strvec_push(argv, "/dev/cbuild-script");
      return 0;
    }
    strvec_push(argv, body);
    return 0;
  }
  {
    struct strbuf script = STRBUF_INIT;
    strbuf_addstr(&script, step->args.v[0]);
    strbuf_addch(&script, '\n');
    for (size_t h = 0; h < step->n_heredocs; h++) {
      strbuf_addstr(&script, step->heredocs[h].content);
      strbuf_addf(&script, "%s\n", step->heredocs[h].name);
    }
    strvec_push_nodup(argv, strbuf_detach(&script, NULL));
  }
  return 0;
}

static enum runner_network run_network(const struct build_run *run, const struct parser_step *step)
{
  enum parser_network n = step->network_set ? step->network : run->o->network;
  return n == PARSER_NET_NONE ? RUNNER_NET_NONE
         : n == PARSER_NET_HOST ? RUNNER_NET_HOST
                                : RUNNER_NET_DEFAULT;
}

static const char *short_command(const struct parser_step *step)
{
  return step->text + strlen("RUN") + (step->text[3] == ' ' ? 1 : 0);
}

/* ---- --secret ---- */

void builder_secret_release(struct builder_secret *s)
{
  free(s->id);
  free(s->file);
  free(s->env);
  memset(s, 0, sizeof(*s));
}

static int secret_fields(const char *spec, struct builder_secret *s, char **type, char **src,
                         char **env, struct cb_error *err)
{
  cleanup_free char *copy = xstrdup(spec);
  char *save = NULL;
  for (char *f = strtok_r(copy, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(f, '=');
    char **slot;
    if (!eq)
      return cb_error_set(err, "invalid --secret \"%s\": \"%s\" is not KEY=VALUE", spec, f);
    *eq = '\0';
    for (char *c = f; *c; c++)
      *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
    if (strcmp(f, "type") == 0)
      slot = type;
    else if (strcmp(f, "id") == 0)
      slot = &s->id;
    else if (strcmp(f, "src") == 0 || strcmp(f, "source") == 0)
      slot = src;
    else if (strcmp(f, "env") == 0)
      slot = env;
    else
      return cb_error_set(err, "invalid --secret \"%s\": unknown key \"%s\" (id, src, env, type)",
                          spec, f);
    free(*slot);
    *slot = xstrdup(eq + 1);
  }
  return 0;
}

/* docker build's rules: type=env reads a variable (env=, else src=, else
 * the id), type=file a file (src=, else the id); without a type, src= is a
 * file and env= a variable, and with neither the id names a variable when
 * one is set, else a file. */
int builder_secret_parse(const char *spec, struct builder_secret *s, struct cb_error *err)
{
  cleanup_free char *type = NULL;
  cleanup_free char *src = NULL;
  cleanup_free char *env = NULL;
  struct stat st;
  memset(s, 0, sizeof(*s));
  if (secret_fields(spec, s, &type, &src, &env, err) < 0)
    goto fail;
  if (!s->id || !*s->id) {
    cb_error_set(err, "invalid --secret \"%s\": missing id=", spec);
    goto fail;
  }
  if (type && strcmp(type, "env") != 0 && strcmp(type, "file") != 0) {
    cb_error_set(err, "invalid --secret \"%s\": unsupported type \"%s\" (file or env)", spec,
                 type);
    goto fail;
  }
  if (type && strcmp(type, "env") == 0) {
    s->env = xstrdup(env ? env : src ? src : s->id);
  } else if (type || src || env) {
    if (env && (src || type)) {
      cb_error_set(err, "invalid --secret \"%s\": env= names a variable, src= a file: give one",
                   spec);
      goto fail;
    }
    if (env)
      s->env = xstrdup(env);
    else
      s->file = xstrdup(src ? src : s->id);
  } else if (getenv(s->id)) {
    s->env = xstrdup(s->id);
  } else {
    s->file = xstrdup(s->id);
  }
  if (s->env && !*s->env) {
    cb_error_set(err, "invalid --secret \"%s\": empty variable name", spec);
    goto fail;
  }
  if (s->file && stat(s->file, &st) < 0) {
    cb_error_errno(err, errno, "invalid --secret \"%s\": \"%s\"", spec, s->file);
    goto fail;
  }
  if (s->file && !S_ISREG(st.st_mode)) {
    cb_error_set(err, "invalid --secret \"%s\": \"%s\" is not a regular file", spec, s->file);
    goto fail;
  }
  return 0;
fail:
  builder_secret_release(s);
  return -1;
}

/* The secret id's content: 0, or 1 when it was not given (or its variable
 * is not set, as BuildKit has it), -1 on error.  The last --secret of an
 * id wins. */
static int secret_read(const struct builder_options *o, const char *id, struct strbuf *out,
                       struct cb_error *err)
{
  const struct builder_secret *sec = NULL;
  for (size_t i = 0; i < o->n_secrets; i++)
    if (strcmp(o->secrets[i].id, id) == 0)
      sec = &o->secrets[i];
  if (!sec)
    return 1;
  if (sec->env) {
    const char *v = getenv(sec->env);
    if (!v)
      return 1;
    strbuf_addstr(out, v);
  } else {
    struct stat st;
    if (stat(sec->file, &st) == 0 && st.st_size > SECRET_MAX_SIZE)
      return cb_error_set(err, "secret \"%s\" is too big: %lld bytes, at most %d", id,
                          (long long)st.st_size, SECRET_MAX_SIZE);
    if (cb_read_file(sec->file, out, err) < 0)
      return cb_error_wrap(err, "secret \"%s\"", id);
  }
  if (out->len > SECRET_MAX_SIZE)
    return cb_error_set(err, "secret \"%s\" is too big: %zu bytes, at most %d", id, out->len,
                        SECRET_MAX_SIZE);
  return 0;
}

/* ---- the mounts of a step ---- */

/* One --mount, and what its runner_mount points at. */
struct step_mount {
  struct runner_mount rm;
  char *target;
  char *source;
  char *upperdir, *workdir;
  struct strvec lowers; /* OVERLAY: snapshots, top first */
  struct strvec hide;   /* BIND: what .dockerignore leaves out below it */
  struct strbuf data;   /* FILE: the secret, wiped at the end */
  int lockfd;           /* cache: its slot's lock, or -1 */
  char *cache;          /* cache: its name */
  char *slot;           /* cache: the directory of the slot it took */
};

struct step_mounts {
  struct step_mount *v;
  size_t n, alloc;
  struct strvec env; /* secrets given as variables: "K=V", wiped at the end */
};

static void wipe(char *s, size_t n)
{
  if (s && n)
    explicit_bzero(s, n);
}

static void step_mounts_release(struct step_mounts *sm)
{
  for (size_t i = 0; i < sm->n; i++) {
    struct step_mount *m = &sm->v[i];
    free(m->target);
    free(m->source);
    free(m->upperdir);
    free(m->workdir);
    free(m->cache);
    free(m->slot);
    strvec_clear(&m->lowers);
    strvec_clear(&m->hide);
    wipe(m->data.buf, m->data.alloc);
    strbuf_release(&m->data);
    /* closing it releases the flock */
    if (m->lockfd >= 0)
      close(m->lockfd);
  }
  free(sm->v);
  for (size_t i = 0; i < sm->env.n; i++)
    wipe(sm->env.v[i], strlen(sm->env.v[i]));
  strvec_clear(&sm->env);
  memset(sm, 0, sizeof(*sm));
}

static struct step_mount *step_mount_add(struct step_mounts *sm)
{
  struct step_mount *m;
  CB_GROW(sm->v, sm->n + 1, sm->alloc);
  m = &sm->v[sm->n++];
  memset(m, 0, sizeof(*m));
  m->lockfd = -1;
  strbuf_init(&m->data, 0);
  return m;
}

/* "RUN --mount=SPEC: what": the caller adds the file and line. */
static int mount_error(struct cb_error *err, const struct parser_step *step, size_t index,
                       const char *fmt, ...) CB_PRINTF(4, 5);
static int mount_error(struct cb_error *err, const struct parser_step *step, size_t index,
                       const char *fmt, ...)
{
  char what[sizeof(err->msg)];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  return cb_error_set(err, "RUN --mount=%s: %s", step->mount_specs.v[index], what);
}

/* The snapshots of layers (bottom first), as overlay lowers, top first. */
static int snapshots(struct build_run *run, const struct oci_descriptor *layers, size_t n,
                     const struct strvec *diff_ids, struct strvec *out, struct cb_error *err)
{
  bool rootless = runner_rootless();
  for (size_t i = n; i-- > 0;) {
    char *path = NULL;
    const char *diff_id = i < diff_ids->n ? diff_ids->v[i] : NULL;
    if (!diff_id)
      return cb_error_set(err, "layer %zu of the image has no diff_id", i);
    if (cache_snapshot_get(run->store, &layers[i], diff_id, rootless, &path, err) < 0)
      return -1;
    strvec_push_nodup(out, path);
  }
  return 0;
}

/* The snapshots of a mount's from=: an earlier stage, or an image of the
 * store; chain gets its diff_ids, which identify its content. */
static int from_snapshots(struct build_run *run, const struct parser_step *step, size_t index,
                          struct strvec *lowers, struct strbuf *chain, struct cb_error *err)
{
  const struct parser_mount *pm = &step->mounts[index];
  struct oci_descriptor desc;
  struct oci_manifest man;
  struct oci_config config;
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  int r;

  if (pm->from_stage >= 0) {
    /* built before this stage starts: build.c orders them so */
    const struct stage_state *from = &run->stages[pm->from_stage];
    for (size_t i = 0; i < from->config.diff_ids.n; i++)
      strbuf_addf(chain, "%s\n", from->config.diff_ids.v[i]);
    if (snapshots(run, from->layers, from->n_layers, &from->config.diff_ids, lowers, err) < 0)
      return cb_error_wrap(err, "RUN --mount=%s: stage \"%s\"", step->mount_specs.v[index],
                           pm->from);
    return 0;
  }
  r = builder_image_resolve(run->store, NULL, pm->from, NULL, &desc, err);
  if (r < 0)
    return cb_error_wrap(err, "RUN --mount=%s", step->mount_specs.v[index]);
  if (r > 0)
    return mount_error(err, step, index, "from=%s names no stage, and no image of the local "
                                         "store", pm->from);
  memset(&man, 0, sizeof(man));
  memset(&config, 0, sizeof(config));
  r = cache_blob_read(run->store, desc.digest, &text, err);
  oci_descriptor_release(&desc);
  if (r == 0)
    r = oci_manifest_parse(text.buf, text.len, &man, err);
  if (r == 0) {
    strbuf_reset(&text);
    r = cache_blob_read(run->store, man.config.digest, &text, err);
  }
  if (r == 0)
    r = oci_config_parse(text.buf, text.len, &config, err);
  if (r == 0) {
    for (size_t i = 0; i < config.diff_ids.n; i++)
      strbuf_addf(chain, "%s\n", config.diff_ids.v[i]);
    r = snapshots(run, man.layers, man.n_layers, &config.diff_ids, lowers, err);
  }
  oci_manifest_release(&man);
  oci_config_release(&config);
  if (r < 0)
    return cb_error_wrap(err, "RUN --mount=%s: image \"%s\"", step->mount_specs.v[index],
                         pm->from);
  return 0;
}

/* An absolute, clean target: relative ones are below WORKDIR, as in
 * BuildKit. */
static char *mount_target(const struct stage_state *st, const char *target)
{
  char *p = builder_dest_path(st->config.working_dir, target);
  size_t n = strlen(p);
  if (n > 1 && p[n - 1] == '/')
    p[n - 1] = '\0';
  return p;
}

/* An empty directory in the step's temporary directory, for the
 * throwaway writes of mount N. */
static int scratch_dirs(const char *tmp, size_t n, struct step_mount *m, struct cb_error *err)
{
  cleanup_free char *dir = xasprintf("%s/mount-%zu", tmp, n);
  m->upperdir = xasprintf("%s/upper", dir);
  m->workdir = xasprintf("%s/work", dir);
  if (mkdir(dir, 0700) < 0 || mkdir(m->upperdir, 0755) < 0 || mkdir(m->workdir, 0700) < 0)
    return cb_error_errno(err, errno, "create \"%s\"", dir);
  m->rm.upperdir = m->upperdir;
  m->rm.workdir = m->workdir;
  return 0;
}

/*
 * What .dockerignore leaves out below the context directory rel (open at
 * fd): paths relative to top, which the bind hides.  An excluded directory
 * that an exception may reach into is walked instead, as COPY does.
 */
static int ignored_below(const struct build_context *ctx, int fd, const char *rel,
                         const char *top, struct strvec *hide, struct cb_error *err)
{
  struct dirent *de;
  DIR *d;
  int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  int rc = 0;
  if (dfd < 0 || !(d = fdopendir(dfd))) {
    int e = errno;
    if (dfd >= 0)
      close(dfd);
    return cb_error_errno(err, e, "read \"%s\" in the build context", rel);
  }
  while (rc == 0 && (de = readdir(d)) != NULL) {
    cleanup_free char *crel = NULL;
    bool dir;
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    crel = strcmp(rel, ".") == 0 ? xstrdup(de->d_name) : xasprintf("%s/%s", rel, de->d_name);
    dir = de->d_type == DT_DIR;
    if (de->d_type == DT_UNKNOWN) {
      struct stat st;
      dir = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    if (context_excluded(ctx, crel) &&
        !(dir && parser_ignore_dir_needs_walk(ctx->ignore, crel))) {
      /* relative to the bind's source */
      strvec_push(hide, strcmp(top, ".") == 0 ? crel : crel + strlen(top) + 1);
      continue;
    }
    if (dir) {
      int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        rc = cb_error_errno(err, errno, "open \"%s\" in the build context", crel);
        break;
      }
      rc = ignored_below(ctx, sub, crel, top, hide, err);
      close(sub);
    }
  }
  closedir(d);
  return rc;
}

static int bind_mount(struct build_run *run, const struct parser_step *step, size_t index,
                      struct step_mount *m, const char *tmp, struct cb_error *err)
{
  const struct parser_mount *pm = &step->mounts[index];
  cleanup_free char *src = builder_path_clean(pm->source ? pm->source : ".");
  cleanup_close int fd = -1;
  struct stat st;

  if (!pm->readonly && scratch_dirs(tmp, index, m, err) < 0)
    return -1;
  if (pm->from) {
    cleanup_strbuf struct strbuf chain = STRBUF_INIT;
    if (from_snapshots(run, step, index, &m->lowers, &chain, err) < 0)
      return -1;
    m->rm.type = RUNNER_MOUNT_OVERLAY;
    m->rm.lowerdirs = (const char *const *)m->lowers.v;
    m->rm.n_lowerdirs = m->lowers.n;
    m->source = xstrdup(src);
    m->rm.source = m->source;
    return 0;
  }
  /* The context is hostile input: the source is opened beneath it, and
   * neither a symlink nor what .dockerignore leaves out is followed. */
  fd = cb_open_beneath(run->ctx.dirfd, src, O_PATH);
  if (fd >= 0 && fstat(fd, &st) < 0)
    return cb_error_errno(err, errno, "RUN --mount=%s: stat \"%s\" in the build context",
                          step->mount_specs.v[index], src);
  if (fd < 0 || S_ISLNK(st.st_mode)) {
    if (fd >= 0 || errno == ELOOP)
      return mount_error(err, step, index, "source \"%s\" is or goes through a symlink, "
                                           "which a bind from the context does not follow", src);
    return cb_error_errno(err, errno, "RUN --mount=%s: source \"%s\" in the build context",
                          step->mount_specs.v[index], src);
  }
  if (strcmp(src, ".") != 0 && run->ctx.ignore && context_excluded(&run->ctx, src) &&
      !(S_ISDIR(st.st_mode) && parser_ignore_dir_needs_walk(run->ctx.ignore, src)))
    return mount_error(err, step, index, "source \"%s\" is excluded by .dockerignore", src);
  if (run->ctx.ignore && S_ISDIR(st.st_mode)) {
    cleanup_close int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
      return cb_error_errno(err, errno, "RUN --mount=%s: open \"%s\" in the build context",
                            step->mount_specs.v[index], src);
    if (ignored_below(&run->ctx, dfd, src, src, &m->hide, err) < 0)
      return cb_error_wrap(err, "RUN --mount=%s", step->mount_specs.v[index]);
    m->rm.hide = (const char *const *)m->hide.v;
    m->rm.n_hide = m->hide.n;
  }
  /* That was for a clear error now; the sandbox opens it again, the same
   * way, in its own mount namespace. */
  m->source = steal_pointer(&src);
  m->rm.type = RUNNER_MOUNT_BIND;
  m->rm.source = m->source;
  m->rm.source_root = run->ctx.dir;
  return 0;
}

/* "%2F" for what cannot be in a file name, so that every id has its own
 * directory; a long one is hashed. */
static char *cache_name(const char *id)
{
  struct strbuf sb = STRBUF_INIT;
  for (const char *p = id; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '_' || (c == '.' && p != id))
      strbuf_addch(&sb, c);
    else
      strbuf_addf(&sb, "%%%02X", c);
  }
  if (sb.len > 200) {
    char digest[OCI_DIGEST_SIZE];
    oci_digest_buf(id, strlen(id), digest);
    strbuf_reset(&sb);
    strbuf_addf(&sb, "sha256-%s", digest + strlen("sha256:"));
  }
  return strbuf_detach(&sb, NULL);
}

static int mkdir_exist_ok(const char *path, mode_t mode, struct cb_error *err)
{
  if (mkdir(path, mode) < 0 && errno != EEXIST)
    return cb_error_errno(err, errno, "create \"%s\"", path);
  return 0;
}

/*
 * Lock a slot of cache `name`: ROOT/mounts/cache/NAME, or for a private
 * mount whose first slot is in use, the first free NAME/private-N.  The
 * lock is held until the step ends.  ROOT/mounts is private to root: a
 * step can leave setuid files there.
 */
static int cache_slot(struct build_run *run, const char *name, enum parser_mount_sharing sharing,
                      char **slot, int *lockfd, struct cb_error *err)
{
  const char *root = cache_store_root(run->store);
  cleanup_free char *mounts = xasprintf("%s/mounts", root);
  cleanup_free char *caches = xasprintf("%s/mounts/cache", root);
  cleanup_free char *base = xasprintf("%s/%s", caches, name);
  if (mkdir_exist_ok(mounts, 0700, err) < 0 || mkdir_exist_ok(caches, 0700, err) < 0 ||
      mkdir_exist_ok(base, 0700, err) < 0)
    return -1;
  for (unsigned k = 0; k < 1000; k++) {
    cleanup_free char *dir = k ? xasprintf("%s/private-%u", base, k) : xstrdup(base);
    cleanup_free char *lock = xasprintf("%s/lock", dir);
    int op = sharing == PARSER_SHARING_LOCKED    ? LOCK_EX
             : sharing == PARSER_SHARING_PRIVATE ? LOCK_EX | LOCK_NB
                                                 : LOCK_SH;
    int fd, rc;
    if (k && mkdir_exist_ok(dir, 0700, err) < 0)
      return -1;
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
      return cb_error_errno(err, errno, "open \"%s\"", lock);
    while ((rc = flock(fd, op)) < 0 && errno == EINTR)
      ;
    if (rc < 0 && errno == EWOULDBLOCK) {
      close(fd);
      continue;
    }
    if (rc < 0) {
      int e = errno;
      close(fd);
      return cb_error_errno(err, e, "lock \"%s\"", lock);
    }
    *slot = steal_pointer(&dir);
    *lockfd = fd;
    return 0;
  }
  return cb_error_set(err, "no free private slot for cache \"%s\"", name);
}

/* slot/sub, made with its owner and mode the first time: made aside and
 * renamed into place, so that no one sees it half set up. */
static int cache_dir(const char *slot, const char *sub, uid_t uid, gid_t gid, mode_t mode,
                     char **out, struct cb_error *err)
{
  cleanup_free char *path = xasprintf("%s/%s", slot, sub);
  cleanup_free char *tmp = xasprintf("%s/.new-XXXXXX", slot);
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
    goto done;
  if (!mkdtemp(tmp))
    return cb_error_errno(err, errno, "create a directory in \"%s\"", slot);
  if (chown(tmp, uid, gid) < 0 || chmod(tmp, mode) < 0) {
    int e = errno;
    rmdir(tmp);
    return cb_error_errno(err, e, "set %lu:%lu, mode %04o on the cache directory",
                          (unsigned long)uid, (unsigned long)gid, (unsigned)mode);
  }
  if (rename(tmp, path) < 0) {
    int e = errno;
    rmdir(tmp);
    /* another build made it meanwhile */
    if (!(lstat(path, &st) == 0 && S_ISDIR(st.st_mode)))
      return cb_error_errno(err, e, "create \"%s\"", path);
  }
done:
  *out = steal_pointer(&path);
  return 0;
}

static int cache_mount(struct build_run *run, const struct parser_step *step, size_t index,
                       struct step_mounts *sm, struct step_mount *m, struct cb_error *err)
{
  const struct parser_mount *pm = &step->mounts[index];
  uid_t uid = pm->uid >= 0 ? (uid_t)pm->uid : 0;
  gid_t gid = pm->gid >= 0 ? (gid_t)pm->gid : 0;
  mode_t mode = pm->mode >= 0 ? (mode_t)pm->mode : 0755;
  enum parser_mount_sharing sharing = pm->sharing;
  cleanup_strbuf struct strbuf chain = STRBUF_INIT;
  cleanup_free char *slot = NULL;
  char *name = cache_name(pm->id ? pm->id : m->target);

  if (pm->from) {
    char digest[OCI_DIGEST_SIZE];
    char *keyed;
    if (from_snapshots(run, step, index, &m->lowers, &chain, err) < 0) {
      free(name);
      return -1;
    }
    /* the layer over them is theirs, in the whiteout format of this mode */
    strbuf_addstr(&chain, runner_rootless() ? "userxattr\n" : "trusted\n");
    oci_digest_buf(chain.buf, chain.len, digest);
    keyed = xasprintf("%s@%.16s", name, digest + strlen("sha256:"));
    free(name);
    name = keyed;
    /* two overlays must not share an upperdir */
    if (sharing == PARSER_SHARING_SHARED)
      sharing = PARSER_SHARING_LOCKED;
  }
  m->cache = name;
  /* The same cache twice in one step: one slot (a second flock of our own
   * would wait for ourselves). */
  for (size_t i = 0; i + 1 < sm->n && !slot; i++)
    if (sm->v[i].cache && strcmp(sm->v[i].cache, name) == 0)
      slot = xstrdup(sm->v[i].slot);
  if (!slot && cache_slot(run, name, sharing, &slot, &m->lockfd, err) < 0)
    return cb_error_wrap(err, "RUN --mount=%s", step->mount_specs.v[index]);
  m->slot = xstrdup(slot);

  if (pm->from) {
    if (cache_dir(slot, "upper", uid, gid, mode, &m->upperdir, err) < 0 ||
        cache_dir(slot, "work", 0, 0, 0700, &m->workdir, err) < 0)
      return cb_error_wrap(err, "RUN --mount=%s", step->mount_specs.v[index]);
    m->rm.type = RUNNER_MOUNT_OVERLAY;
    m->rm.lowerdirs = (const char *const *)m->lowers.v;
    m->rm.n_lowerdirs = m->lowers.n;
    m->rm.upperdir = m->upperdir;
    m->rm.workdir = m->workdir;
    m->source = builder_path_clean(pm->source ? pm->source : ".");
    m->rm.source = m->source;
    return 0;
  }
  if (cache_dir(slot, "data", uid, gid, mode, &m->source, err) < 0)
    return cb_error_wrap(err, "RUN --mount=%s", step->mount_specs.v[index]);
  m->rm.type = RUNNER_MOUNT_BIND;
  m->rm.source = m->source;
  return 0;
}

/* A secret: a file on the target, a variable, or both; nothing when it
 * was not given and is not required. */
static int secret_mount(struct build_run *run, const struct parser_step *step, size_t index,
                        struct step_mounts *sm, struct step_mount *m, bool *skip,
                        struct cb_error *err)
{
  const struct parser_mount *pm = &step->mounts[index];
  int r = secret_read(run->o, pm->id, &m->data, err);
  if (r < 0)
    return cb_error_wrap(err, "RUN --mount=%s", step->mount_specs.v[index]);
  if (r > 0) {
    if (pm->required)
      return mount_error(err, step, index, "secret \"%s\" is required but was not given "
                                           "(cbuild build --secret id=%s,src=FILE)",
                         pm->id, pm->id);
    *skip = true;
    return 0;
  }
  if (pm->env) {
    struct strbuf kv;
    /* sized at once: no copy of the secret is left behind by a realloc */
    strbuf_init(&kv, strlen(pm->env) + m->data.len + 2);
    strbuf_addf(&kv, "%s=", pm->env);
    strbuf_add(&kv, m->data.buf, m->data.len);
    strvec_push_nodup(&sm->env, strbuf_detach(&kv, NULL));
  }
  if (!pm->target) {
    *skip = true;
    return 0;
  }
  m->rm.type = RUNNER_MOUNT_FILE;
  m->rm.data = m->data.buf;
  m->rm.data_len = m->data.len;
  m->rm.uid = pm->uid >= 0 ? (uid_t)pm->uid : 0;
  m->rm.gid = pm->gid >= 0 ? (gid_t)pm->gid : 0;
  m->rm.mode = pm->mode >= 0 ? (mode_t)pm->mode : 0400;
  m->rm.readonly = true;
  return 0;
}

static size_t path_depth(const char *p)
{
  size_t n = 0;
  for (; *p; p++)
    n += *p == '/';
  return n;
}

/* Every --mount of the step, in an order where a target comes after those
 * above it (as BuildKit sorts them). */
static int mounts_prepare(struct build_run *run, int stage, const struct parser_step *step,
                          const char *tmp, struct step_mounts *sm, struct cb_error *err)
{
  const struct stage_state *st = &run->stages[stage];
  for (size_t i = 0; i < step->n_mounts; i++) {
    const struct parser_mount *pm = &step->mounts[i];
    struct step_mount *m;
    bool skip = false;
    int rc = 0;
    if (pm->type == PARSER_MOUNT_SSH)
      return mount_error(err, step, i, "ssh mounts are not supported");
    m = step_mount_add(sm);
    if (pm->target) {
      m->target = mount_target(st, pm->target);
      if (strcmp(m->target, "/") == 0)
        return mount_error(err, step, i, "the target cannot be \"/\"");
      m->rm.target = m->target;
    }
    m->rm.readonly = pm->readonly;
    switch (pm->type) {
    case PARSER_MOUNT_BIND:
      rc = bind_mount(run, step, i, m, tmp, err);
      break;
    case PARSER_MOUNT_CACHE:
      rc = cache_mount(run, step, i, sm, m, err);
      break;
    case PARSER_MOUNT_TMPFS:
      m->rm.type = RUNNER_MOUNT_TMPFS;
      m->rm.size = pm->size;
      break;
    case PARSER_MOUNT_SECRET:
      rc = secret_mount(run, step, i, sm, m, &skip, err);
      break;
    case PARSER_MOUNT_SSH:
      break;
    }
    if (rc < 0)
      return -1;
    if (skip) {
      /* nothing to mount: drop it (it holds no lock, no fd) */
      sm->n--;
      free(m->target);
      wipe(m->data.buf, m->data.alloc);
      strbuf_release(&m->data);
    }
  }
  /* insertion sort: stable, and the list is short */
  for (size_t i = 1; i < sm->n; i++)
    for (size_t j = i; j > 0 && path_depth(sm->v[j - 1].target) > path_depth(sm->v[j].target);
         j--) {
      struct step_mount t = sm->v[j];
      sm->v[j] = sm->v[j - 1];
      sm->v[j - 1] = t;
    }
  return 0;
}

/* The command's environment: the step's, and the secrets given as
 * variables (which win). */
static void run_env_with_secrets(const struct parser_step *step, const struct step_mounts *sm,
                                 struct strvec *env)
{
  for (size_t i = 0; i < step->run_env.n; i++) {
    const char *kv = step->run_env.v[i];
    size_t klen = strcspn(kv, "=");
    bool replaced = false;
    for (size_t j = 0; j < sm->env.n && !replaced; j++)
      replaced = strncmp(sm->env.v[j], kv, klen) == 0 && sm->env.v[j][klen] == '=';
    if (!replaced)
      strvec_push(env, kv);
  }
  for (size_t j = 0; j < sm->env.n; j++)
    strvec_push(env, sm->env.v[j]);
}

#define STEP_DIR_PREFIX "run-"

/*
 * A step's directory (ROOT/tmp/run-*: upper/, work/, and what the step's
 * mounts need) is removed after the step, unless the step left it as it
 * found it: then the next RUN of the build takes it as is, which saves
 * making and removing three directories per step.
 */
static char *step_dir_take(struct build_run *run)
{
  char *dir;
  pthread_mutex_lock(&run->spare_lock);
  dir = run->spare_step_dir;
  run->spare_step_dir = NULL;
  pthread_mutex_unlock(&run->spare_lock);
  return dir;
}

/* Keep dir for the next step; false when one is kept already. */
static bool step_dir_keep(struct build_run *run, char *dir)
{
  bool kept = false;
  pthread_mutex_lock(&run->spare_lock);
  if (run->spare_step_dir == NULL) {
    run->spare_step_dir = dir;
    kept = true;
  }
  pthread_mutex_unlock(&run->spare_lock);
  return kept;
}

void builder_step_dir_cleanup(struct build_run *run)
{
  char *dir = step_dir_take(run);
  if (dir)
    cb_remove_tree(AT_FDCWD, dir);
  free(dir);
}

void builder_step_dirs_tidy(struct cache_store *store)
{
  struct cb_error err;
  struct strvec names = STRVEC_INIT;
  cleanup_free char *tmp = xasprintf("%s/tmp", cache_store_root(store));
  cleanup_close int dfd = -1;
  int lock = cache_build_lock(store, true, false, &err);
  if (lock < 0)
    return;
  dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0 && cb_list_dir(dfd, ".", &names) == 0)
    for (size_t i = 0; i < names.n; i++)
      if (cb_starts_with(names.v[i], STEP_DIR_PREFIX))
        cb_remove_tree(dfd, names.v[i]);
  strvec_clear(&names);
  close(lock);
}

/*
 * Whether the upperdir upperfd is as it was made: no entry, the mode and
 * owner mkdir gave it (a step may chmod or chown "/", whose attributes the
 * overlay keeps on the upperdir itself), and no xattr but the one overlayfs
 * puts there at mount, its uuid.  1 yes, 0 no, -1 with errno.
 */
static int upper_untouched(int upperfd)
{
  char buf[1024] __attribute__((aligned(8)));
  struct stat st;
  ssize_t n;
  if (fstat(upperfd, &st) < 0)
    return -1;
  if (st.st_mode != (S_IFDIR | 0755) || st.st_uid != geteuid() || st.st_gid != getegid())
    return 0;
  n = flistxattr(upperfd, buf, sizeof(buf));
  if (n < 0)
    return errno == ERANGE ? 0 : -1;
  for (ssize_t off = 0; off < n; off += (ssize_t)strlen(buf + off) + 1)
    if (strcmp(buf + off, "trusted.overlay.uuid") != 0 &&
        strcmp(buf + off, "user.overlay.uuid") != 0)
      return 0;
  while ((n = getdents64(upperfd, buf, sizeof(buf))) > 0)
    for (ssize_t off = 0; off < n;) {
      struct dirent64 *d = (struct dirent64 *)(void *)(buf + off);
      if (strcmp(d->d_name, ".") != 0 && strcmp(d->d_name, "..") != 0)
        return 0;
      off += d->d_reclen;
    }
  return n < 0 ? -1 : 1;
}

int builder_run_step(struct build_run *run, int stage, const struct parser_step *step,
                     struct progress *p, int progress_id, struct cb_error *err)
{
  struct stage_state *st = &run->stages[stage];
  bool rootless = runner_rootless();
  struct runner_config rc;
  struct runner_result res;
  struct run_output out = { p, progress_id };
  struct strvec argv = STRVEC_INIT;
  struct strvec lowers = STRVEC_INIT;
  struct strvec env = STRVEC_INIT;
  struct step_mounts sm;
  cleanup_free struct runner_mount *mounts = NULL;
  cleanup_free char *tmp = NULL;
  cleanup_free char *upper = NULL;
  cleanup_free char *work = NULL;
  cleanup_free char *script = NULL;
  const char **lowerv = NULL;
  bool fresh, reusable = false;
  int ret = -1;

  memset(&res, 0, sizeof(res));
  memset(&sm, 0, sizeof(sm));
  memset(&rc, 0, sizeof(rc));
  /* slirp4netns starts while the snapshots and the rest are prepared */
  rc.network = run_network(run, step);
  if (builder_netns(run, rc.network, &rc.netns, err) < 0)
    return -1;
  tmp = step_dir_take(run);
  fresh = tmp == NULL;
  if (fresh) {
    tmp = xasprintf("%s/tmp/" STEP_DIR_PREFIX "XXXXXX", cache_store_root(run->store));
    if (!mkdtemp(tmp)) {
      int e = errno;
      free(tmp);
      tmp = NULL;
      return cb_error_errno(err, e, "create the step's directories");
    }
  }
  upper = xasprintf("%s/upper", tmp);
  work = xasprintf("%s/work", tmp);
  if (fresh && (mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0)) {
    cb_error_errno(err, errno, "create \"%s\"", upper);
    goto out;
  }
  /* The stage's layers, top first, as overlay lower directories. */
  if (snapshots(run, st->layers, st->n_layers, &st->config.diff_ids, &lowers, err) < 0)
    goto out;
  if (run_argv(st, step, &argv, &script, tmp, err) < 0)
    goto out;
  if (mounts_prepare(run, stage, step, tmp, &sm, err) < 0)
    goto out;

  lowerv = xcalloc(lowers.n + 1, sizeof(*lowerv));
  for (size_t i = 0; i < lowers.n; i++)
    lowerv[i] = lowers.v[i];
  rc.lowerdirs = lowerv;
  rc.n_lowerdirs = lowers.n;
  rc.upperdir = upper;
  rc.workdir = work;
  rc.argv = (const char *const *)argv.v;
  run_env_with_secrets(step, &sm, &env);
  rc.env = (const char *const *)env.v;
  if (!env.v) {
    static const char *const no_env[] = { NULL };
    rc.env = no_env;
  }
  rc.cwd = st->config.working_dir ? st->config.working_dir : "/";
  rc.user = st->config.user ? st->config.user : "";
  rc.insecure = step->security == PARSER_SECURITY_INSECURE;
  rc.limits = run->o->limits;
  rc.output = run_output;
  rc.output_data = &out;
  mounts = xcalloc(sm.n + 1, sizeof(*mounts));
  for (size_t i = 0; i < sm.n; i++)
    mounts[rc.n_mounts++] = sm.v[i].rm;
  if (script) {
    struct runner_mount *m = &mounts[rc.n_mounts++];
    m->type = RUNNER_MOUNT_BIND;
    m->source = script;
    m->target = "/dev/cbuild-script";
    m->readonly = true;
  }
  rc.mounts = mounts;
  if (runner_run(&rc, &res, err) < 0)
    goto out;
  if (res.oom_killed) {
    cb_error_set(err, "RUN was killed: out of memory (limit %lld bytes)",
                 (long long)run->o->limits.memory_bytes);
    goto out;
  }
  if (res.signal) {
    cb_error_set(err, "RUN %s was killed by signal %d", short_command(step), res.signal);
    goto out;
  }
  if (res.exit_status != 0) {
    cb_error_set(err, "RUN %s exited with status %d", short_command(step), res.exit_status);
    goto out;
  }

  {
    struct oci_upper_options uo;
    struct oci_layer_info info;
    struct oci_layer_options lo;
    cleanup_free char *blob = NULL;
    cleanup_close int upperfd = open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool empty = false;
    int fd;
    if (upperfd < 0) {
      cb_error_errno(err, errno, "open \"%s\"", upper);
      goto out;
    }
    /* nothing changed at all (RUN true, or what only reads): no layer, and
     * the directory serves the next step */
    if (upper_untouched(upperfd) == 1) {
      oci_config_add_history(&st->config, run->created, step->text, true);
      reusable = !script && sm.n == 0;
      ret = 0;
      goto out;
    }
    fd = cache_blob_create(run->store, &blob, err);
    if (fd < 0)
      goto out;
    lo = run->layer_opts;
    lo.stream = builder_layer_stream(run, st);
    memset(&uo, 0, sizeof(uo));
    uo.skip = &res.mount_stubs;
    uo.userxattr = rootless;
    uo.below = exists_below;
    uo.below_data = stage_view(st, run->store);
    if (oci_layer_from_upperdir(upperfd, &uo, fd, &lo, &info, &empty, err) < 0) {
      cache_blob_abort(run->store, fd, blob);
      goto out;
    }
    if (empty) {
      cache_blob_abort(run->store, fd, blob);
      oci_config_add_history(&st->config, run->created, step->text, true);
    } else if (builder_add_layer(run, st, fd, blob, &info, step->text, err) < 0) {
      goto out;
    }
  }
  ret = 0;
out:
  runner_result_release(&res);
  free(lowerv);
  strvec_clear(&argv);
  strvec_clear(&lowers);
  for (size_t i = 0; i < env.n; i++)
    wipe(env.v[i], strlen(env.v[i]));
  strvec_clear(&env);
  step_mounts_release(&sm);
  if (tmp && reusable && step_dir_keep(run, tmp))
    tmp = NULL;
  if (tmp)
    cb_remove_tree(AT_FDCWD, tmp);
  return ret;
}
