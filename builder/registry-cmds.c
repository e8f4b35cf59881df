/* The registry commands: pull, push, login, logout. */
#include "builder-internal.h"

#include <getopt.h>
#include <termios.h>
#include <unistd.h>

enum {
  OPT_ROOT = 256,
  OPT_PLATFORM,
  OPT_PASSWORD_STDIN,
};

static const struct option registry_options[] = {
  { "help", no_argument, NULL, 'h' },
  { "root", required_argument, NULL, OPT_ROOT },
  BUILDER_REGISTRY_OPTIONS,
  { "platform", required_argument, NULL, OPT_PLATFORM },
  { "quiet", no_argument, NULL, 'q' },
  { "username", required_argument, NULL, 'u' },
  { "password", required_argument, NULL, 'p' },
  { "password-stdin", no_argument, NULL, OPT_PASSWORD_STDIN },
  { NULL, 0, NULL, 0 },
};

static const char registry_flags_help[] =
    "      --authfile FILE       registry credentials (default $REGISTRY_AUTH_FILE,\n"
    "                            containers auth.json, ~/.docker/config.json)\n"
    "      --insecure-registry HOST[:PORT]  allow plain HTTP and unverified TLS\n"
    "      --tls-ca-cert FILE    trust this CA too\n"
    "      --root DIR            the store\n"
    "  -h, --help                show this help\n";

struct cmd_args {
  struct builder_registry reg;
  const char *root;
  const char *username, *password;
  bool password_stdin;
};

/* -1: go on; else the exit status.  `login` takes -u/-p. */
static int args_parse(const char *cmd, const char *help, int argc, char **argv,
                      struct cmd_args *a)
{
  bool login = strcmp(cmd, "login") == 0;
  int c;
  optind = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, login ? ":hqu:p:" : ":hq", registry_options, NULL)) != -1) {
    switch (c) {
    case 'h':
      fputs(help, stdout);
      fputs(registry_flags_help, stdout);
      return BUILDER_EXIT_OK;
    case 'q':
      a->reg.quiet = true;
      break;
    case OPT_ROOT:
      a->root = optarg;
      break;
    case OPT_PLATFORM:
      if (strcmp(cmd, "pull") != 0)
        return builder_cmd_usage(cmd, "unknown flag \"--platform\"");
      free(a->reg.platform);
      a->reg.platform = xstrdup(optarg);
      break;
    case 'u':
    case 'p':
    case OPT_PASSWORD_STDIN:
      if (!login)
        return builder_cmd_usage(cmd, "unknown flag");
      if (c == 'u')
        a->username = optarg;
      else if (c == 'p')
        a->password = optarg;
      else
        a->password_stdin = true;
      break;
    case ':':
      return builder_cmd_usage(cmd, "a flag needs a value");
    default:
      if (builder_registry_option(&a->reg, c, optarg))
        break;
      return builder_cmd_usage(cmd, "unknown flag");
    }
  }
  return -1;
}

int builder_cmd_pull(int argc, char **argv, const char *root)
{
  static const char help[] =
      "Usage: cbuild pull [OPTIONS] NAME\n\n"
      "Pull an image from its registry into the store (docker.io when the name\n"
      "has no registry); the manifest for --platform (default: this machine's).\n\n"
      "Options:\n"
      "      --platform OS/ARCH[/VARIANT]  choose from a multi-platform image\n"
      "  -q, --quiet               no progress\n";
  struct cmd_args a;
  struct cb_error err;
  struct cache_store *s;
  struct oci_descriptor desc;
  int rc;
  memset(&a, 0, sizeof(a));
  a.root = root;
  rc = args_parse("pull", help, argc, argv, &a);
  if (rc >= 0)
    goto out;
  if (argc - optind != 1) {
    rc = builder_cmd_usage("pull", "\"pull\" takes one image name");
    goto out;
  }
  if (!oci_reference_valid(argv[optind])) {
    struct oci_reference ref;
    oci_reference_parse(argv[optind], &ref, &err);
    rc = builder_cmd_usage("pull", err.msg);
    goto out;
  }
  s = builder_cmd_store(a.root, &err);
  if (!s) {
    rc = builder_cmd_fail(&err);
    goto out;
  }
  a.reg.pull = BUILDER_PULL_ALWAYS;
  if (builder_pull(s, &a.reg, argv[optind], NULL, &desc, &err) < 0)
    rc = builder_cmd_fail(&err);
  else {
    printf("%s\n", desc.digest);
    oci_descriptor_release(&desc);
    rc = BUILDER_EXIT_OK;
  }
  cache_store_close(s);
out:
  builder_registry_release(&a.reg);
  return rc;
}

int builder_cmd_push(int argc, char **argv, const char *root)
{
  static const char help[] =
      "Usage: cbuild push [OPTIONS] NAME [DESTINATION]\n\n"
      "Push an image of the store to a registry: to NAME's own, or to the\n"
      "reference DESTINATION.  Prints the pushed manifest's digest.\n\n"
      "Options:\n"
      "  -q, --quiet               no progress\n";
  struct cmd_args a;
  struct cb_error err;
  struct cache_store *s;
  char digest[OCI_DIGEST_SIZE];
  int rc, n;
  memset(&a, 0, sizeof(a));
  a.root = root;
  rc = args_parse("push", help, argc, argv, &a);
  if (rc >= 0)
    goto out;
  n = argc - optind;
  if (n < 1 || n > 2) {
    rc = builder_cmd_usage("push", "\"push\" takes an image name and an optional destination");
    goto out;
  }
  for (int i = 0; i < n; i++) {
    if (!oci_reference_valid(argv[optind + i])) {
      struct oci_reference ref;
      oci_reference_parse(argv[optind + i], &ref, &err);
      rc = builder_cmd_usage("push", err.msg);
      goto out;
    }
  }
  s = builder_cmd_store(a.root, &err);
  if (!s) {
    rc = builder_cmd_fail(&err);
    goto out;
  }
  if (builder_push(s, &a.reg, argv[optind], n == 2 ? argv[optind + 1] : NULL, digest, &err) < 0)
    rc = builder_cmd_fail(&err);
  else {
    printf("%s\n", digest);
    rc = BUILDER_EXIT_OK;
  }
  cache_store_close(s);
out:
  builder_registry_release(&a.reg);
  return rc;
}

/* "docker.io" for Docker Hub's spellings, else the host[:port] given. */
static char *registry_host(const char *arg)
{
  const char *p = arg;
  size_t n;
  if (strncmp(p, "https://", 8) == 0)
    p += 8;
  else if (strncmp(p, "http://", 7) == 0)
    p += 7;
  n = strcspn(p, "/");
  if ((n == 15 && strncmp(p, "index.docker.io", n) == 0) ||
      (n == 20 && strncmp(p, "registry-1.docker.io", n) == 0) ||
      (n == 9 && strncmp(p, "docker.io", n) == 0))
    return xstrdup("docker.io");
  return xstrndup(p, n);
}

/* A line of standard input, without its newline; echo off on a terminal. */
static char *read_line(const char *prompt, bool hide)
{
  struct termios old, quiet;
  bool tty = isatty(STDIN_FILENO);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  if (tty) {
    fputs(prompt, stderr);
    fflush(stderr);
  }
  if (tty && hide && tcgetattr(STDIN_FILENO, &old) == 0) {
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  } else
    hide = false;
  n = getline(&line, &cap, stdin);
  if (hide) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
  }
  if (n < 0) {
    free(line);
    return NULL;
  }
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
    line[--n] = '\0';
  return line;
}

int builder_cmd_login(int argc, char **argv, const char *root)
{
  static const char help[] =
      "Usage: cbuild login [OPTIONS] REGISTRY\n\n"
      "Check credentials against a registry and keep them for pulls and pushes\n"
      "(in --authfile, $REGISTRY_AUTH_FILE, or ~/.docker/config.json and its\n"
      "credential helper).\n\n"
      "Options:\n"
      "  -u, --username USER\n"
      "  -p, --password PASS       (visible to other users: prefer --password-stdin)\n"
      "      --password-stdin      read the password from standard input\n";
  struct cmd_args a;
  struct cb_error err;
  struct oci_credentials creds = OCI_CREDENTIALS_INIT;
  struct oci_registry *client;
  cleanup_free char *host = NULL;
  int rc;
  memset(&a, 0, sizeof(a));
  a.root = root;
  rc = args_parse("login", help, argc, argv, &a);
  if (rc >= 0)
    goto out;
  if (argc - optind != 1) {
    rc = builder_cmd_usage("login", "\"login\" takes one registry");
    goto out;
  }
  if (a.password && a.password_stdin) {
    rc = builder_cmd_usage("login", "--password and --password-stdin exclude each other");
    goto out;
  }
  host = registry_host(argv[optind]);
  creds.username = a.username ? xstrdup(a.username) : read_line("Username: ", false);
  if (a.password)
    creds.password = xstrdup(a.password);
  else
    creds.password = read_line("Password: ", !a.password_stdin);
  if (!creds.username || !*creds.username || !creds.password) {
    rc = builder_cmd_usage("login", "a username and a password are required");
    goto out;
  }
  client = builder_registry_client(&a.reg, host, "", &creds, &err);
  if (!client || oci_registry_check_login(client, &err) < 0) {
    oci_registry_free(client);
    rc = builder_cmd_fail(&err);
    goto out;
  }
  oci_registry_free(client);
  if (oci_credentials_store(host, a.reg.authfile, &creds, &err) < 0) {
    rc = builder_cmd_fail(&err);
    goto out;
  }
  fputs("Login Succeeded\n", stdout);
  rc = BUILDER_EXIT_OK;
out:
  oci_credentials_release(&creds);
  builder_registry_release(&a.reg);
  return rc;
}

int builder_cmd_logout(int argc, char **argv, const char *root)
{
  static const char help[] = "Usage: cbuild logout [OPTIONS] REGISTRY\n\n"
                             "Forget the credentials kept for a registry.\n\n"
                             "Options:\n";
  struct cmd_args a;
  struct cb_error err;
  cleanup_free char *host = NULL;
  int rc, r;
  memset(&a, 0, sizeof(a));
  a.root = root;
  rc = args_parse("logout", help, argc, argv, &a);
  if (rc >= 0)
    goto out;
  if (argc - optind != 1) {
    rc = builder_cmd_usage("logout", "\"logout\" takes one registry");
    goto out;
  }
  host = registry_host(argv[optind]);
  r = oci_credentials_erase(host, a.reg.authfile, &err);
  if (r < 0)
    rc = builder_cmd_fail(&err);
  else if (r > 0) {
    fprintf(stderr, "cbuild: not logged in to %s\n", host);
    rc = BUILDER_EXIT_FAIL;
  } else {
    printf("Removed login credentials for %s\n", host);
    rc = BUILDER_EXIT_OK;
  }
out:
  builder_registry_release(&a.reg);
  return rc;
}
