#!/usr/bin/env bash
# Installs what the test and local-run commands need, when it is missing. Sourced by them.
# Everything comes from the package registries: PyPI (moto server, SAM CLI, cargo-lambda)
# and npm (Tencent's UserSig reference implementation, for the interop test).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SAM_CLI_TELEMETRY=0

need_pip() { # need_pip <command> <pip requirement>...
  local cmd=$1; shift
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "==> installing $* (for $cmd)"
    python3 -m pip install --quiet --disable-pip-version-check "$@"
    hash -r
  fi
}

ensure_moto() {
  if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import flask, flask_cors' >/dev/null 2>&1; then
    echo "==> installing moto[server]"
    python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
    hash -r
  fi
}

ensure_sam() { need_pip sam 'aws-sam-cli>=1.120'; }
ensure_cargo_lambda() { need_pip cargo-lambda cargo-lambda; }

ensure_usersig_reference() {
  if [ ! -f "$ROOT/.local/npm/node_modules/tls-sig-api-v2/package.json" ]; then
    command -v npm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
    echo "==> installing tls-sig-api-v2@1.0.2 (Tencent's UserSig reference, for the interop test)"
    mkdir -p "$ROOT/.local/npm"
    npm install --silent --no-audit --no-fund --prefix "$ROOT/.local/npm" tls-sig-api-v2@1.0.2 >/dev/null
  fi
}
