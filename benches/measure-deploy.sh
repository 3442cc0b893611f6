#!/usr/bin/env bash
# Re-makes benches/RESULTS.md's "Release profile" and "Deployment size and cost" figures:
#   benches/measure-deploy.sh [PROFILE ...]   default: release release-thin release-size release-fat
# For each profile of the workspace Cargo.toml: the build time of every function (cargo build,
# as cargo-lambda does for `sam build`; MEASURE_CLEAN=1 removes that profile's output first so
# the time is a clean build's), a hot-path bench built with that profile, then the deploy bench
# (devtools/benches/deploy.rs): each binary's size, start to first reply and, for the first
# profile, peak RSS and warm duration under load, beside the Python router (boto3 from a local
# venv) measured the same way in the same run.
# Env: CARGO_TARGET_DIR (default target), MEASURE_CLEAN, DEPLOY_COLD (5), DEPLOY_LOAD (200),
# SKIP_BUILD=1 (measure what is built), SKIP_HOT=1 (no hot-path bench).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-tools.sh
ensure_moto
TARGET=${CARGO_TARGET_DIR:-target}
if [ $# -gt 0 ]; then PROFILES=("$@"); else PROFILES=(release release-thin release-size release-fat); fi
PKGS=()
for d in functions/*/; do PKGS+=(-p "$(basename "$d")"); done

VENV="$TARGET/deploy-venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> a venv with boto3 for the Python router ($VENV)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check boto3
fi
echo "python router: $("$VENV/bin/python" -c 'import boto3, sys; print("Python", sys.version.split()[0], "boto3", boto3.__version__)'), site-packages $(du -sk "$VENV"/lib/python3*/site-packages | cut -f1) KiB"

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(rustc --version)"
for p in "${PROFILES[@]}"; do
  if [ -z "${SKIP_BUILD:-}" ]; then
    [ -n "${MEASURE_CLEAN:-}" ] && rm -rf "${TARGET:?}/$p"
    t0=$(date +%s)
    cargo build --quiet --locked --profile "$p" "${PKGS[@]}"
    echo "build $p: $(( $(date +%s) - t0 )) s for $(( ${#PKGS[@]} / 2 )) functions, load $(cut -d' ' -f1-3 /proc/loadavg)"
  fi
  total=0
  for d in functions/*/; do total=$(( total + $(stat -c %s "$TARGET/$p/$(basename "$d")") )); done
  echo "size $p: $total bytes for all functions"
  if [ -z "${SKIP_HOT:-}" ]; then
    echo "hot paths, $p:"
    cargo bench --quiet --profile "$p" -p shared --bench hot_paths -- \
      'router_in_process/new_message_queued|usersig/generate|moderation_engine_5000_words/automaton/clean|moderation/compile/500_patterns' >/dev/null
    python3 benches/summarize.py "$TARGET" router_in_process/new_message_queued usersig/generate moderation_engine_5000_words/automaton/clean moderation/compile/500_patterns
  fi
done

DEPLOY_TARGET_DIR="$TARGET" DEPLOY_PROFILES=$(IFS=,; echo "${PROFILES[*]}") DEPLOY_PYTHON="$VENV/bin/python" \
  cargo bench --quiet -p devtools --bench deploy
