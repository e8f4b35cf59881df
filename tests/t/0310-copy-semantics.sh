# COPY and ADD follow Docker's rules.  Each image is unpacked with umoci,
# which applies the layers as a runtime would, and the tree is checked:
# paths, modes, owners, symlinks, hardlinks, contents, xattrs.
. "$(dirname "$0")/lib.sh"

export SOURCE_DATE_EPOCH=1700000000
R=$TMP/root
rootless=()
[ "$(id -u)" -eq 0 ] || rootless=(--rootless)

# unpack TAG DIR: unpack an image of the store into the bundle DIR
unpack() {
  rm -rf "$2"
  umoci unpack "${rootless[@]}" --image "$R:$1" "$2" >"$TMP/umoci.log" 2>&1
}

# st PATH: "TYPE MODE UID:GID" of a path of the unpacked tree
st() { stat -c '%F %a %u:%g' "$F/$1" 2>&1; }

# ---- a base image with /etc/passwd, /etc/group, a WORKDIR and a directory ----
B=$TMP/base
mkdir -p "$B/etc" "$B/existing"
printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1234:2345::/home/alice:/bin/sh\n' >"$B/etc/passwd"
printf 'root:x:0:\nusers:x:2345:\nstaff:x:3456:alice\n' >"$B/etc/group"
echo old >"$B/existing/old"
printf 'FROM scratch\nCOPY etc /etc/\nCOPY existing /existing\nWORKDIR /app\n' >"$B/Dockerfile"
run_cbuild build --root "$R" -t base -q "$B"
expect_rc "the base image builds" 0

# ---- the context ----
C=$TMP/ctx
mkdir -p "$C/dir/sub" "$C/dir/empty" "$C/ign/secret" "$C/ign/deep" "$C/arch/tree/sub"
echo a >"$C/a.txt"
echo b >"$C/b.txt"
echo c >"$C/c.md"
echo f1 >"$C/dir/f1"
echo f2 >"$C/dir/sub/f2"
chmod 0751 "$C/dir/f1"
chmod 0700 "$C/dir/sub"
ln -s f1 "$C/dir/link"
ln -s ../../etc/passwd "$C/dir/sub/uplink"
ln -s /etc/hostname "$C/dir/abslink"
ln "$C/dir/f1" "$C/dir/hard"
ln -s a.txt "$C/named-link"
ln -s dir/sub "$C/dirlink"
echo keep >"$C/ign/keep.md"
echo drop >"$C/ign/drop.md"
echo s >"$C/ign/secret/key"
echo t >"$C/ign/deep/x.tmp"
echo kept >"$C/ign/deep/y.txt"
printf 'ign/*.md\n!ign/keep.md\nign/secret\n**/*.tmp\n' >"$C/.dockerignore"
# archives of one tree, made by tar and the compressors
echo in-archive >"$C/arch/tree/file"
echo deeper >"$C/arch/tree/sub/g"
chmod 0640 "$C/arch/tree/file"
ln -s file "$C/arch/tree/alink"
ln "$C/arch/tree/file" "$C/arch/tree/hlink"
tar --numeric-owner --owner=1001 --group=1002 -C "$C/arch/tree" -cf "$C/t.tar" .
gzip -9 -c "$C/t.tar" >"$C/t.tar.gz"
bzip2 -c "$C/t.tar" >"$C/t.tar.bz2"
xz -c "$C/t.tar" >"$C/t.tar.xz"
zstd -q -c "$C/t.tar" >"$C/t.tar.zst"
cp "$C/t.tar.gz" "$C/no-extension"
echo 'not an archive' >"$C/fake.tar.gz"
echo 'gzip but no tar inside' | gzip -c >"$C/single.gz"
rm -rf "$C/arch"
# a user.* xattr, when this filesystem takes one
xattr_ok=false
echo x >"$C/xattr-file"
setfattr -n user.cbuild -v hello "$C/xattr-file" 2>/dev/null && xattr_ok=true

cat >"$C/Dockerfile" <<'DF'
FROM base
ARG NAME=world
ENV GREETING=hello
COPY dir /d1
COPY dir/ /d2/
COPY *.txt /globbed/
COPY [ab].txt /class/
COPY a.txt /newdir/
COPY a.txt /newfile
COPY a.txt rel.txt
COPY b.txt .
COPY a.txt sub/
COPY a.txt /existing
COPY --chown=123:456 a.txt /own/num
COPY --chown=123 a.txt /own/uid-only
COPY --chown=alice a.txt /own/name
COPY --chown=alice:staff a.txt /own/names
COPY --chown=1234:staff dir /own/dir
COPY --chmod=0640 a.txt /modes/a
COPY --chmod=755 dir /modes/dir
COPY named-link /followed
COPY named-link /namedir/
COPY named-* /globfollowed/
COPY dirlink /viadirlink
COPY ign /ign/
COPY ign/*.md /ignglob/
COPY <<EOF /heredoc/expanded
${GREETING} $NAME
EOF
COPY <<"EOF" /heredoc/quoted
${GREETING} $NAME
EOF
COPY <<ONE <<TWO /heredoc/
first
ONE
second
TWO
ADD t.tar /x/tar/
ADD t.tar.gz /x/gz
ADD t.tar.bz2 /x/bz2/
ADD t.tar.xz /x/xz/
ADD t.tar.zst /x/zst/
ADD no-extension /x/detected/
ADD --chown=77:88 t.tar /x/chowned/
ADD fake.tar.gz /plain/
ADD single.gz /plain/
ADD a.txt /plain/added.txt
COPY t.tar.gz /plain/
COPY xattr-file /xattr-file
DF
run_cbuild build --root "$R" -t main -q "$C"
expect_rc "the COPY/ADD build succeeds" 0
unpack main "$TMP/bundle"
check "umoci unpacks the image" test -d "$TMP/bundle/rootfs"
F=$TMP/bundle/rootfs

# a directory source copies its contents
expect_eq "COPY dir /d1 copies the contents" "$(cd "$F/d1" 2>/dev/null && ls -A | tr '\n' ' ')" "abslink empty f1 hard link sub "
expect_eq "COPY dir/ /d2/ gives the same tree" "$(cd "$F/d2" 2>/dev/null && ls -A | tr '\n' ' ')" "abslink empty f1 hard link sub "
expect_eq "an empty directory is copied" "$(st d1/empty)" "directory 755 0:0"
expect_eq "a file keeps its mode" "$(st d1/f1)" "regular file 751 0:0"
expect_eq "a directory keeps its mode" "$(st d1/sub)" "directory 700 0:0"
expect_eq "file contents" "$(cat "$F/d1/sub/f2" 2>&1)" f2
# symlinks inside a copied directory stay symlinks, targets unchanged
expect_eq "a relative symlink stays a symlink" "$(readlink "$F/d1/link")" f1
expect_eq "a symlink climbing out stays as written" "$(readlink "$F/d1/sub/uplink")" ../../etc/passwd
expect_eq "an absolute symlink stays as written" "$(readlink "$F/d1/abslink")" /etc/hostname
# hardlinks stay hardlinks
expect_eq "hardlinked files share an inode" "$(stat -c %i "$F/d1/hard")" "$(stat -c %i "$F/d1/f1")"
expect_eq "the hardlink's content" "$(cat "$F/d1/hard" 2>&1)" f1

# globs
expect_eq "a glob copies every match" "$(ls "$F/globbed" 2>&1 | tr '\n' ' ')" "a.txt b.txt "
expect_eq "a character class glob" "$(ls "$F/class" 2>&1 | tr '\n' ' ')" "a.txt b.txt "

# destinations
expect_eq "a destination ending in / is a directory" "$(cat "$F/newdir/a.txt" 2>&1)" a
expect_eq "a destination without / is the file" "$(st newfile)" "regular file 644 0:0"
expect_eq "a relative destination resolves against WORKDIR" "$(cat "$F/app/rel.txt" 2>&1)" a
expect_eq "'.' is the WORKDIR" "$(cat "$F/app/b.txt" 2>&1)" b
expect_eq "a relative directory destination" "$(cat "$F/app/sub/a.txt" 2>&1)" a
expect_eq "an existing directory of the image is a directory destination" "$(cat "$F/existing/a.txt" 2>&1)" a
expect_eq "... and keeps what it held" "$(cat "$F/existing/old" 2>&1)" old

# owners
expect_eq "--chown=UID:GID" "$(st own/num)" "regular file 644 123:456"
expect_eq "--chown=UID alone uses the same GID" "$(st own/uid-only)" "regular file 644 123:123"
expect_eq "--chown=NAME: the uid and primary group of /etc/passwd" "$(st own/name)" "regular file 644 1234:2345"
expect_eq "--chown=NAME:GROUP: /etc/group's gid" "$(st own/names)" "regular file 644 1234:3456"
expect_eq "--chown on a directory: its files" "$(st own/dir/sub/f2)" "regular file 644 1234:3456"
expect_eq "--chown on a directory: its subdirectories" "$(st own/dir/sub)" "directory 700 1234:3456"
expect_eq "--chown on a directory: its symlinks" "$(stat -c '%u:%g' "$F/own/dir/link")" "1234:3456"
expect_eq "without --chown files are root's" "$(st newdir/a.txt)" "regular file 644 0:0"

# --chmod
expect_eq "--chmod on a file" "$(st modes/a)" "regular file 640 0:0"
expect_eq "--chmod on a directory's files" "$(st modes/dir/sub/f2)" "regular file 755 0:0"
expect_eq "--chmod on a directory's subdirectories" "$(st modes/dir/sub)" "directory 755 0:0"
expect_eq "--chmod leaves symlinks symlinks" "$(readlink "$F/modes/dir/link")" f1

# symlinks named as sources
expect_eq "a symlink named as a source is followed" "$(st followed)" "regular file 644 0:0"
expect_eq "... and copies its target's content" "$(cat "$F/followed" 2>&1)" a
expect_eq "a followed symlink keeps its own name in a directory destination" "$(cat "$F/namedir/named-link" 2>&1)" a
expect_eq "a symlink matched by a glob is followed" "$(cat "$F/globfollowed/named-link" 2>&1)" a
check "a symlink to a directory named as a source copies the directory's contents" test -f "$F/viadirlink/f2"
check "... as a real directory" test -d "$F/viadirlink" -a ! -L "$F/viadirlink"

# .dockerignore
expect_eq ".dockerignore: a pattern excludes, ! re-includes" "$(ls "$F/ign" 2>&1 | tr '\n' ' ')" "deep keep.md "
check ".dockerignore: an excluded directory is left out" test ! -e "$F/ign/secret"
check ".dockerignore: ** matches at any depth" test ! -e "$F/ign/deep/x.tmp"
check ".dockerignore: the rest of the directory is copied" test -f "$F/ign/deep/y.txt"
expect_eq ".dockerignore applies to glob matches" "$(ls "$F/ignglob" 2>&1 | tr '\n' ' ')" "keep.md "

# heredocs
expect_eq "a heredoc expands variables" "$(cat "$F/heredoc/expanded" 2>&1)" "hello world"
expect_eq "a quoted heredoc does not" "$(cat "$F/heredoc/quoted" 2>&1)" '${GREETING} $NAME'
expect_eq "two heredocs into a directory" "$(cat "$F/heredoc/ONE" "$F/heredoc/TWO" 2>&1 | tr '\n' ' ')" "first second "
expect_eq "a heredoc file is 0644 root's" "$(st heredoc/expanded)" "regular file 644 0:0"

# ADD of archives
for x in tar gz bz2 xz zst detected; do
  expect_eq "ADD extracts a $x archive" "$(cat "$F/x/$x/file" "$F/x/$x/sub/g" 2>&1 | tr '\n' ' ')" "in-archive deeper "
done
expect_eq "ADD keeps the archive's modes" "$(stat -c %a "$F/x/gz/file" 2>&1)" 640
expect_eq "ADD keeps the archive's symlinks" "$(readlink "$F/x/gz/alink")" file
expect_eq "ADD keeps the archive's hardlinks" "$(stat -c %i "$F/x/xz/hlink" 2>&1)" "$(stat -c %i "$F/x/xz/file" 2>&1)"
# Docker keeps the archive's owners (rootfs tarballs rely on it)
expect_eq "ADD keeps the archive's owners" "$(stat -c %u:%g "$F/x/tar/file" 2>&1)" 1001:1002
expect_eq "ADD --chown owns what it extracts" "$(stat -c %u:%g "$F/x/chowned/file" 2>&1)" 77:88
expect_eq "ADD of a non-archive named .tar.gz copies it" "$(cat "$F/plain/fake.tar.gz" 2>&1)" "not an archive"
check "ADD of a compressed non-tar copies it unchanged" cmp -s "$F/plain/single.gz" "$C/single.gz"
expect_eq "ADD of a plain file copies it" "$(cat "$F/plain/added.txt" 2>&1)" a
check "COPY of a tar.gz never extracts it" cmp -s "$F/plain/t.tar.gz" "$C/t.tar.gz"

# xattrs
if $xattr_ok; then
  expect_eq "a user.* xattr is kept" "$(getfattr --only-values -n user.cbuild "$F/xattr-file" 2>/dev/null)" hello
else
  ok "# SKIP this filesystem takes no user.* xattrs"
fi

# ---- rules that make a build fail ----
C2=$TMP/ctx2
mkdir -p "$C2"
cp "$C/a.txt" "$C/b.txt" "$C/c.md" "$C/.dockerignore" "$C2/"
mkdir -p "$C2/ign" && echo d >"$C2/ign/drop.md"
printf 'FROM base\nCOPY a.txt b.txt /nodir\n' >"$C2/Dockerfile"
run_cbuild build --root "$R" -q "$C2"
expect_rc "several sources and a destination without / fail" 1
expect_err "the error says the destination must end in /" 'must be a directory'
printf 'FROM base\nCOPY ign/drop.md /x\n' >"$C2/Dockerfile"
run_cbuild build --root "$R" -q "$C2"
expect_rc "an ignored source is not found" 1
expect_err "the ignored source is named" '"ign/drop.md" not found'
printf 'FROM base\nCOPY *.nothing /x/\n' >"$C2/Dockerfile"
run_cbuild build --root "$R" -q "$C2"
expect_rc "a glob matching nothing fails" 1
expect_err "the glob is named" '"*.nothing"'

finish
