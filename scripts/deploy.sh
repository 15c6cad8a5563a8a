#!/usr/bin/env bash
# Builds and pushes the eight images, then deploys them with Helm (default) or kustomize.
#
#   scripts/deploy.sh [--helm | --kustomize dev|prod] [options]
#
#   --helm                 helm upgrade --install deployment/helm/trading-bot (the default)
#   --kustomize OVERLAY    kubectl apply -k deployment/kubernetes/overlays/OVERLAY: first the
#                          migration Job and what it needs, then, once it completed, the services
#   --registry REGISTRY    image registry prefix (env TRADEBOT_REGISTRY, default localhost:5000/trading-bot)
#   --tag TAG              image tag (env TRADEBOT_TAG, default the git commit, -dirty when changed)
#   --namespace NS         Helm: the release namespace (default tradebot); kustomize: the overlay's
#   --release NAME         Helm release name (default trading-bot)
#   -f, --values FILE      extra Helm values file (repeatable)
#   --no-build             deploy images already pushed
#   --dry-run              change nothing: print every command, and render the manifests exactly
#                          as they would be applied into var/deploy/ (or $DEPLOY_RENDER_DIR); no
#                          Docker and no cluster needed
#
# helm and kubectl come from .tools/bin (scripts/install_tools.sh) or the PATH. Secrets are never
# part of the manifests; with the dev overlay this script creates the ones it needs (random
# database and broker passwords, the KIS simulator's development account) when they are missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

images=(api-gateway data-collector data-processor model-trainer inferencer trader web-interface kis-sim)
mode=helm
overlay=""
registry="${TRADEBOT_REGISTRY:-localhost:5000/trading-bot}"
tag="${TRADEBOT_TAG:-}"
namespace=""
release=trading-bot
values=()
build=true
dry_run=false

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --helm) mode=helm ;;
        --kustomize) mode=kustomize; overlay="${2:?--kustomize needs an overlay (dev or prod)}"; shift ;;
        --registry) registry="${2:?}"; shift ;;
        --tag) tag="${2:?}"; shift ;;
        --namespace) namespace="${2:?}"; shift ;;
        --release) release="${2:?}"; shift ;;
        -f|--values) values+=("${2:?}"); shift ;;
        --no-build) build=false ;;
        --dry-run) dry_run=true ;;
        -h|--help) usage; exit 0 ;;
        *) echo "deploy: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "$tag" ]; then
    tag="$(git rev-parse --short=12 HEAD 2>/dev/null || echo dev)"
    if [ -n "$(git status --porcelain 2>/dev/null)" ]; then tag="$tag-dirty"; fi
fi
registry="${registry%/}"

tool() {  # the project's own copy first
    if [ -x ".tools/bin/$1" ]; then echo "$root/.tools/bin/$1"; return; fi
    command -v "$1" >/dev/null 2>&1 && { command -v "$1"; return; }
    echo "deploy: $1 not found; run scripts/install_tools.sh" >&2
    exit 1
}

run() {  # print the command; run it unless this is a dry run
    echo "+ $*"
    if ! $dry_run; then "$@"; fi
}

render_dir="${DEPLOY_RENDER_DIR:-var/deploy}"
mkdir -p "$render_dir"

# --- images -------------------------------------------------------------------------------
if $build; then
    for image in "${images[@]}"; do
        run docker build -f "deployment/docker/$image.Dockerfile" -t "$registry/$image:$tag" .
    done
    for image in "${images[@]}"; do
        run docker push "$registry/$image:$tag"
    done
fi

# --- Helm -----------------------------------------------------------------------------------
if [ "$mode" = helm ]; then
    helm="$(tool helm)"
    namespace="${namespace:-tradebot}"
    args=(deployment/helm/trading-bot --namespace "$namespace"
          --set-string "image.registry=$registry" --set-string "image.tag=$tag")
    for file in "${values[@]}"; do args+=(-f "$file"); done
    if $dry_run; then
        out="$render_dir/helm-$release.yaml"
        "$helm" template "$release" "${args[@]}" --kube-version 1.37.0 > "$out"
        echo "deploy: dry run; the release would render as $out"
    fi
    run "$helm" upgrade --install "$release" "${args[@]}" --create-namespace --wait --timeout 15m
    exit 0
fi

# --- kustomize ----------------------------------------------------------------------------
kubectl="$(tool kubectl)"
base="$root/deployment/kubernetes/overlays/$overlay"
[ -f "$base/kustomization.yaml" ] || { echo "deploy: no overlay $base" >&2; exit 2; }
namespace="${namespace:-$(sed -n 's/^namespace: *//p' "$base/kustomization.yaml")}"

# A throwaway overlay on top of the chosen one that only points the images at what was pushed
# (inside the repository: kustomize takes relative paths only).
mkdir -p var/deploy
work="$(mktemp -d "$root/var/deploy/overlay.XXXXXX")"
trap 'rm -rf "$work"' EXIT
{
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "namespace: $namespace"
    echo "resources:"
    echo "  - $(realpath --relative-to="$work" "$base")"
    echo "images:"
    for image in "${images[@]}"; do
        # The base names every image trading-bot/<image>; the overlay may have renamed it.
        renamed="$(sed -n "/name: trading-bot\/$image\$/{n;s/^ *newName: *//p}" "$base/kustomization.yaml")"
        for name in $(printf '%s\n' "trading-bot/$image" $renamed | sort -u); do
            printf '  - name: %s\n    newName: %s\n    newTag: "%s"\n' "$name" "$registry/$image" "$tag"
        done
    done
} > "$work/kustomization.yaml"
"$kubectl" kustomize "$work" > "$work/all.yaml"
if $dry_run; then
    cp "$work/all.yaml" "$render_dir/kustomize-$overlay.yaml"
    echo "deploy: dry run; the overlay would apply as $render_dir/kustomize-$overlay.yaml"
fi

secret_exists() { ! $dry_run && "$kubectl" -n "$namespace" get secret "$1" >/dev/null 2>&1; }
create_secret() {  # name, then KEY=VALUE lines on stdin; values are never printed
    local name=$1 env_file="$work/$1.env"
    cat > "$env_file"
    if secret_exists "$name"; then return; fi
    echo "+ kubectl -n $namespace create secret generic $name (keys: $(cut -d= -f1 "$env_file" | paste -sd, -))"
    if ! $dry_run; then
        "$kubectl" -n "$namespace" create secret generic "$name" --from-env-file="$env_file" >/dev/null
    fi
}
random() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

if [ "$overlay" = dev ]; then
    run "$kubectl" apply -f "$base/namespace.yaml"
    if ! secret_exists tradebot-timescaledb; then
        password="$(random)"
        create_secret tradebot-timescaledb <<< "POSTGRES_PASSWORD=$password"
        create_secret tradebot-database <<< "TRADEBOT_DATABASE_URL=postgresql+asyncpg://tradebot:$password@timescaledb:5432/tradebot"
    fi
    if ! secret_exists tradebot-rabbitmq; then
        password="$(random)"
        printf 'RABBITMQ_DEFAULT_PASS=%s\nRABBITMQ_ERLANG_COOKIE=%s\n' "$password" "$(random)" | create_secret tradebot-rabbitmq
        create_secret tradebot-amqp <<< "TRADEBOT_AMQP_URL=amqp://tradebot:$password@rabbitmq:5672/"
    fi
    if ! secret_exists tradebot-api-gateway; then
        printf 'API_GATEWAY_JWT_SECRET=%s\nAPI_GATEWAY_BOOTSTRAP_ADMIN_USERNAME=admin\nAPI_GATEWAY_BOOTSTRAP_ADMIN_PASSWORD=%s\n' \
            "$(random)" "$(random)" | create_secret tradebot-api-gateway
        echo "deploy: the dashboard's admin password: kubectl -n $namespace get secret tradebot-api-gateway" \
             "-o jsonpath='{.data.API_GATEWAY_BOOTSTRAP_ADMIN_PASSWORD}' | base64 -d"
    fi
    # The simulator's development paper account (docs/kis_simulator.md), never a real credential.
    .venv/bin/python - <<'PY' | create_secret tradebot-kis
from common.kis.sim import dev_account

account = dev_account("paper")
print(f"KIS_APPKEY={account.appkey}")
print(f"KIS_APPSECRET={account.appsecret.get_secret_value()}")
print(f"KIS_CANO={account.cano}")
print(f"KIS_ACNT_PRDT_CD={account.acnt_prdt_cd}")
print(f"KIS_HTS_ID={account.hts_id}")
PY
fi

# Phase 1: everything the migration needs, and the migration; phase 2: the services.
run "$kubectl" -n "$namespace" delete job tradebot-migrate --ignore-not-found
run "$kubectl" apply -f "$work/all.yaml" --selector 'tradebot.io/after-migration!=true'
run "$kubectl" -n "$namespace" wait --for=condition=complete job/tradebot-migrate --timeout=15m
run "$kubectl" apply -f "$work/all.yaml"
run "$kubectl" -n "$namespace" rollout status deployment --selector app.kubernetes.io/part-of=trading-bot --timeout=15m
