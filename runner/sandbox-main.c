/*
 * cbuild-sandbox: the init of one RUN step (runner-internal.h).
 *
 * runner_run() starts it as PID 1 of new namespaces, with the encoded
 * configuration on RUNNER_FD_CONFIG and the message pipe, the go socket,
 * the output pipe and perhaps a network namespace on the descriptors after
 * it.  It is linked statically and carried inside cbuild: not a program
 * for people to run.
 */
#include "runner-internal.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#define CONFIG_MAX (64 << 20)

int main(int argc, char **argv)
{
  struct strbuf buf = STRBUF_INIT;
  struct runner_setup s;
  struct runner_config c;
  struct cb_error err;
  char chunk[16384];
  ssize_t n;

  if (argc != 2 || strcmp(argv[1], RUNNER_SANDBOX_ARG) != 0) {
    fprintf(stderr, "cbuild-sandbox: started by cbuild only\n");
    return 2;
  }
  memset(&s, 0, sizeof(s));
  s.msgfd = RUNNER_FD_MSG;
  s.gofd = RUNNER_FD_GO;
  s.outfd = RUNNER_FD_OUT;
  while ((n = cb_read_retry(RUNNER_FD_CONFIG, chunk, sizeof(chunk))) > 0) {
    strbuf_add(&buf, chunk, (size_t)n);
    if (buf.len > CONFIG_MAX) {
      n = -1;
      errno = EFBIG;
      break;
    }
  }
  if (n < 0) {
    cb_error_errno(&err, errno, "read the sandbox's configuration");
    runner_child_fail(&s, &err);
  }
  close(RUNNER_FD_CONFIG);
  if (runner_wire_decode(buf.buf, buf.len, &s, &c, &err) < 0)
    runner_child_fail(&s, &err);
  runner_sandbox_main(&s);
}
