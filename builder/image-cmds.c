/* The store's commands: images, inspect, rmi, tag, save. */
#include "builder-internal.h"

#include "../cache/cache.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <time.h>
#include <unistd.h>

int builder_cmd_fail(const struct cb_error *err)
{
  fprintf(stderr, "cbuild: %s\n", err->msg);
  return BUILDER_EXIT_FAIL;
}

int builder_cmd_usage(const char *cmd, const char *text)
{
  fprintf(stderr, "cbuild: %s (see 'cbuild %s --help')\n", text, cmd);
  return BUILDER_EXIT_USAGE;
}

struct cache_store *builder_cmd_store(const char *root_flag, struct cb_error *err)
{
  cleanup_free char *root = cache_root(root_flag, err);
  return root ? cache_store_open(root, err) : NULL;
}

/* The image a name points at: its manifest descriptor, manifest and config. */
struct image {
  struct oci_descriptor desc;
  struct oci_manifest m;
  struct oci_config c;
  struct strbuf manifest_json;
  struct strbuf config_json;
};

static void image_release(struct image *img)
{
  oci_descriptor_release(&img->desc);
  oci_manifest_release(&img->m);
  oci_config_release(&img->c);
  strbuf_release(&img->manifest_json);
  strbuf_release(&img->config_json);
}

static int image_load(struct cache_store *s, const char *name, struct image *img,
                      struct cb_error *err)
{
  int r;
  memset(img, 0, sizeof(*img));
  strbuf_init(&img->manifest_json, 0);
  strbuf_init(&img->config_json, 0);
  r = cache_tag_get(s, name, &img->desc, err);
  if (r < 0)
    return -1;
  if (r > 0)
    return cb_error_set(err, "no image \"%s\" in the store", name);
  if (cache_blob_read(s, img->desc.digest, &img->manifest_json, err) < 0 ||
      oci_manifest_parse(img->manifest_json.buf, img->manifest_json.len, &img->m, err) < 0 ||
      cache_blob_read(s, img->m.config.digest, &img->config_json, err) < 0 ||
      oci_config_parse(img->config_json.buf, img->config_json.len, &img->c, err) < 0)
    return cb_error_wrap(err, "image \"%s\"", name);
  return 0;
}

/* Only --help and --root; the rest are operands. */
static int simple_options(const char *cmd, const char *help, int argc, char **argv,
                          const char **root, const char **output)
{
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "root", required_argument, NULL, 'r' },
    { "output", required_argument, NULL, 'o' },
    { NULL, 0, NULL, 0 },
  };
  int c;
  optind = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, output ? ":ho:" : ":h", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      fputs(help, stdout);
      return BUILDER_EXIT_OK;
    case 'r':
      *root = optarg;
      break;
    case 'o':
      if (!output)
        return builder_cmd_usage(cmd, "unknown flag \"-o\"");
      *output = optarg;
      break;
    case ':':
      return builder_cmd_usage(cmd, "a flag needs a value");
    default:
      return builder_cmd_usage(cmd, "unknown flag");
    }
  }
  return -1;
}

static void human_size(int64_t n, char *buf, size_t size)
{
  const char *units[] = { "B", "kB", "MB", "GB", "TB" };
  double v = (double)n;
  size_t u = 0;
  while (v >= 1000 && u + 1 < CB_ARRAY_SIZE(units)) {
    v /= 1000;
    u++;
  }
  snprintf(buf, size, u ? "%.3g%s" : "%.0f%s", v, units[u]);
}

int builder_cmd_images(int argc, char **argv, const char *root)
{
  static const char help[] = "Usage: cbuild images\n\nList the images of the store: repository, tag, "
                             "image ID, created, size (compressed layers).\n";
  struct cb_error err;
  struct cache_store *s;
  struct cache_tag *tags = NULL;
  size_t n = 0;
  int rc = simple_options("images", help, argc, argv, &root, NULL);
  if (rc >= 0)
    return rc;
  if (optind < argc)
    return builder_cmd_usage("images", "\"images\" takes no arguments");
  s = builder_cmd_store(root, &err);
  if (!s)
    return builder_cmd_fail(&err);
  if (cache_tags_list(s, &tags, &n, &err) < 0) {
    cache_store_close(s);
    return builder_cmd_fail(&err);
  }
  printf("%-40s %-16s %-14s %-22s %s\n", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE");
  for (size_t i = 0; i < n; i++) {
    struct image img;
    struct oci_reference ref;
    char size[32];
    int64_t total = 0;
    cleanup_free char *familiar = NULL;
    if (image_load(s, tags[i].name, &img, &err) < 0) {
      fprintf(stderr, "cbuild: warning: %s\n", err.msg);
      image_release(&img);
      continue;
    }
    for (size_t l = 0; l < img.m.n_layers; l++)
      total += img.m.layers[l].size;
    human_size(total, size, sizeof(size));
    if (oci_reference_parse(tags[i].name, &ref, &err) == 0) {
      familiar = oci_reference_familiar(&ref);
      /* the repository is the familiar name without its tag */
      if (ref.tag && cb_ends_with(familiar, ref.tag))
        familiar[strlen(familiar) - strlen(ref.tag) - 1] = '\0';
    }
    printf("%-40s %-16s %-14.12s %-22s %s\n", familiar ? familiar : tags[i].name,
           ref.tag ? ref.tag : "<none>", img.m.config.digest + 7,
           img.c.created ? img.c.created : "", size);
    oci_reference_release(&ref);
    image_release(&img);
  }
  cache_tags_free(tags, n);
  cache_store_close(s);
  return BUILDER_EXIT_OK;
}

int builder_cmd_inspect(int argc, char **argv, const char *root)
{
  static const char help[] = "Usage: cbuild inspect NAME...\n\nPrint the manifest and the config "
                             "of images of the store as JSON.\n";
  struct cb_error err;
  struct cache_store *s;
  json_t *out;
  int rc = simple_options("inspect", help, argc, argv, &root, NULL);
  if (rc >= 0)
    return rc;
  if (optind >= argc)
    return builder_cmd_usage("inspect", "\"inspect\" needs an image name");
  s = builder_cmd_store(root, &err);
  if (!s)
    return builder_cmd_fail(&err);
  out = json_array();
  rc = BUILDER_EXIT_OK;
  for (int i = optind; i < argc; i++) {
    struct image img;
    json_error_t je;
    json_t *m, *c;
    if (image_load(s, argv[i], &img, &err) < 0) {
      image_release(&img);
      rc = builder_cmd_fail(&err);
      break;
    }
    m = json_loadb(img.manifest_json.buf, img.manifest_json.len, 0, &je);
    c = json_loadb(img.config_json.buf, img.config_json.len, 0, &je);
    json_array_append_new(out, json_pack("{s:s, s:s, s:o, s:o}", "Name", argv[i], "Digest",
                                         img.desc.digest, "Manifest", m ? m : json_null(),
                                         "Config", c ? c : json_null()));
    image_release(&img);
  }
  if (rc == BUILDER_EXIT_OK) {
    char *text = json_dumps(out, JSON_INDENT(2) | JSON_SORT_KEYS);
    puts(text);
    free(text);
  }
  json_decref(out);
  cache_store_close(s);
  return rc;
}

int builder_cmd_rmi(int argc, char **argv, const char *root)
{
  static const char help[] = "Usage: cbuild rmi NAME...\n\nRemove image names from the store "
                             "(their blobs stay until 'cbuild prune').\n";
  struct cb_error err;
  struct cache_store *s;
  int rc = simple_options("rmi", help, argc, argv, &root, NULL);
  if (rc >= 0)
    return rc;
  if (optind >= argc)
    return builder_cmd_usage("rmi", "\"rmi\" needs an image name");
  s = builder_cmd_store(root, &err);
  if (!s)
    return builder_cmd_fail(&err);
  rc = BUILDER_EXIT_OK;
  for (int i = optind; i < argc; i++) {
    int r = cache_tag_remove(s, argv[i], &err);
    if (r < 0)
      rc = builder_cmd_fail(&err);
    else if (r > 0) {
      fprintf(stderr, "cbuild: no image \"%s\" in the store\n", argv[i]);
      rc = BUILDER_EXIT_FAIL;
    } else {
      printf("Untagged: %s\n", argv[i]);
    }
  }
  cache_store_close(s);
  return rc;
}

int builder_cmd_tag(int argc, char **argv, const char *root)
{
  static const char help[] = "Usage: cbuild tag SOURCE TARGET\n\nGive an image of the store "
                             "another name.\n";
  struct cb_error err;
  struct cache_store *s;
  struct oci_descriptor desc;
  int rc = simple_options("tag", help, argc, argv, &root, NULL), r;
  if (rc >= 0)
    return rc;
  if (argc - optind != 2)
    return builder_cmd_usage("tag", "\"tag\" takes a source and a target name");
  if (!oci_reference_valid(argv[optind + 1])) {
    struct oci_reference ref;
    oci_reference_parse(argv[optind + 1], &ref, &err);
    return builder_cmd_usage("tag", err.msg);
  }
  s = builder_cmd_store(root, &err);
  if (!s)
    return builder_cmd_fail(&err);
  r = cache_tag_get(s, argv[optind], &desc, &err);
  if (r > 0)
    cb_error_set(&err, "no image \"%s\" in the store", argv[optind]);
  if (r != 0 || cache_tag_set(s, argv[optind + 1], &desc, &err) < 0)
    rc = builder_cmd_fail(&err);
  else
    rc = BUILDER_EXIT_OK;
  if (r == 0)
    oci_descriptor_release(&desc);
  cache_store_close(s);
  return rc;
}

int builder_cmd_save(int argc, char **argv, const char *root)
{
  static const char help[] = "Usage: cbuild save NAME... -o FILE.tar\n\nWrite images of the store "
                             "as an OCI image layout tarball (-o - or no -o: standard output).\n";
  const char *output = NULL;
  struct cb_error err;
  struct cache_store *s;
  struct image *imgs;
  struct oci_archive_image *ai;
  struct oci_reference *refs;
  char **full;
  struct oci_blob_source src;
  int n;
  int rc = simple_options("save", help, argc, argv, &root, &output);
  if (rc >= 0)
    return rc;
  if (optind >= argc)
    return builder_cmd_usage("save", "\"save\" needs an image name");
  if (!output && isatty(STDOUT_FILENO))
    return builder_cmd_usage("save", "refusing to write a tarball to a terminal: use -o FILE");
  s = builder_cmd_store(root, &err);
  if (!s)
    return builder_cmd_fail(&err);
  n = argc - optind;
  imgs = xcalloc((size_t)n, sizeof(*imgs));
  ai = xcalloc((size_t)n, sizeof(*ai));
  refs = xcalloc((size_t)n, sizeof(*refs));
  full = xcalloc((size_t)n, sizeof(*full));
  rc = BUILDER_EXIT_FAIL;
  for (int i = 0; i < n; i++) {
    if (image_load(s, argv[optind + i], &imgs[i], &err) < 0 ||
        oci_reference_parse(argv[optind + i], &refs[i], &err) < 0)
      goto out;
    full[i] = oci_reference_string(&refs[i]);
    ai[i].manifest = &imgs[i].desc;
    ai[i].parsed = &imgs[i].m;
    ai[i].ref_name = refs[i].tag;
    ai[i].image_name = full[i];
  }
  cache_blob_source(s, &src);
  if (output && strcmp(output, "-") != 0) {
    /* as build's -o writes it: through symlinks, replaced whole or in place */
    struct builder_out_file f;
    if (builder_out_file_open(&f, output, &err) < 0)
      goto out;
    if (builder_out_file_finish(&f, oci_layout_write_tar(f.fd, ai, (size_t)n, &src, &err),
                                &err) < 0)
      goto out;
  } else if (oci_layout_write_tar(STDOUT_FILENO, ai, (size_t)n, &src, &err) < 0) {
    goto out;
  }
  rc = BUILDER_EXIT_OK;
out:
  if (rc != BUILDER_EXIT_OK)
    builder_cmd_fail(&err);
  for (int i = 0; i < n; i++) {
    image_release(&imgs[i]);
    oci_reference_release(&refs[i]);
    free(full[i]);
  }
  free(imgs);
  free(ai);
  free(refs);
  free(full);
  cache_store_close(s);
  return rc;
}

/* ---- df, prune ---- */

int builder_cmd_df(int argc, char **argv, const char *root)
{
  static const char help[] = "Usage: cbuild df\n\nShow what the store holds: the images' "
                             "blobs, the build cache, snapshots and cache mounts.\n";
  struct cb_error err;
  struct cache_store *s;
  struct cache_usage u;
  char a[32], b[32], c[32], d[32], e[32];
  int rc = simple_options("df", help, argc, argv, &root, NULL);
  if (rc >= 0)
    return rc;
  if (optind < argc)
    return builder_cmd_usage("df", "\"df\" takes no arguments");
  s = builder_cmd_store(root, &err);
  if (!s)
    return builder_cmd_fail(&err);
  if (cache_usage(s, &u, &err) < 0) {
    cache_store_close(s);
    return builder_cmd_fail(&err);
  }
  human_size(u.image_bytes, a, sizeof(a));
  human_size(u.cache_bytes, b, sizeof(b));
  human_size(u.other_bytes, c, sizeof(c));
  human_size(u.snapshot_bytes, d, sizeof(d));
  human_size(u.mount_bytes, e, sizeof(e));
  printf("%-18s %8s %10s %12s\n", "TYPE", "COUNT", "SIZE", "RECLAIMABLE");
  printf("%-18s %8zu %10s %12s\n", "Image blobs", u.image_blobs, a, "0B");
  printf("%-18s %8zu %10s %12s\n", "Build cache", u.entries, b, b);
  printf("%-18s %8zu %10s %12s\n", "Unused blobs", u.other_blobs, c, c);
  printf("%-18s %8zu %10s %12s\n", "Snapshots", u.snapshots, d, d);
  printf("%-18s %8zu %10s %12s\n", "Cache mounts", u.mounts, e, e);
  cache_store_close(s);
  return BUILDER_EXIT_OK;
}

int builder_cmd_prune(int argc, char **argv, const char *root)
{
  static const char help[] =
      "Usage: cbuild prune [--all] [--keep-storage SIZE] [--keep-duration DUR]\n"
      "\n"
      "Remove build cache the store's images do not need, least recently used first.\n"
      "Waits for running builds; never removes what a tagged image needs.\n"
      "\n"
      "Options:\n"
      "  -a, --all                 remove all build cache, not only the steps no image uses\n"
      "      --keep-storage SIZE   keep the most recently used cache up to SIZE (e.g. 5g)\n"
      "      --keep-duration DUR   keep cache used within DUR (e.g. 24h)\n"
      "      --root DIR            the store\n";
  static const struct option opts[] = {
    { "help", no_argument, NULL, 'h' },
    { "all", no_argument, NULL, 'a' },
    { "keep-storage", required_argument, NULL, 's' },
    { "keep-duration", required_argument, NULL, 'd' },
    { "root", required_argument, NULL, 'r' },
    { NULL, 0, NULL, 0 },
  };
  struct cache_prune_options po = { false, -1, -1 };
  struct cb_error err;
  struct cache_store *s;
  struct cache_usage freed;
  char a[32], b[32];
  int c, lock;
  int64_t ns;
  optind = 0;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":ha", opts, NULL)) != -1) {
    switch (c) {
    case 'h':
      fputs(help, stdout);
      return BUILDER_EXIT_OK;
    case 'a':
      po.all = true;
      break;
    case 's':
      if (cb_parse_size(optarg, &po.keep_storage) < 0)
        return builder_cmd_usage("prune", "--keep-storage wants a size such as 512m or 5g");
      break;
    case 'd':
      if (parser_duration(optarg, &ns) < 0 || ns < 0)
        return builder_cmd_usage("prune", "--keep-duration wants a duration such as 30m or 24h");
      po.keep_duration = ns / 1000000000;
      break;
    case 'r':
      root = optarg;
      break;
    case ':':
      return builder_cmd_usage("prune", "a flag needs a value");
    default:
      return builder_cmd_usage("prune", "unknown flag");
    }
  }
  if (optind < argc)
    return builder_cmd_usage("prune", "\"prune\" takes no arguments");
  {
    cleanup_free char *r = cache_root(root, &err);
    /* rootless, snapshots hold the image's ids: remove them as the build
     * made them, in its user namespace */
    if (!r || runner_enter_userns(&err) < 0 || !(s = cache_store_open(r, &err)))
      return builder_cmd_fail(&err);
  }
  lock = cache_build_lock(s, true, false, &err);
  if (lock == -2) {
    fprintf(stderr, "cbuild: waiting for the builds running on this store\n");
    lock = cache_build_lock(s, true, true, &err);
  }
  if (lock < 0 || cache_prune(s, &po, &freed, &err) < 0) {
    if (lock >= 0)
      close(lock);
    cache_store_close(s);
    return builder_cmd_fail(&err);
  }
  close(lock);
  human_size(freed.cache_bytes, a, sizeof(a));
  human_size(freed.snapshot_bytes + freed.mount_bytes, b, sizeof(b));
  printf("Removed %zu cache entries, %zu blobs (%s), %zu snapshots and %zu cache mounts (%s)\n",
         freed.entries, freed.cache_blobs, a, freed.snapshots, freed.mounts, b);
  cache_store_close(s);
  return BUILDER_EXIT_OK;
}
