# The command line: help, version, usage errors (exit 2), build failures
# (exit 1), the build word being optional.
. "$(dirname "$0")/lib.sh"

run_cbuild --version
expect_rc "--version exits 0" 0
check "--version prints the version" grep -q '^cbuild version [0-9]' "$TMP/out"

run_cbuild --help
expect_rc "--help exits 0" 0
check "--help lists the commands" grep -q 'parse' "$TMP/out"

for cmd in build parse; do
  run_cbuild $cmd --help
  expect_rc "$cmd --help exits 0" 0
  check "$cmd --help shows its usage" grep -q "Usage: cbuild.*$cmd\|Usage: cbuild \[build\]" "$TMP/out"
done

run_cbuild build --no-such-flag .
expect_rc "an unknown flag exits 2" 2
expect_eq "a usage error is one line" "$(wc -l <"$TMP/err")" 1
expect_err "the usage error names the flag" '--no-such-flag'

run_cbuild -t app
expect_rc "a missing context exits 2" 2
expect_err "the usage error says what is missing" "build context is required"

run_cbuild --progress=fancy "$TD/example"
expect_rc "a bad --progress exits 2" 2
expect_err "the bad --progress value is named" '"fancy"'

run_cbuild -t 'Bad:Tag' "$TD/example"
expect_rc "an invalid tag exits 2" 2
expect_err "the invalid tag is named" 'Bad:Tag'

run_cbuild -o type=tarball,dest=x "$TD/example"
expect_rc "an unknown output type exits 2" 2
expect_err "the unknown output type is named" 'unsupported type "tarball"'

run_cbuild --build-arg =x "$TD/example"
expect_rc "a build arg without a name exits 2" 2

run_cbuild frobnicate
expect_rc "an unknown command exits 2" 2
expect_err "the unknown command is named" 'unknown command "frobnicate"'

run_cbuild --root "$TMP/root" "$TMP/does-not-exist"
expect_rc "a missing context directory exits 1" 1
expect_err "the missing context is named" "does-not-exist"

# Options after the context, and without the word build, parse the same.
mkdir -p "$TMP/ctx" && printf 'FROM scratch\nCOPY a /a\nCOPY nope\n' >"$TMP/ctx/Dockerfile"
run_cbuild "$TMP/ctx" --root "$TMP/root" -t app --progress plain
expect_rc "a Dockerfile error exits 1" 1
expect_err "the error points at the file and line" "Dockerfile:3: COPY requires at least two arguments"

# -f - reads the Dockerfile from standard input.
printf 'FROM scratch\nFOO bar\n' | "$CBUILD" build --root "$TMP/root" -f - "$TMP/ctx" >"$TMP/out" 2>"$TMP/err"; rc=$?
expect_rc "-f - reads stdin" 1
expect_err "stdin's errors name the Dockerfile" "Dockerfile:2: unknown instruction: FOO"

# The example builds; -q prints only the image ID.
run_cbuild build --root "$TMP/root" -t app:1 --build-arg SITE_VERSION=2 --label a=b --no-cache -q "$TD/example"
expect_rc "build of the example succeeds" 0
check "-q prints the image ID alone" grep -qx 'sha256:[0-9a-f]\{64\}' "$TMP/out"
expect_eq "-q prints nothing else" "$(wc -c <"$TMP/err")" 0

# CBUILD_ROOT chooses the store too; --root wins over it.
CBUILD_ROOT="$TMP/env-root" "$CBUILD" build -q -t fromenv "$TD/example" >"$TMP/out" 2>"$TMP/err"; rc=$?
expect_rc "CBUILD_ROOT build" 0
check "CBUILD_ROOT holds the image" grep -q fromenv "$TMP/env-root/index.json"
CBUILD_ROOT="$TMP/env-root" "$CBUILD" build -q --root "$TMP/flag-root" -t fromflag "$TD/example" >"$TMP/out" 2>"$TMP/err"; rc=$?
check "--root wins over CBUILD_ROOT" grep -q fromflag "$TMP/flag-root/index.json"

# --build-arg K takes the value from the environment.
SITE_VERSION=from-env "$CBUILD" parse --build-arg SITE_VERSION "$TD/example" >"$TMP/out" 2>"$TMP/err"; rc=$?
expect_rc "parse with a bare build arg" 0
expect_eq "a bare build arg comes from the environment" \
  "$(jqo '.stages[1].steps[0].pairs[0].value')" "from-env"

run_cbuild parse --build-arg NOT_DECLARED=1 "$TD/example"
expect_rc "an unused build arg is not an error" 0
check "an unused build arg is warned about" grep -q "warning: .*NOT_DECLARED" "$TMP/err"

finish
