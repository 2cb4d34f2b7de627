#!/usr/bin/env bash
# Build the local cluster's toolchain from Go modules with the machine's Go toolchain: the control
# plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler), kubectl, kwok and helm, and
# what a real node runs (kubelet, kube-proxy, CoreDNS, the Traefik ingress controller).
#
# Output goes to a version-keyed cache outside the repo:
#   ${CONCH_CACHE:-$HOME/.cache/conch}/k8s-<version>/bin/
# Versions are pinned by the wrapper modules in cluster/go/*/go.mod (with
# committed go.sum files); bump them with cluster/go/k8s/regen.sh or `go get` + tidy.
#
# Idempotent: a binary is rebuilt only when it is missing or its .<name>.version marker
# does not match the pinned version. Progress goes to stderr; the bin dir is the last
# line on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gomods=$here/go

log() { printf '[conch] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
modver() { awk -v m="$1" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$2"; }

command -v go >/dev/null || die "go not found on PATH (need go >= 1.26)"

k8s_v=$(modver k8s.io/kubernetes "$gomods/k8s/go.mod")
etcd_v=$(modver go.etcd.io/etcd/server/v3 "$gomods/k8s/go.mod")
kwok_v=$(modver sigs.k8s.io/kwok "$gomods/kwok/go.mod")
helm_v=$(modver helm.sh/helm/v3 "$gomods/helm/go.mod")
coredns_v=$(modver github.com/coredns/coredns "$gomods/coredns/go.mod")
traefik_v=$(modver github.com/traefik/traefik/v3 "$gomods/traefik/go.mod")
[[ -n $k8s_v && -n $etcd_v && -n $kwok_v && -n $helm_v && -n $coredns_v && -n $traefik_v ]] ||
  die "cannot read pinned versions from $gomods/*/go.mod"
k8s_minor=$(cut -d. -f2 <<<"$k8s_v")

cache=${CONCH_CACHE:-$HOME/.cache/conch}/k8s-$k8s_v
bin=$cache/bin
mkdir -p "$bin" "$cache/share"

# Serialise concurrent callers (e.g. make + a pytest fixture) on the same cache.
exec 9>"$cache/.lock"
flock 9

# -mod=mod: the wrappers have no vendor dir and go.sum pins every hash anyway.
# -buildvcs=false: the repo may have no commits, and the stamp is meaningless here.
export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=${GOTOOLCHAIN:-local}

declare -A version=(
  [etcd]=$etcd_v [kube-apiserver]=$k8s_v [kube-controller-manager]=$k8s_v
  [kube-scheduler]=$k8s_v [kubectl]=$k8s_v [kubelet]=$k8s_v [kube-proxy]=$k8s_v [kwok]=$kwok_v
  [helm]=$helm_v [coredns]=$coredns_v [traefik]=$traefik_v
)
order=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy kwok helm coredns traefik)
total=${#order[@]}

pos() { local i; for i in "${!order[@]}"; do [[ ${order[i]} == "$1" ]] && echo $((i + 1)); done; return 0; }
fresh() { [[ -x $bin/$1 && "$(cat "$bin/.$1.version" 2>/dev/null)" == "${version[$1]}" ]]; }

# Network hiccups on a cold machine should not cost a 30-minute CI run: retry downloads.
download() {
  local dir=$1 try
  for try in 1 2 3; do
    (cd "$dir" && go mod download >&2) && return 0
    log "go mod download in ${dir##*/} failed (attempt $try), retrying"
    sleep $((try * 5))
  done
  die "go mod download failed in $dir"
}

# Build into a temp dir and move into place so an interrupted build never leaves a
# truncated binary that a later run would mistake for a finished one.
install_bins() { # install_bins <tmpdir> <name>...
  local tmp=$1 name; shift
  for name in "$@"; do
    mv -f "$tmp/$name" "$bin/$name"
    printf '%s\n' "${version[$name]}" >"$bin/.$name.version"
  done
}

step=0
t_all=$SECONDS
tmp=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- Kubernetes + etcd: one wrapper module, one go build (shared packages, parallel links)
k8s_todo=()
for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
  fresh "$name" || k8s_todo+=("$name")
done
if ((${#k8s_todo[@]})); then
  pkgs=()
  for name in "${k8s_todo[@]}"; do
    step=$((step + 1))
    log "building $name ${version[$name]} ($(pos "$name")/$total)…"
    case $name in
      etcd) pkgs+=(go.etcd.io/etcd/server/v3) ;;
      *) pkgs+=("k8s.io/kubernetes/cmd/$name") ;;
    esac
  done
  download "$gomods/k8s"
  # Same -X keys as upstream hack/lib/version.sh; unstamped binaries report
  # v0.0.0-master, which breaks kubectl skew checks and Helm kubeVersion constraints.
  ldf="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf+=" -X $pkg.gitVersion=$k8s_v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
  done
  t=$SECONDS
  (cd "$gomods/k8s" && go build -trimpath -ldflags "$ldf" -o "$tmp/" "${pkgs[@]}" >&2)
  # The etcd main package is .../server/v3, which go names "server".
  [[ -e $tmp/server ]] && mv "$tmp/server" "$tmp/etcd"
  install_bins "$tmp" "${k8s_todo[@]}"
  log "built ${k8s_todo[*]} in $((SECONDS - t))s"
fi

# --- kwok (own module: it needs k8s.io/* v0.36, which the k8s wrapper's replaces forbid)
stages=$cache/share/kwok-stages.yaml
if ! fresh kwok || [[ ! -s $stages ]]; then
  step=$((step + 1))
  log "building kwok $kwok_v ($(pos kwok)/$total)…"
  download "$gomods/kwok"
  t=$SECONDS
  (cd "$gomods/kwok" && go build -trimpath -ldflags "-s -w" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok >&2)
  # The kwok binary embeds no default Stages (kwokctl writes them into its config), so
  # ship the upstream "fast" node/pod stages of exactly this kwok release next to it.
  src=$(cd "$gomods/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    printf -- '---\n'
    cat "$src/kustomize/stage/$f"
  done >"$tmp/kwok-stages.yaml"
  mv -f "$tmp/kwok-stages.yaml" "$stages"
  install_bins "$tmp" kwok
  log "built kwok in $((SECONDS - t))s"
fi

# --- helm (own module for the same reason)
if ! fresh helm; then
  step=$((step + 1))
  log "building helm $helm_v ($(pos helm)/$total)…"
  download "$gomods/helm"
  # Default capabilities/lint to the cluster's minor instead of the compiled-in 1.20.
  ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_v -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldf+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  t=$SECONDS
  (cd "$gomods/helm" && go build -trimpath -ldflags "$ldf" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm >&2)
  install_bins "$tmp" helm
  log "built helm in $((SECONDS - t))s"
fi

# --- CoreDNS (own module: a main package with just the plugins the node's cluster DNS uses)
if ! fresh coredns; then
  step=$((step + 1))
  log "building coredns $coredns_v ($(pos coredns)/$total)…"
  download "$gomods/coredns"
  t=$SECONDS
  (cd "$gomods/coredns" && go build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$coredns_v" \
    -o "$tmp/coredns" . >&2)
  install_bins "$tmp" coredns
  log "built coredns in $((SECONDS - t))s"
fi

# --- Traefik (own module), and the Gateway API CRDs of the release it implements
gateway_crds=$cache/share/gateway-api-crds.yaml
if ! fresh traefik || [[ ! -s $gateway_crds ]]; then
  step=$((step + 1))
  log "building traefik $traefik_v ($(pos traefik)/$total)…"
  download "$gomods/traefik"
  t=$SECONDS
  ldf="-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$traefik_v"
  (cd "$gomods/traefik" && go build -trimpath -ldflags "$ldf" -o "$tmp/traefik" github.com/traefik/traefik/v3/cmd/traefik >&2)
  src=$(cd "$gomods/traefik" && go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)
  for f in "$src"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
    printf -- '---\n'
    cat "$f"
  done >"$tmp/gateway-api-crds.yaml"
  mv -f "$tmp/gateway-api-crds.yaml" "$gateway_crds"
  install_bins "$tmp" traefik
  log "built traefik in $((SECONDS - t))s"
fi

if ((step)); then
  log "toolchain ready in $((SECONDS - t_all))s"
else
  log "toolchain up to date (k8s $k8s_v, etcd $etcd_v, kwok $kwok_v, helm $helm_v, coredns $coredns_v, traefik $traefik_v)"
fi
echo "$bin"
