/*
 * RUN: the stage's layers as overlay snapshots, the command in the
 * runner's sandbox with the step's environment, its output streamed to the
 * progress display, and the upperdir turned into the next layer (none when
 * the step changed nothing).
 */
#include "builder-internal.h"

#include "../runner/runner.h"
#include "progress-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
  struct runner_mount script_mount;
  cleanup_free char *tmp = NULL;
  cleanup_free char *upper = NULL;
  cleanup_free char *work = NULL;
  cleanup_free char *script = NULL;
  const char **lowerv = NULL;
  int ret = -1;

  memset(&res, 0, sizeof(res));
  if (step->n_mounts)
    return cb_error_set(err, "RUN --mount is not supported yet");
  tmp = xasprintf("%s/tmp/run-XXXXXX", cache_store_root(run->store));
  if (!mkdtemp(tmp)) {
    int e = errno;
    free(tmp);
    tmp = NULL;
    return cb_error_errno(err, e, "create the step's directories");
  }
  upper = xasprintf("%s/upper", tmp);
  work = xasprintf("%s/work", tmp);
  if (mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0) {
    cb_error_errno(err, errno, "create \"%s\"", upper);
    goto out;
  }
  /* The stage's layers, top first, as overlay lower directories. */
  for (size_t i = st->n_layers; i-- > 0;) {
    char *path = NULL;
    const char *diff_id = i < st->config.diff_ids.n ? st->config.diff_ids.v[i] : NULL;
    if (!diff_id) {
      cb_error_set(err, "layer %zu of the image has no diff_id", i);
      goto out;
    }
    if (cache_snapshot_get(run->store, &st->layers[i], diff_id, rootless, &path, err) < 0)
      goto out;
    strvec_push_nodup(&lowers, path);
  }
  if (run_argv(st, step, &argv, &script, tmp, err) < 0)
    goto out;

  memset(&rc, 0, sizeof(rc));
  lowerv = xcalloc(lowers.n + 1, sizeof(*lowerv));
  for (size_t i = 0; i < lowers.n; i++)
    lowerv[i] = lowers.v[i];
  rc.lowerdirs = lowerv;
  rc.n_lowerdirs = lowers.n;
  rc.upperdir = upper;
  rc.workdir = work;
  rc.argv = (const char *const *)argv.v;
  rc.env = (const char *const *)step->run_env.v;
  if (!step->run_env.v) {
    static const char *const no_env[] = { NULL };
    rc.env = no_env;
  }
  rc.cwd = st->config.working_dir ? st->config.working_dir : "/";
  rc.user = st->config.user ? st->config.user : "";
  rc.network = run_network(run, step);
  rc.insecure = step->security == PARSER_SECURITY_INSECURE;
  rc.limits = run->o->limits;
  rc.output = run_output;
  rc.output_data = &out;
  if (script) {
    memset(&script_mount, 0, sizeof(script_mount));
    script_mount.type = RUNNER_MOUNT_BIND;
    script_mount.source = script;
    script_mount.target = "/dev/cbuild-script";
    script_mount.readonly = true;
    rc.mounts = &script_mount;
    rc.n_mounts = 1;
  }
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
    cleanup_free char *blob = NULL;
    cleanup_close int upperfd = open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool empty = false;
    int fd;
    if (upperfd < 0) {
      cb_error_errno(err, errno, "open \"%s\"", upper);
      goto out;
    }
    fd = cache_blob_create(run->store, &blob, err);
    if (fd < 0)
      goto out;
    memset(&uo, 0, sizeof(uo));
    uo.skip = &res.mount_stubs;
    uo.userxattr = rootless;
    uo.below = exists_below;
    uo.below_data = stage_view(st, run->store);
    if (oci_layer_from_upperdir(upperfd, &uo, fd, &run->layer_opts, &info, &empty, err) < 0) {
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
  if (tmp)
    cb_remove_tree(AT_FDCWD, tmp);
  return ret;
}
