/* cbuild: the entry point; global options, then the command. */
#include "builder.h"

#include <sys/stat.h>

static const char main_usage[] =
    "Usage: cbuild [--root DIR] [COMMAND] [OPTIONS]\n"
    "\n"
    "A daemonless image builder: reads a Dockerfile and a build context and\n"
    "produces an OCI image, as root or rootless.\n"
    "\n"
    "Commands:\n"
    "  build      build an image from a Dockerfile (the default: cbuild -t app .)\n"
    "  parse      print a Dockerfile's stages and steps as JSON\n"
    "  images     list the images of the store\n"
    "  inspect    print an image's manifest and config\n"
    "  rmi        remove image names\n"
    "  tag        give an image another name\n"
    "  save       write images as an OCI tarball\n"
    "  pull       pull an image from a registry into the store\n"
    "  push       push an image of the store to a registry\n"
    "  login      keep credentials for a registry\n"
    "  logout     forget them\n"
    "  df         show what the store holds\n"
    "  prune      remove build cache no image needs\n"
    "  help       show this help\n"
    "  version    show the version\n"
    "\n"
    "Global options:\n"
    "      --root DIR   the store (default $CBUILD_ROOT, /var/lib/cbuild for root,\n"
    "                   else ~/.local/share/cbuild)\n"
    "  -h, --help       show this help; 'cbuild COMMAND --help' for a command's\n"
    "      --version    show the version\n";

static bool is_command_word(const char *s)
{
  struct stat st;
  if (!(*s >= 'a' && *s <= 'z') || stat(s, &st) == 0)
    return false;
  for (; *s; s++)
    if (!(*s >= 'a' && *s <= 'z') && *s != '-')
      return false;
  return true;
}

int main(int argc, char **argv)
{
  const char *root = NULL;
  int i = 1;

  /* Global options come before the command. */
  while (i < argc) {
    if (strcmp(argv[i], "--version") == 0) {
      printf("cbuild version %s\n", CBUILD_VERSION);
      return BUILDER_EXIT_OK;
    }
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(main_usage, stdout);
      return BUILDER_EXIT_OK;
    }
    if (strcmp(argv[i], "--root") == 0 && i + 1 < argc && i + 2 < argc &&
        argv[i + 2][0] != '-') {
      /* `cbuild --root DIR build ...`; otherwise --root is build's own flag */
      root = argv[i + 1];
      i += 2;
      continue;
    }
    if (strncmp(argv[i], "--root=", 7) == 0 && i + 1 < argc && argv[i + 1][0] != '-') {
      root = argv[i] + 7;
      i++;
      continue;
    }
    break;
  }
  if (i >= argc) {
    fputs("cbuild: a command or a build context is required (see 'cbuild --help')\n", stderr);
    return BUILDER_EXIT_USAGE;
  }
  {
    static const struct {
      const char *name;
      int (*fn)(int, char **, const char *);
    } commands[] = {
      { "build", builder_cmd_build },     { "parse", builder_cmd_parse },
      { "images", builder_cmd_images },   { "inspect", builder_cmd_inspect },
      { "rmi", builder_cmd_rmi },         { "tag", builder_cmd_tag },
      { "save", builder_cmd_save },       { "df", builder_cmd_df },
      { "prune", builder_cmd_prune },     { "pull", builder_cmd_pull },
      { "push", builder_cmd_push },       { "login", builder_cmd_login },
      { "logout", builder_cmd_logout },
    };
    for (size_t c = 0; c < CB_ARRAY_SIZE(commands); c++)
      if (strcmp(argv[i], commands[c].name) == 0)
        return commands[c].fn(argc - i, argv + i, root);
  }
  if (strcmp(argv[i], "help") == 0) {
    fputs(main_usage, stdout);
    return BUILDER_EXIT_OK;
  }
  if (strcmp(argv[i], "version") == 0) {
    printf("cbuild version %s\n", CBUILD_VERSION);
    return BUILDER_EXIT_OK;
  }
  if (is_command_word(argv[i])) {
    fprintf(stderr, "cbuild: unknown command \"%s\" (see 'cbuild --help')\n", argv[i]);
    return BUILDER_EXIT_USAGE;
  }
  /* `cbuild -t app .`: build without the word. getopt skips argv[0]. */
  return builder_cmd_build(argc - i + 1, argv + i - 1, root);
}
