/*
 * Per-step resource limits.  Each controller comes from cgroup v2 where
 * the caller's v2 cgroup offers it, else from its cgroup v1 hierarchy:
 * hybrid machines (v1 memory and pids next to a v2 tree with hugetlb only)
 * need both at once.  The step's cgroup is made below the caller's own
 * cgroup in each hierarchy, so that the caller's limits still hold, and is
 * removed afterwards.
 */
#include "runner-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct cg_mount {
  char *dir;         /* mount point */
  char *root;        /* the mount's root within the hierarchy */
  char *controllers; /* v1: the super options ("rw,memory") */
  bool v2;
};

struct cg_where {
  bool v2;
  char *parent; /* the caller's cgroup directory in that hierarchy */
};

/* mountinfo escapes spaces and such as \ooo. */
static char *unescape(const char *s)
{
  struct strbuf sb = STRBUF_INIT;
  for (; *s; s++) {
    if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
        s[3] >= '0' && s[3] <= '7') {
      strbuf_addch(&sb, (s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
      s += 3;
    } else {
      strbuf_addch(&sb, *s);
    }
  }
  return strbuf_detach(&sb, NULL);
}

static bool has_word(const char *list, const char *word, char sep)
{
  size_t n = strlen(word);
  for (const char *p = list; p && *p;) {
    const char *e = strchr(p, sep);
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && memcmp(p, word, n) == 0)
      return true;
    p = e ? e + 1 : NULL;
  }
  return false;
}

static void free_mounts(struct cg_mount *m, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    free(m[i].dir);
    free(m[i].root);
    free(m[i].controllers);
  }
  free(m);
}

/* The cgroup mounts in mountinfo (the text of /proc/self/mountinfo). */
static void parse_mounts(const char *mountinfo, struct cg_mount **out, size_t *nout)
{
  cleanup_free char *copy = xstrdup(mountinfo);
  char *save_line = NULL;
  size_t alloc = 0, n = 0;
  struct cg_mount *m = NULL;
  for (char *line = strtok_r(copy, "\n", &save_line); line;
       line = strtok_r(NULL, "\n", &save_line)) {
    char *fields[6], *save = NULL, *sep = strstr(line, " - ");
    char *fstype, *source, *opts;
    size_t nf = 0;
    if (!sep)
      continue;
    *sep = '\0';
    for (char *p = strtok_r(line, " ", &save); p && nf < 6; p = strtok_r(NULL, " ", &save))
      fields[nf++] = p;
    fstype = strtok_r(sep + 3, " ", &save);
    source = strtok_r(NULL, " ", &save);
    opts = strtok_r(NULL, " ", &save);
    if (nf < 5 || !fstype || !source || !opts)
      continue;
    if (strcmp(fstype, "cgroup") != 0 && strcmp(fstype, "cgroup2") != 0)
      continue;
    CB_GROW(m, n + 1, alloc);
    m[n].root = unescape(fields[3]);
    m[n].dir = unescape(fields[4]);
    m[n].v2 = strcmp(fstype, "cgroup2") == 0;
    m[n].controllers = xstrdup(opts);
    n++;
  }
  *out = m;
  *nout = n;
}

/* The directory of the cgroup path in mount m. */
static char *cgroup_dir(const struct cg_mount *m, const char *path)
{
  size_t rl = strlen(m->root);
  if (strcmp(m->root, "/") != 0 && strncmp(path, m->root, rl) == 0 &&
      (path[rl] == '/' || path[rl] == '\0'))
    path += rl;
  while (*path == '/')
    path++;
  return *path ? xasprintf("%s/%s", m->dir, path) : xstrdup(m->dir);
}

int runner_cgroup_find(const char *ctl, const char *mountinfo, const char *cgroup, bool *v2,
                       char **dir, struct cb_error *err)
{
  struct cg_mount *mounts = NULL;
  size_t nm = 0;
  cleanup_free char *copy = xstrdup(cgroup);
  cleanup_free char *d1 = NULL;
  cleanup_free char *d2 = NULL;
  char *save = NULL;

  parse_mounts(mountinfo, &mounts, &nm);
  /* Lines are "hierarchy-id:controllers:path"; "0::path" is cgroup v2. */
  for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2)
      continue;
    *c1 = '\0';
    *c2 = '\0';
    if (strcmp(line, "0") == 0 && c1[1] == '\0') {
      for (size_t i = 0; i < nm && !d2; i++)
        if (mounts[i].v2)
          d2 = cgroup_dir(&mounts[i], c2 + 1);
    } else if (has_word(c1 + 1, ctl, ',')) {
      for (size_t i = 0; i < nm && !d1; i++)
        if (!mounts[i].v2 && has_word(mounts[i].controllers, ctl, ','))
          d1 = cgroup_dir(&mounts[i], c2 + 1);
    }
  }
  free_mounts(mounts, nm);
  if (d2) {
    cleanup_free char *path = xasprintf("%s/cgroup.controllers", d2);
    cleanup_strbuf struct strbuf sb = STRBUF_INIT;
    struct cb_error e2;
    if (cb_read_file(path, &sb, &e2) == 0) {
      strbuf_setlen(&sb, strcspn(sb.buf, "\n"));
      if (has_word(sb.buf, ctl, ' ')) {
        *v2 = true;
        *dir = steal_pointer(&d2);
        return 0;
      }
    }
  }
  if (d1) {
    *v2 = false;
    *dir = steal_pointer(&d1);
    return 0;
  }
  return cb_error_set(err, "the cgroup controller \"%s\" is not available (neither in cgroup v2 "
                           "nor as a cgroup v1 hierarchy)",
                      ctl);
}

static int write_value(const char *dir, const char *file, const char *value,
                       struct cb_error *err)
{
  cleanup_free char *path = xasprintf("%s/%s", dir, file);
  cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || cb_write_all(fd, value, strlen(value)) < 0)
    return cb_error_errno(err, errno, "write \"%s\" to \"%s\"", value, path);
  return 0;
}

static bool file_exists(const char *dir, const char *file)
{
  cleanup_free char *path = xasprintf("%s/%s", dir, file);
  return access(path, F_OK) == 0;
}

/* The step's directory under w (made once per hierarchy). */
static int step_dir(struct runner_cgroup *cg, const struct cg_where *w, const char *ctl,
                    const char *what, const char *name, char **out, struct cb_error *err)
{
  cleanup_free char *dir = xasprintf("%s/%s", w->parent, name);
  if (strvec_find(&cg->dirs, dir) >= 0) {
    *out = steal_pointer(&dir);
    return 0;
  }
  if (w->v2) {
    /* A v2 controller reaches a child only when the parent hands it down;
     * a parent with processes of its own cannot (the "no internal
     * processes" rule) unless it is the root. */
    cleanup_free char *sub = xasprintf("+%s", ctl);
    struct cb_error e2;
    cleanup_free char *path = xasprintf("%s/cgroup.subtree_control", w->parent);
    cleanup_strbuf struct strbuf cur = STRBUF_INIT;
    if (cb_read_file(path, &cur, &e2) == 0)
      strbuf_setlen(&cur, strcspn(cur.buf, "\n"));
    if (!has_word(cur.buf, ctl, ' ')) {
      if (write_value(w->parent, "cgroup.subtree_control", sub, err) < 0)
        return cb_error_wrap(err, "%s cannot be applied: enable the cgroup v2 controller "
                                  "\"%s\" (run cbuild in a cgroup of its own, e.g. "
                                  "systemd-run --scope -p Delegate=yes)",
                             what, ctl);
    }
  }
  if (mkdir(dir, 0755) < 0) {
    int e = errno;
    if (e == EACCES || e == EPERM || e == EROFS)
      return cb_error_errno(err, e,
                            "%s cannot be applied: create the cgroup \"%s\" (a rootless "
                            "build needs a cgroup delegated to its user for limits)",
                            what, dir);
    return cb_error_errno(err, e, "create the cgroup \"%s\"", dir);
  }
  strvec_push(&cg->dirs, dir);
  *out = steal_pointer(&dir);
  return 0;
}

int runner_cgroup_create(struct runner_cgroup *cg, const struct runner_limits *l,
                         struct cb_error *err)
{
  cleanup_strbuf struct strbuf mountinfo = STRBUF_INIT;
  cleanup_strbuf struct strbuf self = STRBUF_INIT;
  cleanup_free char *name = NULL;
  struct timespec ts;
  int ret = -1;

  memset(cg, 0, sizeof(*cg));
  if (l->memory_bytes <= 0 && l->pids <= 0 && l->cpu_quota_us <= 0)
    return 0;
  if (cb_read_file("/proc/self/mountinfo", &mountinfo, err) < 0 ||
      cb_read_file("/proc/self/cgroup", &self, err) < 0)
    return -1;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  name = xasprintf("cbuild-%ld-%lx", (long)getpid(),
                   (unsigned long)(ts.tv_nsec ^ ((unsigned long)ts.tv_sec << 20)));

  if (l->memory_bytes > 0) {
    struct cg_where w = { false, NULL };
    cleanup_free char *dir = NULL;
    char v[32];
    snprintf(v, sizeof(v), "%lld", l->memory_bytes);
    if (runner_cgroup_find("memory", mountinfo.buf, self.buf, &w.v2, &w.parent, err) < 0)
      goto out;
    if (step_dir(cg, &w, "memory", "--memory", name, &dir, err) < 0) {
      free(w.parent);
      goto out;
    }
    free(w.parent);
    cg->memory_v2 = w.v2;
    cg->memory_dir = xstrdup(dir);
    /* No swap: the limit is the memory the step gets. */
    if (w.v2) {
      if (write_value(dir, "memory.max", v, err) < 0)
        goto out;
      if (file_exists(dir, "memory.swap.max") && write_value(dir, "memory.swap.max", "0", err) < 0)
        goto out;
    } else {
      if (write_value(dir, "memory.limit_in_bytes", v, err) < 0)
        goto out;
      if (file_exists(dir, "memory.memsw.limit_in_bytes") &&
          write_value(dir, "memory.memsw.limit_in_bytes", v, err) < 0)
        goto out;
    }
  }
  if (l->pids > 0) {
    struct cg_where w = { false, NULL };
    cleanup_free char *dir = NULL;
    char v[32];
    snprintf(v, sizeof(v), "%lld", l->pids);
    if (runner_cgroup_find("pids", mountinfo.buf, self.buf, &w.v2, &w.parent, err) < 0)
      goto out;
    if (step_dir(cg, &w, "pids", "--pids-limit", name, &dir, err) < 0) {
      free(w.parent);
      goto out;
    }
    free(w.parent);
    if (write_value(dir, "pids.max", v, err) < 0)
      goto out;
  }
  if (l->cpu_quota_us > 0) {
    struct cg_where w = { false, NULL };
    cleanup_free char *dir = NULL;
    long long period = l->cpu_period_us > 0 ? l->cpu_period_us : 100000;
    char q[32], p[32], both[64];
    snprintf(q, sizeof(q), "%lld", l->cpu_quota_us);
    snprintf(p, sizeof(p), "%lld", period);
    snprintf(both, sizeof(both), "%lld %lld", l->cpu_quota_us, period);
    if (runner_cgroup_find("cpu", mountinfo.buf, self.buf, &w.v2, &w.parent, err) < 0)
      goto out;
    if (step_dir(cg, &w, "cpu", "--cpus", name, &dir, err) < 0) {
      free(w.parent);
      goto out;
    }
    if (w.v2 ? write_value(dir, "cpu.max", both, err) < 0
             : write_value(dir, "cpu.cfs_period_us", p, err) < 0 ||
                   write_value(dir, "cpu.cfs_quota_us", q, err) < 0) {
      free(w.parent);
      goto out;
    }
    free(w.parent);
  }
  ret = 0;
out:
  if (ret < 0)
    runner_cgroup_destroy(cg);
  return ret;
}

int runner_cgroup_add(struct runner_cgroup *cg, pid_t pid, struct cb_error *err)
{
  char v[32];
  snprintf(v, sizeof(v), "%ld", (long)pid);
  for (size_t i = 0; i < cg->dirs.n; i++)
    if (write_value(cg->dirs.v[i], "cgroup.procs", v, err) < 0)
      return -1;
  return 0;
}

/* The number after key in a "key value" file, or -1. */
static long long read_key(const char *dir, const char *file, const char *key)
{
  cleanup_free char *path = xasprintf("%s/%s", dir, file);
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  struct cb_error e2;
  size_t n = strlen(key);
  if (cb_read_file(path, &sb, &e2) < 0)
    return -1;
  for (char *p = sb.buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, key, n) == 0 && p[n] == ' ')
      return strtoll(p + n + 1, NULL, 10);
  return -1;
}

long long runner_cgroup_oom_kills(const struct runner_cgroup *cg)
{
  long long n;
  if (!cg->memory_dir)
    return 0;
  if (cg->memory_v2)
    n = read_key(cg->memory_dir, "memory.events", "oom_kill");
  else
    n = read_key(cg->memory_dir, "memory.oom_control", "oom_kill");
  return n > 0 ? n : 0;
}

void runner_cgroup_destroy(struct runner_cgroup *cg)
{
  for (size_t i = 0; i < cg->dirs.n; i++) {
    /* The last processes may take a moment to leave. */
    for (int tries = 0; tries < 200; tries++) {
      if (rmdir(cg->dirs.v[i]) == 0 || errno != EBUSY)
        break;
      nanosleep(&(struct timespec){ 0, 5 * 1000 * 1000 }, NULL);
    }
  }
  strvec_clear(&cg->dirs);
  free(cg->memory_dir);
  cg->memory_dir = NULL;
}
