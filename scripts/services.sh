#!/usr/bin/env bash
# Throwaway server backends for the tests and benchmarks, on loopback, started by the project itself:
# a PostgreSQL 15 (initdb/pg_ctl in a temporary folder, as a non-root user) and a single-node Ceph
# cluster serving S3 through radosgw (one mon, one mgr, one OSD on memstore, rgw on 127.0.0.1).
#
#   eval "$(bash scripts/services.sh start)"   start both; prints `export` lines for the tests:
#                                             CUSTODY_TEST_PG, CUSTODY_S3_ENDPOINT,
#                                             AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...
#   bash scripts/services.sh stop              stop both and delete their data
#   bash scripts/services.sh env               print the export lines again
#   bash scripts/services.sh pg-passwords      (a cluster started before this rule) members of
#                                             role custody_scram must give a password
#
# State lives in $CUSTODY_SERVICES_DIR (default /tmp/custody-services). Missing Debian packages
# (postgresql, ceph-mon, ceph-mgr, ceph-osd, radosgw, ceph-common) are installed with apt-get.
# Nothing here is for production: the OSD keeps objects in memory and the keys are throwaway.
# Progress goes to stderr; only the export lines go to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "services: $*" >&2; }
die() { echo "services: $*" >&2; exit 3; }
STATE=$(realpath -m -- "${CUSTODY_SERVICES_DIR:-/tmp/custody-services}")  # absolute: as_pg_user runs from /
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...: retry COMMAND once a second
  local limit=$1 what=$2; shift 2
  for _ in $(seq "$limit"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "$what did not come up in ${limit} s (logs in $STATE)"
}

install_missing() {
  local need=()
  pg_bin >/dev/null 2>&1 || need+=(postgresql)
  for tool in ceph-mon ceph-mgr ceph-osd radosgw ceph; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$([ "$tool" = ceph ] && echo ceph-common || echo "$tool")")
  done
  command -v curl >/dev/null 2>&1 || need+=(curl)
  if [ "${#need[@]}" -gt 0 ]; then
    say "installing ${need[*]} (apt-get${SUDO:+, with sudo}; about 30 s)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

pg_bin() {  # the folder of PostgreSQL's server programs (initdb, pg_ctl)
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  done
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return 0; fi
  return 1
}

# PostgreSQL refuses to run as root: as root, the server runs as Debian's `postgres` user, from
# `/` (it may not enter the caller's folder: "could not change directory to ...: Permission denied").
as_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

start_postgres() {
  local bin port data=$STATE/pg
  bin=$(pg_bin) || die "no PostgreSQL server programs (initdb) found"
  port=$(free_port)
  mkdir -p "$data"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    chown postgres "$data"
  fi
  as_pg_user "$bin/initdb" -D "$data/db" -U custody --auth=trust -E UTF8 --locale=C.UTF-8 >"$STATE/pg-initdb.log" 2>&1 \
    || die "initdb failed (see $STATE/pg-initdb.log)"
  # Loopback only, and the socket in the state folder, so nothing else on the machine is touched.
  as_pg_user "$bin/pg_ctl" -D "$data/db" -l "$data/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$data -c fsync=on" \
    start >/dev/null || die "PostgreSQL did not start (see $data/server.log)"
  as_pg_user "$bin/psql" -h 127.0.0.1 -p "$port" -U custody -d postgres -qc "CREATE DATABASE custody_test" \
    || die "could not create the test database"
  pg_passwords "$bin" "$data" "$port"
  echo "export CUSTODY_TEST_PG=postgresql://custody@127.0.0.1:$port/custody_test" >>"$STATE/env.partial"
  echo "export CUSTODY_TEST_PG_BIN=$bin" >>"$STATE/env.partial"
  say "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}

# `custody` (the tests' superuser) keeps trust; members of role custody_scram must give their
# password (scram-sha-256), so a test can show a wrong one refused. Idempotent: also brings a
# cluster started by an older services.sh up to date (reload, no restart).
pg_passwords() {
  local bin=$1 data=$2 port=$3 hba=$2/db/pg_hba.conf
  as_pg_user "$bin/psql" -h 127.0.0.1 -p "$port" -U custody -d postgres -qAtc \
    "SELECT 1 FROM pg_roles WHERE rolname = 'custody_scram'" | grep -q 1 \
    || as_pg_user "$bin/psql" -h 127.0.0.1 -p "$port" -U custody -d postgres -qc \
      "CREATE ROLE custody_scram NOLOGIN" || die "could not create role custody_scram"
  if ! grep -q '+custody_scram' "$hba"; then
    as_pg_user sh -c "{ echo 'host all +custody_scram 127.0.0.1/32 scram-sha-256'; cat '$hba'; } >'$hba.new' && mv '$hba.new' '$hba'"
    as_pg_user "$bin/pg_ctl" -D "$data/db" reload >/dev/null || die "PostgreSQL did not reload $hba"
  fi
}

start_ceph() {
  local dir=$STATE/ceph fsid mon_port rgw_port access secret
  mkdir -p "$dir"/{run,log,mon,mgr,osd0,rgw}
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  mon_port=$(free_port)
  rgw_port=$(free_port)
  cat >"$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
ms bind ipv6 = false
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$cluster-\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
client mount timeout = 30
rados mon op timeout = 30
[mon.a]
mon data = $dir/mon
[mgr.x]
mgr data = $dir/mgr
[osd.0]
osd data = $dir/osd0
# Objects in memory: a throwaway cluster, up in seconds, with no disk to prepare.
osd objectstore = memstore
memstore device bytes = 4294967296
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
rgw thread pool size = 64
EOF
  local conf=(-c "$dir/ceph.conf")
  # One keyring for every daemon of this throwaway cluster (cephx, as a real cluster runs).
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$dir/keyring" --gen-key -n mgr.x --cap mon 'allow profile mgr' --cap osd 'allow *' \
    --cap mds 'allow *' >/dev/null
  ceph-authtool "$dir/keyring" --gen-key -n osd.0 --cap mon 'allow profile osd' \
    --cap mgr 'allow profile osd' --cap osd 'allow *' >/dev/null
  ceph-authtool "$dir/keyring" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' \
    --cap mgr 'allow rw' >/dev/null
  monmaptool --create --add a "v2:127.0.0.1:$mon_port" --fsid "$fsid" "$dir/monmap" >/dev/null
  ceph-mon "${conf[@]}" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" 2>>"$dir/log/setup.log"
  ceph-mon "${conf[@]}" -i a 2>>"$dir/log/setup.log"
  wait_for 30 "the Ceph monitor" ceph "${conf[@]}" --connect-timeout 5 mon stat
  ceph-mgr "${conf[@]}" -i x 2>>"$dir/log/setup.log"
  ceph "${conf[@]}" osd create >/dev/null
  ceph-osd "${conf[@]}" -i 0 --mkfs 2>>"$dir/log/setup.log"
  ceph-osd "${conf[@]}" -i 0 2>>"$dir/log/setup.log"
  wait_for 60 "the Ceph OSD" sh -c "ceph -c '$dir/ceph.conf' osd stat | grep -q '1 up'"
  radosgw "${conf[@]}" -n client.rgw.a 2>>"$dir/log/setup.log"
  wait_for 90 "radosgw" curl -sf -o /dev/null "http://127.0.0.1:$rgw_port/"
  access=custody$(python3 -c 'import secrets; print(secrets.token_hex(6))')
  secret=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
  radosgw-admin "${conf[@]}" -n client.admin user create --uid=custody --display-name="custody tests" \
    --access-key="$access" --secret="$secret" >/dev/null 2>>"$dir/log/setup.log" \
    || die "radosgw-admin could not create the S3 user (see $dir/log)"
  {
    echo "export CUSTODY_S3_ENDPOINT=http://127.0.0.1:$rgw_port"
    echo "export AWS_ACCESS_KEY_ID=$access"
    echo "export AWS_SECRET_ACCESS_KEY=$secret"
    echo "export AWS_DEFAULT_REGION=us-east-1"
    echo "export CUSTODY_TEST_CEPH_CONF=$dir/ceph.conf"
  } >>"$STATE/env.partial"
  say "Ceph $(ceph --version | awk '{print $3}') radosgw (S3) on 127.0.0.1:$rgw_port"
}

answering() {  # answering ENVFILE: both servers an env file names accept connections
  local pg s3
  pg=$(sed -n 's/^export CUSTODY_TEST_PG=//p' "$1")
  s3=$(sed -n 's/^export CUSTODY_S3_ENDPOINT=//p' "$1")
  [ -n "$pg" ] && [ -n "$s3" ] || return 1
  python3 - "$pg" "$s3" <<'PY' >/dev/null 2>&1
import socket, sys, urllib.parse
for url in sys.argv[1:]:
    parts = urllib.parse.urlsplit(url)
    socket.create_connection((parts.hostname, parts.port), timeout=5).close()
PY
}

ours() {  # ours PID: the process is one of these services' (not a stranger that reused the pid)
  local name
  name=$(cat "/proc/$1/comm" 2>/dev/null) || return 1
  case "$name" in ceph-*|radosgw|postgres) return 0 ;; *) return 1 ;; esac
}

stop_all() {
  local bin
  if [ -d "$STATE/pg/db" ] && ours "$(head -n1 "$STATE/pg/db/postmaster.pid" 2>/dev/null)" \
     && bin=$(pg_bin); then
    as_pg_user "$bin/pg_ctl" -D "$STATE/pg/db" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ -d "$STATE/ceph/run" ]; then
    for pidfile in "$STATE"/ceph/run/*.pid; do
      [ -e "$pidfile" ] && ours "$(cat "$pidfile")" && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    sleep 1
    for pidfile in "$STATE"/ceph/run/*.pid; do
      [ -e "$pidfile" ] && ours "$(cat "$pidfile")" && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
    done
  fi
  rm -rf "$STATE"
}

case "${1:-}" in
  start)
    if [ -s "$STATE/env" ]; then
      if answering "$STATE/env"; then say "already running (state in $STATE)"; cat "$STATE/env"; exit 0; fi
      # Left behind by a session whose servers are gone (its ports refuse): start afresh.
      say "stale state in $STATE (its servers do not answer): starting afresh"
    fi
    install_missing
    stop_all
    mkdir -p "$STATE"
    chmod 755 "$STATE"
    started=$SECONDS
    start_postgres
    start_ceph
    mv "$STATE/env.partial" "$STATE/env"
    say "both up in $((SECONDS - started)) s; stop them with: bash scripts/services.sh stop"
    cat "$STATE/env"
    ;;
  stop) stop_all; say "stopped" ;;
  pg-passwords)  # a running cluster from an older services.sh: add the scram rule (no restart)
    [ -s "$STATE/env" ] || die "not running (bash scripts/services.sh start)"
    port=$(sed -n 's/.*CUSTODY_TEST_PG=.*:\([0-9]*\)\/.*/\1/p' "$STATE/env")
    pg_passwords "$(pg_bin)" "$STATE/pg" "$port"; say "PostgreSQL: custody_scram members need passwords" ;;
  env) [ -s "$STATE/env" ] || die "not running (bash scripts/services.sh start)"; cat "$STATE/env" ;;
  *) echo "usage: bash scripts/services.sh start|stop|env|pg-passwords" >&2; exit 2 ;;
esac
