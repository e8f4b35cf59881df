#include "unit.h"
#include "../../builder/progress-internal.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

/* A clock the tests move by hand; atomic because the reporter may read it
 * from its ticker thread. */
static uint64_t fake_ns;

static uint64_t fake_clock(void *data)
{
  return __atomic_load_n(&fake_ns, __ATOMIC_SEQ_CST);
}

static void at_ms(uint64_t ms)
{
  __atomic_store_n(&fake_ns, ms * 1000000, __ATOMIC_SEQ_CST);
}

/* A reporter writing into a temporary file, on the fake clock at 1.000s. */
static struct progress *new_captured(enum progress_mode mode, FILE **f)
{
  struct progress *p;
  *f = tmpfile();
  if (*f == NULL)
    cb_die("tmpfile failed");
  p = progress_new(mode, fileno(*f));
  progress_set_clock(p, fake_clock, NULL);
  at_ms(1000);
  return p;
}

static char *captured(FILE *f)
{
  struct strbuf sb = STRBUF_INIT;
  char buf[4096];
  off_t off = 0;
  ssize_t n;
  while ((n = pread(fileno(f), buf, sizeof(buf), off)) > 0) {
    strbuf_add(&sb, buf, (size_t)n);
    off += n;
  }
  return strbuf_detach(&sb, NULL);
}

static void output(struct progress *p, int id, const char *s)
{
  progress_step_output(p, id, s, strlen(s));
}

/* The text from the last tty frame on, escapes removed. */
static char *last_frame(const char *all)
{
  const char *start = all, *q;
  struct strbuf sb = STRBUF_INIT;
  while ((q = strstr(start + 1, "[+] Building")) != NULL)
    start = q;
  for (q = start; *q; q++) {
    if (*q == 0x1b) {
      q++;
      if (*q == '[') {
        while (q[1] && !(q[1] >= 0x40 && q[1] <= 0x7e))
          q++;
        q++;
      }
      if (!*q)
        break;
      continue;
    }
    if (*q != '\r')
      strbuf_addch(&sb, *q);
  }
  return strbuf_detach(&sb, NULL);
}

static size_t count_substr(const char *s, const char *needle)
{
  size_t n = 0;
  for (const char *q = s; (q = strstr(q, needle)) != NULL; q += strlen(needle))
    n++;
  return n;
}

/* Columns of each line of text (code points), the widest returned. */
static size_t widest_line(const char *text)
{
  size_t widest = 0, cur = 0;
  for (const char *q = text; *q; q++) {
    if (*q == '\n') {
      cur = 0;
      continue;
    }
    if (((unsigned char)*q & 0xc0) != 0x80)
      cur++;
    if (cur > widest)
      widest = cur;
  }
  return widest;
}

static void test_mode_parse(void)
{
  enum progress_mode m = PROGRESS_QUIET;
  CHECK_INT(progress_mode_parse("auto", &m), 0);
  CHECK_INT(m, PROGRESS_AUTO);
  CHECK_INT(progress_mode_parse("plain", &m), 0);
  CHECK_INT(m, PROGRESS_PLAIN);
  CHECK_INT(progress_mode_parse("tty", &m), 0);
  CHECK_INT(m, PROGRESS_TTY);
  CHECK_INT(progress_mode_parse("quiet", &m), 0);
  CHECK_INT(m, PROGRESS_QUIET);
  CHECK_INT(progress_mode_parse("PLAIN", &m), -1);
  CHECK_INT(progress_mode_parse("", &m), -1);
  CHECK_INT(progress_mode_parse("rawjson", &m), -1);
  CHECK_INT(progress_mode_parse(NULL, &m), -1);
  CHECK_INT(m, PROGRESS_QUIET);
  CHECK_STR(progress_mode_name(PROGRESS_TTY), "tty");
}

static void test_auto_mode(void)
{
  FILE *f = tmpfile();
  struct progress *p = progress_new(PROGRESS_AUTO, fileno(f));
  CHECK_INT(progress_get_mode(p), PROGRESS_PLAIN);
  progress_free(p);
  fclose(f);
}

static void test_plain_done(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_PLAIN, &f);
  cleanup_free char *got = NULL;
  int a = progress_step_add(p, "internal", 0, 0, "load build definition from Dockerfile");
  int b = progress_step_add(p, NULL, 0, 0, "exporting to image");
  int c = progress_step_add(p, NULL, 0, 0, "writing image");

  progress_step_start(p, a);
  at_ms(1300);
  progress_step_done(p, a);
  progress_step_start(p, b);
  at_ms(13760);
  progress_step_done(p, b);
  progress_step_start(p, c);
  at_ms(13800);
  progress_step_done(p, c);
  progress_free(p);
  got = captured(f);
  CHECK_STR(got, "#1 [internal] load build definition from Dockerfile\n"
                 "#1 DONE 0.3s\n"
                 "\n"
                 "#2 exporting to image\n"
                 "#2 DONE 12.5s\n"
                 "\n"
                 "#3 writing image\n"
                 "#3 DONE 0.0s\n");
  fclose(f);
}

static void test_plain_cached(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_PLAIN, &f);
  cleanup_free char *got = NULL;
  int a = progress_step_add(p, NULL, 1, 3, "FROM docker.io/library/alpine:3.19");
  int b = progress_step_add(p, NULL, 2, 3, "COPY . /app");
  int c = progress_step_add(p, NULL, 3, 3, "RUN make");

  progress_step_cached(p, a);
  progress_step_cached(p, b);
  progress_step_cached(p, b); /* a second end is ignored */
  progress_free(p);           /* c never ran: never shown */
  got = captured(f);
  CHECK_STR(got, "#1 [1/3] FROM docker.io/library/alpine:3.19\n"
                 "#1 CACHED\n"
                 "\n"
                 "#2 [2/3] COPY . /app\n"
                 "#2 CACHED\n");
  (void)c;
  fclose(f);
}

/* #N follows the order of appearance, not of adding. */
static void test_numbering(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_PLAIN, &f);
  cleanup_free char *got = NULL;
  int a = progress_step_add(p, "build", 1, 2, "RUN make");
  int b = progress_step_add(p, "build", 2, 2, "RUN make install");

  CHECK_INT(a, 1);
  CHECK_INT(b, 2);
  CHECK_INT(progress_step_number(p, b), 0);
  progress_step_start(p, b);
  CHECK_INT(progress_step_number(p, b), 1);
  progress_step_done(p, b);
  progress_step_done(p, a); /* done before start starts it */
  CHECK_INT(progress_step_number(p, a), 2);
  progress_free(p);
  got = captured(f);
  CHECK_STR(got, "#1 [build 2/2] RUN make install\n"
                 "#1 DONE 0.0s\n"
                 "\n"
                 "#2 [build 1/2] RUN make\n"
                 "#2 DONE 0.0s\n");
  fclose(f);
}

static void test_plain_error(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_PLAIN, &f);
  cleanup_free char *got = NULL;
  int a = progress_step_add(p, "build", 2, 4, "RUN make");

  progress_step_start(p, a);
  at_ms(1412);
  output(p, a, "compiling...\n");
  at_ms(1530);
  output(p, a, "make: *** [all] Error 2");
  at_ms(1600);
  progress_step_error(p, a, "process \"%s\" did not complete successfully: exit code: %d",
                      "/bin/sh -c make", 2);
  progress_finish(p);
  progress_finish(p); /* once only */
  progress_free(p);
  got = captured(f);
  CHECK_STR(got,
            "#1 [build 2/4] RUN make\n"
            "#1 0.412 compiling...\n"
            "#1 0.530 make: *** [all] Error 2\n"
            "#1 ERROR: process \"/bin/sh -c make\" did not complete successfully: "
            "exit code: 2\n"
            "------\n"
            " > [build 2/4] RUN make:\n"
            "0.412 compiling...\n"
            "0.530 make: *** [all] Error 2\n"
            "------\n");
  fclose(f);
}

static void test_plain_partial_lines(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_PLAIN, &f);
  cleanup_free char *mid = NULL;
  cleanup_free char *got = NULL;
  int a = progress_step_add(p, NULL, 1, 1, "RUN ./build.sh");

  progress_step_start(p, a);
  at_ms(1100);
  output(p, a, "hel");
  at_ms(1200);
  output(p, a, "lo\nwor");
  at_ms(1300);
  output(p, a, "ld\n");
  at_ms(1400);
  output(p, a, "fetch 10%\r");
  at_ms(1500);
  output(p, a, "fetch 50%\rfetch 100%");
  at_ms(1600);
  output(p, a, "\r\n");
  at_ms(1700);
  output(p, a, "a\r\nb\n\n");
  at_ms(1800);
  output(p, a, "tail");
  mid = captured(f);
  CHECK(strstr(mid, "tail") == NULL);
  at_ms(2000);
  progress_step_done(p, a);
  progress_free(p);
  got = captured(f);
  CHECK_STR(got, "#1 [1/1] RUN ./build.sh\n"
                 "#1 0.100 hello\n"
                 "#1 0.200 world\n"
                 "#1 0.500 fetch 100%\n"
                 "#1 0.700 a\n"
                 "#1 0.700 b\n"
                 "#1 0.700\n"
                 "#1 0.800 tail\n"
                 "#1 DONE 1.0s\n");
  fclose(f);
}

static void test_plain_log_times(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_PLAIN, &f);
  cleanup_free char *got = NULL;
  int a = progress_step_add(p, NULL, 1, 1, "RUN ./slow");

  progress_step_start(p, a);
  at_ms(1000 + 9876);
  output(p, a, "one\n");
  at_ms(1000 + 12500);
  output(p, a, "two\n");
  at_ms(1000 + 123400);
  output(p, a, "three\n");
  progress_step_done(p, a);
  progress_free(p);
  got = captured(f);
  CHECK_STR(got, "#1 [1/1] RUN ./slow\n"
                 "#1 9.876 one\n"
                 "#1 12.50 two\n"
                 "#1 123.4 three\n"
                 "#1 DONE 123.4s\n");
  fclose(f);
}

static void test_plain_interleaved(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_PLAIN, &f);
  cleanup_free char *got = NULL;
  int a = progress_step_add(p, "build", 1, 2, "RUN make");
  int b = progress_step_add(p, "test", 1, 1, "RUN ./check");

  progress_step_start(p, a);
  at_ms(1100);
  output(p, a, "a1\n");
  at_ms(1200);
  progress_step_start(p, b);
  at_ms(1250);
  output(p, b, "b1\n");
  at_ms(1300);
  output(p, a, "a2\n");
  at_ms(1400);
  progress_step_done(p, a);
  at_ms(1500);
  output(p, b, "b2\n");
  at_ms(1700);
  progress_step_done(p, b);
  progress_free(p);
  got = captured(f);
  CHECK_STR(got, "#1 [build 1/2] RUN make\n"
                 "#1 0.100 a1\n"
                 "#1 ...\n"
                 "\n"
                 "#2 [test 1/1] RUN ./check\n"
                 "#2 0.050 b1\n"
                 "#2 ...\n"
                 "\n"
                 "#1 [build 1/2] RUN make\n"
                 "#1 0.300 a2\n"
                 "#1 DONE 0.4s\n"
                 "\n"
                 "#2 [test 1/1] RUN ./check\n"
                 "#2 0.300 b2\n"
                 "#2 DONE 0.5s\n");
  fclose(f);
}

static void test_plain_notes(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_PLAIN, &f);
  cleanup_free char *got = NULL;
  int a = progress_step_add(p, "build", 3, 4, "RUN make");
  int b = progress_step_add(p, "build", 4, 4, "COPY out /");

  progress_step_note(p, a, "cache miss: \"%s\" changed", "src/main.c");
  progress_step_start(p, a);
  progress_step_note(p, a, "first\nsecond");
  at_ms(1200);
  progress_step_done(p, a);
  progress_step_note(p, b, "cache hit");
  progress_step_cached(p, b);
  progress_free(p);
  got = captured(f);
  CHECK_STR(got, "#1 [build 3/4] RUN make\n"
                 "#1 cache miss: \"src/main.c\" changed\n"
                 "#1 first\n"
                 "#1 second\n"
                 "#1 DONE 0.2s\n"
                 "\n"
                 "#2 [build 4/4] COPY out /\n"
                 "#2 cache hit\n"
                 "#2 CACHED\n");
  fclose(f);
}

/* Steps still running at the end are closed as canceled. */
static void test_plain_canceled(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_PLAIN, &f);
  cleanup_free char *got = NULL;
  int a = progress_step_add(p, "a", 1, 1, "RUN sleep 100");
  int b = progress_step_add(p, "b", 1, 1, "RUN false");

  progress_step_start(p, a);
  output(p, a, "waiting");
  progress_step_start(p, b);
  progress_step_error(p, b, "exit code: 1");
  progress_finish(p);
  got = captured(f);
  CHECK_STR(got, "#1 [a 1/1] RUN sleep 100\n"
                 "#1 ...\n"
                 "\n"
                 "#2 [b 1/1] RUN false\n"
                 "#2 ERROR: exit code: 1\n"
                 "\n"
                 "#1 [a 1/1] RUN sleep 100\n"
                 "#1 0.000 waiting\n"
                 "#1 CANCELED\n"
                 "------\n"
                 " > [b 1/1] RUN false:\n"
                 "------\n");
  progress_free(p);
  fclose(f);
}

static void test_quiet(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_QUIET, &f);
  cleanup_free char *got = NULL;
  int a = progress_step_add(p, NULL, 1, 2, "RUN echo hi");
  int b = progress_step_add(p, NULL, 2, 2, "RUN false");

  progress_step_note(p, a, "a note");
  progress_step_start(p, a);
  output(p, a, "hi\n");
  progress_step_done(p, a);
  got = captured(f);
  CHECK_STR(got, "");
  free(got);

  progress_step_start(p, b);
  at_ms(1100);
  output(p, b, "boom\n");
  progress_step_error(p, b, "exit code: 1");
  progress_free(p);
  got = captured(f);
  CHECK_STR(got, "------\n"
                 " > [2/2] RUN false:\n"
                 "0.100 boom\n"
                 "------\n");
  fclose(f);
}

static void test_tty_final_view(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_TTY, &f);
  cleanup_free char *all = NULL;
  cleanup_free char *frame = NULL;
  cleanup_strbuf struct strbuf line = STRBUF_INIT;
  int a = progress_step_add(p, NULL, 1, 3, "FROM alpine");
  int b = progress_step_add(p, NULL, 2, 3, "COPY . /app");
  int c = progress_step_add(p, NULL, 3, 3, "RUN make");
  int d = progress_step_add(p, "other", 1, 1, "RUN never");

  CHECK_INT(progress_get_mode(p), PROGRESS_TTY);
  progress_step_cached(p, a);
  progress_step_start(p, b);
  at_ms(1300);
  progress_step_done(p, b);
  progress_step_start(p, c);
  at_ms(1500);
  output(p, c, "compiling...\n");
  at_ms(2300);
  progress_step_error(p, c, "exit code: 2");
  progress_finish(p);
  all = captured(f);
  frame = last_frame(all);

  CHECK(strstr(all, "\x1b[") != NULL);
  CHECK_CONTAINS(frame, "[+] Building 1.3s (3/4)\n");
  CHECK(strstr(frame, "FINISHED") == NULL);
  CHECK_CONTAINS(frame, " => CACHED [1/3] FROM alpine ");
  CHECK_CONTAINS(frame, " => [2/3] COPY . /app ");
  CHECK_CONTAINS(frame, " 0.3s\n");
  CHECK_CONTAINS(frame, " => ERROR [3/3] RUN make ");
  CHECK_CONTAINS(frame, " 1.0s\n");
  CHECK(strstr(frame, "RUN never") == NULL);
  CHECK_CONTAINS(frame, "------\n"
                        " > [3/3] RUN make:\n"
                        "0.200 compiling...\n"
                        "------\n");
  /* step lines are 80 columns less one, the timer at the right */
  strbuf_addstr(&line, "\n => [2/3] COPY . /app");
  while (line.len < 1 + 79 - strlen(" 0.3s"))
    strbuf_addch(&line, ' ');
  strbuf_addstr(&line, " 0.3s\n");
  CHECK_CONTAINS(frame, line.buf);
  CHECK_INT(widest_line(frame), 79);
  progress_free(p);
  (void)d;
  fclose(f);
}

static void test_tty_live_tail(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_TTY, &f);
  cleanup_free char *all = NULL;
  cleanup_free char *frame = NULL;
  int a = progress_step_add(p, "build", 1, 1, "RUN make");

  progress_step_start(p, a); /* frame 1 */
  at_ms(1010);
  output(p, a, "line1\nline2\n"); /* too soon to redraw */
  at_ms(1200);
  output(p, a, "line3\n\x1b[1mbold\x1b[0m\t50%"); /* frame 2 */
  all = captured(f);
  CHECK_INT(count_substr(all, "[+] Building"), 2);
  CHECK(strstr(all, "\x1b[2m => => # line1") != NULL);
  frame = last_frame(all);
  CHECK_CONTAINS(frame, "[+] Building 0.2s (0/1)\n");
  CHECK_CONTAINS(frame, " => [build 1/1] RUN make ");
  CHECK_CONTAINS(frame, " 0.2s\n => => # line1\n => => # line2\n => => # line3\n"
                        " => => # bold 50%\n");
  free(all);
  free(frame);

  at_ms(1250);
  output(p, a, "x"); /* rate-limited */
  at_ms(1290);
  progress_step_done(p, a); /* also within 100ms of frame 2 */
  progress_finish(p); /* the final frame, always */
  all = captured(f);
  CHECK_INT(count_substr(all, "[+] Building"), 3);
  frame = last_frame(all);
  CHECK_CONTAINS(frame, "[+] Building 0.3s (1/1) FINISHED\n");
  CHECK_CONTAINS(frame, " => [build 1/1] RUN make ");
  CHECK(strstr(frame, "=> =>") == NULL);
  progress_free(p);
  fclose(f);
}

/* Long and multi-byte names are cut to the width, at code points. */
static void test_tty_width(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_TTY, &f);
  cleanup_free char *all = NULL;
  cleanup_free char *frame = NULL;
  struct strbuf name = STRBUF_INIT;
  int a, b;

  for (int i = 0; i < 100; i++)
    strbuf_addstr(&name, "\xc3\xa9t\xc3\xa9 ");
  a = progress_step_add(p, NULL, 1, 2, name.buf);
  b = progress_step_add(p, NULL, 2, 2, "RUN echo");
  progress_step_start(p, a);
  output(p, a, name.buf);
  output(p, a, "\n");
  progress_step_done(p, a);
  progress_step_start(p, b);
  at_ms(1500);
  output(p, b, name.buf); /* the partial line shows in the tail */
  all = captured(f);
  frame = last_frame(all);
  CHECK_INT(widest_line(frame), 79);
  CHECK_CONTAINS(frame, " => => # \xc3\xa9t\xc3\xa9 ");
  free(frame);
  progress_finish(p);
  free(all);
  all = captured(f);
  frame = last_frame(all);
  CHECK_INT(widest_line(frame), 79);
  CHECK_CONTAINS(frame, " => CANCELED [2/2] RUN echo ");
  strbuf_release(&name);
  progress_free(p);
  fclose(f);
}

/* On a real terminal: auto picks tty, and its width is obeyed. */
static void test_tty_pty(void)
{
  struct winsize ws = { .ws_row = 24, .ws_col = 40 };
  cleanup_close int master = posix_openpt(O_RDWR | O_NOCTTY);
  cleanup_close int slave = -1;
  struct strbuf got = STRBUF_INIT;
  cleanup_free char *frame = NULL;
  const char *term = getenv("TERM");
  cleanup_free char *saved_term = term ? xstrdup(term) : NULL;
  struct progress *p;
  struct pollfd pfd;
  char buf[4096];
  ssize_t n;
  int a;

  if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0) {
    printf("# no pty: skipped\n");
    return;
  }
  slave = open(ptsname(master), O_RDWR | O_NOCTTY);
  if (slave < 0) {
    printf("# no pty: skipped\n");
    return;
  }
  CHECK_INT(ioctl(slave, TIOCSWINSZ, &ws), 0);

  setenv("TERM", "xterm", 1);
  p = progress_new(PROGRESS_AUTO, slave);
  CHECK_INT(progress_get_mode(p), PROGRESS_TTY);
  a = progress_step_add(p, "build", 1, 1, "RUN a rather long command line that will not fit");
  progress_step_start(p, a);
  output(p, a, "hello\n");
  progress_step_done(p, a);
  progress_free(p);
  if (saved_term)
    setenv("TERM", saved_term, 1);
  else
    unsetenv("TERM");

  pfd.fd = master;
  pfd.events = POLLIN;
  while (poll(&pfd, 1, 300) > 0 && (n = read(master, buf, sizeof(buf))) > 0)
    strbuf_add(&got, buf, (size_t)n);
  frame = last_frame(got.buf);
  CHECK_CONTAINS(frame, "FINISHED");
  CHECK_CONTAINS(frame, " => [build 1/1] RUN a rather lon");
  CHECK_INT(widest_line(frame), 39);
  strbuf_release(&got);
}

struct writer {
  struct progress *p;
  int id;
  int tag;
};

static void *writer_main(void *arg)
{
  struct writer *w = arg;
  char line[64];
  progress_step_start(w->p, w->id);
  for (int j = 0; j < 200; j++) {
    int n = snprintf(line, sizeof(line), "w%d line %d\n", w->tag, j);
    /* in two pieces, so that partial lines are exercised too */
    progress_step_output(w->p, w->id, line, 3);
    progress_step_output(w->p, w->id, line + 3, (size_t)n - 3);
  }
  progress_step_done(w->p, w->id);
  return NULL;
}

/* Parallel stages: every line whole, each step's lines in order. */
static void test_threads(void)
{
  FILE *f;
  struct progress *p = new_captured(PROGRESS_PLAIN, &f);
  cleanup_free char *got = NULL;
  struct writer w[4];
  pthread_t t[4];
  int next[4] = { 0 }, nums[4], done = 0;
  char *save = NULL;

  for (int i = 0; i < 4; i++) {
    w[i].p = p;
    w[i].tag = i;
    w[i].id = progress_step_add(p, "stage", i + 1, 4, "RUN work");
  }
  for (int i = 0; i < 4; i++)
    pthread_create(&t[i], NULL, writer_main, &w[i]);
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    nums[i] = progress_step_number(p, w[i].id);
  }
  progress_free(p);
  got = captured(f);

  for (char *line = strtok_r(got, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    int num, tag, j, len = 0;
    if (sscanf(line, "#%d 0.000 w%d line %d%n", &num, &tag, &j, &len) == 3 &&
        line[len] == '\0') {
      CHECK(tag >= 0 && tag < 4);
      if (tag < 0 || tag >= 4)
        continue;
      CHECK_INT(num, nums[tag]);
      CHECK_INT(j, next[tag]);
      next[tag] = j + 1;
    } else if (strstr(line, " DONE 0.0s")) {
      done++;
    } else {
      CHECK(strstr(line, " [stage ") || strstr(line, " ..."));
    }
  }
  for (int i = 0; i < 4; i++)
    CHECK_INT(next[i], 200);
  CHECK_INT(done, 4);
  fclose(f);
}

static const struct unit_test tests[] = {
  { "mode_parse", test_mode_parse },
  { "auto_mode", test_auto_mode },
  { "plain_done", test_plain_done },
  { "plain_cached", test_plain_cached },
  { "numbering", test_numbering },
  { "plain_error", test_plain_error },
  { "plain_partial_lines", test_plain_partial_lines },
  { "plain_log_times", test_plain_log_times },
  { "plain_interleaved", test_plain_interleaved },
  { "plain_notes", test_plain_notes },
  { "plain_canceled", test_plain_canceled },
  { "quiet", test_quiet },
  { "tty_final_view", test_tty_final_view },
  { "tty_live_tail", test_tty_live_tail },
  { "tty_width", test_tty_width },
  { "tty_pty", test_tty_pty },
  { "threads", test_threads },
};
UNIT_MAIN(tests)
