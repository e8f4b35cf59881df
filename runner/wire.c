/*
 * The setup and configuration of one step, as the caller hands them to
 * cbuild-sandbox: a flat sequence of fields in a fixed order.  A number is
 * 8 bytes in the host's order (both ends are the same machine); a string is
 * a length (2^32-1 for NULL) and its bytes with a NUL; a list of strings is
 * a count and the strings.  The decoder trusts nothing: a short or
 * malformed buffer is an error, never a read past its end.
 */
#include "runner-internal.h"

#include <errno.h>

#define WIRE_MAGIC UINT64_C(0x31657269776263) /* "cbwire1" */
#define WIRE_NULL UINT32_MAX

/* ---- encoding (the caller) ---- */

static void put_u64(struct strbuf *out, uint64_t v)
{
  strbuf_add(out, &v, sizeof(v));
}

static void put_bytes(struct strbuf *out, const void *p, size_t n, bool null)
{
  uint32_t len = null ? WIRE_NULL : (uint32_t)n;
  strbuf_add(out, &len, sizeof(len));
  if (!null) {
    if (n)
      strbuf_add(out, p, n);
    strbuf_addch(out, '\0');
  }
}

static void put_str(struct strbuf *out, const char *s)
{
  put_bytes(out, s, s ? strlen(s) : 0, s == NULL);
}

static void put_strs(struct strbuf *out, const char *const *v, size_t n)
{
  put_u64(out, n);
  for (size_t i = 0; i < n; i++)
    put_str(out, v[i]);
}

static size_t count_strs(const char *const *v)
{
  size_t n = 0;
  while (v && v[n])
    n++;
  return n;
}

void runner_wire_encode(const struct runner_setup *s, struct strbuf *out)
{
  const struct runner_config *c = s->c;

  put_u64(out, WIRE_MAGIC);
  put_u64(out, s->rootless);
  put_u64(out, s->new_userns);
  put_u64(out, s->netns_fd >= 0);
  put_str(out, s->hostname);
  put_str(out, s->statedir);
  put_str(out, s->tmpdir);
  put_str(out, s->rootdir);
  put_str(out, s->etcdir);
  put_bytes(out, s->seccomp, s->seccomp_len, false);
  put_u64(out, s->ignored_signals);
  put_u64(out, s->wait_setup);
  put_u64(out, s->wait_network);

  put_strs(out, c->lowerdirs, c->n_lowerdirs);
  put_str(out, c->upperdir);
  put_str(out, c->workdir);
  put_strs(out, c->argv, count_strs(c->argv));
  put_strs(out, c->env, count_strs(c->env));
  put_str(out, c->cwd);
  put_str(out, c->user);
  put_str(out, c->hostname);
  put_u64(out, (uint64_t)c->network);
  put_u64(out, c->insecure);
  put_u64(out, c->n_mounts);
  for (size_t i = 0; i < c->n_mounts; i++) {
    const struct runner_mount *m = &c->mounts[i];
    put_u64(out, (uint64_t)m->type);
    put_str(out, m->source);
    put_str(out, m->target);
    put_u64(out, m->readonly);
    put_u64(out, (uint64_t)m->size);
    put_str(out, m->source_root);
    put_strs(out, m->hide, m->n_hide);
    put_strs(out, m->lowerdirs, m->n_lowerdirs);
    put_str(out, m->upperdir);
    put_str(out, m->workdir);
    put_bytes(out, m->data, m->data_len, m->data == NULL);
    put_u64(out, m->uid);
    put_u64(out, m->gid);
    put_u64(out, m->mode);
  }
}

/* ---- decoding (cbuild-sandbox) ---- */

struct wire_reader {
  const char *p;
  size_t left;
  bool bad;
};

static uint64_t get_u64(struct wire_reader *r)
{
  uint64_t v = 0;
  if (r->left < sizeof(v)) {
    r->bad = true;
    return 0;
  }
  memcpy(&v, r->p, sizeof(v));
  r->p += sizeof(v);
  r->left -= sizeof(v);
  return v;
}

/* A count of things that take at least one byte each: no more than left. */
static size_t get_count(struct wire_reader *r)
{
  uint64_t n = get_u64(r);
  if (n > r->left) {
    r->bad = true;
    return 0;
  }
  return (size_t)n;
}

static const char *get_bytes(struct wire_reader *r, size_t *len)
{
  uint32_t n;
  const char *s;
  *len = 0;
  if (r->bad || r->left < sizeof(n)) {
    r->bad = true;
    return NULL;
  }
  memcpy(&n, r->p, sizeof(n));
  r->p += sizeof(n);
  r->left -= sizeof(n);
  if (n == WIRE_NULL)
    return NULL;
  if ((size_t)n >= r->left || r->p[n] != '\0') {
    r->bad = true;
    return NULL;
  }
  s = r->p;
  r->p += (size_t)n + 1;
  r->left -= (size_t)n + 1;
  *len = n;
  return s;
}

static const char *get_str(struct wire_reader *r)
{
  size_t len;
  const char *s = get_bytes(r, &len);
  if (s && strlen(s) != len)
    r->bad = true; /* a NUL inside */
  return s;
}

/* A NULL-terminated array of n strings, none of them NULL. */
static const char *const *get_strs(struct wire_reader *r, size_t *n)
{
  const char **v;
  *n = get_count(r);
  v = xcalloc(*n + 1, sizeof(*v));
  for (size_t i = 0; i < *n && !r->bad; i++)
    if (!(v[i] = get_str(r)))
      r->bad = true;
  return v;
}

int runner_wire_decode(const char *buf, size_t len, struct runner_setup *s,
                       struct runner_config *c, struct cb_error *err)
{
  struct wire_reader r = { buf, len, false };
  struct runner_mount *mounts;
  size_t n;

  memset(c, 0, sizeof(*c));
  if (get_u64(&r) != WIRE_MAGIC)
    return cb_error_set(err, "the sandbox's configuration is not from this cbuild");
  s->c = c;
  s->rootless = get_u64(&r) != 0;
  s->new_userns = get_u64(&r) != 0;
  s->netns_fd = get_u64(&r) ? RUNNER_FD_NETNS : -1;
  s->hostname = get_str(&r);
  s->statedir = get_str(&r);
  s->tmpdir = get_str(&r);
  s->rootdir = get_str(&r);
  s->etcdir = get_str(&r);
  s->seccomp = get_bytes(&r, &s->seccomp_len);
  s->ignored_signals = get_u64(&r);
  s->wait_setup = get_u64(&r) != 0;
  s->wait_network = get_u64(&r) != 0;

  c->lowerdirs = get_strs(&r, &c->n_lowerdirs);
  c->upperdir = get_str(&r);
  c->workdir = get_str(&r);
  c->argv = get_strs(&r, &n);
  c->env = get_strs(&r, &n);
  c->cwd = get_str(&r);
  c->user = get_str(&r);
  c->hostname = get_str(&r);
  c->network = (enum runner_network)get_u64(&r);
  c->insecure = get_u64(&r) != 0;
  c->n_mounts = get_count(&r);
  mounts = xcalloc(c->n_mounts ? c->n_mounts : 1, sizeof(*mounts));
  c->mounts = mounts;
  for (size_t i = 0; i < c->n_mounts && !r.bad; i++) {
    struct runner_mount *m = &mounts[i];
    m->type = (enum runner_mount_type)get_u64(&r);
    m->source = get_str(&r);
    m->target = get_str(&r);
    m->readonly = get_u64(&r) != 0;
    m->size = (long long)get_u64(&r);
    m->source_root = get_str(&r);
    m->hide = get_strs(&r, &m->n_hide);
    m->lowerdirs = get_strs(&r, &m->n_lowerdirs);
    m->upperdir = get_str(&r);
    m->workdir = get_str(&r);
    m->data = get_bytes(&r, &m->data_len);
    m->uid = (uid_t)get_u64(&r);
    m->gid = (gid_t)get_u64(&r);
    m->mode = (mode_t)get_u64(&r);
  }
  if (r.bad || r.left != 0)
    return cb_error_set(err, "the sandbox's configuration is truncated or malformed");
  if (!s->hostname || !s->statedir || !s->tmpdir || !s->rootdir || !s->etcdir || !c->upperdir || !c->workdir ||
      !c->argv[0] || c->network > RUNNER_NET_HOST)
    return cb_error_set(err, "the sandbox's configuration lacks a required field");
  for (size_t i = 0; i < c->n_mounts; i++)
    if (!mounts[i].target || mounts[i].type > RUNNER_MOUNT_FILE)
      return cb_error_set(err, "the sandbox's configuration has a malformed mount");
  return 0;
}

void runner_wire_release(struct runner_config *c)
{
  struct runner_mount *mounts = (struct runner_mount *)c->mounts;
  free((void *)c->lowerdirs);
  free((void *)c->argv);
  free((void *)c->env);
  for (size_t i = 0; mounts && i < c->n_mounts; i++) {
    free((void *)mounts[i].hide);
    free((void *)mounts[i].lowerdirs);
  }
  free(mounts);
  memset(c, 0, sizeof(*c));
}
