/*
 * oci: images as the OCI specifications define them.  The module turns
 * filesystems into content-addressed layers, writes image manifests,
 * configs and indexes, lays them out as OCI image layouts and tarballs, and
 * talks to registries (the distribution API) to pull and push them.
 *
 * It knows tars and JSON, not Dockerfiles, and uses no cbuild module but
 * common/.
 *
 * Sections: image references, digests, layer tars (writing them in one
 * streaming pass, extracting archives safely), the image JSON (config,
 * manifest, index), and the archives images travel in (OCI layouts and
 * tarballs, docker archives).
 */
#ifndef CBUILD_OCI_H
#define CBUILD_OCI_H

#include "../common/common.h"

#include <sys/stat.h>
#include <sys/types.h>

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

/* ---- digests ---- */

/* "sha256:" and 64 lowercase hex digits, with its NUL. */
#define OCI_DIGEST_SIZE 72

struct oci_hasher; /* an incremental SHA-256 (OpenSSL libcrypto) */
struct oci_hasher *oci_hasher_new(void);
/* The same, hashing in a thread of its own: update() copies the data
 * (into a 2 MiB ring) and returns.  One caller thread at a time. */
struct oci_hasher *oci_hasher_new_threaded(void);
void oci_hasher_update(struct oci_hasher *h, const void *data, size_t n);
/* Write "sha256:<hex>" into out; the hasher can be reused after. */
void oci_hasher_final(struct oci_hasher *h, char out[OCI_DIGEST_SIZE]);
/* The same without waiting for a threaded hasher: out is written once the
 * thread has hashed what came before (at once without a thread), and the
 * next update() starts a new digest.  Read out only after
 * oci_hasher_wait() or final(), and keep it until then (free() drops what
 * the thread has not reached). */
void oci_hasher_final_later(struct oci_hasher *h, char out[OCI_DIGEST_SIZE]);
/* Wait until everything given to the hasher is hashed and every digest
 * final_later() asked for is written. */
void oci_hasher_wait(struct oci_hasher *h);
void oci_hasher_free(struct oci_hasher *h);
void oci_digest_buf(const void *data, size_t n, char out[OCI_DIGEST_SIZE]);
/* Hash what is left to read on fd; *size gets the byte count. */
int oci_digest_fd(int fd, char out[OCI_DIGEST_SIZE], int64_t *size, struct cb_error *err);
/* Whether d is "sha256:" and 64 lowercase hex digits. */
bool oci_digest_valid(const char *d);

/* ---- layer tars ----
 *
 * A layer is written in one streaming pass: entries go through libarchive
 * (PAX, deterministic headers) into the compressor and out to a file
 * descriptor, while the uncompressed stream is hashed into the diff_id and
 * the compressed one into the blob digest.  Memory use does not grow with
 * the layer: gzip compresses fixed-size blocks in parallel (a multi-member
 * gzip stream, identical whatever the number of threads) and zstd uses its
 * own workers.
 *
 * Determinism is the writer's job: entries must come sorted by path
 * (strcmp order, which puts a directory before its contents), user and
 * group names are empty, no atime or ctime is written, mtimes are clamped
 * to source_date_epoch when it is >= 0, and the gzip header has no name and
 * no time.
 */
enum oci_compression {
  OCI_COMPRESSION_GZIP,
  OCI_COMPRESSION_ZSTD,
  OCI_COMPRESSION_NONE,
};

/* "gzip", "zstd" or "none"; -1 on anything else. */
int oci_compression_parse(const char *s, enum oci_compression *c);
/* The OCI layer media type: application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]. */
const char *oci_compression_media_type(enum oci_compression c);

struct oci_xattr {
  const char *name; /* "security.capability", "user.foo" */
  const void *value;
  size_t size;
};

/* One entry of a layer, as the tar will hold it. */
struct oci_entry {
  const char *path;     /* relative, '/'-separated, no "./", "..", or trailing '/' */
  mode_t mode;          /* type and permission bits: S_IFREG | 0644, S_IFDIR | 0755 */
  uid_t uid;
  gid_t gid;
  int64_t mtime;        /* seconds since the epoch */
  int64_t size;         /* regular files: the content's length */
  const char *symlink;  /* S_IFLNK: the target, as is */
  const char *hardlink; /* when set: a link to this earlier path of the layer */
  dev_t rdev;           /* S_IFCHR, S_IFBLK */
  const struct oci_xattr *xattrs;
  size_t n_xattrs;
};

struct oci_tar_stream;

struct oci_layer_options {
  enum oci_compression compression;
  int level;                 /* 0: the default (gzip 6 of 1-12, zstd 3) */
  int threads;               /* 0: the number of CPUs */
  int64_t source_date_epoch; /* -1: keep mtimes */
  /* An archive output the blob is copied into as it is written (see
   * oci_tar_stream_sync), or NULL. */
  struct oci_tar_stream *stream;
};

struct oci_layer_info {
  char diff_id[OCI_DIGEST_SIZE]; /* of the uncompressed tar */
  char digest[OCI_DIGEST_SIZE];  /* of the blob as written */
  int64_t size;                  /* of the blob as written */
  const char *media_type;
};

struct oci_layer_writer;

/* Start a layer written to fd (which the caller still owns). */
struct oci_layer_writer *oci_layer_writer_new(int fd, const struct oci_layer_options *o,
                                              struct cb_error *err);
/*
 * Add an entry.  A regular file's content is read from content_fd, exactly
 * e->size bytes (fewer or more is an error: the file changed under us);
 * pass -1 for other types.  An entry that sorts before the previous one is
 * an error.  An invalid entry is refused before anything is written, and
 * the layer can go on; after a read or write error it cannot be finished.
 */
int oci_layer_writer_add(struct oci_layer_writer *w, const struct oci_entry *e, int content_fd,
                         struct cb_error *err);
/* The same, also feeding each piece of the content read to `content` (a
 * hasher the caller owns, which sees exactly what the layer holds). */
int oci_layer_writer_add_hashed(struct oci_layer_writer *w, const struct oci_entry *e,
                                int content_fd, struct oci_hasher *content,
                                struct cb_error *err);
/* The same with the content in memory (heredocs, generated files). */
int oci_layer_writer_add_data(struct oci_layer_writer *w, const struct oci_entry *e,
                              const void *data, struct cb_error *err);
/* Finish the tar and the compressed stream; fill info. */
int oci_layer_writer_finish(struct oci_layer_writer *w, struct oci_layer_info *info,
                            struct cb_error *err);
void oci_layer_writer_free(struct oci_layer_writer *w);

/*
 * Extract an archive (tar, plain or compressed with gzip, bzip2, xz or zstd,
 * detected by content) into the directory dirfd, which the caller owns.
 * Hostile archives are confined, as Docker confines them: absolute paths
 * and symlinks on the way resolve inside the destination as if it were
 * "/"; ".." escapes and hardlinks leaving the destination or going through
 * a symlink are refused with an error naming the entry.  Owners are kept
 * only when `keep_owners`.  Returns -1 with err when the file is not an
 * archive at all (*not_archive set, nothing written) or on failure.
 */
int oci_archive_extract(int archive_fd, int dirfd, bool keep_owners, bool *not_archive,
                        struct cb_error *err);

/*
 * The same for a layer being unpacked as an overlayfs lower directory (a
 * snapshot): whiteouts become what overlayfs reads, ".wh.NAME" a 0/0
 * character device NAME, ".wh..wh..opq" the opaque xattr on its directory
 * ("user.overlay.opaque" when `userxattr`, else "trusted.overlay.opaque").
 * Owners are kept (when not root, a chown refused with EPERM leaves the
 * caller's ids).  dirfd should be empty: a whiteout hides what lower
 * layers have, not what this layer itself holds.
 * The file is read once, from its current offset to its end: `digest` gets
 * the digest of every byte read and `diff_id` that of the decompressed
 * stream, which the caller compares with what it expected (and empties
 * dirfd when they differ).
 */
int oci_layer_unpack_overlay(int layer_fd, int dirfd, bool userxattr,
                             char digest[OCI_DIGEST_SIZE], char diff_id[OCI_DIGEST_SIZE],
                             struct cb_error *err);

/*
 * The diff_id of the layer on layer_fd, from its current offset: the
 * digest of its decompressed stream (gzip, zstd, ... detected as above).
 */
int oci_layer_diff_id(int layer_fd, char out[OCI_DIGEST_SIZE], struct cb_error *err);

/*
 * A layer from an overlayfs upperdir, walking only the upperdir: a 0/0
 * character device becomes ".wh.NAME", an opaque directory gets
 * "DIR/.wh..wh..opq" when `below` says DIR exists in a lower layer;
 * hardlinks, xattrs (overlay's own excepted) and device nodes are kept;
 * paths listed in `skip` (relative, the sandbox's mount stubs) are left
 * out.  *empty is set, and nothing written, when the upperdir holds no
 * change at all.
 */
struct oci_upper_options {
  const struct strvec *skip;
  bool userxattr;
  bool (*below)(void *data, const char *dir); /* relative path */
  void *below_data;
};
int oci_layer_from_upperdir(int upperfd, const struct oci_upper_options *u, int out_fd,
                            const struct oci_layer_options *o, struct oci_layer_info *info,
                            bool *empty, struct cb_error *err);

/* ---- image JSON ----
 *
 * Configs, manifests and indexes as the OCI image spec defines them,
 * written with jansson in one canonical encoding (compact, sorted keys), so
 * that the same image always has the same digest.
 */
#define OCI_MEDIA_TYPE_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MEDIA_TYPE_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MEDIA_TYPE_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCI_ANNOTATION_REF_NAME "org.opencontainers.image.ref.name"
#define OCI_ANNOTATION_IMAGE_NAME "io.containerd.image.name"
/* Docker's schema2 types, which the readers accept too (loaded and pulled
 * images); the writers only write OCI types. */
#define OCI_MEDIA_TYPE_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define OCI_MEDIA_TYPE_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCI_MEDIA_TYPE_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define OCI_MEDIA_TYPE_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"

struct oci_kv {
  char *key;
  char *value;
};

struct oci_history {
  char *created; /* RFC 3339, or NULL */
  char *created_by;
  char *comment;
  bool empty_layer;
};

struct oci_health {
  struct strvec test; /* {"NONE"}, {"CMD", ...}, {"CMD-SHELL", cmd} */
  int64_t interval, timeout, start_period, start_interval; /* ns; 0 unset */
  int retries;
};

/* The image config.  A NULL or empty member is left out of the JSON. */
struct oci_config {
  char *architecture, *os, *variant;
  char *created; /* RFC 3339 */
  char *author;
  struct strvec env;        /* "K=V" */
  struct strvec cmd;        /* has_cmd: written even when empty */
  bool has_cmd;
  struct strvec entrypoint;
  bool has_entrypoint;
  char *working_dir, *user, *stop_signal;
  struct strvec exposed_ports; /* "80/tcp" */
  struct strvec volumes;
  struct oci_kv *labels;
  size_t n_labels;
  struct oci_health *healthcheck;
  struct strvec shell;
  struct strvec onbuild;
  struct strvec diff_ids;
  struct oci_history *history;
  size_t n_history;
};

void oci_config_release(struct oci_config *c);
void oci_config_copy(struct oci_config *dst, const struct oci_config *src);
/* Set (or add) an Env entry or a label. */
void oci_config_set_env(struct oci_config *c, const char *key, const char *value);
const char *oci_config_get_env(const struct oci_config *c, const char *key);
void oci_config_set_label(struct oci_config *c, const char *key, const char *value);
void oci_config_add_history(struct oci_config *c, const char *created, const char *created_by,
                            bool empty_layer);
/* The canonical JSON, which the caller frees. */
char *oci_config_json(const struct oci_config *c);
/*
 * Read a config; unknown fields are ignored and null counts as absent.  The
 * *_parse functions treat their output as uninitialized, check types,
 * digests and sizes, and on failure leave it zeroed with err set to one line
 * naming the member: invalid image config: "config.Env[2]" is not a string
 */
int oci_config_parse(const char *json, size_t n, struct oci_config *c, struct cb_error *err);

struct oci_descriptor {
  char *media_type;
  char *digest;
  int64_t size;
  struct oci_kv *annotations;
  size_t n_annotations;
  char *platform_os, *platform_arch, *platform_variant; /* in indexes */
};

void oci_descriptor_release(struct oci_descriptor *d);
void oci_descriptor_copy(struct oci_descriptor *dst, const struct oci_descriptor *src);
/* Set (or replace) an annotation. */
void oci_descriptor_annotate(struct oci_descriptor *d, const char *key, const char *value);
const char *oci_descriptor_annotation(const struct oci_descriptor *d, const char *key);

struct oci_manifest {
  struct oci_descriptor config;
  struct oci_descriptor *layers;
  size_t n_layers;
  struct oci_kv *annotations;
  size_t n_annotations;
};

void oci_manifest_release(struct oci_manifest *m);
char *oci_manifest_json(const struct oci_manifest *m);
/* Read an OCI manifest (or a Docker schema2 one, for loaded images). */
int oci_manifest_parse(const char *json, size_t n, struct oci_manifest *m, struct cb_error *err);

struct oci_index {
  struct oci_descriptor *manifests;
  size_t n_manifests;
};

void oci_index_release(struct oci_index *x);
char *oci_index_json(const struct oci_index *x);
int oci_index_parse(const char *json, size_t n, struct oci_index *x, struct cb_error *err);
/* The media type a manifest or index JSON states, else the one its shape
 * says (an index has "manifests", a manifest a "config"); NULL when it is
 * neither, or not JSON.  The caller frees it. */
char *oci_media_type_of_json(const char *json, size_t n);
/*
 * The entry of an index for platform ("os/arch[/variant]"), as Docker
 * chooses it: os and architecture equal; a variant asked for must match,
 * except that arm64 entries without one count as "v8"; asked without a
 * variant, an exact match (no variant) wins over the first with one.
 * Entries without a platform (attestations) never match.  Returns the
 * entry's position, or -1 with err listing the platforms there are.
 */
int oci_index_select_platform(const struct oci_index *x, const char *platform,
                              struct cb_error *err);

/* ---- archives images travel in ---- */

/* Where an archive writer gets blobs: an open fd (read-only, at offset 0)
 * for a digest, which the writer closes.  The store provides it, checking
 * the digest as the blob is read. */
struct oci_blob_source {
  int (*open)(void *data, const char *digest, int64_t *size, struct cb_error *err);
  void *data;
};

/*
 * A source the writers may check themselves, in the same pass as the copy
 * (one read of each blob instead of two): set the source's open to
 * oci_checked_source_open and its data to a struct oci_checked_source.
 * oci_checked_source_open keeps open()'s contract for any other reader
 * (the blob is hashed, then its fd returned at offset 0); the archive
 * writers recognize it, call open_unchecked() instead and hash the blob as
 * they copy it.  Either way a blob that does not hash to its digest goes to
 * corrupt() (fd: the blob as read; got: its digest), which sets err, may
 * drop the blob, and returns -1.  verified(), when set, says that fd (from
 * open_unchecked) is a file this process has already hashed to digest and
 * not let go of since (a blob it just stored): the writers copy it without
 * hashing it again.
 */
struct oci_checked_source {
  int (*open_unchecked)(void *data, const char *digest, int64_t *size, struct cb_error *err);
  int (*corrupt)(void *data, const char *digest, int fd, const char *got,
                 struct cb_error *err);
  bool (*verified)(void *data, const char *digest, int fd);
  void *data;
};
int oci_checked_source_open(void *checked_source, const char *digest, int64_t *size,
                            struct cb_error *err);

/* One image to put in an archive. */
struct oci_archive_image {
  const struct oci_descriptor *manifest; /* its digest and size */
  const struct oci_manifest *parsed;     /* its config and layers */
  const char *ref_name;   /* org.opencontainers.image.ref.name, or NULL */
  const char *image_name; /* io.containerd.image.name, or NULL */
  const struct strvec *repo_tags; /* docker archives: "app:latest" */
};

/*
 * An OCI image layout as a tar on fd: oci-layout, blobs/sha256/... and
 * index.json, deterministic (a fixed order, mtimes and owners; layout.c).
 */
int oci_layout_write_tar(int fd, const struct oci_archive_image *images, size_t n,
                         const struct oci_blob_source *src, struct cb_error *err);
/* The same as a directory (created if missing; blobs already there are kept). */
int oci_layout_write_dir(const char *dir, const struct oci_archive_image *images, size_t n,
                         const struct oci_blob_source *src, struct cb_error *err);
/*
 * A docker archive, which `docker load` and `podman load` read: the OCI
 * layout plus manifest.json ([{"Config", "RepoTags", "Layers"}]).
 */
int oci_docker_archive_write(int fd, const struct oci_archive_image *images, size_t n,
                             const struct oci_blob_source *src, struct cb_error *err);

/*
 * An archive output written while its image is built (tar-stream.c).
 *
 * Archives hold a fixed head, then each image's layers in order, so where
 * a layer goes depends only on the sizes of the layers before it: a layer
 * can be copied into its place while it is written, by a thread of the
 * stream, instead of by the export after the build.  For each layer the
 * build is about to write, oci_tar_stream_sync() gives the image's layers
 * so far; if it returns 0, the layer writer gets the stream in its options
 * and copies the blob over as it writes it, and oci_tar_stream_end() says
 * the blob became the image's layer `index` (a layer never ended is
 * dropped by the next sync).  oci_tar_stream_write() writes the archive
 * over the same file, skipping the layers already in place; whatever does
 * not match (an image whose layers are not the ones streamed, a blob given
 * up) is written in full, so the stream only ever saves work.
 */
/* fd: the regular file the archive goes to; the caller still owns it. */
struct oci_tar_stream *oci_tar_stream_new(int fd);
void oci_tar_stream_free(struct oci_tar_stream *s);
/* The image's layers are these now, and the next is about to be written:
 * 0 if the stream takes it, -1 if the image left what was streamed (then
 * nothing more is taken). */
int oci_tar_stream_sync(struct oci_tar_stream *s, const struct oci_descriptor *layers, size_t n);
void oci_tar_stream_end(struct oci_tar_stream *s, size_t index, const char *digest, int64_t size);
/* oci_layout_write_tar() (docker: oci_docker_archive_write()) over the
 * stream's file, from its start; the file is cut where the archive ends. */
int oci_tar_stream_write(struct oci_tar_stream *s, bool docker,
                         const struct oci_archive_image *images, size_t n,
                         const struct oci_blob_source *src, struct cb_error *err);

/* ---- registry credentials (auth.c) ----
 *
 * Where `docker login`, `podman login` and `cbuild login` keep what they
 * are given.  A lookup for a registry ("docker.io", "localhost:5000") reads,
 * in order, the first of these that exists:
 *
 *   the authfile argument (--authfile), else $REGISTRY_AUTH_FILE
 *   the containers auth.json: $XDG_RUNTIME_DIR/containers/auth.json (or
 *     /run/containers/0/auth.json for root without XDG_RUNTIME_DIR), then
 *     ~/.config/containers/auth.json
 *   Docker's config: $DOCKER_CONFIG/config.json, else ~/.docker/config.json
 *
 * In a file, credHelpers[registry] names a `docker-credential-NAME` program
 * (called with "get" and the server on stdin, answering JSON Username and
 * Secret), then auths[key] holds a base64 "user:password" in "auth" (or
 * "username" and "password", or an "identitytoken"), then credsStore names
 * the helper for every other registry.  Keys are matched as Docker matches
 * them: "host", "https://host", "http://host", any path after the host
 * ignored; Docker Hub's key is "https://index.docker.io/v1/".  A file that
 * is present but has nothing for the registry does not stop the search.
 */
struct oci_credentials {
  char *username; /* "<token>" when password is an identity token */
  char *password;
};

#define OCI_CREDENTIALS_INIT { NULL, NULL }

/* 0 found (c filled), 1 nothing for this registry, -1 a file is unreadable
 * or malformed, or a helper failed (err names it). */
int oci_credentials_lookup(const char *registry, const char *authfile,
                           struct oci_credentials *c, struct cb_error *err);
void oci_credentials_release(struct oci_credentials *c);

/*
 * `cbuild login`: keep c for registry in authfile, else $REGISTRY_AUTH_FILE,
 * else Docker's config (through its credHelpers/credsStore when it names
 * one).  Other entries and keys of the file are kept; it is replaced
 * atomically, mode 0600, its directory created when missing.
 */
int oci_credentials_store(const char *registry, const char *authfile,
                          const struct oci_credentials *c, struct cb_error *err);
/* `cbuild logout`: remove them from the same place; 0 removed, 1 there
 * were none, -1 error. */
int oci_credentials_erase(const char *registry, const char *authfile, struct cb_error *err);

/* ---- registries (registry.c) ----
 *
 * A client of one repository of a registry, speaking the distribution API
 * (v2) through libcurl.  Creating it asks GET /v2/ once, which settles the
 * scheme and how the registry authenticates:
 *
 *  - HTTPS with verified TLS, the system CAs plus options.ca_cert.  Plain
 *    HTTP (after HTTPS failed to connect) and unverified TLS only for
 *    localhost, 127.0.0.0/8, ::1 and the hosts in options.insecure, as
 *    Docker allows them.
 *  - Anonymous access, Basic auth, and Bearer tokens from the challenge's
 *    realm/service for each scope ("repository:app:pull",
 *    "repository:app:pull,push"), fetched once per scope and reused;
 *    credentials come from oci_credentials_lookup() when first needed.
 *  - Connection errors, 429 and 5xx are retried with exponential backoff
 *    (Retry-After honoured); a 4xx is reported at once with the registry's
 *    own error message.  Every manifest and blob read is checked against
 *    its digest while it streams; a mismatch is an error, never retried.
 *
 * Docker Hub ("docker.io") is reached at registry-1.docker.io.  The client
 * may be shared by threads (transfers run in parallel); each call has its
 * own connection, all of them sharing a connection cache.
 */
struct oci_registry_options {
  const struct strvec *insecure; /* --insecure-registry: host[:port] */
  const char *ca_cert;           /* --tls-ca-cert: a PEM file, or NULL */
  const char *authfile;          /* --authfile, or NULL (see above) */
  const struct oci_credentials *credentials; /* these instead of a lookup (login) */
  int retries;                   /* after the first try; < 0: the default (4) */
  const char *user_agent;
};

struct oci_registry;

/* Transfer progress: bytes done of total (-1: unknown). */
typedef void (*oci_progress_fn)(void *data, int64_t done, int64_t total);

struct oci_registry *oci_registry_new(const char *registry, const char *repository,
                                      const struct oci_registry_options *o,
                                      struct cb_error *err);
void oci_registry_free(struct oci_registry *r);
/* "127.0.0.1:5000/app", for messages. */
const char *oci_registry_name(const struct oci_registry *r);
/* Whether the registry accepts the client's credentials (`cbuild login`):
 * an authenticated GET /v2/ (through a token when it wants Bearer). */
int oci_registry_check_login(struct oci_registry *r, struct cb_error *err);

/* The manifest media types a GET accepts: OCI and Docker schema 2 manifests,
 * indexes and manifest lists. */
bool oci_media_type_is_index(const char *media_type);
bool oci_media_type_is_manifest(const char *media_type);

/*
 * GET the manifest or index `reference` (a tag or a digest), at most 4 MiB:
 * body, its media type (Content-Type, else the JSON's mediaType) and its
 * digest, which must equal the reference when that is a digest.  Returns 0,
 * 1 when the registry has no such manifest, -1 on error.
 */
int oci_registry_manifest_get(struct oci_registry *r, const char *reference,
                              struct strbuf *body, char **media_type,
                              char digest[OCI_DIGEST_SIZE], struct cb_error *err);
/* PUT a manifest or index under reference (a tag or its digest) with its
 * media type; digest_out (may be NULL) gets the digest the registry
 * reports, which must be the body's. */
int oci_registry_manifest_put(struct oci_registry *r, const char *reference,
                              const char *media_type, const void *body, size_t n,
                              char digest_out[OCI_DIGEST_SIZE], struct cb_error *err);

/* GET a blob into fd (from its current offset, which it must be able to
 * truncate back to on a retry), following redirects, checked against
 * digest and, when >= 0, size. */
int oci_registry_blob_get(struct oci_registry *r, const char *digest, int64_t size, int fd,
                          oci_progress_fn progress, void *progress_data, struct cb_error *err);
/* HEAD: 0 the registry has the blob, 1 it does not, -1 error. */
int oci_registry_blob_exists(struct oci_registry *r, const char *digest, struct cb_error *err);
/* Mount a blob from another repository of the same registry: 0 mounted, 1
 * the registry declined (upload it instead), -1 error. */
int oci_registry_blob_mount(struct oci_registry *r, const char *digest,
                            const char *from_repository, struct cb_error *err);
/*
 * Upload size bytes of fd (read with pread from offset 0) as blob digest:
 * up to OCI_REGISTRY_CHUNK in one PUT, larger blobs in PATCH chunks of that
 * size, then the closing PUT.  Each request is retried in place; an upload
 * session the registry lost (404, 416) starts over once.
 */
#define OCI_REGISTRY_CHUNK ((int64_t)32 << 20)
int oci_registry_blob_put(struct oci_registry *r, const char *digest, int64_t size, int fd,
                          oci_progress_fn progress, void *progress_data, struct cb_error *err);

#endif
