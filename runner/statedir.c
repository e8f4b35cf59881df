/*
 * The directory the sandboxes of one cbuild process share, made on first
 * use in $TMPDIR and removed when the process exits:
 *
 *   root/     the rootfs's mount point (each init mounts in a mount
 *             namespace of its own, so steps running at once do not meet)
 *   empty/    stands in for missing lower directories (overlay.c)
 *   step/     where each init mounts a tmpfs of its own, for what one step
 *             needs (the mounts of RUN --mount, secrets, masks)
 *   stubs/    the lowest layer of every rootfs: proc, dev, sys, etc/hosts,
 *             etc/resolv.conf and etc/hostname, so that the sandbox mounts
 *             over them without writing a stub to the upperdir when the
 *             image lacks them
 *   etc-N/    hosts, resolv.conf and hostname, one directory per network
 *             mode and hostname seen
 *
 * Making and removing these for every step cost a RUN step more system
 * calls than its sandbox.
 */
#include "runner-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_once_t state_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static char *state_dir, *step_dir, *root_dir;
static pid_t state_owner;
static struct cb_error state_err;
static struct strvec etc_keys = STRVEC_INIT; /* "NET HOSTNAME", by index */
static struct strvec etc_dirs = STRVEC_INIT;

static void state_remove(void)
{
  /* Not from a child that happens to call exit(). */
  if (state_dir && getpid() == state_owner)
    cb_remove_tree(AT_FDCWD, state_dir);
}

static int make(const char *rel, bool dir, struct cb_error *err)
{
  cleanup_free char *p = xasprintf("%s/%s", state_dir, rel);
  if (!dir)
    return runner_write_file(p, "", err);
  if (mkdir(p, 0755) < 0)
    return cb_error_errno(err, errno, "create \"%s\"", p);
  return 0;
}

static void state_create(void)
{
  static const char *const dirs[] = { "root",      "empty",     "step",     "stubs",
                                      "stubs/proc", "stubs/dev", "stubs/sys", "stubs/etc" };
  static const char *const files[] = { "stubs/etc/hosts", "stubs/etc/resolv.conf",
                                       "stubs/etc/hostname" };
  const char *base = getenv("TMPDIR");
  char *dir;

  if (!base || !*base)
    base = "/tmp";
  dir = xasprintf("%s/cbuild-run-XXXXXX", base);
  if (!mkdtemp(dir)) {
    cb_error_errno(&state_err, errno, "create a temporary directory in \"%s\"", base);
    free(dir);
    return;
  }
  state_dir = dir;
  state_owner = getpid();
  atexit(state_remove);
  for (size_t i = 0; i < CB_ARRAY_SIZE(dirs); i++)
    if (make(dirs[i], true, &state_err) < 0)
      goto fail;
  for (size_t i = 0; i < CB_ARRAY_SIZE(files); i++)
    if (make(files[i], false, &state_err) < 0)
      goto fail;
  step_dir = xasprintf("%s/step", state_dir);
  root_dir = xasprintf("%s/root", state_dir);
  return;
fail:
  cb_remove_tree(AT_FDCWD, state_dir);
  free(state_dir);
  state_dir = NULL;
}

/* The etc directory for net and hostname, made when new; under state_lock. */
static const char *etc_dir(enum runner_network net, const char *hostname, struct cb_error *err)
{
  cleanup_free char *key = xasprintf("%d %s", (int)net, hostname);
  ssize_t i = strvec_find(&etc_keys, key);
  char *dir;
  if (i >= 0)
    return etc_dirs.v[i];
  dir = xasprintf("%s/etc-%zu", state_dir, etc_keys.n);
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
    cb_error_errno(err, errno, "create \"%s\"", dir);
    free(dir);
    return NULL;
  }
  if (runner_net_write_etc(dir, net, hostname, err) < 0) {
    free(dir);
    return NULL;
  }
  strvec_push(&etc_keys, key);
  strvec_push_nodup(&etc_dirs, dir);
  return dir;
}

int runner_statedir_prepare(struct runner_setup *s, enum runner_network net,
                            struct cb_error *err)
{
  int ret = 0;

  pthread_once(&state_once, state_create);
  if (!state_dir) {
    *err = state_err;
    return -1;
  }
  s->statedir = state_dir;
  s->tmpdir = step_dir;
  s->rootdir = root_dir;
  pthread_mutex_lock(&state_lock);
  if (!(s->etcdir = etc_dir(net, s->hostname, err)))
    ret = -1;
  pthread_mutex_unlock(&state_lock);
  return ret;
}
