/*
 * cache: the local store: blobs, unpacked snapshots and the step cache.
 * For now it knows where the store lives.
 */
#ifndef CBUILD_CACHE_H
#define CBUILD_CACHE_H

#include "../common/common.h"

/*
 * The store's location: `flag` (--root) when given, else $CBUILD_ROOT, else
 * /var/lib/cbuild for root and $XDG_DATA_HOME/cbuild (or
 * ~/.local/share/cbuild) for other users.  Returns a new string, or NULL
 * with err set when no location can be found (no HOME for a user).
 */
char *cache_root(const char *flag, struct cb_error *err);

#endif
