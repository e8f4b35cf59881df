/*
 * USER and the environment, from the image's own /etc/passwd and
 * /etc/group (read inside the sandbox, after pivot_root, so that the
 * image's symlinks cannot point us at the host's files).  The rules are
 * Docker's: a name must exist, a number need not; supplementary groups are
 * the groups that list the user by name.
 */
#include "runner-internal.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* The fields of one line of a colon-separated file. */
static size_t split_fields(char *line, char **f, size_t max)
{
  size_t n = 0;
  f[n++] = line;
  for (char *p = line; *p && n < max; p++) {
    if (*p == ':') {
      *p = '\0';
      f[n++] = p + 1;
    }
  }
  return n;
}

static bool parse_id(const char *s, uint32_t *out)
{
  char *end;
  unsigned long v;
  if (!*s || *s < '0' || *s > '9')
    return false;
  errno = 0;
  v = strtoul(s, &end, 10);
  if (errno || *end || v >= 0xffffffffUL)
    return false;
  *out = (uint32_t)v;
  return true;
}

static int read_db(const char *path, struct strbuf *sb, struct cb_error *err)
{
  struct cb_error e2;
  if (cb_read_file(path, sb, &e2) == 0)
    return 0;
  if (e2.code == ENOENT || e2.code == ENOTDIR)
    return 0;
  *err = e2;
  return -1;
}

/* The next entry at *cur, cut into at most max fields; 0 at the end. */
static size_t next_entry(char **cur, char **f, size_t max)
{
  while (**cur) {
    char *line = *cur;
    char *nl = strchr(line, '\n');
    if (nl) {
      *nl = '\0';
      *cur = nl + 1;
    } else {
      *cur = line + strlen(line);
    }
    if (*line != '#' && *line != '\0')
      return split_fields(line, f, max);
  }
  return 0;
}

static void add_group(struct runner_user *u, gid_t g)
{
  for (size_t i = 0; i < u->n_groups; i++)
    if (u->groups[i] == g)
      return;
  u->groups = xreallocarray(u->groups, u->n_groups + 1, sizeof(*u->groups));
  u->groups[u->n_groups++] = g;
}

int runner_user_resolve(const char *spec, const char *passwd_path, const char *group_path,
                        struct runner_user *u, struct cb_error *err)
{
  cleanup_strbuf struct strbuf pw = STRBUF_INIT;
  cleanup_strbuf struct strbuf gr = STRBUF_INIT;
  cleanup_free char *user = xstrdup(spec ? spec : "");
  char *group = strchr(user, ':');
  cleanup_free char *name = NULL;
  bool found = false;
  char *f[8];
  size_t nf;
  uint32_t id;

  memset(u, 0, sizeof(*u));
  if (group)
    *group++ = '\0';
  if (read_db(passwd_path, &pw, err) < 0 || read_db(group_path, &gr, err) < 0)
    return -1;

  /* An empty user is root. */
  if (!*user || parse_id(user, &id)) {
    char *cur = pw.buf;
    u->uid = *user ? id : 0;
    while ((nf = next_entry(&cur, f, 7)) > 0) {
      if (nf >= 4 && parse_id(f[2], &id) && id == u->uid) {
        found = true;
        break;
      }
    }
  } else {
    char *cur = pw.buf;
    while ((nf = next_entry(&cur, f, 7)) > 0) {
      if (nf >= 4 && strcmp(f[0], user) == 0 && parse_id(f[2], &id)) {
        u->uid = id;
        found = true;
        break;
      }
    }
    if (!found)
      return cb_error_set(err, "unable to find user %s: no matching entries in passwd file",
                          user);
  }
  if (found) {
    name = xstrdup(f[0]);
    if (parse_id(f[3], &id))
      u->gid = id;
    if (nf >= 6 && *f[5])
      u->home = xstrdup(f[5]);
  }
  if (!u->home)
    u->home = xstrdup(u->uid == 0 ? "/root" : "/");

  /* The parse above cut pw's lines; gr is still whole. */
  if (group && *group) {
    if (parse_id(group, &id)) {
      u->gid = id;
    } else {
      bool gfound = false;
      cleanup_strbuf struct strbuf copy = STRBUF_INIT;
      char *cur;
      strbuf_addstr(&copy, gr.buf);
      cur = copy.buf;
      while ((nf = next_entry(&cur, f, 4)) > 0) {
        if (nf >= 3 && strcmp(f[0], group) == 0 && parse_id(f[2], &id)) {
          u->gid = id;
          gfound = true;
          break;
        }
      }
      if (!gfound) {
        runner_user_release(u);
        return cb_error_set(err, "unable to find group %s: no matching entries in group file",
                            group);
      }
    }
  }
  if (name) {
    char *cur = gr.buf;
    while ((nf = next_entry(&cur, f, 4)) > 0) {
      char *save = NULL;
      if (nf < 4 || !parse_id(f[2], &id))
        continue;
      for (char *m = strtok_r(f[3], ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        while (*m == ' ')
          m++;
        if (strcmp(m, name) == 0) {
          add_group(u, id);
          break;
        }
      }
    }
  }
  return 0;
}

void runner_user_release(struct runner_user *u)
{
  free(u->groups);
  free(u->home);
  u->groups = NULL;
  u->home = NULL;
  u->n_groups = 0;
}

static bool env_has(const struct strvec *env, const char *key)
{
  size_t n = strlen(key);
  for (size_t i = 0; i < env->n; i++)
    if (strncmp(env->v[i], key, n) == 0 && env->v[i][n] == '=')
      return true;
  return false;
}

void runner_env_build(const struct runner_config *c, const char *hostname,
                      const struct runner_user *u, struct strvec *env)
{
  for (const char *const *e = c->env; e && *e; e++)
    strvec_push(env, *e);
  if (!env_has(env, "PATH"))
    strvec_push(env, "PATH=" DEFAULT_PATH);
  if (!env_has(env, "HOSTNAME"))
    strvec_pushf(env, "HOSTNAME=%s", hostname);
  if (!env_has(env, "HOME"))
    strvec_pushf(env, "HOME=%s", u->home ? u->home : u->uid == 0 ? "/root" : "/");
}

int runner_mkdir_p(const char *path, struct cb_error *err)
{
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  const char *p = path;
  while (*p) {
    const char *slash;
    struct stat st;
    while (*p == '/')
      p++;
    if (!*p)
      break;
    slash = strchr(p, '/');
    strbuf_reset(&sb);
    strbuf_addch(&sb, '/');
    strbuf_add(&sb, path + (path[0] == '/'), (size_t)((slash ? slash : p + strlen(p)) - path) -
                                                 (path[0] == '/'));
    if (mkdir(sb.buf, 0755) < 0) {
      if (errno != EEXIST)
        return cb_error_errno(err, errno, "mkdir \"%s\"", sb.buf);
      if (stat(sb.buf, &st) < 0)
        return cb_error_errno(err, errno, "stat \"%s\"", sb.buf);
      if (!S_ISDIR(st.st_mode))
        return cb_error_set(err, "\"%s\" is not a directory", sb.buf);
    }
    p = slash ? slash : p + strlen(p);
  }
  return 0;
}
