#!/usr/bin/env bash
# Installs (from Debian's packages) and starts whatever is missing of the stores the tests
# talk to: Redis on 127.0.0.1:6379, PostgreSQL on 127.0.0.1:5432 (database `test`, trust
# auth for local tests), MariaDB on 127.0.0.1:3306 (root, empty password, database
# `test`), ZooKeeper on 127.0.0.1:2181, a three-server ZooKeeper ensemble on
# 127.0.0.1:2191-2193, a Redis Cluster on 7001-7006, moto's S3 server (from PyPI) on
# 127.0.0.1:9000 and Azurite's blob service (from npm) on 127.0.0.1:10000, and the psql,
# mariadb and sqlite3 clients, and Chromium with chromedriver for the admin page's browser
# tests; `scripts/services.sh azure-bench` starts the benchmarks' own Azurite on
# 127.0.0.1:10100 (and `stop-azure-bench` stops it). Idempotent: a service that already answers is
# left alone. Waits until every service accepts connections, or fails saying which did not.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR=${DURABLE_SERVICES_DIR:-/var/tmp/durable-services}
mkdir -p "$STATE_DIR"
APT_UPDATED=0

log() { printf 'services: %s\n' "$*" >&2; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Whether an HTTP server on the port answers at all (any status) within 5 s: a hung one
# keeps its port open and answers nothing.
http_answers() { [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null)" != "000" ]; }

# wait_for NAME SECONDS CHECK...: polls CHECK until it succeeds or SECONDS pass.
wait_for() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then log "$name did not come up within ${secs}s"; return 1; fi
    sleep 0.3
  done
  log "$name is up"
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  ((${#missing[@]})) || return 0
  if ((APT_UPDATED == 0)); then apt-get update -q >&2; APT_UPDATED=1; fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

as_user() { # as_user USER CMD...: run as USER, also when we are that user already.
  local user=$1; shift
  if [ "$(id -un)" = "$user" ]; then "$@"; else runuser -u "$user" -- "$@"; fi
}

start_redis() {
  port_open 6379 && { log "redis already up"; return 0; }
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p "$STATE_DIR/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$STATE_DIR/redis" --logfile "$STATE_DIR/redis/redis.log"
  wait_for redis 30 redis-cli -h 127.0.0.1 -p 6379 ping
}

start_postgres() {
  if ! port_open 5432; then
    command -v pg_ctlcluster >/dev/null || apt_install postgresql
    local ver
    ver=$(ls /etc/postgresql | sort -V | tail -n 1)
    [ -n "$ver" ] || { log "postgresql is installed but has no cluster"; return 1; }
    local hba="/etc/postgresql/$ver/main/pg_hba.conf"
    # A test machine's server: trust local connections, as the project's tests expect.
    if ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
      log "configuring trust auth for 127.0.0.1 in $hba"
      sed -i -E 's/^(local|host)(\s+.*)\s(peer|md5|scram-sha-256)\s*$/\1\2 trust/' "$hba"
      grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32' "$hba" ||
        echo 'host all all 127.0.0.1/32 trust' >>"$hba"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  else
    log "postgresql already up"
  fi
  wait_for postgresql 60 psql -h 127.0.0.1 -U postgres -d postgres -c 'select 1'
  for db in test root; do
    psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='$db'" |
      grep -q 1 || psql -h 127.0.0.1 -U postgres -d postgres -c "create database $db" >/dev/null
  done
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_roles where rolname='root'" |
    grep -q 1 || psql -h 127.0.0.1 -U postgres -d postgres -c 'create role root superuser login' >/dev/null
}

start_mariadb() {
  if ! port_open 3306; then
    command -v mariadbd >/dev/null || apt_install mariadb-server mariadb-client
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql \
      --bind-address=127.0.0.1 --port=3306
  else
    log "mariadb already up"
  fi
  wait_for mariadb 60 mariadb -h 127.0.0.1 -P 3306 -u root -e 'select 1'
  mariadb -h 127.0.0.1 -P 3306 -u root -e 'create database if not exists test'
}

# ZooKeeper runs from Debian's jars with a configuration and data directory of our own.
zk_ok() { [ "$( (exec 3<>/dev/tcp/127.0.0.1/2181 && printf ruok >&3 && timeout 2 cat <&3) 2>/dev/null)" = imok ]; }

start_zookeeper() {
  zk_ok && { log "zookeeper already up"; return 0; }
  [ -f /usr/share/java/zookeeper.jar ] || apt_install zookeeper
  command -v java >/dev/null || apt_install default-jre-headless
  local dir="$STATE_DIR/zookeeper"
  mkdir -p "$dir/data"
  cat >"$dir/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/data
clientPort=2181
clientPortAddress=127.0.0.1
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr
# A throwaway test server: no fsync per transaction (tests write thousands of them), and
# old snapshots and logs purged every hour.
forceSync=no
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
CFG
  local cp="/etc/zookeeper/conf_example:/usr/share/java/zookeeper.jar"
  # ZooKeeper holds every znode in its heap: 1 GB keeps the benchmark's 100k-key namespaces
  # and what earlier runs on this machine left (256 MB ran out at ~450k znodes).
  nohup java -Xmx1g -Dzookeeper.log.dir="$dir" -Dzookeeper.root.logger=INFO,CONSOLE \
    -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" \
    >"$dir/zookeeper.log" 2>&1 &
  echo $! >"$dir/pid"
  wait_for zookeeper 60 zk_ok || { tail -n 30 "$dir/zookeeper.log" >&2; return 1; }
}

# A three-server ensemble on loopback for the ensemble tests: client ports 2191-2193,
# quorum ports 2881-2883 and election ports 3881-3883, data under $STATE_DIR/ensemble/zkN.
ensemble_ok() { for port in 2191 2192 2193; do
  (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf srvr >&3 && timeout 2 cat <&3) 2>/dev/null | grep -q '^Mode: ' || return 1
done; }

start_zookeeper_ensemble() {
  ensemble_ok && { log "zookeeper ensemble already up"; return 0; }
  [ -f /usr/share/java/zookeeper.jar ] || apt_install zookeeper
  command -v java >/dev/null || apt_install default-jre-headless
  local i
  for i in 1 2 3; do
    local dir="$STATE_DIR/ensemble/zk$i"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then continue; fi
    mkdir -p "$dir/data"
    echo "$i" >"$dir/data/myid"
    cat >"$dir/zoo.cfg" <<CFG
tickTime=1000
initLimit=10
syncLimit=2
dataDir=$dir/data
clientPort=219$i
clientPortAddress=127.0.0.1
maxSessionTimeout=60000
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr
forceSync=no
server.1=127.0.0.1:2881:3881
server.2=127.0.0.1:2882:3882
server.3=127.0.0.1:2883:3883
CFG
    nohup java -Xmx256m -XX:+UseSerialGC -Dzookeeper.log.dir="$dir" -Dzookeeper.root.logger=INFO,CONSOLE \
      -cp "/etc/zookeeper/conf_example:/usr/share/java/zookeeper.jar" \
      org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg" >"$dir/zookeeper.log" 2>&1 &
    echo $! >"$dir/pid"
  done
  wait_for "zookeeper ensemble" 90 ensemble_ok || { tail -n 30 "$STATE_DIR"/ensemble/zk*/zookeeper.log >&2; return 1; }
}

# A Redis Cluster on loopback for the cluster tests: 3 masters and 3 replicas on ports
# 7001-7006, data under $STATE_DIR/redis-cluster/<port>.
cluster_ok() { redis-cli -p 7001 cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

start_redis_cluster() {
  cluster_ok && { log "redis cluster already up"; return 0; }
  command -v redis-server >/dev/null || apt_install redis-server
  local port
  for port in 7001 7002 7003 7004 7005 7006; do
    local dir="$STATE_DIR/redis-cluster/$port"
    port_open "$port" && continue
    rm -rf "$dir" && mkdir -p "$dir"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
      --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 2000 --save "" \
      --appendonly yes --dir "$dir" --logfile "$dir/redis.log"
  done
  for port in 7001 7002 7003 7004 7005 7006; do wait_for "redis cluster node $port" 30 redis-cli -p "$port" ping; done
  redis-cli --cluster create 127.0.0.1:7001 127.0.0.1:7002 127.0.0.1:7003 127.0.0.1:7004 \
    127.0.0.1:7005 127.0.0.1:7006 --cluster-replicas 1 --cluster-yes >/dev/null
  wait_for "redis cluster" 60 cluster_ok
}

# S3: moto's server mode from PyPI, in a virtual environment of our own, in memory,
# started through scripts/moto_s3.py, which makes moto's conditional PUT atomic as S3's is.
start_s3() {
  local dir="$STATE_DIR/moto"
  # A moto of ours started before the launcher existed races conditional PUTs: replaced.
  if port_open 9000 && pgrep -f "moto_server -H 127.0.0.1 -p 9000" >/dev/null; then
    log "s3: restarting moto through moto_s3.py"
    pkill -f "moto_server -H 127.0.0.1 -p 9000" || true
    wait_for "old moto to stop" 20 bash -c '! (exec 3<>/dev/tcp/127.0.0.1/9000)'
  fi
  if port_open 9000 && ! http_answers 9000; then
    log "s3: moto does not answer: restarting it"
    pkill -9 -f "moto_s3.py -H 127.0.0.1 -p 9000" || true
    wait_for "hung moto to stop" 20 bash -c '! (exec 3<>/dev/tcp/127.0.0.1/9000)'
  fi
  port_open 9000 && { log "s3 (moto) already up"; return 0; }
  if [ ! -x "$dir/venv/bin/moto_server" ]; then
    command -v python3 >/dev/null || apt_install python3 python3-venv
    python3 -m venv "$dir/venv"
    log "installing moto[server] from PyPI"
    "$dir/venv/bin/pip" install --quiet 'moto[server]==5.1.*' >&2
  fi
  nohup "$dir/venv/bin/python" "$HERE/moto_s3.py" -H 127.0.0.1 -p 9000 >"$dir/moto.log" 2>&1 &
  echo $! >"$dir/pid"
  wait_for "s3 (moto)" 60 port_open 9000 || { tail -n 30 "$dir/moto.log" >&2; return 1; }
}

# The buckets the tests and the benchmarks use (moto takes an unsigned CreateBucket).
s3_bucket() {
  local bucket
  for bucket in durable-test durable-bench; do
    curl -fsS -o /dev/null -X PUT "http://127.0.0.1:9000/$bucket" 2>/dev/null || true
    curl -fsS -o /dev/null -I "http://127.0.0.1:9000/$bucket" || { log "s3: cannot make bucket $bucket"; return 1; }
  done
}

# Azure Blob storage: Azurite from the npm registry, blob service only, in memory.
install_azurite() {
  local dir="$STATE_DIR/azurite"
  [ -x "$dir/node_modules/.bin/azurite-blob" ] && [ -d "$dir/node_modules/@azure/storage-blob" ] && return 0
  command -v npm >/dev/null || apt_install nodejs npm
  mkdir -p "$dir"
  log "installing azurite from npm"
  npm install --silent --prefix "$dir" azurite@3 @azure/storage-blob@12 >&2
}

# start_azure PORT CONTAINER: an Azurite blob service on 127.0.0.1:PORT with CONTAINER made.
start_azure() {
  local port=$1 container=$2 dir="$STATE_DIR/azurite"
  # An Azurite of ours started with telemetry on hangs once its lookups of Microsoft's
  # telemetry host (unreachable here) fill node's thread pool: replaced.
  if port_open "$port" && pgrep -f "azurite-blob --blobHost 127.0.0.1 --blobPort $port --inMemoryPersistence --skipApiVersionCheck --loose$" >/dev/null; then
    log "azure: restarting azurite with telemetry off"
    pkill -f "azurite-blob --blobHost 127.0.0.1 --blobPort $port" || true
    wait_for "old azurite to stop" 20 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$port)"
  fi
  # Azurite keeps every blob in memory and can hang (seen after a batch delete of thousands
  # of blobs timed out): one that answers nothing is replaced. Its contents are test data.
  if port_open "$port" && ! http_answers "$port"; then
    log "azure: azurite on $port does not answer: restarting it"
    pkill -9 -f "azurite-blob --blobHost 127.0.0.1 --blobPort $port" || true
    wait_for "hung azurite to stop" 20 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$port)"
  fi
  if port_open "$port"; then
    log "azure blob (azurite) on $port already up"
  else
    install_azurite
    nohup "$dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" --inMemoryPersistence \
      --skipApiVersionCheck --loose --disableTelemetry >"$dir/azurite-$port.log" 2>&1 &
    echo $! >"$dir/pid-$port"
    wait_for "azure blob (azurite) on $port" 60 port_open "$port" || { tail -n 30 "$dir/azurite-$port.log" >&2; return 1; }
  fi
  azure_container "$port" "$container"
}

# azure_container PORT NAME: makes the container with Azure's own client library and
# Azurite's well-known development account.
azure_container() {
  local dir="$STATE_DIR/azurite"
  install_azurite
  NODE_PATH="$dir/node_modules" PORT=$1 CONTAINER=$2 node -e '
    const { BlobServiceClient, StorageSharedKeyCredential } = require("@azure/storage-blob");
    const account = "devstoreaccount1";
    const key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    const service = new BlobServiceClient(`http://127.0.0.1:${process.env.PORT}/${account}`,
      new StorageSharedKeyCredential(account, key));
    service.getContainerClient(process.env.CONTAINER).createIfNotExists()
      .then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1); });
  ' || { log "azure: cannot make container $2 on port $1"; return 1; }
}

# The benchmark suite's own Azurite (127.0.0.1:10100, container durable-bench): a full run
# leaves hundreds of MB of blobs in it (Azurite's batch delete hangs on namespaces that
# big), which would slow every later test against the tests' Azurite; scripts/bench.sh
# starts this one and stops it when it ends.
stop_azure_bench() {
  pkill -f "azurite-blob --blobHost 127.0.0.1 --blobPort 10100 " || true
  wait_for "the benchmarks' azurite to stop" 20 bash -c '! (exec 3<>/dev/tcp/127.0.0.1/10100)'
}

# The databases' own command-line clients: the adopted-table tests write as another
# application would, with psql, mariadb and sqlite3.
sql_clients() {
  command -v psql >/dev/null || apt_install postgresql-client
  command -v mariadb >/dev/null || apt_install mariadb-client
  command -v sqlite3 >/dev/null || apt_install sqlite3
  return 0
}

# A real browser for the admin page's tests: Debian's Chromium and its WebDriver.
browser() {
  command -v chromium >/dev/null && command -v chromedriver >/dev/null && return 0
  apt_install chromium chromium-driver fonts-dejavu-core
}

want=${*:-redis postgres mariadb zookeeper zookeeper-ensemble redis-cluster s3 azure sql-clients browser}
for svc in $want; do
  case $svc in
    redis) start_redis ;;
    postgres) start_postgres ;;
    mariadb | mysql) start_mariadb ;;
    zookeeper | zk) start_zookeeper ;;
    zookeeper-ensemble | zk-ensemble) start_zookeeper_ensemble ;;
    redis-cluster) start_redis_cluster ;;
    s3 | moto) start_s3 && s3_bucket ;;
    azure | azurite) start_azure 10000 durable-test ;;
    azure-bench) start_azure 10100 durable-bench ;;
    stop-azure-bench) stop_azure_bench ;;
    sql-clients) sql_clients ;;
    browser | chromium) browser ;;
    *) log "unknown service $svc"; exit 2 ;;
  esac
done
