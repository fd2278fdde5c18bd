#!/usr/bin/env bash
# A real Kubernetes control plane for tests: etcd + kube-apiserver + kubectl (+ an optional
# kube-controller-manager), built from the Go module proxy by the wrapper module beside this script
# and cached outside the repo.
#
#   controlplane.sh build        build (or reuse) the binaries; last stdout line is the bin dir
#   controlplane.sh bindir       print the bin dir of the current sources (no build)
#   controlplane.sh start DIR [--controllers] [--node IP]
#                                start etcd + kube-apiserver on free loopback ports (and, with
#                                --controllers, kube-controller-manager so that Deployments get
#                                ReplicaSets and Pods); writes DIR/kubeconfig, DIR/env, DIR/*.log;
#                                last stdout line is DIR/env. --node IP: for a real node
#                                (tests/cluster): the apiserver listens on IP, which pods can
#                                reach, mounts ServiceAccount tokens, authorizes kubelets
#                                (Node,RBAC) and dials webhook Services' endpoints; the
#                                controller manager and kube-scheduler run too
#   controlplane.sh stop DIR     stop them (SIGTERM, then SIGKILL); idempotent
#   controlplane.sh gen VERSION  regenerate go.mod/go.sum for k8s.io/kubernetes@VERSION
#
# Environment: OOMGUARD_CACHE (default ~/.cache/oomguard), GO (go binary), CONTROLPLANE_JOBS
# (go build -p, default 2), CONTROLPLANE_READY_TIMEOUT (seconds, default 60),
# CONTROLPLANE_CONTROLLERS=1 (same as --controllers).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT="${OOMGUARD_CACHE:-${HOME:-/root}/.cache/oomguard}/controlplane"
BINARIES=(etcd kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet)
# Part of the cache key: bump it when the build flags below change, to force a rebuild.
BUILD_RECIPE=1

die() { echo "controlplane.sh: error: $*" >&2; exit 1; }
log() { echo "controlplane.sh: $*" >&2; }

find_go() {
  if [[ -n "${GO:-}" ]]; then echo "$GO"; return; fi
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  if [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; return; fi
  die "no Go toolchain found: install Go >= the 'go' line of $HERE/go.mod, or set GO=/path/to/go"
}

# The k8s.io/kubernetes version required by go.mod, e.g. v1.36.3.
k8s_version() {
  local v
  v=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ { print $2; exit }' "$HERE/go.mod")
  [[ -n "$v" ]] || die "k8s.io/kubernetes is not required in $HERE/go.mod"
  echo "$v"
}

# Cache key: hash of go.mod, go.sum, every .go source of the wrapper, the Go version and platform
# and BUILD_RECIPE.
cache_key() {
  local go; go=$(find_go)
  {
    echo "go.mod"; cat "$HERE/go.mod"
    echo "go.sum"; cat "$HERE/go.sum"
    (cd "$HERE" && find . -name '*.go' -type f | LC_ALL=C sort | while read -r f; do
      echo "$f"; cat "$f"; done)
    "$go" env GOVERSION GOOS GOARCH
    echo "recipe $BUILD_RECIPE"
  } | sha256sum | cut -c1-16
}

bindir() { echo "$CACHE_ROOT/$(cache_key)/bin"; }

have_build() {
  local bin=$1 b
  [[ -f "$bin/.stamp" ]] || return 1
  for b in "${BINARIES[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}

cmd_build() {
  local go key dir bin start
  go=$(find_go)
  [[ -f "$HERE/go.sum" ]] || die "$HERE/go.sum is missing: run '$0 gen $(k8s_version)'"
  key=$(cache_key)
  dir="$CACHE_ROOT/$key"
  bin="$dir/bin"
  if have_build "$bin"; then
    log "cached build: $bin"
    echo "$bin"
    return
  fi
  mkdir -p "$dir" || die "cannot create cache dir $dir (set OOMGUARD_CACHE to a writable dir)"
  # One build per key at a time; a second caller waits and then finds the stamp.
  exec 9>"$dir/.lock"
  flock 9
  if have_build "$bin"; then
    log "cached build (built by another process meanwhile): $bin"
    echo "$bin"
    return
  fi
  local v major minor tmp
  v=$(k8s_version)
  major=${v#v}; major=${major%%.*}
  minor=${v#v*.}; minor=${minor%%.*}
  tmp="$dir/bin.tmp.$$"
  rm -rf "$tmp" "$bin"
  mkdir -p "$tmp"
  log "building ${BINARIES[*]} for Kubernetes $v with $("$go" env GOVERSION) into $bin"
  log "(a cold build takes a long time on few cores; the Go build cache makes later ones faster)"
  start=$(date +%s)
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$v"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=$major"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  local pkgs=() b
  for b in "${BINARIES[@]}"; do pkgs+=("./cmd/$b"); done
  if ! (cd "$HERE" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" \
        nice -n 10 "$go" build -p "${CONTROLPLANE_JOBS:-2}" -trimpath -ldflags "$ldflags" \
        -o "$tmp/" "${pkgs[@]}"); then
    rm -rf "$tmp"
    die "go build failed (see the output above); the module is $HERE"
  fi
  for b in "${BINARIES[@]}"; do
    [[ -x "$tmp/$b" ]] || { rm -rf "$tmp"; die "go build did not produce $b"; }
  done
  "$go" env GOVERSION > "$tmp/.stamp"
  echo "k8s.io/kubernetes $v" >> "$tmp/.stamp"
  mv "$tmp" "$bin"
  log "build took $(( $(date +%s) - start ))s"
  echo "$bin"
}

# gen VERSION: write go.mod requiring k8s.io/kubernetes@VERSION with every staging module it lists
# as v0.0.0 replaced by v0.MINOR.PATCH, its go and godebug lines copied; then tidy to fill go.sum.
cmd_gen() {
  local v=${1:-} go mod
  [[ "$v" =~ ^v1\.[0-9]+\.[0-9]+$ ]] || die "usage: $0 gen v1.Y.Z (a k8s.io/kubernetes tag the proxy serves)"
  go=$(find_go)
  mod=$(cd "$HERE" && GOFLAGS=-mod=mod "$go" mod download -json "k8s.io/kubernetes@$v" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [[ -f "$mod" ]] || die "could not download k8s.io/kubernetes@$v's go.mod from the module proxy"
  local staging_v="v0.${v#v1.}" goline godebug
  goline=$(grep -m1 '^go ' "$mod")
  godebug=$(grep -m1 '^godebug ' "$mod" || true)
  {
    echo "// Generated by controlplane.sh gen $v: the wrapper that builds etcd, kube-apiserver,"
    echo "// kubectl and kube-controller-manager. Regenerate rather than edit by hand."
    echo "module oomguard/tests/controlplane"
    echo
    echo "$goline"
    [[ -n "$godebug" ]] && { echo; echo "$godebug"; }
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    # staging modules: required as v0.0.0 and replaced by ./staging/src/... in the tag's go.mod
    awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// { print $1 }' "$mod" | LC_ALL=C sort -u |
      while read -r m; do
        grep -q "^[[:space:]]*$m => ./staging/" "$mod" && printf '\t%s => %s %s\n' "$m" "$m" "$staging_v"
      done
    echo ")"
  } > "$HERE/go.mod"
  rm -f "$HERE/go.sum"
  (cd "$HERE" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$go" mod tidy) ||
    die "go mod tidy failed for k8s.io/kubernetes@$v"
  log "wrote $HERE/go.mod and go.sum for k8s.io/kubernetes@$v"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' ||
    die "python3 is needed to pick a free port"
}

# pid_is BIN PID: PID is alive and runs BIN (guards against pid reuse).
pid_is() {
  local bin=$1 pid=$2 exe
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  # a zombie (exited, not yet reaped by its parent) counts as stopped
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
  [[ -z "$exe" || "$(basename "${exe% (deleted)}")" == "$bin" ]]
}

gen_pki() {
  local pki=$1 extra_san=${2:+,IP:$2}
  mkdir -p "$pki"
  (
    cd "$pki"
    set -e
    exec 3>openssl.log
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>&3
    openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=oomguard-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out ca.crt 2>&3
    openssl ecparam -name prime256v1 -genkey -noout -out apiserver.key 2>&3
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr 2>&3
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" \
      "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,IP:192.0.2.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local$extra_san" \
      > apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -sha256 -extfile apiserver.ext -out apiserver.crt 2>&3
    openssl ecparam -name prime256v1 -genkey -noout -out admin.key 2>&3
    openssl req -new -key admin.key -subj "/O=system:masters/CN=admin" -out admin.csr 2>&3
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=clientAuth" > admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -sha256 -extfile admin.ext -out admin.crt 2>&3
    openssl genrsa -out sa.key 2048 2>&3
    openssl rsa -in sa.key -pubout -out sa.pub 2>&3
  ) || die "openssl failed to create the certificates in $pki (see $pki/openssl.log)"
}

write_kubeconfig() {
  local out=$1 url=$2 pki=$3
  cat > "$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: oomguard-test
  cluster:
    server: $url
    certificate-authority-data: $(base64 -w0 < "$pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 < "$pki/admin.crt")
    client-key-data: $(base64 -w0 < "$pki/admin.key")
contexts:
- name: oomguard-test
  context:
    cluster: oomguard-test
    user: admin
current-context: oomguard-test
EOF
}

fail_start() {
  local dir=$1 msg=$2 f
  echo "controlplane.sh: error: $msg" >&2
  for f in "$dir/etcd.log" "$dir/kube-apiserver.log" "$dir/kube-controller-manager.log" \
           "$dir/kube-scheduler.log"; do
    [[ -f "$f" ]] || continue
    echo "---- last 30 lines of $f ----" >&2
    tail -n 30 "$f" >&2
  done
  cmd_stop "$dir" >/dev/null 2>&1 || true
  echo "controlplane.sh: the control plane was stopped; logs are in $dir" >&2
  exit 1
}

cmd_start() {
  local dir=${1:-} controllers=${CONTROLPLANE_CONTROLLERS:-0} node_ip=""
  [[ -n "$dir" ]] || die "usage: $0 start DIR [--controllers] [--node IP]"
  shift
  while (( $# )); do
    case "$1" in
      --controllers) controllers=1 ;;
      --node) node_ip=${2:-}; [[ -n "$node_ip" ]] || die "--node needs an IP"; shift; controllers=1 ;;
      *) die "unknown option '$1' (usage: $0 start DIR [--controllers] [--node IP])" ;;
    esac
    shift
  done
  mkdir -p "$dir" || die "cannot create $dir"
  dir=$(cd "$dir" && pwd)
  if [[ -f "$dir/env" ]]; then
    local APISERVER_PID="" ETCD_PID="" CONTROLLER_MANAGER_PID="" SCHEDULER_PID=""
    # shellcheck disable=SC1091
    . "$dir/env"
    if pid_is kube-apiserver "$APISERVER_PID" || pid_is etcd "$ETCD_PID" ||
       pid_is kube-controller-manager "$CONTROLLER_MANAGER_PID" ||
       pid_is kube-scheduler "$SCHEDULER_PID"; then
      die "a control plane is already running from $dir (run '$0 stop $dir' first)"
    fi
  fi
  for tool in openssl curl python3 base64; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is needed by '$0 start'; install it"
  done
  local bin
  bin=$(cmd_build | tail -n1)
  have_build "$bin" || die "no binaries in $bin"

  local t0 pki etcd_port peer_port api_port
  t0=$(date +%s.%N)
  rm -rf "$dir/etcd-data" "$dir/pki" "$dir/env" "$dir/kubeconfig"
  pki="$dir/pki"
  gen_pki "$pki" "$node_ip"
  etcd_port=$(free_port)
  peer_port=$(free_port)
  api_port=$(free_port)
  while [[ "$peer_port" == "$etcd_port" ]]; do peer_port=$(free_port); done
  while [[ "$api_port" == "$etcd_port" || "$api_port" == "$peer_port" ]]; do api_port=$(free_port); done

  # Proxy variables must not route the apiserver's calls to 127.0.0.1 webhooks anywhere else.
  local -a cleanenv=(env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy -u ALL_PROXY
                     -u all_proxy "NO_PROXY=127.0.0.1,localhost,::1" "no_proxy=127.0.0.1,localhost,::1")

  "${cleanenv[@]}" "$bin/etcd" \
    --name=default \
    --data-dir="$dir/etcd-data" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="default=http://127.0.0.1:$peer_port" \
    --unsafe-no-fsync=true \
    --quota-backend-bytes=$((2 * 1024 * 1024 * 1024)) \
    --listen-metrics-urls="" \
    >"$dir/etcd.log" 2>&1 </dev/null &
  local etcd_pid=$!

  local api_host=${node_ip:-127.0.0.1}
  local etcd_url="http://127.0.0.1:$etcd_port" api_url="https://$api_host:$api_port"
  # Without a node: no pods run, so no ServiceAccount tokens are mounted and nothing but the
  # admin calls the API. With one: pods get tokens, kubelets are authorized as nodes, and the
  # apiserver reaches webhook Services through their endpoints (there is no kube-proxy).
  local -a node_args=(--disable-admission-plugins=ServiceAccount --authorization-mode=RBAC)
  if [[ -n "$node_ip" ]]; then
    node_args=(--authorization-mode=Node,RBAC --enable-aggregator-routing=true
               --kubelet-client-certificate="$pki/admin.crt" --kubelet-client-key="$pki/admin.key"
               --kubelet-certificate-authority="$pki/ca.crt"
               --kubelet-preferred-address-types=InternalIP)
  fi
  local deadline=$(( $(date +%s) + ${CONTROLPLANE_READY_TIMEOUT:-60} ))
  until curl -fsS --noproxy '*' -m 2 "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"'; do
    kill -0 "$etcd_pid" 2>/dev/null || fail_start "$dir" "etcd exited during start-up"
    (( $(date +%s) < deadline )) || fail_start "$dir" "etcd was not healthy at $etcd_url/health within ${CONTROLPLANE_READY_TIMEOUT:-60}s"
    sleep 0.2
  done

  # The audit log: every write (who, what, the answer's code), nothing else; the tests count
  # oomguard's writes in it (DIR/audit.log, one JSON event per line).
  cat > "$dir/audit-policy.yaml" <<'AUDIT'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
AUDIT

  # As envtest starts it, plus what this machine and oomguard's tests need.
  "${cleanenv[@]}" "$bin/kube-apiserver" \
    --audit-policy-file="$dir/audit-policy.yaml" \
    --audit-log-path="$dir/audit.log" \
    --audit-log-format=json \
    --audit-log-maxsize=200 \
    --advertise-address=192.0.2.1 \
    --endpoint-reconciler-type=none \
    --bind-address="$api_host" \
    --secure-port="$api_port" \
    --etcd-servers="$etcd_url" \
    --cert-dir="$pki" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    "${node_args[@]}" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    >"$dir/kube-apiserver.log" 2>&1 </dev/null &
  local api_pid=$!

  cat > "$dir/env" <<EOF
# written by controlplane.sh start; source it from a shell
export KUBECONFIG='$dir/kubeconfig'
export KUBECTL='$bin/kubectl'
export CONTROLPLANE_BIN='$bin'
export APISERVER_URL='$api_url'
export APISERVER_PORT='$api_port'
export APISERVER_PID='$api_pid'
export ETCD_URL='$etcd_url'
export ETCD_PID='$etcd_pid'
export CONTROLPLANE_CA='$pki/ca.crt'
export CONTROLPLANE_CA_KEY='$pki/ca.key'
export CONTROLLER_MANAGER_PID=''
export SCHEDULER_PID=''
export NODE_IP='$node_ip'
EOF
  write_kubeconfig "$dir/kubeconfig" "$api_url" "$pki"

  until [[ "$(curl -sS --noproxy '*' -m 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" \
               --key "$pki/admin.key" "$api_url/readyz" 2>/dev/null)" == ok ]]; do
    kill -0 "$api_pid" 2>/dev/null || fail_start "$dir" "kube-apiserver exited during start-up"
    kill -0 "$etcd_pid" 2>/dev/null || fail_start "$dir" "etcd exited during start-up"
    if (( $(date +%s) >= deadline )); then
      curl -sS --noproxy '*' -m 2 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" \
        --key "$pki/admin.key" "$api_url/readyz?verbose" 2>&1 | grep -v '\[+\]' >&2 || true
      fail_start "$dir" "kube-apiserver was not ready at $api_url/readyz within ${CONTROLPLANE_READY_TIMEOUT:-60}s (raise CONTROLPLANE_READY_TIMEOUT on a slow machine)"
    fi
    sleep 0.2
  done
  if [[ "$controllers" == 1 ]]; then
    # No serving endpoint (--secure-port=0), the admin identity, no leader election.
    "${cleanenv[@]}" "$bin/kube-controller-manager" \
      --kubeconfig="$dir/kubeconfig" \
      --secure-port=0 \
      --leader-elect=false \
      --service-cluster-ip-range=10.0.0.0/24 \
      --root-ca-file="$pki/ca.crt" \
      --service-account-private-key-file="$pki/sa.key" \
      --cluster-signing-cert-file="$pki/ca.crt" \
      --cluster-signing-key-file="$pki/ca.key" \
      >"$dir/kube-controller-manager.log" 2>&1 </dev/null &
    local kcm_pid=$!
    sed -i "s/^export CONTROLLER_MANAGER_PID=.*/export CONTROLLER_MANAGER_PID='$kcm_pid'/" "$dir/env"
    # Ready once the service-account controller has made kube-system's default ServiceAccount.
    until curl -fsS --noproxy '*' -m 2 -o /dev/null --cacert "$pki/ca.crt" --cert "$pki/admin.crt" \
            --key "$pki/admin.key" "$api_url/api/v1/namespaces/default/serviceaccounts/default" 2>/dev/null; do
      kill -0 "$kcm_pid" 2>/dev/null || fail_start "$dir" "kube-controller-manager exited during start-up"
      (( $(date +%s) < deadline )) || fail_start "$dir" "kube-controller-manager did not create the default ServiceAccount within ${CONTROLPLANE_READY_TIMEOUT:-60}s"
      sleep 0.2
    done
  fi
  if [[ -n "$node_ip" ]]; then
    "${cleanenv[@]}" "$bin/kube-scheduler" \
      --kubeconfig="$dir/kubeconfig" \
      --secure-port=0 \
      --leader-elect=false \
      >"$dir/kube-scheduler.log" 2>&1 </dev/null &
    local sched_pid=$!
    sed -i "s/^export SCHEDULER_PID=.*/export SCHEDULER_PID='$sched_pid'/" "$dir/env"
    sleep 0.5
    kill -0 "$sched_pid" 2>/dev/null || fail_start "$dir" "kube-scheduler exited during start-up"
  fi
  log "ready at $api_url in $(python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.1f}')" "$t0" "$(date +%s.%N)")s; 'source $dir/env' for KUBECONFIG and KUBECTL"
  echo "$dir/env"
}

# stop_pid NAME PID: SIGTERM, wait up to 15s, then SIGKILL.
stop_pid() {
  local name=$1 pid=$2 i
  pid_is "$name" "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 150; i++)); do
    pid_is "$name" "$pid" || return 0
    sleep 0.1
  done
  log "$name (pid $pid) did not stop within 15s of SIGTERM; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    pid_is "$name" "$pid" || return 0
    sleep 0.1
  done
  die "$name (pid $pid) is still running after SIGKILL"
}

cmd_stop() {
  local dir=${1:-}
  [[ -n "$dir" ]] || die "usage: $0 stop DIR"
  [[ -f "$dir/env" ]] || { log "nothing to stop in $dir (no env file)"; return 0; }
  local APISERVER_PID="" ETCD_PID="" CONTROLLER_MANAGER_PID="" SCHEDULER_PID=""
  # shellcheck disable=SC1091
  . "$dir/env"
  stop_pid kube-scheduler "$SCHEDULER_PID"
  stop_pid kube-controller-manager "$CONTROLLER_MANAGER_PID"
  stop_pid kube-apiserver "$APISERVER_PID"
  stop_pid etcd "$ETCD_PID"
  log "stopped the control plane of $dir"
}

case "${1:-}" in
  build) cmd_build ;;
  bindir) bindir ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  gen) shift; cmd_gen "$@" ;;
  *) echo "usage: $0 {build|bindir|start DIR|stop DIR|gen VERSION}" >&2; exit 2 ;;
esac
