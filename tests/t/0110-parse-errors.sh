# `cbuild parse` on bad Dockerfiles: every error names FILE:LINE and what
# is wrong, exits 1 and prints nothing on stdout.
. "$(dirname "$0")/lib.sh"

# bad_df NAME LINE TEXT DOCKERFILE [ARGS...]
bad_df() {
  local name=$1 line=$2 text=$3 content=$4
  shift 4
  printf '%b' "$content" >"$TMP/Dockerfile"
  run_cbuild parse -f "$TMP/Dockerfile" "$@"
  # One line: "cbuild: FILE:LINE: ...TEXT..."
  if [ "$rc" -eq 1 ] && [ ! -s "$TMP/out" ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] &&
     grep -q "^cbuild: $TMP/Dockerfile:$line: " "$TMP/err" && grep -qF -- "$text" "$TMP/err"; then
    ok "$name"
  else
    not_ok "$name" "rc=$rc, want 1 and \"$TMP/Dockerfile:$line: ...$text\"" "stderr: $(cat "$TMP/err")"
  fi
}

bad_df "unknown instruction" 3 "unknown instruction: COPYY" 'FROM a\nRUN x\nCOPYY a b\n'
bad_df "missing arguments" 2 "COPY requires at least two arguments" 'FROM a\nCOPY a\n'
bad_df "extra arguments" 1 "FROM requires either one or three arguments" 'FROM a b\n'
bad_df "unknown flag" 2 "unknown flag: --mount" 'FROM a\nCOPY --mount=x a b\n'
bad_df "bad flag value" 2 "unsupported network mode" 'FROM a\nRUN --network=bridge x\n'
bad_df "bad boolean flag value" 2 "expecting boolean value" 'FROM a\nCOPY --link=yes a b\n'
bad_df "unterminated heredoc" 2 'unterminated heredoc "EOF"' 'FROM a\nRUN <<EOF\necho\n'
bad_df "required variable unset" 3 "V: is not allowed to be unset" 'FROM a\nARG V\nWORKDIR ${V:?}\n'
bad_df "required variable message" 3 "V: set-V-please" 'FROM a\nARG V\nWORKDIR ${V?set-V-please}\n'
bad_df "duplicate stage name" 3 'duplicate stage name "b"' 'FROM a AS b\nRUN x\nFROM a AS B\n'
bad_df "--from naming nothing" 2 '"Not-A-Stage" names no stage and is not a valid image reference' 'FROM a\nCOPY --from=Not-A-Stage /a /b\n'
bad_df "--from index out of range" 2 "invalid stage index 3" 'FROM a\nCOPY --from=3 /a /b\n'
bad_df "instruction before FROM" 2 "RUN before the first FROM" 'ARG A\nRUN x\nFROM a\n'
bad_df "empty Dockerfile" 1 "no instructions" ''
bad_df "only comments" 2 "no instructions" '# a\n# b\n'
bad_df "bad EXPOSE protocol" 2 "invalid proto: tpc" 'FROM a\nEXPOSE 80/tpc\n'
bad_df "bad HEALTHCHECK duration" 2 'invalid duration "10"' 'FROM a\nHEALTHCHECK --interval=10 CMD x\n'
bad_df "bad escape directive" 1 "invalid escape token" '# escape=x\nFROM a\n'
bad_df "circular stages" 3 "circular dependency" 'FROM a AS x\nCOPY --from=y /a /a\nFROM a AS y\nCOPY --from=x /a /a\n'
bad_df "FROM with an invalid image name" 1 'names no earlier stage and is not a valid image reference' 'FROM Bad/Name\n'
bad_df "blank base name" 2 'base name ($B) should not be blank' 'ARG B\nFROM $B\n'

# The unknown target has no line: the message still names the file.
printf 'FROM a AS one\n' >"$TMP/Dockerfile"
run_cbuild parse -f "$TMP/Dockerfile" --target two
expect_rc "an unknown target exits 1" 1
expect_err "an unknown target is named" "$TMP/Dockerfile: target stage \"two\" could not be found"

# A missing Dockerfile.
run_cbuild parse -f "$TMP/nope/Dockerfile"
expect_rc "a missing Dockerfile exits 1" 1
expect_err "a missing Dockerfile is named" "$TMP/nope/Dockerfile"

finish
