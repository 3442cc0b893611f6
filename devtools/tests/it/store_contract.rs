//! One contract, two adapters: the in-memory store and the DynamoDB store (through the AWS SDK
//! to moto server) must behave alike.

use crate::common::{aws, unique};
use shared::store::{DynamoStore, MemoryStore, Role, Store, Turn, now_ms};
use std::sync::Arc;

async fn dynamo() -> Arc<dyn Store> {
    let cfg = aws().await;
    let client = aws_sdk_dynamodb::Client::new(&cfg);
    let table = unique("contract");
    shared::store::dynamo::ensure_table(&client, &table).await.unwrap_or_else(|e| panic!("{e}"));
    Arc::new(DynamoStore::new(client, table))
}

fn turn(at_ms: u64, role: Role, text: &str) -> Turn {
    Turn { at_ms, role, speaker: None, text: text.into() }
}

async fn claims_are_exclusive_until_released(s: Arc<dyn Store>) {
    assert_eq!(s.claim("k1", 60).await, Ok(true));
    assert_eq!(s.claim("k1", 60).await, Ok(false));
    s.release("k1").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.claim("k1", 60).await, Ok(true));
    // A claim whose TTL has passed can be taken again.
    assert_eq!(s.claim("k-expired", 0).await, Ok(true));
    assert_eq!(s.claim("k-expired", 60).await, Ok(true));
}

async fn fifty_concurrent_claims_have_one_winner(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim("contended", 60).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}")) {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

async fn docs_round_trip_and_expire(s: Arc<dyn Store>) {
    assert_eq!(s.get_doc("d").await, Ok(None));
    s.put_doc("d", r#"{"a":1}"#, None).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.get_doc("d").await, Ok(Some(r#"{"a":1}"#.into())));
    s.put_doc("d", r#"{"a":2}"#, Some(60)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.get_doc("d").await, Ok(Some(r#"{"a":2}"#.into())));
    s.put_doc("gone", "x", Some(0)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.get_doc("gone").await, Ok(None));
    s.delete_doc("d").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.get_doc("d").await, Ok(None));
}

async fn docs_are_replaced_only_if_unchanged(s: Arc<dyn Store>) {
    assert_eq!(s.put_doc_if("v", None, "1", None).await, Ok(true));
    assert_eq!(s.put_doc_if("v", None, "x", None).await, Ok(false), "there is a document now");
    assert_eq!(s.put_doc_if("v", Some("0"), "x", None).await, Ok(false), "it does not read 0");
    assert_eq!(s.put_doc_if("v", Some("1"), "2", Some(60)).await, Ok(true));
    assert_eq!(s.get_doc("v").await, Ok(Some("2".into())));
    s.put_doc("gone", "old", Some(0)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.put_doc_if("gone", Some("old"), "x", None).await, Ok(false), "an expired document is none");
    assert_eq!(s.put_doc_if("gone", None, "new", None).await, Ok(true));
    // Twenty writers adding one each by read-modify-write lose no update.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                loop {
                    let old = s.get_doc("n").await?;
                    let n: u64 = old.as_deref().and_then(|d| d.parse().ok()).unwrap_or(0);
                    if s.put_doc_if("n", old.as_deref(), &(n + 1).to_string(), None).await? {
                        return Ok::<_, shared::store::StoreError>(());
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(s.get_doc("n").await, Ok(Some("20".into())));
}

async fn turns_come_back_newest_n_oldest_first(s: Arc<dyn Store>) {
    let base = now_ms() - 10_000;
    for i in 0..30u64 {
        let role = if i % 2 == 0 { Role::User } else { Role::Assistant };
        s.append_turn("conv", &turn(base + i * 10, role, &format!("t{i}")), 3600)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    s.append_turn("other", &turn(base, Role::User, "x"), 3600).await.unwrap_or_else(|e| panic!("{e}"));
    let last5 = s.recent_turns("conv", 0, 5).await.unwrap_or_else(|e| panic!("{e}"));
    let texts: Vec<&str> = last5.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["t25", "t26", "t27", "t28", "t29"]);
    assert_eq!(last5[4].role, Role::Assistant);
    let since = s.recent_turns("conv", base + 275, 100).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(since.len(), 2, "turns at or after the cut-off only");
    assert_eq!(s.clear_turns("conv").await, Ok(30));
    assert_eq!(s.recent_turns("conv", 0, 100).await.map(|t| t.len()), Ok(0));
    assert_eq!(s.recent_turns("other", 0, 100).await.map(|t| t.len()), Ok(1));
}

async fn when_a_turn_exceeds_the_item_limit_should_store_it_truncated(s: Arc<dyn Store>) {
    // 500 KB of three-byte characters: more than a DynamoDB item holds, and a cut at a round
    // byte count would fall inside a character.
    let text = "字".repeat(500_000 / 3);
    s.append_turn("long", &turn(now_ms(), Role::Assistant, &text), 3600).await.unwrap_or_else(|e| panic!("{e}"));
    let turns = s.recent_turns("long", 0, 10).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(turns.len(), 1);
    let stored = &turns[0].text;
    assert!(stored.len() <= 64 * 1024 && stored.len() > 60 * 1024, "{} bytes", stored.len());
    assert!(stored.ends_with('…') && text.starts_with(stored.trim_end_matches('…')));
}

async fn counters_add_atomically(s: Arc<dyn Store>) {
    assert_eq!(s.counter("c").await, Ok(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.incr("c", 2, Some(3600)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(s.counter("c").await, Ok(40));
    assert_eq!(s.incr("c", -1, None).await, Ok(39));
    assert_eq!(s.incr("expired", 5, Some(0)).await, Ok(5));
    assert_eq!(s.counter("expired").await, Ok(0));
    assert_eq!(s.incr("expired", 1, Some(60)).await, Ok(1), "an expired counter starts again");
}

async fn members_are_counted_once_with_the_count_they_got(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.count_once("q", &format!("msg{}", i % 10), Some(3600)).await })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e}")));
    }
    assert_eq!(s.counter("q").await, Ok(10), "ten members, each counted once: {got:?}");
    let mut firsts: Vec<i64> = (0..10).map(|m| got[m]).collect();
    firsts.sort_unstable();
    assert_eq!(firsts, (1..=10).collect::<Vec<_>>(), "each member got its own count");
    for m in 0..10 {
        assert_eq!(got[m], got[m + 10], "a member counted again gets the count it got");
        assert_eq!(s.count_once("q", &format!("msg{m}"), Some(3600)).await, Ok(got[m]));
    }
    assert_eq!(s.count_once("q", "late", None).await, Ok(11));
}

macro_rules! contract {
    ($($name:ident),*) => {
        mod memory {
            $( #[tokio::test] async fn $name() { super::$name(std::sync::Arc::new(super::MemoryStore::new())).await } )*
        }
        mod dynamodb {
            $( #[tokio::test] async fn $name() { super::$name(super::dynamo().await).await } )*
        }
    };
}

contract!(
    members_are_counted_once_with_the_count_they_got,
    claims_are_exclusive_until_released,
    fifty_concurrent_claims_have_one_winner,
    docs_round_trip_and_expire,
    docs_are_replaced_only_if_unchanged,
    turns_come_back_newest_n_oldest_first,
    counters_add_atomically,
    when_a_turn_exceeds_the_item_limit_should_store_it_truncated
);
