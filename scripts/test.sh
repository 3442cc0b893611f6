#!/usr/bin/env bash
# The test command: every check and test of the project. `.ci/run` calls exactly this.
#   scripts/test.sh            format, lint, all tests, template lint, release build + smoke test
#   SKIP_SAM_BUILD=1 scripts/test.sh   the same without the release build (faster locally)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-tools.sh

START=$(date +%s)
declare -a TIMINGS=()
stage() { # stage <name> <command>...
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo
  echo "==== $name"
  "$@"
  local dt=$(( $(date +%s) - t0 ))
  TIMINGS+=("$(printf '%-28s %4ss' "$name" "$dt")")
}

stage "install tools" bash -c 'source scripts/ensure-tools.sh; ensure_moto; ensure_sam; ensure_cargo_lambda; ensure_usersig_reference'
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
stage "cargo test" cargo test --workspace --locked
stage "sam validate --lint" sam validate --lint
stage "local run (scripted chat)" scripts/local-run.sh --timeout 90 \
  --say "Hello bot" --say "What did I just say?" --say "@ hello group" --say "/reset" --say "/help"
stage "request ids and EMF in logs" scripts/check-logs.py .local/cargo-lambda-watch.log
stage "local run (modify mode)" scripts/local-run.sh --timeout 90 --mode modify --say "Hello again" --say "@ and the group"
stage "local run (NetEase NIM)" scripts/local-run.sh --timeout 90 --platform nim --say "Hello NIM" --say "@ hello team" --say "/reset"
if [ "${SKIP_SAM_BUILD:-}" != "1" ]; then
  stage "sam build (x86_64)" sam build --parameter-overrides Architecture=x86_64
  stage "smoke test bootstrap" scripts/smoke-bootstrap.sh
fi

echo
echo "==== stage times"
printf '%s\n' "${TIMINGS[@]}"
echo "total $(( $(date +%s) - START ))s"
