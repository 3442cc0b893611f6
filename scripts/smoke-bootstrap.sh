#!/usr/bin/env bash
# Smoke-tests the deployed artifacts: each `bootstrap` from `sam build` runs under cargo-lambda's
# runtime emulator exactly as Lambda would run it, cold start included, and answers a sample
# event. No AWS call is needed: the secret comes from a local file and the events take paths
# that touch no AWS service.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=.aws-sam/build
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

cat > "$WORK/secret.json" <<'JSON'
{"SdkAppId": 1400000000, "SecretKey": "smoke-test-key", "AdminIdentifier": "administrator"}
JSON

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_one <logical id> <event file> <expected text in the reply>
run_one() {
  local id=$1 event=$2 expect=$3
  local bin="$BUILD/$id/bootstrap"
  [ -x "$bin" ] || { echo "missing $bin (run sam build first)"; exit 1; }
  local port; port=$(free_port)
  cargo-lambda lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$port" >"$WORK/$id.emu.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt" AWS_LAMBDA_FUNCTION_NAME=_ AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 \
  AWS_LAMBDA_LOG_GROUP_NAME=smoke AWS_LAMBDA_LOG_STREAM_NAME=smoke AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_ENDPOINT_URL=http://127.0.0.1:9 \
  TCBOT_TABLE_NAME=smoke TCBOT_LOCAL_SECRET_FILE="$WORK/secret.json" TCBOT_ALLOW_UNSIGNED=true \
  TCBOT_C2C_QUEUE_URL=http://127.0.0.1:9/q1 TCBOT_GROUP_QUEUE_URL=http://127.0.0.1:9/q2 TCBOT_DLQ_URL=http://127.0.0.1:9/dlq \
    "$bin" >"$WORK/$id.log" 2>&1 &
  local fn_pid=$!
  PIDS+=($fn_pid)
  local t0; t0=$(date +%s%N)
  local reply
  reply=$(curl -s --max-time 20 -X POST --data-binary "@$event" "http://127.0.0.1:$port/2015-03-31/functions/_/invocations")
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if ! grep -q -- "$expect" <<<"$reply"; then
    echo "FAIL $id: expected $expect in reply: $reply"
    cat "$WORK/$id.log"
    exit 1
  fi
  local rss; rss=$(awk '/VmHWM/ {print $2}' "/proc/$fn_pid/status" 2>/dev/null || echo 0)
  # One emulator at a time: a second `cargo lambda watch` beside the first does not serve.
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  PIDS=()
  printf 'ok   %-32s %5d ms start to first reply, peak RSS %6s KiB, binary %s bytes\n' "$id" "$ms" "$rss" "$(stat -c %s "$bin")"
}

run_one CallbackRouterFunction events/callback-router.unknown-command.json '\"ActionStatus\\":\\"OK'
echo '{"Records":[]}' > "$WORK/empty-sqs.json"
run_one BotC2cMessageFunction "$WORK/empty-sqs.json" 'batchItemFailures'
run_one BotGroupMessageFunction "$WORK/empty-sqs.json" 'batchItemFailures'
# The store is unreachable here: moderation reads no policy and allows.
run_one GroupBeforeSendMsgFunction events/group-before-send-msg.text.json '"ActionStatus":"OK"'
run_one C2cBeforeSendMsgFunction events/c2c-before-send-msg.text.json '"ActionStatus":"OK"'
for f in GroupAfterSendMsgFunction StateChangeFunction GroupAfterCreateGroupFunction GroupAfterNewMemberJoinFunction GroupTeamEventsFunction; do
  run_one "$f" "$WORK/empty-sqs.json" 'batchItemFailures'
done
# A conditional function (ServesUserSigs) is smoked when sam build has built it.
if [ -x "$BUILD/UsersigFunction/bootstrap" ]; then
  run_one UsersigFunction events/usersig.request.json 'UserID\\":\\"alice_01'
else
  echo "skip UsersigFunction: not built"
fi
if [ -x "$BUILD/ThreadsApiFunction/bootstrap" ]; then
  # Without the server to list, the API answers 400 before it reads the (unreachable) table.
  python3 -c 'import json,sys; e=json.load(open(sys.argv[1])); e["rawQueryString"]=""; e.pop("queryStringParameters",None); json.dump(e,open(sys.argv[2],"w"))' \
    events/threads-api.request.json "$WORK/threads-no-server.json"
  run_one ThreadsApiFunction "$WORK/threads-no-server.json" '"statusCode":400'
else
  echo "skip ThreadsApiFunction: not built"
fi
