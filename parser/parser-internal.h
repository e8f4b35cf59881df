/* Helpers shared by the parser's files; not part of its API. */
#ifndef CBUILD_PARSER_INTERNAL_H
#define CBUILD_PARSER_INTERNAL_H

#include "parser.h"

/* Fill err with file, line and a formatted message; returns -1. */
int parser_error_set(struct parser_error *err, const char *file, int line,
                     const char *fmt, ...) CB_PRINTF(4, 5);

size_t parser_utf8_decode(const char *s, size_t avail, int32_t *cp);
bool parser_is_space(int32_t c);
bool parser_shell_match(const char *pat, size_t plen, const char *str, size_t slen);

/* Substitute in a heredoc body: quotes stay literal. */
int parser_expand_heredoc(const char *text, const struct parser_vars *vars,
                          struct strbuf *out, char *errbuf, size_t errsize);

/*
 * Phase 1 for one instruction line (continuations joined, heredoc bodies
 * read): split the command, its flags and arguments and check them.
 * `line`/`end_line` locate it.  Fills *step; on failure err is set.
 */
int parser_instruction_parse(const char *file, const char *text, char escape,
                             int line, int end_line, struct parser_step *step,
                             struct parser_error *err);
void parser_step_release(struct parser_step *step);

/* HEALTHCHECK: fill step->health from the arguments and flag values. */
int parser_health_values(const char *file, int line, struct parser_step *step,
                         struct parser_error *err);

/* RUN --mount, parsed after substitution. */
int parser_mount_parse(const char *spec, struct parser_mount *m, char *errbuf,
                       size_t errsize);
void parser_mount_release(struct parser_mount *m);

/* Whether s is a valid build stage name (already lowercased). */
bool parser_stage_name_valid(const char *s);

/* EXPOSE: one port spec, as "PORT/proto" entries (a range gives each port). */
int parser_port_parse(const char *spec, struct strvec *out, char *errbuf, size_t errsize);

/* STOPSIGNAL: a signal name or number. */
bool parser_signal_valid(const char *s);

#endif
