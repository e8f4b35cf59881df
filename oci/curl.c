/*
 * libcurl, loaded the first time it is used rather than linked.
 *
 * libcurl brings some twenty libraries with it (TLS twice, Kerberos, LDAP,
 * SSH, IDN, HTTP/2...), and loading and relocating them took ~10 ms of
 * every cbuild process on this project's machine: a third of a cached
 * rebuild, which needs no network at all.  So cbuild does not link
 * libcurl: this file defines the libcurl functions cbuild calls, and each
 * calls the same function of libcurl.so.4, opened (dlopen) by the first
 * call.  The rest of cbuild calls libcurl as usual.
 *
 * The executable does not export these names (no -rdynamic), so libcurl's
 * own calls never come back here.
 */
#define CURL_DISABLE_TYPECHECK 1
#include "oci-internal.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>

#define LIBCURL "libcurl.so.4"

static struct {
  CURLcode (*global_init)(long);
  CURL *(*easy_init)(void);
  CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
  CURLcode (*easy_perform)(CURL *);
  CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
  void (*easy_cleanup)(CURL *);
  const char *(*easy_strerror)(CURLcode);
  char *(*easy_escape)(CURL *, const char *, int);
  void (*free)(void *);
  struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
  void (*slist_free_all)(struct curl_slist *);
  CURLSH *(*share_init)(void);
  CURLSHcode (*share_setopt)(CURLSH *, CURLSHoption, ...);
  CURLSHcode (*share_cleanup)(CURLSH *);
  CURLU *(*url)(void);
  void (*url_cleanup)(CURLU *);
  CURLUcode (*url_set)(CURLU *, CURLUPart, const char *, unsigned int);
  CURLUcode (*url_get)(CURLU *, CURLUPart, char **, unsigned int);
} lib;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_open(void)
{
  static const struct {
    const char *name;
    size_t offset;
  } syms[] = {
#define SYM(field) { "curl_" #field, offsetof(__typeof__(lib), field) }
    SYM(global_init),   SYM(easy_init),      SYM(easy_setopt),   SYM(easy_perform),
    SYM(easy_getinfo),  SYM(easy_cleanup),   SYM(easy_strerror), SYM(easy_escape),
    SYM(free),          SYM(slist_append),   SYM(slist_free_all), SYM(share_init),
    SYM(share_setopt),  SYM(share_cleanup),  SYM(url),           SYM(url_cleanup),
    SYM(url_set),       SYM(url_get),
#undef SYM
  };
  void *h = dlopen(LIBCURL, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL)
    cb_die("load libcurl (for registries and ADD of URLs): %s", dlerror());
  for (size_t i = 0; i < CB_ARRAY_SIZE(syms); i++) {
    void *f = dlsym(h, syms[i].name);
    if (f == NULL)
      cb_die("load libcurl: %s has no %s", LIBCURL, syms[i].name);
    memcpy((char *)&lib + syms[i].offset, &f, sizeof(f));
  }
}

static void lib_load(void) { pthread_once(&lib_once, lib_open); }

CURLcode curl_global_init(long flags)
{
  lib_load();
  return lib.global_init(flags);
}

CURL *curl_easy_init(void)
{
  lib_load();
  return lib.easy_init();
}

/* The option's number says what its one argument is (curl.h). */
CURLcode curl_easy_setopt(CURL *c, CURLoption option, ...)
{
  va_list ap;
  CURLcode r;
  lib_load();
  va_start(ap, option);
  if (option < CURLOPTTYPE_OBJECTPOINT)
    r = lib.easy_setopt(c, option, va_arg(ap, long));
  else if (option < CURLOPTTYPE_FUNCTIONPOINT)
    r = lib.easy_setopt(c, option, va_arg(ap, void *));
  else if (option < CURLOPTTYPE_OFF_T)
    r = lib.easy_setopt(c, option, va_arg(ap, void (*)(void)));
  else if (option < CURLOPTTYPE_BLOB)
    r = lib.easy_setopt(c, option, va_arg(ap, curl_off_t));
  else
    r = lib.easy_setopt(c, option, va_arg(ap, void *));
  va_end(ap);
  return r;
}

CURLcode curl_easy_perform(CURL *c)
{
  lib_load();
  return lib.easy_perform(c);
}

/* Every CURLINFO takes a pointer to where the answer goes. */
CURLcode curl_easy_getinfo(CURL *c, CURLINFO info, ...)
{
  va_list ap;
  CURLcode r;
  lib_load();
  va_start(ap, info);
  r = lib.easy_getinfo(c, info, va_arg(ap, void *));
  va_end(ap);
  return r;
}

void curl_easy_cleanup(CURL *c)
{
  lib_load();
  lib.easy_cleanup(c);
}

const char *curl_easy_strerror(CURLcode code)
{
  lib_load();
  return lib.easy_strerror(code);
}

char *curl_easy_escape(CURL *c, const char *s, int length)
{
  lib_load();
  return lib.easy_escape(c, s, length);
}

void curl_free(void *p)
{
  lib_load();
  lib.free(p);
}

struct curl_slist *curl_slist_append(struct curl_slist *list, const char *s)
{
  lib_load();
  return lib.slist_append(list, s);
}

void curl_slist_free_all(struct curl_slist *list)
{
  lib_load();
  lib.slist_free_all(list);
}

CURLSH *curl_share_init(void)
{
  lib_load();
  return lib.share_init();
}

/* SHARE and UNSHARE take an int (a curl_lock_data), the lock functions a
 * function, USERDATA a pointer. */
CURLSHcode curl_share_setopt(CURLSH *sh, CURLSHoption option, ...)
{
  va_list ap;
  CURLSHcode r;
  lib_load();
  va_start(ap, option);
  if (option == CURLSHOPT_SHARE || option == CURLSHOPT_UNSHARE)
    r = lib.share_setopt(sh, option, va_arg(ap, int));
  else if (option == CURLSHOPT_LOCKFUNC || option == CURLSHOPT_UNLOCKFUNC)
    r = lib.share_setopt(sh, option, va_arg(ap, void (*)(void)));
  else
    r = lib.share_setopt(sh, option, va_arg(ap, void *));
  va_end(ap);
  return r;
}

CURLSHcode curl_share_cleanup(CURLSH *sh)
{
  lib_load();
  return lib.share_cleanup(sh);
}

CURLU *curl_url(void)
{
  lib_load();
  return lib.url();
}

void curl_url_cleanup(CURLU *u)
{
  lib_load();
  lib.url_cleanup(u);
}

CURLUcode curl_url_set(CURLU *u, CURLUPart what, const char *part, unsigned int flags)
{
  lib_load();
  return lib.url_set(u, what, part, flags);
}

CURLUcode curl_url_get(CURLU *u, CURLUPart what, char **part, unsigned int flags)
{
  lib_load();
  return lib.url_get(u, what, part, flags);
}
