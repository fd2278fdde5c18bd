#!/usr/bin/env bash
# Validates deploy/ against a real kube-apiserver (a throwaway one: it installs oomguard and
# deletes it again).
#
#   tests/deploy/validate.sh KUBECTL KUBECONFIG
#   OOMGUARD_WRITE_DOCS=1 tests/deploy/validate.sh KUBECTL KUBECONFIG   # also rewrite docs/security.md's can-i section
#
# KUBECTL: a kubectl of the same minor version as the apiserver (1.35+), KUBECONFIG: a
# cluster-admin kubeconfig for it. For example, with the test control plane:
#   . "$(tests/controlplane/controlplane.sh start /tmp/cp)"   # exports KUBECTL and KUBECONFIG
#   tests/deploy/validate.sh "$KUBECTL" "$KUBECONFIG"
#   tests/controlplane/controlplane.sh stop /tmp/cp
#
# 1. renders deploy/, deploy/overlays/openshift and deploy/overlays/cert-manager with
#    `kubectl kustomize`, and checks what each overlay must change;
# 2. server-side dry-runs the base and the OpenShift overlay (the API's schema, strict field
#    validation, Pod Security "restricted"); the cert-manager overlay's cert-manager.io objects
#    are checked client-side only (the test apiserver has no cert-manager CRDs), its other objects
#    are dry-run on the server;
# 3. applies the base for real and asks `kubectl auth can-i --as=<oomguard's ServiceAccount>` for
#    everything the reconciler needs (must be yes) and for what it must not have (must be no);
# 4. server-side dry-runs a Pod made from the Deployment's template (Pod Security "restricted",
#    the projected token volume, priorityClassName system-cluster-critical outside kube-system);
# 5. acts as oomguard's ServiceAccounts (tests/deploy/privilege.sh): what the reconciler does is
#    allowed, everything else RBAC's whole-object grants would allow is refused by the
#    ValidatingAdmissionPolicy, and nothing in kube-system, kube-public, kube-node-lease, oomguard;
# 6. compares `kubectl auth can-i --list` of each identity with the section of docs/security.md
#    that shows it (OOMGUARD_WRITE_DOCS=1 rewrites that section);
# 7. deletes what it applied (without waiting: with no kube-controller-manager the namespace stays
#    Terminating).
# Prints "ok   ..." or "FAIL ..." per check, then "N passed, M failed" as the last line; exits 1 if
# anything failed, 2 on a usage error.
set -euo pipefail

usage() {
  echo "usage: $0 KUBECTL KUBECONFIG" >&2
  echo "  KUBECTL     path to a kubectl matching the apiserver (1.35+)" >&2
  echo "  KUBECONFIG  path to a cluster-admin kubeconfig of a throwaway apiserver" >&2
  exit 2
}
[[ $# -eq 2 ]] || usage
KUBECTL=$1
export KUBECONFIG=$2
[[ -x "$KUBECTL" ]] || { echo "$0: KUBECTL '$KUBECTL' is not an executable file" >&2; usage; }
[[ -r "$KUBECONFIG" ]] || { echo "$0: KUBECONFIG '$KUBECONFIG' is not a readable file" >&2; usage; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPLOY=$ROOT/deploy
NS=oomguard
SA=system:serviceaccount:$NS:oomguard
WORK=$(mktemp -d "${TMPDIR:-/tmp}/oomguard-deploy-validate.XXXXXX")

PASSED=0
FAILED=0
APPLIED=0

pass() { PASSED=$((PASSED + 1)); echo "ok   $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $*"; }
# Indented command output under a check.
show() { sed 's/^/       /' "$@"; }
step() { echo; echo "== $*"; }

k() { "$KUBECTL" "$@"; }

cleanup() {
  local rc=$?
  set +e
  if [[ "$APPLIED" == 1 ]]; then
    step "7. clean up"
    declare -F privilege_cleanup >/dev/null && privilege_cleanup
    if k delete -k "$DEPLOY" --ignore-not-found --wait=false >"$WORK/delete.out" 2>&1; then
      pass "delete -k deploy/ --wait=false"
    else
      fail "delete -k deploy/ --wait=false"
      show "$WORK/delete.out"
    fi
    # The namespace controller (kube-controller-manager) finishes a namespace deletion; without
    # it the namespace stays Terminating. Look once, do not wait for it.
    if k get namespace "$NS" >/dev/null 2>&1; then
      echo "     note: namespace $NS is Terminating; it goes away only if kube-controller-manager runs"
      echo "           (a second run needs a fresh apiserver)"
    fi
  fi
  rm -rf "$WORK"
  echo
  echo "$PASSED passed, $FAILED failed"
  if [[ $rc -ne 0 || $FAILED -gt 0 ]]; then exit 1; fi
  exit 0
}
trap cleanup EXIT

# select_docs KEEP REGEX FILE: the documents of a multi-document YAML file (as `kubectl kustomize`
# prints it) that have (KEEP=1) or do not have (KEEP=0) a line matching REGEX.
select_docs() {
  awk -v keep="$1" -v re="$2" '
    function flush() {
      if (doc != "" && hit == keep) { if (n++) printf "---\n"; printf "%s", doc }
      doc = ""; hit = 0
    }
    /^---$/ { flush(); next }
    { doc = doc $0 "\n"; if ($0 ~ re) hit = 1 }
    END { flush() }' "$3"
}

# expect_count WHAT N REGEX FILE: exactly N lines of FILE match REGEX (grep -E).
expect_count() {
  local what=$1 want=$2 re=$3 file=$4 got
  got=$(grep -cE -- "$re" "$file" || true)
  if [[ "$got" == "$want" ]]; then pass "$what"; else fail "$what (found $got, expected $want: /$re/)"; fi
}

# expect_equal WHAT WANT GOT
expect_equal() {
  if [[ "$3" == "$2" ]]; then pass "$1"; else fail "$1"; echo "       expected: $2"; echo "       found:    $3"; fi
}

# jp FILE KIND JSONPATH: JSONPATH applied to the KIND objects of a rendered FILE (kubectl,
# client-side; the apiserver only answers discovery).
jp() {
  select_docs 1 "^kind: $2\$" "$1" | k create --dry-run=client -f - -o jsonpath="$3" 2>"$WORK/jp.err" ||
    { echo "(kubectl: $(tr '\n' ' ' <"$WORK/jp.err"))"; }
}

# A NetworkPolicy's rules in one line, for jp: ingress "PORTS<-[FROM]" per rule ([] = from
# anywhere, [{}] = any pod of any namespace), egress "PORTS->[TO]"; ns_sel NS...: the FROM/TO
# of namespaces selected by name.
NP_RULES='in:{range .spec.ingress[*]}{" "}{.ports[*].port}<-[{range .from[*]}{.namespaceSelector}{end}]{end} out:{range .spec.egress[*]}{" "}{.ports[*].port}->[{range .to[*]}{.namespaceSelector}{end}]{end}'
ns_sel() { printf '{"matchLabels":{"kubernetes.io/metadata.name":"%s"}}' "$@"; }

# dry_run NAME FILE-or-"-k DIR": kubectl apply --dry-run=server, no warnings allowed.
dry_run() {
  local name=$1; shift
  if k apply "$@" --dry-run=server >"$WORK/dry.out" 2>"$WORK/dry.err"; then
    if grep -q '^Warning:' "$WORK/dry.err"; then
      fail "apply --dry-run=server $name: warnings"
      show "$WORK/dry.err"
    else
      pass "apply --dry-run=server $name ($(wc -l <"$WORK/dry.out" | tr -d ' ') objects)"
    fi
  else
    fail "apply --dry-run=server $name"
    show "$WORK/dry.err"
  fi
}

# can_i yes|no VERB RESOURCE [kubectl auth can-i flags...]; pass -A for cluster-scoped resources
# (without it kubectl asks in the kubeconfig's namespace and warns).
can_i() {
  local want=$1 verb=$2 res=$3; shift 3
  local label="can-i $verb $res${*:+ $*}" out
  out=$(k auth can-i "$verb" "$res" "$@" --as="$SA" 2>"$WORK/cani.err") || true
  out=${out%%$'\n'*}
  # A warning (an unknown resource type or verb, a namespace on a cluster-scoped resource) would
  # make a "no" meaningless: it fails the check.
  if grep -q 'Warning' "$WORK/cani.err"; then
    fail "$label: $out, with a warning"
    show "$WORK/cani.err"
    return
  fi
  case "$out" in
    yes|no|"no - "*)
      if [[ "${out%% - *}" == "$want" ]]; then pass "$label: $out"
      else fail "$label: $out, expected $want"; fi ;;
    *)
      fail "$label: kubectl auth can-i failed"
      show "$WORK/cani.err" ;;
  esac
}

step "kubectl and apiserver"
if ! k version -o yaml >"$WORK/version" 2>"$WORK/version.err"; then
  cat "$WORK/version.err" >&2
  fail "cannot reach the apiserver of $KUBECONFIG with $KUBECTL"
  exit 1
fi
client=$(awk '/^clientVersion:/{s=1} s && /gitVersion:/{print $2; exit}' "$WORK/version")
server=$(awk '/^serverVersion:/{s=1} s && /gitVersion:/{print $2; exit}' "$WORK/version")
echo "     kubectl $client, kube-apiserver $server"
if [[ "$(k auth can-i '*' '*' -A 2>/dev/null || true)" != yes ]]; then
  fail "the KUBECONFIG user is not cluster-admin (kubectl auth can-i '*' '*' -A is not yes)"
  exit 1
fi
if k get namespace "$NS" >/dev/null 2>&1 || k get clusterrole oomguard-reconciler >/dev/null 2>&1; then
  fail "oomguard is already installed on this apiserver (or namespace $NS is still Terminating from an earlier run): this script installs and deletes it, so run it against a fresh, throwaway apiserver"
  exit 1
fi

step "1. render (kubectl kustomize)"
for dir in "" overlays/openshift overlays/cert-manager; do
  name=${dir:-base}; name=${name##*/}
  if k kustomize "$DEPLOY/$dir" >"$WORK/$name.yaml" 2>"$WORK/render.err"; then
    pass "kustomize deploy/$dir ($(grep -c '^kind:' "$WORK/$name.yaml") objects)"
  else
    fail "kustomize deploy/$dir"
    show "$WORK/render.err"
    exit 1
  fi
done
B=$WORK/base.yaml O=$WORK/openshift.yaml C=$WORK/cert-manager.yaml
expect_count "base: both webhook configurations" 2 '^kind: (Mutating|Validating)WebhookConfiguration$' "$B"
expect_count "base: no caBundle (each install injects it)" 0 'caBundle' "$B"
expect_count "base: policies ConfigMap without hash suffix" 1 '^  name: oomguard-policies$' "$B"
expect_count "base: runAsUser 65532" 1 '^ +runAsUser: 65532$' "$B"
expect_count "base: memory limits on both containers (webhook, reconciler)" 2 '^ +memory: [0-9]+Mi$' \
  <(awk '/^ +limits:$/{l=1; next} l && /^ +memory:/{print; l=0} /^ +requests:$/{l=0}' "$B")
expect_count "base: the reconcile sidecar" 1 '^ +- reconcile$' "$B"
# /metrics is plain HTTP without authentication: on the pods (scraped there, NetworkPolicy), not
# published through the Service (docs/security.md).
expect_count "base: no metrics port on the Service (8080, 8081: pods only)" 0 \
  '^ +(- )?(name: (metrics|recon-metrics)|port: 808[01])$' <(select_docs 1 '^kind: Service$' "$B")
expect_count "base: the metrics ports stay on the containers (webhook 8080, reconciler 8081)" 2 \
  '^ +- containerPort: 808[01]$' <(select_docs 1 '^kind: Deployment$' "$B")
expect_count "base: the API port on the Service" 1 '^ +(- )?name: api$' \
  <(select_docs 1 '^kind: Service$' "$B")
expect_count "base and openshift: the reconciler serves the API with the webhook's certificate" 2 \
  '^ +- --tls-cert=/etc/oomguard/tls/tls\.crt$' <(grep -h -A12 -- '- reconcile$' "$B" "$O")
expect_count "base: the reconciler knows its pod name and namespace (Lease)" 2 \
  '^ +- name: POD_(NAME|NAMESPACE)$' <(grep -h -A24 -- '- reconcile$' "$B")
expect_count "base: the webhook knows its namespace (left alone like kube-system)" 1 \
  '^ +- name: POD_NAMESPACE$' <(grep -h -A16 -- '- serve$' "$B")
expect_count "openshift: the reconcile sidecar too" 1 '^ +- reconcile$' "$O"
expect_count "openshift: serving-cert-secret-name on the Service" 1 \
  '^    service\.beta\.openshift\.io/serving-cert-secret-name: oomguard-tls$' "$O"
expect_count "openshift: inject-cabundle on both webhook configurations" 2 \
  '^    service\.beta\.openshift\.io/inject-cabundle: "true"$' "$O"
expect_count "openshift: no fixed runAsUser/runAsGroup/fsGroup" 0 '^ +(runAsUser|runAsGroup|fsGroup):' "$O"
expect_count "openshift: both containers query Thanos querier on 9091" 2 \
  '^ +- --prometheus=https://thanos-querier\.openshift-monitoring\.svc:9091$' "$O"
expect_count "openshift: both send the read-only oomguard-prometheus token" 2 \
  '^ +- --prometheus-token-file=/var/run/secrets/oomguard/prometheus/token$' "$O"
expect_count "openshift: both verify with the service CA" 2 \
  '^ +- --prometheus-ca-file=/var/run/secrets/oomguard/prometheus/service-ca\.crt$' "$O"
expect_count "openshift: nobody sends the reconciler's API token to Prometheus" 0 \
  '^ +- --prometheus-(token|ca)-file=/var/run/secrets/kubernetes\.io/' "$O"
expect_count "openshift: binding to cluster-monitoring-view" 1 '^  name: cluster-monitoring-view$' "$O"
expect_count "openshift: ... for oomguard-prometheus, not for the reconciler's oomguard" 1 \
  '^  name: oomguard-prometheus$' \
  <(select_docs 1 '^  name: oomguard-cluster-monitoring-view$' "$O" | sed -n '/^subjects:/,$p')
expect_count "openshift: the token Secret belongs to oomguard-prometheus" 1 \
  '^    kubernetes\.io/service-account\.name: oomguard-prometheus$' \
  <(select_docs 1 '^type: kubernetes\.io/service-account-token$' "$O")
expect_count "openshift: the webhooks leave out openshift-monitoring, not monitoring" 4 \
  '^      - openshift-monitoring$' <(select_docs 1 'WebhookConfiguration$' "$O")
expect_count "openshift: ... nor monitoring" 0 '^      - monitoring$' <(select_docs 1 'WebhookConfiguration$' "$O")
expect_count "openshift: the webhooks leave out run-level 0 and 1 namespaces" 4 \
  '^    - key: openshift\.io/run-level$' "$O"
expect_equal "openshift: NetworkPolicy: metrics from openshift-monitoring and user workload monitoring, Thanos querier in openshift-monitoring, DNS also on 5353" \
  "in: 8443<-[] 9443<-[{}] 8080 8081<-[$(ns_sel openshift-monitoring openshift-user-workload-monitoring)] out: 443 6443->[] 9090 9091->[$(ns_sel openshift-monitoring)] 53 53 5353 5353->[]" \
  "$(jp "$O" NetworkPolicy "$NP_RULES")"
# The base's least-privilege parts, in every render.
for f in "$B" "$O" "$C"; do
  n=$(basename "$f" .yaml)
  expect_count "$n: the ValidatingAdmissionPolicy oomguard-memory-only and a binding of it" 3 \
    '^  (name|policyName): oomguard-memory-only$' \
    <(select_docs 1 '^kind: ValidatingAdmissionPolicy(Binding)?$' "$f")
  expect_count "$n: the webhooks leave out kube-system, kube-node-lease and oomguard" 12 \
    '^      - (kube-system|kube-node-lease|oomguard)$' <(select_docs 1 'WebhookConfiguration$' "$f")
  expect_count "$n: the pods run as system-cluster-critical" 1 \
    '^      priorityClassName: system-cluster-critical$' "$f"
  expect_count "$n: a quota that admits system-cluster-critical pods in oomguard" 1 \
    '^      - system-cluster-critical$' <(select_docs 1 '^kind: ResourceQuota$' "$f")
  # The webhook container runs with no API token: nothing mounts one by itself, one projected
  # volume carries it, and only the reconciler container mounts that volume (or anything under
  # /var/run/secrets/kubernetes.io).
  expect_equal "$n: the pod mounts no token by itself (automountServiceAccountToken: false)" false \
    "$(jp "$f" Deployment '{.spec.template.spec.automountServiceAccountToken}')"
  expect_equal "$n: ... nor would its ServiceAccounts" "oomguard=false oomguard-prometheus=false" \
    "$(jp "$f" ServiceAccount '{.metadata.name}={.automountServiceAccountToken} ' | sed 's/ $//')"
  tokvols=$(jp "$f" Deployment \
    '{range .spec.template.spec.volumes[*]}{.name}={.projected.sources[*].serviceAccountToken.path}{"\n"}{end}' |
    awk -F= '$2 != "" {print $1}' | paste -sd' ' -)
  expect_equal "$n: one volume holds the API token: kube-api-access" kube-api-access "$tokvols"
  mounts=$(jp "$f" Deployment '{range .spec.template.spec.initContainers[*]}{.name}:{range .volumeMounts[*]}{.name}@{.mountPath} {end}{"\n"}{end}{range .spec.template.spec.containers[*]}{.name}:{range .volumeMounts[*]}{.name}@{.mountPath} {end}{"\n"}{end}')
  holders=$(awk -v re="^(${tokvols// /|})@|@/var/run/secrets/kubernetes\\.io" '
    { split($0, a, ":"); n = split(a[2], m, " ")
      for (i = 1; i <= n; i++) if (m[i] ~ re) { print a[1]; break } }' <<<"$mounts" | sort -u | paste -sd' ' -)
  expect_equal "$n: the API token reaches the reconciler container only, never the webhook" reconciler "$holders"
  expect_count "$n: ... at /var/run/secrets/kubernetes.io/serviceaccount, where kube-rs reads it" 1 \
    '^reconciler:.*kube-api-access@/var/run/secrets/kubernetes\.io/serviceaccount ' <(echo "$mounts")
  # The two containers share only read-only mounts (the certificate, the policies): no writable
  # channel from the webhook to the container that holds the token.
  shared=$(jp "$f" Deployment '{range .spec.template.spec.containers[*]}{.name}:{range .volumeMounts[*]}{.name}={.readOnly} {end}{"\n"}{end}' |
    awk '{ split($0, a, ":"); n = split(a[2], m, " ")
           for (i = 1; i <= n; i++) { split(m[i], v, "="); c[v[1]]++; if (v[2] != "true") rw[v[1]] = 1 } }
         END { for (x in c) if (c[x] > 1) print x (x in rw ? "(writable)" : "") }' | sort | paste -sd' ' -)
  want_shared="policies tls"
  [[ "$f" == "$O" ]] && want_shared="policies prometheus-auth tls"
  expect_equal "$n: the containers share read-only mounts only ($want_shared)" "$want_shared" "$shared"
  expect_equal "$n: NetworkPolicy: types" "Ingress Egress" "$(jp "$f" NetworkPolicy '{.spec.policyTypes[*]}')"
  expect_equal "$n: NetworkPolicy: pods" "oomguard oomguard" "$(jp "$f" NetworkPolicy \
    '{.spec.podSelector.matchLabels.app\.kubernetes\.io/name} {.spec.podSelector.matchLabels.app\.kubernetes\.io/instance}')"
done
expect_equal "base: NetworkPolicy: webhook 8443 from anywhere, API 9443 from any pod, metrics 8080/8081 from monitoring; egress apiserver 443/6443, Prometheus 9090/9091 in monitoring, DNS" \
  "in: 8443<-[] 9443<-[{}] 8080 8081<-[$(ns_sel monitoring)] out: 443 6443->[] 9090 9091->[$(ns_sel monitoring)] 53 53->[]" \
  "$(jp "$B" NetworkPolicy "$NP_RULES")"
expect_equal "cert-manager: the same NetworkPolicy" "$(jp "$B" NetworkPolicy "$NP_RULES")" \
  "$(jp "$C" NetworkPolicy "$NP_RULES")"
expect_count "base: the webhooks leave out the monitoring namespace (Prometheus)" 4 \
  '^      - monitoring$' <(select_docs 1 'WebhookConfiguration$' "$B")

expect_count "openshift: the read-only Thanos token reaches the webhook and the reconciler" 2 \
  'prometheus-auth@/var/run/secrets/oomguard/prometheus ' <(jp "$O" Deployment \
  '{range .spec.template.spec.containers[*]}{.name}:{range .volumeMounts[*]}{.name}@{.mountPath} {end}{"\n"}{end}')
expect_equal "openshift: ... from the Secret oomguard-prometheus-token and the service CA" \
  "oomguard-prometheus-token openshift-service-ca.crt" "$(jp "$O" Deployment \
  '{range .spec.template.spec.volumes[?(@.name=="prometheus-auth")]}{.projected.sources[*].secret.name} {.projected.sources[*].configMap.name}{end}')"

# components/pod-monitor (client-side: no Prometheus Operator CRDs here): it scrapes the metrics
# ports by the names the containers give them.
mkdir -p "$WORK/pod-monitor"
rel=$(realpath --relative-to="$WORK/pod-monitor" "$DEPLOY")
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/base\ncomponents:\n  - %s/components/pod-monitor\n' \
  "$rel" "$rel" >"$WORK/pod-monitor/kustomization.yaml"
if k kustomize "$WORK/pod-monitor" >"$WORK/pm.yaml" 2>"$WORK/render.err"; then
  expect_count "pod-monitor: a PodMonitor scraping the ports metrics and recon-metrics" 2 \
    '^    port: (metrics|recon-metrics)$' <(select_docs 1 '^kind: PodMonitor$' "$WORK/pm.yaml")
  expect_equal "pod-monitor: ... which the containers name so" "metrics=8080 recon-metrics=8081" \
    "$(jp "$WORK/pm.yaml" Deployment '{range .spec.template.spec.containers[*].ports[*]}{.name}={.containerPort} {end}' |
       tr ' ' '\n' | grep -E '^(recon-)?metrics=' | sort | paste -sd' ' -)"
else
  fail "kustomize deploy/ + components/pod-monitor"
  show "$WORK/render.err"
fi

# components/one-call, over the base and over the OpenShift overlay: one MutatingWebhookConfiguration
# whose two webhooks answer at /admit (what `oomguard certs --webhooks one` renders), no
# ValidatingWebhookConfiguration, the overlay's changes kept.
for over in base overlays/openshift; do
  d="$WORK/one-call-${over//\//-}"
  mkdir -p "$d"
  rel=$(realpath --relative-to="$d" "$DEPLOY")
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s/%s\ncomponents:\n  - %s/components/one-call\n' \
    "$rel" "$over" "$rel" >"$d/kustomization.yaml"
  if k kustomize "$d" >"$d.yaml" 2>"$WORK/render.err"; then
    expect_equal "one-call over $over: one MutatingWebhookConfiguration, no validating one" \
      "MutatingWebhookConfiguration" "$(grep -E '^kind: .*WebhookConfiguration$' "$d.yaml" | sed 's/^kind: //' | paste -sd' ' -)"
    expect_equal "one-call over $over: its webhooks admit.oomguard.io and admit-bare.oomguard.io at /admit" \
      "admit.oomguard.io=/admit admit-bare.oomguard.io=/admit" \
      "$(jp "$d.yaml" MutatingWebhookConfiguration '{range .webhooks[*]}{.name}={.clientConfig.service.path} {end}' | sed 's/ $//')"
    dry_run "one-call over $over (webhook configuration)" \
      -f <(select_docs 1 '^kind: MutatingWebhookConfiguration$' "$d.yaml")
  else
    fail "kustomize deploy/$over + components/one-call"
    show "$WORK/render.err"
  fi
done
expect_count "one-call over overlays/openshift: the service CA is still injected" 1 \
  '^    service\.beta\.openshift\.io/inject-cabundle: "true"$' "$WORK/one-call-overlays-openshift.yaml"

# cert-manager.io objects: client-side only (the test apiserver has no cert-manager CRDs).
expect_count "cert-manager: 2 Issuers (self-signed, CA)" 2 '^kind: Issuer$' "$C"
expect_count "cert-manager: 2 Certificates (CA, serving)" 2 '^kind: Certificate$' "$C"
expect_count "cert-manager: serving certificate writes oomguard-tls" 1 '^  secretName: oomguard-tls$' "$C"
expect_count "cert-manager: dnsNames oomguard.oomguard.svc(.cluster.local)" 2 \
  '^  - oomguard\.oomguard\.svc(\.cluster\.local)?$' "$C"
expect_count "cert-manager: inject-ca-from on both webhook configurations" 2 \
  '^    cert-manager\.io/inject-ca-from: oomguard/oomguard-serving$' "$C"

step "2. server-side dry-run (needs the namespace: it is created for real first)"
select_docs 1 '^kind: Namespace$' "$B" >"$WORK/namespace.yaml"
APPLIED=1
if k apply -f "$WORK/namespace.yaml" >"$WORK/ns.out" 2>&1; then
  pass "apply namespace $NS"
else
  fail "apply namespace $NS"
  show "$WORK/ns.out"
  exit 1
fi
dry_run "deploy/" -k "$DEPLOY"
dry_run "deploy/overlays/openshift" -k "$DEPLOY/overlays/openshift"
select_docs 0 '^apiVersion: cert-manager\.io/' "$C" >"$WORK/cert-manager-core.yaml"
dry_run "deploy/overlays/cert-manager without its cert-manager.io objects" -f "$WORK/cert-manager-core.yaml"
echo "     note: the cert-manager.io Issuers and Certificates were checked client-side only (no CRDs here)"

step "3. apply deploy/ for real, then kubectl auth can-i --as=$SA"
if k apply -k "$DEPLOY" >"$WORK/apply.out" 2>"$WORK/apply.err"; then
  if grep -q '^Warning:' "$WORK/apply.err"; then
    fail "apply -k deploy/: warnings"
    show "$WORK/apply.err"
  else
    pass "apply -k deploy/ ($(wc -l <"$WORK/apply.out" | tr -d ' ') objects)"
  fi
else
  fail "apply -k deploy/"
  show "$WORK/apply.err"
  exit 1
fi
label=$(k get namespace "$NS" -o jsonpath='{.metadata.labels.kubernetes\.io/metadata\.name}')
if [[ "$label" == "$NS" ]]; then
  pass "namespace $NS has kubernetes.io/metadata.name=$NS (the webhooks' namespaceSelector leaves it out)"
else
  fail "namespace $NS has kubernetes.io/metadata.name='$label', expected $NS"
fi

# The RBAC authorizer sees new bindings through an informer: wait until it does.
for ((i = 0; i < 60; i++)); do
  [[ "$(k auth can-i list pods -A --as="$SA" 2>/dev/null || true)" == yes ]] && break
  sleep 0.5
done

echo "-- what the reconciler needs: yes"
for v in get list watch; do
  can_i yes "$v" deployments.apps -A
  can_i yes "$v" statefulsets.apps -A
  can_i yes "$v" pods -A
  can_i yes "$v" horizontalpodautoscalers.autoscaling -A
done
can_i yes patch deployments.apps -n default
can_i yes patch statefulsets.apps -n default
for v in get update patch; do
  can_i yes "$v" deployments.apps --subresource=scale -n default
  can_i yes "$v" statefulsets.apps --subresource=scale -n default
done
can_i yes patch pods --subresource=resize -n default
for v in create patch; do
  can_i yes "$v" events -n default
  can_i yes "$v" events.events.k8s.io -n default
done
for v in get create patch; do
  can_i yes "$v" leases.coordination.k8s.io -n "$NS"
done

echo "-- what it must not have: no"
can_i no get secrets -A
can_i no list secrets -A
can_i no watch secrets -A
can_i no get secrets -n "$NS"
can_i no list secrets -n "$NS"
can_i no get configmaps -n "$NS"
can_i no create configmaps -n "$NS"
can_i no update configmaps -n "$NS"
can_i no patch configmaps -n "$NS"
can_i no create deployments.apps -n default
can_i no update deployments.apps -n default
can_i no delete deployments.apps -n default
can_i no delete statefulsets.apps -n default
can_i no patch daemonsets.apps -n default
can_i no create pods -n default
can_i no patch pods -n default
can_i no delete pods -n default
can_i no deletecollection pods -n default
can_i no update pods --subresource=resize -n default
can_i no create pods --subresource=exec -n default
can_i no create pods --subresource=eviction -n default
can_i no update horizontalpodautoscalers.autoscaling -n default
can_i no patch horizontalpodautoscalers.autoscaling -n default
can_i no delete events -n default
can_i no get nodes -A
can_i no patch nodes -A
can_i no escalate clusterroles -A
can_i no bind clusterroles -A
can_i no create clusterrolebindings -A
can_i no list namespaces -A
can_i no create rolebindings -n "$NS"
can_i no impersonate serviceaccounts -A
can_i no create serviceaccounts --subresource=token -n "$NS"
can_i no create leases.coordination.k8s.io -n default
can_i no update leases.coordination.k8s.io -n kube-system
can_i no delete leases.coordination.k8s.io -n "$NS"
can_i no patch leases.coordination.k8s.io -n kube-system
can_i no '*' '*' -A
can_i no create configmaps -n default
# The read-only identity for Prometheus (its rights come only from the OpenShift overlay's
# cluster-monitoring-view binding): nothing here.
SA_PROM=system:serviceaccount:$NS:oomguard-prometheus
for v in get patch; do
  out=$(k auth can-i "$v" deployments.apps -A --as="$SA_PROM" 2>/dev/null || true)
  if [[ "$out" == no ]]; then pass "can-i $v deployments.apps -A as oomguard-prometheus: no"
  else fail "can-i $v deployments.apps -A as oomguard-prometheus: '$out', expected no"; fi
done

step "4. the pod the Deployment makes (server dry-run of a Pod from its template)"
# Pod Security "restricted", the projected token volume, and priorityClassName
# system-cluster-critical resolved by the Priority admission plugin in a namespace other than
# kube-system (with the ResourceQuota that names that class).
tmpl_spec=$(k -n "$NS" get deployment oomguard -o jsonpath='{.spec.template.spec}')
printf '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"oomguard-dry-run","namespace":"%s","labels":{"app.kubernetes.io/name":"oomguard","app.kubernetes.io/instance":"oomguard"}},"spec":%s}' \
  "$NS" "$tmpl_spec" >"$WORK/pod.json"
if k create --dry-run=server -f "$WORK/pod.json" -o jsonpath='{.spec.priorityClassName} {.spec.priority}' \
     >"$WORK/pod.out" 2>"$WORK/pod.err" && ! grep -q '^Warning:' "$WORK/pod.err"; then
  expect_equal "a pod from the template is admitted: priority system-cluster-critical = 2000000000" \
    "system-cluster-critical 2000000000" "$(cat "$WORK/pod.out")"
else
  fail "a pod from the template is admitted (restricted, projected token, priority)"
  show "$WORK/pod.err"
fi

# 5. acting as oomguard's identities (tests/deploy/privilege.sh).
# shellcheck source=tests/deploy/privilege.sh
. "$ROOT/tests/deploy/privilege.sh"

# 6. `kubectl auth can-i --list` of each identity, generated here into docs/security.md so that
# the document cannot drift from the RBAC it describes.
step "6. kubectl auth can-i --list, as written in docs/security.md"
DOC=$ROOT/docs/security.md
BEGIN_MARK='<!-- BEGIN can-i --list (generated by tests/deploy/validate.sh; OOMGUARD_WRITE_DOCS=1 rewrites it) -->'
END_MARK='<!-- END can-i --list -->'
{
  echo "$BEGIN_MARK"
  for who in "oomguard default" "oomguard $NS" "oomguard-prometheus $NS"; do
    read -r who_sa who_ns <<<"$who"
    echo
    echo "\`kubectl auth can-i --list --as=system:serviceaccount:$NS:$who_sa -n $who_ns\`:"
    echo
    echo '```'
    k auth can-i --list --as="system:serviceaccount:$NS:$who_sa" --as-group=system:serviceaccounts \
      --as-group="system:serviceaccounts:$NS" -n "$who_ns" 2>&1 | sed 's/ *$//'
    echo '```'
  done
  echo
  echo "$END_MARK"
} >"$WORK/can-i.md"
if [[ "${OOMGUARD_WRITE_DOCS:-}" == 1 && -f "$DOC" ]] && grep -qxF "$BEGIN_MARK" "$DOC" && grep -qxF "$END_MARK" "$DOC"; then
  awk -v b="$BEGIN_MARK" -v e="$END_MARK" -v gen="$WORK/can-i.md" '
    $0 == b { while ((getline l < gen) > 0) print l; skip = 1; next }
    $0 == e { skip = 0; next }
    !skip' "$DOC" >"$WORK/doc.new" && cat "$WORK/doc.new" >"$DOC"
  echo "     note: OOMGUARD_WRITE_DOCS=1: rewrote the can-i section of docs/security.md"
fi
if [[ -f "$DOC" ]] && awk -v b="$BEGIN_MARK" -v e="$END_MARK" '
     $0 == b { on = 1 } on { print } $0 == e { on = 0 }' "$DOC" | diff -u - "$WORK/can-i.md" >"$WORK/can-i.diff"; then
  pass "docs/security.md's can-i --list section is what the apiserver answers ($(grep -c '^.kubectl auth can-i' "$WORK/can-i.md") identities and namespaces)"
else
  fail "docs/security.md's can-i --list section differs from what the apiserver answers (committed -, now +); rerun with OOMGUARD_WRITE_DOCS=1 to rewrite it and review the diff"
  show "$WORK/can-i.diff"
fi
# The EXIT trap (cleanup) deletes what was applied and prints the summary.
