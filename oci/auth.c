/*
 * Registry credentials: the files `docker login` and `podman login` keep
 * them in, and the docker-credential-* helpers those files name (see oci.h
 * for where they are looked for, and in which order).
 *
 * The files are the user's, but other programs write them and people edit
 * them by hand, so they are read as hostile input: a member of the wrong
 * type, base64 that does not decode or a helper that answers nonsense is an
 * error naming the file and the key, never a crash.  Members that do not
 * concern the registry asked for are not looked at.  Writing keeps every
 * member it does not own and replaces the file atomically.
 */
#include "oci-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Docker Hub's key in Docker's config, and the server its helpers get */
#define HUB_SERVER "https://index.docker.io/v1/"
/* Docker Hub's name everywhere else, and its key in an auth.json */
#define HUB_HOST "docker.io"
#define HELPER_PREFIX "docker-credential-"
/* docker-credential-helpers' ErrCredentialsNotFound, printed on stdout */
#define HELPER_NOT_FOUND "credentials not found"
/* A credentials file is a few KiB and a helper's answer less: these bound
 * what a mistake (REGISTRY_AUTH_FILE=/dev/zero) can make us read. */
#define AUTH_FILE_MAX (16 << 20)
#define HELPER_OUTPUT_MAX (1 << 20)
/* Quote at most this many bytes of a key or an output in a message. */
#define QUOTE_MAX 200

/* ---- messages ---- */

/* Append n bytes of s for a one-line message: printable ASCII as is,
 * quotes and backslashes escaped, other bytes as \xNN, cut after max. */
static void add_quoted(struct strbuf *sb, const char *s, size_t n, size_t max)
{
  size_t i;
  for (i = 0; i < n && i < max; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\')
      strbuf_addf(sb, "\\%c", ch);
    else if (ch >= 0x20 && ch < 0x7f)
      strbuf_addch(sb, ch);
    else
      strbuf_addf(sb, "\\x%02x", ch);
  }
  if (i < n)
    strbuf_addstr(sb, "...");
}

/* Fail with `SECTION["KEY"].MEMBER PROBLEM`, naming what in the file is
 * wrong; key and member may be NULL. */
static int member_fail(struct cb_error *err, const char *section, const char *key,
                       const char *member, const char *problem)
{
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  strbuf_addstr(&sb, section);
  if (key) {
    strbuf_addstr(&sb, "[\"");
    add_quoted(&sb, key, strlen(key), QUOTE_MAX);
    strbuf_addstr(&sb, "\"]");
  }
  if (member)
    strbuf_addf(&sb, ".%s", member);
  return cb_error_set(err, "%s %s", sb.buf, problem);
}

static int errno_fail(struct cb_error *err, int errnum)
{
  cb_error_set(err, "%s", strerror(errnum));
  err->code = errnum;
  return -1;
}

/* ---- registries and the keys that name them ---- */

struct registry {
  char *host; /* "localhost:5000"; "docker.io" for Docker Hub */
  bool hub;
};

static void registry_release(struct registry *r)
{
  free(r->host);
  r->host = NULL;
}
#define cleanup_registry __attribute__((cleanup(registry_release)))

/* ASCII case-insensitive: host names are. */
static bool span_eq_ci(const char *p, size_t n, const char *s)
{
  for (size_t i = 0; i < n; i++) {
    char a = p[i], b = s[i];
    if (b == '\0')
      return false;
    if (a >= 'A' && a <= 'Z')
      a = (char)(a - 'A' + 'a');
    if (b >= 'A' && b <= 'Z')
      b = (char)(b - 'A' + 'a');
    if (a != b)
      return false;
  }
  return s[n] == '\0';
}

/* The host a key names, as Docker's ConvertToHostname reads it: without
 * "https://" or "http://" and without any path. */
static const char *host_span(const char *s, size_t *n)
{
  if (cb_starts_with(s, "https://"))
    s += strlen("https://");
  else if (cb_starts_with(s, "http://"))
    s += strlen("http://");
  *n = strcspn(s, "/");
  return s;
}

static bool host_is_hub(const char *p, size_t n)
{
  return span_eq_ci(p, n, HUB_HOST) || span_eq_ci(p, n, "index.docker.io") ||
         span_eq_ci(p, n, "registry-1.docker.io");
}

/* The registry as the caller spells it; a scheme or a path (as in
 * `cbuild login https://host/v1/`) is dropped, as for keys. */
static int registry_parse(const char *in, struct registry *r, struct cb_error *err)
{
  size_t n;
  const char *p = host_span(in, &n);
  bool ok = n > 0;

  r->host = NULL;
  r->hub = false;
  /* it becomes a JSON key and a helper's input: printable ASCII only */
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
      ok = false;
  if (!ok) {
    cleanup_strbuf struct strbuf sb = STRBUF_INIT;
    add_quoted(&sb, in, strlen(in), QUOTE_MAX);
    return cb_error_set(err, "invalid registry \"%s\"", sb.buf);
  }
  r->hub = host_is_hub(p, n);
  r->host = r->hub ? xstrdup(HUB_HOST) : xstrndup(p, n);
  return 0;
}

static bool key_names(const char *key, const struct registry *r)
{
  size_t n;
  const char *host = host_span(key, &n);
  return r->hub ? host_is_hub(host, n) : span_eq_ci(host, n, r->host);
}

/* The key a store writes: Docker's own spelling for Docker Hub in its
 * config, the bare host everywhere else. */
static const char *registry_key(const struct registry *r, bool docker)
{
  return r->hub && docker ? HUB_SERVER : r->host;
}

/* What a helper is given as the server, as Docker gives it. */
static const char *registry_server(const struct registry *r)
{
  return r->hub ? HUB_SERVER : r->host;
}

/* The keys of o that name r: key first when o has it, then the others in
 * the file's order, so that what a store wrote wins over older spellings. */
static void matching_keys(json_t *o, const struct registry *r, const char *key,
                          struct strvec *out)
{
  const char *k;
  json_t *v;
  if (json_object_get(o, key))
    strvec_push(out, key);
  json_object_foreach(o, k, v) {
    if (strcmp(k, key) != 0 && key_names(k, r))
      strvec_push(out, k);
  }
}

/* ---- where the files are ---- */

/* $HOME, else the password database's; NULL when neither is known. */
static char *home_dir(void)
{
  const char *env = getenv("HOME");
  size_t size = 16384;

  if (env && *env)
    return xstrdup(env);
  for (;;) {
    cleanup_free char *buf = xmalloc(size);
    struct passwd pw, *found = NULL;
    int rc = getpwuid_r(getuid(), &pw, buf, size, &found);
    if (rc == ERANGE && size < (1 << 20)) {
      size *= 2;
      continue;
    }
    if (rc != 0 || found == NULL || pw.pw_dir == NULL || *pw.pw_dir == '\0')
      return NULL;
    return xstrdup(pw.pw_dir);
  }
}

/* $DOCKER_CONFIG/config.json, else ~/.docker/config.json; NULL without a
 * home. */
static char *docker_config_path(const char *home)
{
  const char *env = getenv("DOCKER_CONFIG");
  if (env && *env)
    return xasprintf("%s/config.json", env);
  if (home == NULL)
    return NULL;
  return xasprintf("%s/.docker/config.json", home);
}

struct auth_source {
  char *path;
  bool docker;  /* Docker's config.json rather than a containers auth.json */
  bool guessed; /* root's runtime file, taken for ours because uid is 0 */
};

/* The files a lookup reads, in order (see oci.h); returns how many. */
static size_t lookup_sources(const char *authfile, struct auth_source s[4])
{
  const char *env = getenv("REGISTRY_AUTH_FILE");
  const char *runtime = getenv("XDG_RUNTIME_DIR");
  cleanup_free char *home = home_dir();
  char *docker = docker_config_path(home);
  size_t n = 0;

  if (authfile && *authfile)
    s[n++] = (struct auth_source){ xstrdup(authfile), false, false };
  else if (env && *env)
    s[n++] = (struct auth_source){ xstrdup(env), false, false };
  if (runtime && *runtime)
    s[n++] = (struct auth_source){ xasprintf("%s/containers/auth.json", runtime), false, false };
  else if (getuid() == 0)
    /* root's; other users' runtime directory comes from XDG_RUNTIME_DIR */
    s[n++] = (struct auth_source){ xstrdup("/run/containers/0/auth.json"), false, true };
  if (home)
    s[n++] = (struct auth_source){ xasprintf("%s/.config/containers/auth.json", home), false,
                                   false };
  if (docker)
    s[n++] = (struct auth_source){ docker, true, false };
  return n;
}

/* The file store and erase change: authfile, else $REGISTRY_AUTH_FILE,
 * else Docker's config (*docker set). */
static char *target_path(const char *authfile, bool *docker, struct cb_error *err)
{
  const char *env = getenv("REGISTRY_AUTH_FILE");
  cleanup_free char *home = NULL;
  char *path;

  *docker = false;
  if (authfile && *authfile)
    return xstrdup(authfile);
  if (env && *env)
    return xstrdup(env);
  *docker = true;
  home = home_dir();
  path = docker_config_path(home);
  if (path == NULL)
    cb_error_set(err, "no home directory for Docker's config: set $HOME or $DOCKER_CONFIG");
  return path;
}

/* ---- reading and writing the files ---- */

static bool all_space(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
      return false;
  return true;
}

/*
 * The JSON object in path, in *root; NULL when there is no such file.  An
 * empty file is "{}", as Docker reads it.  Errors say what is wrong but not
 * where: the callers name the file.
 */
static int auth_file_load(const char *path, json_t **root, struct cb_error *err)
{
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  cleanup_close int fd = -1;
  json_error_t jerr;
  char buf[8192];
  ssize_t n;

  *root = NULL;
  fd = open(path, O_RDONLY | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return 0;
    return errno_fail(err, errno);
  }
  while ((n = cb_read_retry(fd, buf, sizeof(buf))) > 0) {
    if (sb.len + (size_t)n > AUTH_FILE_MAX)
      return cb_error_set(err, "larger than %d MiB", AUTH_FILE_MAX >> 20);
    strbuf_add(&sb, buf, (size_t)n);
  }
  if (n < 0)
    return errno_fail(err, errno);
  if (all_space(sb.buf, sb.len)) {
    *root = json_object();
    if (*root == NULL)
      cb_die("out of memory");
    return 0;
  }
  *root = json_loadb(sb.buf, sb.len, 0, &jerr);
  if (*root == NULL) {
    cleanup_strbuf struct strbuf text = STRBUF_INIT;
    add_quoted(&text, jerr.text, strlen(jerr.text), QUOTE_MAX);
    return cb_error_set(err, "invalid JSON at line %d: %s", jerr.line, text.buf);
  }
  if (!json_is_object(*root)) {
    json_decref(*root);
    *root = NULL;
    return cb_error_set(err, "not a JSON object");
  }
  return 0;
}

/* mkdir -p, creating what is missing 0700. */
/*
 * Replace path with root: a temporary file beside it, mode 0600, synced and
 * renamed over it, so that readers see the old file or the new one and a
 * crash leaves one of them.  A symlink (a config kept with dotfiles) is
 * followed, as Docker does, and stays one.
 */
static int auth_file_save(const char *path, json_t *root, struct cb_error *err)
{
  cleanup_free char *real = realpath(path, NULL);
  const char *target = real ? real : path;
  const char *slash = strrchr(target, '/');
  cleanup_free char *dir = slash == NULL    ? xstrdup(".")
                           : slash == target ? xstrdup("/")
                                             : xstrndup(target, (size_t)(slash - target));
  cleanup_free char *tmp = xasprintf("%s/.%s.XXXXXX", dir, slash ? slash + 1 : target);
  cleanup_free char *json = json_dumps(root, JSON_INDENT(2));
  cleanup_close int fd = -1;
  int dirfd, rc;

  if (json == NULL)
    cb_die("out of memory");
  if (cb_mkdir_p(dir, 0700, err) < 0)
    return cb_error_wrap(err, "create directory \"%s\"", dir);
  /* mkostemp creates it 0600 */
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0)
    return cb_error_errno(err, errno, "create a temporary file in \"%s\"", dir);
  if (fchmod(fd, 0600) < 0 || cb_write_all(fd, json, strlen(json)) < 0 ||
      cb_write_all(fd, "\n", 1) < 0 || fsync(fd) < 0) {
    cb_error_errno(err, errno, "write \"%s\"", tmp);
    goto fail;
  }
  rc = close(fd);
  fd = -1;
  if (rc < 0) {
    cb_error_errno(err, errno, "write \"%s\"", tmp);
    goto fail;
  }
  if (rename(tmp, target) < 0) {
    cb_error_errno(err, errno, "rename \"%s\" to \"%s\"", tmp, target);
    goto fail;
  }
  /* Best effort: the new file is in place; a directory that cannot be
   * synced only makes the rename less durable, not wrong. */
  dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd >= 0) {
    fsync(dirfd);
    close(dirfd);
  }
  return 0;
fail:
  unlink(tmp);
  return -1;
}

/* root[section] in *out when it is an object; NULL when absent or null. */
static int section_get(json_t *root, const char *section, json_t **out, struct cb_error *err)
{
  json_t *v = json_object_get(root, section);
  *out = NULL;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_object(v))
    return member_fail(err, section, NULL, NULL, "is not an object");
  *out = v;
  return 0;
}

/* ---- base64 ---- */

static bool is_base64(char c)
{
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '+' || c == '/';
}

/* s decoded as standard, padded base64, *len bytes; NULL when it is not
 * that, or when it decodes to a NUL byte, which a C string cannot carry. */
static char *base64_decode(const char *s, size_t *len_out)
{
  size_t n = strlen(s), pad = 0;
  unsigned char *out;
  int len;

  if (n == 0 || n % 4 != 0 || n > INT_MAX)
    return NULL;
  if (s[n - 1] == '=')
    pad = s[n - 2] == '=' ? 2 : 1;
  /* EVP_DecodeBlock skips blanks and would take '=' anywhere */
  for (size_t i = 0; i < n - pad; i++)
    if (!is_base64(s[i]))
      return NULL;
  out = xmalloc(n / 4 * 3 + 1);
  len = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
  /* it counts the padding as zero bytes of output */
  if (len < 0 || (size_t)len < pad || memchr(out, '\0', (size_t)len - pad)) {
    free(out);
    return NULL;
  }
  *len_out = (size_t)len - pad;
  out[*len_out] = '\0';
  return (char *)out;
}

char *oci_base64_encode(const char *data, size_t n)
{
  char *out;
  if (n > INT_MAX / 2)
    cb_die("credentials of %zu bytes are too large to encode", n);
  out = xmalloc(st_add(st_mult((n + 2) / 3, 4), 1));
  EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)data, (int)n);
  return out;
}

/* ---- credential helpers ---- */

static int helper_fail(struct cb_error *err, const char *name, const char *action,
                       const char *fmt, ...) CB_PRINTF(4, 5);
static int helper_fail(struct cb_error *err, const char *name, const char *action,
                       const char *fmt, ...)
{
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  va_list ap;
  strbuf_addstr(&sb, "credential helper \"" HELPER_PREFIX);
  add_quoted(&sb, name, strlen(name), QUOTE_MAX);
  strbuf_addf(&sb, "\" %s: ", action);
  va_start(ap, fmt);
  strbuf_vaddf(&sb, fmt, ap);
  va_end(ap);
  return cb_error_set(err, "%s", sb.buf);
}

static int helper_errno(struct cb_error *err, const char *name, const char *action, int errnum,
                        const char *what)
{
  helper_fail(err, name, action, "%s: %s", what, strerror(errnum));
  err->code = errnum;
  return -1;
}

/* A helper is a name; credHelpers must not run an arbitrary path. */
static int helper_name_check(const char *section, const char *key, const char *name,
                             struct cb_error *err)
{
  if (strchr(name, '/'))
    return member_fail(err, section, key, NULL, "names a path, not a credential helper");
  return 0;
}

/* The helper credHelpers names for r, in *name; NULL when none. */
static int cred_helper_find(json_t *root, const struct registry *r, const char **name,
                            struct cb_error *err)
{
  cleanup_strvec struct strvec keys = STRVEC_INIT;
  json_t *helpers;

  *name = NULL;
  if (section_get(root, "credHelpers", &helpers, err) < 0)
    return -1;
  if (helpers == NULL)
    return 0;
  matching_keys(helpers, r, r->host, &keys);
  for (size_t i = 0; i < keys.n; i++) {
    json_t *v = json_object_get(helpers, keys.v[i]);
    if (json_is_null(v))
      continue;
    if (!json_is_string(v))
      return member_fail(err, "credHelpers", keys.v[i], NULL, "is not a string");
    if (json_string_length(v) == 0)
      continue;
    if (helper_name_check("credHelpers", keys.v[i], json_string_value(v), err) < 0)
      return -1;
    *name = json_string_value(v);
    return 0;
  }
  return 0;
}

/* The helper credsStore names, in *name; NULL when none. */
static int creds_store_find(json_t *root, const char **name, struct cb_error *err)
{
  json_t *v = json_object_get(root, "credsStore");
  *name = NULL;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return member_fail(err, "credsStore", NULL, NULL, "is not a string");
  if (json_string_length(v) == 0)
    return 0;
  if (helper_name_check("credsStore", NULL, json_string_value(v), err) < 0)
    return -1;
  *name = json_string_value(v);
  return 0;
}

/* What store and erase go through in Docker's config: credHelpers, then
 * credsStore; NULL when neither names one. */
static int store_helper_find(json_t *root, const struct registry *r, const char **name,
                             struct cb_error *err)
{
  if (cred_helper_find(root, r, name, err) < 0)
    return -1;
  if (*name)
    return 0;
  return creds_store_find(root, name, err);
}

/* Close *fd now, leaving -1 for its cleanup_close. */
static void close_fd(int *fd)
{
  if (*fd >= 0)
    close(*fd);
  *fd = -1;
}

/* Move fd above 0, 1 and 2, so that the child's dup2 onto its stdin and
 * stdout cannot meet one of the pipes' own descriptors (a caller started
 * with stdin closed gets a pipe at 0). */
static int fd_above_stdio(int *fd)
{
  int moved;
  if (*fd > 2)
    return 0;
  moved = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
  if (moved < 0)
    return -1;
  close(*fd);
  *fd = moved;
  return 0;
}

/* Start prog action with in_r as its stdin and out_w as its stdout; the
 * pipes' other ends are close-on-exec.  0, or an errno value. */
static int helper_spawn(const char *prog, const char *action, int in_r, int out_w, pid_t *pid)
{
  char *argv[] = { (char *)prog, (char *)action, NULL };
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  sigset_t none, pipe_only;
  int rc;

  rc = posix_spawn_file_actions_init(&fa);
  if (rc != 0)
    return rc;
  rc = posix_spawnattr_init(&attr);
  if (rc != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return rc;
  }
  /* The helper starts with nothing blocked and SIGPIPE at its default,
   * whatever our caller set: both would survive exec. */
  sigemptyset(&none);
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  rc = posix_spawn_file_actions_adddup2(&fa, in_r, STDIN_FILENO);
  if (rc == 0)
    rc = posix_spawn_file_actions_adddup2(&fa, out_w, STDOUT_FILENO);
  if (rc == 0)
    rc = posix_spawnattr_setsigmask(&attr, &none);
  if (rc == 0)
    rc = posix_spawnattr_setsigdefault(&attr, &pipe_only);
  if (rc == 0)
    rc = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (rc == 0)
    rc = posix_spawnp(pid, prog, &fa, &attr, argv, environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  return rc;
}

/*
 * Write input to the helper's stdin while reading its stdout into out, so
 * that neither side can block the other whatever their sizes; *in_w is
 * closed once input is written.  A helper that stops reading early sets
 * *broke (EPIPE) and is not an error: its exit status says how it went.
 */
static int helper_exchange(const char *name, const char *action, int *in_w, int out_r,
                           const char *input, struct strbuf *out, bool *broke,
                           struct cb_error *err)
{
  size_t len = strlen(input), done = 0;
  char buf[4096];

  if (fcntl(*in_w, F_SETFL, O_NONBLOCK) < 0)
    return helper_errno(err, name, action, errno, "write to it");
  if (len == 0)
    close_fd(in_w);
  for (;;) {
    struct pollfd pfd[2] = { { out_r, POLLIN, 0 }, { *in_w, POLLOUT, 0 } };
    nfds_t nfds = *in_w >= 0 ? 2 : 1;
    ssize_t n;

    if (poll(pfd, nfds, -1) < 0) {
      if (errno == EINTR)
        continue;
      return helper_errno(err, name, action, errno, "poll its pipes");
    }
    if (nfds == 2 && pfd[1].revents != 0) {
      n = write(*in_w, input + done, len - done);
      if (n > 0) {
        done += (size_t)n;
      } else if (n < 0 && errno == EPIPE) {
        *broke = true;
        done = len;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return helper_errno(err, name, action, errno, "write to it");
      }
      if (done == len)
        close_fd(in_w);
    }
    if (pfd[0].revents != 0) {
      n = cb_read_retry(out_r, buf, sizeof(buf));
      if (n == 0)
        return 0;
      if (n < 0)
        return helper_errno(err, name, action, errno, "read its output");
      /* the rest is read but dropped, so the helper can finish */
      if (out->len < HELPER_OUTPUT_MAX)
        strbuf_add(out, buf, (size_t)n);
    }
  }
}

/*
 * Run docker-credential-NAME ACTION with input on its stdin and its stdout
 * in out; stderr is ours.  0 when it ran (*status its wait status), -1 when
 * it could not be started or talked to.  It is always reaped.
 */
static int helper_run(const char *name, const char *action, const char *input,
                      struct strbuf *out, int *status, struct cb_error *err)
{
  cleanup_free char *prog = xasprintf(HELPER_PREFIX "%s", name);
  cleanup_close int in_r = -1;
  cleanup_close int in_w = -1;
  cleanup_close int out_r = -1;
  cleanup_close int out_w = -1;
  sigset_t pipe_set, old_mask, pending;
  bool broke = false, was_pending;
  int p[2], rc;
  pid_t pid;

  if (pipe2(p, O_CLOEXEC) < 0)
    return helper_errno(err, name, action, errno, "create a pipe");
  in_r = p[0];
  in_w = p[1];
  if (pipe2(p, O_CLOEXEC) < 0)
    return helper_errno(err, name, action, errno, "create a pipe");
  out_r = p[0];
  out_w = p[1];
  if (fd_above_stdio(&in_r) < 0 || fd_above_stdio(&in_w) < 0 || fd_above_stdio(&out_r) < 0 ||
      fd_above_stdio(&out_w) < 0)
    return helper_errno(err, name, action, errno, "create a pipe");
  rc = helper_spawn(prog, action, in_r, out_w, &pid);
  if (rc == ENOENT)
    return helper_fail(err, name, action, "not found in $PATH");
  if (rc != 0)
    return helper_errno(err, name, action, rc, "start it");
  close_fd(&in_r);
  close_fd(&out_w);

  /*
   * A helper that exits without reading all its stdin must not kill us:
   * SIGPIPE is blocked (for this thread, which the signal is sent to) while
   * we write, and the one a broken pipe raised is taken back before the
   * old mask returns, unless one was pending already.
   */
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
  sigpending(&pending);
  was_pending = sigismember(&pending, SIGPIPE);
  rc = helper_exchange(name, action, &in_w, out_r, input, out, &broke, err);
  if (broke && !was_pending) {
    struct timespec zero = { 0, 0 };
    while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
      ;
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  close_fd(&in_w);
  close_fd(&out_r);

  if (rc < 0)
    kill(pid, SIGKILL);
  while (waitpid(pid, status, 0) < 0) {
    if (errno != EINTR)
      return rc < 0 ? -1 : helper_errno(err, name, action, errno, "wait for it");
  }
  return rc;
}

/* Run a helper: 0 when it succeeded, 1 when it said it has nothing for the
 * server, -1 when it could not run or failed. */
static int helper_call(const char *name, const char *action, const char *input,
                       struct strbuf *out, struct cb_error *err)
{
  cleanup_strbuf struct strbuf why = STRBUF_INIT;
  size_t n;
  int status;

  if (helper_run(name, action, input, out, &status, err) < 0)
    return -1;
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return 0;
  if (memmem(out->buf, out->len, HELPER_NOT_FOUND, strlen(HELPER_NOT_FOUND)))
    return 1;
  if (WIFEXITED(status))
    strbuf_addf(&why, "exit status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    strbuf_addf(&why, "killed by signal %d", WTERMSIG(status));
  else
    strbuf_addf(&why, "wait status %#x", (unsigned)status);
  for (n = out->len; n > 0 && strchr(" \t\r\n", out->buf[n - 1]); n--)
    ;
  if (n > 0) {
    strbuf_addstr(&why, ": ");
    add_quoted(&why, out->buf, n, QUOTE_MAX);
  }
  return helper_fail(err, name, action, "%s", why.buf);
}

/* A string member of a helper's answer; "" when absent or null. */
static int answer_string(json_t *answer, const char *name, const char *member, const char **out,
                         struct cb_error *err)
{
  json_t *v = json_object_get(answer, member);
  *out = "";
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return helper_fail(err, name, "get", "\"%s\" in its answer is not a string", member);
  *out = json_string_value(v);
  return 0;
}

static int helper_get(const char *name, const struct registry *r, struct oci_credentials *c,
                      struct cb_error *err)
{
  cleanup_strbuf struct strbuf out = STRBUF_INIT;
  cleanup_json json_t *answer = NULL;
  const char *user, *secret;
  json_error_t jerr;
  int rc;

  rc = helper_call(name, "get", registry_server(r), &out, err);
  if (rc != 0)
    return rc;
  answer = json_loadb(out.buf, out.len, 0, &jerr);
  if (answer == NULL) {
    cleanup_strbuf struct strbuf text = STRBUF_INIT;
    add_quoted(&text, jerr.text, strlen(jerr.text), QUOTE_MAX);
    return helper_fail(err, name, "get", "invalid JSON in its answer at line %d: %s", jerr.line,
                       text.buf);
  }
  if (!json_is_object(answer))
    return helper_fail(err, name, "get", "its answer is not a JSON object");
  if (answer_string(answer, name, "Username", &user, err) < 0 ||
      answer_string(answer, name, "Secret", &secret, err) < 0)
    return -1;
  if (*user == '\0' && *secret == '\0')
    return 1;
  c->username = xstrdup(user);
  c->password = xstrdup(secret);
  return 0;
}

static void jset(json_t *o, const char *key, json_t *v)
{
  if (v == NULL || json_object_set_new(o, key, v) < 0)
    cb_die("out of memory");
}

static int helper_store(const char *name, const struct registry *r,
                        const struct oci_credentials *c, struct cb_error *err)
{
  cleanup_strbuf struct strbuf out = STRBUF_INIT;
  cleanup_json json_t *msg = json_object();
  cleanup_free char *input = NULL;
  json_t *user = json_string(c->username), *secret = json_string(c->password);
  int rc;

  if (msg == NULL)
    cb_die("out of memory");
  if (user == NULL || secret == NULL) {
    json_decref(user);
    json_decref(secret);
    return helper_fail(err, name, "store", "the credentials are not valid UTF-8");
  }
  jset(msg, "ServerURL", json_string(registry_server(r)));
  jset(msg, "Username", user);
  jset(msg, "Secret", secret);
  input = json_dumps(msg, JSON_COMPACT);
  if (input == NULL)
    cb_die("out of memory");
  rc = helper_call(name, "store", input, &out, err);
  explicit_bzero(input, strlen(input));
  if (rc == 1)
    return helper_fail(err, name, "store", "it answered \"%s\"", HELPER_NOT_FOUND);
  return rc;
}

/* ---- auths entries ---- */

/* A string member of auths[key]; NULL when absent, null or empty. */
static int entry_string(json_t *entry, const char *key, const char *member, const char **out,
                        struct cb_error *err)
{
  json_t *v = json_object_get(entry, member);
  *out = NULL;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return member_fail(err, "auths", key, member, "is not a string");
  if (json_string_length(v) > 0)
    *out = json_string_value(v);
  return 0;
}

/* The credentials auths[key] holds: 0 found, 1 none (Docker leaves "{}"
 * beside a credsStore), -1 malformed. */
static int entry_read(json_t *entry, const char *key, struct oci_credentials *c,
                      struct cb_error *err)
{
  cleanup_free char *decoded = NULL;
  const char *auth, *user, *pass, *token;
  size_t decoded_len = 0;

  if (json_is_null(entry))
    return 1;
  if (!json_is_object(entry))
    return member_fail(err, "auths", key, NULL, "is not an object");
  if (entry_string(entry, key, "auth", &auth, err) < 0 ||
      entry_string(entry, key, "username", &user, err) < 0 ||
      entry_string(entry, key, "password", &pass, err) < 0 ||
      entry_string(entry, key, "identitytoken", &token, err) < 0)
    return -1;
  if (auth) {
    char *colon;
    decoded = base64_decode(auth, &decoded_len);
    if (decoded == NULL)
      return member_fail(err, "auths", key, "auth", "is not valid base64");
    colon = strchr(decoded, ':');
    if (colon == NULL)
      return member_fail(err, "auths", key, "auth", "does not decode to \"user:password\"");
    *colon = '\0';
    user = decoded;
    pass = colon + 1;
  }
  /* Docker keeps the user beside a token but no password */
  if (token && (user == NULL || pass == NULL || *pass == '\0')) {
    user = "<token>";
    pass = token;
  }
  if (user == NULL)
    return 1;
  c->username = xstrdup(user);
  c->password = xstrdup(pass ? pass : "");
  if (decoded)
    explicit_bzero(decoded, decoded_len);
  return 0;
}

static int entry_write(json_t *auths, const char *key, const struct oci_credentials *c,
                       struct cb_error *err)
{
  json_t *entry = json_object();

  if (entry == NULL)
    cb_die("out of memory");
  if (strcmp(c->username, "<token>") == 0) {
    json_t *token = json_string(c->password);
    if (token == NULL) {
      json_decref(entry);
      return cb_error_set(err, "the identity token is not valid UTF-8");
    }
    jset(entry, "identitytoken", token);
  } else {
    cleanup_free char *pair = xasprintf("%s:%s", c->username, c->password);
    cleanup_free char *encoded = oci_base64_encode(pair, strlen(pair));
    explicit_bzero(pair, strlen(pair));
    jset(entry, "auth", json_string(encoded));
  }
  jset(auths, key, entry);
  return 0;
}

/* Whether auths[key] holds credentials itself, rather than being Docker's
 * "{}" beside a credsStore; a malformed entry counts, as a lookup would
 * stop at it. */
static bool entry_has_secret(json_t *entry)
{
  static const char *const members[] = { "auth", "username", "password", "identitytoken" };
  if (json_is_null(entry))
    return false;
  if (!json_is_object(entry))
    return true;
  for (size_t i = 0; i < CB_ARRAY_SIZE(members); i++) {
    json_t *v = json_object_get(entry, members[i]);
    if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0))
      return true;
  }
  return false;
}

/* Delete the entries of auths that name r (only those with credentials
 * when secrets_only); returns how many. */
static size_t auths_drop(json_t *auths, const struct registry *r, bool secrets_only)
{
  const char *key;
  json_t *v;
  void *next;
  size_t n = 0;

  json_object_foreach_safe(auths, next, key, v) {
    if (!key_names(key, r) || (secrets_only && !entry_has_secret(v)))
      continue;
    json_object_del(auths, key);
    n++;
  }
  return n;
}

/* ---- lookup ---- */

static int root_lookup(json_t *root, bool docker, const struct registry *r,
                       struct oci_credentials *c, struct cb_error *err)
{
  const char *helper;
  json_t *auths;
  int rc;

  if (cred_helper_find(root, r, &helper, err) < 0)
    return -1;
  if (helper && (rc = helper_get(helper, r, c, err)) != 1)
    return rc;
  if (section_get(root, "auths", &auths, err) < 0)
    return -1;
  if (auths) {
    cleanup_strvec struct strvec keys = STRVEC_INIT;
    matching_keys(auths, r, registry_key(r, docker), &keys);
    for (size_t i = 0; i < keys.n; i++) {
      rc = entry_read(json_object_get(auths, keys.v[i]), keys.v[i], c, err);
      if (rc != 1)
        return rc;
    }
  }
  if (creds_store_find(root, &helper, err) < 0)
    return -1;
  if (helper)
    return helper_get(helper, r, c, err);
  return 1;
}

static int source_lookup(const struct auth_source *s, const struct registry *r,
                         struct oci_credentials *c, struct cb_error *err)
{
  cleanup_json json_t *root = NULL;
  int rc;
  /* uid 0 in a rootless build's user namespace is not the real root: the
   * real root's file, closed to us, is not ours and not an error */
  if (s->guessed && access(s->path, R_OK) < 0 && errno == EACCES)
    return 1;
  rc = auth_file_load(s->path, &root, err);
  if (rc == 0 && root == NULL)
    return 1;
  if (rc == 0)
    rc = root_lookup(root, s->docker, r, c, err);
  if (rc < 0)
    return cb_error_wrap(err, "read credentials \"%s\"", s->path);
  return rc;
}

int oci_credentials_lookup(const char *registry, const char *authfile,
                           struct oci_credentials *c, struct cb_error *err)
{
  cleanup_registry struct registry r = { NULL, false };
  struct auth_source s[4];
  size_t n;
  int rc = 1;

  c->username = NULL;
  c->password = NULL;
  if (registry_parse(registry, &r, err) < 0)
    return -1;
  n = lookup_sources(authfile, s);
  for (size_t i = 0; i < n && rc == 1; i++)
    rc = source_lookup(&s[i], &r, c, err);
  for (size_t i = 0; i < n; i++)
    free(s[i].path);
  return rc;
}

void oci_credentials_release(struct oci_credentials *c)
{
  if (c->password)
    explicit_bzero(c->password, strlen(c->password));
  free(c->username);
  free(c->password);
  c->username = NULL;
  c->password = NULL;
}

/* ---- store and erase ---- */

int oci_credentials_store(const char *registry, const char *authfile,
                          const struct oci_credentials *c, struct cb_error *err)
{
  cleanup_registry struct registry r = { NULL, false };
  cleanup_json json_t *root = NULL;
  cleanup_free char *path = NULL;
  const char *helper = NULL;
  json_t *auths;
  bool docker;

  if (registry_parse(registry, &r, err) < 0)
    return -1;
  if (c->username == NULL || c->password == NULL)
    return cb_error_set(err, "store credentials for \"%s\": no username or password", r.host);
  /* "user:password" could not be split again */
  if (strchr(c->username, ':'))
    return cb_error_set(err, "store credentials for \"%s\": the username contains \":\"",
                        r.host);
  path = target_path(authfile, &docker, err);
  if (path == NULL)
    return cb_error_wrap(err, "store credentials for \"%s\"", r.host);
  if (auth_file_load(path, &root, err) < 0)
    goto fail;
  if (root == NULL) {
    root = json_object();
    if (root == NULL)
      cb_die("out of memory");
  }
  if (section_get(root, "auths", &auths, err) < 0)
    goto fail;
  if (docker && store_helper_find(root, &r, &helper, err) < 0)
    goto fail;
  if (helper) {
    if (helper_store(helper, &r, c, err) < 0)
      goto fail;
    /* Credentials left in the file from before would shadow the helper's,
     * as auths is read before credsStore. */
    if (auths == NULL || auths_drop(auths, &r, true) == 0)
      return 0;
  } else {
    if (auths == NULL) {
      auths = json_object();
      jset(root, "auths", auths);
    }
    if (entry_write(auths, registry_key(&r, docker), c, err) < 0)
      goto fail;
  }
  if (auth_file_save(path, root, err) < 0)
    goto fail;
  return 0;
fail:
  return cb_error_wrap(err, "store credentials in \"%s\"", path);
}

int oci_credentials_erase(const char *registry, const char *authfile, struct cb_error *err)
{
  cleanup_registry struct registry r = { NULL, false };
  cleanup_json json_t *root = NULL;
  cleanup_free char *path = NULL;
  const char *helper = NULL;
  bool docker, erased = false;
  json_t *auths;

  if (registry_parse(registry, &r, err) < 0)
    return -1;
  path = target_path(authfile, &docker, err);
  if (path == NULL)
    return cb_error_wrap(err, "erase credentials for \"%s\"", r.host);
  if (auth_file_load(path, &root, err) < 0)
    goto fail;
  if (root == NULL)
    return 1;
  if (section_get(root, "auths", &auths, err) < 0)
    goto fail;
  if (docker && store_helper_find(root, &r, &helper, err) < 0)
    goto fail;
  if (helper) {
    cleanup_strbuf struct strbuf out = STRBUF_INIT;
    int rc = helper_call(helper, "erase", registry_server(&r), &out, err);
    if (rc < 0)
      goto fail;
    erased = rc == 0;
  }
  if (auths && auths_drop(auths, &r, false) > 0) {
    if (auth_file_save(path, root, err) < 0)
      goto fail;
    erased = true;
  }
  return erased ? 0 : 1;
fail:
  return cb_error_wrap(err, "erase credentials from \"%s\"", path);
}
