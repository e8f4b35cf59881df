/*
 * oci: images as the OCI specifications define them.  The module turns
 * filesystems into content-addressed layers, writes image manifests,
 * configs and indexes, lays them out as OCI image layouts and tarballs, and
 * talks to registries (the distribution API) to pull and push them.
 *
 * It knows tars and JSON, not Dockerfiles, and uses no cbuild module but
 * common/.
 *
 * For now it holds the image reference API: parsing the names users write
 * ("alpine", "localhost:5000/app:v1", "repo@sha256:...") into registry,
 * repository, tag and digest, with Docker's normalization.
 */
#ifndef CBUILD_OCI_H
#define CBUILD_OCI_H

#include "../common/common.h"

/* ---- image references ----
 *
 * A reference names an image: `[registry/]repository[:tag][@digest]`.  It is
 * read the way Docker reads it (distribution/reference's
 * ParseNormalizedNamed, then TagNameOnly), so that `FROM alpine` and
 * `docker pull alpine` mean the same image:
 *
 *  - The first `/`-separated component is the registry when it contains a
 *    `.` or a `:`, is exactly `localhost`, or holds an uppercase letter
 *    (repository paths never do).  Otherwise the registry is `docker.io`,
 *    and `index.docker.io` is also spelled `docker.io`.
 *
 *  - On docker.io a single-component repository gets the `library/`
 *    namespace: "alpine" is "docker.io/library/alpine".
 *
 *  - With neither a tag nor a digest the tag is "latest"; with only a
 *    digest there is no tag.  A reference may carry both.
 *
 * The grammar, checked by a hand-written scanner in linear time:
 *
 *   registry   host [":" port]; host is DNS labels of [a-zA-Z0-9-] (not
 *              starting or ending with "-") joined by ".", or an IPv6
 *              address in brackets; port is digits
 *   repository components of [a-z0-9]+ joined by ".", "_", "__" or any
 *              run of "-", separated by "/"; at most 255 characters once
 *              normalized (the registry does not count)
 *   tag        [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest     algorithm ":" hex; algorithm is [A-Za-z][A-Za-z0-9]*
 *              components joined by one of "+._-"; sha256, sha384 and
 *              sha512 need exactly 64, 96 and 128 lowercase hex digits,
 *              other algorithms at least 32 hex digits of either case
 *
 * A string that is only 64 lowercase hex digits is refused, as Docker
 * refuses it, because it looks like an image ID rather than a name.
 *
 * Example:
 *
 *   struct oci_reference ref;
 *   if (oci_reference_parse(arg, &ref, err) < 0)
 *     return -1;
 *   ... ref.registry, ref.repository ...
 *   oci_reference_release(&ref);
 */

struct oci_reference {
  char *registry;   /* "docker.io", "localhost:5000", "[::1]:5000" */
  char *repository; /* "library/alpine", "org/app" */
  char *tag;        /* "latest", "3.19"; NULL when only a digest was given */
  char *digest;     /* "sha256:<64 hex>", or NULL */
};

#define OCI_REFERENCE_INIT { NULL, NULL, NULL, NULL }

/*
 * Parse and normalize s into ref, whose previous content is ignored (it need
 * not be initialized).  Returns 0, or -1 with ref left all NULL and err set
 * to one line naming the input and, when known, what is wrong with it:
 *
 *   invalid reference format "Foo:bar": repository name must be lowercase
 *
 * ref's strings are allocated only once the whole string is accepted.
 */
int oci_reference_parse(const char *s, struct oci_reference *ref,
                        struct cb_error *err);

/* Free ref's strings and reset it to OCI_REFERENCE_INIT; safe to repeat. */
void oci_reference_release(struct oci_reference *ref);

/*
 * The full normalized form, which the caller frees:
 * "docker.io/library/alpine:latest", "localhost:5000/app@sha256:...",
 * "docker.io/library/repo:tag@sha256:...".  Parsing it gives ref back.
 */
char *oci_reference_string(const struct oci_reference *ref);

/*
 * The short form Docker shows, which the caller frees: the registry is
 * dropped when it is docker.io, and so is "library/" when one component
 * follows it: "alpine:latest", "user/app:v1", "localhost:5000/app:v1".
 * Parsing it also gives ref back.
 */
char *oci_reference_familiar(const struct oci_reference *ref);

/* Whether oci_reference_parse() would accept s. */
bool oci_reference_valid(const char *s);

#endif
