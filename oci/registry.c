/*
 * A distribution API (v2) client over libcurl: manifests and blobs of one
 * repository, with the registry's authentication, retries, and digests
 * checked as bytes arrive.  Registry responses are hostile input: sizes are
 * bounded, headers are copied with limits, and nothing a registry sends is
 * trusted before it hashes to what was asked for.
 */
#include "oci-internal.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#define REGISTRY_MANIFEST_MAX ((size_t)4 << 20)
#define REGISTRY_ERROR_BODY_MAX ((size_t)64 << 10)
#define REGISTRY_TOKEN_MAX ((size_t)1 << 20)
#define REGISTRY_HEADER_MAX 8192
#define REGISTRY_DEFAULT_RETRIES 4
#define REGISTRY_BACKOFF_MS 250
#define REGISTRY_BACKOFF_MAX_MS 10000

static const char accept_manifests[] =
    "Accept: " OCI_MEDIA_TYPE_MANIFEST ", " OCI_MEDIA_TYPE_INDEX ", "
    OCI_MEDIA_TYPE_DOCKER_MANIFEST ", " OCI_MEDIA_TYPE_DOCKER_LIST;

enum auth_scheme { AUTH_NONE, AUTH_BASIC, AUTH_BEARER };

struct token {
  char *scope;
  char *header; /* "Authorization: Bearer ..." */
};

struct oci_registry {
  char *registry;   /* as named: "docker.io", "127.0.0.1:5000" */
  char *repository;
  char *display;    /* "127.0.0.1:5000/app" */
  char *base;       /* "https://registry-1.docker.io" */
  bool insecure_tls;
  char *ca_cert;
  char *authfile;
  char *user_agent;
  int retries;
  CURLSH *share;
  pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

  /* the challenge and the credentials, under lock */
  pthread_mutex_t lock;
  enum auth_scheme scheme;
  char *realm, *service;
  bool creds_looked_up;
  struct oci_credentials creds;
  char *basic_header;
  struct token *tokens;
  size_t n_tokens, alloc_tokens;
};

/* ---- curl plumbing ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access a, void *p)
{
  struct oci_registry *r = p;
  if (data < CURL_LOCK_DATA_LAST)
    pthread_mutex_lock(&r->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *p)
{
  struct oci_registry *r = p;
  if (data < CURL_LOCK_DATA_LAST)
    pthread_mutex_unlock(&r->share_locks[data]);
}

static void cleanup_curlp(CURL **c)
{
  if (*c)
    curl_easy_cleanup(*c);
}
#define cleanup_curl __attribute__((cleanup(cleanup_curlp)))

static void cleanup_slistp(struct curl_slist **l)
{
  curl_slist_free_all(*l);
}
#define cleanup_slist __attribute__((cleanup(cleanup_slistp)))

/* One request: what to send, where the answer goes, what came back. */
struct http_request {
  const char *method; /* GET HEAD PUT POST PATCH */
  const char *url;
  const char *scope;  /* the token scope it needs; NULL: none yet */
  struct curl_slist *headers;
  bool follow;        /* follow redirects (blob GETs) */

  /* the body: memory, or a range of an fd */
  const void *body;
  size_t body_len;
  int body_fd;
  int64_t body_off, body_fd_len;

  /* the answer's body: an fd (blob) checked against want_digest, or resp->body
   * (at most out_max bytes of a 2xx answer, 64 KiB of an error) */
  int out_fd;
  int64_t out_start;
  size_t out_max;
  const char *want_digest;
  int64_t want_size;
  oci_progress_fn progress;
  void *progress_data;
  int64_t progress_base, progress_total;
};

struct http_response {
  long status;
  char *location, *content_type, *docker_digest, *www_authenticate;
  long retry_after;
  struct strbuf body; /* error bodies and small answers */

  /* while transferring */
  const struct http_request *req;
  struct oci_hasher *hasher;
  int64_t received, sent;
  bool too_big, write_failed;
  int write_errno;
};

/* A request with nothing to send and no body expected. */
static void request_init(struct http_request *req, struct http_response *resp,
                         const char *method, const char *url, const char *scope)
{
  memset(req, 0, sizeof(*req));
  memset(resp, 0, sizeof(*resp));
  req->method = method;
  req->url = url;
  req->scope = scope;
  req->body_fd = req->out_fd = -1;
  req->want_size = -1;
}

static void response_reset(struct http_response *resp)
{
  resp->status = 0;
  free(resp->location);
  free(resp->content_type);
  free(resp->docker_digest);
  free(resp->www_authenticate);
  resp->location = resp->content_type = resp->docker_digest = resp->www_authenticate = NULL;
  resp->retry_after = -1;
  strbuf_reset(&resp->body);
  resp->received = resp->sent = 0;
  resp->too_big = resp->write_failed = false;
  resp->write_errno = 0;
}

static void response_release(struct http_response *resp)
{
  response_reset(resp);
  strbuf_release(&resp->body);
  if (resp->hasher)
    oci_hasher_free(resp->hasher);
  resp->hasher = NULL;
}

/* Keep a header's value (trimmed, bounded); a new status line starts a new
 * set of headers (redirects, 100 Continue). */
static size_t on_header(char *buf, size_t size, size_t n, void *p)
{
  struct http_response *resp = p;
  size_t len = size * n;
  static const struct {
    const char *name;
    size_t off;
  } wanted[] = {
    { "location", offsetof(struct http_response, location) },
    { "content-type", offsetof(struct http_response, content_type) },
    { "docker-content-digest", offsetof(struct http_response, docker_digest) },
    { "www-authenticate", offsetof(struct http_response, www_authenticate) },
  };
  const char *colon;
  if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
    const char *sp = memchr(buf, ' ', len);
    resp->status = sp && (size_t)(sp - buf) + 4 <= len ? strtol(sp + 1, NULL, 10) : 0;
    for (size_t i = 0; i < CB_ARRAY_SIZE(wanted); i++) {
      char **slot = (char **)((char *)resp + wanted[i].off);
      free(*slot);
      *slot = NULL;
    }
    resp->retry_after = -1;
    return len;
  }
  if (len > REGISTRY_HEADER_MAX || (colon = memchr(buf, ':', len)) == NULL)
    return len;
  {
    size_t name_len = (size_t)(colon - buf);
    const char *v = colon + 1, *end = buf + len;
    while (v < end && (*v == ' ' || *v == '\t'))
      v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
      end--;
    for (size_t i = 0; i < CB_ARRAY_SIZE(wanted); i++) {
      if (strlen(wanted[i].name) == name_len && strncasecmp(buf, wanted[i].name, name_len) == 0) {
        char **slot = (char **)((char *)resp + wanted[i].off);
        free(*slot);
        *slot = xstrndup(v, (size_t)(end - v));
      }
    }
    if (name_len == 11 && strncasecmp(buf, "retry-after", 11) == 0) {
      char tmp[32];
      size_t k = (size_t)(end - v) < sizeof(tmp) - 1 ? (size_t)(end - v) : sizeof(tmp) - 1;
      memcpy(tmp, v, k);
      tmp[k] = '\0';
      resp->retry_after = strtol(tmp, NULL, 10);
    }
  }
  return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *p)
{
  struct http_response *resp = p;
  const struct http_request *req = resp->req;
  size_t len = size * n;
  bool to_fd = req->out_fd >= 0 && resp->status >= 200 && resp->status < 300;
  if (!to_fd) {
    size_t max = resp->status >= 200 && resp->status < 300 && req->out_max
                     ? req->out_max
                     : REGISTRY_ERROR_BODY_MAX;
    if (resp->body.len + len > max) {
      resp->too_big = true;
      return 0;
    }
    strbuf_add(&resp->body, buf, len);
  } else {
    if (req->want_size >= 0 && resp->received + (int64_t)len > req->want_size) {
      resp->too_big = true;
      return 0;
    }
    if (cb_write_all(req->out_fd, buf, len) < 0) {
      resp->write_failed = true;
      resp->write_errno = errno;
      return 0;
    }
  }
  if (resp->hasher && resp->status >= 200 && resp->status < 300)
    oci_hasher_update(resp->hasher, buf, len);
  resp->received += (int64_t)len;
  if (to_fd && req->progress)
    req->progress(req->progress_data, req->progress_base + resp->received, req->progress_total);
  return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *p)
{
  struct http_response *resp = p;
  const struct http_request *req = resp->req;
  size_t want = size * n;
  int64_t left;
  if (req->body_fd < 0) {
    left = (int64_t)req->body_len - resp->sent;
    if ((int64_t)want > left)
      want = (size_t)left;
    memcpy(buf, (const char *)req->body + resp->sent, want);
  } else {
    ssize_t got;
    left = req->body_fd_len - resp->sent;
    if ((int64_t)want > left)
      want = (size_t)left;
    if (want == 0)
      return 0;
    do
      got = pread(req->body_fd, buf, want, req->body_off + resp->sent);
    while (got < 0 && errno == EINTR);
    if (got <= 0) {
      resp->write_failed = true;
      resp->write_errno = got < 0 ? errno : EIO;
      return CURL_READFUNC_ABORT;
    }
    want = (size_t)got;
  }
  resp->sent += (int64_t)want;
  if (req->progress)
    req->progress(req->progress_data, req->progress_base + resp->sent, req->progress_total);
  return want;
}

static int on_seek(void *p, curl_off_t offset, int origin)
{
  struct http_response *resp = p;
  if (origin != SEEK_SET)
    return CURL_SEEKFUNC_CANTSEEK;
  resp->sent = offset;
  return CURL_SEEKFUNC_OK;
}

/* ---- hosts ---- */

/* localhost, 127.0.0.0/8 and ::1 may speak plain HTTP, as in Docker. */
static bool host_is_loopback(const char *registry)
{
  cleanup_free char *host = NULL;
  const char *colon;
  struct in_addr a4;
  if (registry[0] == '[') {
    const char *close = strchr(registry, ']');
    return close && (size_t)(close - registry) == 4 && strncmp(registry, "[::1]", 5) == 0;
  }
  colon = strchr(registry, ':');
  host = colon ? xstrndup(registry, (size_t)(colon - registry)) : xstrdup(registry);
  if (strcmp(host, "localhost") == 0)
    return true;
  return inet_pton(AF_INET, host, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127;
}

static bool host_is_insecure(const char *registry, const struct strvec *insecure)
{
  if (insecure)
    for (size_t i = 0; i < insecure->n; i++)
      if (strcmp(insecure->v[i], registry) == 0)
        return true;
  return false;
}

/* ---- the registry's errors ---- */

/* "MANIFEST_UNKNOWN: manifest unknown" from {"errors": [{code, message}]},
 * else the status; printable ASCII only. */
static void describe_failure(const struct http_response *resp, struct strbuf *out)
{
  json_error_t je;
  cleanup_json json_t *root = resp->body.len ? json_loadb(resp->body.buf, resp->body.len, 0, &je)
                                             : NULL;
  json_t *errors = root ? json_object_get(root, "errors") : NULL;
  json_t *first = json_is_array(errors) ? json_array_get(errors, 0) : NULL;
  const char *code = first ? json_string_value(json_object_get(first, "code")) : NULL;
  const char *msg = first ? json_string_value(json_object_get(first, "message")) : NULL;
  size_t start = out->len;
  strbuf_addf(out, "HTTP %ld", resp->status);
  if (code)
    strbuf_addf(out, " %.80s", code);
  if (msg)
    strbuf_addf(out, ": %.200s", msg);
  for (size_t i = start; i < out->len; i++)
    if ((unsigned char)out->buf[i] < 0x20 || (unsigned char)out->buf[i] >= 0x7f)
      out->buf[i] = '?';
}

/* ---- authentication ---- */

/* Read one `key="value"` (or key=token) parameter of a challenge. */
static char *challenge_param(const char *params, const char *key)
{
  size_t klen = strlen(key);
  const char *p = params;
  while (*p) {
    while (*p == ' ' || *p == ',')
      p++;
    if (strncasecmp(p, key, klen) == 0 && p[klen] == '=') {
      struct strbuf v = STRBUF_INIT;
      p += klen + 1;
      if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
          if (*p == '\\' && p[1])
            p++;
          strbuf_addch(&v, *p);
        }
      } else {
        for (; *p && *p != ',' && *p != ' '; p++)
          strbuf_addch(&v, *p);
      }
      return strbuf_detach(&v, NULL);
    }
    /* skip this parameter */
    while (*p && *p != '=' && *p != ',')
      p++;
    if (*p == '=') {
      p++;
      if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
          if (*p == '\\' && p[1])
            p++;
        if (*p == '"')
          p++;
      } else
        while (*p && *p != ',')
          p++;
    }
  }
  return NULL;
}

/* Take the challenge of a 401; lock held. */
static void challenge_take(struct oci_registry *r, const char *www)
{
  if (!www)
    return;
  if (strncasecmp(www, "Bearer ", 7) == 0) {
    free(r->realm);
    free(r->service);
    r->realm = challenge_param(www + 7, "realm");
    r->service = challenge_param(www + 7, "service");
    r->scheme = r->realm ? AUTH_BEARER : AUTH_NONE;
  } else if (strncasecmp(www, "Basic", 5) == 0) {
    r->scheme = AUTH_BASIC;
  }
}

static int creds_get(struct oci_registry *r, struct cb_error *err)
{
  int ret;
  if (r->creds_looked_up)
    return r->creds.username ? 0 : 1;
  ret = oci_credentials_lookup(r->registry, r->authfile, &r->creds, err);
  if (ret < 0)
    return -1;
  r->creds_looked_up = true;
  return ret;
}

static char *basic_header(const struct oci_credentials *c)
{
  cleanup_free char *plain = xasprintf("%s:%s", c->username, c->password ? c->password : "");
  cleanup_free char *b64 = oci_base64_encode(plain, strlen(plain));
  return xasprintf("Authorization: Basic %s", b64);
}

static int perform(struct oci_registry *r, struct http_request *req, struct http_response *resp,
                   const char *auth, struct cb_error *err);
static int request_plain(struct oci_registry *r, struct http_request *req,
                         struct http_response *resp, const char *auth, struct cb_error *err);

/* Ask the realm for a token for scope (space-separated scopes). */
static int token_fetch(struct oci_registry *r, const char *scope, char **header,
                       struct cb_error *err)
{
  cleanup_strbuf struct strbuf url = STRBUF_INIT;
  cleanup_strbuf struct strbuf form = STRBUF_INIT;
  cleanup_slist struct curl_slist *form_header = NULL;
  cleanup_free char *auth = NULL;
  cleanup_curl CURL *esc = curl_easy_init();
  cleanup_json json_t *root = NULL;
  struct http_request req;
  struct http_response resp;
  json_error_t je;
  const char *token;
  bool ident;

  if (!esc)
    cb_die("curl_easy_init failed");
  if (strncmp(r->realm, "https://", 8) != 0 && strncmp(r->realm, "http://", 7) != 0)
    return cb_error_set(err, "registry %s: token realm \"%.200s\" is not an http(s) URL",
                        r->registry, r->realm);
  if (creds_get(r, err) < 0)
    return -1;
  /* an identity token is exchanged by OAuth2's refresh_token grant (a
   * POST), credentials otherwise go as Basic auth with a GET */
  ident = r->creds.username && strcmp(r->creds.username, "<token>") == 0;
  if (ident) {
    char *tok = curl_easy_escape(esc, r->creds.password ? r->creds.password : "", 0);
    strbuf_addf(&form, "grant_type=refresh_token&client_id=cbuild&refresh_token=%s", tok);
    curl_free(tok);
    form_header = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
  } else if (r->creds.username)
    auth = basic_header(&r->creds);
  /* service and scopes: the form's fields, or the URL's query */
  strbuf_addstr(&url, r->realm);
  {
    struct strbuf *q = ident ? &form : &url;
    bool first = !ident && !strchr(r->realm, '?');
    if (r->service) {
      char *e = curl_easy_escape(esc, r->service, 0);
      strbuf_addf(q, "%sservice=%s", first ? "?" : "&", e);
      curl_free(e);
      first = false;
    }
    for (const char *s = scope; s && *s;) {
      const char *sp = strchr(s, ' ');
      char *e = curl_easy_escape(esc, s, (int)(sp ? (size_t)(sp - s) : strlen(s)));
      strbuf_addf(q, "%sscope=%s", first ? "?" : "&", e);
      curl_free(e);
      first = false;
      s = sp ? sp + 1 : NULL;
    }
  }

  request_init(&req, &resp, ident ? "POST" : "GET", url.buf, NULL);
  if (ident) {
    req.body = form.buf;
    req.body_len = form.len;
    req.headers = form_header;
  }
  req.out_max = REGISTRY_TOKEN_MAX;
  if (request_plain(r, &req, &resp, auth, err) < 0) {
    response_release(&resp);
    return cb_error_wrap(err, "get a token for \"%s\" from %.200s", scope, r->realm);
  }
  if (resp.status != 200) {
    cleanup_strbuf struct strbuf why = STRBUF_INIT;
    describe_failure(&resp, &why);
    cb_error_set(err, "registry %s: token for \"%s\" refused by %.200s: %s%s", r->registry, scope,
                 r->realm, why.buf,
                 resp.status != 401 ? ""
                 : r->creds.username ? " (are the credentials right?)"
                                     : " (no credentials; try 'cbuild login')");
    response_release(&resp);
    return -1;
  }
  root = json_loadb(resp.body.buf, resp.body.len, 0, &je);
  response_release(&resp);
  token = root ? json_string_value(json_object_get(root, "token")) : NULL;
  if (!token || !*token)
    token = root ? json_string_value(json_object_get(root, "access_token")) : NULL;
  if (!token || !*token)
    return cb_error_set(err, "registry %s: the token endpoint %.200s answered no token",
                        r->registry, r->realm);
  for (const char *t = token; *t; t++)
    if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
      return cb_error_set(err, "registry %s: the token endpoint %.200s answered an invalid token",
                          r->registry, r->realm);
  *header = xasprintf("Authorization: Bearer %s", token);
  return 0;
}

/* The Authorization header for scope, NULL for none; lock held.  With
 * `renew`, a cached token is dropped and fetched again. */
static int auth_header(struct oci_registry *r, const char *scope, bool renew, char **out,
                       struct cb_error *err)
{
  *out = NULL;
  switch (r->scheme) {
  case AUTH_NONE:
    return 0;
  case AUTH_BASIC: {
    int ret = creds_get(r, err);
    if (ret < 0)
      return -1;
    if (ret > 0)
      return cb_error_set(err, "registry %s requires authentication and no credentials are known for it (try 'cbuild login %s')",
                          r->registry, r->registry);
    if (!r->basic_header)
      r->basic_header = basic_header(&r->creds);
    *out = xstrdup(r->basic_header);
    return 0;
  }
  case AUTH_BEARER: {
    char *h = NULL;
    const char *sc = scope ? scope : "";
    for (size_t i = 0; i < r->n_tokens; i++) {
      if (strcmp(r->tokens[i].scope, sc) != 0)
        continue;
      if (!renew) {
        *out = xstrdup(r->tokens[i].header);
        return 0;
      }
      free(r->tokens[i].scope);
      free(r->tokens[i].header);
      r->tokens[i] = r->tokens[--r->n_tokens];
      break;
    }
    if (token_fetch(r, sc, &h, err) < 0)
      return -1;
    CB_GROW(r->tokens, r->n_tokens + 1, r->alloc_tokens);
    r->tokens[r->n_tokens].scope = xstrdup(sc);
    r->tokens[r->n_tokens].header = h;
    r->n_tokens++;
    *out = xstrdup(h);
    return 0;
  }
  }
  return 0;
}

/* ---- requests ---- */

static bool curl_code_retriable(CURLcode c)
{
  switch (c) {
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_SSL_CONNECT_ERROR:
    return true;
  default:
    return false;
  }
}

/* One try of a request, no retry, no auth handling. */
static int perform(struct oci_registry *r, struct http_request *req, struct http_response *resp,
                   const char *auth, struct cb_error *err)
{
  cleanup_curl CURL *c = curl_easy_init();
  cleanup_slist struct curl_slist *headers = NULL;
  char curlerr[CURL_ERROR_SIZE] = "";
  CURLcode cr;
  bool has_body = req->body || req->body_fd >= 0;

  if (!c)
    cb_die("curl_easy_init failed");
  for (struct curl_slist *h = req->headers; h; h = h->next)
    headers = curl_slist_append(headers, h->data);
  if (auth)
    headers = curl_slist_append(headers, auth);
  /* no "Expect: 100-continue" round trip before uploads */
  headers = curl_slist_append(headers, "Expect:");
  response_reset(resp);
  resp->req = req;
  if (req->want_digest) {
    if (!resp->hasher)
      resp->hasher = oci_hasher_new();
    else {
      char discard[OCI_DIGEST_SIZE];
      oci_hasher_final(resp->hasher, discard);
    }
  }

  curl_easy_setopt(c, CURLOPT_URL, req->url);
  curl_easy_setopt(c, CURLOPT_SHARE, r->share);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, strncmp(r->base, "http:", 5) == 0 ? "http,https" : "https");
  curl_easy_setopt(c, CURLOPT_USERAGENT, r->user_agent);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curlerr);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
  /* blobs move in large reads and writes, not libcurl's 16 KiB default */
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L << 10);
  curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 1L << 20);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
  if (req->follow) {
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  }
  if (r->insecure_tls) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (r->ca_cert) {
    /* the extra CA next to the system's */
    curl_easy_setopt(c, CURLOPT_CAINFO, r->ca_cert);
    curl_easy_setopt(c, CURLOPT_CAPATH, "/etc/ssl/certs");
  }
  if (strcmp(req->method, "HEAD") == 0)
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  else if (strcmp(req->method, "GET") != 0)
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
  if (has_body || strcmp(req->method, "PUT") == 0 || strcmp(req->method, "PATCH") == 0 ||
      strcmp(req->method, "POST") == 0) {
    int64_t len = req->body_fd >= 0 ? req->body_fd_len : (int64_t)req->body_len;
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, resp);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, resp);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

  cr = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
  if (resp->write_failed)
    return cb_error_errno(err, resp->write_errno, "%s %.300s", req->method, req->url);
  if (resp->too_big)
    return cb_error_set(err, "%s %.300s: the registry sent more than expected", req->method,
                        req->url);
  if (cr != CURLE_OK) {
    cb_error_set(err, "%s %.300s: %s", req->method, req->url,
                 curlerr[0] ? curlerr : curl_easy_strerror(cr));
    return curl_code_retriable(cr) ? -2 : -1;
  }
  return 0;
}

static void backoff(int attempt, long retry_after)
{
  long ms = REGISTRY_BACKOFF_MS << (attempt < 8 ? attempt : 8);
  struct timespec ts;
  if (retry_after >= 0)
    ms = retry_after * 1000;
  if (ms > REGISTRY_BACKOFF_MAX_MS)
    ms = REGISTRY_BACKOFF_MAX_MS;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

/* Reset an fd sink before another try. */
static int sink_rewind(const struct http_request *req, struct cb_error *err)
{
  if (req->out_fd < 0)
    return 0;
  if (ftruncate(req->out_fd, req->out_start) < 0 ||
      lseek(req->out_fd, req->out_start, SEEK_SET) < 0)
    return cb_error_errno(err, errno, "rewind a download");
  return 0;
}

/* Retry loop shared by both kinds of request: 0 done (resp filled), 1 try
 * again, -1 failed. */
static int retry_or_fail(struct oci_registry *r, const struct http_request *req,
                         struct http_response *resp, int ret, int *attempt, struct cb_error *err)
{
  if (ret == 0 && resp->status != 429 && resp->status < 500)
    return 0;
  if (*attempt >= r->retries) {
    if (ret == 0) {
      struct strbuf why = STRBUF_INIT;
      describe_failure(resp, &why);
      cb_error_set(err, "%s %.300s: %s (after %d tries)", req->method, req->url, why.buf,
                   *attempt + 1);
      strbuf_release(&why);
    } else
      cb_error_wrap(err, "after %d tries", *attempt + 1);
    return -1;
  }
  backoff(*attempt, ret == 0 ? resp->retry_after : -1);
  (*attempt)++;
  return 1;
}

/* A request with retries and a fixed Authorization header (or none). */
static int request_plain(struct oci_registry *r, struct http_request *req,
                         struct http_response *resp, const char *auth, struct cb_error *err)
{
  int attempt = 0;
  for (;;) {
    int ret = sink_rewind(req, err) < 0 ? -1 : perform(r, req, resp, auth, err);
    if (ret == -1)
      return -1;
    ret = retry_or_fail(r, req, resp, ret, &attempt, err);
    if (ret <= 0)
      return ret;
  }
}

/* Whether url is on the registry itself: its base and then a '/'. */
static bool same_origin(const struct oci_registry *r, const char *url)
{
  size_t n = strlen(r->base);
  return strncmp(url, r->base, n) == 0 && url[n] == '/';
}

/*
 * A request with retries and authentication: 0 with resp filled (any
 * status but 401, 429 and 5xx, which are retried first), -1 on error.
 */
static int request(struct oci_registry *r, struct http_request *req, struct http_response *resp,
                   struct cb_error *err)
{
  bool reauthed = false;
  int attempt = 0;
  for (;;) {
    cleanup_free char *auth = NULL;
    int ret = 0;
    /* credentials go to the registry only, never to where a Location sent us */
    bool ours = same_origin(r, req->url);
    if (ours) {
      pthread_mutex_lock(&r->lock);
      ret = auth_header(r, req->scope, false, &auth, err);
      pthread_mutex_unlock(&r->lock);
    }
    if (ret < 0 || sink_rewind(req, err) < 0)
      return -1;
    ret = perform(r, req, resp, auth, err);
    if (ret == -1)
      return -1;
    if (ret == 0 && resp->status == 401 && !reauthed && ours) {
      free(auth);
      auth = NULL;
      reauthed = true;
      pthread_mutex_lock(&r->lock);
      challenge_take(r, resp->www_authenticate);
      ret = r->scheme == AUTH_NONE ? 0 : auth_header(r, req->scope, true, &auth, err);
      pthread_mutex_unlock(&r->lock);
      if (ret < 0)
        return -1;
      if (r->scheme != AUTH_NONE)
        continue;
    }
    ret = retry_or_fail(r, req, resp, ret, &attempt, err);
    if (ret <= 0)
      return ret;
  }
}

/* A status the caller did not expect, as one line. */
static int unexpected(struct oci_registry *r, const char *what, const struct http_response *resp,
                      struct cb_error *err)
{
  cleanup_strbuf struct strbuf why = STRBUF_INIT;
  describe_failure(resp, &why);
  if (resp->status == 401 || resp->status == 403)
    strbuf_addstr(&why, r->creds.username ? " (are the credentials right?)"
                                          : " (no credentials; try 'cbuild login')");
  return cb_error_set(err, "%s %s: %s", what, r->display, why.buf);
}

/* ---- the client ---- */

static char *url_of(const struct oci_registry *r, const char *fmt, const char *what)
{
  return xasprintf("%s/v2/%s/%s/%s", r->base, r->repository, fmt, what);
}

static int ping(struct oci_registry *r, bool plain_ok, struct cb_error *err)
{
  struct http_request req;
  struct http_response resp;
  cleanup_free char *url = NULL;
  int ret;
  const char *api_host = strcmp(r->registry, "docker.io") == 0 ? "registry-1.docker.io" : r->registry;

  r->base = xasprintf("https://%s", api_host);
  url = xasprintf("%s/v2/", r->base);
  request_init(&req, &resp, "GET", url, NULL);
  if (plain_ok) {
    /* one HTTPS try, then plain HTTP with retries */
    ret = perform(r, &req, &resp, NULL, err);
    /* a certificate that does not verify is an answer, not a fallback */
    if (ret == -2) {
      free(r->base);
      free(url);
      r->base = xasprintf("http://%s", api_host);
      url = xasprintf("%s/v2/", r->base);
      req.url = url;
      ret = request(r, &req, &resp, err);
    }
  } else
    ret = request(r, &req, &resp, err);
  if (ret < 0) {
    response_release(&resp);
    return cb_error_wrap(err, "reach registry %s", r->registry);
  }
  if (resp.status == 401)
    challenge_take(r, resp.www_authenticate);
  else if (resp.status != 200) {
    unexpected(r, "reach registry", &resp, err);
    response_release(&resp);
    return -1;
  }
  response_release(&resp);
  return 0;
}

struct oci_registry *oci_registry_new(const char *registry, const char *repository,
                                      const struct oci_registry_options *o,
                                      struct cb_error *err)
{
  struct oci_registry *r = xcalloc(1, sizeof(*r));
  bool insecure = host_is_insecure(registry, o ? o->insecure : NULL);

  pthread_once(&curl_once, curl_init_once);
  r->registry = xstrdup(registry);
  r->repository = xstrdup(repository);
  r->display = *repository ? xasprintf("%s/%s", registry, repository) : xstrdup(registry);
  r->insecure_tls = insecure;
  r->ca_cert = o && o->ca_cert ? xstrdup(o->ca_cert) : NULL;
  r->authfile = o && o->authfile ? xstrdup(o->authfile) : NULL;
  if (o && o->credentials && o->credentials->username) {
    r->creds.username = xstrdup(o->credentials->username);
    r->creds.password = xstrdup(o->credentials->password ? o->credentials->password : "");
    r->creds_looked_up = true;
  }
  r->user_agent = xstrdup(o && o->user_agent ? o->user_agent : "cbuild");
  r->retries = o && o->retries >= 0 ? o->retries : REGISTRY_DEFAULT_RETRIES;
  pthread_mutex_init(&r->lock, NULL);
  for (size_t i = 0; i < CB_ARRAY_SIZE(r->share_locks); i++)
    pthread_mutex_init(&r->share_locks[i], NULL);
  r->share = curl_share_init();
  if (!r->share)
    cb_die("curl_share_init failed");
  curl_share_setopt(r->share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt(r->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  curl_share_setopt(r->share, CURLSHOPT_USERDATA, r);
  curl_share_setopt(r->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  curl_share_setopt(r->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(r->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  if (ping(r, insecure || host_is_loopback(registry), err) < 0) {
    oci_registry_free(r);
    return NULL;
  }
  return r;
}

void oci_registry_free(struct oci_registry *r)
{
  if (!r)
    return;
  if (r->share)
    curl_share_cleanup(r->share);
  for (size_t i = 0; i < CB_ARRAY_SIZE(r->share_locks); i++)
    pthread_mutex_destroy(&r->share_locks[i]);
  pthread_mutex_destroy(&r->lock);
  for (size_t i = 0; i < r->n_tokens; i++) {
    free(r->tokens[i].scope);
    free(r->tokens[i].header);
  }
  free(r->tokens);
  free(r->basic_header);
  oci_credentials_release(&r->creds);
  free(r->realm);
  free(r->service);
  free(r->registry);
  free(r->repository);
  free(r->display);
  free(r->base);
  free(r->ca_cert);
  free(r->authfile);
  free(r->user_agent);
  free(r);
}

const char *oci_registry_name(const struct oci_registry *r)
{
  return r->display;
}

int oci_registry_check_login(struct oci_registry *r, struct cb_error *err)
{
  cleanup_free char *url = xasprintf("%s/v2/", r->base);
  struct http_request req;
  struct http_response resp;
  int ret = 0;
  if (r->scheme == AUTH_NONE)
    return 0; /* anonymous access: nothing to check */
  request_init(&req, &resp, "GET", url, NULL);
  if (request(r, &req, &resp, err) < 0)
    ret = cb_error_wrap(err, "log in to %s", r->registry);
  else if (resp.status != 200)
    ret = unexpected(r, "log in to", &resp, err);
  response_release(&resp);
  return ret;
}

bool oci_media_type_is_index(const char *mt)
{
  return mt && (strcmp(mt, OCI_MEDIA_TYPE_INDEX) == 0 || strcmp(mt, OCI_MEDIA_TYPE_DOCKER_LIST) == 0);
}

bool oci_media_type_is_manifest(const char *mt)
{
  return mt && (strcmp(mt, OCI_MEDIA_TYPE_MANIFEST) == 0 ||
                strcmp(mt, OCI_MEDIA_TYPE_DOCKER_MANIFEST) == 0);
}

static char *scope_of(const struct oci_registry *r, bool push)
{
  return xasprintf("repository:%s:%s", r->repository, push ? "pull,push" : "pull");
}

/* The content type without parameters. */
static char *media_type_of(const char *content_type)
{
  size_t n;
  if (!content_type)
    return NULL;
  n = strcspn(content_type, "; \t");
  return n ? xstrndup(content_type, n) : NULL;
}

int oci_registry_manifest_get(struct oci_registry *r, const char *reference,
                              struct strbuf *body, char **media_type,
                              char digest[OCI_DIGEST_SIZE], struct cb_error *err)
{
  cleanup_free char *url = url_of(r, "manifests", reference);
  cleanup_free char *scope = scope_of(r, false);
  cleanup_slist struct curl_slist *headers = curl_slist_append(NULL, accept_manifests);
  struct http_request req;
  struct http_response resp;
  int ret;

  *media_type = NULL;
  request_init(&req, &resp, "GET", url, scope);
  req.headers = headers;
  req.out_max = REGISTRY_MANIFEST_MAX;
  req.want_digest = reference;
  if (request(r, &req, &resp, err) < 0) {
    response_release(&resp);
    return cb_error_wrap(err, "get manifest %s:%s", r->display, reference);
  }
  if (resp.status == 404) {
    response_release(&resp);
    return 1;
  }
  if (resp.status != 200) {
    cleanup_free char *what = xasprintf("get manifest \"%s\" of", reference);
    unexpected(r, what, &resp, err);
    response_release(&resp);
    return -1;
  }
  strbuf_reset(body);
  strbuf_add(body, resp.body.buf, resp.body.len);
  oci_hasher_final(resp.hasher, digest);
  ret = 0;
  if (resp.docker_digest && oci_digest_valid(resp.docker_digest) &&
      strcmp(resp.docker_digest, digest) != 0) {
    cb_error_set(err, "get manifest %s:%s: the registry says its digest is %s, its content hashes to %s",
                 r->display, reference, resp.docker_digest, digest);
    ret = -1;
  } else if (strchr(reference, ':') && strcmp(reference, digest) != 0) {
    cb_error_set(err, "get manifest %s@%s: the registry sent content whose digest is %s",
                 r->display, reference, digest);
    ret = -1;
  } else {
    *media_type = media_type_of(resp.content_type);
    if (!oci_media_type_is_index(*media_type) && !oci_media_type_is_manifest(*media_type)) {
      /* some registries answer application/json: trust the JSON's mediaType */
      free(*media_type);
      *media_type = oci_media_type_of_json(body->buf, body->len);
      if (!oci_media_type_is_index(*media_type) && !oci_media_type_is_manifest(*media_type)) {
        cb_error_set(err, "get manifest %s:%s: unsupported media type \"%.100s\"", r->display,
                     reference,
                     *media_type ? *media_type : resp.content_type ? resp.content_type : "none");
        free(*media_type);
        *media_type = NULL;
        ret = -1;
      }
    }
  }
  response_release(&resp);
  if (ret < 0)
    strbuf_reset(body);
  return ret;
}

int oci_registry_manifest_put(struct oci_registry *r, const char *reference,
                              const char *media_type, const void *body, size_t n,
                              char digest_out[OCI_DIGEST_SIZE], struct cb_error *err)
{
  cleanup_free char *url = url_of(r, "manifests", reference);
  cleanup_free char *scope = scope_of(r, true);
  cleanup_free char *ct = xasprintf("Content-Type: %s", media_type);
  cleanup_slist struct curl_slist *headers = curl_slist_append(NULL, ct);
  struct http_request req;
  struct http_response resp;
  char digest[OCI_DIGEST_SIZE];

  oci_digest_buf(body, n, digest);
  request_init(&req, &resp, "PUT", url, scope);
  req.headers = headers;
  req.body = body;
  req.body_len = n;
  if (request(r, &req, &resp, err) < 0) {
    response_release(&resp);
    return cb_error_wrap(err, "push manifest %s:%s", r->display, reference);
  }
  if (resp.status != 201 && resp.status != 200) {
    cleanup_free char *what = xasprintf("push manifest \"%s\" to", reference);
    unexpected(r, what, &resp, err);
    response_release(&resp);
    return -1;
  }
  if (resp.docker_digest && strcmp(resp.docker_digest, digest) != 0) {
    cb_error_set(err, "push manifest %s:%s: the registry reports digest %.80s, not %s",
                 r->display, reference, resp.docker_digest, digest);
    response_release(&resp);
    return -1;
  }
  response_release(&resp);
  if (digest_out)
    memcpy(digest_out, digest, OCI_DIGEST_SIZE);
  return 0;
}

int oci_registry_blob_get(struct oci_registry *r, const char *digest, int64_t size, int fd,
                          oci_progress_fn progress, void *progress_data, struct cb_error *err)
{
  cleanup_free char *url = url_of(r, "blobs", digest);
  cleanup_free char *scope = scope_of(r, false);
  struct http_request req;
  struct http_response resp;
  char got[OCI_DIGEST_SIZE];
  off_t start = lseek(fd, 0, SEEK_CUR);

  if (!oci_digest_valid(digest))
    return cb_error_set(err, "get blob %s@%.100s: not a sha256 digest", r->display, digest);
  if (start < 0)
    return cb_error_errno(err, errno, "get blob %s@%s", r->display, digest);
  request_init(&req, &resp, "GET", url, scope);
  req.follow = true;
  req.out_fd = fd;
  req.out_start = start;
  req.want_size = size;
  req.want_digest = digest;
  req.progress = progress;
  req.progress_data = progress_data;
  req.progress_total = size;
  if (request(r, &req, &resp, err) < 0) {
    response_release(&resp);
    return cb_error_wrap(err, "get blob %s@%s", r->display, digest);
  }
  if (resp.status != 200) {
    cleanup_free char *what = xasprintf("get blob %s of", digest);
    unexpected(r, what, &resp, err);
    response_release(&resp);
    return -1;
  }
  oci_hasher_final(resp.hasher, got);
  if (size >= 0 && resp.received != size) {
    cb_error_set(err, "get blob %s@%s: %lld bytes received, the manifest says %lld", r->display,
                 digest, (long long)resp.received, (long long)size);
    response_release(&resp);
    return -1;
  }
  response_release(&resp);
  if (strcmp(got, digest) != 0)
    return cb_error_set(err, "get blob %s@%s: the registry sent content whose digest is %s",
                        r->display, digest, got);
  return 0;
}

int oci_registry_blob_exists(struct oci_registry *r, const char *digest, struct cb_error *err)
{
  cleanup_free char *url = url_of(r, "blobs", digest);
  cleanup_free char *scope = scope_of(r, true);
  struct http_request req;
  struct http_response resp;
  int ret;
  request_init(&req, &resp, "HEAD", url, scope);
  if (request(r, &req, &resp, err) < 0) {
    response_release(&resp);
    return cb_error_wrap(err, "check blob %s@%s", r->display, digest);
  }
  if (resp.status == 200)
    ret = 0;
  else if (resp.status == 404)
    ret = 1;
  else {
    cleanup_free char *what = xasprintf("check blob %s in", digest);
    ret = unexpected(r, what, &resp, err);
  }
  response_release(&resp);
  return ret;
}

/* Resolve an upload Location against the registry, adding a query. */
static char *location_url(struct oci_registry *r, const char *location, const char *query,
                          struct cb_error *err)
{
  CURLU *u = curl_url();
  char *s = NULL, *out;
  if (!u)
    cb_die("curl_url failed");
  if (!location || curl_url_set(u, CURLUPART_URL, r->base, 0) != CURLUE_OK ||
      curl_url_set(u, CURLUPART_URL, location, 0) != CURLUE_OK ||
      (query && curl_url_set(u, CURLUPART_QUERY, query, CURLU_APPENDQUERY) != CURLUE_OK) ||
      curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK) {
    curl_url_cleanup(u);
    cb_error_set(err, "registry %s: invalid upload location \"%.200s\"", r->registry,
                 location ? location : "(none)");
    return NULL;
  }
  curl_url_cleanup(u);
  if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0) {
    curl_free(s);
    cb_error_set(err, "registry %s: invalid upload location \"%.200s\"", r->registry, location);
    return NULL;
  }
  out = xstrdup(s);
  curl_free(s);
  return out;
}

int oci_registry_blob_mount(struct oci_registry *r, const char *digest,
                            const char *from_repository, struct cb_error *err)
{
  cleanup_free char *url = xasprintf("%s/v2/%s/blobs/uploads/?mount=%s&from=%s", r->base,
                                     r->repository, digest, from_repository);
  cleanup_free char *scope = xasprintf("repository:%s:pull,push repository:%s:pull",
                                       r->repository, from_repository);
  cleanup_slist struct curl_slist *headers =
      curl_slist_append(NULL, "Content-Type: application/octet-stream");
  struct http_request req;
  struct http_response resp;
  int ret;
  request_init(&req, &resp, "POST", url, scope);
  req.headers = headers;
  req.body = "";
  if (request(r, &req, &resp, err) < 0) {
    response_release(&resp);
    return cb_error_wrap(err, "mount blob %s from %s into %s", digest, from_repository, r->display);
  }
  /* 201: mounted; 202: an upload session was opened instead (left to expire) */
  if (resp.status == 201)
    ret = 0;
  else if (resp.status == 202 || resp.status == 401 || resp.status == 403 || resp.status == 404)
    ret = 1;
  else {
    cleanup_free char *what = xasprintf("mount blob %s from %s into", digest, from_repository);
    ret = unexpected(r, what, &resp, err);
  }
  response_release(&resp);
  return ret;
}

/* One upload, from POST to the closing PUT (each request retried in
 * place); -2 when the registry lost the session and a new one may work. */
static int upload_once(struct oci_registry *r, const char *digest, int64_t size, int fd,
                       oci_progress_fn progress, void *progress_data, struct cb_error *err)
{
  cleanup_free char *post_url = xasprintf("%s/v2/%s/blobs/uploads/", r->base, r->repository);
  cleanup_free char *scope = scope_of(r, true);
  cleanup_free char *location = NULL;
  cleanup_free char *query = xasprintf("digest=%s", digest);
  cleanup_slist struct curl_slist *headers =
      curl_slist_append(NULL, "Content-Type: application/octet-stream");
  struct http_request req;
  struct http_response resp;
  int64_t off = 0;
  bool chunked = size > OCI_REGISTRY_CHUNK;

  request_init(&req, &resp, "POST", post_url, scope);
  req.headers = headers;
  req.body = "";
  req.progress = progress;
  req.progress_data = progress_data;
  req.progress_total = size;
  if (request(r, &req, &resp, err) < 0)
    goto fail;
  if (resp.status != 202) {
    unexpected(r, "start a blob upload to", &resp, err);
    goto fail;
  }
  location = steal_pointer(&resp.location);

  /* PATCH the chunks of a large blob */
  while (chunked && off < size) {
    cleanup_free char *url = location_url(r, location, NULL, err);
    cleanup_free char *range = NULL;
    cleanup_slist struct curl_slist *h = NULL;
    int64_t n = size - off < OCI_REGISTRY_CHUNK ? size - off : OCI_REGISTRY_CHUNK;
    if (!url)
      goto fail;
    range = xasprintf("Content-Range: %lld-%lld", (long long)off, (long long)(off + n - 1));
    h = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    h = curl_slist_append(h, range);
    req.method = "PATCH";
    req.url = url;
    req.headers = h;
    req.body = NULL;
    req.body_fd = fd;
    req.body_off = off;
    req.body_fd_len = n;
    req.progress_base = off;
    if (request(r, &req, &resp, err) < 0)
      goto fail;
    if (resp.status == 404 || resp.status == 416)
      goto lost;
    if (resp.status != 202) {
      unexpected(r, "upload a blob chunk to", &resp, err);
      goto fail;
    }
    free(location);
    location = steal_pointer(&resp.location);
    off += n;
  }

  /* the closing PUT, with the whole blob when it is small */
  {
    cleanup_free char *url = location_url(r, location, query, err);
    if (!url)
      goto fail;
    req.method = "PUT";
    req.url = url;
    req.headers = headers;
    req.progress_base = 0;
    if (chunked) {
      req.body = "";
      req.body_len = 0;
      req.body_fd = -1;
    } else {
      req.body = NULL;
      req.body_fd = fd;
      req.body_off = 0;
      req.body_fd_len = size;
    }
    if (request(r, &req, &resp, err) < 0)
      goto fail;
    if (resp.status == 404 || resp.status == 416)
      goto lost;
    if (resp.status != 201) {
      unexpected(r, "finish a blob upload to", &resp, err);
      goto fail;
    }
    if (resp.docker_digest && strcmp(resp.docker_digest, digest) != 0) {
      cb_error_set(err, "registry %s stored blob %s as %.80s", r->display, digest, resp.docker_digest);
      goto fail;
    }
  }
  response_release(&resp);
  return 0;
lost:
  unexpected(r, "upload a blob to", &resp, err);
  response_release(&resp);
  return -2;
fail:
  response_release(&resp);
  return -1;
}

int oci_registry_blob_put(struct oci_registry *r, const char *digest, int64_t size, int fd,
                          oci_progress_fn progress, void *progress_data, struct cb_error *err)
{
  int ret = upload_once(r, digest, size, fd, progress, progress_data, err);
  if (ret == -2)
    ret = upload_once(r, digest, size, fd, progress, progress_data, err);
  if (ret < 0)
    return cb_error_wrap(err, "push blob %s to %s", digest, r->display);
  return 0;
}
