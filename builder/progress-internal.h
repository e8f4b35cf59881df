/*
 * progress: how the builder reports a build while it runs, in the shapes
 * BuildKit's users know (`--progress auto|plain|tty|quiet`, `-q` = quiet).
 *
 * plain   one block per step, every line naming its step, for logs and CI:
 *
 *             #1 [internal] load build definition from Dockerfile
 *             #1 DONE 0.0s
 *
 *             #3 [build 2/4] RUN make
 *             #3 cache miss: "src/main.c" changed        (a note)
 *             #3 0.412 compiling...                        (output, seconds
 *             #3 ...                                        since the start)
 *
 *             #4 [test 1/2] RUN ./check
 *             #4 0.020 ok
 *             #4 DONE 0.1s
 *
 *             #3 [build 2/4] RUN make
 *             #3 ERROR: exit code: 2
 *
 *         The end of a step reads `#N DONE 0.3s`, `#N CACHED`,
 *         `#N ERROR: <message>` or `#N CANCELED` (still running at
 *         progress_finish()).  When output of another step interleaves,
 *         `#N ...` closes the open block and the header is printed again
 *         before the step goes on, as BuildKit does.
 * tty     a compact view redrawn in place with ANSI escapes: a header
 *         `[+] Building 2.3s (4/7)`, one line per step
 *         (` => [build 2/4] RUN make     1.2s`, ` => CACHED ...`,
 *         ` => ERROR ...`) and, dimmed under running steps, their last
 *         output lines; fitted to the terminal's width and height.  Redraws
 *         happen on events, at most ten a second, plus a ticker thread when
 *         the fd is a real terminal so that timers move during silent steps;
 *         progress_finish() draws the complete final view.
 * quiet   nothing but the summary of failed steps.
 *
 * In every mode progress_finish() ends with a summary of each failed step,
 * its name and last output lines, like BuildKit's:
 *
 *     ------
 *      > [build 2/4] RUN make:
 *     0.412 compiling...
 *     ------
 *
 * The build's error message itself is the caller's to print, after
 * progress_finish(), as docker's CLI does.
 *
 * Steps are added with the stage, position and instruction that make their
 * name; the returned id names the step in later calls.  The `#N` shown is
 * given when the step first appears (starts, or is reported cached or
 * failed), so numbers rise down the output like BuildKit's; a caller that
 * adds each step as it starts gets #N equal to the id.
 *
 * Every call takes the reporter's lock and prints what it has to say with
 * one write(2), so stages may report from parallel threads.  Output is best
 * effort: a write error is ignored (a closed stderr must not fail a build),
 * and errno is left as it was.  Other text written to the same fd while a
 * tty view is live garbles it; print it after progress_finish().
 */
#ifndef CBUILD_BUILDER_PROGRESS_INTERNAL_H
#define CBUILD_BUILDER_PROGRESS_INTERNAL_H

#include "../common/common.h"

enum progress_mode {
  PROGRESS_AUTO,  /* tty on a terminal (unless TERM=dumb), else plain */
  PROGRESS_PLAIN,
  PROGRESS_TTY,   /* also when fd is no terminal: 80 columns are assumed */
  PROGRESS_QUIET,
};

/* Parse "auto", "plain", "tty" or "quiet" into *mode; -1 (and *mode
 * untouched) for anything else. */
int progress_mode_parse(const char *s, enum progress_mode *mode);
const char *progress_mode_name(enum progress_mode mode);

struct progress;

/* A reporter writing to fd (normally 2), which stays the caller's. */
struct progress *progress_new(enum progress_mode mode, int fd);
/* The mode in effect: never PROGRESS_AUTO. */
enum progress_mode progress_get_mode(const struct progress *p);

/*
 * A clock returning nanoseconds from any fixed origin; the default reads
 * CLOCK_MONOTONIC.  Tests inject one to get exact durations.  It is called
 * with the reporter's lock held, possibly from the ticker thread.
 * fn == NULL restores the default.
 */
typedef uint64_t (*progress_clock_fn)(void *data);
void progress_set_clock(struct progress *p, progress_clock_fn fn, void *data);

/*
 * Add a step, named from its stage and place in it:
 *   stage "build", index 2, count 4, "RUN make"  ->  [build 2/4] RUN make
 *   stage NULL,    index 2, count 3, "COPY . /"  ->  [2/3] COPY . /
 *   stage "internal", count 0, "load ..."        ->  [internal] load ...
 *   stage NULL,    count 0, "exporting to image" ->  exporting to image
 * Returns the step's id (1, 2, ... in order of adding).  Nothing is shown
 * until the step starts; the tty header counts it in its total.
 */
int progress_step_add(struct progress *p, const char *stage_name, int index,
                      int count, const char *text);
/* The #N shown for step id, or 0 while it has not appeared yet. */
int progress_step_number(struct progress *p, int id);

/*
 * The events of a step.  An unknown id is a bug and aborts.  Output, or
 * DONE, for a step not started yet starts it first; a second end of a step
 * is ignored.  Output that arrives after the end is still shown.
 */
void progress_step_start(struct progress *p, int id);
/* A line (or several) shown as `#N text` after the step's header, in plain
 * mode only; given before the start, it waits for the header. */
void progress_step_note(struct progress *p, int id, const char *fmt, ...)
    CB_PRINTF(3, 4);
/*
 * Raw bytes from the step's process, split into lines here: a partial line
 * waits for its newline or for the step's end.  A carriage return not
 * followed by a newline lets the text after it replace the line, as on a
 * terminal, so a progress bar shows as its last state; "\r\n" ends a line.
 * Lines over 64 KiB are cut.
 */
void progress_step_output(struct progress *p, int id, const char *data,
                          size_t len);
void progress_step_done(struct progress *p, int id);
void progress_step_cached(struct progress *p, int id);
void progress_step_error(struct progress *p, int id, const char *fmt, ...)
    CB_PRINTF(3, 4);

/*
 * End the report: steps still running are marked CANCELED, the tty view is
 * drawn complete, and failed steps are summarized.  Later calls do nothing.
 */
void progress_finish(struct progress *p);
/* Finish if not done yet, then free.  NULL is fine. */
void progress_free(struct progress *p);

#endif
