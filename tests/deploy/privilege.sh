# Least privilege, proven on the real apiserver: sourced by tests/deploy/validate.sh after it has
# applied deploy/ (not run on its own). It uses validate.sh's k, pass, fail, show, step, WORK, NS,
# SA and DEPLOY.
#
# It makes a namespace with a Deployment (a container and an init container), a StatefulSet and a
# Pod, and a Deployment in each namespace oomguard must never touch (kube-system, kube-public,
# kube-node-lease, oomguard), then acts as oomguard's ServiceAccounts (kubectl --as with their
# groups, so RBAC and the ValidatingAdmissionPolicy see what they would see) and shows:
#   ALLOWED  what the reconciler does, sent as it sends it: the claim (oomguard.io/ annotations, the
#            oomguard.io/remediated label, at a resourceVersion), a memory raise in the template of
#            a container and of an init container, the restartedAt annotation, a scale-out through
#            the scale subresource, a pods/resize of memory, an Event, its Lease, a TokenReview and
#            a SubjectAccessReview;
#   REFUSED  everything else a `patch` on deployments would allow: image, command, args, env,
#            serviceAccountName, volumes, securityContext, hostNetwork (a PodSpec field the policy
#            does not name), a new container or init container, cpu, a removed or lowered memory
#            limit, a lowered memory request,
#            replicas outside /scale, a scale-in, other annotations and labels, template labels,
#            ownerReferences; a pods/resize of cpu; any change in the four protected namespaces;
#            and writes that a RoleBinding added later would allow (create ConfigMaps, delete a
#            Deployment), for both identities.
# A refusal counts only if cluster-admin may make the same change (dry-run): the change is valid,
# and oomguard's identity alone is refused, by the policy (its message is printed) or, where
# stated, by RBAC. Refused changes are dry-runs; allowed ones are made for real and read back.
#
# The test apiserver has no kubelet: a resize of a pod that is only in etcd is admitted and
# stored by the apiserver (spec.containers[].resources), which is what RBAC and the policy judge;
# no node applies it.

PRIV_NS=oomguard-privilege-test
PROTECTED_NAMESPACES=(kube-system kube-public kube-node-lease "$NS")
PROM_SA=system:serviceaccount:$NS:oomguard-prometheus
AS_RECONCILER=(--as="$SA" --as-group=system:serviceaccounts --as-group="system:serviceaccounts:$NS")
AS_PROMETHEUS=(--as="$PROM_SA" --as-group=system:serviceaccounts --as-group="system:serviceaccounts:$NS")
DENIAL="ValidatingAdmissionPolicy 'oomguard-memory-only' with binding 'oomguard-memory-only' denied request: "
PRIV_APPLIED=0
PROXY_PID=""

# What validate.sh's cleanup calls: the proxy, the test namespace and the Deployments made in the
# protected namespaces.
privilege_cleanup() {
  [[ -n "$PROXY_PID" ]] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
  PROXY_PID=""
  [[ "$PRIV_APPLIED" == 1 ]] || return 0
  local ns
  for ns in "${PROTECTED_NAMESPACES[@]}"; do
    k -n "$ns" delete deployment "$PRIV_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  done
  k delete namespace "$PRIV_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}

# A Deployment that passes the "restricted" Pod Security Standard (namespace oomguard enforces it).
priv_deployment() {
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: $2
  namespace: $1
  annotations: {team: payments}
  labels: {app: $2}
spec:
  replicas: 2
  selector: {matchLabels: {app: $2}}
  template:
    metadata: {labels: {app: $2}}
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      initContainers:
        - name: init
          image: registry.example/init:1
          resources: {limits: {memory: 64Mi}}
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
      containers:
        - name: app
          image: registry.example/app:1
          command: [/app]
          args: [--serve]
          env: [{name: MODE, value: prod}]
          resources:
            requests: {cpu: 100m, memory: 128Mi}
            limits: {cpu: 500m, memory: 128Mi}
          securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
          volumeMounts: [{name: cache, mountPath: /cache}]
      volumes: [{name: cache, emptyDir: {}}]
EOF
}

priv_objects() {
  cat <<EOF
apiVersion: v1
kind: Namespace
metadata: {name: $PRIV_NS}
---
$(priv_deployment "$PRIV_NS" web)
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: $PRIV_NS}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
        - name: db
          image: registry.example/db:1
          resources: {requests: {memory: 256Mi}, limits: {memory: 256Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-pod, namespace: $PRIV_NS, labels: {app: web}}
spec:
  containers:
    - name: app
      image: registry.example/app:1
      resources:
        requests: {cpu: 100m, memory: 128Mi}
        limits: {cpu: 500m, memory: 128Mi}
EOF
  local ns
  for ns in "${PROTECTED_NAMESPACES[@]}"; do
    echo "---"
    priv_deployment "$ns" "$PRIV_NS"
  done
}

# obj NAME: stdin into $WORK/NAME.yaml (a manifest read twice, by cluster-admin and by oomguard's
# identity: process substitution could be read only once); prints the path.
obj() { cat >"$WORK/$1.yaml"; echo "$WORK/$1.yaml"; }

# The denial's own words, for the ok line.
denial_message() {
  local m
  m=$(grep -o "${DENIAL}.*" "$1" | head -n1)
  m=${m#"$DENIAL"}
  echo "${m%\"*}" | sed 's/",$//'
}

# allowed LABEL KUBECTL-ARGS...: oomguard's reconciler identity does it for real.
allowed() {
  local label=$1; shift
  if k "$@" "${AS_RECONCILER[@]}" >"$WORK/priv.out" 2>&1; then
    pass "ALLOWED $label"
  else
    fail "ALLOWED $label: refused"
    show "$WORK/priv.out"
  fi
}

# refused LABEL policy|rbac KUBECTL-ARGS...: cluster-admin may make the change (server dry-run),
# oomguard's reconciler identity may not (server dry-run), refused by the policy or by RBAC.
refused() { refused_as "$1" "$2" reconciler "${@:3}"; }

# refused_as LABEL policy|rbac reconciler|prometheus KUBECTL-ARGS...
refused_as() {
  local label=$1 by=$2 who=$3; shift 3
  local -a as=("${AS_RECONCILER[@]}")
  [[ "$who" == prometheus ]] && as=("${AS_PROMETHEUS[@]}")
  if ! k "$@" --dry-run=server >"$WORK/priv.admin" 2>&1; then
    fail "REFUSED $label: the change is invalid even for cluster-admin, so the check proves nothing"
    show "$WORK/priv.admin"
    return
  fi
  if k "$@" --dry-run=server "${as[@]}" >"$WORK/priv.out" 2>&1; then
    fail "REFUSED $label: oomguard's $who identity was allowed"
    show "$WORK/priv.out"
  elif [[ "$by" == policy ]] && grep -qF "$DENIAL" "$WORK/priv.out"; then
    pass "REFUSED $label: $(denial_message "$WORK/priv.out")"
  elif [[ "$by" == rbac ]] && grep -q "is forbidden: User \"system:serviceaccount:$NS:[a-z-]*\" cannot" "$WORK/priv.out"; then
    pass "REFUSED $label (RBAC): $(grep -o 'cannot [^"]*"[^"]*"' "$WORK/priv.out" | head -n1)"
  else
    fail "REFUSED $label: refused, but not by the ${by}"
    show "$WORK/priv.out"
  fi
}

# expect_value LABEL WANT KUBECTL-ARGS...: what the apiserver stored (read back as cluster-admin).
expect_value() {
  local label=$1 want=$2 got; shift 2
  got=$(k "$@" 2>&1) || true
  if [[ "$got" == "$want" ]]; then pass "  stored: $label = $got"; else fail "  stored: $label = '$got', expected '$want'"; fi
}

# resize_as_reconciler BODY DRYRUN(0|1): PATCH pods/web-pod/resize as the reconciler sends it
# (strategic merge, no GET first: kubectl patch --subresource reads the subresource first, which
# RBAC rightly does not grant), through `kubectl proxy --as`. Prints the HTTP status, leaves the
# body in $WORK/resize.out.
resize_as_reconciler() {
  local q="fieldManager=oomguard-reconciler"
  [[ "$2" == 1 ]] && q+="&dryRun=All"
  curl -sS --noproxy '*' -m 10 -o "$WORK/resize.out" -w '%{http_code}' -X PATCH \
    -H 'Content-Type: application/strategic-merge-patch+json' --data "$1" \
    "http://127.0.0.1:$PROXY_PORT/api/v1/namespaces/$PRIV_NS/pods/web-pod/resize?$q" 2>>"$WORK/resize.out" || true
}

# refused_resize LABEL BODY: cluster-admin may resize web-pod so (dry-run), the reconciler may not.
refused_resize() {
  [[ -n "$PROXY_PORT" ]] || { fail "REFUSED $1: no kubectl proxy"; return; }
  if ! k -n "$PRIV_NS" patch pod web-pod --subresource=resize --dry-run=server -p "$2" >"$WORK/priv.admin" 2>&1; then
    fail "REFUSED $1: invalid even for cluster-admin, so the check proves nothing"
    show "$WORK/priv.admin"
    return
  fi
  local code
  code=$(resize_as_reconciler "$2" 1)
  if [[ "$code" == 403 ]] && grep -qF "$DENIAL" "$WORK/resize.out"; then
    pass "REFUSED $1: $(denial_message "$WORK/resize.out")"
  else
    fail "REFUSED $1: HTTP $code"
    show "$WORK/resize.out"
  fi
}

step "5. least privilege on the real apiserver: act as $SA"
if k apply -f <(priv_objects) >"$WORK/priv-apply.out" 2>&1; then
  PRIV_APPLIED=1
  pass "cluster-admin: namespace $PRIV_NS (Deployment web, StatefulSet db, Pod web-pod), a Deployment $PRIV_NS in ${PROTECTED_NAMESPACES[*]}"
else
  PRIV_APPLIED=1
  fail "cluster-admin: apply the test objects"
  show "$WORK/priv-apply.out"
  return 0
fi

# The policy is enforced once the apiserver's informers have it (and the new RBAC): wait for the
# first refusal.
for ((i = 0; i < 100; i++)); do
  k -n kube-system patch deployment "$PRIV_NS" --dry-run=server "${AS_RECONCILER[@]}" \
    -p '{"metadata":{"annotations":{"oomguard.io/probe":"x"}}}' >"$WORK/priv.wait" 2>&1 || true
  grep -qF "$DENIAL" "$WORK/priv.wait" && break
  sleep 0.2
done
if grep -qF "$DENIAL" "$WORK/priv.wait"; then
  pass "the ValidatingAdmissionPolicy oomguard-memory-only is enforced"
else
  fail "the ValidatingAdmissionPolicy oomguard-memory-only is not enforced after 20 s"
  show "$WORK/priv.wait"
fi

D=(-n "$PRIV_NS")
mem_patch() { printf '{"spec":{"template":{"spec":{"%s":[{"name":"%s","resources":{"limits":{"memory":"%s"},"requests":{"memory":"%s"}}}]}}}}' "$@"; }
container_patch() { printf '{"spec":{"template":{"spec":{"containers":[{"name":"app",%s}]}}}}' "$1"; }
podspec_patch() { printf '{"spec":{"template":{"spec":{%s}}}}' "$1"; }

echo "-- what the reconciler does: ALLOWED (for real, then read back)"
rv=$(k "${D[@]}" get deployment web -o jsonpath='{.metadata.resourceVersion}')
allowed "the claim: oomguard.io/remediations + label oomguard.io/remediated at resourceVersion $rv (merge patch)" \
  "${D[@]}" patch deployment web --type=merge --field-manager=oomguard-reconciler \
  -p "{\"metadata\":{\"resourceVersion\":\"$rv\",\"annotations\":{\"oomguard.io/remediations\":\"[]\"},\"labels\":{\"oomguard.io/remediated\":\"true\"}}}"
expect_value "label oomguard.io/remediated" true "${D[@]}" get deployment web \
  -o jsonpath='{.metadata.labels.oomguard\.io/remediated}'
allowed "memory raise in the template: container app 128Mi -> 256Mi" \
  "${D[@]}" patch deployment web --field-manager=oomguard-reconciler -p "$(mem_patch containers app 256Mi 256Mi)"
expect_value "app's limits" '{"cpu":"500m","memory":"256Mi"}' "${D[@]}" get deployment web \
  -o jsonpath='{.spec.template.spec.containers[0].resources.limits}'
allowed "memory raise in the template: init container init 64Mi -> 96Mi" \
  "${D[@]}" patch deployment web --field-manager=oomguard-reconciler -p "$(mem_patch initContainers init 96Mi 96Mi)"
allowed "a planned rolling restart: the template's kubectl.kubernetes.io/restartedAt" \
  "${D[@]}" patch deployment web --field-manager=oomguard-reconciler \
  -p '{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2025-01-01T00:00:00Z"}}}}}'
allowed "scale out through deployments/scale: 2 -> 3" "${D[@]}" scale deployment web --replicas=3
expect_value "web's replicas" 3 "${D[@]}" get deployment web -o jsonpath='{.spec.replicas}'
allowed "StatefulSet: memory raise of container db 256Mi -> 512Mi" \
  "${D[@]}" patch statefulset db --field-manager=oomguard-reconciler -p "$(mem_patch containers db 512Mi 512Mi)"
allowed "StatefulSet: scale out through statefulsets/scale: 1 -> 2" "${D[@]}" scale statefulset db --replicas=2

: >"$WORK/proxy.out"
"$KUBECTL" proxy --port=0 "${AS_RECONCILER[@]}" >"$WORK/proxy.out" 2>&1 &
PROXY_PID=$!
PROXY_PORT=""
for ((i = 0; i < 50; i++)); do
  PROXY_PORT=$(sed -n 's/^Starting to serve on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/proxy.out")
  [[ -n "$PROXY_PORT" ]] && break
  sleep 0.1
done
if [[ -z "$PROXY_PORT" ]]; then
  fail "kubectl proxy --as=$SA did not start"
  show "$WORK/proxy.out"
else
  code=$(resize_as_reconciler '{"spec":{"containers":[{"name":"app","resources":{"limits":{"memory":"256Mi"},"requests":{"memory":"256Mi"}}}]}}' 0)
  if [[ "$code" == 200 ]]; then
    pass "ALLOWED pods/resize of web-pod: container app memory 128Mi -> 256Mi (HTTP $code)"
  else
    fail "ALLOWED pods/resize of web-pod: HTTP $code"
    show "$WORK/resize.out"
  fi
  expect_value "web-pod's resources" '{"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":"100m","memory":"256Mi"}}' \
    "${D[@]}" get pod web-pod -o jsonpath='{.spec.containers[0].resources}'
fi

allowed "an Event on the Deployment (events.k8s.io)" create -f "$(obj event <<EOF
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: web.oomguard-test, namespace: $PRIV_NS}
eventTime: "2025-01-01T00:00:00.000000Z"
reportingController: oomguard-reconciler
reportingInstance: oomguard-reconciler/test
action: RaiseLimit
reason: RaisedMemoryLimit
type: Normal
note: raised the memory limit (test)
regarding: {apiVersion: apps/v1, kind: Deployment, name: web, namespace: $PRIV_NS}
EOF
)"
allowed "its leader-election Lease $NS/oomguard-reconciler" create -f "$(obj lease <<EOF
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: oomguard-reconciler, namespace: $NS}
spec: {holderIdentity: oomguard-test}
EOF
)"
# The API authenticates and authorises its callers (--validate=false: schema validation would
# list CRDs, which the identity may not).
allowed "a TokenReview (the API authenticates its callers)" create --validate=false -o name -f "$(obj tokenreview <<EOF
{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "not-a-token"}}
EOF
)"
allowed "a SubjectAccessReview (the API authorises its callers)" create --validate=false -o name -f "$(obj sar <<EOF
{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
 "spec": {"user": "alice", "resourceAttributes": {"verb": "patch", "group": "apps", "resource": "deployments", "subresource": "scale", "namespace": "$PRIV_NS", "name": "web"}}}
EOF
)"

echo "-- what RBAC's patch on deployments would also allow: REFUSED (dry-run)"
refused "image" policy "${D[@]}" patch deployment web -p "$(container_patch '"image":"registry.example/miner:1"')"
refused "command" policy "${D[@]}" patch deployment web -p "$(container_patch '"command":["/bin/sh","-c","id"]')"
refused "args" policy "${D[@]}" patch deployment web -p "$(container_patch '"args":["--debug"]')"
refused "env" policy "${D[@]}" patch deployment web -p "$(container_patch '"env":[{"name":"MODE","value":"debug"}]')"
refused "securityContext (privileged)" policy "${D[@]}" patch deployment web \
  -p "$(container_patch '"securityContext":{"privileged":true,"allowPrivilegeEscalation":true}')"
refused "serviceAccountName" policy "${D[@]}" patch deployment web -p "$(podspec_patch '"serviceAccountName":"admin"')"
refused "volumes (a hostPath)" policy "${D[@]}" patch deployment web \
  -p "$(podspec_patch '"volumes":[{"name":"host","hostPath":{"path":"/"}}]')"
refused "hostNetwork (a PodSpec field the policy does not name)" policy "${D[@]}" patch deployment web \
  -p "$(podspec_patch '"hostNetwork":true')"
refused "a new container" policy "${D[@]}" patch deployment web \
  -p "$(podspec_patch '"containers":[{"name":"sidecar","image":"registry.example/miner:1"}]')"
refused "a new init container" policy "${D[@]}" patch deployment web \
  -p "$(podspec_patch '"initContainers":[{"name":"setup","image":"registry.example/miner:1"}]')"
refused "a cpu limit" policy "${D[@]}" patch deployment web \
  -p "$(container_patch '"resources":{"limits":{"cpu":"4"}}')"
refused "removing a memory limit" policy "${D[@]}" patch deployment web \
  -p "$(container_patch '"resources":{"limits":{"memory":null},"requests":{"memory":"256Mi"}}')"
refused "lowering a memory limit and request (256Mi -> 64Mi)" policy "${D[@]}" patch deployment web \
  -p "$(mem_patch containers app 64Mi 64Mi)"
refused "lowering a memory request (256Mi -> 200Mi)" policy "${D[@]}" patch deployment web \
  -p "$(container_patch '"resources":{"requests":{"memory":"200Mi"}}')"
refused "replicas through the Deployment itself (not /scale)" policy "${D[@]}" patch deployment web \
  -p '{"spec":{"replicas":10}}'
refused "a scale-in through /scale: 3 -> 1" policy "${D[@]}" scale deployment web --replicas=1
refused "an annotation outside oomguard.io/" policy "${D[@]}" patch deployment web \
  -p '{"metadata":{"annotations":{"team":"platform"}}}'
refused "a label other than oomguard.io/remediated" policy "${D[@]}" patch deployment web \
  -p '{"metadata":{"labels":{"app":"other"}}}'
refused "a template label" policy "${D[@]}" patch deployment web \
  -p '{"spec":{"template":{"metadata":{"labels":{"tier":"x"}}}}}'
refused "ownerReferences (the garbage collector would delete the Deployment)" policy "${D[@]}" \
  patch deployment web --type=merge \
  -p '{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"gone","uid":"00000000-0000-0000-0000-000000000001"}]}}'
refused "StatefulSet: image" policy "${D[@]}" patch statefulset db \
  -p '{"spec":{"template":{"spec":{"containers":[{"name":"db","image":"registry.example/miner:1"}]}}}}'
refused "a pod itself (not pods/resize)" rbac "${D[@]}" patch pod web-pod -p '{"metadata":{"labels":{"x":"y"}}}'
refused_resize "pods/resize of cpu" '{"spec":{"containers":[{"name":"app","resources":{"limits":{"cpu":"1"}}}]}}'
refused_resize "pods/resize lowering memory (256Mi -> 64Mi)" \
  '{"spec":{"containers":[{"name":"app","resources":{"limits":{"memory":"64Mi"},"requests":{"memory":"64Mi"}}}]}}'

echo "-- namespaces out of its reach: REFUSED even for a memory raise (dry-run)"
for ns in "${PROTECTED_NAMESPACES[@]}"; do
  refused "$ns: a memory raise" policy -n "$ns" patch deployment "$PRIV_NS" -p "$(mem_patch containers app 256Mi 256Mi)"
done
refused "kube-system: a scale-out" policy -n kube-system scale deployment "$PRIV_NS" --replicas=3
refused "kube-system: image" policy -n kube-system patch deployment "$PRIV_NS" \
  -p "$(container_patch '"image":"registry.example/miner:1"')"
refused "kube-system: an Event" policy create -f "$(obj event-kube-system <<EOF
apiVersion: events.k8s.io/v1
kind: Event
metadata: {name: web.oomguard-test, namespace: kube-system}
eventTime: "2025-01-01T00:00:00.000000Z"
reportingController: oomguard-reconciler
reportingInstance: oomguard-reconciler/test
action: RaiseLimit
reason: RaisedMemoryLimit
type: Normal
regarding: {apiVersion: apps/v1, kind: Deployment, name: $PRIV_NS, namespace: kube-system}
EOF
)"
refused "$NS: a Lease other than oomguard-reconciler" policy create -f "$(obj lease-other <<EOF
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: kube-controller-manager, namespace: $NS}
spec: {holderIdentity: oomguard-test}
EOF
)"

echo "-- a RoleBinding added later gives no new power: REFUSED by the policy (dry-run)"
k apply -f "$(obj extra-rbac <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: oomguard-privilege-test-extra, namespace: $PRIV_NS}
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["create"]
  - apiGroups: ["apps"]
    resources: ["deployments"]
    verbs: ["delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: oomguard-privilege-test-extra, namespace: $PRIV_NS}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: oomguard-privilege-test-extra}
subjects:
  - {kind: ServiceAccount, name: oomguard, namespace: $NS}
  - {kind: ServiceAccount, name: oomguard-prometheus, namespace: $NS}
EOF
)" >/dev/null
for ((i = 0; i < 60; i++)); do
  [[ "$(k auth can-i create configmaps -n "$PRIV_NS" --as="$PROM_SA" 2>/dev/null || true)" == yes ]] && break
  sleep 0.25
done
cm=$(printf '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"planted","namespace":"%s"}}' "$PRIV_NS")
cmf=$(echo "$cm" | obj configmap)
refused "create a ConfigMap (granted by the extra Role)" policy create -f "$cmf"
refused "delete a Deployment (granted by the extra Role)" policy "${D[@]}" delete deployment web
refused_as "oomguard-prometheus: create a ConfigMap (granted by the extra Role)" policy prometheus create -f "$cmf"
refused_as "oomguard-prometheus: patch a Deployment (RBAC grants it nothing)" rbac prometheus \
  "${D[@]}" patch deployment web -p "$(mem_patch containers app 384Mi 384Mi)"
