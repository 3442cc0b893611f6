//! `template.yaml` read as CloudFormation sees it: the chatbot functions' timeouts, queues,
//! retry settings and permissions agree with each other and with what the worker assumes.

use serde_norway::Value;
use shared::config::Settings;
use std::collections::HashMap;
use std::time::Duration;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The logical id an intrinsic (`!GetAtt X.Arn`, `!Ref X`) names, if `v` is one.
fn names(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) => match &t.value {
            Value::String(s) => Some(s.split('.').next().unwrap_or(s).to_owned()),
            Value::Sequence(parts) => parts.first().and_then(|p| p.as_str()).map(str::to_owned),
            _ => None,
        },
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The literal environment of a function: `Globals` overlaid with its own variables.
fn environment(t: &Value, function: &Value) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for vars in
        [&t["Globals"]["Function"]["Environment"]["Variables"], &function["Properties"]["Environment"]["Variables"]]
    {
        if let Some(m) = vars.as_mapping() {
            for (k, v) in m.iter().filter(|(_, v)| !matches!(v, Value::Tagged(_))) {
                let value = v.as_str().map(str::to_owned).or_else(|| number(v).map(|n| n.to_string()));
                if let (Some(k), Some(v)) = (k.as_str(), value) {
                    env.insert(k.to_owned(), v);
                }
            }
        }
    }
    env
}

#[test]
fn chatbot_timeouts_retries_and_queue_permissions_agree() {
    let t = template();
    for name in ["BotC2cMessageFunction", "BotGroupMessageFunction"] {
        let f = &t["Resources"][name];
        let timeout = number(&f["Properties"]["Timeout"])
            .or_else(|| number(&t["Globals"]["Function"]["Timeout"]))
            .unwrap_or_else(|| panic!("{name}: no Timeout"));
        let queue_id = names(&f["Properties"]["Events"]["Queue"]["Properties"]["Queue"])
            .unwrap_or_else(|| panic!("{name}: no queue event"));
        let queue = &t["Resources"][queue_id.as_str()]["Properties"];
        let visibility = number(&queue["VisibilityTimeout"]).unwrap_or(30);
        // High-throughput FIFO: ordering and deduplication per conversation, so the router's
        // sends are not capped at 300 a second across all conversations.
        assert_eq!(queue["DeduplicationScope"].as_str(), Some("messageGroup"), "{queue_id}");
        assert_eq!(queue["FifoThroughputLimit"].as_str(), Some("perMessageGroupId"), "{queue_id}");
        let max_receive = number(&queue["RedrivePolicy"]["maxReceiveCount"]).unwrap_or(0);

        // The worker's own view, from the same environment the function gets.
        let mut env = environment(&t, f);
        env.insert("TCBOT_SECRET_ID".into(), "s".into());
        env.insert("TCBOT_TABLE_NAME".into(), "t".into());
        env.retain(|_, v| !v.is_empty());
        let settings = Settings::from_lookup(|k| env.get(k).cloned()).unwrap_or_else(|e| panic!("{name}: {e}"));

        assert!(
            visibility >= 6 * timeout,
            "{name}: visibility {visibility} s < 6 × timeout {timeout} s (AWS's advice for SQS triggers)"
        );
        assert_eq!(
            u64::from(settings.max_receives),
            max_receive,
            "{name}: TCBOT_MAX_RECEIVES must equal the queue's maxReceiveCount, or the last delivery is not known to be the last"
        );
        let answer = settings.llm.total_timeout + settings.finish_margin;
        assert!(
            answer <= Duration::from_secs(timeout),
            "{name}: LLM total timeout + finish margin ({answer:?}) exceed the function timeout ({timeout} s)"
        );
        // Retries back off within a few minutes, far below the visibility timeout they replace.
        let worst: Duration =
            (1..max_receive as u32).map(|r| (settings.retry_base * (1 << (r - 1))).min(settings.retry_max)).sum();
        assert!(worst < Duration::from_secs(visibility), "{name}: retry backoff {worst:?}");

        // The worker makes a failed message visible again early: it needs that permission on its queue.
        let statements = f["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
            .collect::<Vec<_>>();
        let grants = statements.iter().any(|s| {
            let actions: Vec<&str> = match &s["Action"] {
                Value::String(a) => vec![a.as_str()],
                Value::Sequence(v) => v.iter().filter_map(|a| a.as_str()).collect(),
                _ => vec![],
            };
            actions.contains(&"sqs:ChangeMessageVisibility")
                && names(&s["Resource"]).as_deref() == Some(queue_id.as_str())
        });
        assert!(grants, "{name}: no sqs:ChangeMessageVisibility on {queue_id}");
    }
}

/// A function's policy statements.
fn statements(function: &Value) -> Vec<Value> {
    function["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

fn actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Sequence(v) => v.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
        _ => vec![],
    }
}

/// The logical ids a statement's `Resource` names.
fn resources(statement: &Value) -> Vec<String> {
    match &statement["Resource"] {
        Value::Sequence(v) => v.iter().filter_map(names).collect(),
        other => names(other).into_iter().collect(),
    }
}

fn functions(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .into_iter()
        .flatten()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .filter_map(|(k, r)| Some((k.as_str()?.to_owned(), r.clone())))
        .collect()
}

#[test]
fn the_public_router_reads_only_the_webhook_secret_writes_only_stop_flags_and_reads_only_profiles() {
    let t = template();
    let router = &t["Resources"]["CallbackRouterFunction"];
    let st = statements(router);
    let secrets: Vec<String> =
        st.iter().filter(|s| actions(s).iter().any(|a| a.starts_with("secretsmanager:"))).flat_map(resources).collect();
    assert_eq!(secrets, ["WebhookSecret"], "the router must not be able to read the Tencent or LLM keys");
    assert_eq!(
        names(&router["Properties"]["Environment"]["Variables"]["TCBOT_SECRET_ID"]).as_deref(),
        Some("WebhookSecret")
    );
    let grants: Vec<(Vec<String>, Vec<String>)> = st
        .iter()
        .filter(|s| resources(s).contains(&"Table".to_owned()))
        .map(|s| {
            let keys = &s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
            let keys = keys.as_sequence().into_iter().flatten().filter_map(|k| k.as_str().map(str::to_owned));
            (actions(s), keys.collect())
        })
        .collect();
    let grant = |action: &str, key: &str| (vec![action.to_owned()], vec![key.to_owned()]);
    assert_eq!(
        grants,
        [grant("dynamodb:PutItem", "stop#*"), grant("dynamodb:GetItem", "profile#*")],
        "the router sets stop flags and reads robots' group scopes, nothing else"
    );
    // No other function reads the webhook secret.
    for (name, f) in functions(&t).into_iter().filter(|(n, _)| n != "CallbackRouterFunction") {
        let reads: Vec<String> = statements(&f).iter().flat_map(resources).collect();
        assert!(!reads.contains(&"WebhookSecret".to_owned()), "{name} reads the webhook secret");
    }
}

#[test]
fn every_table_grant_is_limited_to_key_prefixes() {
    let t = template();
    for (name, f) in functions(&t) {
        let grants = statements(&f).iter().any(|s| resources(s).contains(&"Table".to_owned()));
        if grants {
            let prefixes = devtools::iam::leading_keys(&t, &name).unwrap_or_default();
            assert!(!prefixes.is_empty(), "{name}: table access without dynamodb:LeadingKeys");
            assert!(prefixes.iter().all(|p| p.ends_with('#')), "{name}: {prefixes:?}");
        }
    }
}

/// The tag and value of an intrinsic (`!If [...]` → `("If", [...])`).
fn tagged(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string().trim_start_matches('!').to_owned(), &t.value)),
        _ => None,
    }
}

#[test]
fn the_nim_router_reads_only_the_nim_secret_and_sends_only_to_the_bot_queues() {
    let t = template();
    let f = &t["Resources"]["NimCallbackRouterFunction"];
    assert_eq!(f["Metadata"]["BuildProperties"]["Binary"].as_str(), Some("nim-callback-router"));
    let crate_toml = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions/nim-callback-router/Cargo.toml");
    let manifest = std::fs::read_to_string(crate_toml).unwrap_or_else(|e| panic!("{crate_toml}: {e}"));
    assert!(manifest.contains("name = \"nim-callback-router\""), "the binary is the crate of the same name");
    let route = &f["Properties"]["Events"]["MessageCopy"]["Properties"];
    assert_eq!((route["Path"].as_str(), route["Method"].as_str()), (Some("/nim"), Some("POST")));
    assert_eq!(names(&route["ApiId"]).as_deref(), Some("HttpApi"), "the same HTTP API as /webhook");
    let env = &f["Properties"]["Environment"]["Variables"];
    assert_eq!(names(&env["TCBOT_SECRET_ID"]).as_deref(), Some("NimSecret"));
    assert_eq!(names(&env["TCBOT_NIM_ROBOTS"]).as_deref(), Some("NimRobots"));
    assert_eq!(names(&env["TCBOT_C2C_QUEUE_URL"]).as_deref(), Some("BotC2cQueue"));
    assert_eq!(names(&env["TCBOT_GROUP_QUEUE_URL"]).as_deref(), Some("BotGroupQueue"));
    // Two grants, nothing else: no table, no function, no other secret or queue.
    let mut grants: Vec<(Vec<String>, Vec<String>)> =
        statements(f).iter().map(|s| (actions(s), resources(s))).collect();
    grants.sort();
    assert_eq!(
        grants,
        [
            (vec!["secretsmanager:GetSecretValue".to_owned()], vec!["NimSecret".to_owned()]),
            (vec!["sqs:SendMessage".to_owned()], vec!["BotC2cQueue".to_owned(), "BotGroupQueue".to_owned()]),
        ]
    );
    assert_eq!(devtools::iam::leading_keys(&t, "NimCallbackRouterFunction"), None);
    // Only the NIM router and the workers' NIM policy read the NIM secret.
    for (name, f) in functions(&t).into_iter().filter(|(n, _)| n != "NimCallbackRouterFunction") {
        let reads: Vec<String> = statements(&f).iter().flat_map(resources).collect();
        assert!(!reads.contains(&"NimSecret".to_owned()), "{name} reads the NIM secret");
    }
}

#[test]
fn nim_resources_are_created_only_when_the_stack_serves_nim() {
    let t = template();
    let p = &t["Parameters"]["Platforms"];
    assert_eq!(p["Default"].as_str(), Some("tencent"), "existing stacks keep serving Tencent alone");
    let allowed: Vec<&str> =
        p["AllowedValues"].as_sequence().into_iter().flatten().filter_map(|v| v.as_str()).collect();
    assert_eq!(allowed, ["tencent", "nim", "both"]);
    // ServesNim = !Not [!Equals [!Ref Platforms, tencent]]
    let (not, inner) = tagged(&t["Conditions"]["ServesNim"]).unwrap_or_else(|| panic!("no ServesNim condition"));
    let (eq, args) =
        inner.as_sequence().and_then(|s| s.first()).and_then(tagged).unwrap_or_else(|| panic!("{inner:?}"));
    let args = args.as_sequence().cloned().unwrap_or_default();
    assert_eq!((not.as_str(), eq.as_str()), ("Not", "Equals"));
    assert_eq!((names(&args[0]).as_deref(), args[1].as_str()), (Some("Platforms"), Some("tencent")));
    let nim: Vec<String> = t["Resources"]
        .as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.as_str().filter(|k| k.starts_with("Nim")).map(str::to_owned))
        .collect();
    assert!(nim.len() >= 4, "{nim:?}");
    for name in &nim {
        assert_eq!(t["Resources"][name.as_str()]["Condition"].as_str(), Some("ServesNim"), "{name}");
    }
    for name in ["NimMessageCopyUrl", "NimSecretArn"] {
        assert_eq!(t["Outputs"][name]["Condition"].as_str(), Some("ServesNim"), "{name}");
    }
}

#[test]
fn the_workers_read_the_nim_secret_only_when_nim_is_served() {
    let t = template();
    let policy = &t["Resources"]["NimWorkerSecretPolicy"]["Properties"];
    let roles: Vec<String> = policy["Roles"].as_sequence().into_iter().flatten().filter_map(names).collect();
    assert_eq!(roles, ["BotC2cMessageFunctionRole", "BotGroupMessageFunctionRole"]);
    let st = policy["PolicyDocument"]["Statement"].as_sequence().cloned().unwrap_or_default();
    assert_eq!(st.len(), 1);
    assert_eq!(
        (actions(&st[0]), resources(&st[0])),
        (vec!["secretsmanager:GetSecretValue".to_owned()], vec!["NimSecret".to_owned()])
    );
    for name in ["BotC2cMessageFunction", "BotGroupMessageFunction"] {
        let v = &t["Resources"][name]["Properties"]["Environment"]["Variables"]["TCBOT_NIM_SECRET_ID"];
        let (tag, args) = tagged(v).unwrap_or_else(|| panic!("{name}: TCBOT_NIM_SECRET_ID is not an !If"));
        let args = args.as_sequence().cloned().unwrap_or_default();
        assert_eq!((tag.as_str(), args[0].as_str()), ("If", Some("ServesNim")), "{name}");
        assert_eq!(names(&args[1]).as_deref(), Some("NimSecret"), "{name}");
        assert_eq!(names(&args[2]).as_deref(), Some("AWS::NoValue"), "{name}");
    }
    // The NIM settings every function reads are valid for each value their parameters allow.
    let allowed = |p: &str| -> Vec<String> {
        t["Parameters"][p]["AllowedValues"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let globals = &t["Globals"]["Function"]["Environment"]["Variables"];
    for (var, param) in [("TCBOT_NIM_REGION", "NimRegion"), ("TCBOT_NIM_TEAM_STREAMING", "NimTeamStreaming")] {
        assert_eq!(names(&globals[var]).as_deref(), Some(param));
        let values = allowed(param);
        assert!(!values.is_empty(), "{param}");
        for value in values {
            let s = Settings::from_lookup(|k| match k {
                "TCBOT_SECRET_ID" | "TCBOT_TABLE_NAME" => Some("x".into()),
                k if k == var => Some(value.clone()),
                _ => None,
            });
            assert!(s.is_ok(), "{var}={value}: {s:?}");
        }
    }
}
