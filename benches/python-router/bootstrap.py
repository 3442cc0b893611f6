"""The router's job in Python, for comparison only (benches/RESULTS.md, "Deployment size and cost").

A minimal Lambda handler behind a Runtime API loop written with the standard library: checks the
webhook's Sign (sha256 of token + RequestTime, within 60 s), writes the message to DynamoDB
(a conditional put, the claim the Rust router once made) and sends it to the SQS FIFO queue,
then answers Tencent's ack. Settings: TCBOT_TABLE_NAME, TCBOT_C2C_QUEUE_URL, TCBOT_WEBHOOK_TOKEN;
AWS_ENDPOINT_URL points boto3 at moto in the measurement. Not part of the product.
"""
import hashlib
import hmac
import json
import os
import time
import urllib.parse
import urllib.request

import boto3

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
if not API.startswith("http"):
    API = "http://" + API
BASE = API + "/2018-06-01/runtime/invocation/"
TABLE = os.environ["TCBOT_TABLE_NAME"]
QUEUE = os.environ["TCBOT_C2C_QUEUE_URL"]
TOKEN = os.environ["TCBOT_WEBHOOK_TOKEN"]
ddb = boto3.client("dynamodb")
sqs = boto3.client("sqs")


def ack(status, code, info):
    body = json.dumps({"ActionStatus": status, "ErrorCode": code, "ErrorInfo": info})
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": body}


def handle(event):
    query = dict(urllib.parse.parse_qsl(event.get("rawQueryString", "")))
    t = query.get("RequestTime", "")
    want = hashlib.sha256((TOKEN + t).encode()).hexdigest()
    if not t.isdigit() or abs(time.time() - int(t)) > 60 or not hmac.compare_digest(want, query.get("Sign", "")):
        return ack("FAIL", 1, "bad signature")
    msg = json.loads(event.get("body") or "{}")
    key = "%s|%s|%s" % (msg.get("From_Account"), msg.get("MsgSeq"), msg.get("MsgRandom"))
    try:
        ddb.put_item(
            TableName=TABLE,
            Item={"pk": {"S": "pyclaim#" + key}, "sk": {"S": "_"}, "expires_at": {"N": str(int(time.time()) + 86400)}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ddb.exceptions.ConditionalCheckFailedException:
        return ack("OK", 0, "")
    sqs.send_message(
        QueueUrl=QUEUE,
        MessageBody=json.dumps({"bot": msg.get("To_Account"), "msg": msg}),
        MessageGroupId=msg.get("From_Account") or "_",
        MessageDeduplicationId=hashlib.sha256(key.encode()).hexdigest(),
    )
    return ack("OK", 0, "")


while True:
    with urllib.request.urlopen(BASE + "next") as r:
        request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    try:
        out, path = json.dumps(handle(event)).encode(), "response"
    except Exception as e:  # reported to the Runtime API as Lambda does
        out, path = json.dumps({"errorMessage": str(e), "errorType": type(e).__name__}).encode(), "error"
    urllib.request.urlopen(urllib.request.Request(BASE + request_id + "/" + path, data=out, method="POST")).read()
