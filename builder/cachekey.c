/*
 * Cache keys, and why a step missed.
 *
 * A step's key is a sha256 over:
 *   - its parent's key: the previous step's, or for the first step of a
 *     stage the base's (an image's manifest digest, scratch and the
 *     platform, or the key of the stage it is built FROM), itself over the
 *     options that change every layer (compression, SOURCE_DATE_EPOCH);
 *   - the instruction after substitution, with its flags, but not where it
 *     is written nor how it is spelled (builder_step_canonical); for RUN
 *     also the ARGs and ENV in scope, which the command sees;
 *   - for COPY and ADD, one line per copied file: its name and a digest of
 *     its type, mode, owner after --chown, link target, xattrs and
 *     content, never its mtime (builder_copy_inputs); for COPY --from, the
 *     key of the source stage instead; for ADD of a URL with --checksum,
 *     the checksum, so that a hit downloads nothing.
 *
 * Secrets never enter a key: RUN --mount=type=secret is keyed by its id.
 *
 * To explain a miss, each build records what it saw for each step, by
 * place (context, Dockerfile, stage, step number), and the next build
 * compares: the parent, the instruction, a variable, or the files.
 */
#include "builder-internal.h"

#include <jansson.h>
#include <stdlib.h>

#define KEY_VERSION "cbuild-step-v1"
/* files named in a miss's explanation */
#define EXPLAIN_FILES 3

void step_inputs_release(struct step_inputs *in)
{
  free(in->instruction);
  strvec_clear(&in->files);
  if (in->copy)
    builder_copy_free(in->copy);
  memset(in, 0, sizeof(*in));
}

static void hash_field(struct oci_hasher *h, const char *name, const char *value)
{
  size_t n = value ? strlen(value) : 0;
  char len[32];
  /* length-prefixed: no two different inputs hash alike */
  snprintf(len, sizeof(len), "%zu:", n);
  oci_hasher_update(h, name, strlen(name) + 1);
  oci_hasher_update(h, len, strlen(len));
  if (n)
    oci_hasher_update(h, value, n);
}

void builder_key_base(struct build_run *run, const char *what, const char *id,
                      char out[OCI_DIGEST_SIZE])
{
  struct oci_hasher *h = oci_hasher_new();
  char buf[64];
  hash_field(h, "version", KEY_VERSION);
  hash_field(h, what, id);
  snprintf(buf, sizeof(buf), "%d/%d", (int)run->layer_opts.compression, run->layer_opts.level);
  hash_field(h, "compression", buf);
  snprintf(buf, sizeof(buf), "%lld", (long long)run->epoch);
  hash_field(h, "epoch", buf);
  oci_hasher_final(h, out);
  oci_hasher_free(h);
}

static struct cache_stat_cache *stat_cache(struct build_run *run)
{
  if (run->stat_cache == NULL) {
    char id[OCI_DIGEST_SIZE];
    oci_digest_buf(run->ctx.real_dir, strlen(run->ctx.real_dir), id);
    run->stat_cache = cache_stat_load(run->store, id);
  }
  return run->stat_cache;
}

/*
 * RUN --mount=type=bind: what the step reads through it is an input.  From
 * the context: its files, as for COPY; from a stage: that stage's key;
 * from an image: its manifest.  Cache mounts are not (BuildKit's rule:
 * their content is the step's business), secrets never are.
 */
static int run_mount_inputs(struct build_run *run, int stage, const struct parser_step *step,
                            struct step_inputs *in, struct cb_error *err)
{
  for (size_t i = 0; i < step->n_mounts; i++) {
    const struct parser_mount *m = &step->mounts[i];
    char prefix[32], key[OCI_DIGEST_SIZE];
    struct cb_error why;
    int r;
    if (m->type != PARSER_MOUNT_BIND)
      continue;
    snprintf(prefix, sizeof(prefix), "mount-%zu", i);
    if (m->from && m->from_stage >= 0) {
      strvec_pushf(&in->files, "%s\tstage %s", prefix, run->stages[m->from_stage].key);
      continue;
    }
    if (m->from) {
      struct oci_descriptor d;
      r = builder_image_resolve(run->store, NULL, m->from, NULL, &d, err);
      if (r < 0)
        return -1;
      if (r == 0) {
        builder_key_base(run, "image", d.digest, key);
        oci_descriptor_release(&d);
        strvec_pushf(&in->files, "%s\timage %s", prefix, key);
      } else {
        /* a miss: the step then says what is wrong with the mount */
        strvec_pushf(&in->files, "%s\tunavailable", prefix);
      }
      continue;
    }
    pthread_mutex_lock(&run->stat_lock);
    r = builder_bind_inputs(run, stage, step, m->source, prefix, stat_cache(run), &in->files,
                            &why);
    pthread_mutex_unlock(&run->stat_lock);
    if (r < 0)
      strvec_pushf(&in->files, "%s\tunavailable", prefix);
  }
  return 0;
}

/* ROOT/cache/seen/<id>: an entry was recorded for a COPY or ADD with this
 * parent and instruction, whatever its files; id hashes the two.  One id
 * of its own says the store holds entries imported from a shared cache
 * (builder_seen_imported), whose parents and instructions are unknown. */
#define SEEN_DIR "seen"

static void seen_imported_id(char out[OCI_DIGEST_SIZE])
{
  struct oci_hasher *h = oci_hasher_new();
  hash_field(h, "version", KEY_VERSION);
  hash_field(h, "imported", "entries of a shared cache");
  oci_hasher_final(h, out);
  oci_hasher_free(h);
}

int builder_seen_imported(struct build_run *run, struct cb_error *err)
{
  char id[OCI_DIGEST_SIZE];
  seen_imported_id(id);
  return cache_file_write(run->store, SEEN_DIR, id, "", 0, err);
}

static void seen_id(const char *parent, const struct step_inputs *in, char out[OCI_DIGEST_SIZE])
{
  struct oci_hasher *h = oci_hasher_new();
  hash_field(h, "version", KEY_VERSION);
  hash_field(h, "parent", parent);
  hash_field(h, "instruction", in->instruction);
  oci_hasher_final(h, out);
  oci_hasher_free(h);
}

/* Whether no entry can match, or none will be looked up, so that files
 * may be hashed as the layer is written (and not read twice); when so, the
 * copy is set to hash them (only then: a step hashed before its lookup
 * must not hash its files again in the layer). */
static bool can_hash_in_layer(struct build_run *run, const char *parent, bool lookup,
                              struct step_inputs *in)
{
  char id[OCI_DIGEST_SIZE];
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  struct cb_error ignored;
  if (lookup) {
    /* an error reading either: as if recorded (the files are hashed first) */
    seen_imported_id(id);
    if (cache_file_read(run->store, SEEN_DIR, id, &text, &ignored) != 1)
      return false;
    seen_id(parent, in, id);
    if (cache_file_read(run->store, SEEN_DIR, id, &text, &ignored) != 1)
      return false;
  }
  return builder_copy_hash_in_layer(in->copy);
}

int step_inputs_finish(struct build_run *run, struct step_inputs *in, struct cb_error *err)
{
  int r;
  if (!in->files_later)
    return 0;
  in->files_later = false;
  pthread_mutex_lock(&run->stat_lock);
  r = builder_copy_inputs(in->copy, stat_cache(run), &in->files, err);
  pthread_mutex_unlock(&run->stat_lock);
  return r;
}

int step_inputs_recorded(struct build_run *run, const char *parent,
                         const struct step_inputs *in, struct cb_error *err)
{
  char id[OCI_DIGEST_SIZE];
  if (in->copy == NULL)
    return 0;
  seen_id(parent, in, id);
  return cache_file_write(run->store, SEEN_DIR, id, "", 0, err);
}

int step_inputs_collect(struct build_run *run, int stage, const struct parser_step *step,
                        const char *parent, bool lookup, struct step_inputs *in,
                        struct cb_error *err)
{
  int r;
  memset(in, 0, sizeof(*in));
  in->instruction = builder_step_canonical(step);
  if (step->instr == PARSER_RUN)
    return run_mount_inputs(run, stage, step, in, err);
  if (step->instr != PARSER_COPY && step->instr != PARSER_ADD)
    return 0;
  if (step->from && step->from_stage >= 0) {
    memcpy(in->from_key, run->stages[step->from_stage].key, OCI_DIGEST_SIZE);
    return 0;
  }
  if (step->from) {
    /* an image of the store: keyed by its manifest */
    struct oci_descriptor d;
    r = builder_image_resolve(run->store, NULL, step->from, NULL, &d, err);
    if (r < 0)
      return -1;
    if (r > 0)
      return cb_error_set(err, "--from=%s: no such stage, and no such image in the local store",
                          step->from);
    builder_key_base(run, "image", d.digest, in->from_key);
    oci_descriptor_release(&d);
    return 0;
  }
  if (step->instr == PARSER_ADD && step->checksum && step->args.n == 2 &&
      (cb_starts_with(step->args.v[0], "http://") || cb_starts_with(step->args.v[0], "https://"))) {
    /* a download with a checksum is known before it is made */
    strvec_pushf(&in->files, "%s\t%s", step->args.v[0], step->checksum);
    return 0;
  }
  if (builder_copy_prepare(run, stage, step, true, &in->copy, err) < 0)
    return -1;
  if (can_hash_in_layer(run, parent, lookup, in)) {
    in->files_later = true;
    return 0;
  }
  /* stages in parallel share the context's stat cache */
  pthread_mutex_lock(&run->stat_lock);
  r = builder_copy_inputs(in->copy, stat_cache(run), &in->files, err);
  pthread_mutex_unlock(&run->stat_lock);
  return r;
}

void step_key(const char *parent, const struct step_inputs *in, char out[OCI_DIGEST_SIZE])
{
  struct oci_hasher *h = oci_hasher_new();
  hash_field(h, "parent", parent);
  hash_field(h, "instruction", in->instruction);
  if (in->from_key[0])
    hash_field(h, "from", in->from_key);
  for (size_t i = 0; i < in->files.n; i++)
    hash_field(h, "file", in->files.v[i]);
  oci_hasher_final(h, out);
  oci_hasher_free(h);
}

/* ---- explaining ---- */

/* The record slot of a step: where it is, not what it is. */
static void record_slot(struct build_run *run, int stage, size_t index, char out[OCI_DIGEST_SIZE])
{
  struct oci_hasher *h = oci_hasher_new();
  char buf[64];
  hash_field(h, "context", run->ctx.real_dir);
  hash_field(h, "dockerfile", run->plan->df->file);
  snprintf(buf, sizeof(buf), "%d/%zu", stage, index);
  hash_field(h, "step", buf);
  oci_hasher_final(h, out);
  oci_hasher_free(h);
}

static json_t *strvec_to_json(const struct strvec *sv)
{
  json_t *a = json_array();
  for (size_t i = 0; i < sv->n; i++)
    json_array_append_new(a, json_string(sv->v[i]));
  return a;
}

/* "name\tdigest" -> the name's length */
static size_t name_len(const char *line)
{
  const char *tab = strrchr(line, '\t');
  return tab ? (size_t)(tab - line) : strlen(line);
}

/* What a line shows the user: a context file's own path when the line
 * has one ("dest\tcontext path\tdigest"), else its name. */
static char *display_name(const char *line)
{
  size_t n = name_len(line);
  const char *tab = memrchr(line, '\t', n);
  return tab ? xstrndup(tab + 1, n - (size_t)(tab + 1 - line)) : xstrndup(line, n);
}

/* The files added, removed or changed between two sorted lists. */
static void files_diff(json_t *old, const struct strvec *now, struct strbuf *out)
{
  size_t n_old = json_array_size(old), i = 0, j = 0, changed = 0;
  struct strvec names = STRVEC_INIT;
  while (i < n_old || j < now->n) {
    const char *a = i < n_old ? json_string_value(json_array_get(old, i)) : NULL;
    const char *b = j < now->n ? now->v[j] : NULL;
    int c;
    if (a == NULL && i < n_old) {
      i++;
      continue;
    }
    if (a && b) {
      size_t la = name_len(a), lb = name_len(b);
      c = strncmp(a, b, la < lb ? la : lb);
      if (c == 0)
        c = la < lb ? -1 : la > lb ? 1 : 0;
    } else {
      c = a ? -1 : 1;
    }
    if (c == 0) {
      if (strcmp(a, b) != 0) {
        changed++;
        if (names.n < EXPLAIN_FILES)
          strvec_push_nodup(&names, display_name(b));
      }
      i++;
      j++;
    } else if (c < 0) {
      changed++;
      if (names.n < EXPLAIN_FILES) {
        cleanup_free char *shown = display_name(a);
        strvec_pushf(&names, "%s (removed)", shown);
      }
      i++;
    } else {
      changed++;
      if (names.n < EXPLAIN_FILES) {
        cleanup_free char *shown = display_name(b);
        strvec_pushf(&names, "%s (new)", shown);
      }
      j++;
    }
  }
  if (changed) {
    strbuf_addf(out, "%zu file%s changed: ", changed, changed == 1 ? "" : "s");
    for (size_t k = 0; k < names.n; k++)
      strbuf_addf(out, "%s%s", k ? ", " : "", names.v[k]);
    if (changed > names.n)
      strbuf_addstr(out, ", ...");
  }
  strvec_clear(&names);
}

/* The first variable of RUN's environment that differs, by name. */
static void env_diff(json_t *old_instr, json_t *new_instr, struct strbuf *out)
{
  json_t *a = json_object_get(old_instr, "env"), *b = json_object_get(new_instr, "env");
  size_t na = json_array_size(a), nb = json_array_size(b);
  for (size_t k = 0; k < na + nb; k++) {
    const char *v = json_string_value(k < na ? json_array_get(a, k) : json_array_get(b, k - na));
    json_t *other = k < na ? b : a;
    const char *eq = v ? strchr(v, '=') : NULL;
    bool found = false;
    size_t i;
    json_t *x;
    if (!eq)
      continue;
    json_array_foreach(other, i, x) {
      const char *w = json_string_value(x);
      if (w && strcmp(w, v) == 0)
        found = true;
    }
    if (!found) {
      strbuf_addf(out, "the value of %.*s changed", (int)(eq - v), v);
      return;
    }
  }
}

/* ARG: the first build arg whose value differs. */
static void arg_diff(json_t *a, json_t *b, struct strbuf *out)
{
  json_t *pa = json_object_get(a, "pairs"), *pb = json_object_get(b, "pairs");
  size_t i;
  json_t *x;
  if (json_array_size(pa) != json_array_size(pb))
    return;
  json_array_foreach(pa, i, x) {
    json_t *y = json_array_get(pb, i);
    const char *k = json_string_value(json_object_get(x, "key"));
    if (!k || !json_equal(json_object_get(x, "key"), json_object_get(y, "key")))
      return;
    if (!json_equal(json_object_get(x, "value"), json_object_get(y, "value"))) {
      strbuf_addf(out, "the value of build arg %s changed", k);
      return;
    }
  }
}

static void explain_against(json_t *old, const char *parent, const struct step_inputs *in,
                            bool first, struct strbuf *why)
{
  const char *old_parent = json_string_value(json_object_get(old, "parent"));
  const char *old_instr = json_string_value(json_object_get(old, "instruction"));
  const char *old_from = json_string_value(json_object_get(old, "from"));
  if (!old_parent || strcmp(old_parent, parent) != 0) {
    strbuf_addstr(why, first ? "the base image changed" : "an earlier step changed");
    return;
  }
  if (!old_instr || strcmp(old_instr, in->instruction) != 0) {
    json_t *a = old_instr ? json_loads(old_instr, 0, NULL) : NULL;
    json_t *b = json_loads(in->instruction, 0, NULL);
    json_t *a_env = json_object_get(a, "env"), *b_env = json_object_get(b, "env");
    const char *instr = json_string_value(json_object_get(b, "instruction"));
    if (a && b && instr && strcmp(instr, "ARG") == 0)
      arg_diff(a, b, why);
    else if (a && b && !json_equal(a_env, b_env)) {
      /* the same command otherwise? then it is a variable */
      json_object_del(a, "env");
      json_object_del(b, "env");
      if (json_equal(a, b)) {
        json_object_set(a, "env", a_env ? a_env : json_null());
        json_object_set(b, "env", b_env ? b_env : json_null());
        env_diff(a, b, why);
      }
    }
    json_decref(a);
    json_decref(b);
    if (!why->len)
      strbuf_addstr(why, "the instruction changed");
    return;
  }
  if (in->from_key[0]) {
    if (!old_from || strcmp(old_from, in->from_key) != 0)
      strbuf_addstr(why, "the source stage changed");
    return;
  }
  files_diff(json_object_get(old, "files"), &in->files, why);
}

int builder_explain(struct build_run *run, int stage, size_t index, const char *parent,
                    const struct step_inputs *in, const char *key, struct strbuf *why,
                    struct cb_error *err)
{
  char slot[OCI_DIGEST_SIZE];
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  json_t *old = NULL, *rec;
  char *dump;
  int r;

  record_slot(run, stage, index, slot);
  r = cache_file_read(run->store, "last", slot, &text, err);
  if (r < 0)
    return -1;
  /* the same inputs as last time: nothing to record or explain, and no
   * need to parse a record that may list thousands of files (it starts
   * with its key, as written below) */
  {
    cleanup_free char *head = xasprintf("{\"key\":\"%s\"", key);
    if (r == 0 && cb_starts_with(text.buf, head))
      return 0;
  }
  if (r == 0)
    old = json_loadb(text.buf, text.len, 0, NULL);
  if (old) {
    const char *old_key = json_string_value(json_object_get(old, "key"));
    if (old_key && strcmp(old_key, key) == 0) {
      /* the same inputs as last time: nothing to record or explain */
      json_decref(old);
      return 0;
    }
    explain_against(old, parent, in, index == 0, why);
    json_decref(old);
  }
  if (!why->len && old)
    strbuf_addstr(why, "its inputs changed");

  rec = json_pack("{s:s, s:s, s:s, s:o}", "key", key, "parent", parent, "instruction",
                  in->instruction, "files", strvec_to_json(&in->files));
  if (in->from_key[0])
    json_object_set_new(rec, "from", json_string(in->from_key));
  dump = json_dumps(rec, JSON_COMPACT);
  json_decref(rec);
  if (!dump)
    cb_die("out of memory encoding JSON");
  r = cache_file_write(run->store, "last", slot, dump, strlen(dump), err);
  free(dump);
  return r;
}

int builder_stat_cache_save(struct build_run *run, struct cb_error *err)
{
  int r = 0;
  if (run->stat_cache)
    r = cache_stat_save(run->stat_cache, err);
  cache_stat_free(run->stat_cache);
  run->stat_cache = NULL;
  return r;
}
