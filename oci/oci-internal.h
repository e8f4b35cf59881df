/* oci's private pieces, shared between its files. */
#ifndef CBUILD_OCI_INTERNAL_H
#define CBUILD_OCI_INTERNAL_H

#include "oci.h"

/* Standard base64 (with padding) of n bytes, NUL-terminated; the caller
 * frees it (auth.c: credentials files, registry.c: Basic auth). */
char *oci_base64_encode(const char *data, size_t n);

#endif
