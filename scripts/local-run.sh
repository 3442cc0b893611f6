#!/usr/bin/env bash
# README command 1: run the whole bot locally and chat with it.
#   scripts/local-run.sh                      interactive
#   scripts/local-run.sh --say "hi" --say "/reset"   scripted, exits 0 when every line was answered
#   scripts/local-run.sh --platform nim       the same with a NetEase NIM robot (mybot)
# Real LLM: LLM_BASE_URL=https://api.deepseek.com/v1 LLM_API_KEY=... LLM_MODEL=deepseek-chat scripts/local-run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-tools.sh
ensure_moto
ensure_cargo_lambda
echo "==> building the local runner"
cargo build --quiet -p devtools --bin local-run
exec "${CARGO_TARGET_DIR:-target}/debug/local-run" "$@"
