/*
 * The build progress reporter: BuildKit's plain log, a live tty view, or
 * silence (see progress-internal.h for the formats).  Every public call
 * takes p->lock, collects what it prints in a local strbuf and writes it
 * with one write(2) on the way out, so lines of parallel stages never tear.
 */
#include "progress-internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_SEC 1000000000ull
/* Lines kept per step for the tty tail and the error summary. */
#define PROGRESS_KEEP_LINES 20
/* Lines shown under a running step in the tty view, as BuildKit. */
#define PROGRESS_TAIL_LINES 6
/* So that a step which never prints a newline cannot grow memory forever. */
#define PROGRESS_LINE_MAX 65536
/* At most ten tty redraws a second. */
#define PROGRESS_REDRAW_NS (NS_PER_SEC / 10)

enum step_state {
  STEP_ADDED,
  STEP_RUNNING,
  /* from here on the step has ended */
  STEP_DONE,
  STEP_CACHED,
  STEP_ERROR,
  STEP_CANCELED,
};

struct step_line {
  uint64_t ts; /* ns since the step started */
  char *text;  /* may hold NUL bytes: len counts */
  size_t len;
};

struct progress_step {
  char *name; /* "[build 2/4] RUN make" */
  int number; /* the #N shown, 0 until the step appears */
  enum step_state state;
  bool started;
  uint64_t start, end;
  struct strvec notes; /* plain notes waiting for the header */

  /* the output line being assembled */
  struct strbuf partial;
  bool partial_open; /* a line has begun, maybe still empty */
  bool partial_cr;   /* a \r was seen: more text replaces the line */
  uint64_t partial_ts;

  /* the last lines, a ring: keep_next is the slot to write next */
  struct step_line keep[PROGRESS_KEEP_LINES];
  size_t keep_next, keep_n;
};

struct progress {
  pthread_mutex_t lock;
  enum progress_mode mode;
  int fd;
  progress_clock_fn clock;
  void *clock_data;
  bool color;
  bool finished;

  struct progress_step **steps; /* by id - 1 */
  size_t nsteps, steps_alloc;
  struct progress_step **shown; /* by number - 1 */
  size_t nshown, shown_alloc;
  bool t0_set;
  uint64_t t0; /* when the first step appeared */

  /* plain: the step whose block is open, and whether a block was printed */
  struct progress_step *current;
  bool printed;

  /* tty */
  size_t tty_lines; /* lines of the last frame, to move back over */
  bool drawn;
  uint64_t last_draw;
  pthread_cond_t ticker_wake;
  pthread_t ticker;
  bool ticker_running;
  bool ticker_stop;
};

static uint64_t clock_monotonic(void *data)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static uint64_t progress_now(struct progress *p)
{
  return p->clock(p->clock_data);
}

/* Whole seconds and the rest apart, as Go's Duration.Seconds(), so that
 * "%.1f" rounds where BuildKit's does. */
static double ns_to_seconds(uint64_t ns)
{
  return (double)(ns / NS_PER_SEC) + (double)(ns % NS_PER_SEC) / 1e9;
}

/* BuildKit's log time keeps about four digits: 0.412, 12.50, 123.4. */
static void add_log_time(struct strbuf *sb, uint64_t ns)
{
  double sec = ns_to_seconds(ns);
  int prec = sec < 10 ? 3 : sec < 100 ? 2 : 1;
  strbuf_addf(sb, "%.*f", prec, sec);
}

static uint64_t step_elapsed(const struct progress_step *s, uint64_t now)
{
  return s->started && now > s->start ? now - s->start : 0;
}

/* ---- modes ---- */

static const struct {
  const char *name;
  enum progress_mode mode;
} progress_modes[] = {
  { "auto", PROGRESS_AUTO },
  { "plain", PROGRESS_PLAIN },
  { "tty", PROGRESS_TTY },
  { "quiet", PROGRESS_QUIET },
};

int progress_mode_parse(const char *s, enum progress_mode *mode)
{
  if (s == NULL)
    return -1;
  for (size_t i = 0; i < CB_ARRAY_SIZE(progress_modes); i++) {
    if (strcmp(s, progress_modes[i].name) == 0) {
      *mode = progress_modes[i].mode;
      return 0;
    }
  }
  return -1;
}

const char *progress_mode_name(enum progress_mode mode)
{
  for (size_t i = 0; i < CB_ARRAY_SIZE(progress_modes); i++)
    if (progress_modes[i].mode == mode)
      return progress_modes[i].name;
  return "unknown";
}

static enum progress_mode resolve_mode(enum progress_mode mode, int fd)
{
  const char *term;
  if (mode != PROGRESS_AUTO)
    return mode;
  /* A dumb terminal cannot move the cursor back over the last frame. */
  term = getenv("TERM");
  if (isatty(fd) && !(term && strcmp(term, "dumb") == 0))
    return PROGRESS_TTY;
  return PROGRESS_PLAIN;
}

/* ---- writing ---- */

static void emit(struct progress *p, struct strbuf *out)
{
  size_t off = 0;
  while (off < out->len) {
    ssize_t n = write(p->fd, out->buf + off, out->len - off);
    if (n < 0 && errno == EINTR)
      continue;
    /* Best effort: a closed or full stderr must not fail the build. */
    if (n <= 0)
      break;
    off += (size_t)n;
  }
  strbuf_reset(out);
}

static int progress_enter(struct progress *p)
{
  int saved_errno = errno;
  pthread_mutex_lock(&p->lock);
  return saved_errno;
}

static void progress_leave(struct progress *p, struct strbuf *out, int saved_errno)
{
  emit(p, out);
  pthread_mutex_unlock(&p->lock);
  errno = saved_errno;
}

static struct progress_step *step_get(struct progress *p, int id)
{
  if (id < 1 || (size_t)id > p->nsteps)
    cb_die("progress: no step %d", id);
  return p->steps[id - 1];
}

/* ---- plain ---- */

/* "#N <prefix>line" for each line of text. */
static void plain_add_lines(struct strbuf *out, int number, const char *prefix,
                            const char *text)
{
  do {
    const char *nl = strchrnul(text, '\n');
    strbuf_addf(out, "#%d %s", number, prefix);
    strbuf_add(out, text, (size_t)(nl - text));
    strbuf_addch(out, '\n');
    prefix = "";
    text = *nl ? nl + 1 : nl;
  } while (*text);
}

/* Give the step its #N the first time it shows. */
static void step_show(struct progress *p, struct progress_step *s)
{
  if (s->number)
    return;
  if (!p->t0_set) {
    p->t0 = progress_now(p);
    p->t0_set = true;
  }
  CB_GROW(p->shown, p->nshown + 1, p->shown_alloc);
  p->shown[p->nshown++] = s;
  s->number = (int)p->nshown;
}

/*
 * Make s the step whose block is open: close the open one with "#N ...",
 * leave a blank line and print the header (again, if s was interrupted).
 */
static void plain_open(struct progress *p, struct progress_step *s, struct strbuf *out)
{
  if (p->mode != PROGRESS_PLAIN)
    return;
  step_show(p, s);
  if (p->current != s) {
    if (p->current)
      strbuf_addf(out, "#%d ...\n", p->current->number);
    if (p->printed)
      strbuf_addch(out, '\n');
    strbuf_addf(out, "#%d %s\n", s->number, s->name);
    p->current = s;
    p->printed = true;
  }
  for (size_t i = 0; i < s->notes.n; i++)
    plain_add_lines(out, s->number, "", s->notes.v[i]);
  strvec_clear(&s->notes);
}

/* An ended step's block stays closed: the next line of anyone reopens. */
static void plain_close_if_ended(struct progress *p, struct progress_step *s)
{
  if (p->current == s && s->state >= STEP_DONE)
    p->current = NULL;
}

/* ---- step output ---- */

/* The partial line is complete: keep it, and print it in plain mode. */
static void line_end(struct progress *p, struct progress_step *s, struct strbuf *out)
{
  struct step_line *l = &s->keep[s->keep_next];

  free(l->text);
  l->ts = s->partial_ts;
  l->text = strbuf_detach(&s->partial, &l->len);
  s->keep_next = (s->keep_next + 1) % PROGRESS_KEEP_LINES;
  if (s->keep_n < PROGRESS_KEEP_LINES)
    s->keep_n++;
  s->partial_open = s->partial_cr = false;

  if (p->mode == PROGRESS_PLAIN) {
    plain_open(p, s, out);
    strbuf_addf(out, "#%d ", s->number);
    add_log_time(out, l->ts);
    if (l->len) {
      strbuf_addch(out, ' ');
      strbuf_add(out, l->text, l->len);
    }
    strbuf_addch(out, '\n');
  }
}

static void step_feed(struct progress *p, struct progress_step *s, const char *data,
                      size_t len, struct strbuf *out)
{
  uint64_t ts = step_elapsed(s, progress_now(p));
  size_t i = 0;

  while (i < len) {
    size_t run, room;

    if (!s->partial_open) {
      s->partial_open = true;
      s->partial_ts = ts;
    }
    if (data[i] == '\n') {
      line_end(p, s, out);
      i++;
      continue;
    }
    if (data[i] == '\r') {
      s->partial_cr = true;
      i++;
      continue;
    }
    /* Text after a lone \r replaces the line, as it would on a terminal. */
    if (s->partial_cr) {
      strbuf_reset(&s->partial);
      s->partial_cr = false;
      s->partial_ts = ts;
    }
    for (run = i; run < len && data[run] != '\n' && data[run] != '\r'; run++)
      ;
    room = PROGRESS_LINE_MAX - s->partial.len;
    if (run - i < room)
      room = run - i;
    strbuf_add(&s->partial, data + i, room);
    i += room;
    if (s->partial.len >= PROGRESS_LINE_MAX)
      line_end(p, s, out);
  }
}

static void step_flush_partial(struct progress *p, struct progress_step *s,
                               struct strbuf *out)
{
  /* A line holding nothing but a \r never showed anything. */
  if (s->partial.len)
    line_end(p, s, out);
  s->partial_open = s->partial_cr = false;
}

/* ---- step states ---- */

static void step_begin(struct progress *p, struct progress_step *s, struct strbuf *out)
{
  if (s->state != STEP_ADDED)
    return;
  s->state = STEP_RUNNING;
  s->started = true;
  s->start = progress_now(p);
  step_show(p, s);
  plain_open(p, s, out);
}

static void step_end(struct progress *p, struct progress_step *s, enum step_state state,
                     const char *msg, struct strbuf *out)
{
  if (s->state >= STEP_DONE)
    return;
  if (s->state == STEP_ADDED && state == STEP_DONE)
    step_begin(p, s, out);
  step_show(p, s);
  step_flush_partial(p, s, out);
  s->state = state;
  s->end = progress_now(p);

  if (p->mode != PROGRESS_PLAIN)
    return;
  plain_open(p, s, out);
  switch (state) {
  case STEP_DONE:
    strbuf_addf(out, "#%d DONE %.1fs\n", s->number,
                ns_to_seconds(step_elapsed(s, s->end)));
    break;
  case STEP_CACHED:
    strbuf_addf(out, "#%d CACHED\n", s->number);
    break;
  case STEP_ERROR:
    plain_add_lines(out, s->number, "ERROR: ", msg);
    break;
  default:
    strbuf_addf(out, "#%d CANCELED\n", s->number);
    break;
  }
  p->current = NULL;
}

/* ---- tty ---- */

static void tty_size(struct progress *p, size_t *cols, size_t *rows)
{
  struct winsize ws;
  *cols = 80;
  *rows = 24;
  if (ioctl(p->fd, TIOCGWINSZ, &ws) == 0) {
    if (ws.ws_col > 0)
      *cols = ws.ws_col;
    if (ws.ws_row > 0)
      *rows = ws.ws_row;
  }
}

/* Index just past the escape sequence starting at s[i] (an ESC). */
static size_t skip_escape(const char *s, size_t len, size_t i)
{
  size_t j = i + 2;
  if (i + 1 >= len)
    return len;
  if (s[i + 1] == '[') {
    /* CSI: parameters up to a final byte in 0x40..0x7e */
    while (j < len && !(s[j] >= 0x40 && s[j] <= 0x7e))
      j++;
    return j < len ? j + 1 : len;
  }
  if (s[i + 1] == ']') {
    /* OSC: up to BEL or ESC \ */
    for (; j < len; j++) {
      if (s[j] == '\a')
        return j + 1;
      if (s[j] == 0x1b && j + 1 < len && s[j + 1] == '\\')
        return j + 2;
    }
    return len;
  }
  return j;
}

/*
 * Append at most cols columns of s, one per code point (so a wide CJK
 * character is undercounted, a known limit), dropping control
 * characters and escape sequences: the view's line arithmetic relies on
 * what it prints taking exactly the columns counted, and step output must
 * not move the cursor.  Returns the columns used.
 */
static size_t add_fitted(struct strbuf *sb, const char *s, size_t len, size_t cols)
{
  size_t used = 0, i = 0;

  while (i < len && used < cols) {
    unsigned char c = (unsigned char)s[i];
    size_t n = 1;

    if (c == 0x1b) {
      i = skip_escape(s, len, i);
      continue;
    }
    if (c == '\t' || c == '\n') {
      strbuf_addch(sb, ' ');
      used++;
      i++;
      continue;
    }
    if (c < 0x20 || c == 0x7f) {
      i++;
      continue;
    }
    while (i + n < len && ((unsigned char)s[i + n] & 0xc0) == 0x80)
      n++;
    strbuf_add(sb, s + i, n);
    used++;
    i += n;
  }
  return used;
}

static void add_spaces(struct strbuf *sb, size_t n)
{
  while (n--)
    strbuf_addch(sb, ' ');
}

/* " => [tag ]name          1.2s", exactly width columns. */
static void tty_step_line(struct progress *p, struct strbuf *out,
                          const struct progress_step *s, size_t width, uint64_t now)
{
  static const char *const tags[] = {
    [STEP_CACHED] = "CACHED ",
    [STEP_ERROR] = "ERROR ",
    [STEP_CANCELED] = "CANCELED ",
  };
  const char *tag = tags[s->state] ? tags[s->state] : "";
  const char *color = NULL;
  uint64_t end = s->state >= STEP_DONE ? s->end : now;
  double sec = ns_to_seconds(step_elapsed(s, end));
  char timer[40];
  size_t tn, room, used;

  /* BuildKit's cut-off, so that a just-started step reads 0.0s. */
  if (sec < 0.05)
    sec = 0;
  tn = (size_t)snprintf(timer, sizeof(timer), " %.1fs", sec);
  room = width > 4 + tn ? width - 4 - tn : 1;

  if (p->color) {
    if (s->state == STEP_ERROR)
      color = "\x1b[31m";
    else if (s->state == STEP_CANCELED)
      color = "\x1b[33m";
    else if (s->state >= STEP_DONE)
      color = "\x1b[34m";
  }
  if (color)
    strbuf_addstr(out, color);
  strbuf_addstr(out, " => ");
  used = add_fitted(out, tag, strlen(tag), room);
  used += add_fitted(out, s->name, strlen(s->name), room - used);
  add_spaces(out, room - used);
  strbuf_add(out, timer, tn);
  if (color)
    strbuf_addstr(out, "\x1b[0m");
  strbuf_addstr(out, "\x1b[K\n");
}

static void tty_tail_line(struct strbuf *out, const char *text, size_t len, size_t width)
{
  strbuf_addstr(out, "\x1b[2m => => # ");
  add_fitted(out, text, len, width > 9 ? width - 9 : 1);
  strbuf_addstr(out, "\x1b[0m\x1b[K\n");
}

/* The last lines of a running step, the partial one included, within
 * *budget lines; returns how many were drawn. */
static size_t tty_tail(struct strbuf *out, const struct progress_step *s,
                       size_t width, size_t *budget)
{
  size_t want = *budget < PROGRESS_TAIL_LINES ? *budget : PROGRESS_TAIL_LINES;
  size_t partial = s->partial.len ? 1 : 0;
  size_t show = s->keep_n + partial < want ? s->keep_n + partial : want;
  size_t from_keep = show - (show ? partial : 0);

  for (size_t k = 0; k < from_keep; k++) {
    size_t idx = (s->keep_next + PROGRESS_KEEP_LINES - from_keep + k) %
                 PROGRESS_KEEP_LINES;
    tty_tail_line(out, s->keep[idx].text, s->keep[idx].len, width);
  }
  if (show && partial)
    tty_tail_line(out, s->partial.buf, s->partial.len, width);
  *budget -= show;
  return show;
}

/*
 * Draw the view over the previous frame.  A live frame must fit the screen,
 * or moving the cursor up cannot reach its top next time: finished steps go
 * first, oldest first, and output tails get what room is left.  The final
 * frame is drawn once more and then left alone, so it shows every step.
 */
static void tty_draw(struct progress *p, struct strbuf *out, bool final)
{
  uint64_t now = progress_now(p);
  size_t cols, rows, width, avail, nskip = 0, budget = 0, lines = 0, ndone = 0;
  cleanup_free bool *skip = xcalloc(p->nshown + 1, sizeof(*skip));
  struct strbuf head = STRBUF_INIT;

  tty_size(p, &cols, &rows);
  /* One column spare: writing the last one makes some terminals wrap. */
  width = cols > 21 ? cols - 1 : 20;
  avail = final ? SIZE_MAX : rows > 3 ? rows - 2 : 1;

  for (size_t i = 0; i < p->nsteps; i++)
    if (p->steps[i]->state >= STEP_DONE)
      ndone++;

  if (p->tty_lines)
    strbuf_addf(out, "\x1b[%zuA", p->tty_lines);
  strbuf_addstr(out, "\r\x1b[?25l");
  strbuf_addf(&head, "[+] Building %.1fs (%zu/%zu)%s",
              ns_to_seconds(p->t0_set && now > p->t0 ? now - p->t0 : 0), ndone,
              p->nsteps, final && ndone == p->nsteps && ndone ? " FINISHED" : "");
  add_fitted(out, head.buf, head.len, width);
  strbuf_release(&head);
  strbuf_addstr(out, "\x1b[K\n");
  lines++;

  if (p->nshown > avail) {
    size_t excess = p->nshown - avail;
    nskip = excess;
    for (size_t i = 0; i < p->nshown && excess; i++)
      if (p->shown[i]->state >= STEP_DONE) {
        skip[i] = true;
        excess--;
      }
    for (size_t i = 0; i < p->nshown && excess; i++)
      if (!skip[i]) {
        skip[i] = true;
        excess--;
      }
  }
  if (!final)
    budget = avail - (p->nshown - nskip);

  for (size_t i = 0; i < p->nshown; i++) {
    const struct progress_step *s = p->shown[i];
    if (skip[i])
      continue;
    tty_step_line(p, out, s, width, now);
    lines++;
    if (s->state == STEP_RUNNING && budget)
      lines += tty_tail(out, s, width, &budget);
  }
  strbuf_addstr(out, "\x1b[J\x1b[?25h");

  p->tty_lines = lines;
  p->drawn = true;
  p->last_draw = now;
}

/* Redraw after an event, unless the last frame is too recent. */
static void tty_refresh(struct progress *p, struct strbuf *out)
{
  if (p->mode != PROGRESS_TTY || p->finished || !p->nsteps)
    return;
  if (p->drawn && progress_now(p) < p->last_draw + PROGRESS_REDRAW_NS)
    return;
  tty_draw(p, out, false);
}

static bool any_running(const struct progress *p)
{
  for (size_t i = 0; i < p->nshown; i++)
    if (p->shown[i]->state == STEP_RUNNING)
      return true;
  return false;
}

/* Redraw while steps run, so their timers move even when they are silent. */
static void *ticker_main(void *arg)
{
  struct progress *p = arg;
  cleanup_strbuf struct strbuf out = STRBUF_INIT;

  pthread_mutex_lock(&p->lock);
  while (!p->ticker_stop) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 100000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&p->ticker_wake, &p->lock, &ts);
    if (!p->ticker_stop && any_running(p)) {
      tty_refresh(p, &out);
      emit(p, &out);
    }
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

static void ticker_start(struct progress *p)
{
  sigset_t all, old;

  /* The ticker must not take the signals meant for the build (SIGINT,
   * SIGCHLD): it inherits a mask that blocks them all. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  /* Without the thread the view is only redrawn on events: still correct. */
  p->ticker_running = pthread_create(&p->ticker, NULL, ticker_main, p) == 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void ticker_stop(struct progress *p)
{
  bool join;

  pthread_mutex_lock(&p->lock);
  join = p->ticker_running;
  p->ticker_running = false;
  p->ticker_stop = true;
  pthread_cond_signal(&p->ticker_wake);
  pthread_mutex_unlock(&p->lock);
  if (join)
    pthread_join(p->ticker, NULL);
}

/* ---- the summary of failed steps ---- */

static void error_summary(struct progress *p, struct strbuf *out)
{
  for (size_t i = 0; i < p->nshown; i++) {
    const struct progress_step *s = p->shown[i];
    if (s->state != STEP_ERROR)
      continue;
    strbuf_addf(out, "------\n > %s:\n", s->name);
    for (size_t k = 0; k < s->keep_n; k++) {
      const struct step_line *l =
          &s->keep[(s->keep_next + PROGRESS_KEEP_LINES - s->keep_n + k) %
                   PROGRESS_KEEP_LINES];
      add_log_time(out, l->ts);
      if (l->len) {
        strbuf_addch(out, ' ');
        strbuf_add(out, l->text, l->len);
      }
      strbuf_addch(out, '\n');
    }
    strbuf_addstr(out, "------\n");
  }
}

/* ---- the API ---- */

struct progress *progress_new(enum progress_mode mode, int fd)
{
  struct progress *p = xcalloc(1, sizeof(*p));
  pthread_condattr_t attr;
  const char *no_color = getenv("NO_COLOR");

  pthread_mutex_init(&p->lock, NULL);
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&p->ticker_wake, &attr);
  pthread_condattr_destroy(&attr);
  p->fd = fd;
  p->clock = clock_monotonic;
  p->mode = resolve_mode(mode, fd);
  p->color = !(no_color && *no_color);
  /* Into a file or a pipe, frames on a timer would only bloat it. */
  if (p->mode == PROGRESS_TTY && isatty(fd))
    ticker_start(p);
  return p;
}

enum progress_mode progress_get_mode(const struct progress *p)
{
  return p->mode;
}

void progress_set_clock(struct progress *p, progress_clock_fn fn, void *data)
{
  pthread_mutex_lock(&p->lock);
  p->clock = fn ? fn : clock_monotonic;
  p->clock_data = fn ? data : NULL;
  pthread_mutex_unlock(&p->lock);
}

static char *step_label(const char *stage, int index, int count, const char *text)
{
  struct strbuf sb = STRBUF_INIT;
  bool has_stage = stage && *stage;

  if (count > 0) {
    strbuf_addch(&sb, '[');
    if (has_stage)
      strbuf_addf(&sb, "%s ", stage);
    strbuf_addf(&sb, "%d/%d] ", index, count);
  } else if (has_stage) {
    strbuf_addf(&sb, "[%s] ", stage);
  }
  strbuf_addstr(&sb, text ? text : "");
  return strbuf_detach(&sb, NULL);
}

int progress_step_add(struct progress *p, const char *stage_name, int index, int count,
                      const char *text)
{
  cleanup_strbuf struct strbuf out = STRBUF_INIT;
  struct progress_step *s = xcalloc(1, sizeof(*s));
  int saved_errno, id;

  s->name = step_label(stage_name, index, count, text);
  strbuf_init(&s->partial, 0);
  saved_errno = progress_enter(p);
  if (p->nsteps >= INT32_MAX)
    cb_die("progress: too many steps");
  CB_GROW(p->steps, p->nsteps + 1, p->steps_alloc);
  p->steps[p->nsteps++] = s;
  id = (int)p->nsteps;
  tty_refresh(p, &out);
  progress_leave(p, &out, saved_errno);
  return id;
}

int progress_step_number(struct progress *p, int id)
{
  int saved_errno = progress_enter(p), number = step_get(p, id)->number;
  pthread_mutex_unlock(&p->lock);
  errno = saved_errno;
  return number;
}

void progress_step_start(struct progress *p, int id)
{
  cleanup_strbuf struct strbuf out = STRBUF_INIT;
  int saved_errno = progress_enter(p);

  step_begin(p, step_get(p, id), &out);
  tty_refresh(p, &out);
  progress_leave(p, &out, saved_errno);
}

void progress_step_note(struct progress *p, int id, const char *fmt, ...)
{
  cleanup_strbuf struct strbuf note = STRBUF_INIT;
  cleanup_strbuf struct strbuf out = STRBUF_INIT;
  struct progress_step *s;
  int saved_errno;
  va_list ap;

  va_start(ap, fmt);
  strbuf_vaddf(&note, fmt, ap);
  va_end(ap);

  saved_errno = progress_enter(p);
  s = step_get(p, id);
  if (p->mode == PROGRESS_PLAIN) {
    if (!s->number) {
      strvec_push(&s->notes, note.buf);
    } else {
      plain_open(p, s, &out);
      plain_add_lines(&out, s->number, "", note.buf);
      plain_close_if_ended(p, s);
    }
  }
  progress_leave(p, &out, saved_errno);
}

void progress_step_output(struct progress *p, int id, const char *data, size_t len)
{
  cleanup_strbuf struct strbuf out = STRBUF_INIT;
  int saved_errno = progress_enter(p);
  struct progress_step *s = step_get(p, id);

  step_begin(p, s, &out);
  step_feed(p, s, data, len, &out);
  plain_close_if_ended(p, s);
  tty_refresh(p, &out);
  progress_leave(p, &out, saved_errno);
}

static void progress_end(struct progress *p, int id, enum step_state state, const char *msg)
{
  cleanup_strbuf struct strbuf out = STRBUF_INIT;
  int saved_errno = progress_enter(p);

  step_end(p, step_get(p, id), state, msg, &out);
  tty_refresh(p, &out);
  progress_leave(p, &out, saved_errno);
}

void progress_step_done(struct progress *p, int id)
{
  progress_end(p, id, STEP_DONE, NULL);
}

void progress_step_cached(struct progress *p, int id)
{
  progress_end(p, id, STEP_CACHED, NULL);
}

void progress_step_error(struct progress *p, int id, const char *fmt, ...)
{
  cleanup_strbuf struct strbuf msg = STRBUF_INIT;
  va_list ap;

  va_start(ap, fmt);
  strbuf_vaddf(&msg, fmt, ap);
  va_end(ap);
  progress_end(p, id, STEP_ERROR, msg.buf);
}

void progress_finish(struct progress *p)
{
  cleanup_strbuf struct strbuf out = STRBUF_INIT;
  int saved_errno;

  /* Joined before taking the lock: the ticker needs it to see the stop. */
  ticker_stop(p);
  saved_errno = progress_enter(p);
  if (!p->finished) {
    p->finished = true;
    for (size_t i = 0; i < p->nshown; i++)
      if (p->shown[i]->state == STEP_RUNNING)
        step_end(p, p->shown[i], STEP_CANCELED, NULL, &out);
    if (p->mode == PROGRESS_TTY && (p->drawn || p->nshown))
      tty_draw(p, &out, true);
    error_summary(p, &out);
  }
  progress_leave(p, &out, saved_errno);
}

void progress_free(struct progress *p)
{
  if (p == NULL)
    return;
  progress_finish(p);
  for (size_t i = 0; i < p->nsteps; i++) {
    struct progress_step *s = p->steps[i];
    free(s->name);
    strvec_clear(&s->notes);
    strbuf_release(&s->partial);
    for (size_t k = 0; k < PROGRESS_KEEP_LINES; k++)
      free(s->keep[k].text);
    free(s);
  }
  free(p->steps);
  free(p->shown);
  pthread_cond_destroy(&p->ticker_wake);
  pthread_mutex_destroy(&p->lock);
  free(p);
}
