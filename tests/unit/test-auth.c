/* Registry credentials: files, key spellings and helpers (oci/auth.c). */
#include "unit.h"

#include "../../oci/oci.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* base64 of "user:pass", "file:pw", "alice:s3cr:et" and "nocolon" */
#define B64_USER_PASS "dXNlcjpwYXNz"
#define B64_FILE_PW "ZmlsZTpwdw=="
#define B64_ALICE "YWxpY2U6czNjcjpldA=="
#define B64_NOCOLON "bm9jb2xvbg=="

/*
 * A credential helper keeping each server's JSON in a file under $CRED_DB
 * (named after the server, '/' and ':' as '_'), logging every call to
 * $CRED_DB/log.  Its "get" answers with what "store" was given.
 */
static const char helper_test[] =
    "#!/bin/sh\n"
    "case \"$1\" in\n"
    "get|erase) server=$(cat) ;;\n"
    "store) input=$(cat)\n"
    "  server=$(printf '%s' \"$input\" | sed -n 's/.*\"ServerURL\":\"\\([^\"]*\\)\".*/\\1/p') ;;\n"
    "*) echo \"unknown action $1\"; exit 2 ;;\n"
    "esac\n"
    "echo \"$1 $server\" >> \"$CRED_DB/log\"\n"
    "file=\"$CRED_DB/$(printf '%s' \"$server\" | tr '/:' '__')\"\n"
    "case \"$1\" in\n"
    "get) [ -f \"$file\" ] && exec cat \"$file\" ;;\n"
    "store) printf '%s' \"$input\" > \"$file\"; exit 0 ;;\n"
    "erase) [ -f \"$file\" ] && exec rm \"$file\" ;;\n"
    "esac\n"
    "echo 'credentials not found in native keychain'\n"
    "exit 1\n";

/* Has nothing, whatever it is asked. */
static const char helper_none[] =
    "#!/bin/sh\n"
    "cat >/dev/null\n"
    "echo 'credentials not found in native keychain'\n"
    "exit 1\n";

static const char helper_broken[] =
    "#!/bin/sh\n"
    "cat >/dev/null\n"
    "echo 'boom: the keyring is locked'\n"
    "exit 3\n";

static const char helper_garbage[] =
    "#!/bin/sh\n"
    "cat >/dev/null\n"
    "echo 'this is not json'\n";

/* Closes its stdin unread and answers anyway. */
static const char helper_deaf[] =
    "#!/bin/sh\n"
    "exec 0<&-\n"
    "echo '{\"Username\":\"deaf\",\"Secret\":\"x\"}'\n";

/* ---- a temporary HOME, XDG_RUNTIME_DIR and PATH for each test ---- */

struct env {
  char *root;
  char *old_path;
};

static char *at(const struct env *e, const char *rel)
{
  return xasprintf("%s/%s", e->root, rel);
}

static void mkdir_parents(const char *path)
{
  cleanup_free char *p = xstrdup(path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/')
      continue;
    *s = '\0';
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
      cb_die("mkdir %s: %s", p, strerror(errno));
    *s = '/';
  }
}

/* Write root/rel, creating its directories. */
static void put(const struct env *e, const char *rel, const char *content)
{
  cleanup_free char *path = at(e, rel);
  cleanup_close int fd = -1;
  mkdir_parents(path);
  fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || cb_write_all(fd, content, strlen(content)) < 0)
    cb_die("write %s: %s", path, strerror(errno));
}

static void put_script(const struct env *e, const char *name, const char *body)
{
  cleanup_free char *rel = xasprintf("bin/docker-credential-%s", name);
  cleanup_free char *path = at(e, rel);
  put(e, rel, body);
  if (chmod(path, 0755) < 0)
    cb_die("chmod %s: %s", path, strerror(errno));
}

static char *get(const struct env *e, const char *rel)
{
  cleanup_free char *path = at(e, rel);
  return unit_slurp(path);
}

static void expect_file(int line, const struct env *e, const char *rel, const char *want)
{
  cleanup_free char *got = get(e, rel);
  if (got == NULL || strcmp(got, want) != 0)
    unit_fail(__FILE__, line, "%s holds \"%s\", expected \"%s\"", rel, got ? got : "(none)",
              want);
}
#define CHECK_FILE(e, rel, want) expect_file(__LINE__, e, rel, want)

static bool exists(const struct env *e, const char *rel)
{
  cleanup_free char *path = at(e, rel);
  return access(path, F_OK) == 0;
}

static void env_setup(struct env *e)
{
  const char *path = getenv("PATH");
  cleanup_free char *home = NULL;
  cleanup_free char *run = NULL;
  cleanup_free char *db = NULL;
  cleanup_free char *bin = NULL;
  cleanup_free char *new_path = NULL;

  e->root = unit_temp_dir("auth");
  e->old_path = xstrdup(path ? path : "/usr/bin:/bin");
  home = at(e, "home");
  run = at(e, "run");
  db = at(e, "db");
  bin = at(e, "bin");
  new_path = xasprintf("%s:%s", bin, e->old_path);
  put(e, "home/.keep", "");
  put(e, "run/.keep", "");
  put(e, "db/.keep", "");
  put_script(e, "test", helper_test);
  put_script(e, "none", helper_none);
  put_script(e, "broken", helper_broken);
  put_script(e, "garbage", helper_garbage);
  put_script(e, "deaf", helper_deaf);
  setenv("HOME", home, 1);
  setenv("XDG_RUNTIME_DIR", run, 1);
  setenv("CRED_DB", db, 1);
  setenv("PATH", new_path, 1);
  unsetenv("DOCKER_CONFIG");
  unsetenv("REGISTRY_AUTH_FILE");
}

static void env_teardown(struct env *e)
{
  setenv("PATH", e->old_path, 1);
  cb_remove_tree(AT_FDCWD, e->root);
  free(e->root);
  free(e->old_path);
}

/* A file with credentials for reg.example in its username and password */
#define REG_FIELDS(user, pass)                                                        \
  "{\"auths\":{\"reg.example\":{\"username\":\"" user "\",\"password\":\"" pass "\"}}}"

#define DOCKER_CONFIG_REL "home/.docker/config.json"
#define XDG_AUTH_REL "run/containers/auth.json"
#define CONFIG_AUTH_REL "home/.config/containers/auth.json"

/* Look registry up; user NULL expects nothing (1). */
static void expect_creds(int line, const char *registry, const char *authfile, const char *user,
                         const char *pass)
{
  struct oci_credentials c = { (char *)"junk", (char *)"junk" };
  struct cb_error err;
  int rc = oci_credentials_lookup(registry, authfile, &c, &err);

  if (rc < 0) {
    unit_fail(__FILE__, line, "lookup \"%s\" failed: %s", registry, err.msg);
    return;
  }
  if (user == NULL) {
    if (rc != 1)
      unit_fail(__FILE__, line, "lookup \"%s\" found \"%s\", expected nothing", registry,
                c.username);
    if (c.username || c.password)
      unit_fail(__FILE__, line, "lookup \"%s\" left fields set", registry);
    oci_credentials_release(&c);
    return;
  }
  if (rc != 0) {
    unit_fail(__FILE__, line, "lookup \"%s\" found nothing", registry);
    return;
  }
  if (strcmp(c.username, user) != 0 || strcmp(c.password, pass) != 0)
    unit_fail(__FILE__, line, "lookup \"%s\": \"%s\":\"%s\", expected \"%s\":\"%s\"", registry,
              c.username, c.password, user, pass);
  oci_credentials_release(&c);
  if (c.username || c.password)
    unit_fail(__FILE__, line, "release left fields set");
}
#define CHECK_CREDS(registry, authfile, user, pass)                                   \
  expect_creds(__LINE__, registry, authfile, user, pass)

/* Look registry up expecting an error whose message holds a and b. */
static void expect_lookup_error(int line, const char *registry, const char *authfile,
                                const char *a, const char *b)
{
  struct oci_credentials c = OCI_CREDENTIALS_INIT;
  struct cb_error err;
  int rc;

  err.msg[0] = '\0';
  rc = oci_credentials_lookup(registry, authfile, &c, &err);
  if (rc != -1) {
    unit_fail(__FILE__, line, "lookup \"%s\" returned %d, expected an error", registry, rc);
    oci_credentials_release(&c);
    return;
  }
  if (c.username || c.password)
    unit_fail(__FILE__, line, "lookup \"%s\" left fields set after failing", registry);
  if (strstr(err.msg, a) == NULL || (b && strstr(err.msg, b) == NULL))
    unit_fail(__FILE__, line, "error \"%s\" lacks \"%s\" or \"%s\"", err.msg, a, b ? b : "");
  if (strchr(err.msg, '\n'))
    unit_fail(__FILE__, line, "error \"%s\" spans lines", err.msg);
}
#define CHECK_LOOKUP_ERROR(registry, authfile, a, b)                                  \
  expect_lookup_error(__LINE__, registry, authfile, a, b)

static int store(const char *registry, const char *authfile, const char *user, const char *pass,
                 struct cb_error *err)
{
  struct oci_credentials c = { (char *)user, (char *)pass };
  return oci_credentials_store(registry, authfile, &c, err);
}

/* The file at root/rel as JSON; NULL (a failure) when it is not. */
static json_t *load(const struct env *e, const char *rel)
{
  cleanup_free char *path = at(e, rel);
  json_error_t jerr;
  json_t *j = json_load_file(path, 0, &jerr);
  if (j == NULL)
    unit_fail(__FILE__, __LINE__, "%s: %s", path, jerr.text);
  return j;
}

static const char *jstr_at(json_t *root, const char *section, const char *key, const char *member)
{
  json_t *v = json_object_get(json_object_get(json_object_get(root, section), key), member);
  return json_string_value(v);
}

/* ---- lookup ---- */

static void test_lookup_precedence(void)
{
  struct env e;
  cleanup_free char *authfile = NULL;
  cleanup_free char *envfile = NULL;
  env_setup(&e);
  authfile = at(&e, "authfile.json");
  envfile = at(&e, "env.json");

  put(&e, "authfile.json", REG_FIELDS("authfile", "1"));
  put(&e, "env.json", REG_FIELDS("env", "2"));
  put(&e, XDG_AUTH_REL, REG_FIELDS("xdg", "3"));
  put(&e, CONFIG_AUTH_REL, REG_FIELDS("config", "4"));
  put(&e, DOCKER_CONFIG_REL, REG_FIELDS("docker", "5"));
  setenv("REGISTRY_AUTH_FILE", envfile, 1);

  CHECK_CREDS("reg.example", authfile, "authfile", "1");
  CHECK_CREDS("reg.example", NULL, "env", "2");
  CHECK_CREDS("reg.example", "", "env", "2");
  unsetenv("REGISTRY_AUTH_FILE");
  CHECK_CREDS("reg.example", NULL, "xdg", "3");
  put(&e, XDG_AUTH_REL, "{\"auths\":{}}");
  CHECK_CREDS("reg.example", NULL, "config", "4");
  put(&e, CONFIG_AUTH_REL, "{}");
  CHECK_CREDS("reg.example", NULL, "docker", "5");
  put(&e, DOCKER_CONFIG_REL, "{\"auths\":{\"other.example\":{\"auth\":\"" B64_USER_PASS "\"}}}");
  CHECK_CREDS("reg.example", NULL, NULL, NULL);
  CHECK_CREDS("other.example", NULL, "user", "pass");
  env_teardown(&e);
}

static void test_lookup_sources(void)
{
  struct env e;
  cleanup_free char *authfile = NULL;
  cleanup_free char *envfile = NULL;
  cleanup_free char *missing = NULL;
  cleanup_free char *dockerdir = NULL;
  env_setup(&e);
  authfile = at(&e, "authfile.json");
  envfile = at(&e, "env.json");
  missing = at(&e, "missing/auth.json");
  dockerdir = at(&e, "dockerdir");

  /* with --authfile, $REGISTRY_AUTH_FILE is not read */
  put(&e, "authfile.json", "{\"auths\":{}}");
  put(&e, "env.json", REG_FIELDS("env", "2"));
  put(&e, DOCKER_CONFIG_REL, REG_FIELDS("docker", "5"));
  setenv("REGISTRY_AUTH_FILE", envfile, 1);
  CHECK_CREDS("reg.example", authfile, "docker", "5");
  /* an authfile that does not exist is passed over */
  CHECK_CREDS("reg.example", missing, "docker", "5");
  unsetenv("REGISTRY_AUTH_FILE");

  /* $DOCKER_CONFIG replaces ~/.docker */
  put(&e, "dockerdir/config.json", REG_FIELDS("dc", "6"));
  setenv("DOCKER_CONFIG", dockerdir, 1);
  CHECK_CREDS("reg.example", NULL, "dc", "6");
  unsetenv("DOCKER_CONFIG");

  /* a file can be empty; a directory in a file's place is an error */
  put(&e, XDG_AUTH_REL, "\n");
  CHECK_CREDS("reg.example", NULL, "docker", "5");
  CHECK_LOOKUP_ERROR("reg.example", dockerdir, "read credentials \"",
                     "dockerdir\": Is a directory");

  /* no home at all: only what $XDG_RUNTIME_DIR holds */
  put(&e, XDG_AUTH_REL, REG_FIELDS("xdg", "3"));
  setenv("HOME", missing, 1);
  CHECK_CREDS("reg.example", NULL, "xdg", "3");
  CHECK_LOOKUP_ERROR("bad registry", NULL, "invalid registry \"bad registry\"", NULL);
  env_teardown(&e);
}

static void test_lookup_key_spellings(void)
{
  struct env e;
  env_setup(&e);
  put(&e, DOCKER_CONFIG_REL,
      "{\"auths\":{"
      "\"https://a.example/v1/\":{\"auth\":\"" B64_USER_PASS "\"},"
      "\"http://b.example\":{\"username\":\"b\",\"password\":\"pb\"},"
      "\"c.example:5000\":{\"username\":\"c\",\"password\":\"pc\"},"
      "\"https://d.example\":{\"username\":\"d\",\"password\":\"pd\"},"
      "\"quay.example/some/namespace\":{\"username\":\"q\",\"password\":\"pq\"},"
      "\"https://e.example.evil/\":{\"username\":\"evil\",\"password\":\"x\"},"
      "\"ftp://f.example\":{\"username\":\"ftp\",\"password\":\"x\"}"
      "}}");
  CHECK_CREDS("a.example", NULL, "user", "pass");
  CHECK_CREDS("b.example", NULL, "b", "pb");
  CHECK_CREDS("c.example:5000", NULL, "c", "pc");
  CHECK_CREDS("d.example", NULL, "d", "pd");
  CHECK_CREDS("quay.example", NULL, "q", "pq");
  CHECK_CREDS("A.Example", NULL, "user", "pass");
  CHECK_CREDS("https://a.example/v2/", NULL, "user", "pass");
  /* neither a longer host, another port nor an unknown scheme */
  CHECK_CREDS("e.example", NULL, NULL, NULL);
  CHECK_CREDS("c.example", NULL, NULL, NULL);
  CHECK_CREDS("f.example", NULL, NULL, NULL);

  /* the bare host, as a store writes it, wins over older spellings */
  put(&e, DOCKER_CONFIG_REL,
      "{\"auths\":{"
      "\"https://g.example/v1/\":{\"username\":\"old\",\"password\":\"1\"},"
      "\"g.example\":{\"username\":\"new\",\"password\":\"2\"}"
      "}}");
  CHECK_CREDS("g.example", NULL, "new", "2");
  env_teardown(&e);
}

static void test_lookup_docker_hub(void)
{
  struct env e;
  env_setup(&e);
  put(&e, DOCKER_CONFIG_REL,
      "{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"" B64_USER_PASS "\"}}}");
  CHECK_CREDS("docker.io", NULL, "user", "pass");
  CHECK_CREDS("index.docker.io", NULL, "user", "pass");
  CHECK_CREDS("io", NULL, NULL, NULL);

  /* podman's spelling, in an auth.json */
  put(&e, XDG_AUTH_REL, "{\"auths\":{\"docker.io\":{\"username\":\"pod\",\"password\":\"man\"}}}");
  CHECK_CREDS("docker.io", NULL, "pod", "man");

  /* Docker's own key first in its config, whatever the order */
  put(&e, XDG_AUTH_REL, "{}");
  put(&e, DOCKER_CONFIG_REL,
      "{\"auths\":{\"docker.io\":{\"username\":\"old\",\"password\":\"1\"},"
      "\"https://index.docker.io/v1/\":{\"username\":\"new\",\"password\":\"2\"}}}");
  CHECK_CREDS("docker.io", NULL, "new", "2");
  env_teardown(&e);
}

static void test_lookup_entry_forms(void)
{
  struct env e;
  env_setup(&e);
  put(&e, DOCKER_CONFIG_REL,
      "{\"auths\":{"
      "\"fields.example\":{\"username\":\"u\",\"password\":\"p\"},"
      "\"colon.example\":{\"auth\":\"" B64_ALICE "\"},"
      "\"both.example\":{\"auth\":\"" B64_USER_PASS "\",\"username\":\"ignored\"},"
      "\"token.example\":{\"identitytoken\":\"tok\"},"
      "\"usertoken.example\":{\"auth\":\"dTo=\",\"identitytoken\":\"tok2\"},"
      "\"pwtoken.example\":{\"auth\":\"" B64_USER_PASS "\",\"identitytoken\":\"tok3\"},"
      "\"empty.example\":{},"
      "\"null.example\":null,"
      "\"blank.example\":{\"auth\":\"\",\"email\":\"x@example.com\"}"
      "}}");
  CHECK_CREDS("fields.example", NULL, "u", "p");
  CHECK_CREDS("colon.example", NULL, "alice", "s3cr:et");
  CHECK_CREDS("both.example", NULL, "user", "pass");
  CHECK_CREDS("token.example", NULL, "<token>", "tok");
  /* "u:" beside a token: the token is the password */
  CHECK_CREDS("usertoken.example", NULL, "<token>", "tok2");
  CHECK_CREDS("pwtoken.example", NULL, "user", "pass");
  CHECK_CREDS("empty.example", NULL, NULL, NULL);
  CHECK_CREDS("null.example", NULL, NULL, NULL);
  CHECK_CREDS("blank.example", NULL, NULL, NULL);
  env_teardown(&e);
}

static void test_lookup_malformed_json(void)
{
  struct env e;
  cleanup_free char *path = NULL;
  env_setup(&e);
  path = at(&e, DOCKER_CONFIG_REL);
  put(&e, DOCKER_CONFIG_REL, "{\n  \"auths\": {\n    \"reg.example\": {\"auth\": }\n  }\n}\n");
  CHECK_LOOKUP_ERROR("reg.example", NULL, path, "\": invalid JSON at line 3: ");
  CHECK_LOOKUP_ERROR("other.example", NULL, "read credentials \"", "invalid JSON at line 3");

  /* an earlier file that has the registry is read first */
  put(&e, XDG_AUTH_REL, REG_FIELDS("xdg", "3"));
  CHECK_CREDS("reg.example", NULL, "xdg", "3");

  put(&e, DOCKER_CONFIG_REL, "[\"auths\"]");
  CHECK_LOOKUP_ERROR("other.example", NULL, path, "not a JSON object");
  put(&e, DOCKER_CONFIG_REL, "\"\\u0000\"");
  CHECK_LOOKUP_ERROR("other.example", NULL, path, "invalid JSON at line 1");
  put(&e, DOCKER_CONFIG_REL, "{\"auths\":[]}");
  CHECK_LOOKUP_ERROR("other.example", NULL, path, "auths is not an object");
  put(&e, DOCKER_CONFIG_REL, "{\"auths\":{\"other.example\":\"dXNlcjpwYXNz\"}}");
  CHECK_LOOKUP_ERROR("other.example", NULL, path, "auths[\"other.example\"] is not an object");
  put(&e, DOCKER_CONFIG_REL, "{\"auths\":{\"other.example\":{\"auth\":42}}}");
  CHECK_LOOKUP_ERROR("other.example", NULL, path, "auths[\"other.example\"].auth is not a string");
  put(&e, DOCKER_CONFIG_REL,
      "{\"auths\":{\"other.example\":{\"username\":\"u\",\"password\":[]}}}");
  CHECK_LOOKUP_ERROR("other.example", NULL, "auths[\"other.example\"].password", "not a string");
  put(&e, DOCKER_CONFIG_REL, "{\"credHelpers\":\"test\"}");
  CHECK_LOOKUP_ERROR("other.example", NULL, path, "credHelpers is not an object");
  put(&e, DOCKER_CONFIG_REL, "{\"credHelpers\":{\"other.example\":1}}");
  CHECK_LOOKUP_ERROR("other.example", NULL, "credHelpers[\"other.example\"] is not a string", NULL);
  put(&e, DOCKER_CONFIG_REL, "{\"credsStore\":{}}");
  CHECK_LOOKUP_ERROR("other.example", NULL, "credsStore is not a string", NULL);
  /* a key is quoted on one line, whatever it holds */
  put(&e, DOCKER_CONFIG_REL, "{\"auths\":{\"other.example/\\n\\\"x\":7}}");
  CHECK_LOOKUP_ERROR("other.example", NULL, "auths[\"other.example/\\x0a\\\"x\"]", NULL);

  /* what does not concern the registry is not looked at */
  put(&e, DOCKER_CONFIG_REL,
      "{\"auths\":{\"bad.example\":7,\"worse.example\":{\"auth\":[]},"
      "\"other.example\":{\"auth\":\"" B64_USER_PASS "\"}},"
      "\"credHelpers\":{\"bad.example\":false},\"HttpHeaders\":3}");
  CHECK_CREDS("other.example", NULL, "user", "pass");
  env_teardown(&e);
}

static void test_lookup_bad_base64(void)
{
  struct env e;
  cleanup_free char *path = NULL;
  env_setup(&e);
  path = at(&e, DOCKER_CONFIG_REL);
  put(&e, DOCKER_CONFIG_REL,
      "{\"auths\":{"
      "\"bang.example\":{\"auth\":\"!!!!\"},"
      "\"short.example\":{\"auth\":\"dXNlcjpwYXN\"},"
      "\"space.example\":{\"auth\":\"dXNl cjpwYXNz\"},"
      "\"inner.example\":{\"auth\":\"dX=lcjpwYXNz\"},"
      "\"nul.example\":{\"auth\":\"AGE6Yg==\"},"
      "\"nocolon.example\":{\"auth\":\"" B64_NOCOLON "\"}"
      "}}");
  CHECK_LOOKUP_ERROR("bang.example", NULL, path,
                     "auths[\"bang.example\"].auth is not valid base64");
  CHECK_LOOKUP_ERROR("short.example", NULL, path,
                     "auths[\"short.example\"].auth is not valid base64");
  CHECK_LOOKUP_ERROR("space.example", NULL, path, "is not valid base64");
  CHECK_LOOKUP_ERROR("inner.example", NULL, path, "is not valid base64");
  CHECK_LOOKUP_ERROR("nul.example", NULL, path, "is not valid base64");
  CHECK_LOOKUP_ERROR("nocolon.example", NULL, path,
                     "auths[\"nocolon.example\"].auth does not decode to \"user:password\"");
  env_teardown(&e);
}

/* ---- store and erase ---- */

static void test_store_round_trip(void)
{
  struct env e;
  struct cb_error err;
  struct stat st;
  cleanup_free char *path = NULL;
  json_t *j;
  env_setup(&e);
  path = at(&e, DOCKER_CONFIG_REL);

  /* the directory is created, 0700 */
  CHECK_INT(store("reg.example", NULL, "user", "pass", &err), 0);
  CHECK_INT(stat(path, &st), 0);
  CHECK_INT(st.st_mode & 07777, 0600);
  {
    cleanup_free char *dir = at(&e, "home/.docker");
    CHECK_INT(stat(dir, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0700);
  }
  CHECK_CREDS("reg.example", NULL, "user", "pass");

  put(&e, DOCKER_CONFIG_REL,
      "{\"auths\":{\"other.example\":{\"auth\":\"" B64_FILE_PW "\",\"email\":\"a@b\"},"
      "\"reg.example\":{\"auth\":\"" B64_FILE_PW "\"}},"
      "\"HttpHeaders\":{\"User-Agent\":\"x\"},\"psFormat\":\"table {{.ID}}\"}");
  chmod(path, 0644);
  CHECK_INT(store("reg.example", NULL, "alice", "s3cr:et \xc3\xa9", &err), 0);
  CHECK_INT(store("docker.io", NULL, "hub", "pw", &err), 0);
  CHECK_INT(store("https://localhost:5000/v2/", NULL, "user", "pass", &err), 0);
  CHECK_CREDS("reg.example", NULL, "alice", "s3cr:et \xc3\xa9");
  CHECK_CREDS("docker.io", NULL, "hub", "pw");
  CHECK_CREDS("other.example", NULL, "file", "pw");
  CHECK_INT(stat(path, &st), 0);
  CHECK_INT(st.st_mode & 07777, 0600);

  j = load(&e, DOCKER_CONFIG_REL);
  CHECK_STR(jstr_at(j, "auths", "https://index.docker.io/v1/", "auth"), "aHViOnB3");
  CHECK_STR(jstr_at(j, "auths", "localhost:5000", "auth"), B64_USER_PASS);
  CHECK_STR(jstr_at(j, "auths", "other.example", "auth"), B64_FILE_PW);
  CHECK_STR(jstr_at(j, "auths", "other.example", "email"), "a@b");
  CHECK_STR(jstr_at(j, "HttpHeaders", NULL, NULL), NULL);
  CHECK_STR(json_string_value(json_object_get(json_object_get(j, "HttpHeaders"), "User-Agent")),
            "x");
  CHECK_STR(json_string_value(json_object_get(j, "psFormat")), "table {{.ID}}");
  CHECK_INT(json_object_size(json_object_get(j, "auths")), 4);
  json_decref(j);

  /* an identity token is kept as one */
  CHECK_INT(store("token.example", NULL, "<token>", "tok", &err), 0);
  CHECK_CREDS("token.example", NULL, "<token>", "tok");
  j = load(&e, DOCKER_CONFIG_REL);
  CHECK_STR(jstr_at(j, "auths", "token.example", "identitytoken"), "tok");
  json_decref(j);

  /* no temporary file is left behind */
  {
    cleanup_free char *dir = at(&e, "home/.docker");
    cleanup_free char *names = unit_list_dir(dir);
    CHECK_STR(names, "config.json");
  }
  env_teardown(&e);
}

static void test_store_targets(void)
{
  struct env e;
  struct cb_error err;
  cleanup_free char *authfile = NULL;
  cleanup_free char *envfile = NULL;
  cleanup_free char *dockerdir = NULL;
  json_t *j;
  env_setup(&e);
  authfile = at(&e, "deep/er/auth.json");
  envfile = at(&e, "env.json");
  dockerdir = at(&e, "dockerdir");

  /* an auth.json: Docker Hub is "docker.io"; credsStore is Docker's */
  put(&e, "env.json", "{\"credsStore\":\"broken\"}");
  setenv("REGISTRY_AUTH_FILE", envfile, 1);
  CHECK_INT(store("docker.io", authfile, "a", "1", &err), 0);
  CHECK_INT(store("docker.io", NULL, "e", "2", &err), 0);
  j = load(&e, "deep/er/auth.json");
  CHECK_STR(jstr_at(j, "auths", "docker.io", "auth"), "YTox");
  json_decref(j);
  j = load(&e, "env.json");
  CHECK_STR(jstr_at(j, "auths", "docker.io", "auth"), "ZToy");
  CHECK_STR(json_string_value(json_object_get(j, "credsStore")), "broken");
  json_decref(j);
  CHECK(!exists(&e, DOCKER_CONFIG_REL));
  unsetenv("REGISTRY_AUTH_FILE");

  setenv("DOCKER_CONFIG", dockerdir, 1);
  CHECK_INT(store("reg.example", NULL, "d", "3", &err), 0);
  CHECK(exists(&e, "dockerdir/config.json"));
  CHECK(!exists(&e, DOCKER_CONFIG_REL));
  CHECK_CREDS("reg.example", NULL, "d", "3");
  env_teardown(&e);
}

static void test_store_refused(void)
{
  struct env e;
  struct cb_error err;
  cleanup_free char *after = NULL;
  cleanup_free char *last = NULL;
  env_setup(&e);

  /* a file that cannot be read is left as it is */
  put(&e, DOCKER_CONFIG_REL, "{\"auths\":{\"reg.example\":{}},\n\"x\": [1,}\n");
  err.msg[0] = '\0';
  CHECK_INT(store("reg.example", NULL, "user", "pass", &err), -1);
  CHECK_CONTAINS(err.msg, "store credentials in \"");
  CHECK_CONTAINS(err.msg, "config.json\": invalid JSON at line 2");
  put(&e, DOCKER_CONFIG_REL, "{\"auths\":\"no\"}");
  CHECK_INT(store("reg.example", NULL, "user", "pass", &err), -1);
  CHECK_CONTAINS(err.msg, "auths is not an object");
  CHECK_INT(oci_credentials_erase("reg.example", NULL, &err), -1);
  CHECK_CONTAINS(err.msg, "auths is not an object");
  after = get(&e, DOCKER_CONFIG_REL);
  CHECK_STR(after, "{\"auths\":\"no\"}");

  /* credentials it cannot keep */
  put(&e, DOCKER_CONFIG_REL, "{\"psFormat\":\"x\"}");

  CHECK_INT(store("reg.example", NULL, "us:er", "pass", &err), -1);
  CHECK_CONTAINS(err.msg, "contains \":\"");
  CHECK_INT(store("reg example", NULL, "user", "pass", &err), -1);
  CHECK_CONTAINS(err.msg, "invalid registry");
  CHECK_INT(store("reg.example", NULL, NULL, "pass", &err), -1);
  CHECK_CONTAINS(err.msg, "no username or password");
  CHECK_INT(store("reg.example", NULL, "<token>", "\xff", &err), -1);
  CHECK_CONTAINS(err.msg, "not valid UTF-8");
  last = get(&e, DOCKER_CONFIG_REL);
  CHECK_STR(last, "{\"psFormat\":\"x\"}");
  env_teardown(&e);
}

static void test_store_symlink(void)
{
  struct env e;
  struct cb_error err;
  struct stat st;
  cleanup_free char *link = NULL;
  cleanup_free char *real = NULL;
  cleanup_free char *content = NULL;
  env_setup(&e);
  link = at(&e, DOCKER_CONFIG_REL);
  real = at(&e, "dotfiles/docker.json");
  put(&e, "dotfiles/docker.json", "{\"psFormat\":\"x\"}");
  put(&e, "home/.docker/.keep", "");
  CHECK_INT(symlink(real, link), 0);

  CHECK_INT(store("reg.example", NULL, "user", "pass", &err), 0);
  CHECK_INT(lstat(link, &st), 0);
  CHECK(S_ISLNK(st.st_mode));
  content = get(&e, "dotfiles/docker.json");
  CHECK_CONTAINS(content, B64_USER_PASS);
  CHECK_CONTAINS(content, "\"psFormat\": \"x\"");
  CHECK_CREDS("reg.example", NULL, "user", "pass");
  env_teardown(&e);
}

static void test_erase(void)
{
  struct env e;
  struct cb_error err;
  json_t *j;
  env_setup(&e);

  CHECK_INT(oci_credentials_erase("reg.example", NULL, &err), 1);
  CHECK(!exists(&e, DOCKER_CONFIG_REL));
  CHECK_INT(store("reg.example", NULL, "user", "pass", &err), 0);
  CHECK_INT(oci_credentials_erase("reg.example", NULL, &err), 0);
  CHECK_CREDS("reg.example", NULL, NULL, NULL);
  CHECK_INT(oci_credentials_erase("reg.example", NULL, &err), 1);

  /* every spelling goes, and nothing else */
  put(&e, DOCKER_CONFIG_REL,
      "{\"auths\":{"
      "\"https://reg.example/v1/\":{\"auth\":\"" B64_USER_PASS "\"},"
      "\"other.example\":{\"auth\":\"" B64_FILE_PW "\"},"
      "\"http://REG.example\":{\"auth\":\"" B64_USER_PASS "\"},"
      "\"reg.example/ns\":{\"auth\":\"" B64_USER_PASS "\"},"
      "\"reg.example:5000\":{\"auth\":\"" B64_USER_PASS "\"}"
      "},\"psFormat\":\"x\"}");
  CHECK_INT(oci_credentials_erase("reg.example", NULL, &err), 0);
  j = load(&e, DOCKER_CONFIG_REL);
  CHECK_INT(json_object_size(json_object_get(j, "auths")), 2);
  CHECK(json_object_get(json_object_get(j, "auths"), "other.example") != NULL);
  CHECK(json_object_get(json_object_get(j, "auths"), "reg.example:5000") != NULL);
  CHECK_STR(json_string_value(json_object_get(j, "psFormat")), "x");
  json_decref(j);
  CHECK_INT(oci_credentials_erase("reg.example", NULL, &err), 1);

  /* Docker Hub under both its spellings */
  put(&e, DOCKER_CONFIG_REL,
      "{\"auths\":{\"https://index.docker.io/v1/\":{},\"docker.io\":{}}}");
  CHECK_INT(oci_credentials_erase("docker.io", NULL, &err), 0);
  CHECK_FILE(&e, DOCKER_CONFIG_REL, "{\n  \"auths\": {}\n}\n");

  put(&e, DOCKER_CONFIG_REL, "{\"auths\":{\"reg.example\":{}},");
  CHECK_INT(oci_credentials_erase("reg.example", NULL, &err), -1);
  CHECK_CONTAINS(err.msg, "erase credentials from \"");
  CHECK_CONTAINS(err.msg, "invalid JSON");
  env_teardown(&e);
}

/* ---- credential helpers ---- */

#define HELPER_ENTRY(server, user, secret)                                            \
  "{\"ServerURL\":\"" server "\",\"Username\":\"" user "\",\"Secret\":\"" secret "\"}"

static void test_helper_lookup(void)
{
  struct env e;
  cleanup_free char *log = NULL;
  env_setup(&e);
  put(&e, "db/reg.example", HELPER_ENTRY("reg.example", "helper-user", "helper-pass"));
  put(&e, "db/localhost_5000", HELPER_ENTRY("localhost:5000", "local", "pw"));

  /* credHelpers before auths */
  put(&e, DOCKER_CONFIG_REL,
      "{\"credHelpers\":{\"reg.example\":\"test\",\"localhost:5000\":\"test\"},"
      "\"auths\":{\"reg.example\":{\"auth\":\"" B64_FILE_PW "\"}}}");
  CHECK_CREDS("reg.example", NULL, "helper-user", "helper-pass");
  CHECK_CREDS("localhost:5000", NULL, "local", "pw");
  /* a helper that has nothing leaves auths to answer */
  {
    cleanup_free char *p = at(&e, "db/reg.example");
    CHECK_INT(unlink(p), 0);
  }
  CHECK_CREDS("reg.example", NULL, "file", "pw");

  /* credsStore after auths, for every registry */
  put(&e, "db/reg.example", HELPER_ENTRY("reg.example", "helper-user", "helper-pass"));
  put(&e, "db/https___index.docker.io_v1_",
      HELPER_ENTRY("https://index.docker.io/v1/", "hub", "hubpw"));
  put(&e, DOCKER_CONFIG_REL,
      "{\"credsStore\":\"test\",\"auths\":{\"reg.example\":{},\"https://index.docker.io/v1/\":{},"
      "\"file.example\":{\"auth\":\"" B64_FILE_PW "\"}}}");
  CHECK_CREDS("reg.example", NULL, "helper-user", "helper-pass");
  CHECK_CREDS("docker.io", NULL, "hub", "hubpw");
  CHECK_CREDS("file.example", NULL, "file", "pw");
  CHECK_CREDS("nowhere.example", NULL, NULL, NULL);

  log = get(&e, "db/log");
  CHECK_STR(log,
            "get reg.example\n"
            "get localhost:5000\n"
            "get reg.example\n"
            "get reg.example\n"
            "get https://index.docker.io/v1/\n"
            "get nowhere.example\n");
  env_teardown(&e);
}

static void test_helper_store_erase(void)
{
  struct env e;
  struct cb_error err;
  cleanup_free char *before = NULL;
  cleanup_free char *after = NULL;
  cleanup_free char *log = NULL;
  json_t *j;
  env_setup(&e);

  /* credHelpers: stale credentials in auths go, other keys stay */
  put(&e, DOCKER_CONFIG_REL,
      "{\"credHelpers\":{\"reg.example\":\"test\"},\"psFormat\":\"x\","
      "\"auths\":{\"reg.example\":{\"auth\":\"" B64_FILE_PW "\"},"
      "\"other.example\":{\"auth\":\"" B64_FILE_PW "\"}}}");
  CHECK_INT(store("reg.example", NULL, "user2", "pw2", &err), 0);
  CHECK_FILE(&e, "db/reg.example", HELPER_ENTRY("reg.example", "user2", "pw2"));
  j = load(&e, DOCKER_CONFIG_REL);
  CHECK(json_object_get(json_object_get(j, "auths"), "reg.example") == NULL);
  CHECK(json_object_get(json_object_get(j, "auths"), "other.example") != NULL);
  CHECK_STR(json_string_value(json_object_get(j, "psFormat")), "x");
  json_decref(j);
  CHECK_CREDS("reg.example", NULL, "user2", "pw2");
  CHECK_INT(oci_credentials_erase("reg.example", NULL, &err), 0);
  CHECK(!exists(&e, "db/reg.example"));
  CHECK_INT(oci_credentials_erase("reg.example", NULL, &err), 1);

  /* credsStore: the file is not rewritten when nothing in it changes */
  put(&e, DOCKER_CONFIG_REL,
      "{\"credsStore\":\"test\",\"auths\":{\"https://index.docker.io/v1/\":{}}}");
  before = get(&e, DOCKER_CONFIG_REL);
  CHECK_INT(store("docker.io", NULL, "hub", "hubpw", &err), 0);
  CHECK_FILE(&e, "db/https___index.docker.io_v1_",
            HELPER_ENTRY("https://index.docker.io/v1/", "hub", "hubpw"));
  after = get(&e, DOCKER_CONFIG_REL);
  CHECK_STR(after, before);
  CHECK_CREDS("docker.io", NULL, "hub", "hubpw");
  /* erase also drops the placeholder */
  CHECK_INT(oci_credentials_erase("docker.io", NULL, &err), 0);
  CHECK(!exists(&e, "db/https___index.docker.io_v1_"));
  CHECK_INT(oci_credentials_erase("docker.io", NULL, &err), 1);

  log = get(&e, "db/log");
  CHECK_STR(log,
            "store reg.example\n"
            "get reg.example\n"
            "erase reg.example\n"
            "erase reg.example\n"
            "store https://index.docker.io/v1/\n"
            "get https://index.docker.io/v1/\n"
            "erase https://index.docker.io/v1/\n"
            "erase https://index.docker.io/v1/\n");
  env_teardown(&e);
}

static void test_helper_not_found(void)
{
  struct env e;
  struct cb_error err;
  env_setup(&e);

  /* nothing in the helper: the search goes on to the next file */
  put(&e, XDG_AUTH_REL, "{\"credsStore\":\"none\"}");
  put(&e, DOCKER_CONFIG_REL,
      "{\"credHelpers\":{\"reg.example\":\"none\"},"
      "\"auths\":{\"other.example\":{\"auth\":\"" B64_USER_PASS "\"}}}");
  CHECK_CREDS("reg.example", NULL, NULL, NULL);
  CHECK_CREDS("other.example", NULL, "user", "pass");

  CHECK_INT(oci_credentials_erase("reg.example", NULL, &err), 1);
  CHECK_INT(store("reg.example", NULL, "user", "pass", &err), -1);
  CHECK_CONTAINS(err.msg, "docker-credential-none\" store: it answered");
  env_teardown(&e);
}

static void test_helper_failures(void)
{
  struct env e;
  struct cb_error err;
  cleanup_free char *path = NULL;
  env_setup(&e);
  path = at(&e, DOCKER_CONFIG_REL);

  put(&e, DOCKER_CONFIG_REL, "{\"credsStore\":\"broken\"}");
  CHECK_LOOKUP_ERROR("reg.example", NULL, path,
                     "\": credential helper \"docker-credential-broken\" get: exit status 3: "
                     "boom: the keyring is locked");
  CHECK_INT(store("reg.example", NULL, "user", "pass", &err), -1);
  CHECK_CONTAINS(err.msg, "docker-credential-broken\" store: exit status 3");
  CHECK_INT(oci_credentials_erase("reg.example", NULL, &err), -1);
  CHECK_CONTAINS(err.msg, "docker-credential-broken\" erase: exit status 3");

  put(&e, DOCKER_CONFIG_REL, "{\"credsStore\":\"missing\"}");
  CHECK_LOOKUP_ERROR("reg.example", NULL, "docker-credential-missing\" get: not found in $PATH",
                     NULL);
  put(&e, DOCKER_CONFIG_REL, "{\"credsStore\":\"garbage\"}");
  CHECK_LOOKUP_ERROR("reg.example", NULL, "docker-credential-garbage\" get: invalid JSON", NULL);
  put(&e, DOCKER_CONFIG_REL, "{\"credHelpers\":{\"reg.example\":\"../../bin/sh\"}}");
  CHECK_LOOKUP_ERROR("reg.example", NULL, "credHelpers[\"reg.example\"] names a path", NULL);
  CHECK_INT(store("reg.example", NULL, "user", "pass", &err), -1);
  CHECK_CONTAINS(err.msg, "names a path");
  put(&e, "db/reg.example", "{\"Username\":[],\"Secret\":\"s\"}");
  put(&e, DOCKER_CONFIG_REL, "{\"credsStore\":\"test\"}");
  CHECK_LOOKUP_ERROR("reg.example", NULL, "\"Username\" in its answer is not a string", NULL);
  env_teardown(&e);
}

/* A helper that does not read what it is given: no SIGPIPE, no zombie. */
static void test_helper_deaf(void)
{
  struct env e;
  struct cb_error err;
  sigset_t mask, pending;
  size_t n = 4 << 20;
  cleanup_free char *big = xmalloc(n + 1);
  env_setup(&e);
  memset(big, 'x', n);
  big[n] = '\0';

  put(&e, DOCKER_CONFIG_REL, "{\"credsStore\":\"deaf\"}");
  for (int i = 0; i < 3; i++) {
    err.msg[0] = '\0';
    CHECK_INT(store("reg.example", NULL, "user", big, &err), 0);
    CHECK_STR(err.msg, "");
  }
  CHECK_CREDS("reg.example", NULL, "deaf", "x");
  CHECK_INT(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
  CHECK(!sigismember(&mask, SIGPIPE));
  CHECK_INT(sigpending(&pending), 0);
  CHECK(!sigismember(&pending, SIGPIPE));
  CHECK_INT(waitpid(-1, NULL, WNOHANG), -1);
  CHECK_INT(errno, ECHILD);
  env_teardown(&e);
}

static const struct unit_test tests[] = {
  { "lookup_precedence", test_lookup_precedence },
  { "lookup_sources", test_lookup_sources },
  { "lookup_key_spellings", test_lookup_key_spellings },
  { "lookup_docker_hub", test_lookup_docker_hub },
  { "lookup_entry_forms", test_lookup_entry_forms },
  { "lookup_malformed_json", test_lookup_malformed_json },
  { "lookup_bad_base64", test_lookup_bad_base64 },
  { "store_round_trip", test_store_round_trip },
  { "store_targets", test_store_targets },
  { "store_refused", test_store_refused },
  { "store_symlink", test_store_symlink },
  { "erase", test_erase },
  { "helper_lookup", test_helper_lookup },
  { "helper_store_erase", test_helper_store_erase },
  { "helper_not_found", test_helper_not_found },
  { "helper_failures", test_helper_failures },
  { "helper_deaf", test_helper_deaf },
};

UNIT_MAIN(tests)
