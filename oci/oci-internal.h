/* oci's private pieces, shared between its files. */
#ifndef CBUILD_OCI_INTERNAL_H
#define CBUILD_OCI_INTERNAL_H

#include "oci.h"

/* Standard base64 (with padding) of n bytes, NUL-terminated; the caller
 * frees it (auth.c: credentials files, registry.c: Basic auth). */
char *oci_base64_encode(const char *data, size_t n);

/* ---- archives (layout.c, tar-stream.c) ---- */

/* A tar block: a header of the entries archives hold, and the data's unit. */
#define OCI_TAR_BLOCK ((int64_t)512)
/* The bytes of the entry of a blob of `size` bytes: header, data, padding. */
int64_t oci_tar_span(int64_t size);
/* The bytes before the first blob of an archive (oci-layout, blobs/...). */
int64_t oci_tar_head_size(void);

/* A blob whose data is in the archive file already, at data_at. */
struct oci_tar_placed {
  const char *digest;
  int64_t size;
  int64_t data_at;
};
/*
 * Write an OCI layout tar (docker: a docker archive) on fd, a regular file,
 * from its start; a blob of `placed` whose data goes exactly where it was
 * placed is skipped over instead of copied.  fd is cut to the archive's end.
 */
int oci_tar_write_placed(int fd, bool docker, const struct oci_archive_image *images, size_t n,
                         const struct oci_blob_source *src, const struct oci_tar_placed *placed,
                         size_t n_placed, struct cb_error *err);

/* The layer writer's side of a stream (layer-write.c): a blob that starts
 * at src_at in src_fd is being written there.  Returns the ticket its
 * grows name, 0 when the stream does not take it. */
uint64_t oci_tar_stream_begin(struct oci_tar_stream *s, int src_fd, int64_t src_at);
/* src_fd holds the blob's first `size` bytes now. */
void oci_tar_stream_grow(struct oci_tar_stream *s, uint64_t ticket, int64_t size);

#endif
