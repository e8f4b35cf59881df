# Registry helpers for the integration tests: source it after lib.sh.
# Starts Debian's docker-registry (distribution 2.8.2) on 127.0.0.1 with no
# auth, basic auth or a Bearer challenge, a token server for the latter and
# an HTTP proxy that can corrupt or refuse responses.  Nothing here binds
# anything but 127.0.0.1.
#
# Call these functions from the test's main shell, not from $(...) or a
# subshell: they set variables and track what they started by PID.  All of
# it is stopped at exit, before lib.sh's trap removes $TMP; and each
# process also gets SIGKILL from the kernel if the test shell dies without
# running its traps (PR_SET_PDEATHSIG), so nothing outlives a killed suite.
#
# A registry called NAME keeps its files in $TMP/registry-NAME/:
#   config.yml    the registry's own config (never the packaged one)
#   registry.log  its output, log level error
#   data/         its storage root ($REG_DIR)
#   htpasswd      the user file with --htpasswd
#   token.log     one line per token request with --token:
#                   GET /token?scope=repository:app:pull,push&service=test auth=Basic:USER -> 200
#                 path and query URL-decoded, parameters in the client's
#                 order (grep for "scope=repository:app:pull,push&", not
#                 the whole line); auth= is "-" without an Authorization
#                 header, "Basic:USER", "Bearer:TOKEN" or the scheme alone
#   proxy.log     one line per request through a proxy in front of it:
#                   MODE METHOD PATH?QUERY auth=... -> STATUS [NOTE]
#                 path as sent, not decoded; auth= as in token.log; NOTE is
#                 "corrupted", "flaky", "aborted" or "upstream: ERROR"

REG_PY=/usr/bin/python3
_reg_pids=()
_reg_lib=$TMP/registry-lib
mkdir -p "$_reg_lib"

# Keep the EXIT trap set before this file (lib.sh's removal of $TMP) and
# run it after stopping our processes, which write below $TMP.
eval "_reg_trap_words=($(trap -p EXIT))"
_reg_prev_exit_trap=${_reg_trap_words[2]:-}
unset _reg_trap_words

# _reg_cleanup: the EXIT trap; stops everything this file started, then
# runs the EXIT trap that was there before
_reg_cleanup() {
  local pid
  for pid in "${_reg_pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${_reg_pids[@]}"; do _reg_kill "$pid"; done
  eval "$_reg_prev_exit_trap"
}
trap _reg_cleanup EXIT

# _reg_spawn LOG CMD...: runs CMD in the background, stdin from /dev/null,
# stdout and stderr appended to LOG; CMD gets SIGKILL when this shell dies.
# Sets _reg_pid and tracks the process for _reg_cleanup.
_reg_spawn() {
  local log=$1 me=$BASHPID
  shift
  # The wrapper asks for the death signal, makes sure this shell did not
  # die before it asked, then becomes CMD (the setting survives exec).
  "$REG_PY" -c '
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
' "$me" "$@" </dev/null >>"$log" 2>&1 &
  _reg_pid=$!
  _reg_pids+=("$_reg_pid")
}

# _reg_kill PID [SIGNAL]: sends SIGNAL (TERM) to PID, gives it 10 s to end
# before a SIGKILL, reaps it and stops tracking it
_reg_kill() {
  local pid=$1 sig=${2:-TERM} i p keep=()
  # (stderr off for all of it: bash reports a job's death by SIGKILL
  # whenever it notices, on stderr)
  {
    kill -"$sig" "$pid"
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" || break
      sleep 0.1
    done
    kill -KILL "$pid"
    wait "$pid"
  } 2>/dev/null
  for p in "${_reg_pids[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  _reg_pids=("${keep[@]}")
}

# _reg_wait_file FILE PID [SECONDS]: waits up to SECONDS (10) for a
# non-empty FILE while PID lives
_reg_wait_file() {
  local i
  for ((i = 0; i < ${3:-10} * 10; i++)); do
    [ -s "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# _reg_diag FILE: prints the end of FILE as TAP comments on stderr
_reg_diag() {
  tail -n 40 "$1" 2>/dev/null | sed 's/^/# /' >&2
}

# free_port: prints a TCP port on 127.0.0.1 that was free a moment ago
free_port() {
  "$REG_PY" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
'
}

# The token server: python3 token.py PORTFILE LOG [USER:PASS].  Writes the
# port it listens on to PORTFILE.  GET /token?service=..&scope=.. (or an
# OAuth2 POST /token with grant_type=password) answers a JSON token to
# anyone without USER:PASS, else only to those credentials, and 401 with a
# Basic challenge to the rest.  The registry's "silly" auth accepts any
# Bearer token, so the tokens are just numbered: tok-1, tok-2...
cat >"$_reg_lib/token.py" <<'EOF'
import base64, json, os, sys, threading, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

portfile, logpath = sys.argv[1], sys.argv[2]
creds = sys.argv[3] if len(sys.argv) > 3 else ""
lock = threading.Lock()
issued = 0


def auth_tag(headers):
    h = headers.get("Authorization")
    if h is None:
        return "-", None
    scheme, _, rest = h.strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, pw = base64.b64decode(rest.strip()).decode().partition(":")
        except Exception:
            return "Basic:?", None
        return "Basic:" + user, user + ":" + pw
    if scheme.lower() == "bearer":
        return "Bearer:" + rest.strip(), None
    return scheme, None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, obj, extra=()):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def answer(self, shown, tag, given):
        global issued
        if urllib.parse.urlsplit(self.path).path != "/token":
            code = 404
        elif creds and given != creds:
            code = 401
        else:
            code = 200
        with lock:
            if code == 200:
                issued += 1
                token = "tok-%d" % issued
            with open(logpath, "a") as f:
                f.write("%s %s auth=%s -> %d\n" % (self.command, shown, tag, code))
        if code == 200:
            self.reply(200, {"token": token, "access_token": token,
                             "expires_in": 300,
                             "issued_at": "2024-01-01T00:00:00Z"})
        elif code == 401:
            self.reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                         "message": "bad credentials"}]},
                       [("WWW-Authenticate", 'Basic realm="test"')])
        else:
            self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": self.path}]})

    def do_GET(self):
        tag, given = auth_tag(self.headers)
        self.answer(urllib.parse.unquote(self.path), tag, given)

    do_HEAD = do_GET

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode(errors="replace"))
        tag, given = auth_tag(self.headers)
        if form.get("grant_type", [""])[0] == "password":
            user = form.get("username", [""])[0]
            tag, given = "form:" + user, user + ":" + form.get("password", [""])[0]
        elif form.get("grant_type", [""])[0] == "refresh_token":
            # an identity token: good when it is the password of USER:PASS
            user = creds.split(":", 1)[0] if creds else ""
            tag, given = "refresh", user + ":" + form.get("refresh_token", [""])[0]
        shown = self.path + "?" + "&".join(
            "%s=%s" % (k, v) for k, vs in form.items()
            if k not in ("password", "refresh_token") for v in vs)
        self.answer(shown, tag, given)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(portfile + ".new", "w") as f:
    f.write("%d\n" % server.server_address[1])
os.rename(portfile + ".new", portfile)
server.serve_forever()
EOF

# The proxy: python3 proxy.py PORTFILE LOG UPSTREAM MODE.  Writes the port
# it listens on to PORTFILE and forwards every request (method, headers
# with Host kept so the registry's Location URLs point back at the proxy,
# body streamed, chunked or not) to UPSTREAM (HOST:PORT), streaming the
# answer back.  MODE pass only forwards; corrupt-blobs flips the middle
# byte (the first when the length is unknown) of every GET .../blobs/DIGEST
# body, keeping its length; flaky answers 503 to the first request of each
# method and path (query ignored) and forwards the rest.  502 when the
# upstream cannot be reached.
cat >"$_reg_lib/proxy.py" <<'EOF'
import http.client, os, re, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

portfile, logpath, upstream, mode = sys.argv[1:5]
up_host, up_port = upstream.rsplit(":", 1)
HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
       "proxy-authorization", "te", "trailer", "trailers",
       "transfer-encoding", "upgrade", "expect"}
BLOB = re.compile(r"^/v2/.+/blobs/(?!uploads/)[^/]+$")
lock = threading.Lock()
seen = set()


def auth_tag(headers):
    h = headers.get("Authorization")
    if h is None:
        return "-"
    scheme, _, rest = h.strip().partition(" ")
    if scheme.lower() == "bearer":
        return "Bearer:" + rest.strip()
    if scheme.lower() == "basic":
        import base64
        try:
            return "Basic:" + base64.b64decode(rest.strip()).decode().partition(":")[0]
        except Exception:
            return "Basic:?"
    return scheme


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def log(self, status, note=""):
        line = "%s %s %s auth=%s -> %s%s\n" % (
            mode, self.command, self.path, auth_tag(self.headers), status,
            " " + note if note else "")
        with lock:
            with open(logpath, "a") as f:
                f.write(line)

    def request_body(self):
        """Yields the request body in pieces, de-chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left > 0:
                    piece = self.rfile.read(min(left, 65536))
                    if not piece:
                        raise ConnectionError("client went away")
                    left -= len(piece)
                    yield piece
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                piece = self.rfile.read(min(left, 65536))
                if not piece:
                    raise ConnectionError("client went away")
                left -= len(piece)
                yield piece

    def simple(self, code, body, note):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.log(code, note)

    def forward(self):
        path = self.path.split("?", 1)[0]
        if (mode == "redirect-blobs" and self.command in ("GET", "HEAD")
                and "/blobs/sha256:" in path):
            # storage elsewhere, as S3-backed registries answer
            self.send_response(307)
            self.send_header("Location", "http://%s:%s%s" % (up_host, up_port, self.path))
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.log(307, "redirected")
            return
        if mode == "flaky":
            with lock:
                first = (self.command, path) not in seen
                seen.add((self.command, path))
            if first:
                for _ in self.request_body():
                    pass
                self.simple(503, b'{"errors":[{"code":"UNAVAILABLE","message":"flaky proxy"}]}',
                            "flaky")
                return
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        conn = http.client.HTTPConnection(up_host, int(up_port), timeout=300)
        try:
            conn.putrequest(self.command, self.path, skip_host=True,
                            skip_accept_encoding=True)
            for k, v in self.headers.items():
                if k.lower() not in HOP:
                    conn.putheader(k, v)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            sending = True
            for piece in self.request_body():
                if not sending:
                    continue
                try:
                    if chunked:
                        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                    else:
                        conn.send(piece)
                except OSError:
                    sending = False  # answered early: read that answer
            if chunked and sending:
                conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.simple(502, b'{"errors":[{"code":"UNAVAILABLE","message":"proxy: upstream failed"}]}',
                        "upstream: %s" % e)
            return
        try:
            self.relay(resp, path)
        finally:
            conn.close()

    def relay(self, resp, path):
        length = resp.getheader("Content-Length")
        has_body = (self.command != "HEAD" and resp.status >= 200
                    and resp.status not in (204, 304))
        flip = None
        if (mode == "corrupt-blobs" and self.command == "GET"
                and resp.status in (200, 206) and BLOB.match(path)):
            flip = int(length) // 2 if length else 0
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        rechunk = has_body and length is None
        if rechunk:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pos, done = 0, False
        try:
            while has_body:
                piece = resp.read(65536)
                if not piece:
                    break
                if flip is not None and pos <= flip < pos + len(piece):
                    i = flip - pos
                    piece = piece[:i] + bytes([piece[i] ^ 0xFF]) + piece[i + 1:]
                pos += len(piece)
                if rechunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                else:
                    self.wfile.write(piece)
            if rechunk:
                self.wfile.write(b"0\r\n\r\n")
            done = True
        finally:
            note = "corrupted" if flip is not None and pos > flip else ""
            if not done:
                note = "aborted"
                self.close_connection = True
            self.log(resp.status, note)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = forward


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(portfile + ".new", "w") as f:
    f.write("%d\n" % server.server_address[1])
os.rename(portfile + ".new", portfile)
server.serve_forever()
EOF

# _reg_launch NAME: starts registry NAME from its config.yml and port
# files, waits (up to $REG_START_TIMEOUT s, 30) for GET /v2/ to answer 200
# or 401 and sets REG, REG_DIR, REG_PID and REG_NAME.  On failure prints
# the log and returns 1.
_reg_launch() {
  local d=$TMP/registry-$1 port code i
  port=$(cat "$d/port")
  # the registry reads REGISTRY_* variables as config overrides: a test's
  # REGISTRY_AUTH_FILE (credentials for clients) must not reach it
  _reg_spawn "$d/registry.log" env $(compgen -e | grep '^REGISTRY_' | sed 's/^/-u /') \
    docker-registry serve "$d/config.yml"
  for ((i = 0; i < ${REG_START_TIMEOUT:-30} * 10; i++)); do
    code=$(curl -s -k --noproxy '*' -m 2 -o /dev/null -w '%{http_code}' "$(cat "$d/scheme")://127.0.0.1:$port/v2/")
    case $code in 200|401) break ;; esac
    kill -0 "$_reg_pid" 2>/dev/null || break
    sleep 0.1
  done
  case $code in
    200|401) ;;
    *)
      echo "# registry $1 did not answer on 127.0.0.1:$port (last status $code); its log:" >&2
      _reg_diag "$d/registry.log"
      _reg_kill "$_reg_pid"
      return 1
      ;;
  esac
  echo "$_reg_pid" >"$d/pid"
  # shellcheck disable=SC2034 # for the tests that source this file
  REG=127.0.0.1:$port REG_DIR=$d/data REG_PID=$_reg_pid REG_NAME=$1
}

# registry_start NAME [--htpasswd USER:PASS | --token [USER:PASS]]
# [--tls CERT KEY]: starts
# a registry called NAME on a free port of 127.0.0.1 with its files in
# $TMP/registry-NAME/ (see the top of this file), and waits until it
# answers.  --htpasswd: basic auth for USER:PASS alone (bcrypt htpasswd
# file).  --token: a Bearer challenge (realm http://$REG_TOKEN/token,
# service "test") from a token server started alongside, which gives
# tokens only for USER:PASS when given, else to anyone (with or without
# credentials); the registry itself accepts any Bearer token.  --tls: HTTPS
# with that certificate and key (PEM files).  Sets
#   REG        127.0.0.1:PORT of this registry
#   REG_DIR    its storage root: blobs are in
#              $REG_DIR/docker/registry/v2/blobs/sha256/XX/HEX/data
#   REG_PID    its PID
#   REG_NAME   NAME
#   REG_TOKEN  127.0.0.1:PORT of its token server, empty without --token
# Storage left by an earlier registry NAME is kept.  On failure prints the
# log and returns 1 (2 for bad arguments).
registry_start() {
  local name=${1:-} auth="" creds="" d port tport tpid="" secret tls=""
  if [ -z "$name" ]; then
    echo "registry_start: NAME needed" >&2
    return 2
  fi
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --htpasswd)
        if [ -n "$auth" ] || [[ ${2:-} != *:* ]]; then
          echo "registry_start: --htpasswd USER:PASS, and only one auth" >&2
          return 2
        fi
        auth=htpasswd creds=$2
        shift 2
        ;;
      --token)
        if [ -n "$auth" ]; then
          echo "registry_start: only one auth" >&2
          return 2
        fi
        auth=token
        shift
        if [ $# -gt 0 ] && [[ $1 != --* ]]; then
          if [[ $1 != *:* ]]; then
            echo "registry_start: --token [USER:PASS]" >&2
            return 2
          fi
          creds=$1
          shift
        fi
        ;;
      --tls)
        if [ $# -lt 3 ]; then
          echo "registry_start: --tls CERT KEY" >&2
          return 2
        fi
        tls=$(printf "  tls:\n    certificate: '%s'\n    key: '%s'\n" "$2" "$3")
        shift 3
        ;;
      *)
        echo "registry_start: unknown option $1" >&2
        return 2
        ;;
    esac
  done
  d=$TMP/registry-$name
  if [ -s "$d/pid" ]; then
    echo "registry_start: registry $name already runs" >&2
    return 2
  fi
  mkdir -p "$d/data"
  if [ -n "$tls" ]; then echo https >"$d/scheme"; else echo http >"$d/scheme"; fi
  : >"$d/auth.yml"
  REG_TOKEN=""
  case $auth in
    htpasswd)
      htpasswd -Bbn "${creds%%:*}" "${creds#*:}" >"$d/htpasswd" || return 1
      printf "auth:\n  htpasswd:\n    realm: test\n    path: '%s'\n" "$d/htpasswd" >"$d/auth.yml"
      ;;
    token)
      rm -f "$d/token.port"
      _reg_spawn "$d/token.err" "$REG_PY" "$_reg_lib/token.py" "$d/token.port" "$d/token.log" ${creds:+"$creds"}
      if ! _reg_wait_file "$d/token.port" "$_reg_pid"; then
        echo "# the token server of $name did not start:" >&2
        _reg_diag "$d/token.err"
        _reg_kill "$_reg_pid"
        return 1
      fi
      tpid=$_reg_pid tport=$(cat "$d/token.port")
      REG_TOKEN=127.0.0.1:$tport
      printf 'auth:\n  silly:\n    realm: http://%s/token\n    service: test\n' "$REG_TOKEN" >"$d/auth.yml"
      ;;
  esac
  # A fixed secret lets upload sessions survive registry_restart.
  secret=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  # free_port can race with another test taking the port: try again then.
  for _ in 1 2 3 4 5; do
    port=$(free_port) || return 1
    echo "$port" >"$d/port"
    {
      echo "version: 0.1"
      echo "log:"
      echo "  level: error"
      echo "  accesslog:"
      echo "    disabled: true"
      echo "storage:"
      echo "  filesystem:"
      echo "    rootdirectory: '$d/data'"
      echo "  delete:"
      echo "    enabled: true"
      echo "  maintenance:"
      echo "    uploadpurging:"
      echo "      enabled: false"
      echo "http:"
      echo "  addr: 127.0.0.1:$port"
      echo "  secret: $secret"
      [ -z "$tls" ] || echo "$tls"
      cat "$d/auth.yml"
    } >"$d/config.yml"
    : >"$d/registry.log"
    _reg_launch "$name" 2>"$d/launch.err" && return 0
    grep -q 'address already in use' "$d/registry.log" || break
  done
  cat "$d/launch.err" >&2
  [ -z "$tpid" ] || _reg_kill "$tpid"
  return 1
}

# registry_stop [NAME] [--kill]: stops registry NAME (the last started)
# with SIGTERM, or SIGKILL with --kill, and waits for it; its token server
# and proxies keep running, its storage stays for registry_restart
registry_stop() {
  local name=${REG_NAME:-} sig=TERM d pid
  while [ $# -gt 0 ]; do
    case $1 in
      --kill) sig=KILL ;;
      *) name=$1 ;;
    esac
    shift
  done
  d=$TMP/registry-$name
  pid=$(cat "$d/pid" 2>/dev/null)
  if [ -z "$name" ] || [ -z "$pid" ]; then
    echo "registry_stop: no running registry ${name:-(none started)}" >&2
    return 1
  fi
  _reg_kill "$pid" "$sig"
  rm -f "$d/pid"
}

# registry_restart [NAME]: starts registry NAME (the last started) again on
# the same port, storage and config, stopping it first if it runs; sets
# REG, REG_DIR, REG_PID and REG_NAME like registry_start.  Returns 1 with
# the log when it does not come up (say, the port was taken meanwhile).
registry_restart() {
  local name=${1:-${REG_NAME:-}}
  if [ -z "$name" ] || [ ! -f "$TMP/registry-$name/config.yml" ]; then
    echo "registry_restart: no registry ${name:-(none started)}" >&2
    return 1
  fi
  if [ -s "$TMP/registry-$name/pid" ]; then
    registry_stop "$name" || return 1
  fi
  _reg_launch "$name"
}

# registry_proxy_start NAME MODE: starts an HTTP proxy on a free port of
# 127.0.0.1 in front of registry NAME (its port, so it survives
# registry_restart) and logs to $TMP/registry-NAME/proxy.log.  MODE:
#   pass           forwards everything unchanged
#   corrupt-blobs  flips the middle byte of each GET /v2/.../blobs/DIGEST
#                  body, keeping its length
#   redirect-blobs answers GET and HEAD of a blob with a 307 to the registry
#                  itself (storage behind a redirect)
#   flaky          answers 503 to the first request of each method and path
#                  (query ignored), forwards the later ones
# Sets PROXY (127.0.0.1:PORT) and PROXY_PID; returns 1 on failure.
registry_proxy_start() {
  local name=${1:-} mode=${2:-} d
  d=$TMP/registry-$name
  case $mode in
    pass|corrupt-blobs|flaky|redirect-blobs) ;;
    *)
      echo "registry_proxy_start: NAME pass|corrupt-blobs|flaky|redirect-blobs" >&2
      return 2
      ;;
  esac
  if [ -z "$name" ] || [ ! -s "$d/port" ]; then
    echo "registry_proxy_start: no registry ${name:-(none named)}" >&2
    return 2
  fi
  rm -f "$d/proxy.port"
  _reg_spawn "$d/proxy.err" "$REG_PY" "$_reg_lib/proxy.py" "$d/proxy.port" "$d/proxy.log" \
    "127.0.0.1:$(cat "$d/port")" "$mode"
  if ! _reg_wait_file "$d/proxy.port" "$_reg_pid"; then
    echo "# the proxy in front of $name did not start:" >&2
    _reg_diag "$d/proxy.err"
    _reg_kill "$_reg_pid"
    return 1
  fi
  # shellcheck disable=SC2034 # for the tests that source this file
  PROXY=127.0.0.1:$(cat "$d/proxy.port") PROXY_PID=$_reg_pid
}
