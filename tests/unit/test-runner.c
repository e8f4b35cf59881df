/*
 * The RUN sandbox, tested by running real commands in it: a busybox
 * rootfs made here from Debian's busybox-static, checked from inside.
 *
 * As root, the same binary also runs itself as an unprivileged user
 * (cbuildtest, made with useradd if missing, which gives it a subuid
 * range) with --rootless, so that the rootless sandbox meets the same
 * tests; tests that need root check the error instead.
 */
#include "unit.h"
#include "../../runner/runner.h"
#include "../../runner/runner-internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define TEST_USER "cbuildtest"

static char *top;   /* this run's temporary directory */
static char *base;  /* the busybox lowerdir */
static bool have_busybox;

/* ---- fixture ---- */

static void write_text(const char *path, const char *s)
{
  struct cb_error err;
  if (runner_write_file(path, s, &err) < 0)
    unit_fail(__FILE__, __LINE__, "%s", err.msg);
}

static void mkdirs(const char *path, mode_t mode)
{
  cleanup_free char *copy = xstrdup(path);
  for (char *p = copy + 1; *p; p++) {
    if (*p == '/') {
      *p = '\0';
      mkdir(copy, mode);
      *p = '/';
    }
  }
  mkdir(copy, mode);
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
  cleanup_close int in = open(from, O_RDONLY | O_CLOEXEC);
  cleanup_close int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  char buf[65536];
  ssize_t n;
  if (in < 0 || out < 0)
    return -1;
  while ((n = cb_read_retry(in, buf, sizeof(buf))) > 0)
    if (cb_write_all(out, buf, (size_t)n) < 0)
      return -1;
  return n < 0 ? -1 : fchmod(out, mode);
}

/* base/: bin/busybox and its applets, etc/passwd and etc/group, and a
 * file and a directory for the whiteout tests.  No /proc, /dev, /sys:
 * the sandbox makes them as mount stubs. */
static bool make_base(void)
{
  cleanup_free char *bin = xasprintf("%s/bin", base);
  cleanup_free char *bb = xasprintf("%s/bin/busybox", base);
  cleanup_free char *etc = xasprintf("%s/etc", base);
  cleanup_free char *p = NULL;
  FILE *list;
  char line[256];

  mkdirs(bin, 0755);
  mkdirs(etc, 0755);
  if (copy_file("/bin/busybox", bb, 0755) < 0)
    return false;
  list = popen("/bin/busybox --list", "r");
  if (!list)
    return false;
  while (fgets(line, sizeof(line), list)) {
    cleanup_free char *link = NULL;
    line[strcspn(line, "\n")] = '\0';
    if (!*line || strcmp(line, "busybox") == 0)
      continue;
    link = xasprintf("%s/%s", bin, line);
    if (symlink("busybox", link) < 0 && errno != EEXIST) {
      pclose(list);
      return false;
    }
  }
  pclose(list);
  p = xasprintf("%s/passwd", etc);
  write_text(p, "root:x:0:0:root:/root:/bin/sh\n"
                "alice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
                "bob:x:1001:1001::/home/bob:/bin/sh\n");
  free(p);
  p = xasprintf("%s/group", etc);
  write_text(p, "root:x:0:\nalice:x:1000:\nbob:x:1001:\naudio:x:29:bob,alice\n"
                "staff:x:50:alice\nnobody:x:65534:\n");
  free(p);
  p = xasprintf("%s/data/sub", base);
  mkdirs(p, 0755);
  free(p);
  p = xasprintf("%s/data/old", base);
  write_text(p, "old\n");
  free(p);
  p = xasprintf("%s/data/sub/inner", base);
  write_text(p, "inner\n");
  return true;
}

static void fixture_setup(void)
{
  const char *tmp = getenv("TMPDIR");
  top = xasprintf("%s/cbuild-test-runner-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(top))
    cb_die("mkdtemp: %s", strerror(errno));
  chmod(top, 0755);
  base = xasprintf("%s/base", top);
  have_busybox = access("/bin/busybox", X_OK) == 0 && make_base();
}

static void fixture_teardown(void)
{
  cb_remove_tree(AT_FDCWD, top);
  free(top);
  free(base);
}

/* ---- one sandboxed step ---- */

struct step {
  struct runner_config c;
  struct runner_result res;
  struct cb_error err;
  struct strbuf out;
  const char *argv[4];
  const char *lowers[1];
  char *dir, *upper, *work;
  int rc;
};

static void collect(void *data, const char *buf, size_t n)
{
  strbuf_add(data, buf, n);
}

/* A step running `sh -c script` on base, with --network=none (the tests
 * of the default network ask for it). */
static void step_init(struct step *s, const char *script)
{
  static int counter;
  memset(s, 0, sizeof(*s));
  strbuf_init(&s->out, 0);
  s->dir = xasprintf("%s/step%d", top, ++counter);
  s->upper = xasprintf("%s/upper", s->dir);
  s->work = xasprintf("%s/work", s->dir);
  mkdirs(s->upper, 0755);
  mkdirs(s->work, 0755);
  s->argv[0] = "/bin/sh";
  s->argv[1] = "-c";
  s->argv[2] = script;
  s->lowers[0] = base;
  s->c.lowerdirs = s->lowers;
  s->c.n_lowerdirs = 1;
  s->c.upperdir = s->upper;
  s->c.workdir = s->work;
  s->c.argv = s->argv;
  s->c.cwd = "/";
  s->c.user = "";
  s->c.network = RUNNER_NET_NONE;
  s->c.output = collect;
  s->c.output_data = &s->out;
}

static int step_run(struct step *s)
{
  s->rc = runner_run(&s->c, &s->res, &s->err);
  return s->rc;
}

static void step_release(struct step *s)
{
  runner_result_release(&s->res);
  strbuf_release(&s->out);
  cb_remove_tree(AT_FDCWD, s->dir);
  free(s->dir);
  free(s->upper);
  free(s->work);
}

/* Run script and expect it to exit 0. */
#define RUN_OK(s)                                                              \
  do {                                                                         \
    CHECK_INT(step_run(s), 0);                                                 \
    if ((s)->rc < 0)                                                           \
      printf("# runner_run: %s\n", (s)->err.msg);                              \
    CHECK_INT((s)->res.exit_status, 0);                                        \
    if ((s)->res.exit_status != 0)                                             \
      printf("# output: %s\n", (s)->out.buf);                                  \
  } while (0)

static bool upper_has(const struct step *s, const char *rel, struct stat *st)
{
  cleanup_free char *p = xasprintf("%s/%s", s->upper, rel);
  struct stat tmp;
  return lstat(p, st ? st : &tmp) == 0;
}

#define NEED_BUSYBOX()                                                         \
  do {                                                                         \
    if (!have_busybox) {                                                       \
      unit_fail(__FILE__, __LINE__, "no busybox base (install busybox-static)"); \
      return;                                                                  \
    }                                                                          \
  } while (0)

/* ---- helpers for the tests ---- */

static bool rootless(void)
{
  return runner_rootless();
}

/* The value of "Key:" in the output (the rest of its line). */
static char *field(const char *out, const char *key)
{
  const char *p = strstr(out, key);
  size_t n;
  if (!p)
    return xstrdup("");
  p += strlen(key);
  while (*p == ' ' || *p == '\t')
    p++;
  n = strcspn(p, "\n");
  while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
    n--;
  return xstrndup(p, n);
}

static int count_lines_with(const char *out, const char *needle)
{
  int n = 0;
  for (const char *p = out; (p = strstr(p, needle)) != NULL; p += strlen(needle))
    n++;
  return n;
}

static char *unique_name(const char *prefix)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return xasprintf("%s-%ld-%ld", prefix, (long)getpid(), (long)ts.tv_nsec);
}

/* Whether slirp4netns can work here: rootless, it needs /dev/net/tun. */
static bool slirp_usable(void)
{
  return access("/usr/bin/slirp4netns", X_OK) == 0 &&
         (!rootless() || access("/dev/net/tun", R_OK | W_OK) == 0);
}

/* ---- pure logic ---- */

static void test_user_resolve(void)
{
  cleanup_free char *pw = xasprintf("%s/passwd", top);
  cleanup_free char *gr = xasprintf("%s/group", top);
  cleanup_free char *none = xasprintf("%s/no-such-file", top);
  struct runner_user u;
  struct cb_error err;

  write_text(pw, "# comment\nroot:x:0:0:root:/root:/bin/sh\n"
                 "alice:x:1000:1000:Alice:/home/alice:/bin/sh\nnohome:x:7:8:::\n");
  write_text(gr, "root:x:0:\nalice:x:1000:\naudio:x:29:bob, alice\nstaff:x:50:alice\n"
                 "wheel:x:10:root\nemptyg:x:11:");

  CHECK_INT(runner_user_resolve("", pw, gr, &u, &err), 0);
  CHECK_INT(u.uid, 0);
  CHECK_INT(u.gid, 0);
  CHECK_STR(u.home, "/root");
  CHECK_INT(u.n_groups, 1);
  CHECK_INT(u.n_groups ? u.groups[0] : 0, 10);
  runner_user_release(&u);

  CHECK_INT(runner_user_resolve("alice", pw, gr, &u, &err), 0);
  CHECK_INT(u.uid, 1000);
  CHECK_INT(u.gid, 1000);
  CHECK_STR(u.home, "/home/alice");
  CHECK_INT(u.n_groups, 2);
  CHECK(u.n_groups == 2 && u.groups[0] == 29 && u.groups[1] == 50);
  runner_user_release(&u);

  CHECK_INT(runner_user_resolve("alice:staff", pw, gr, &u, &err), 0);
  CHECK_INT(u.gid, 50);
  runner_user_release(&u);

  CHECK_INT(runner_user_resolve("1000:7", pw, gr, &u, &err), 0);
  CHECK_INT(u.uid, 1000);
  CHECK_INT(u.gid, 7);
  CHECK_INT(u.n_groups, 2);
  runner_user_release(&u);

  /* A number need not exist; its home is then "/". */
  CHECK_INT(runner_user_resolve("4242", pw, gr, &u, &err), 0);
  CHECK_INT(u.uid, 4242);
  CHECK_INT(u.gid, 0);
  CHECK_STR(u.home, "/");
  CHECK_INT(u.n_groups, 0);
  runner_user_release(&u);

  CHECK_INT(runner_user_resolve("nohome", pw, gr, &u, &err), 0);
  CHECK_INT(u.uid, 7);
  CHECK_INT(u.gid, 8);
  CHECK_STR(u.home, "/");
  runner_user_release(&u);

  CHECK_INT(runner_user_resolve("mallory", pw, gr, &u, &err), -1);
  CHECK_STR(err.msg, "unable to find user mallory: no matching entries in passwd file");
  CHECK_INT(runner_user_resolve("alice:nogroup", pw, gr, &u, &err), -1);
  CHECK_STR(err.msg, "unable to find group nogroup: no matching entries in group file");

  /* No passwd at all: root still works, names do not. */
  CHECK_INT(runner_user_resolve("", none, none, &u, &err), 0);
  CHECK_STR(u.home, "/root");
  runner_user_release(&u);
  CHECK_INT(runner_user_resolve("alice", none, none, &u, &err), -1);
}

static void test_env_build(void)
{
  static const char *const env1[] = { "FOO=bar", "PATH=/x", NULL };
  struct runner_config c;
  struct runner_user u = { .uid = 5, .home = (char *)"/home/u" };
  struct strvec env = STRVEC_INIT;
  memset(&c, 0, sizeof(c));
  c.env = env1;
  runner_env_build(&c, "h1", &u, &env);
  CHECK_INT(env.n, 4);
  CHECK_STR(env.v[0], "FOO=bar");
  CHECK_STR(env.v[1], "PATH=/x");
  CHECK_STR(env.v[2], "HOSTNAME=h1");
  CHECK_STR(env.v[3], "HOME=/home/u");
  strvec_clear(&env);
  c.env = NULL;
  runner_env_build(&c, "h2", &u, &env);
  CHECK_STR(env.v[0], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  strvec_clear(&env);
}

/* The configuration cbuild-sandbox gets: every field survives the trip,
 * and a cut or altered buffer is refused without reading past its end. */
static void test_wire(void)
{
  static const char *const lowers[] = { "/l/2", "/l/1" };
  static const char *const argv[] = { "/bin/sh", "-c", "echo hi", NULL };
  static const char *const env[] = { "A=1", "B=", NULL };
  static const char *const hide[] = { "x", "y/z" };
  static const char secret[] = { 's', 0, 'k', '\n' };
  static const unsigned char filter[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
  struct runner_mount mounts[2];
  struct runner_config c, dc;
  struct runner_setup s, ds;
  struct strbuf wire = STRBUF_INIT;
  struct cb_error err;

  memset(&c, 0, sizeof(c));
  memset(&s, 0, sizeof(s));
  memset(mounts, 0, sizeof(mounts));
  mounts[0] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = "src", .target = "/t",
                                     .readonly = true, .source_root = "/ctx", .hide = hide,
                                     .n_hide = 2, .upperdir = "/u", .workdir = "/w" };
  mounts[1] = (struct runner_mount){ .type = RUNNER_MOUNT_FILE, .target = "/run/secrets/k",
                                     .data = secret, .data_len = sizeof(secret), .uid = 7,
                                     .gid = 8, .mode = 0400, .size = 1LL << 40 };
  c.lowerdirs = lowers;
  c.n_lowerdirs = 2;
  c.upperdir = "/up";
  c.workdir = "/work";
  c.argv = argv;
  c.env = env;
  c.cwd = "/app";
  c.user = NULL;
  c.hostname = "box";
  c.network = RUNNER_NET_HOST;
  c.mounts = mounts;
  c.n_mounts = 2;
  s.c = &c;
  s.rootless = true;
  s.netns_fd = 42;
  s.hostname = "box";
  s.statedir = "/tmp/x";
  s.tmpdir = "/tmp/x/step";
  s.rootdir = "/tmp/x/root";
  s.etcdir = "/tmp/x/etc-0";
  s.seccomp = filter;
  s.seccomp_len = sizeof(filter);
  runner_wire_encode(&s, &wire);

  memset(&ds, 0, sizeof(ds));
  CHECK_INT(runner_wire_decode(wire.buf, wire.len, &ds, &dc, &err), 0);
  CHECK(ds.c == &dc);
  CHECK(ds.rootless && !ds.new_userns);
  CHECK_INT(ds.netns_fd, RUNNER_FD_NETNS);
  CHECK_STR(ds.rootdir, "/tmp/x/root");
  CHECK_STR(ds.etcdir, "/tmp/x/etc-0");
  CHECK_INT(ds.seccomp_len, sizeof(filter));
  CHECK(ds.seccomp && memcmp(ds.seccomp, filter, sizeof(filter)) == 0);
  CHECK_INT(dc.n_lowerdirs, 2);
  CHECK_STR(dc.lowerdirs[1], "/l/1");
  CHECK(dc.lowerdirs[2] == NULL);
  CHECK_STR(dc.argv[2], "echo hi");
  CHECK(dc.argv[3] == NULL);
  CHECK_STR(dc.env[1], "B=");
  CHECK(dc.user == NULL);
  CHECK_STR(dc.cwd, "/app");
  CHECK_INT(dc.network, RUNNER_NET_HOST);
  CHECK_INT(dc.n_mounts, 2);
  CHECK_STR(dc.mounts[0].source_root, "/ctx");
  CHECK_INT(dc.mounts[0].n_hide, 2);
  CHECK_STR(dc.mounts[0].hide[1], "y/z");
  CHECK(dc.mounts[0].readonly && dc.mounts[0].data == NULL);
  CHECK(dc.mounts[1].source == NULL);
  CHECK_INT(dc.mounts[1].data_len, sizeof(secret));
  CHECK(dc.mounts[1].data && memcmp(dc.mounts[1].data, secret, sizeof(secret)) == 0);
  CHECK_INT(dc.mounts[1].size, 1LL << 40);
  CHECK_INT(dc.mounts[1].mode, 0400);
  CHECK_INT(dc.mounts[1].gid, 8);
  runner_wire_release(&dc);

  /* Every prefix is refused, each from a copy of its own size (ASan sees
   * a read past it). */
  for (size_t n = 0; n < wire.len; n++) {
    char *cut = xmalloc(n ? n : 1);
    memcpy(cut, wire.buf, n);
    if (runner_wire_decode(cut, n, &ds, &dc, &err) == 0)
      unit_fail(__FILE__, __LINE__, "a configuration cut at %zu of %zu bytes was taken", n,
                wire.len);
    runner_wire_release(&dc);
    free(cut);
  }
  /* Trailing bytes, another magic, a NUL inside a string. */
  strbuf_addch(&wire, 'x');
  CHECK_INT(runner_wire_decode(wire.buf, wire.len, &ds, &dc, &err), -1);
  runner_wire_release(&dc);
  strbuf_setlen(&wire, wire.len - 1);
  wire.buf[0] ^= 1;
  CHECK_INT(runner_wire_decode(wire.buf, wire.len, &ds, &dc, &err), -1);
  CHECK_CONTAINS(err.msg, "not from this cbuild");
  runner_wire_release(&dc);
  wire.buf[0] ^= 1;
  {
    char *p = memmem(wire.buf, wire.len, "/tmp/x/root", 11);
    CHECK(p != NULL);
    if (p) {
      p[4] = '\0';
      CHECK_INT(runner_wire_decode(wire.buf, wire.len, &ds, &dc, &err), -1);
      runner_wire_release(&dc);
    }
  }
  strbuf_release(&wire);
}

static void test_cgroup_find(void)
{
  cleanup_free char *cg = xasprintf("%s/cg", top);
  cleanup_free char *ctl = xasprintf("%s/cg/unified/u/cgroup.controllers", top);
  cleanup_free char *ctl2 = xasprintf("%s/cg/v2 tree/user.slice/x/cgroup.controllers", top);
  cleanup_free char *hybrid = xasprintf(
      "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
      "41 31 0:38 / %s/unified rw,relatime - cgroup2 cgroup2 rw\n"
      "35 31 0:32 / %s/memory rw,relatime - cgroup cgroup rw,memory\n"
      "32 31 0:29 / %s/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
      "36 31 0:33 /sub %s/pids rw,relatime - cgroup cgroup rw,pids\n",
      cg, cg, cg, cg);
  cleanup_free char *pure = xasprintf("30 1 0:26 / %s/v2\\040tree rw shared:4 - cgroup2 "
                                      "cgroup2 rw,nsdelegate\n",
                                      cg);
  const char *self = "5:pids:/sub/p\n4:memory:/a/b\n1:cpu,cpuacct:/c\n0::/u\n";
  struct cb_error err;
  char *dir = NULL;
  bool v2 = false;

  {
    cleanup_free char *d = xasprintf("%s/cg/unified/u", top);
    cleanup_free char *d2 = xasprintf("%s/cg/v2 tree/user.slice/x", top);
    mkdirs(d, 0755);
    mkdirs(d2, 0755);
  }
  write_text(ctl, "hugetlb misc\n");
  write_text(ctl2, "cpuset cpu io memory pids\n");

  /* hybrid: what v2 lacks comes from v1 */
  CHECK_INT(runner_cgroup_find("memory", hybrid, self, &v2, &dir, &err), 0);
  CHECK(!v2);
  CHECK(dir && cb_ends_with(dir, "/cg/memory/a/b"));
  free(dir);
  CHECK_INT(runner_cgroup_find("cpu", hybrid, self, &v2, &dir, &err), 0);
  CHECK(dir && cb_ends_with(dir, "/cg/cpu,cpuacct/c"));
  free(dir);
  /* a v1 mount whose root is not the hierarchy's */
  CHECK_INT(runner_cgroup_find("pids", hybrid, self, &v2, &dir, &err), 0);
  CHECK(dir && cb_ends_with(dir, "/cg/pids/p"));
  free(dir);
  CHECK_INT(runner_cgroup_find("misc", hybrid, self, &v2, &dir, &err), 0);
  CHECK(v2);
  CHECK(dir && cb_ends_with(dir, "/cg/unified/u"));
  free(dir);
  CHECK_INT(runner_cgroup_find("cpuset", hybrid, self, &v2, &dir, &err), -1);
  CHECK_CONTAINS(err.msg, "\"cpuset\" is not available");

  /* pure v2, with an escaped mount point */
  dir = NULL;
  CHECK_INT(runner_cgroup_find("memory", pure, "0::/user.slice/x\n", &v2, &dir, &err), 0);
  CHECK(v2);
  CHECK(dir && cb_ends_with(dir, "/cg/v2 tree/user.slice/x"));
  free(dir);
  dir = NULL;
  CHECK_INT(runner_cgroup_find("hugetlb", pure, "0::/user.slice/x\n", &v2, &dir, &err), -1);
}

/* ---- the sandbox ---- */

static void test_basic(void)
{
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "echo hello; echo oops >&2; exit 3");
  CHECK_INT(step_run(&s), 0);
  CHECK_INT(s.res.exit_status, 3);
  CHECK_INT(s.res.signal, 0);
  CHECK_CONTAINS(s.out.buf, "hello\n");
  CHECK_CONTAINS(s.out.buf, "oops\n");
  step_release(&s);

  /* stdin is /dev/null; no descriptor of the caller's leaks in, even one
   * without O_CLOEXEC */
  {
    int leak = open("/", O_RDONLY | O_DIRECTORY);
    /* the fds of a child the shell starts before it makes any pipe: the
     * shell itself holds a pipe's ends for a moment after it forks, and
     * keeps saved copies while it redirects a built-in; a background job
     * has no fd 0 for a moment (closed, then /dev/null again), so its
     * list is read until it is the expected one (a leaked fd never goes) */
    step_init(&s, "cat; readlink /proc/self/fd/0; sleep 5 & p=$!; i=0; "
                  "while [ $i -lt 300 ]; do fds=$(ls /proc/$p/fd | tr '\\n' ' '); "
                  "[ \"$fds\" = '0 1 2 ' ] && break; i=$((i+1)); sleep 0.01; done; "
                  "printf %s \"$fds\"; kill $p");
    RUN_OK(&s);
    CHECK_STR(s.out.buf, "/dev/null\n0 1 2 ");
    step_release(&s);
    close(leak);
  }
}

static void test_signal(void)
{
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "echo before; kill -TERM $$; echo after");
  CHECK_INT(step_run(&s), 0);
  CHECK_INT(s.res.signal, SIGTERM);
  CHECK_INT(s.res.exit_status, 128 + SIGTERM);
  CHECK_STR(s.out.buf, "before\n");
  step_release(&s);
}

static void test_exec_error(void)
{
  static const char *const missing[] = { "no-such-command", NULL };
  static const char *const missing_abs[] = { "/bin/no-such-command", NULL };
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "");
  s.c.argv = missing;
  CHECK_INT(step_run(&s), -1);
  CHECK_STR(s.err.msg, "exec \"no-such-command\": executable file not found in $PATH");
  step_release(&s);
  step_init(&s, "");
  s.c.argv = missing_abs;
  CHECK_INT(step_run(&s), -1);
  CHECK_STR(s.err.msg, "exec \"/bin/no-such-command\": No such file or directory");
  step_release(&s);
}

static void test_pid_namespace(void)
{
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "echo pid=$$; for p in /proc/[0-9]*; do echo proc=${p#/proc/}; done; "
                "ps -o pid,comm | tail -n +2 | sed 's/^ */ps=/'; "
                "cat /proc/1/status | grep -E '^(Name|PPid):'");
  RUN_OK(&s);
  CHECK_CONTAINS(s.out.buf, "pid=2\n");
  CHECK_CONTAINS(s.out.buf, "proc=1\n");
  /* init, the shell and at most the few processes of this pipeline */
  CHECK(count_lines_with(s.out.buf, "proc=") <= 4);
  CHECK(count_lines_with(s.out.buf, "ps=") <= 6);
  for (const char *p = s.out.buf; (p = strstr(p, "ps=")) != NULL; p += 3)
    CHECK(atoi(p + 3) < 20);
  /* PID 1 has no parent in its namespace */
  CHECK_CONTAINS(s.out.buf, "PPid:\t0\n");
  CHECK_CONTAINS(s.out.buf, "Name:\tcbuild-init\n");
  step_release(&s);
}

static void test_zombie_reaped(void)
{
  struct step s;
  NEED_BUSYBOX();
  /* The subshell's child is orphaned, reparented to the init, and exits. */
  step_init(&s, "(sleep 0.05 &); sleep 0.5; cat /proc/[0-9]*/stat; true");
  RUN_OK(&s);
  CHECK_CONTAINS(s.out.buf, "(sh) ");
  CHECK(strstr(s.out.buf, ") Z ") == NULL);
  step_release(&s);
}

static void test_signal_forwarded(void)
{
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "trap 'echo got-usr1' USR1; kill -USR1 1; sleep 0.3; echo done");
  RUN_OK(&s);
  CHECK_STR(s.out.buf, "got-usr1\ndone\n");
  step_release(&s);
}

static void test_hostname(void)
{
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "hostname; cat /etc/hostname; echo $HOSTNAME; grep -c sbx-test /etc/hosts");
  s.c.hostname = "sbx-test";
  RUN_OK(&s);
  CHECK_STR(s.out.buf, "sbx-test\nsbx-test\nsbx-test\n1\n");
  step_release(&s);

  step_init(&s, "hostname");
  RUN_OK(&s);
  CHECK_STR(s.out.buf, "cbuild\n");
  step_release(&s);
}

static void test_env(void)
{
  static const char *const env[] = { "FOO=bar baz", "PATH=/bin", NULL };
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "echo \"$FOO|$PATH|$HOME|$HOSTNAME\"");
  s.c.env = env;
  RUN_OK(&s);
  CHECK_STR(s.out.buf, "bar baz|/bin|/root|cbuild\n");
  step_release(&s);
}

static void test_net_none(void)
{
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ,; echo; "
                "ip link show lo");
  RUN_OK(&s);
  CHECK(cb_starts_with(s.out.buf, "lo,\n1: lo: <LOOPBACK,UP,LOWER_UP>"));
  step_release(&s);
}

/* A busybox httpd on 127.0.0.1, serving dir. */
static pid_t start_httpd(const char *dir, int *port)
{
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  char arg[64];
  pid_t pid;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  close(fd);
  *port = ntohs(sa.sin_port);
  snprintf(arg, sizeof(arg), "127.0.0.1:%d", *port);
  pid = fork();
  if (pid == 0) {
    execl("/bin/busybox", "busybox", "httpd", "-f", "-p", arg, "-h", dir, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; pid > 0 && i < 200; i++) {
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok = connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(c);
    if (ok)
      break;
    nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
  }
  return pid;
}

static void stop_child(pid_t pid)
{
  int status;
  if (pid <= 0)
    return;
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
}

static void test_net_default(void)
{
  cleanup_free char *www = xasprintf("%s/www", top);
  cleanup_free char *index = xasprintf("%s/www/index.html", top);
  cleanup_free char *script = NULL;
  struct step s;
  int port = 0;
  pid_t httpd;
  NEED_BUSYBOX();
  if (access("/usr/bin/slirp4netns", X_OK) != 0) {
    unit_fail(__FILE__, __LINE__, "slirp4netns is not installed");
    return;
  }
  if (rootless() && access("/dev/net/tun", R_OK | W_OK) != 0) {
    /* slirp4netns cannot work: the error must say so */
    printf("# /dev/net/tun is not usable by this user: checking the error only\n");
    step_init(&s, "true");
    s.c.network = RUNNER_NET_DEFAULT;
    CHECK_INT(step_run(&s), -1);
    CHECK_CONTAINS(s.err.msg, "slirp4netns could not set up RUN's network: ");
    CHECK_CONTAINS(s.err.msg, "/dev/net/tun");
    CHECK_CONTAINS(s.err.msg, "--network=none");
    step_release(&s);
    return;
  }
  mkdirs(www, 0755);
  write_text(index, "served-from-the-host\n");
  httpd = start_httpd(www, &port);
  CHECK(httpd > 0);
  script = xasprintf("ip -o addr show tap0; ip route; cat /etc/resolv.conf; "
                     "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ,; "
                     "echo; wget -qO- http://10.0.2.2:%d/index.html",
                     port);
  step_init(&s, script);
  s.c.network = RUNNER_NET_DEFAULT;
  RUN_OK(&s);
  CHECK_CONTAINS(s.out.buf, "inet 10.0.2.100/24");
  CHECK_CONTAINS(s.out.buf, "default via 10.0.2.2 dev tap0");
  CHECK_CONTAINS(s.out.buf, "nameserver 10.0.2.3\n");
  /* its own interfaces, not the host's */
  CHECK_CONTAINS(s.out.buf, "\nlo,tap0,\n");
  CHECK_CONTAINS(s.out.buf, "served-from-the-host\n");
  step_release(&s);
  stop_child(httpd);
}

static void test_net_missing_slirp(void)
{
  cleanup_free char *path = xstrdup(getenv("PATH") ? getenv("PATH") : "");
  cleanup_free char *empty = xasprintf("%s/empty-path", top);
  struct step s;
  NEED_BUSYBOX();
  mkdirs(empty, 0755);
  setenv("PATH", empty, 1);
  step_init(&s, "true");
  s.c.network = RUNNER_NET_DEFAULT;
  CHECK_INT(step_run(&s), -1);
  CHECK_CONTAINS(s.err.msg, "\"slirp4netns\"");
  CHECK_CONTAINS(s.err.msg, "--network=none");
  CHECK_CONTAINS(s.err.msg, "--network=host");
  step_release(&s);
  setenv("PATH", path, 1);
}

#define LIST_INTERFACES "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | sort | tr '\\n' ,"

static void test_net_host(void)
{
  char host_ifs[4096] = "";
  FILE *f = popen("/bin/busybox sh -c \"" LIST_INTERFACES "\"", "r");
  struct step s;
  NEED_BUSYBOX();
  if (f) {
    if (!fgets(host_ifs, sizeof(host_ifs), f))
      host_ifs[0] = '\0';
    pclose(f);
  }
  CHECK(strlen(host_ifs) > 3);
  step_init(&s, LIST_INTERFACES "; echo; touch /sys/x 2>&1; grep ' /sys ' /proc/mounts");
  s.c.network = RUNNER_NET_HOST;
  RUN_OK(&s);
  /* the host's interfaces: one other than lo, as the host listed it
   * (the list itself may change meanwhile: other tools make and remove
   * interfaces on a busy machine) */
  {
    char *name = host_ifs, *comma;
    while (name && cb_starts_with(name, "lo,"))
      name += 3;
    comma = name ? strchr(name, ',') : NULL;
    if (comma)
      comma[1] = '\0';
    CHECK(comma != NULL);
    if (comma)
      CHECK(strstr(s.out.buf, name) != NULL);
  }
  /* /sys read-only, rootless too (then the host's, bound) */
  CHECK_CONTAINS(s.out.buf, "Read-only file system");
  CHECK_CONTAINS(s.out.buf, " /sys sysfs ro,");
  step_release(&s);
}

static void test_security(void)
{
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; "
                "mkdir -p /mnt; mount -t tmpfs none /mnt 2>&1; echo mount=$?; "
                "umount /proc 2>&1; echo umount=$?; "
                "unshare -U true 2>&1; echo unshare=$?; unshare -n true 2>&1; "
                "nsenter -t $$ -n true 2>&1; echo nsenter=$?; "
                "echo 1 > /proc/sys/kernel/panic 2>&1; echo sysctl=$?; "
                "linux32 true; echo linux32=$?");
  RUN_OK(&s);
  {
    cleanup_free char *eff = field(s.out.buf, "CapEff:");
    cleanup_free char *prm = field(s.out.buf, "CapPrm:");
    cleanup_free char *bnd = field(s.out.buf, "CapBnd:");
    cleanup_free char *inh = field(s.out.buf, "CapInh:");
    cleanup_free char *amb = field(s.out.buf, "CapAmb:");
    cleanup_free char *nnp = field(s.out.buf, "NoNewPrivs:");
    cleanup_free char *sc = field(s.out.buf, "Seccomp:");
    CHECK_STR(eff, "00000000a80425fb");
    CHECK_STR(prm, "00000000a80425fb");
    CHECK_STR(bnd, "00000000a80425fb");
    CHECK_STR(inh, "0000000000000000");
    CHECK_STR(amb, "0000000000000000");
    CHECK_STR(nnp, "1");
    CHECK_STR(sc, "2");
  }
  CHECK_CONTAINS(s.out.buf, "mount: permission denied");
  CHECK_CONTAINS(s.out.buf, "can't unmount /proc: Operation not permitted");
  CHECK_CONTAINS(s.out.buf, "unshare(0x10000000): Operation not permitted");
  CHECK_CONTAINS(s.out.buf, "unshare(0x40000000): Operation not permitted");
  CHECK_CONTAINS(s.out.buf, "Operation not permitted\nnsenter=1");
  CHECK_CONTAINS(s.out.buf, "Read-only file system");
  CHECK_CONTAINS(s.out.buf, "linux32=0");
  step_release(&s);
}

static void test_insecure(void)
{
  cleanup_strbuf struct strbuf status = STRBUF_INIT;
  struct cb_error err;
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status");
  s.c.insecure = true;
  RUN_OK(&s);
  {
    cleanup_free char *eff = field(s.out.buf, "CapEff:");
    cleanup_free char *sc = field(s.out.buf, "Seccomp:");
    cleanup_free char *want = NULL;
    /* all the caller has (in its user namespace when rootless) */
    if (rootless()) {
      CHECK_INT(cb_read_file("/proc/sys/kernel/cap_last_cap", &status, &err), 0);
      want = xasprintf("%016llx", (1ULL << (atoi(status.buf) + 1)) - 1);
    } else {
      CHECK_INT(cb_read_file("/proc/self/status", &status, &err), 0);
      want = field(status.buf, "CapBnd:");
    }
    CHECK_STR(eff, want);
    CHECK_STR(sc, "0");
  }
  step_release(&s);
}

static void test_writes_stay_inside(void)
{
  cleanup_free char *name = unique_name("escape");
  cleanup_free char *host = xasprintf("/%s", name);
  cleanup_free char *script = xasprintf("echo x > /%s; echo changed > /data/old; "
                                        "mkdir -p /tmp/t; echo y > /tmp/t/f",
                                        name);
  cleanup_strbuf struct strbuf old = STRBUF_INIT;
  cleanup_free char *oldp = xasprintf("%s/data/old", base);
  struct cb_error err;
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, script);
  RUN_OK(&s);
  CHECK(upper_has(&s, name, NULL));
  CHECK(upper_has(&s, "tmp/t/f", NULL));
  CHECK(upper_has(&s, "data/old", NULL));
  CHECK(access(host, F_OK) < 0);
  /* the lower layer is untouched */
  CHECK_INT(cb_read_file(oldp, &old, &err), 0);
  CHECK_STR(old.buf, "old\n");
  step_release(&s);
}

static void test_whiteouts(void)
{
  const char *xattr = rootless() ? "user.overlay.opaque" : "trusted.overlay.opaque";
  struct step s;
  struct stat st;
  char val[8] = "";
  cleanup_free char *sub = NULL;
  NEED_BUSYBOX();
  step_init(&s, "rm /data/old && rm -rf /data/sub && mkdir /data/sub && touch /data/sub/new");
  RUN_OK(&s);
  CHECK(upper_has(&s, "data/old", &st));
  CHECK(S_ISCHR(st.st_mode));
  CHECK_INT(st.st_rdev, makedev(0, 0));
  sub = xasprintf("%s/data/sub", s.upper);
  CHECK_INT(lgetxattr(sub, xattr, val, sizeof(val) - 1), 1);
  CHECK_STR(val, "y");
  CHECK(upper_has(&s, "data/sub/new", NULL));
  CHECK(!upper_has(&s, "data/sub/inner", NULL));
  step_release(&s);
}

static void test_many_lowerdirs(void)
{
  enum { N = 200 };
  const char *lowers[N + 1];
  char *dirs[N];
  struct step s;
  NEED_BUSYBOX();
  for (int i = 0; i < N; i++) {
    cleanup_free char *file = NULL;
    dirs[i] = xasprintf("%s/layers/a-rather-long-directory-name-for-layer-%03d", top, i);
    file = xasprintf("%s/l/f%03d", dirs[i], i);
    mkdirs(dirs[i], 0755);
    {
      cleanup_free char *l = xasprintf("%s/l", dirs[i]);
      mkdirs(l, 0755);
    }
    write_text(file, "x");
    lowers[N - 1 - i] = dirs[i]; /* top first */
  }
  lowers[N] = base;
  for (int api = 1; api >= 0; api--) {
    if (!api)
      setenv("CBUILD_NO_MOUNT_API", "1", 1);
    step_init(&s, "ls /l | wc -l; ls /l | head -n 1; ls /l | tail -n 1");
    s.c.lowerdirs = lowers;
    s.c.n_lowerdirs = N + 1;
    RUN_OK(&s);
    CHECK_STR(s.out.buf, "200\nf000\nf199\n");
    step_release(&s);
    unsetenv("CBUILD_NO_MOUNT_API");
  }
  /* The same layer twice (two steps that made the same content): kept
   * where it is highest, as overlayfs refuses overlapping layers. */
  {
    const char *dup[] = { dirs[0], base, dirs[1], dirs[0], base };
    step_init(&s, "ls /l | tr '\\n' ' '");
    s.c.lowerdirs = dup;
    s.c.n_lowerdirs = CB_ARRAY_SIZE(dup);
    RUN_OK(&s);
    CHECK_STR(s.out.buf, "f000 f001 ");
    step_release(&s);
  }
  /* No lowerdir at all: an empty rootfs. */
  {
    static const char *const argv[] = { "/nothing", NULL };
    step_init(&s, "");
    s.c.n_lowerdirs = 0;
    s.c.argv = argv;
    CHECK_INT(step_run(&s), -1);
    CHECK_CONTAINS(s.err.msg, "exec \"/nothing\"");
    step_release(&s);
  }
  for (int i = 0; i < N; i++)
    free(dirs[i]);
}

static void test_overlay_errors(void)
{
  const char *lowers[] = { "/nonexistent-lower", NULL };
  struct step s;
  NEED_BUSYBOX();
  lowers[1] = base;
  for (int api = 1; api >= 0; api--) {
    if (!api)
      setenv("CBUILD_NO_MOUNT_API", "1", 1);
    step_init(&s, "true");
    s.c.lowerdirs = lowers;
    s.c.n_lowerdirs = 2;
    CHECK_INT(step_run(&s), -1);
    CHECK_CONTAINS(s.err.msg, "\"/nonexistent-lower\"");
    CHECK(cb_ends_with(s.err.msg, ": No such file or directory"));
    CHECK(cb_starts_with(s.err.msg, "mount the overlay on "));
    step_release(&s);
    unsetenv("CBUILD_NO_MOUNT_API");
  }
}

static void test_dev_sys(void)
{
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "echo x > /dev/null && head -c 8 /dev/urandom | wc -c; head -c 3 /dev/zero | "
                "wc -c; ls -d /dev/pts/ptmx; readlink /dev/ptmx; touch /dev/shm/ok && echo shm; "
                "(echo x > /dev/full) 2>&1; touch /sys/x 2>&1; grep -c ' /dev/pts devpts' "
                "/proc/mounts");
  RUN_OK(&s);
  CHECK_CONTAINS(s.out.buf, "8\n3\n/dev/pts/ptmx\npts/ptmx\nshm\n");
  CHECK_CONTAINS(s.out.buf, "No space left on device");
  CHECK_CONTAINS(s.out.buf, "Read-only file system");
  step_release(&s);
}

static void test_stubs(void)
{
  struct step s;
  struct stat st;
  NEED_BUSYBOX();
  /* The fixed mount targets come from a layer under the image: nothing of
   * them reaches the upperdir. */
  step_init(&s, "test -f /etc/hosts && test -d /proc/1 && echo there");
  RUN_OK(&s);
  CHECK_STR(s.out.buf, "there\n");
  CHECK_INT(s.res.mount_stubs.n, 0);
  CHECK(!upper_has(&s, "etc", &st));
  CHECK(!upper_has(&s, "proc", &st));
  CHECK(!upper_has(&s, "dev", &st));
  step_release(&s);

  /* A directory the command wrote to is its own, and the stubs in it do
   * not come up with it. */
  step_init(&s, "echo x > /etc/new");
  RUN_OK(&s);
  CHECK(strvec_find(&s.res.mount_stubs, "etc") < 0);
  CHECK(upper_has(&s, "etc/new", &st));
  CHECK(!upper_has(&s, "etc/hosts", &st));
  step_release(&s);

  /* What a step writes to /etc/hosts stays with it. */
  step_init(&s, "echo 10.1.2.3 written >> /etc/hosts && grep -c written /etc/hosts");
  RUN_OK(&s);
  CHECK_STR(s.out.buf, "1\n");
  step_release(&s);
  step_init(&s, "cat /etc/hosts");
  RUN_OK(&s);
  CHECK(strstr(s.out.buf, "written") == NULL);
  CHECK_CONTAINS(s.out.buf, "localhost");
  step_release(&s);
}

static void test_mounts(void)
{
  cleanup_free char *src = xasprintf("%s/bind-src", top);
  cleanup_free char *srcfile = xasprintf("%s/bind-src/file", top);
  cleanup_free char *script_file = xasprintf("%s/script.sh", top);
  cleanup_free char *written = xasprintf("%s/bind-src/written", top);
  struct runner_mount m[5];
  struct step s;
  NEED_BUSYBOX();
  mkdirs(src, 0755);
  write_text(srcfile, "from-host\n");
  write_text(script_file, "echo from-script\n");
  memset(m, 0, sizeof(m));
  m[0] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = src, .target = "/mnt/deep/rw" };
  m[1] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = srcfile,
                                .target = "/opt/ro-file", .readonly = true };
  m[2] = (struct runner_mount){ .type = RUNNER_MOUNT_TMPFS, .target = "/scratch", .size = 1 << 20 };
  m[3] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = script_file,
                                .target = "/dev/cbuild-script", .readonly = true };
  m[4] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = src,
                                .target = "/data/ro-dir", .readonly = true };
  step_init(&s, "cat /mnt/deep/rw/file; echo w > /mnt/deep/rw/written; cat /opt/ro-file; "
                "echo w > /opt/ro-file 2>&1; df -k /scratch | tail -n 1; sh /dev/cbuild-script; "
                "touch /data/ro-dir/x 2>&1; echo mine > /opt/keep");
  s.c.mounts = m;
  s.c.n_mounts = CB_ARRAY_SIZE(m);
  RUN_OK(&s);
  CHECK_CONTAINS(s.out.buf, "from-host\nfrom-host\n");
  CHECK_INT(count_lines_with(s.out.buf, "Read-only file system"), 2);
  CHECK_CONTAINS(s.out.buf, " 1024 ");
  CHECK_CONTAINS(s.out.buf, "from-script\n");
  CHECK(access(written, F_OK) == 0);
  /* created targets are stubs; so are the directories made for them only */
  CHECK(strvec_find(&s.res.mount_stubs, "mnt/deep/rw") >= 0);
  CHECK(strvec_find(&s.res.mount_stubs, "mnt/deep") >= 0);
  CHECK(strvec_find(&s.res.mount_stubs, "mnt") >= 0);
  CHECK(strvec_find(&s.res.mount_stubs, "opt/ro-file") >= 0);
  CHECK(strvec_find(&s.res.mount_stubs, "opt") < 0); /* the command wrote opt/keep */
  CHECK(strvec_find(&s.res.mount_stubs, "scratch") >= 0);
  CHECK(strvec_find(&s.res.mount_stubs, "data/ro-dir") >= 0);
  CHECK(strvec_find(&s.res.mount_stubs, "data") >= 0); /* only stubs in it */
  for (size_t i = 0; i < s.res.mount_stubs.n; i++)
    CHECK(!cb_starts_with(s.res.mount_stubs.v[i], "dev/"));
  step_release(&s);

  /* A bind of a file onto a directory is refused. */
  m[0] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = srcfile, .target = "/data" };
  step_init(&s, "true");
  s.c.mounts = m;
  s.c.n_mounts = 1;
  CHECK_INT(step_run(&s), -1);
  CHECK_STR(s.err.msg, "mount target \"/data\" is a directory, not a file");
  step_release(&s);
}

/* An image whose /etc is a symlink to a host path, or whose mount target
 * climbs out with "..", must not make the sandbox write on the host. */
static void test_hostile_symlink(void)
{
  cleanup_free char *hostdir = xasprintf("%s/hostdir", top);
  cleanup_free char *evil = xasprintf("%s/evil", top);
  cleanup_free char *etc = xasprintf("%s/evil/etc", top);
  cleanup_free char *up = xasprintf("%s/evil/up", top);
  cleanup_free char *up_target = xasprintf("../../../../../../../..%s", hostdir);
  cleanup_free char *src = xasprintf("%s/hostile-src", top);
  struct runner_mount m = { .type = RUNNER_MOUNT_BIND, .source = src, .target = "/up/mnt" };
  const char *lowers[2];
  struct step s;
  DIR *d;
  int entries = 0;
  struct dirent *de;
  NEED_BUSYBOX();
  mkdirs(hostdir, 0755);
  mkdirs(evil, 0755);
  mkdirs(src, 0755);
  if ((symlink(hostdir, etc) < 0 && errno != EEXIST) ||
      (symlink(up_target, up) < 0 && errno != EEXIST))
    unit_fail(__FILE__, __LINE__, "symlink: %s", strerror(errno));
  lowers[0] = evil;
  lowers[1] = base;
  for (int fallback = 0; fallback < 2; fallback++) {
    cleanup_free char *rel = xasprintf("%s/hostname", hostdir + 1);
    cleanup_free char *relm = xasprintf("%s/mnt", hostdir + 1);
    if (fallback)
      setenv("CBUILD_NO_OPENAT2", "1", 1);
    step_init(&s, "cat /etc/hostname; ls -d /up/mnt");
    s.c.lowerdirs = lowers;
    s.c.n_lowerdirs = 2;
    s.c.mounts = &m;
    s.c.n_mounts = 1;
    RUN_OK(&s);
    CHECK_STR(s.out.buf, "cbuild\n/up/mnt\n");
    /* the stubs were made inside the rootfs, where the symlinks lead there */
    CHECK(strvec_find(&s.res.mount_stubs, rel) >= 0);
    CHECK(strvec_find(&s.res.mount_stubs, relm) >= 0);
    CHECK(strvec_find(&s.res.mount_stubs, "tmp") >= 0);
    CHECK(upper_has(&s, rel, NULL));
    step_release(&s);
    unsetenv("CBUILD_NO_OPENAT2");
  }

  d = opendir(hostdir);
  while (d && (de = readdir(d)) != NULL)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
      entries++;
  if (d)
    closedir(d);
  CHECK_INT(entries, 0);
}

/* The mounts of RUN --mount: overlays of layers, throwaway writes over a
 * bind's source, sources beneath a root, files that never touch a disk. */
static void test_extra_mounts(void)
{
  cleanup_free char *l1 = xasprintf("%s/ov/l1", top);
  cleanup_free char *l2 = xasprintf("%s/ov/l2", top);
  cleanup_free char *ctx = xasprintf("%s/ov/ctx", top);
  cleanup_free char *p = NULL;
  cleanup_strbuf struct strbuf text = STRBUF_INIT;
  struct cb_error err;
  struct runner_mount m[4];
  struct step s;
  NEED_BUSYBOX();
  p = xasprintf("%s/sub/a", l2);
  mkdirs(p, 0755);
  free(p);
  p = xasprintf("%s/sub/a/low", l2);
  write_text(p, "low\n");
  free(p);
  p = xasprintf("%s/sub/a/both", l2);
  write_text(p, "from-l2\n");
  free(p);
  p = xasprintf("%s/sub/a", l1);
  mkdirs(p, 0755);
  free(p);
  p = xasprintf("%s/sub/a/both", l1);
  write_text(p, "from-l1\n");
  free(p);
  p = xasprintf("%s/sub/link", l1);
  if (symlink("/sub/a", p) < 0 && errno != EEXIST)
    unit_fail(__FILE__, __LINE__, "symlink: %s", strerror(errno));
  free(p);
  p = xasprintf("%s/dir", ctx);
  mkdirs(p, 0755);
  free(p);
  p = xasprintf("%s/dir/f", ctx);
  write_text(p, "ctx\n");
  free(p);
  p = xasprintf("%s/escape", ctx);
  if (symlink("/etc", p) < 0 && errno != EEXIST)
    unit_fail(__FILE__, __LINE__, "symlink: %s", strerror(errno));
  free(p);

  for (int api = 1; api >= 0; api--) {
    const char *two[] = { l1, l2 };
    const char *one[] = { l2 };
    if (!api)
      setenv("CBUILD_NO_MOUNT_API", "1", 1);
    /* read-only overlays: two layers, the upper one winning, a source
     * reached through a symlink of theirs; one layer; none */
    memset(m, 0, sizeof(m));
    m[0] = (struct runner_mount){ .type = RUNNER_MOUNT_OVERLAY, .target = "/ov",
                                  .lowerdirs = two, .n_lowerdirs = 2 };
    m[1] = (struct runner_mount){ .type = RUNNER_MOUNT_OVERLAY, .target = "/ovsub",
                                  .source = "sub/link", .lowerdirs = two, .n_lowerdirs = 2 };
    m[2] = (struct runner_mount){ .type = RUNNER_MOUNT_OVERLAY, .target = "/one",
                                  .lowerdirs = one, .n_lowerdirs = 1 };
    m[3] = (struct runner_mount){ .type = RUNNER_MOUNT_OVERLAY, .target = "/none" };
    step_init(&s, "cat /ov/sub/a/both /ov/sub/a/low /ovsub/both; ls /one/sub/a | tr '\\n' ' '; "
                  "ls -A /none | wc -l; touch /ov/x 2>&1; touch /one/x 2>&1; touch /none/x 2>&1; "
                  "true");
    s.c.mounts = m;
    s.c.n_mounts = 4;
    RUN_OK(&s);
    CHECK_CONTAINS(s.out.buf, "from-l1\nlow\nfrom-l1\nboth low 0\n");
    CHECK_INT(count_lines_with(s.out.buf, "Read-only file system"), 3);
    CHECK(strvec_find(&s.res.mount_stubs, "ov") >= 0);
    step_release(&s);

    /* a writable overlay: writes go to its upperdir, never to the layers */
    step_init(&s, "echo new > /ov/sub/a/both && rm /ov/sub/a/low && cat /ov/sub/a/both");
    {
      cleanup_free char *up = xasprintf("%s/ov-upper", s.dir);
      cleanup_free char *wk = xasprintf("%s/ov-work", s.dir);
      cleanup_free char *changed = xasprintf("%s/sub/a/both", up);
      mkdirs(up, 0755);
      mkdirs(wk, 0700);
      m[0] = (struct runner_mount){ .type = RUNNER_MOUNT_OVERLAY, .target = "/ov",
                                    .lowerdirs = two, .n_lowerdirs = 2, .upperdir = up,
                                    .workdir = wk };
      s.c.mounts = m;
      s.c.n_mounts = 1;
      RUN_OK(&s);
      CHECK_STR(s.out.buf, "new\n");
      strbuf_reset(&text);
      CHECK_INT(cb_read_file(changed, &text, &err), 0);
      CHECK_STR(text.buf, "new\n");
      CHECK(!upper_has(&s, "ov/sub", NULL));
    }
    step_release(&s);
    p = xasprintf("%s/sub/a/both", l1);
    strbuf_reset(&text);
    CHECK_INT(cb_read_file(p, &text, &err), 0);
    CHECK_STR(text.buf, "from-l1\n");
    free(p);
    p = xasprintf("%s/sub/a/low", l2);
    CHECK(access(p, F_OK) == 0);
    free(p);
    p = NULL;

    /* a bind beneath a root, writable with its writes thrown away: a
     * directory (an overlay) and a file (a copy) */
    step_init(&s, "cat /c/f && echo w > /c/f && echo n > /c/new && cat /c/f /f && "
                  "echo w > /f && cat /f && touch /ro/x 2>&1; true");
    {
      cleanup_free char *up = xasprintf("%s/b-upper", s.dir);
      cleanup_free char *wk = xasprintf("%s/b-work", s.dir);
      cleanup_free char *up2 = xasprintf("%s/f-upper", s.dir);
      cleanup_free char *wk2 = xasprintf("%s/f-work", s.dir);
      cleanup_free char *f = xasprintf("%s/dir/f", ctx);
      mkdirs(up, 0755);
      mkdirs(wk, 0700);
      mkdirs(up2, 0755);
      mkdirs(wk2, 0700);
      m[0] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = "dir", .source_root = ctx,
                                    .target = "/c", .upperdir = up, .workdir = wk };
      m[1] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = "dir/f",
                                    .source_root = ctx, .target = "/f", .upperdir = up2,
                                    .workdir = wk2 };
      m[2] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = ".", .source_root = ctx,
                                    .target = "/ro", .readonly = true };
      s.c.mounts = m;
      s.c.n_mounts = 3;
      RUN_OK(&s);
      CHECK_STR(s.out.buf, "ctx\nw\nctx\nw\ntouch: /ro/x: Read-only file system\n");
      strbuf_reset(&text);
      CHECK_INT(cb_read_file(f, &text, &err), 0);
      CHECK_STR(text.buf, "ctx\n");
      p = xasprintf("%s/dir/new", ctx);
      CHECK(access(p, F_OK) < 0);
      free(p);
      p = NULL;
    }
    step_release(&s);
    unsetenv("CBUILD_NO_MOUNT_API");
  }

  /* paths hidden below a bind's source are absent, read-only or not; the
   * directories above them keep their modes */
  {
    static const char *const hide[] = { "f", "sub/deep/g" };
    cleanup_free char *deep = xasprintf("%s/dir/sub/deep", ctx);
    cleanup_free char *g = xasprintf("%s/dir/sub/deep/g", ctx);
    cleanup_free char *h = xasprintf("%s/dir/sub/deep/h", ctx);
    mkdirs(deep, 0755);
    chmod(deep, 0711);
    write_text(g, "g\n");
    write_text(h, "h\n");
    step_init(&s, "ls -A /h /w | tr '\\n' ' '; ls /h/sub/deep; stat -c %a /h/sub/deep; "
                  "echo new > /w/f && cat /w/f");
    {
      cleanup_free char *up = xasprintf("%s/h-upper", s.dir);
      cleanup_free char *wk = xasprintf("%s/h-work", s.dir);
      mkdirs(up, 0755);
      mkdirs(wk, 0700);
      memset(m, 0, sizeof(m));
      m[0] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = "dir", .source_root = ctx,
                                    .target = "/h", .readonly = true, .hide = hide,
                                    .n_hide = 2 };
      m[1] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = "dir", .source_root = ctx,
                                    .target = "/w", .hide = hide, .n_hide = 1, .upperdir = up,
                                    .workdir = wk };
      s.c.mounts = m;
      s.c.n_mounts = 2;
      RUN_OK(&s);
      CHECK_STR(s.out.buf, "/h: sub  /w: sub h\n711\nnew\n");
    }
    step_release(&s);
    p = xasprintf("%s/dir/f", ctx);
    strbuf_reset(&text);
    CHECK_INT(cb_read_file(p, &text, &err), 0);
    CHECK_STR(text.buf, "ctx\n");
    free(p);
    p = NULL;
  }

  /* nothing beneath the root is reached through a symlink or ".." */
  {
    static const char *const bad[] = { "escape", "escape/passwd", "../ov/l1" };
    for (size_t i = 0; i < CB_ARRAY_SIZE(bad); i++) {
      memset(m, 0, sizeof(m));
      m[0] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = bad[i],
                                    .source_root = ctx, .target = "/x", .readonly = true };
      step_init(&s, "ls /x");
      s.c.mounts = m;
      s.c.n_mounts = 1;
      CHECK_INT(step_run(&s), -1);
      CHECK_CONTAINS(s.err.msg, "bind mount source \"");
      step_release(&s);
    }
  }

  /* a file of the caller's data, on its own tmpfs, read-only, not in the
   * layer; the ids are those the sandbox has (only 0 with one mapping) */
  {
    static const char secret[] = "the-secret-value";
    uid_t uid = rootless() ? 0 : 1000;
    cleanup_free char *want = xasprintf("%s\n%u:%u 440\ntmpfs\n", secret, (unsigned)uid,
                                        (unsigned)uid);
    memset(m, 0, sizeof(m));
    m[0] = (struct runner_mount){ .type = RUNNER_MOUNT_FILE, .target = "/run/secrets/s",
                                  .data = secret, .data_len = strlen(secret), .uid = uid,
                                  .gid = uid, .mode = 0440 };
    step_init(&s, "cat /run/secrets/s; echo; stat -c '%u:%g %a' /run/secrets/s; "
                  "grep ' /run/secrets/s ' /proc/mounts | cut -d' ' -f3; "
                  "(echo x > /run/secrets/s) 2>/dev/null && echo writable; true");
    s.c.mounts = m;
    s.c.n_mounts = 1;
    RUN_OK(&s);
    CHECK_STR(s.out.buf, want);
    CHECK(strvec_find(&s.res.mount_stubs, "run/secrets/s") >= 0);
    CHECK(strvec_find(&s.res.mount_stubs, "run") >= 0);
    {
      struct stat st;
      CHECK(upper_has(&s, "run/secrets/s", &st) && st.st_size == 0);
    }
    step_release(&s);
  }
}

static void test_user(void)
{
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "id -u; id -g; grep -E '^(Groups|CapEff|CapBnd):' /proc/self/status; "
                "echo $HOME; touch /root-owned 2>&1; true");
  s.c.user = "alice";
  RUN_OK(&s);
  CHECK(cb_starts_with(s.out.buf, "1000\n1000\n"));
  {
    cleanup_free char *groups = field(s.out.buf, "Groups:");
    cleanup_free char *eff = field(s.out.buf, "CapEff:");
    cleanup_free char *bnd = field(s.out.buf, "CapBnd:");
    CHECK_STR(groups, "29 50");
    CHECK_STR(eff, "0000000000000000");
    CHECK_STR(bnd, "00000000a80425fb");
  }
  CHECK_CONTAINS(s.out.buf, "/home/alice\n");
  CHECK_CONTAINS(s.out.buf, "Permission denied");
  step_release(&s);

  step_init(&s, "id -u; id -g; echo $HOME");
  s.c.user = "bob:staff";
  RUN_OK(&s);
  CHECK_STR(s.out.buf, "1001\n50\n/home/bob\n");
  step_release(&s);

  step_init(&s, "id -u; id -g; echo $HOME");
  s.c.user = "4242:4243";
  RUN_OK(&s);
  CHECK_STR(s.out.buf, "4242\n4243\n/\n");
  step_release(&s);

  step_init(&s, "true");
  s.c.user = "mallory";
  CHECK_INT(step_run(&s), -1);
  CHECK_CONTAINS(s.err.msg, "unable to find user mallory");
  step_release(&s);
}

static void test_cwd(void)
{
  struct step s;
  struct stat st;
  NEED_BUSYBOX();
  step_init(&s, "pwd; touch here");
  s.c.cwd = "/work/a/b";
  RUN_OK(&s);
  CHECK_STR(s.out.buf, "/work/a/b\n");
  CHECK(upper_has(&s, "work/a/b/here", NULL));
  CHECK(upper_has(&s, "work/a", &st));
  CHECK_INT(st.st_mode & 07777, 0755);
  CHECK_INT(st.st_uid, geteuid());
  CHECK(strvec_find(&s.res.mount_stubs, "work") < 0);
  step_release(&s);
}

/* What a limit needs that the rootless build lacks here: a cgroup. */
static bool limits_unavailable(struct step *s)
{
  if (!rootless())
    return false;
  CHECK_INT(step_run(s), -1);
  CHECK_CONTAINS(s->err.msg, "cannot be applied: create the cgroup");
  step_release(s);
  return true;
}

static void test_pids_limit(void)
{
  struct step s;
  struct timespec t0, t1;
  NEED_BUSYBOX();
  step_init(&s, "bomb() { bomb | bomb & }; bomb; sleep 1; echo survived");
  s.c.limits.pids = 32;
  if (limits_unavailable(&s))
    return;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  CHECK_INT(step_run(&s), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  CHECK_CONTAINS(s.out.buf, "can't fork");
  CHECK(t1.tv_sec - t0.tv_sec < 15);
  step_release(&s);

  /* and the machine still forks */
  step_init(&s, "echo ok");
  RUN_OK(&s);
  step_release(&s);
}

static void test_memory_limit(void)
{
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "dd if=/dev/zero of=/dev/null bs=256M count=1");
  s.c.limits.memory_bytes = 64 << 20;
  if (limits_unavailable(&s))
    return;
  CHECK_INT(step_run(&s), 0);
  CHECK(s.res.oom_killed);
  CHECK_INT(s.res.exit_status, 137);
  step_release(&s);

  /* Under the limit: no OOM. */
  step_init(&s, "dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null; echo fine");
  s.c.limits.memory_bytes = 64 << 20;
  RUN_OK(&s);
  CHECK(!s.res.oom_killed);
  CHECK_STR(s.out.buf, "fine\n");
  step_release(&s);
}

static void test_cpu_limit(void)
{
  struct step s;
  NEED_BUSYBOX();
  step_init(&s, "echo ok");
  s.c.limits.cpu_quota_us = 50000;
  s.c.limits.cpu_period_us = 100000;
  if (limits_unavailable(&s))
    return;
  RUN_OK(&s);
  CHECK_STR(s.out.buf, "ok\n");
  step_release(&s);
}

/* The host's mounts that could be the sandbox's (others may come and go
 * meanwhile: the machine is shared). */
static int count_mounts(void)
{
  cleanup_strbuf struct strbuf sb = STRBUF_INIT;
  struct cb_error err;
  if (cb_read_file("/proc/self/mountinfo", &sb, &err) < 0)
    return -1;
  return count_lines_with(sb.buf, "cbuild-run-") + count_lines_with(sb.buf, top);
}

static int count_entries(const char *dir, const char *prefix)
{
  DIR *d = opendir(dir);
  struct dirent *de;
  int n = 0;
  while (d && (de = readdir(d)) != NULL)
    if (cb_starts_with(de->d_name, prefix))
      n++;
  if (d)
    closedir(d);
  return n;
}

/* Afterwards nothing of the step is left: mounts, processes, temp dirs,
 * cgroups. */
static void test_cleanup(void)
{
  cleanup_free char *tmp = xasprintf("%s/private-tmp", top);
  cleanup_free char *old_tmp = getenv("TMPDIR") ? xstrdup(getenv("TMPDIR")) : NULL;
  cleanup_free char *cgdir = NULL;
  cleanup_free char *cgprefix = xasprintf("cbuild-%ld-", (long)getpid());
  int mounts = count_mounts();
  struct step s;
  NEED_BUSYBOX();
  /* The process's state directory (statedir.c) lives until exit: made
   * first, outside the directory watched here, as a build's first step
   * makes it. */
  step_init(&s, "true");
  RUN_OK(&s);
  step_release(&s);
  mkdirs(tmp, 0755);
  setenv("TMPDIR", tmp, 1);

  /* A step that fails in its setup, while slirp4netns starts too ... */
  step_init(&s, "true");
  s.c.user = "mallory";
  if (slirp_usable())
    s.c.network = RUNNER_NET_DEFAULT;
  CHECK_INT(step_run(&s), -1);
  CHECK_CONTAINS(s.err.msg, "unable to find user mallory");
  step_release(&s);
  /* ... one that leaves a daemon behind ... */
  step_init(&s, "sleep 1000 & sleep 1000 & echo started");
  s.c.network = slirp_usable() ? RUNNER_NET_DEFAULT : RUNNER_NET_NONE;
  if (!rootless())
    s.c.limits.pids = 100;
  RUN_OK(&s);
  step_release(&s);

  CHECK_INT(count_mounts(), mounts);
  CHECK_INT(count_entries(tmp, ""), 2); /* . and .. */
  /* no child left, soon: not the daemons, not slirp4netns (whose exit is
   * reaped by a thread of the runner's) */
  {
    siginfo_t si;
    int rc = 0;
    for (int i = 0; i < 200; i++) {
      memset(&si, 0, sizeof(si));
      rc = waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT);
      if (rc < 0)
        break;
      nanosleep(&(struct timespec){ 0, 5 * 1000 * 1000 }, NULL);
    }
    CHECK(rc < 0 && errno == ECHILD);
  }
  if (!rootless()) {
    struct runner_cgroup cg;
    struct runner_limits l = { .pids = 10 };
    struct cb_error err;
    char *slash;
    CHECK_INT(runner_cgroup_create(&cg, &l, &err), 0);
    CHECK_INT(cg.dirs.n, 1);
    if (cg.dirs.n == 1) {
      cgdir = xstrdup(cg.dirs.v[0]);
      slash = strrchr(cgdir, '/');
      *slash = '\0';
    }
    runner_cgroup_destroy(&cg);
    if (cgdir)
      CHECK_INT(count_entries(cgdir, cgprefix), 0);
  }
  if (old_tmp)
    setenv("TMPDIR", old_tmp, 1);
  else
    unsetenv("TMPDIR");
}

/* Rootless without newuidmap or a subuid range: only the caller, as 0. */
static void test_single_mapping(void)
{
  cleanup_free char *want = NULL;
  struct step s;
  NEED_BUSYBOX();
  if (!rootless()) {
    printf("# root: no user namespace to map\n");
    return;
  }
  want = xasprintf("0 %u 1", (unsigned)geteuid());
  setenv("CBUILD_NO_SUBUID", "1", 1);
  step_init(&s, "tr -s ' ' < /proc/self/uid_map; cat /proc/self/setgroups; id -u; "
                "touch /new && echo wrote");
  RUN_OK(&s);
  CHECK_CONTAINS(s.out.buf, want);
  CHECK_CONTAINS(s.out.buf, "\ndeny\n0\nwrote\n");
  step_release(&s);

  /* a second user cannot exist, and says so */
  step_init(&s, "true");
  s.c.user = "alice";
  CHECK_INT(step_run(&s), -1);
  CHECK_CONTAINS(s.err.msg, "setgroups (2 supplementary groups) (not mapped in the user "
                            "namespace: ");
  CHECK(cb_ends_with(s.err.msg, ": Operation not permitted"));
  step_release(&s);
  step_init(&s, "true");
  s.c.user = "1234";
  CHECK_INT(step_run(&s), -1);
  CHECK_CONTAINS(s.err.msg, "setuid 1234 (not mapped in the user namespace: ");
  step_release(&s);
  unsetenv("CBUILD_NO_SUBUID");
}

/*
 * The seccomp filter, probed from C inside the sandbox: this binary runs
 * there as "--probe", with the host's /usr and its own directory bound
 * read-only.
 */
static void *probe_thread(void *arg)
{
  return arg;
}

/* Whether this kernel runs 32-bit system calls at all (ia32 emulation can
 * be compiled out or turned off; then int $0x80 raises SIGSEGV). */
static bool ia32_syscalls_work(void)
{
#if defined(__x86_64__)
  int status;
  pid_t pid = fork();
  if (pid == 0) {
    long r;
    /* a plain death, not a sanitizer's report */
    signal(SIGSEGV, SIG_DFL);
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    _exit(r > 0 ? 0 : 1);
  }
  return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
         WEXITSTATUS(status) == 0;
#else
  return false;
#endif
}

static int probe_main(bool probe_i386)
{
  struct clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
  } ca;
  pthread_t t;
  void *ret = NULL;
  long r;
  pid_t pid;
  int status;

#define PROBE(name, call)                                                      \
  do {                                                                         \
    errno = 0;                                                                 \
    r = (long)(call);                                                          \
    printf("%s=%s\n", name, r < 0 ? strerror(errno) : "ok");                   \
  } while (0)
  PROBE("unshare", unshare(CLONE_NEWNS));
  PROBE("clone-newuser", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
  memset(&ca, 0, sizeof(ca));
  ca.exit_signal = SIGCHLD;
  PROBE("clone3", syscall(SYS_clone3, &ca, sizeof(ca)));
  PROBE("keyctl", syscall(SYS_keyctl, 0, -1, 0));
  PROBE("bpf", syscall(SYS_bpf, 0, NULL, 0));
  PROBE("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
  PROBE("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
  PROBE("personality-addr-no-randomize", personality(0x0040000));
  PROBE("personality-query", personality(0xffffffff));
  PROBE("personality-linux32", personality(8));
  personality(0);
  /* fork and threads still work: clone without namespace flags, and
   * pthread_create falling back from clone3 */
  pid = fork();
  if (pid == 0)
    _exit(7);
  printf("fork=%s\n", pid > 0 && waitpid(pid, &status, 0) == pid && WEXITSTATUS(status) == 7
                          ? "ok" : "failed");
  printf("thread=%s\n", pthread_create(&t, NULL, probe_thread, &status) == 0 &&
                               pthread_join(t, &ret) == 0 && ret == &status
                           ? "ok" : "failed");
#if defined(__x86_64__)
  /* the same filter for 32-bit calls: keyctl through int $0x80 */
  if (probe_i386)
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(288L), "b"(0L), "c"(-1L), "d"(0L) : "memory");
  if (probe_i386)
    printf("keyctl-i386=%s\n", r < 0 ? strerror((int)-r) : "ok");
#endif
#undef PROBE
  fflush(stdout);
  _exit(0);
}

static void test_seccomp_probe(void)
{
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  cleanup_free char *selfdir = NULL;
  cleanup_free char *probe_root = xasprintf("%s/probe-root", top);
  cleanup_free char *lib = xasprintf("%s/lib", probe_root);
  cleanup_free char *lib64 = xasprintf("%s/lib64", probe_root);
  const char *argv[4];
  const char *lowers[2];
  struct runner_mount m[2];
  struct step s;
  bool i386 = ia32_syscalls_work();
  NEED_BUSYBOX();
  if (n <= 0) {
    unit_fail(__FILE__, __LINE__, "readlink /proc/self/exe");
    return;
  }
  self[n] = '\0';
  selfdir = xstrndup(self, (size_t)(strrchr(self, '/') - self));
  mkdirs(probe_root, 0755);
  (void)symlink("usr/lib", lib);
  (void)symlink("usr/lib64", lib64);
  lowers[0] = probe_root;
  lowers[1] = base;
  m[0] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = "/usr", .target = "/usr",
                                .readonly = true };
  m[1] = (struct runner_mount){ .type = RUNNER_MOUNT_BIND, .source = selfdir, .target = selfdir,
                                .readonly = true };
  argv[0] = self;
  argv[1] = "--probe";
  argv[2] = i386 ? "i386" : NULL;
  argv[3] = NULL;
  step_init(&s, "");
  s.c.argv = argv;
  s.c.lowerdirs = lowers;
  s.c.n_lowerdirs = 2;
  s.c.mounts = m;
  s.c.n_mounts = 2;
  RUN_OK(&s);
  CHECK_CONTAINS(s.out.buf, "unshare=Operation not permitted\n");
  CHECK_CONTAINS(s.out.buf, "clone-newuser=Operation not permitted\n");
  CHECK_CONTAINS(s.out.buf, "clone3=Function not implemented\n");
  CHECK_CONTAINS(s.out.buf, "keyctl=Operation not permitted\n");
  CHECK_CONTAINS(s.out.buf, "bpf=Operation not permitted\n");
  CHECK_CONTAINS(s.out.buf, "io_uring_setup=Operation not permitted\n");
  CHECK_CONTAINS(s.out.buf, "mount=Operation not permitted\n");
  CHECK_CONTAINS(s.out.buf, "personality-addr-no-randomize=Operation not permitted\n");
  CHECK_CONTAINS(s.out.buf, "personality-query=ok\n");
  CHECK_CONTAINS(s.out.buf, "personality-linux32=ok\n");
  CHECK_CONTAINS(s.out.buf, "fork=ok\n");
  CHECK_CONTAINS(s.out.buf, "thread=ok\n");
  if (i386)
    CHECK_CONTAINS(s.out.buf, "keyctl-i386=Operation not permitted\n");
  else
    printf("# this kernel runs no 32-bit system calls: the i386 filter is not probed\n");
  step_release(&s);
}

/* ---- the same, rootless ---- */

static bool helper_mode;

static void test_rootless(void)
{
  struct passwd *pw;
  int pfd[2], status;
  pid_t pid;
  FILE *f;
  char line[4096];
  int ok = 0, notok = 0, plan = -1;

  if (helper_mode || geteuid() != 0) {
    printf("# not root: this run is the rootless one\n");
    return;
  }
  pw = getpwnam(TEST_USER);
  if (!pw) {
    if (system("useradd -m " TEST_USER " >/dev/null 2>&1") != 0 || !(pw = getpwnam(TEST_USER))) {
      unit_fail(__FILE__, __LINE__, "cannot create the user " TEST_USER);
      return;
    }
  }
  if (pipe2(pfd, O_CLOEXEC) < 0)
    return;
  fflush(stdout);
  pid = fork();
  if (pid == 0) {
    dup2(pfd[1], 1);
    dup2(pfd[1], 2);
    if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
      _exit(126);
    setenv("HOME", pw->pw_dir, 1);
    setenv("TMPDIR", "/tmp", 1);
    execl("/proc/self/exe", "test-runner", "--rootless", (char *)NULL);
    _exit(127);
  }
  close(pfd[1]);
  f = fdopen(pfd[0], "r");
  while (f && fgets(line, sizeof(line), f)) {
    if (cb_starts_with(line, "1.."))
      plan = atoi(line + 3);
    if (cb_starts_with(line, "ok "))
      ok++;
    else if (cb_starts_with(line, "not ok "))
      notok++;
    if (!cb_starts_with(line, "ok "))
      printf("# rootless: %s", line);
  }
  if (f)
    fclose(f);
  waitpid(pid, &status, 0);
  printf("# rootless: %d passed, %d failed\n", ok, notok);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK_INT(notok, 0);
  CHECK_INT(ok, plan);
  CHECK(plan > 10);
}

static const struct unit_test tests[] = {
  { "user_resolve", test_user_resolve },
  { "env_build", test_env_build },
  { "wire", test_wire },
  { "cgroup_find", test_cgroup_find },
  { "basic", test_basic },
  { "signal", test_signal },
  { "exec_error", test_exec_error },
  { "pid_namespace", test_pid_namespace },
  { "zombie_reaped", test_zombie_reaped },
  { "signal_forwarded", test_signal_forwarded },
  { "hostname", test_hostname },
  { "env", test_env },
  { "net_none", test_net_none },
  { "net_default", test_net_default },
  { "net_missing_slirp", test_net_missing_slirp },
  { "net_host", test_net_host },
  { "security", test_security },
  { "insecure", test_insecure },
  { "seccomp_probe", test_seccomp_probe },
  { "writes_stay_inside", test_writes_stay_inside },
  { "whiteouts", test_whiteouts },
  { "many_lowerdirs", test_many_lowerdirs },
  { "overlay_errors", test_overlay_errors },
  { "dev_sys", test_dev_sys },
  { "stubs", test_stubs },
  { "mounts", test_mounts },
  { "hostile_symlink", test_hostile_symlink },
  { "extra_mounts", test_extra_mounts },
  { "user", test_user },
  { "cwd", test_cwd },
  { "pids_limit", test_pids_limit },
  { "memory_limit", test_memory_limit },
  { "cpu_limit", test_cpu_limit },
  { "cleanup", test_cleanup },
  { "single_mapping", test_single_mapping },
  { "rootless", test_rootless },
};

/* Whether this process could make a user namespace. */
static bool userns_available(void)
{
  int status;
  pid_t pid = fork();
  if (pid == 0)
    _exit(unshare(CLONE_NEWUSER) == 0 ? 0 : 1);
  return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
         WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
  int rc;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1 && strcmp(argv[1], "--probe") == 0)
    return probe_main(argc > 2 && strcmp(argv[2], "i386") == 0);
  if (argc > 1 && strcmp(argv[1], "--rootless") == 0) {
    helper_mode = true;
    argv[1] = argv[0];
    argc--;
    argv++;
  }
  if (geteuid() != 0 && !userns_available()) {
    printf("1..0 # SKIP not root and no user namespaces\n");
    return 0;
  }
  fixture_setup();
  rc = unit_main(tests, CB_ARRAY_SIZE(tests), argc, argv);
  fixture_teardown();
  return rc;
}
