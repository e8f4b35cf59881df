/* The image JSON: configs, manifests and indexes (oci/image.c). */
#include "unit.h"

#include "../../oci/oci.h"

#define DA "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DC "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define T0 "2024-01-02T03:04:05Z"

/* ---- helpers ---- */

static bool str_eq(const char *a, const char *b)
{
  return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

static bool strvec_eq(const struct strvec *a, const struct strvec *b)
{
  if (a->n != b->n)
    return false;
  for (size_t i = 0; i < a->n; i++)
    if (strcmp(a->v[i], b->v[i]) != 0)
      return false;
  return true;
}

/* The same strings in any order (sets and maps come back key-sorted). */
static bool strvec_same_set(const struct strvec *a, const struct strvec *b)
{
  if (a->n != b->n)
    return false;
  for (size_t i = 0; i < a->n; i++)
    if (strvec_find(b, a->v[i]) < 0)
      return false;
  return true;
}

static bool labels_eq(const struct oci_config *a, const struct oci_config *b)
{
  if (a->n_labels != b->n_labels)
    return false;
  for (size_t i = 0; i < a->n_labels; i++) {
    bool found = false;
    for (size_t j = 0; j < b->n_labels; j++)
      if (strcmp(a->labels[i].key, b->labels[j].key) == 0)
        found = strcmp(a->labels[i].value, b->labels[j].value) == 0;
    if (!found)
      return false;
  }
  return true;
}

static bool health_eq(const struct oci_health *a, const struct oci_health *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return strvec_eq(&a->test, &b->test) && a->interval == b->interval &&
         a->timeout == b->timeout && a->start_period == b->start_period &&
         a->start_interval == b->start_interval && a->retries == b->retries;
}

static bool history_eq(const struct oci_config *a, const struct oci_config *b)
{
  if (a->n_history != b->n_history)
    return false;
  for (size_t i = 0; i < a->n_history; i++) {
    const struct oci_history *x = &a->history[i], *y = &b->history[i];
    if (!str_eq(x->created, y->created) || !str_eq(x->created_by, y->created_by) ||
        !str_eq(x->comment, y->comment) || x->empty_layer != y->empty_layer)
      return false;
  }
  return true;
}

/* Check every member of two configs, naming the first that differs. */
static void check_config_eq(const struct oci_config *a, const struct oci_config *b, int line)
{
#define FIELD(ok, name)                                                        \
  if (!(ok))                                                                   \
    unit_fail(__FILE__, line, "configs differ in %s", name);
  FIELD(str_eq(a->architecture, b->architecture), "architecture");
  FIELD(str_eq(a->os, b->os), "os");
  FIELD(str_eq(a->variant, b->variant), "variant");
  FIELD(str_eq(a->created, b->created), "created");
  FIELD(str_eq(a->author, b->author), "author");
  FIELD(strvec_eq(&a->env, &b->env), "env");
  FIELD(strvec_eq(&a->cmd, &b->cmd) && a->has_cmd == b->has_cmd, "cmd");
  FIELD(strvec_eq(&a->entrypoint, &b->entrypoint) && a->has_entrypoint == b->has_entrypoint,
        "entrypoint");
  FIELD(str_eq(a->working_dir, b->working_dir), "working_dir");
  FIELD(str_eq(a->user, b->user), "user");
  FIELD(str_eq(a->stop_signal, b->stop_signal), "stop_signal");
  FIELD(strvec_same_set(&a->exposed_ports, &b->exposed_ports), "exposed_ports");
  FIELD(strvec_same_set(&a->volumes, &b->volumes), "volumes");
  FIELD(labels_eq(a, b), "labels");
  FIELD(health_eq(a->healthcheck, b->healthcheck), "healthcheck");
  FIELD(strvec_eq(&a->shell, &b->shell), "shell");
  FIELD(strvec_eq(&a->onbuild, &b->onbuild), "onbuild");
  FIELD(strvec_eq(&a->diff_ids, &b->diff_ids), "diff_ids");
  FIELD(history_eq(a, b), "history");
#undef FIELD
}

/* A config with every member set. */
static void full_config(struct oci_config *c)
{
  memset(c, 0, sizeof(*c));
  c->architecture = xstrdup("arm");
  c->os = xstrdup("linux");
  c->variant = xstrdup("v7");
  c->created = xstrdup(T0);
  c->author = xstrdup("someone <a@b.c>");
  oci_config_set_env(c, "PATH", "/usr/local/bin:/usr/bin:/bin");
  oci_config_set_env(c, "HOME", "/root");
  strvec_push(&c->entrypoint, "/bin/tini");
  strvec_push(&c->entrypoint, "--");
  c->has_entrypoint = true;
  strvec_push(&c->cmd, "sh");
  strvec_push(&c->cmd, "-c");
  strvec_push(&c->cmd, "echo \"hi\" && exit 3");
  c->has_cmd = true;
  c->working_dir = xstrdup("/app");
  c->user = xstrdup("1000:1000");
  c->stop_signal = xstrdup("SIGQUIT");
  strvec_push(&c->exposed_ports, "8080/tcp");
  strvec_push(&c->exposed_ports, "53/udp");
  strvec_push(&c->volumes, "/data");
  strvec_push(&c->volumes, "/cache");
  oci_config_set_label(c, "z.last", "1");
  oci_config_set_label(c, "a.first", "two words");
  oci_config_set_label(c, "empty", "");
  c->healthcheck = xcalloc(1, sizeof(*c->healthcheck));
  strvec_push(&c->healthcheck->test, "CMD-SHELL");
  strvec_push(&c->healthcheck->test, "curl -f http://localhost/");
  c->healthcheck->interval = 30000000000;
  c->healthcheck->timeout = 5000000000;
  c->healthcheck->start_period = 1000000;
  c->healthcheck->start_interval = 2000000000;
  c->healthcheck->retries = 3;
  strvec_push(&c->shell, "/bin/bash");
  strvec_push(&c->shell, "-c");
  strvec_push(&c->onbuild, "RUN make");
  strvec_push(&c->diff_ids, DA);
  strvec_push(&c->diff_ids, DB);
  oci_config_add_history(c, T0, "COPY . /app", false);
  oci_config_add_history(c, T0, "ENV HOME=/root", true);
  oci_config_add_history(c, NULL, "RUN make", false);
  c->history[2].comment = xstrdup("built by cbuild");
}

/* Whether the object keys in json appear sorted at every level.  Enough
 * for the JSON this file writes: no key holds '"' or '\\'. */
static bool keys_sorted(const char *json)
{
  /* last key seen at each depth */
  char last[32][128];
  int depth = -1;
  bool in_string = false, expect_key = false;
  const char *start = NULL;
  for (const char *p = json; *p; p++) {
    if (in_string) {
      if (*p == '\\') {
        p++;
      } else if (*p == '"') {
        in_string = false;
        if (expect_key && p[1] == ':') {
          char key[128];
          snprintf(key, sizeof(key), "%.*s", (int)(p - start), start);
          if (depth < 0 || depth >= 32 || strcmp(last[depth], key) >= 0)
            return false;
          snprintf(last[depth], sizeof(last[depth]), "%s", key);
        }
      }
      continue;
    }
    switch (*p) {
    case '"':
      in_string = true;
      start = p + 1;
      break;
    case '{':
      depth++;
      if (depth < 32)
        last[depth][0] = '\0';
      expect_key = true;
      break;
    case '}':
      depth--;
      break;
    case ',':
    case '[':
      expect_key = true;
      break;
    default:
      break;
    }
  }
  return depth == -1;
}

/* ---- configs ---- */

static void test_config_exact_json(void)
{
  struct oci_config c;
  cleanup_free char *json = NULL;
  memset(&c, 0, sizeof(c));
  c.architecture = xstrdup("amd64");
  c.os = xstrdup("linux");
  c.created = xstrdup(T0);
  oci_config_set_env(&c, "PATH", "/usr/bin");
  strvec_push(&c.cmd, "sh");
  c.has_cmd = true;
  strvec_push(&c.diff_ids, DA);
  oci_config_add_history(&c, T0, "COPY x /", false);
  oci_config_add_history(&c, T0, "CMD [\"sh\"]", true);
  json = oci_config_json(&c);
  CHECK_STR(json, "{\"architecture\":\"amd64\","
                  "\"config\":{\"Cmd\":[\"sh\"],\"Env\":[\"PATH=/usr/bin\"]},"
                  "\"created\":\"" T0 "\","
                  "\"history\":[{\"created\":\"" T0 "\",\"created_by\":\"COPY x /\"},"
                  "{\"created\":\"" T0 "\",\"created_by\":\"CMD [\\\"sh\\\"]\","
                  "\"empty_layer\":true}],"
                  "\"os\":\"linux\","
                  "\"rootfs\":{\"diff_ids\":[\"" DA "\"],\"type\":\"layers\"}}");
  oci_config_release(&c);
  CHECK(c.architecture == NULL && c.env.n == 0 && c.history == NULL);
  oci_config_release(&c); /* safe to repeat */
}

static void test_config_empty(void)
{
  struct oci_config c, back;
  struct cb_error err;
  cleanup_free char *json = NULL;
  memset(&c, 0, sizeof(c));
  json = oci_config_json(&c);
  /* config and rootfs are always there, with empty diff_ids */
  CHECK_STR(json, "{\"config\":{},\"rootfs\":{\"diff_ids\":[],\"type\":\"layers\"}}");
  CHECK_INT(oci_config_parse(json, strlen(json), &back, &err), 0);
  check_config_eq(&c, &back, __LINE__);
  oci_config_release(&back);

  /* an empty CMD [] is kept as such, and comes back as set */
  c.has_cmd = true;
  free(json);
  json = oci_config_json(&c);
  CHECK_CONTAINS(json, "\"config\":{\"Cmd\":[]}");
  CHECK_INT(oci_config_parse(json, strlen(json), &back, &err), 0);
  CHECK(back.has_cmd);
  CHECK(!back.has_entrypoint);
  CHECK_INT(back.cmd.n, 0);
  oci_config_release(&back);
}

static void test_config_round_trip(void)
{
  struct oci_config c, back;
  struct cb_error err;
  cleanup_free char *json = NULL, *again = NULL, *back_json = NULL;
  full_config(&c);
  json = oci_config_json(&c);
  again = oci_config_json(&c);
  CHECK_STR(again, json); /* the same bytes every time */
  CHECK(keys_sorted(json));
  CHECK(strchr(json, '\n') == NULL);
  if (oci_config_parse(json, strlen(json), &back, &err) < 0) {
    unit_fail(__FILE__, __LINE__, "parse: %s", err.msg);
    oci_config_release(&c);
    return;
  }
  check_config_eq(&c, &back, __LINE__);
  back_json = oci_config_json(&back);
  CHECK_STR(back_json, json);
  oci_config_release(&back);
  oci_config_release(&c);
}

static void test_config_encodings(void)
{
  struct oci_config c;
  cleanup_free char *json = NULL;
  full_config(&c);
  json = oci_config_json(&c);
  CHECK_CONTAINS(json, "\"ExposedPorts\":{\"53/udp\":{},\"8080/tcp\":{}}");
  CHECK_CONTAINS(json, "\"Volumes\":{\"/cache\":{},\"/data\":{}}");
  CHECK_CONTAINS(json, "\"Labels\":{\"a.first\":\"two words\",\"empty\":\"\",\"z.last\":\"1\"}");
  CHECK_CONTAINS(json, "\"Healthcheck\":{\"Interval\":30000000000,\"Retries\":3,"
                       "\"StartInterval\":2000000000,\"StartPeriod\":1000000,"
                       "\"Test\":[\"CMD-SHELL\",\"curl -f http://localhost/\"],"
                       "\"Timeout\":5000000000}");
  CHECK_CONTAINS(json, "\"Entrypoint\":[\"/bin/tini\",\"--\"]");
  CHECK_CONTAINS(json, "\"Cmd\":[\"sh\",\"-c\",\"echo \\\"hi\\\" && exit 3\"]");
  CHECK_CONTAINS(json, "\"Shell\":[\"/bin/bash\",\"-c\"]");
  CHECK_CONTAINS(json, "\"OnBuild\":[\"RUN make\"]");
  CHECK_CONTAINS(json, "\"StopSignal\":\"SIGQUIT\"");
  CHECK_CONTAINS(json, "\"User\":\"1000:1000\",\"Volumes\"");
  CHECK_CONTAINS(json, "\"WorkingDir\":\"/app\"");
  CHECK_CONTAINS(json, "\"variant\":\"v7\"");
  CHECK_CONTAINS(json, "\"author\":\"someone <a@b.c>\"");

  /* zero durations are left out; HEALTHCHECK NONE is only its Test */
  c.healthcheck->interval = c.healthcheck->timeout = 0;
  c.healthcheck->start_period = c.healthcheck->start_interval = 0;
  c.healthcheck->retries = 0;
  strvec_clear(&c.healthcheck->test);
  strvec_push(&c.healthcheck->test, "NONE");
  free(json);
  json = oci_config_json(&c);
  CHECK_CONTAINS(json, "\"Healthcheck\":{\"Test\":[\"NONE\"]}");

  /* a bad byte becomes U+FFFD instead of breaking the JSON */
  oci_config_set_label(&c, "bad\xff", "x\xc3(y");
  free(json);
  json = oci_config_json(&c);
  CHECK_CONTAINS(json, "\"bad\xef\xbf\xbd\":\"x\xef\xbf\xbd(y\"");
  oci_config_release(&c);
}

static void test_config_history(void)
{
  struct oci_config c, back;
  struct cb_error err;
  cleanup_free char *json = NULL;
  memset(&c, 0, sizeof(c));
  oci_config_add_history(&c, T0, "COPY a b", false);
  oci_config_add_history(&c, NULL, "LABEL x=y", true);
  json = oci_config_json(&c);
  CHECK_CONTAINS(json, "\"history\":[{\"created\":\"" T0 "\",\"created_by\":\"COPY a b\"},"
                       "{\"created_by\":\"LABEL x=y\",\"empty_layer\":true}]");
  CHECK_INT(oci_config_parse(json, strlen(json), &back, &err), 0);
  CHECK_INT(back.n_history, 2);
  if (back.n_history == 2) {
    CHECK(!back.history[0].empty_layer);
    CHECK(back.history[1].empty_layer);
    CHECK(back.history[1].created == NULL);
    CHECK_STR(back.history[1].created_by, "LABEL x=y");
  }
  oci_config_release(&back);
  oci_config_release(&c);

  /* empty_layer false written explicitly by others reads as false */
  const char *other = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]},"
                      "\"history\":[{\"empty_layer\":false,\"author\":\"x\"}]}";
  CHECK_INT(oci_config_parse(other, strlen(other), &back, &err), 0);
  CHECK_INT(back.n_history, 1);
  if (back.n_history == 1)
    CHECK(!back.history[0].empty_layer);
  oci_config_release(&back);
}

static void test_config_env_labels(void)
{
  struct oci_config c;
  memset(&c, 0, sizeof(c));
  CHECK(oci_config_get_env(&c, "PATH") == NULL);
  oci_config_set_env(&c, "PATH", "/bin");
  oci_config_set_env(&c, "PATHX", "1");
  oci_config_set_env(&c, "PATH", "/usr/bin:/bin");
  oci_config_set_env(&c, "EMPTY", "");
  CHECK_INT(c.env.n, 3);
  CHECK_STR(c.env.v[0], "PATH=/usr/bin:/bin");
  CHECK_STR(oci_config_get_env(&c, "PATH"), "/usr/bin:/bin");
  CHECK_STR(oci_config_get_env(&c, "PATHX"), "1");
  CHECK_STR(oci_config_get_env(&c, "EMPTY"), "");
  CHECK(oci_config_get_env(&c, "PAT") == NULL);
  CHECK(oci_config_get_env(&c, "path") == NULL);
  /* a value may hold '=' */
  oci_config_set_env(&c, "Q", "a=b");
  CHECK_STR(oci_config_get_env(&c, "Q"), "a=b");

  oci_config_set_label(&c, "k", "1");
  oci_config_set_label(&c, "j", "2");
  oci_config_set_label(&c, "k", "3");
  CHECK_INT(c.n_labels, 2);
  CHECK_STR(c.labels[0].key, "k");
  CHECK_STR(c.labels[0].value, "3");
  oci_config_release(&c);
}

static void test_config_copy(void)
{
  struct oci_config c, d;
  cleanup_free char *a = NULL, *b = NULL, *after = NULL;
  full_config(&c);
  oci_config_copy(&d, &c);
  check_config_eq(&c, &d, __LINE__);
  a = oci_config_json(&c);
  b = oci_config_json(&d);
  CHECK_STR(b, a);
  /* the copy is deep: changing it leaves the original alone */
  oci_config_set_env(&d, "PATH", "/changed");
  oci_config_set_label(&d, "a.first", "changed");
  d.healthcheck->retries = 9;
  free(d.history[0].created_by);
  d.history[0].created_by = xstrdup("changed");
  after = oci_config_json(&c);
  CHECK_STR(after, a);
  oci_config_release(&d);
  oci_config_release(&c);
  /* and a copy of an empty config is empty */
  memset(&c, 0, sizeof(c));
  oci_config_copy(&d, &c);
  CHECK(d.healthcheck == NULL && d.history == NULL && d.labels == NULL);
  oci_config_release(&d);
}

/* A config as Docker writes it: nulls, unknown members, container_config. */
static void test_config_parse_docker(void)
{
  static const char json[] =
      "{\"architecture\":\"amd64\",\"config\":{\"Hostname\":\"\",\"Domainname\":\"\","
      "\"User\":\"\",\"AttachStdin\":false,\"Tty\":false,\"Env\":[\"PATH=/bin\"],"
      "\"Cmd\":null,\"Image\":\"sha256:x\",\"Volumes\":null,\"WorkingDir\":\"\","
      "\"Entrypoint\":[\"/docker-entrypoint.sh\"],\"OnBuild\":null,\"Labels\":null,"
      "\"ExposedPorts\":{\"80/tcp\":{}},\"StopSignal\":\"SIGQUIT\"},"
      "\"container\":\"abc\",\"container_config\":{\"Cmd\":[\"/bin/sh\",\"-c\",\"#(nop) \"]},"
      "\"created\":\"2023-05-01T00:00:00.123456789Z\",\"docker_version\":\"20.10.23\","
      "\"history\":[{\"created\":\"2023-05-01T00:00:00Z\",\"created_by\":\"/bin/sh -c #(nop) ADD "
      "file:abc in / \"},{\"created\":\"2023-05-01T00:00:01Z\",\"created_by\":\"/bin/sh -c "
      "#(nop)  CMD [\\\"sh\\\"]\",\"empty_layer\":true}],\"os\":\"linux\","
      "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" DC "\"]}}";
  struct oci_config c;
  struct cb_error err;
  if (oci_config_parse(json, strlen(json), &c, &err) < 0) {
    unit_fail(__FILE__, __LINE__, "parse: %s", err.msg);
    return;
  }
  CHECK_STR(c.architecture, "amd64");
  CHECK_STR(c.os, "linux");
  CHECK(!c.has_cmd);
  CHECK(c.has_entrypoint);
  CHECK_STR(c.entrypoint.v[0], "/docker-entrypoint.sh");
  CHECK_STR(c.user, ""); /* present, if empty */
  CHECK_INT(c.exposed_ports.n, 1);
  CHECK_STR(c.exposed_ports.v[0], "80/tcp");
  CHECK_INT(c.volumes.n, 0);
  CHECK_INT(c.n_labels, 0);
  CHECK_STR(c.stop_signal, "SIGQUIT");
  CHECK_INT(c.diff_ids.n, 1);
  CHECK_INT(c.n_history, 2);
  CHECK_STR(oci_config_get_env(&c, "PATH"), "/bin");
  oci_config_release(&c);
}

/* ---- manifests and indexes ---- */

static void small_manifest(struct oci_manifest *m)
{
  memset(m, 0, sizeof(*m));
  m->config.media_type = xstrdup(OCI_MEDIA_TYPE_CONFIG);
  m->config.digest = xstrdup(DA);
  m->config.size = 123;
  m->layers = xcalloc(2, sizeof(*m->layers));
  m->n_layers = 2;
  m->layers[0].media_type = xstrdup("application/vnd.oci.image.layer.v1.tar+gzip");
  m->layers[0].digest = xstrdup(DB);
  m->layers[0].size = 4567;
  m->layers[1].media_type = xstrdup("application/vnd.oci.image.layer.v1.tar+zstd");
  m->layers[1].digest = xstrdup(DC);
  m->layers[1].size = 0;
  oci_descriptor_annotate(&m->layers[1], "org.example.note", "zstd");
}

static void test_manifest_round_trip(void)
{
  struct oci_manifest m, back;
  struct cb_error err;
  cleanup_free char *json = NULL, *again = NULL;
  small_manifest(&m);
  json = oci_manifest_json(&m);
  CHECK_STR(json,
            "{\"config\":{\"digest\":\"" DA "\",\"mediaType\":\"" OCI_MEDIA_TYPE_CONFIG "\","
            "\"size\":123},"
            "\"layers\":[{\"digest\":\"" DB "\",\"mediaType\":"
            "\"application/vnd.oci.image.layer.v1.tar+gzip\",\"size\":4567},"
            "{\"annotations\":{\"org.example.note\":\"zstd\"},\"digest\":\"" DC "\","
            "\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"size\":0}],"
            "\"mediaType\":\"" OCI_MEDIA_TYPE_MANIFEST "\",\"schemaVersion\":2}");
  if (oci_manifest_parse(json, strlen(json), &back, &err) < 0) {
    unit_fail(__FILE__, __LINE__, "parse: %s", err.msg);
    oci_manifest_release(&m);
    return;
  }
  CHECK_STR(back.config.digest, DA);
  CHECK_INT(back.config.size, 123);
  CHECK_INT(back.n_layers, 2);
  CHECK_STR(back.layers[1].media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
  CHECK_STR(oci_descriptor_annotation(&back.layers[1], "org.example.note"), "zstd");
  CHECK(oci_descriptor_annotation(&back.layers[0], "org.example.note") == NULL);
  again = oci_manifest_json(&back);
  CHECK_STR(again, json);
  oci_manifest_release(&back);

  /* manifest annotations, and an annotation replaced */
  m.annotations = xcalloc(1, sizeof(*m.annotations));
  m.annotations[0].key = xstrdup("org.opencontainers.image.created");
  m.annotations[0].value = xstrdup(T0);
  m.n_annotations = 1;
  oci_descriptor_annotate(&m.layers[1], "org.example.note", "replaced");
  CHECK_INT(m.layers[1].n_annotations, 1);
  free(json);
  json = oci_manifest_json(&m);
  CHECK_CONTAINS(json, "{\"annotations\":{\"org.opencontainers.image.created\":\"" T0 "\"},");
  CHECK_CONTAINS(json, "{\"annotations\":{\"org.example.note\":\"replaced\"},");
  CHECK_INT(oci_manifest_parse(json, strlen(json), &back, &err), 0);
  CHECK_INT(back.n_annotations, 1);
  oci_manifest_release(&back);
  oci_manifest_release(&m);
}

static void test_manifest_docker(void)
{
  static const char json[] =
      "{\n   \"schemaVersion\": 2,\n"
      "   \"mediaType\": \"application/vnd.docker.distribution.manifest.v2+json\",\n"
      "   \"config\": {\n      \"mediaType\": \"application/vnd.docker.container.image.v1+json\",\n"
      "      \"size\": 1472,\n      \"digest\": \"" DA "\"\n   },\n"
      "   \"layers\": [\n      {\n"
      "         \"mediaType\": \"application/vnd.docker.image.rootfs.diff.tar.gzip\",\n"
      "         \"size\": 3370706,\n         \"digest\": \"" DB "\"\n      }\n   ]\n}";
  struct oci_manifest m;
  struct cb_error err;
  if (oci_manifest_parse(json, strlen(json), &m, &err) < 0) {
    unit_fail(__FILE__, __LINE__, "parse: %s", err.msg);
    return;
  }
  CHECK_STR(m.config.media_type, OCI_MEDIA_TYPE_DOCKER_CONFIG);
  CHECK_INT(m.config.size, 1472);
  CHECK_INT(m.n_layers, 1);
  CHECK_STR(m.layers[0].media_type, OCI_MEDIA_TYPE_DOCKER_LAYER_GZIP);
  CHECK_INT(m.layers[0].size, 3370706);
  CHECK_STR(m.layers[0].digest, DB);
  oci_manifest_release(&m);

  /* an OCI manifest may leave its mediaType out */
  static const char bare[] = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":"
                             "\"" DA "\",\"size\":1,\"urls\":[]},\"layers\":[]}";
  CHECK_INT(oci_manifest_parse(bare, strlen(bare), &m, &err), 0);
  CHECK_INT(m.n_layers, 0);
  oci_manifest_release(&m);
}

static void test_index_round_trip(void)
{
  struct oci_index x, back;
  struct cb_error err;
  cleanup_free char *json = NULL, *again = NULL;
  memset(&x, 0, sizeof(x));
  x.manifests = xcalloc(2, sizeof(*x.manifests));
  x.n_manifests = 2;
  x.manifests[0].media_type = xstrdup(OCI_MEDIA_TYPE_MANIFEST);
  x.manifests[0].digest = xstrdup(DA);
  x.manifests[0].size = 500;
  oci_descriptor_annotate(&x.manifests[0], OCI_ANNOTATION_REF_NAME, "v1");
  oci_descriptor_annotate(&x.manifests[0], OCI_ANNOTATION_IMAGE_NAME, "docker.io/library/app:v1");
  x.manifests[1].media_type = xstrdup(OCI_MEDIA_TYPE_MANIFEST);
  x.manifests[1].digest = xstrdup(DB);
  x.manifests[1].size = 501;
  x.manifests[1].platform_os = xstrdup("linux");
  x.manifests[1].platform_arch = xstrdup("arm64");
  x.manifests[1].platform_variant = xstrdup("v8");
  json = oci_index_json(&x);
  CHECK_STR(json, "{\"manifests\":["
                  "{\"annotations\":{\"io.containerd.image.name\":\"docker.io/library/app:v1\","
                  "\"org.opencontainers.image.ref.name\":\"v1\"},\"digest\":\"" DA "\","
                  "\"mediaType\":\"" OCI_MEDIA_TYPE_MANIFEST "\",\"size\":500},"
                  "{\"digest\":\"" DB "\",\"mediaType\":\"" OCI_MEDIA_TYPE_MANIFEST "\","
                  "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"},"
                  "\"size\":501}],"
                  "\"mediaType\":\"" OCI_MEDIA_TYPE_INDEX "\",\"schemaVersion\":2}");
  CHECK_INT(oci_index_parse(json, strlen(json), &back, &err), 0);
  CHECK_INT(back.n_manifests, 2);
  if (back.n_manifests == 2) {
    CHECK_STR(oci_descriptor_annotation(&back.manifests[0], OCI_ANNOTATION_REF_NAME), "v1");
    CHECK_STR(back.manifests[1].platform_arch, "arm64");
    CHECK_STR(back.manifests[1].platform_variant, "v8");
  }
  again = oci_index_json(&back);
  CHECK_STR(again, json);
  oci_index_release(&back);

  /* an empty index, and a Docker manifest list */
  oci_index_release(&x);
  free(json);
  json = oci_index_json(&x);
  CHECK_STR(json, "{\"manifests\":[],\"mediaType\":\"" OCI_MEDIA_TYPE_INDEX "\","
                  "\"schemaVersion\":2}");
  static const char list[] =
      "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MEDIA_TYPE_DOCKER_LIST "\",\"manifests\":["
      "{\"mediaType\":\"" OCI_MEDIA_TYPE_DOCKER_MANIFEST "\",\"size\":7,\"digest\":\"" DC "\","
      "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\",\"os.version\":\"1\"}}]}";
  CHECK_INT(oci_index_parse(list, strlen(list), &back, &err), 0);
  CHECK_INT(back.n_manifests, 1);
  if (back.n_manifests == 1)
    CHECK_STR(back.manifests[0].platform_os, "linux");
  oci_index_release(&back);
}

/* ---- hostile input ---- */

struct bad_case {
  const char *json;
  const char *error; /* a part of the message */
};

#define RFS "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}"
#define DESC "{\"mediaType\":\"m\",\"digest\":\"" DA "\",\"size\":1}"

static const struct bad_case bad_configs[] = {
  { "", "invalid image config: line 1 column 0: " },
  { "{\"rootfs\":", "invalid image config: line 1" },
  { "[]", "invalid image config: not a JSON object" },
  { "\"x\"", "invalid image config: line 1" },
  { "{}", "\"rootfs\" is missing" },
  { "{\"rootfs\":[]}", "\"rootfs\" is not an object" },
  { "{\"rootfs\":{\"type\":\"layers\"}}", "\"rootfs.diff_ids\" is missing" },
  { "{\"rootfs\":{\"type\":\"other\",\"diff_ids\":[]}}", "\"rootfs.type\" is not \"layers\"" },
  { "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:abc\"]}}",
    "\"rootfs.diff_ids[0]\" is not a valid digest: \"sha256:abc\"" },
  { "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" DA "\",7]}}",
    "\"rootfs.diff_ids[1]\" is not a string" },
  { "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:\\n\\u001b[31m\"]}}",
    "is not a valid digest: \"sha256:\\x0a\\x1b[31m\"" },
  { "{\"architecture\":5," RFS "}", "\"architecture\" is not a string" },
  { "{\"config\":[]," RFS "}", "\"config\" is not an object" },
  { "{\"config\":{\"Env\":\"A=1\"}," RFS "}", "\"config.Env\" is not an array" },
  { "{\"config\":{\"Env\":[\"A=1\",null]}," RFS "}", "\"config.Env[1]\" is not a string" },
  { "{\"config\":{\"Cmd\":{}}," RFS "}", "\"config.Cmd\" is not an array" },
  { "{\"config\":{\"Labels\":{\"a\":1}}," RFS "}", "\"config.Labels.a\" is not a string" },
  { "{\"config\":{\"Labels\":{\"a\\n\\\"b\":1}}," RFS "}",
    "\"config.Labels.a\\x0a\\\"b\" is not a string" },
  { "{\"config\":{\"ExposedPorts\":[\"80/tcp\"]}," RFS "}",
    "\"config.ExposedPorts\" is not an object" },
  { "{\"config\":{\"Volumes\":{\"/d\":1}}," RFS "}", "\"config.Volumes./d\" is not an object" },
  { "{\"config\":{\"Healthcheck\":{\"Interval\":-1}}," RFS "}",
    "\"config.Healthcheck.Interval\" is negative" },
  { "{\"config\":{\"Healthcheck\":{\"Timeout\":1.5}}," RFS "}",
    "\"config.Healthcheck.Timeout\" is not an integer" },
  { "{\"config\":{\"Healthcheck\":{\"Retries\":99999999999}}," RFS "}",
    "\"config.Healthcheck.Retries\" is too large" },
  { "{\"config\":{\"Healthcheck\":{\"Test\":\"CMD\"}}," RFS "}",
    "\"config.Healthcheck.Test\" is not an array" },
  { "{\"config\":{\"Healthcheck\":true}," RFS "}", "\"config.Healthcheck\" is not an object" },
  { "{\"history\":{}," RFS "}", "\"history\" is not an array" },
  { "{\"history\":[{},7]," RFS "}", "\"history[1]\" is not an object" },
  { "{\"history\":[{\"empty_layer\":\"yes\"}]," RFS "}",
    "\"history[0].empty_layer\" is not a boolean" },
  { "{\"history\":[{\"created_by\":[]}]," RFS "}", "\"history[0].created_by\" is not a string" },
  { "{\"os\":\"a\\u0000b\"," RFS "}", "invalid image config: line 1" },
  { "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}x", "invalid image config: line 1" },
};

static const struct bad_case bad_manifests[] = {
  { "null", "invalid image manifest: line 1" },
  { "[{}]", "invalid image manifest: not a JSON object" },
  { "{\"config\":" DESC ",\"layers\":[]}", "\"schemaVersion\" is missing" },
  { "{\"schemaVersion\":\"2\",\"config\":" DESC ",\"layers\":[]}",
    "\"schemaVersion\" is not an integer" },
  { "{\"schemaVersion\":1,\"config\":" DESC ",\"layers\":[]}", "\"schemaVersion\" is 1, not 2" },
  { "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MEDIA_TYPE_INDEX "\",\"config\":" DESC
    ",\"layers\":[]}",
    "media type \"application/vnd.oci.image.index.v1+json\" is not an image manifest" },
  { "{\"schemaVersion\":2,\"mediaType\":7,\"config\":" DESC ",\"layers\":[]}",
    "\"mediaType\" is not a string" },
  { "{\"schemaVersion\":2,\"manifests\":[]}", "invalid image manifest: it is an image index" },
  { "{\"schemaVersion\":2,\"layers\":[]}", "\"config\" is missing" },
  { "{\"schemaVersion\":2,\"config\":[],\"layers\":[]}", "\"config\" is not an object" },
  { "{\"schemaVersion\":2,\"config\":" DESC "}", "\"layers\" is missing" },
  { "{\"schemaVersion\":2,\"config\":" DESC ",\"layers\":{}}", "\"layers\" is not an array" },
  { "{\"schemaVersion\":2,\"config\":" DESC ",\"layers\":[7]}", "\"layers[0]\" is not an object" },
  { "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"m\",\"digest\":\"sha256:../../etc/passwd\","
    "\"size\":1},\"layers\":[]}",
    "\"config.digest\" is not a valid digest: \"sha256:../../etc/passwd\"" },
  { "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"m\",\"digest\":\"" DA "\"},\"layers\":[]}",
    "\"config.size\" is missing" },
  { "{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA "\",\"size\":1},\"layers\":[]}",
    "\"config.mediaType\" is missing" },
  { "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"m\",\"size\":1},\"layers\":[]}",
    "\"config.digest\" is missing" },
  { "{\"schemaVersion\":2,\"config\":" DESC ",\"layers\":[" DESC ",{\"mediaType\":\"m\","
    "\"digest\":\"" DB "\",\"size\":-1}]}",
    "\"layers[1].size\" is negative" },
  { "{\"schemaVersion\":2,\"config\":" DESC ",\"layers\":[{\"mediaType\":\"m\","
    "\"digest\":\"" DB "\",\"size\":\"5\"}]}",
    "\"layers[0].size\" is not an integer" },
  { "{\"schemaVersion\":2,\"config\":" DESC ",\"layers\":[{\"mediaType\":\"m\","
    "\"digest\":\"" DB "\",\"size\":1e3}]}",
    "\"layers[0].size\" is not an integer" },
  { "{\"schemaVersion\":2,\"config\":" DESC ",\"layers\":[{\"mediaType\":\"m\","
    "\"digest\":\"" DB "\",\"size\":99999999999999999999}]}",
    "invalid image manifest: line 1" },
  { "{\"schemaVersion\":2,\"config\":" DESC ",\"layers\":[{\"mediaType\":\"m\","
    "\"digest\":\"" DB "\",\"size\":1,\"annotations\":{\"a\":[]}}]}",
    "\"layers[0].annotations.a\" is not a string" },
  { "{\"schemaVersion\":2,\"config\":" DESC ",\"layers\":[],\"annotations\":[]}",
    "\"annotations\" is not an object" },
  { "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"m\",\"digest\":\"SHA256:"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"size\":1},\"layers\":[]}",
    "\"config.digest\" is not a valid digest" },
};

static const struct bad_case bad_indexes[] = {
  { "{}", "invalid image index: \"schemaVersion\" is missing" },
  { "{\"schemaVersion\":2}", "\"manifests\" is missing" },
  { "{\"schemaVersion\":2,\"manifests\":{}}", "\"manifests\" is not an array" },
  { "{\"schemaVersion\":2,\"manifests\":[\"x\"]}", "\"manifests[0]\" is not an object" },
  { "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MEDIA_TYPE_MANIFEST "\",\"manifests\":[]}",
    "is not an image index" },
  { "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"m\",\"digest\":\"" DA "\",\"size\":1,"
    "\"platform\":\"linux\"}]}",
    "\"manifests[0].platform\" is not an object" },
  { "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"m\",\"digest\":\"" DA "\",\"size\":1,"
    "\"platform\":{\"os\":1}}]}",
    "\"manifests[0].platform.os\" is not a string" },
  { "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"m\",\"digest\":\"sha256:" DA "\","
    "\"size\":1}]}",
    "\"manifests[0].digest\" is not a valid digest" },
};

static void check_one_line(const struct cb_error *err, int line)
{
  if (strchr(err->msg, '\n') != NULL)
    unit_fail(__FILE__, line, "message spans lines: %s", err->msg);
}

static void test_hostile_config(void)
{
  for (size_t i = 0; i < CB_ARRAY_SIZE(bad_configs); i++) {
    struct oci_config c;
    struct cb_error err = { 0, "" };
    const char *j = bad_configs[i].json;
    if (oci_config_parse(j, strlen(j), &c, &err) == 0) {
      unit_fail(__FILE__, __LINE__, "accepted config %zu: %s", i, j);
      oci_config_release(&c);
      continue;
    }
    CHECK_CONTAINS(err.msg, bad_configs[i].error);
    check_one_line(&err, __LINE__);
    /* the output is left empty */
    CHECK(c.env.v == NULL && c.diff_ids.v == NULL && c.architecture == NULL);
  }
}

static void test_hostile_manifest_index(void)
{
  for (size_t i = 0; i < CB_ARRAY_SIZE(bad_manifests); i++) {
    struct oci_manifest m;
    struct cb_error err = { 0, "" };
    const char *j = bad_manifests[i].json;
    if (oci_manifest_parse(j, strlen(j), &m, &err) == 0) {
      unit_fail(__FILE__, __LINE__, "accepted manifest %zu: %s", i, j);
      oci_manifest_release(&m);
      continue;
    }
    CHECK_CONTAINS(err.msg, bad_manifests[i].error);
    check_one_line(&err, __LINE__);
    CHECK(m.layers == NULL && m.config.digest == NULL);
  }
  for (size_t i = 0; i < CB_ARRAY_SIZE(bad_indexes); i++) {
    struct oci_index x;
    struct cb_error err = { 0, "" };
    const char *j = bad_indexes[i].json;
    if (oci_index_parse(j, strlen(j), &x, &err) == 0) {
      unit_fail(__FILE__, __LINE__, "accepted index %zu: %s", i, j);
      oci_index_release(&x);
      continue;
    }
    CHECK_CONTAINS(err.msg, bad_indexes[i].error);
    check_one_line(&err, __LINE__);
    CHECK(x.manifests == NULL && x.n_manifests == 0);
  }
}

/* Deep nesting and a NUL inside the buffer: refused without a crash. */
static void test_hostile_nesting(void)
{
  const size_t depth = 200000;
  cleanup_free char *deep = xmalloc(2 * depth + 64);
  struct oci_config c;
  struct oci_manifest m;
  struct cb_error err;
  size_t n = 0;
  n += (size_t)snprintf(deep, 64, "{\"rootfs\":");
  for (size_t i = 0; i < depth; i++)
    deep[n++] = '[';
  for (size_t i = 0; i < depth; i++)
    deep[n++] = ']';
  deep[n++] = '}';
  deep[n] = '\0';
  CHECK_INT(oci_config_parse(deep, n, &c, &err), -1);
  CHECK_CONTAINS(err.msg, "invalid image config: line 1");
  check_one_line(&err, __LINE__);

  n = 0;
  for (size_t i = 0; i < depth / 8; i++)
    n += (size_t)snprintf(deep + n, 16, "{\"a\":");
  CHECK_INT(oci_manifest_parse(deep, n, &m, &err), -1);
  CHECK_CONTAINS(err.msg, "invalid image manifest: line 1");

  /* the length given is the length read: a NUL inside is an error */
  static const char with_nul[] = "{\"schemaVersion\":2}\0garbage";
  struct oci_index x;
  CHECK_INT(oci_index_parse(with_nul, sizeof(with_nul) - 1, &x, &err), -1);
  CHECK_CONTAINS(err.msg, "invalid image index: line 1");
}

/* An index of (os, arch, variant) entries; NULL os: no platform at all. */
static void index_of(struct oci_index *x, const char *const (*p)[3], size_t n)
{
  x->manifests = xcalloc(n, sizeof(*x->manifests));
  x->n_manifests = n;
  for (size_t i = 0; i < n; i++) {
    struct oci_descriptor *d = &x->manifests[i];
    d->media_type = xstrdup(OCI_MEDIA_TYPE_MANIFEST);
    d->digest = xasprintf("sha256:%064zu", i);
    d->platform_os = p[i][0] ? xstrdup(p[i][0]) : NULL;
    d->platform_arch = p[i][1] ? xstrdup(p[i][1]) : NULL;
    d->platform_variant = p[i][2] ? xstrdup(p[i][2]) : NULL;
  }
}

static void test_index_platform(void)
{
  static const char *const entries[][3] = {
    { "unknown", "unknown", NULL }, /* an attestation */
    { NULL, NULL, NULL },
    { "linux", "arm", "v6" },
    { "linux", "arm", "v7" },
    { "linux", "arm64", NULL },
    { "linux", "amd64", "v3" },
    { "linux", "amd64", NULL },
    { "windows", "amd64", NULL },
  };
  struct oci_index x;
  struct cb_error err;
  index_of(&x, entries, CB_ARRAY_SIZE(entries));
  /* an exact match wins over an earlier one with a variant */
  CHECK_INT(oci_index_select_platform(&x, "linux/amd64", &err), 6);
  CHECK_INT(oci_index_select_platform(&x, "linux/amd64/v3", &err), 5);
  CHECK_INT(oci_index_select_platform(&x, "linux/arm/v7", &err), 3);
  CHECK_INT(oci_index_select_platform(&x, "linux/arm/v6", &err), 2);
  /* arm64 without a variant is v8 */
  CHECK_INT(oci_index_select_platform(&x, "linux/arm64/v8", &err), 4);
  CHECK_INT(oci_index_select_platform(&x, "linux/arm64", &err), 4);
  CHECK_INT(oci_index_select_platform(&x, "windows/amd64", &err), 7);
  /* without an exact match, the first with any variant */
  CHECK_INT(oci_index_select_platform(&x, "linux/arm", &err), 2);
  CHECK_INT(oci_index_select_platform(&x, "linux/arm/v5", &err), -1);
  CHECK_CONTAINS(err.msg, "no image for platform \"linux/arm/v5\"");
  CHECK_CONTAINS(err.msg, "linux/arm/v7, linux/arm64, linux/amd64/v3");
  CHECK(strstr(err.msg, "unknown") == NULL);
  CHECK_INT(oci_index_select_platform(&x, "linux/s390x", &err), -1);
  CHECK_INT(oci_index_select_platform(&x, "linux", &err), -1);
  CHECK_CONTAINS(err.msg, "invalid platform \"linux\"");
  oci_index_release(&x);
}

static void check_media_type(const char *json, const char *want)
{
  char *got = oci_media_type_of_json(json, strlen(json));
  if (want)
    CHECK_STR(got ? got : "(null)", want);
  else
    CHECK(got == NULL);
  free(got);
}

static void test_media_type_of_json(void)
{
  check_media_type("{\"mediaType\":\"application/x-said\",\"manifests\":[]}", "application/x-said");
  check_media_type("{\"schemaVersion\":2,\"manifests\":[]}", OCI_MEDIA_TYPE_INDEX);
  check_media_type("{\"schemaVersion\":2,\"config\":{},\"layers\":[]}", OCI_MEDIA_TYPE_MANIFEST);
  check_media_type("{\"schemaVersion\":2,\"manifests\":{}}", NULL);
  check_media_type("{\"mediaType\":7}", NULL);
  check_media_type("not json", NULL);
}

static const struct unit_test tests[] = {
  { "config_exact_json", test_config_exact_json },
  { "config_empty", test_config_empty },
  { "config_round_trip", test_config_round_trip },
  { "config_encodings", test_config_encodings },
  { "config_history", test_config_history },
  { "config_env_labels", test_config_env_labels },
  { "config_copy", test_config_copy },
  { "config_parse_docker", test_config_parse_docker },
  { "manifest_round_trip", test_manifest_round_trip },
  { "manifest_docker", test_manifest_docker },
  { "index_round_trip", test_index_round_trip },
  { "index_platform", test_index_platform },
  { "media_type_of_json", test_media_type_of_json },
  { "hostile_config", test_hostile_config },
  { "hostile_manifest_index", test_hostile_manifest_index },
  { "hostile_nesting", test_hostile_nesting },
};
UNIT_MAIN(tests)
