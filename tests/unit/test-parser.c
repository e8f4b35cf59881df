/* Unit tests of the Dockerfile parser: reading, each instruction, heredocs,
 * substitution scopes, the stage graph and every error with its line. */
#include "unit.h"

#include "../../parser/parser.h"

static struct parser_error perr;

static struct parser_dockerfile *parse(const char *text)
{
  struct parser_dockerfile *df = parser_parse("Dockerfile", text, strlen(text), &perr);
  if (!df)
    unit_fail(__FILE__, __LINE__, "parse failed: line %d: %s", perr.line, perr.text);
  return df;
}

/* Parsing must fail on `line` with a message containing `needle`. */
static void parse_fails(const char *text, int line, const char *needle, int at)
{
  struct parser_dockerfile *df = parser_parse("Dockerfile", text, strlen(text), &perr);
  if (df) {
    unit_fail(__FILE__, at, "parse succeeded, expected \"%s\"", needle);
    parser_dockerfile_free(df);
    return;
  }
  if (perr.line != line)
    unit_fail(__FILE__, at, "error on line %d, expected %d (%s)", perr.line, line, perr.text);
  if (!strstr(perr.text, needle))
    unit_fail(__FILE__, at, "error \"%s\" lacks \"%s\"", perr.text, needle);
}
#define PARSE_FAILS(text, line, needle) parse_fails(text, line, needle, __LINE__)

/* Parse, resolve and expand every reachable stage; the expanded steps of
 * stage `want` are returned (the caller frees them with the dockerfile). */
struct expanded {
  struct parser_dockerfile *df;
  struct parser_step *steps;
  size_t n;
  struct parser_vars scope;
  struct strvec used;
  int rc; /* -1 when resolving or expanding failed; perr says why */
};

static void expanded_release(struct expanded *e)
{
  if (e->steps)
    parser_steps_free(e->steps, e->n);
  parser_vars_release(&e->scope);
  strvec_clear(&e->used);
  parser_dockerfile_free(e->df);
  memset(e, 0, sizeof(*e));
}

static struct expanded expand(const char *text, const struct parser_build_args *ba, int want)
{
  struct expanded e;
  struct parser_vars *scopes;
  memset(&e, 0, sizeof(e));
  e.rc = -1;
  e.df = parser_parse("Dockerfile", text, strlen(text), &perr);
  if (!e.df)
    return e;
  if (parser_resolve(e.df, ba, &perr) < 0)
    return e;
  scopes = xcalloc(e.df->n_stages, sizeof(*scopes));
  for (size_t i = 0; i < e.df->n_stages; i++) {
    struct parser_step *steps = NULL;
    int base = e.df->stages[i].base_stage;
    if (!e.df->stages[i].reachable && (int)i != want)
      continue;
    if (base >= 0)
      parser_vars_copy(&scopes[i], &scopes[base]);
    if (parser_stage_expand(e.df, (int)i, ba, &scopes[i], &steps, &e.used, &perr) < 0)
      goto out;
    if ((int)i == want) {
      e.steps = steps;
      e.n = e.df->stages[i].n_steps;
      parser_vars_copy(&e.scope, &scopes[i]);
    } else {
      parser_steps_free(steps, e.df->stages[i].n_steps);
    }
  }
  e.rc = 0;
out:
  for (size_t i = 0; i < e.df->n_stages; i++)
    parser_vars_release(&scopes[i]);
  free(scopes);
  return e;
}

/* Expansion must fail on `line` with `needle`. */
static void expand_fails(const char *text, const struct parser_build_args *ba, int line,
                         const char *needle, int at)
{
  struct expanded e = expand(text, ba, 0);
  if (e.rc == 0)
    unit_fail(__FILE__, at, "expansion succeeded, expected \"%s\"", needle);
  else if (perr.line != line || !strstr(perr.text, needle))
    unit_fail(__FILE__, at, "error line %d \"%s\", expected line %d with \"%s\"", perr.line,
              perr.text, line, needle);
  expanded_release(&e);
}
#define EXPAND_FAILS(text, ba, line, needle) expand_fails(text, ba, line, needle, __LINE__)

/* ---- reading ---- */

static void test_directives(void)
{
  struct parser_dockerfile *df =
      parse("# syntax=docker/dockerfile:1.7\n#check=skip=all\n# escape=`\nFROM a\nRUN echo `\n  b\n");
  if (!df)
    return;
  CHECK_STR(df->directives.syntax, "docker/dockerfile:1.7");
  CHECK_STR(df->directives.check, "skip=all");
  CHECK_INT(df->directives.escape, '`');
  CHECK_STR(df->stages[0].steps[0].args.v[0], "echo   b");
  parser_dockerfile_free(df);

  /* Not at the top: a comment. */
  df = parse("# hello\n# escape=`\nFROM a\nRUN echo \\\n  b\n");
  if (df) {
    CHECK_INT(df->directives.escape, '\\');
    CHECK_STR(df->stages[0].steps[0].args.v[0], "echo   b");
    parser_dockerfile_free(df);
  }
  /* A blank line ends the directives too, and an unknown one. */
  df = parse("\n# syntax=x\nFROM a\n");
  if (df) {
    CHECK(df->directives.syntax == NULL);
    parser_dockerfile_free(df);
  }
  df = parse("# foo=bar\n# syntax=x\nFROM a\n");
  if (df) {
    CHECK(df->directives.syntax == NULL);
    parser_dockerfile_free(df);
  }
  /* Case and spaces do not matter. */
  df = parse("#  SYNTAX = x/y \nFROM a\n");
  if (df) {
    CHECK_STR(df->directives.syntax, "x/y");
    parser_dockerfile_free(df);
  }
  PARSE_FAILS("# escape=`\n# escape=\\\nFROM a\n", 2, "only one escape parser directive");
  PARSE_FAILS("# escape=x\nFROM a\n", 1, "invalid escape token 'x'");
}

static void test_bom_crlf_case(void)
{
  const char text[] = "\xef\xbb\xbf" "from a AS Build\r\nrun echo hi \\\r\n  there\r\nCmd [\"x\"]\r\n";
  struct parser_dockerfile *df = parse(text);
  if (!df)
    return;
  CHECK_INT(df->n_stages, 1);
  CHECK_STR(df->stages[0].name, "build");
  CHECK_INT(df->stages[0].steps[0].instr, PARSER_RUN);
  CHECK_STR(df->stages[0].steps[0].args.v[0], "echo hi   there");
  CHECK_INT(df->stages[0].steps[0].line, 2);
  CHECK_INT(df->stages[0].steps[0].end_line, 3);
  CHECK(df->stages[0].steps[1].json);
  CHECK_INT(df->stages[0].steps[1].line, 4);
  parser_dockerfile_free(df);
}

static void test_continuation(void)
{
  struct parser_dockerfile *df = parse("FROM a\n"
                                       "RUN apt-get update && \\\n"
                                       "# a comment inside\n"
                                       "    # an indented one\n"
                                       "\n"
                                       "    apt-get install -y x \\  \n"
                                       "    && rm -rf /var/lib/apt/lists/*\n"
                                       "   ENV  A=1\n");
  if (!df)
    return;
  CHECK_INT(df->stages[0].n_steps, 2);
  CHECK_STR(df->stages[0].steps[0].args.v[0],
            "apt-get update &&     apt-get install -y x     && rm -rf /var/lib/apt/lists/*");
  CHECK_INT(df->stages[0].steps[0].line, 2);
  CHECK_INT(df->stages[0].steps[0].end_line, 7);
  CHECK_INT(df->stages[0].steps[1].line, 8);
  CHECK_INT(df->warnings.n, 1);
  CHECK_CONTAINS(df->warnings.v[0], "Dockerfile:2: empty continuation line");
  parser_dockerfile_free(df);

  /* A continuation at the end of the file ends the instruction. */
  df = parse("FROM a\nRUN x \\");
  if (df) {
    CHECK_STR(df->stages[0].steps[0].args.v[0], "x");
    parser_dockerfile_free(df);
  }
  /* A '#' after text is not a comment. */
  df = parse("FROM a\nRUN echo # not a comment\n");
  if (df) {
    CHECK_STR(df->stages[0].steps[0].args.v[0], "echo # not a comment");
    parser_dockerfile_free(df);
  }
}

/* ---- instructions ---- */

static void test_run_forms(void)
{
  struct parser_dockerfile *df = parse("FROM a\n"
                                       "RUN [\"/bin/echo\", \"a b\", \"\\u00e9\"]\n"
                                       "RUN [\"echo\", 'single'] \n"
                                       "RUN [\"unterminated\"\n"
                                       "ENTRYPOINT [] \n"
                                       "CMD [\"a\"] extra\n"
                                       "ENTRYPOINT exec app\n");
  const struct parser_step *s;
  if (!df)
    return;
  s = df->stages[0].steps;
  CHECK(s[0].json);
  CHECK_INT(s[0].args.n, 3);
  CHECK_STR(s[0].args.v[1], "a b");
  CHECK_STR(s[0].args.v[2], "\xc3\xa9");
  /* Not valid JSON: the shell form, as written. */
  CHECK(!s[1].json);
  CHECK_STR(s[1].args.v[0], "[\"echo\", 'single']");
  CHECK(!s[2].json);
  CHECK(s[3].json);
  CHECK_INT(s[3].args.n, 0);
  CHECK(!s[4].json);
  CHECK_STR(s[4].args.v[0], "[\"a\"] extra");
  CHECK(!s[5].json);
  CHECK_STR(s[5].args.v[0], "exec app");
  parser_dockerfile_free(df);
  PARSE_FAILS("FROM a\nRUN [\"a\", 1]\n", 2, "JSON array must hold only strings");
  PARSE_FAILS("FROM a\nRUN\n", 2, "RUN requires at least one argument");
  PARSE_FAILS("FROM a\nRUN []\n", 2, "RUN requires at least one argument");
  PARSE_FAILS("FROM a\nCMD   \n", 2, "CMD requires at least one argument");
}

static void test_run_flags(void)
{
  static const char text[] =
      "FROM a\n"
      "RUN --mount=type=cache,target=/root/.cache,id=go,sharing=locked,uid=1000,mode=0700 "
      "--mount=type=bind,from=src,source=/x,target=/y --mount=type=tmpfs,target=/t,size=64m "
      "--mount=type=secret,id=tok,required --mount=target=/b,rw "
      "--network=none --security=insecure make\n"
      "FROM a AS src\n";
  struct expanded e = expand(text, NULL, 0);
  const struct parser_step *s;
  if (e.rc < 0) {
    unit_fail(__FILE__, __LINE__, "expand: %d %s", perr.line, perr.text);
    expanded_release(&e);
    return;
  }
  s = &e.steps[0];
  CHECK_STR(s->args.v[0], "make");
  CHECK_INT(s->network, PARSER_NET_NONE);
  CHECK_INT(s->security, PARSER_SECURITY_INSECURE);
  CHECK_INT(s->n_mounts, 5);
  if (s->n_mounts == 5) {
    CHECK_INT(s->mounts[0].type, PARSER_MOUNT_CACHE);
    CHECK_STR(s->mounts[0].target, "/root/.cache");
    CHECK_STR(s->mounts[0].id, "go");
    CHECK_INT(s->mounts[0].sharing, PARSER_SHARING_LOCKED);
    CHECK_INT(s->mounts[0].uid, 1000);
    CHECK_INT(s->mounts[0].mode, 0700);
    CHECK(!s->mounts[0].readonly);
    CHECK_INT(s->mounts[1].type, PARSER_MOUNT_BIND);
    CHECK(s->mounts[1].readonly);
    CHECK_STR(s->mounts[1].from, "src");
    CHECK_INT(s->mounts[1].from_stage, 1);
    CHECK_INT(s->mounts[2].type, PARSER_MOUNT_TMPFS);
    CHECK_INT(s->mounts[2].size, 64LL << 20);
    CHECK_INT(s->mounts[3].type, PARSER_MOUNT_SECRET);
    CHECK_STR(s->mounts[3].target, "/run/secrets/tok");
    CHECK(s->mounts[3].required);
    CHECK_INT(s->mounts[4].type, PARSER_MOUNT_BIND);
    CHECK(!s->mounts[4].readonly);
  }
  /* The mount's from= makes stage 1 reachable. */
  CHECK(e.df->stages[1].reachable);
  expanded_release(&e);

  PARSE_FAILS("FROM a\nRUN --network=bridge x\n", 2, "unsupported network mode \"bridge\"");
  PARSE_FAILS("FROM a\nRUN --security=x x\n", 2, "unsupported security mode");
  PARSE_FAILS("FROM a\nRUN --foo=bar x\n", 2, "unknown flag: --foo");
  PARSE_FAILS("FROM a\nRUN --network x\n", 2, "missing a value on flag: --network");
  PARSE_FAILS("FROM a\nRUN --network=none --network=host x\n", 2, "duplicate flag");
  EXPAND_FAILS("FROM a\nRUN --mount=type=nfs,target=/x x\n", NULL, 2, "unsupported mount type");
  EXPAND_FAILS("FROM a\nRUN --mount=type=cache x\n", NULL, 2, "requires a target");
  EXPAND_FAILS("FROM a\nRUN --mount=type=cache,target=/x,sharing=no x\n", NULL, 2,
               "unsupported sharing value");
  EXPAND_FAILS("FROM a\nRUN --mount=type=bind,target=/x,color=red x\n", NULL, 2,
               "unexpected key \"color\"");
}

static void test_copy_add(void)
{
  static const char text[] = "FROM a AS one\n"
                             "FROM a\n"
                             "ENV D=/dst\n"
                             "COPY --from=one --chown=app:app --chmod=644 --link --parents "
                             "--exclude=*.md --exclude=tmp a b $D/\n"
                             "COPY [\"x y\", \"${D}/z\"]\n"
                             "ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d "
                             "--keep-git-dir=true --chown=${D} https://example.com/f /f\n"
                             "COPY --from=0 --link=false x /\n";
  struct expanded e = expand(text, NULL, 1);
  const struct parser_step *s;
  if (e.rc < 0) {
    unit_fail(__FILE__, __LINE__, "expand: %d %s", perr.line, perr.text);
    expanded_release(&e);
    return;
  }
  s = e.steps;
  CHECK_STR(s[1].from, "one");
  CHECK_INT(s[1].from_stage, 0);
  CHECK_STR(s[1].chown, "app:app");
  CHECK_STR(s[1].chmod, "644");
  CHECK(s[1].link);
  CHECK(s[1].parents);
  CHECK_INT(s[1].excludes.n, 2);
  CHECK_INT(s[1].args.n, 3);
  CHECK_STR(s[1].args.v[2], "/dst/");
  CHECK(s[2].json);
  CHECK_STR(s[2].args.v[0], "x y");
  CHECK_STR(s[2].args.v[1], "/dst/z");
  CHECK_STR(s[3].chown, "/dst");
  CHECK(s[3].keep_git_dir);
  CHECK_CONTAINS(s[3].checksum, "sha256:2445");
  CHECK_INT(s[4].from_stage, 0);
  CHECK(!s[4].link);
  CHECK(e.df->stages[0].reachable);
  expanded_release(&e);

  PARSE_FAILS("FROM a\nCOPY onlyone\n", 2, "COPY requires at least two arguments");
  PARSE_FAILS("FROM a\nADD --from=x a b\n", 2, "unknown flag: --from");
  PARSE_FAILS("FROM a\nCOPY --checksum=sha256:00 a b\n", 2, "unknown flag: --checksum");
  PARSE_FAILS("FROM a\nCOPY --link=maybe a b\n", 2, "expecting boolean value for flag --link");
  EXPAND_FAILS("FROM a\nCOPY --chmod=999 a b\n", NULL, 2, "invalid --chmod \"999\"");
  EXPAND_FAILS("FROM a\nADD --checksum=md5:abc a b\n", NULL, 2, "invalid --checksum");
}

static void test_env_label_arg(void)
{
  static const char text[] = "FROM a\n"
                             "ENV A=1 B=\"two words\" C='$A' D=\\$A\n"
                             "ENV LEGACY some value  with spaces\n"
                             "ENV A=2 E=$A\n"
                             "LABEL \"com.example.vendor\"=\"ACME Inc\" version=$A\n"
                             "LABEL old style\n"
                             "ARG X Y=y Z=$A\n";
  struct expanded e = expand(text, NULL, 0);
  const struct parser_step *s;
  if (e.rc < 0) {
    unit_fail(__FILE__, __LINE__, "expand: %d %s", perr.line, perr.text);
    expanded_release(&e);
    return;
  }
  s = e.steps;
  CHECK_INT(s[0].n_kvs, 4);
  CHECK_STR(s[0].kvs[1].value, "two words");
  CHECK_STR(s[0].kvs[2].value, "$A");
  CHECK_STR(s[0].kvs[3].value, "$A");
  CHECK(s[1].legacy_kv);
  CHECK_STR(s[1].kvs[0].key, "LEGACY");
  CHECK_STR(s[1].kvs[0].value, "some value  with spaces");
  /* One instruction sees one value of each variable: E gets the old A. */
  CHECK_STR(s[2].kvs[1].value, "1");
  CHECK_STR(parser_vars_get(&e.scope, "A"), "2");
  CHECK_STR(s[3].kvs[0].key, "com.example.vendor");
  CHECK_STR(s[3].kvs[0].value, "ACME Inc");
  CHECK_STR(s[3].kvs[1].value, "2");
  CHECK_STR(s[4].kvs[0].key, "old");
  CHECK_STR(s[4].kvs[0].value, "style");
  CHECK_INT(s[5].n_kvs, 3);
  CHECK(s[5].kvs[0].value == NULL);
  CHECK_STR(s[5].kvs[1].value, "y");
  CHECK_STR(s[5].kvs[2].value, "2");
  CHECK(parser_vars_get(&e.scope, "X") == NULL);
  expanded_release(&e);

  PARSE_FAILS("FROM a\nENV\n", 2, "ENV requires at least one argument");
  PARSE_FAILS("FROM a\nENV onlykey\n", 2, "ENV must have two arguments");
  PARSE_FAILS("FROM a\nENV a=1 b\n", 2, "can't find = in \"b\"");
  PARSE_FAILS("FROM a\nENV =x\n", 2, "ENV names can not be blank");
  PARSE_FAILS("FROM a\nARG =x\n", 2, "ARG names can not be blank");
  PARSE_FAILS("FROM a\nLABEL\n", 2, "LABEL requires at least one argument");
  PARSE_FAILS("FROM a\nENV --x=1 a=b\n", 2, "unknown flag: --x");
}

static void test_simple_instructions(void)
{
  static const char text[] = "FROM a\n"
                             "ENV P=8080 DIR=/srv\n"
                             "EXPOSE 80 $P/udp 9000-9002/TCP\n"
                             "WORKDIR ${DIR}/app dir\n"
                             "USER ${DIR%/srv}nobody:nogroup\n"
                             "VOLUME /data $DIR\n"
                             "VOLUME [\"/v1\", \"/v2\"]\n"
                             "STOPSIGNAL SIGQUIT\n"
                             "STOPSIGNAL 9\n"
                             "SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]\n"
                             "MAINTAINER Jane <jane@example.com>\n"
                             "ONBUILD COPY . /app\n";
  struct expanded e = expand(text, NULL, 0);
  const struct parser_step *s;
  if (e.rc < 0) {
    unit_fail(__FILE__, __LINE__, "expand: %d %s", perr.line, perr.text);
    expanded_release(&e);
    return;
  }
  s = e.steps;
  CHECK_INT(s[1].args.n, 5);
  CHECK_STR(s[1].args.v[0], "80/tcp");
  CHECK_STR(s[1].args.v[1], "8080/udp");
  CHECK_STR(s[1].args.v[2], "9000/tcp");
  CHECK_STR(s[1].args.v[4], "9002/tcp");
  CHECK_STR(s[2].args.v[0], "/srv/app dir");
  CHECK_STR(s[3].args.v[0], "nobody:nogroup");
  CHECK_INT(s[4].args.n, 2);
  CHECK_STR(s[4].args.v[1], "/srv");
  CHECK(s[5].json);
  CHECK_STR(s[5].args.v[1], "/v2");
  CHECK_STR(s[6].args.v[0], "SIGQUIT");
  CHECK_STR(s[7].args.v[0], "9");
  CHECK_INT(s[8].args.n, 4);
  CHECK_STR(s[9].args.v[0], "Jane <jane@example.com>");
  CHECK_STR(s[10].args.v[0], "COPY . /app");
  CHECK(s[10].trigger && s[10].trigger->instr == PARSER_COPY);
  CHECK_INT(e.df->warnings.n, 1); /* MAINTAINER is deprecated */
  expanded_release(&e);

  EXPAND_FAILS("FROM a\nEXPOSE 80/foo\n", NULL, 2, "invalid proto: foo");
  EXPAND_FAILS("FROM a\nEXPOSE 70000\n", NULL, 2, "invalid port \"70000\"");
  EXPAND_FAILS("FROM a\nEXPOSE 90-80\n", NULL, 2, "invalid port range");
  EXPAND_FAILS("FROM a\nSTOPSIGNAL SIGFOO\n", NULL, 2, "invalid signal \"SIGFOO\"");
  EXPAND_FAILS("FROM a\nWORKDIR $NOPE\n", NULL, 2, "expands to an empty value");
  PARSE_FAILS("FROM a\nEXPOSE\n", 2, "EXPOSE requires at least one argument");
  PARSE_FAILS("FROM a\nWORKDIR\n", 2, "WORKDIR requires exactly one argument");
  PARSE_FAILS("FROM a\nSTOPSIGNAL 1 2\n", 2, "STOPSIGNAL requires exactly one argument");
  PARSE_FAILS("FROM a\nSHELL /bin/sh -c\n", 2, "SHELL requires the arguments to be in JSON form");
  PARSE_FAILS("FROM a\nVOLUME [\"\"]\n", 2, "VOLUME specified can not be an empty string");
  PARSE_FAILS("FROM a\nONBUILD ONBUILD RUN x\n", 2, "chaining ONBUILD");
  PARSE_FAILS("FROM a\nONBUILD FROM b\n", 2, "FROM isn't allowed as an ONBUILD trigger");
  PARSE_FAILS("FROM a\nONBUILD maintainer x\n", 2, "isn't allowed as an ONBUILD trigger");
  PARSE_FAILS("FROM a\nONBUILD\n", 2, "ONBUILD requires at least one argument");
}

static void test_healthcheck(void)
{
  struct parser_dockerfile *df =
      parse("FROM a\n"
            "HEALTHCHECK --interval=1m30s --timeout=10s --start-period=0.5s --start-interval=2s "
            "--retries=5 CMD [\"curl\", \"-f\", \"http://localhost/\"]\n"
            "HEALTHCHECK CMD wget -q -O- localhost || exit 1\n"
            "healthcheck none\n");
  const struct parser_step *s;
  if (!df)
    return;
  s = df->stages[0].steps;
  CHECK_INT(s[0].health.test.n, 4);
  CHECK_STR(s[0].health.test.v[0], "CMD");
  CHECK_INT(s[0].health.interval_ns, 90000000000LL);
  CHECK_INT(s[0].health.timeout_ns, 10000000000LL);
  CHECK_INT(s[0].health.start_period_ns, 500000000LL);
  CHECK_INT(s[0].health.start_interval_ns, 2000000000LL);
  CHECK_INT(s[0].health.retries, 5);
  CHECK_STR(s[1].health.test.v[0], "CMD-SHELL");
  CHECK_STR(s[1].health.test.v[1], "wget -q -O- localhost || exit 1");
  CHECK(s[2].health_none);
  CHECK_STR(s[2].health.test.v[0], "NONE");
  parser_dockerfile_free(df);

  PARSE_FAILS("FROM a\nHEALTHCHECK --interval=5 CMD x\n", 2, "invalid duration \"5\"");
  PARSE_FAILS("FROM a\nHEALTHCHECK --timeout=1h2x CMD x\n", 2, "invalid duration");
  PARSE_FAILS("FROM a\nHEALTHCHECK --interval=-1s CMD x\n", 2, "cannot be negative");
  PARSE_FAILS("FROM a\nHEALTHCHECK --interval=10us CMD x\n", 2, "cannot be less than 1ms");
  PARSE_FAILS("FROM a\nHEALTHCHECK --retries=-1 CMD x\n", 2, "--retries cannot be negative");
  PARSE_FAILS("FROM a\nHEALTHCHECK --retries=x CMD x\n", 2, "invalid --retries");
  PARSE_FAILS("FROM a\nHEALTHCHECK NONE x\n", 2, "HEALTHCHECK NONE takes no arguments");
  PARSE_FAILS("FROM a\nHEALTHCHECK CMD\n", 2, "missing command after HEALTHCHECK CMD");
  PARSE_FAILS("FROM a\nHEALTHCHECK RUN x\n", 2, "unknown type \"RUN\" in HEALTHCHECK");
  PARSE_FAILS("FROM a\nHEALTHCHECK --bogus=1 CMD x\n", 2, "unknown flag: --bogus");
}

static void test_durations(void)
{
  int64_t ns = -1;
  CHECK_INT(parser_duration("0", &ns), 0);
  CHECK_INT(ns, 0);
  CHECK_INT(parser_duration("1h2m3s", &ns), 0);
  CHECK_INT(ns, 3723000000000LL);
  CHECK_INT(parser_duration("1.5s", &ns), 0);
  CHECK_INT(ns, 1500000000LL);
  CHECK_INT(parser_duration(".5ms", &ns), 0);
  CHECK_INT(ns, 500000LL);
  CHECK_INT(parser_duration("3\xc2\xb5s", &ns), 0);
  CHECK_INT(ns, 3000);
  CHECK_INT(parser_duration("-2m", &ns), 0);
  CHECK_INT(ns, -120000000000LL);
  CHECK_INT(parser_duration("", &ns), -1);
  CHECK_INT(parser_duration("5", &ns), -1);
  CHECK_INT(parser_duration("s", &ns), -1);
  CHECK_INT(parser_duration("1d", &ns), -1);
  CHECK_INT(parser_duration(".s", &ns), -1);
  CHECK_INT(parser_duration("99999999999h", &ns), -1);
}

/* ---- heredocs ---- */

static void test_heredocs(void)
{
  static const char text[] = "FROM a\n"
                             "ENV NAME=world\n"
                             "RUN <<EOF\n"
                             "echo hello $NAME\n"
                             "EOF\n"
                             "RUN <<-EOT bash -e\n"
                             "\techo tabbed\n"
                             "\t\tEOT\n"
                             "COPY <<one <<\"two\" /dest/\n"
                             "first $NAME\n"
                             "one\n"
                             "second $NAME\n"
                             "two\n"
                             "RUN 3<<'X' cat <&3\n"
                             "x\n"
                             "X\n"
                             "RUN echo done\n";
  struct expanded e = expand(text, NULL, 0);
  const struct parser_step *s;
  if (e.rc < 0) {
    unit_fail(__FILE__, __LINE__, "expand: %d %s", perr.line, perr.text);
    expanded_release(&e);
    return;
  }
  s = e.steps;
  CHECK_INT(e.n, 6);
  if (e.n != 6) {
    expanded_release(&e);
    return;
  }
  CHECK_INT(s[1].n_heredocs, 1);
  CHECK_STR(s[1].heredocs[0].name, "EOF");
  CHECK_STR(s[1].heredocs[0].content, "echo hello $NAME\n"); /* the shell expands RUN's */
  CHECK(s[1].heredocs[0].expand);
  CHECK_INT(s[1].line, 3);
  CHECK_INT(s[1].end_line, 5);
  CHECK(s[2].heredocs[0].chomp);
  CHECK_STR(s[2].heredocs[0].content, "echo tabbed\n");
  CHECK_INT(s[2].end_line, 8);
  CHECK_INT(s[3].line, 9);
  CHECK_INT(s[3].n_heredocs, 2);
  CHECK_STR(s[3].heredocs[0].content, "first world\n"); /* COPY expands unquoted */
  CHECK(!s[3].heredocs[1].expand);
  CHECK_STR(s[3].heredocs[1].name, "two");
  CHECK_STR(s[3].heredocs[1].content, "second $NAME\n");
  CHECK_INT(s[4].heredocs[0].fd, 3);
  CHECK(!s[4].heredocs[0].expand);
  CHECK_STR(s[5].args.v[0], "echo done");
  CHECK_INT(s[5].line, 17);
  expanded_release(&e);

  PARSE_FAILS("FROM a\nRUN <<EOF\necho\n", 2, "unterminated heredoc \"EOF\"");
  PARSE_FAILS("FROM a\nCOPY <<A <<B /x\na\nA\nb\n", 2, "unterminated heredoc \"B\"");
}

/* ---- substitution scopes and stages ---- */

static void test_arg_scopes(void)
{
  static const char text[] = "ARG BASE=alpine TAG=3.19\n"
                             "ARG IMG=${BASE}:${TAG}\n"
                             "FROM $IMG AS one\n"
                             "RUN echo\n"
                             "FROM --platform=$BUILDPLATFORM ${BASE} AS two\n"
                             "ENV FROMENV=$TAG\n"
                             "ARG TAG\n"
                             "ARG NEW=default\n"
                             "ENV SHADOW=env\n"
                             "ARG SHADOW=arg\n"
                             "ARG TARGETARCH\n"
                             "WORKDIR /$TAG/$NEW/$SHADOW/$TARGETARCH\n";
  struct parser_build_args ba = { 0 };
  struct expanded e;
  parser_build_args_set(&ba, "NEW", "given");
  parser_build_args_set(&ba, "UNUSED", "x");
  ba.target_platform = "linux/arm64/v8";
  e = expand(text, &ba, 1);
  if (e.rc < 0) {
    unit_fail(__FILE__, __LINE__, "expand: %d %s", perr.line, perr.text);
    expanded_release(&e);
    parser_build_args_release(&ba);
    return;
  }
  CHECK_STR(e.df->stages[0].base, "alpine:3.19");
  CHECK_STR(e.df->stages[1].base, "alpine");
  CHECK_STR(e.df->stages[1].platform, parser_host_platform());
  /* A global ARG is not visible in a stage until declared again. */
  CHECK_STR(e.steps[0].kvs[0].value, "");
  CHECK_STR(e.steps[1].kvs[0].value, "3.19");
  CHECK_STR(e.steps[2].kvs[0].value, "given");
  /* ENV wins over ARG. */
  CHECK_STR(e.steps[6].args.v[0], "/3.19/given/env/arm64");
  CHECK(strvec_find(&e.used, "NEW") >= 0);
  CHECK(strvec_find(&e.used, "UNUSED") < 0);
  CHECK_INT(e.df->target, 1);
  CHECK(!e.df->stages[0].reachable);
  expanded_release(&e);

  /* A build arg overrides a global default and reaches FROM. */
  parser_build_args_set(&ba, "TAG", "edge");
  e = expand(text, &ba, 1);
  if (e.rc == 0) {
    CHECK_STR(e.df->stages[0].base, "alpine:edge");
    CHECK_STR(e.steps[1].kvs[0].value, "edge");
  }
  expanded_release(&e);
  parser_build_args_release(&ba);

  EXPAND_FAILS("FROM a\nARG REQUIRED\nRUN x\nCOPY ${REQUIRED:?required} /\n", NULL, 4,
               "REQUIRED: required");
  EXPAND_FAILS("ARG V\nFROM a:${V:?}\n", NULL, 2, "V: is not allowed to be unset");
  EXPAND_FAILS("ARG V\nFROM $V\n", NULL, 2, "base name ($V) should not be blank");
}

static void test_stage_graph(void)
{
  static const char text[] = "FROM a AS base\n"
                             "FROM base AS build\n"
                             "RUN make\n"
                             "FROM a AS broken\n"
                             "COPY --from=nowhere:latest /x /x\n"
                             "FROM scratch AS final\n"
                             "COPY --from=build /out /\n"
                             "COPY --from=0 /etc/passwd /etc/\n"
                             "FROM final AS extra\n";
  struct parser_build_args ba = { 0 };
  struct parser_dockerfile *df = parse(text);
  if (!df)
    return;
  ba.target = "FINAL";
  CHECK_INT(parser_resolve(df, &ba, &perr), 0);
  CHECK_INT(df->target, 3);
  CHECK_INT(df->stages[1].base_stage, 0);
  CHECK(df->stages[3].base_scratch);
  CHECK(df->stages[0].reachable && df->stages[1].reachable && df->stages[3].reachable);
  CHECK(!df->stages[2].reachable);
  CHECK(!df->stages[4].reachable);
  CHECK_INT(df->stages[2].steps[0].from_stage, -1); /* an image */
  CHECK_INT(parser_stage_find(df, "Build"), 1);
  /* Without a target, the last stage. */
  CHECK_INT(parser_resolve(df, NULL, &perr), 0);
  CHECK_INT(df->target, 4);
  CHECK(df->stages[3].reachable);
  ba.target = "nope";
  CHECK_INT(parser_resolve(df, &ba, &perr), -1);
  CHECK_CONTAINS(perr.text, "target stage \"nope\" could not be found");
  parser_dockerfile_free(df);

  /* FROM names only earlier stages; a later name is an image. */
  df = parse("FROM later\nFROM a AS later\n");
  if (df) {
    CHECK_INT(parser_resolve(df, NULL, &perr), 0);
    CHECK_INT(df->stages[0].base_stage, -1);
    parser_dockerfile_free(df);
  }
  EXPAND_FAILS("FROM a AS x\nCOPY --from=y /a /a\nFROM a AS y\nCOPY --from=x /b /b\n", NULL, 3,
               "circular dependency");
  EXPAND_FAILS("FROM a\nCOPY --from=x /a /a\nFROM a AS x\nCOPY --from=0 /b /b\n", NULL, 3,
               "circular dependency");
  EXPAND_FAILS("FROM a\nCOPY --from=7 /a /a\n", NULL, 2, "invalid stage index 7");
  EXPAND_FAILS("FROM a\nARG S=x\nCOPY --from=$S /a /a\n", NULL, 3,
               "variable expansion is not supported for --from");
  PARSE_FAILS("FROM a AS x\nFROM b AS X\n", 2, "duplicate stage name \"x\", first defined on line 1");
  PARSE_FAILS("FROM a AS 1x\n", 1, "invalid name for build stage");
  PARSE_FAILS("FROM a b c\n", 1, "second of three arguments must be \"AS\"");
  PARSE_FAILS("FROM a AS\n", 1, "FROM requires either one or three arguments");
  PARSE_FAILS("FROM\n", 1, "FROM requires either one or three arguments");
  PARSE_FAILS("FROM --platform a\n", 1, "missing a value on flag: --platform");
}

static void test_top_level_errors(void)
{
  PARSE_FAILS("", 1, "no instructions");
  PARSE_FAILS("# only a comment\n\n", 2, "no instructions");
  PARSE_FAILS("ARG A\n", 1, "no FROM instruction");
  PARSE_FAILS("ARG A\nRUN x\nFROM a\n", 2, "RUN before the first FROM");
  PARSE_FAILS("FROM a\n\nFOO bar\n", 3, "unknown instruction: FOO");
  {
    static const char nul[] = "FROM a\nRUN x\0y\n";
    struct parser_dockerfile *df = parser_parse("Dockerfile", nul, sizeof(nul) - 1, &perr);
    CHECK(df == NULL);
    CHECK_INT(perr.line, 2);
    CHECK_CONTAINS(perr.text, "NUL");
    parser_dockerfile_free(df);
  }
}

static void test_run_env(void)
{
  struct parser_vars scope = PARSER_VARS_INIT;
  struct parser_build_args ba = { 0 };
  struct strvec env = STRVEC_INIT;
  parser_vars_set(&scope, "A", "arg", PARSER_VAR_ARG);
  parser_vars_set(&scope, "A", "env", PARSER_VAR_ENV);
  parser_vars_set(&scope, "B", NULL, PARSER_VAR_ARG);
  parser_build_args_set(&ba, "http_proxy", "http://proxy:3128");
  parser_build_args_set(&ba, "OTHER", "x");
  parser_run_env(&scope, &ba, &env);
  CHECK_INT(env.n, 2);
  CHECK(strvec_find(&env, "http_proxy=http://proxy:3128") >= 0);
  CHECK(strvec_find(&env, "A=env") >= 0);
  strvec_clear(&env);
  parser_vars_release(&scope);
  parser_build_args_release(&ba);
}

static const struct unit_test tests[] = {
  { "directives", test_directives },
  { "bom_crlf_case", test_bom_crlf_case },
  { "continuation", test_continuation },
  { "run_forms", test_run_forms },
  { "run_flags", test_run_flags },
  { "copy_add", test_copy_add },
  { "env_label_arg", test_env_label_arg },
  { "simple_instructions", test_simple_instructions },
  { "healthcheck", test_healthcheck },
  { "durations", test_durations },
  { "heredocs", test_heredocs },
  { "arg_scopes", test_arg_scopes },
  { "stage_graph", test_stage_graph },
  { "top_level_errors", test_top_level_errors },
  { "run_env", test_run_env },
};
UNIT_MAIN(tests)
