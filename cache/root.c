#include "cache.h"

#include <pwd.h>
#include <unistd.h>

char *cache_root(const char *flag, struct cb_error *err)
{
  const char *env = getenv("CBUILD_ROOT");
  const char *xdg, *home;
  if (flag && *flag)
    return xstrdup(flag);
  if (env && *env)
    return xstrdup(env);
  if (geteuid() == 0)
    return xstrdup("/var/lib/cbuild");
  xdg = getenv("XDG_DATA_HOME");
  if (xdg && xdg[0] == '/')
    return xasprintf("%s/cbuild", xdg);
  home = getenv("HOME");
  if (!home || home[0] != '/') {
    struct passwd *pw = getpwuid(geteuid());
    home = pw ? pw->pw_dir : NULL;
  }
  if (!home || home[0] != '/') {
    cb_error_set(err, "find the store: no HOME for uid %u; use --root or CBUILD_ROOT",
                 (unsigned)geteuid());
    return NULL;
  }
  return xasprintf("%s/.local/share/cbuild", home);
}
