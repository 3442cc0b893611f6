//! `template.yaml` read as CloudFormation sees it: the chatbot functions' timeouts, queues,
//! retry settings and permissions agree with each other and with what the worker assumes.

use serde_norway::Value;
use shared::config::Settings;
use std::collections::HashMap;
use std::time::Duration;

pub(crate) fn template() -> Value {
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
            actions.contains(&"sqs:ChangeMessageVisibility") && resources(s).contains(&queue_id)
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
fn the_public_router_reads_only_the_webhook_secret_and_touches_only_its_few_keys() {
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
    let grant = |action: &str, keys: &[&str]| (vec![action.to_owned()], keys.iter().map(|k| k.to_string()).collect());
    assert_eq!(
        grants,
        [grant("dynamodb:PutItem", &["stop#*", "conv#inbox#*"]), grant("dynamodb:GetItem", &["profile#*", "busy#*"])],
        "the router sets stop flags, notes arrivals in inboxes, reads robots' group scopes and \
         whether a conversation is busy, nothing else"
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
fn the_nim_router_reads_only_the_nim_secret_and_sends_only_to_the_bot_and_busy_queues() {
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
    // Four grants, nothing else: stop flags and inbox notes written, busy marks read, no
    // function, no other secret or queue.
    let mut grants: Vec<(Vec<String>, Vec<String>)> =
        statements(f).iter().map(|s| (actions(s), resources(s))).collect();
    grants.sort();
    assert_eq!(
        grants,
        [
            (vec!["dynamodb:GetItem".to_owned()], vec!["Table".to_owned()]),
            (vec!["dynamodb:PutItem".to_owned()], vec!["Table".to_owned()]),
            (vec!["secretsmanager:GetSecretValue".to_owned()], vec!["NimSecret".to_owned()]),
            (
                vec!["sqs:SendMessage".to_owned()],
                vec!["BotC2cQueue".to_owned(), "BotGroupQueue".to_owned(), "BusyQueue".to_owned()]
            ),
        ]
    );
    assert_eq!(
        devtools::iam::leading_keys(&t, "NimCallbackRouterFunction"),
        Some(vec!["busy#".to_owned(), "conv#inbox#".to_owned(), "stop#".to_owned()])
    );
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

/// The values of the parameters a stack is created with: `overrides` over the defaults.
fn parameters<'a>(t: &'a Value, overrides: &[(&'a str, &'a str)]) -> HashMap<String, String> {
    let mut values: HashMap<String, String> = t["Parameters"]
        .as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, p)| {
            let default =
                p["Default"].as_str().map(str::to_owned).or_else(|| number(&p["Default"]).map(|n| n.to_string()));
            Some((k.as_str()?.to_owned(), default.unwrap_or_default()))
        })
        .collect();
    for (k, v) in overrides {
        assert!(values.contains_key(*k), "no parameter {k}");
        values.insert((*k).to_owned(), (*v).to_owned());
    }
    values
}

/// A literal or a parameter's value, as `!Equals` compares them.
fn scalar(v: &Value, params: &HashMap<String, String>) -> String {
    match tagged(v) {
        Some((tag, name)) if tag == "Ref" => {
            let name = name.as_str().unwrap_or_default();
            params.get(name).cloned().unwrap_or_else(|| panic!("!Ref {name} in a condition is not a parameter"))
        }
        Some((tag, _)) => panic!("!{tag} is not allowed in a condition"),
        None => v.as_str().map(str::to_owned).or_else(|| number(v).map(|n| n.to_string())).unwrap_or_default(),
    }
}

/// Evaluates a condition expression, as CloudFormation does.
fn condition(t: &Value, v: &Value, params: &HashMap<String, String>) -> bool {
    let (tag, args) = tagged(v).unwrap_or_else(|| panic!("not a condition function: {v:?}"));
    let list = || args.as_sequence().cloned().unwrap_or_default();
    match tag.as_str() {
        "Equals" => {
            let l = list();
            assert_eq!(l.len(), 2, "!Equals takes two values");
            scalar(&l[0], params) == scalar(&l[1], params)
        }
        "Not" => !condition(t, &list()[0], params),
        "And" => list().iter().all(|c| condition(t, c, params)),
        "Or" => list().iter().any(|c| condition(t, c, params)),
        "Condition" => named_condition(t, args.as_str().unwrap_or_default(), params),
        other => panic!("unknown condition function !{other}"),
    }
}

fn named_condition(t: &Value, name: &str, params: &HashMap<String, String>) -> bool {
    let v = &t["Conditions"][name];
    assert!(!v.is_null(), "no condition {name}");
    condition(t, v, params)
}

/// The logical ids of the resources the stack creates, with the roles SAM makes for its
/// functions (`<Function>Role`), and the outputs it has.
fn created(t: &Value, params: &HashMap<String, String>) -> (std::collections::BTreeSet<String>, Vec<String>) {
    let on = |r: &Value| r["Condition"].as_str().is_none_or(|c| named_condition(t, c, params));
    let mut resources = std::collections::BTreeSet::new();
    for (k, r) in t["Resources"].as_mapping().into_iter().flatten() {
        let Some(name) = k.as_str().filter(|_| on(r)) else { continue };
        resources.insert(name.to_owned());
        if r["Type"].as_str() == Some("AWS::Serverless::Function") && r["Properties"]["Role"].is_null() {
            resources.insert(format!("{name}Role"));
        }
    }
    let outputs = t["Outputs"]
        .as_mapping()
        .into_iter()
        .flatten()
        .filter(|(_, o)| on(o))
        .filter_map(|(k, _)| k.as_str().map(str::to_owned))
        .collect();
    (resources, outputs)
}

/// The `${Name}` and `${Name.Attribute}` a `!Sub` string names, except `locals`.
fn sub_targets(s: &str, locals: &[String]) -> Vec<String> {
    s.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
        .filter(|name| !name.starts_with('!'))
        .map(|name| name.split('.').next().unwrap_or(name).to_owned())
        .filter(|name| !locals.contains(name))
        .collect()
}

/// Every logical id or parameter `v` refers to (`!Ref`, `!GetAtt`, `!Sub`, and their long
/// forms), following only the branch of each `!If` that `params` choose.
fn refs(t: &Value, v: &Value, params: &HashMap<String, String>, out: &mut Vec<String>) {
    let intrinsic = |name: &str, arg: &Value, out: &mut Vec<String>| match name {
        "Ref" => out.extend(arg.as_str().map(str::to_owned)),
        "GetAtt" | "Fn::GetAtt" => match arg {
            Value::String(s) => out.push(s.split('.').next().unwrap_or(s).to_owned()),
            Value::Sequence(parts) => out.extend(parts.first().and_then(|p| p.as_str()).map(str::to_owned)),
            _ => panic!("a !GetAtt of nothing: {arg:?}"),
        },
        "Sub" | "Fn::Sub" => match arg {
            Value::String(s) => out.extend(sub_targets(s, &[])),
            Value::Sequence(parts) => {
                let locals: Vec<String> = parts
                    .get(1)
                    .and_then(|m| m.as_mapping())
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, _)| k.as_str().map(str::to_owned))
                    .collect();
                out.extend(sub_targets(parts.first().and_then(|p| p.as_str()).unwrap_or_default(), &locals));
                if let Some(m) = parts.get(1) {
                    refs(t, m, params, out);
                }
            }
            _ => panic!("a !Sub of nothing: {arg:?}"),
        },
        "If" | "Fn::If" => {
            let parts = arg.as_sequence().cloned().unwrap_or_default();
            assert_eq!(parts.len(), 3, "!If takes a condition and two values: {arg:?}");
            let name = parts[0].as_str().unwrap_or_default();
            let branch = if named_condition(t, name, params) { &parts[1] } else { &parts[2] };
            refs(t, branch, params, out);
        }
        _ => refs(t, arg, params, out),
    };
    match v {
        Value::Tagged(tv) => intrinsic(tv.tag.to_string().trim_start_matches('!'), &tv.value, out),
        Value::Sequence(items) => items.iter().for_each(|i| refs(t, i, params, out)),
        Value::Mapping(m) => {
            for (k, val) in m {
                match k.as_str() {
                    Some(name @ ("Ref" | "Fn::GetAtt" | "Fn::Sub" | "Fn::If")) if m.len() == 1 => {
                        intrinsic(name, val, out)
                    }
                    _ => refs(t, val, params, out),
                }
            }
        }
        _ => {}
    }
}

/// Under every value of `Platforms` (and with and without an alarm topic and an event bus), everything a
/// created resource or output refers to is created too (or is a parameter): a stack that
/// serves NIM alone must not refer to the Tencent router, its secret or its queues.
#[test]
fn every_reference_of_a_created_resource_is_created_for_each_platforms_value() {
    let t = template();
    let platforms: Vec<String> = t["Parameters"]["Platforms"]["AllowedValues"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(platforms, ["tencent", "nim", "both"]);
    let all: Vec<String> =
        t["Resources"].as_mapping().into_iter().flatten().filter_map(|(k, _)| k.as_str().map(str::to_owned)).collect();
    for platform in &platforms {
        for (topic, events) in [("", "true"), ("arn:aws:sns:us-east-1:123456789012:alarms", "false")] {
            let params =
                parameters(&t, &[("Platforms", platform), ("AlarmTopicArn", topic), ("PublishEvents", events)]);
            let (resources, outputs) = created(&t, &params);
            let known = |name: &str| resources.contains(name) || params.contains_key(name) || name.starts_with("AWS::");
            let globals = &t["Globals"]["Function"];
            for name in &resources {
                let r = &t["Resources"][name.as_str()];
                if r.is_null() {
                    continue; // a role SAM makes
                }
                let mut targets = Vec::new();
                refs(&t, r, &params, &mut targets);
                match &r["DependsOn"] {
                    Value::String(d) => targets.push(d.clone()),
                    Value::Sequence(ds) => targets.extend(ds.iter().filter_map(|d| d.as_str().map(str::to_owned))),
                    _ => {}
                }
                if r["Type"].as_str() == Some("AWS::Serverless::Function") {
                    refs(&t, globals, &params, &mut targets);
                }
                for target in targets {
                    assert!(known(&target), "Platforms={platform}: {name} refers to {target}, which is not created");
                }
            }
            for name in &outputs {
                let mut targets = Vec::new();
                refs(&t, &t["Outputs"][name.as_str()], &params, &mut targets);
                for target in targets {
                    assert!(
                        known(&target),
                        "Platforms={platform}: output {name} refers to {target}, which is not created"
                    );
                }
            }

            let functions: Vec<&str> = resources
                .iter()
                .filter(|n| t["Resources"][n.as_str()]["Type"].as_str() == Some("AWS::Serverless::Function"))
                .map(String::as_str)
                .collect();
            let tencent_only = [
                "CallbackRouterFunction",
                "WebhookSecret",
                "RouterErrorAlarm",
                "GroupBeforeSendMsgFunction",
                "C2cBeforeSendMsgFunction",
                "GroupAfterSendMsgFunction",
                "StateChangeFunction",
                "GroupAfterCreateGroupFunction",
                "GroupAfterNewMemberJoinFunction",
                "StatsQueue",
                "PresenceQueue",
                "GroupCreatedQueue",
                "MemberJoinedQueue",
                "StatsDeadLetterQueue",
                "PresenceDeadLetterQueue",
                "GroupCreatedDeadLetterQueue",
                "MemberJoinedDeadLetterQueue",
                "StatsDeadLetterAlarm",
                "PresenceDeadLetterAlarm",
                "GroupCreatedDeadLetterAlarm",
                "MemberJoinedDeadLetterAlarm",
                "GroupTeamEventsFunction",
                "TeamEventsQueue",
                "TeamEventsDeadLetterQueue",
                "TeamEventsDeadLetterAlarm",
            ];
            let has_output = |o: &str| outputs.iter().any(|x| x == o);
            match platform.as_str() {
                "nim" => {
                    assert_eq!(
                        functions,
                        ["BotC2cMessageFunction", "BotGroupMessageFunction", "NimCallbackRouterFunction"],
                        "a NIM-only stack creates only what NIM uses"
                    );
                    for name in tencent_only {
                        assert!(!resources.contains(name), "Platforms=nim creates {name}");
                    }
                    assert!(!has_output("WebhookUrl") && !has_output("WebhookSecretArn"), "{outputs:?}");
                    assert!(has_output("NimMessageCopyUrl") && has_output("NimSecretArn"), "{outputs:?}");
                }
                "tencent" => {
                    assert!(resources.iter().all(|r| !r.starts_with("Nim")), "{resources:?}");
                    for name in tencent_only {
                        assert!(resources.contains(name), "Platforms=tencent lacks {name}");
                    }
                    assert!(has_output("WebhookUrl") && !has_output("NimMessageCopyUrl"), "{outputs:?}");
                }
                _ => {
                    // Everything but the UserSig endpoint and (with PublishEvents false) the event
                    // bus, which their own parameters turn on.
                    let own = |c: Option<&str>| {
                        c == Some("ServesUserSigs") || (events == "false" && c == Some("HasEventBus"))
                    };
                    let usersig = |r: &String| own(t["Resources"][r.as_str()]["Condition"].as_str());
                    let platform_resources = all.iter().filter(|r| !usersig(r));
                    assert!(
                        platform_resources.clone().all(|r| resources.contains(r)),
                        "Platforms=both creates everything"
                    );
                    let all_outputs = t["Outputs"]
                        .as_mapping()
                        .into_iter()
                        .flatten()
                        .filter(|(_, o)| !own(o["Condition"].as_str()))
                        .count();
                    assert_eq!(outputs.len(), all_outputs, "all outputs but UserSigUrl (and the bus's): {outputs:?}");
                }
            }
            // Shared by both platforms, whatever the value: the queues, the workers, the table
            // and the app secret (the LLM key).
            for name in ["Table", "AppSecret", "HttpApi", "BotC2cQueue", "BotGroupQueue", "BotC2cDeadLetterAlarm"] {
                assert!(resources.contains(name), "Platforms={platform} lacks {name}");
            }
        }
    }
}

/// Every metric name the code emits: `.value("Name", …)` calls in `shared/src`.
fn emitted_metrics() -> std::collections::BTreeSet<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    let mut sources = Vec::new();
    walk(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/src")), &mut sources);
    let mut names = std::collections::BTreeSet::new();
    for src in sources {
        for (i, _) in src.match_indices(".value(") {
            let rest = src[i + ".value(".len()..].trim_start();
            if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

#[test]
fn the_dashboard_names_only_metrics_the_code_emits_and_shows_what_the_operator_needs() {
    let t = template();
    let dashboard = &t["Resources"]["Dashboard"];
    assert_eq!(dashboard["Type"].as_str(), Some("AWS::CloudWatch::Dashboard"));
    let (tag, body) = tagged(&dashboard["Properties"]["DashboardBody"]).unwrap_or_else(|| panic!("no !Sub body"));
    assert_eq!(tag, "Sub");
    let body: serde_json::Value =
        serde_json::from_str(body.as_str().unwrap_or_default()).unwrap_or_else(|e| panic!("the body is not JSON: {e}"));
    let text = body.to_string();
    let emitted = emitted_metrics();
    assert!(emitted.contains("AckMs") && emitted.contains("WebhookToFirstChunkMs"), "{emitted:?}");
    let mut named = Vec::new();
    for part in text.split("{TencentChatBot").skip(1) {
        let name = part.split("MetricName=\\\"").nth(1).and_then(|r| r.split('\\').next()).unwrap_or_default();
        assert!(emitted.contains(name), "the dashboard graphs {name:?}, which no code emits ({emitted:?})");
        named.push(name.to_owned());
    }
    for needed in [
        "Webhooks",
        "AckMs",
        "Messages",
        "LlmFirstTokenMs",
        "LlmTotalMs",
        "WebhookToFirstChunkMs",
        "RestCallsPerAnswer",
        "PromptTokens",
        "CompletionTokens",
        "QueueAgeMs",
    ] {
        assert!(named.iter().any(|n| n == needed), "the dashboard lacks {needed}");
    }
    for aws in ["ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible", "Errors", "Throttles"] {
        assert!(text.contains(aws), "the dashboard lacks {aws}");
    }
    // It names only resources every value of Platforms creates.
    for r in ["BotC2cQueue", "BotGroupQueue", "BotC2cDeadLetterQueue", "BotGroupDeadLetterQueue"] {
        assert!(text.contains(&format!("${{{r}.QueueName}}")), "{r}");
    }
    assert!(dashboard["Condition"].is_null());
}
