/*
 * The values instructions take, checked as Docker checks them: Go
 * durations (HEALTHCHECK), port specs (EXPOSE), signals (STOPSIGNAL),
 * stage names (FROM ... AS) and RUN --mount options.
 */
#include "parser-internal.h"

#include <errno.h>
#include <strings.h>

/* ---- durations: Go's time.ParseDuration ---- */

static const struct {
  const char *unit;
  int64_t ns;
} duration_units[] = {
  { "ns", 1 },
  { "us", 1000 },
  { "\xc2\xb5s", 1000 }, /* U+00B5 micro sign */
  { "\xce\xbcs", 1000 }, /* U+03BC greek mu */
  { "ms", 1000000 },
  { "s", 1000000000LL },
  { "m", 60LL * 1000000000LL },
  { "h", 3600LL * 1000000000LL },
};

int parser_duration(const char *s, int64_t *ns)
{
  bool neg = false;
  double total = 0;
  if (*s == '-' || *s == '+')
    neg = *s++ == '-';
  if (strcmp(s, "0") == 0) {
    *ns = 0;
    return 0;
  }
  if (*s == '\0')
    return -1;
  while (*s) {
    double v = 0, frac = 0, scale = 1;
    bool digits = false;
    size_t ulen = 0;
    int64_t unit = 0;
    while (*s >= '0' && *s <= '9') {
      v = v * 10 + (*s++ - '0');
      digits = true;
    }
    if (*s == '.') {
      s++;
      while (*s >= '0' && *s <= '9') {
        scale /= 10;
        frac += (*s++ - '0') * scale;
        digits = true;
      }
    }
    if (!digits)
      return -1;
    while (s[ulen] && !(s[ulen] >= '0' && s[ulen] <= '9') && s[ulen] != '.')
      ulen++;
    for (size_t i = 0; i < CB_ARRAY_SIZE(duration_units); i++)
      if (strlen(duration_units[i].unit) == ulen && strncmp(s, duration_units[i].unit, ulen) == 0)
        unit = duration_units[i].ns;
    if (unit == 0)
      return -1; /* a missing or unknown unit */
    total += (v + frac) * (double)unit;
    if (total > 9.2e18)
      return -1;
    s += ulen;
  }
  *ns = (int64_t)(total + 0.5) * (neg ? -1 : 1);
  return 0;
}

/* ---- EXPOSE ---- */

static int port_number(const char *s, size_t n, unsigned *out)
{
  unsigned v = 0;
  if (n == 0 || n > 5)
    return -1;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v > 65535)
    return -1;
  *out = v;
  return 0;
}

int parser_port_parse(const char *spec, struct strvec *out, char *errbuf, size_t errsize)
{
  const char *slash = strchr(spec, '/');
  size_t plen = slash ? (size_t)(slash - spec) : strlen(spec);
  char proto[8] = "tcp";
  const char *dash;
  unsigned lo, hi;
  if (slash && slash[1]) {
    const char *p = slash + 1;
    size_t n = strlen(p);
    if (n >= sizeof(proto) || strchr(p, '/')) {
      snprintf(errbuf, errsize, "invalid proto: %s", p);
      return -1;
    }
    for (size_t i = 0; i <= n; i++)
      proto[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
    if (strcmp(proto, "tcp") && strcmp(proto, "udp") && strcmp(proto, "sctp")) {
      snprintf(errbuf, errsize, "invalid proto: %s", p);
      return -1;
    }
  }
  if (memchr(spec, ':', plen)) {
    snprintf(errbuf, errsize, "invalid port \"%s\": EXPOSE takes PORT[-PORT][/PROTO]", spec);
    return -1;
  }
  dash = memchr(spec, '-', plen);
  if (port_number(spec, dash ? (size_t)(dash - spec) : plen, &lo) < 0 ||
      port_number(dash ? dash + 1 : spec, dash ? plen - (size_t)(dash + 1 - spec) : plen, &hi) < 0) {
    snprintf(errbuf, errsize, "invalid port \"%s\"", spec);
    return -1;
  }
  if (hi < lo) {
    snprintf(errbuf, errsize, "invalid port range \"%s\": the end is before the start", spec);
    return -1;
  }
  for (unsigned p = lo; p <= hi; p++)
    strvec_pushf(out, "%u/%s", p, proto);
  return 0;
}

/* ---- STOPSIGNAL ---- */

static const char *const signal_names[] = {
  "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
  "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
  "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
  "RTMIN", "RTMAX",
};

bool parser_signal_valid(const char *s)
{
  char *end;
  long n;
  if (*s == '\0')
    return false;
  errno = 0;
  n = strtol(s, &end, 10);
  if (*end == '\0')
    return errno == 0 && n >= 1 && n <= 64;
  if (strncasecmp(s, "SIG", 3) == 0)
    s += 3;
  for (size_t i = 0; i < CB_ARRAY_SIZE(signal_names); i++)
    if (strcasecmp(s, signal_names[i]) == 0)
      return true;
  /* RTMIN+1..RTMIN+15 and RTMAX-14..RTMAX-1 */
  if ((strncasecmp(s, "RTMIN+", 6) == 0 || strncasecmp(s, "RTMAX-", 6) == 0) && s[6]) {
    n = strtol(s + 6, &end, 10);
    return *end == '\0' && n >= 1 && n <= (s[5] == '+' ? 15 : 14);
  }
  return false;
}

/* ---- stage names: ^[a-z][a-z0-9-_.]*$ ---- */

bool parser_stage_name_valid(const char *s)
{
  if (!(*s >= 'a' && *s <= 'z'))
    return false;
  for (s++; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
          *s == '.'))
      return false;
  return true;
}

/* ---- RUN --mount ---- */

/* Split a CSV record (quotes with "" inside them) into fields. */
static int csv_fields(const char *s, struct strvec *out)
{
  struct strbuf f = STRBUF_INIT;
  for (;;) {
    strbuf_reset(&f);
    if (*s == '"') {
      s++;
      for (;;) {
        if (*s == '\0') {
          strbuf_release(&f);
          return -1;
        }
        if (*s == '"' && s[1] == '"') {
          strbuf_addch(&f, '"');
          s += 2;
        } else if (*s == '"') {
          s++;
          break;
        } else {
          strbuf_addch(&f, *s++);
        }
      }
      if (*s && *s != ',') {
        strbuf_release(&f);
        return -1;
      }
    } else {
      while (*s && *s != ',')
        strbuf_addch(&f, *s++);
    }
    strvec_push(out, f.buf);
    if (*s != ',')
      break;
    s++;
  }
  strbuf_release(&f);
  return 0;
}

static int parse_bool(const char *v, bool *out)
{
  if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)
    *out = true;
  else if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)
    *out = false;
  else
    return -1;
  return 0;
}

static int parse_ulong(const char *v, int base, unsigned long max, long *out)
{
  char *end;
  unsigned long n;
  if (!*v || *v == '-' || *v == '+')
    return -1;
  errno = 0;
  n = strtoul(v, &end, base);
  if (*end || errno || n > max)
    return -1;
  *out = (long)n;
  return 0;
}

static const char *mount_type_name(enum parser_mount_type t)
{
  static const char *const names[] = { "bind", "cache", "tmpfs", "secret", "ssh" };
  return names[t];
}

static int mount_parse(const char *spec, struct parser_mount *m, char *errbuf, size_t errsize)
{
  cleanup_strvec struct strvec fields = STRVEC_INIT;
  bool ro_auto = true;
  memset(m, 0, sizeof(*m));
  m->uid = m->gid = m->mode = -1;
  m->from_stage = -1;
  if (csv_fields(spec, &fields) < 0) {
    snprintf(errbuf, errsize, "bad quoting in \"%s\"", spec);
    return -1;
  }
  /* The type decides what the other keys mean: find it first. */
  for (size_t i = 0; i < fields.n; i++) {
    const char *f = fields.v[i];
    if (strncasecmp(f, "type=", 5) != 0)
      continue;
    f += 5;
    if (strcmp(f, "bind") == 0)
      m->type = PARSER_MOUNT_BIND;
    else if (strcmp(f, "cache") == 0)
      m->type = PARSER_MOUNT_CACHE;
    else if (strcmp(f, "tmpfs") == 0)
      m->type = PARSER_MOUNT_TMPFS;
    else if (strcmp(f, "secret") == 0)
      m->type = PARSER_MOUNT_SECRET;
    else if (strcmp(f, "ssh") == 0)
      m->type = PARSER_MOUNT_SSH;
    else {
      snprintf(errbuf, errsize, "unsupported mount type \"%s\"", f);
      return -1;
    }
  }
  for (size_t i = 0; i < fields.n; i++) {
    char *f = fields.v[i];
    char *eq = strchr(f, '=');
    const char *v = eq ? eq + 1 : NULL;
    bool b;
    if (eq)
      *eq = '\0';
    for (char *p = f; *p; p++)
      *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    if (!v) {
      if (strcmp(f, "readonly") == 0 || strcmp(f, "ro") == 0) {
        m->readonly = true;
        ro_auto = false;
      } else if (strcmp(f, "readwrite") == 0 || strcmp(f, "rw") == 0) {
        m->readonly = false;
        ro_auto = false;
      } else if (strcmp(f, "required") == 0 &&
                 (m->type == PARSER_MOUNT_SECRET || m->type == PARSER_MOUNT_SSH)) {
        m->required = true;
      } else {
        snprintf(errbuf, errsize, "invalid field \"%s\": must be a key=value pair", f);
        return -1;
      }
      continue;
    }
    if (strcmp(f, "type") == 0)
      continue;
    if (strcmp(f, "target") == 0 || strcmp(f, "dst") == 0 || strcmp(f, "destination") == 0) {
      free(m->target);
      m->target = xstrdup(v);
    } else if (strcmp(f, "source") == 0 || strcmp(f, "src") == 0) {
      free(m->source);
      m->source = xstrdup(v);
    } else if (strcmp(f, "from") == 0) {
      free(m->from);
      m->from = xstrdup(v);
    } else if (strcmp(f, "id") == 0) {
      free(m->id);
      m->id = xstrdup(v);
    } else if (strcmp(f, "env") == 0 && m->type == PARSER_MOUNT_SECRET) {
      free(m->env);
      m->env = xstrdup(v);
    } else if (strcmp(f, "readonly") == 0 || strcmp(f, "ro") == 0 ||
               strcmp(f, "readwrite") == 0 || strcmp(f, "rw") == 0 ||
               strcmp(f, "required") == 0) {
      if (parse_bool(v, &b) < 0) {
        snprintf(errbuf, errsize, "invalid value for %s: \"%s\"", f, v);
        return -1;
      }
      if (f[0] == 'r' && f[1] == 'e' && f[2] == 'q')
        m->required = b;
      else {
        m->readonly = (strcmp(f, "readonly") == 0 || strcmp(f, "ro") == 0) ? b : !b;
        ro_auto = false;
      }
    } else if (strcmp(f, "sharing") == 0 && m->type == PARSER_MOUNT_CACHE) {
      if (strcmp(v, "shared") == 0)
        m->sharing = PARSER_SHARING_SHARED;
      else if (strcmp(v, "private") == 0)
        m->sharing = PARSER_SHARING_PRIVATE;
      else if (strcmp(v, "locked") == 0)
        m->sharing = PARSER_SHARING_LOCKED;
      else {
        snprintf(errbuf, errsize, "unsupported sharing value \"%s\"", v);
        return -1;
      }
    } else if (strcmp(f, "mode") == 0 && m->type != PARSER_MOUNT_BIND &&
               m->type != PARSER_MOUNT_TMPFS) {
      if (parse_ulong(v, 8, 07777, &m->mode) < 0) {
        snprintf(errbuf, errsize, "invalid mode \"%s\": want octal", v);
        return -1;
      }
    } else if ((strcmp(f, "uid") == 0 || strcmp(f, "gid") == 0) &&
               m->type != PARSER_MOUNT_BIND && m->type != PARSER_MOUNT_TMPFS) {
      if (parse_ulong(v, 10, 0xffffffffUL, f[0] == 'u' ? &m->uid : &m->gid) < 0) {
        snprintf(errbuf, errsize, "invalid %s \"%s\"", f, v);
        return -1;
      }
    } else if (strcmp(f, "size") == 0 && m->type == PARSER_MOUNT_TMPFS) {
      if (cb_parse_size(v, &m->size) < 0) {
        snprintf(errbuf, errsize, "invalid size \"%s\"", v);
        return -1;
      }
    } else {
      snprintf(errbuf, errsize, "unexpected key \"%s\" for mount type \"%s\"", f,
               mount_type_name(m->type));
      return -1;
    }
  }

  if (ro_auto)
    m->readonly = m->type == PARSER_MOUNT_BIND || m->type == PARSER_MOUNT_SECRET ||
                  m->type == PARSER_MOUNT_SSH;
  switch (m->type) {
  case PARSER_MOUNT_SECRET:
    if (m->from) {
      snprintf(errbuf, errsize, "secret mount should not have a from");
      return -1;
    }
    if (!m->id && !m->target && !m->source) {
      snprintf(errbuf, errsize, "secret mount needs an id or a target");
      return -1;
    }
    if (!m->id) {
      const char *base = m->source ? m->source : m->target;
      const char *slash = strrchr(base, '/');
      m->id = xstrdup(slash ? slash + 1 : base);
    }
    if (!m->target && !m->env)
      m->target = xasprintf("/run/secrets/%s", m->id);
    break;
  case PARSER_MOUNT_SSH:
    if (!m->id)
      m->id = xstrdup("default");
    if (!m->target)
      m->target = xstrdup("/run/buildkit/ssh_agent.0");
    break;
  default:
    if (!m->target || !*m->target) {
      snprintf(errbuf, errsize, "mount type \"%s\" requires a target", mount_type_name(m->type));
      return -1;
    }
    if (m->type == PARSER_MOUNT_TMPFS && (m->from || m->source)) {
      snprintf(errbuf, errsize, "tmpfs mounts take no source or from");
      return -1;
    }
    break;
  }
  return 0;
}

int parser_mount_parse(const char *spec, struct parser_mount *m, char *errbuf, size_t errsize)
{
  if (mount_parse(spec, m, errbuf, errsize) < 0) {
    parser_mount_release(m);
    return -1;
  }
  return 0;
}
