//! The DynamoDB store. Table: `pk` (S) hash key, `sk` (S) range key, TTL on `expires_at`.
//!
//! Claims, documents and counters use `sk = "_"`; conversation turns live under
//! `pk = "conv#<id>"` with `sk = "turn#<ms, 13 digits>#<random>"`, so a descending query on the
//! sort key reads the newest turns first.

use super::{Role, Store, StoreError, Turn, now_secs, stored_text};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, ReturnValue, WriteRequest};
use std::collections::HashMap;

const ONE: &str = "_";

/// A [`Store`] in one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn err<E: std::error::Error + 'static, R: std::fmt::Debug>(op: &'static str) -> impl Fn(SdkError<E, R>) -> StoreError {
    move |e| StoreError { op, reason: DisplayErrorContext(e).to_string() }
}

fn get_n(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn is_conditional_failure<R>(e: &SdkError<aws_sdk_dynamodb::operation::put_item::PutItemError, R>) -> bool {
    e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception())
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore { client, table: table.into() }
    }

    fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
    }

    /// The item under `key` (`sk = "_"`), unless it has expired.
    async fn get_live(
        &self,
        key: &str,
        op: &'static str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key, ONE)))
            .consistent_read(true)
            .send()
            .await
            .map_err(err(op))?;
        let now = now_secs();
        Ok(out.item.filter(|i| get_n(i, "expires_at").is_none_or(|e| e > now)))
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn claim(&self, key: &str, ttl_secs: u64) -> Result<bool, StoreError> {
        let now = now_secs();
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(key))
            .item("sk", s(ONE))
            .item("expires_at", n(now + ttl_secs))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(err("claim")(e)),
        }
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        self.delete_doc(key).await
    }

    async fn put_doc(&self, key: &str, doc: &str, ttl_secs: Option<u64>) -> Result<(), StoreError> {
        let mut req =
            self.client.put_item().table_name(&self.table).item("pk", s(key)).item("sk", s(ONE)).item("doc", s(doc));
        if let Some(t) = ttl_secs {
            req = req.item("expires_at", n(now_secs() + t));
        }
        req.send().await.map_err(err("put_doc"))?;
        Ok(())
    }

    async fn put_doc_if(
        &self,
        key: &str,
        expected: Option<&str>,
        doc: &str,
        ttl_secs: Option<u64>,
    ) -> Result<bool, StoreError> {
        let now = now_secs();
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(key))
            .item("sk", s(ONE))
            .item("doc", s(doc))
            .expression_attribute_names("#d", "doc")
            .expression_attribute_values(":now", n(now));
        if let Some(t) = ttl_secs {
            req = req.item("expires_at", n(now + t));
        }
        req = match expected {
            None => req.condition_expression("attribute_not_exists(#d) OR expires_at <= :now"),
            Some(old) => req
                .condition_expression("#d = :old AND (attribute_not_exists(expires_at) OR expires_at > :now)")
                .expression_attribute_values(":old", s(old)),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(err("put_doc_if")(e)),
        }
    }

    async fn get_doc(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get_live(key, "get_doc").await?.and_then(|i| get_s(&i, "doc").map(str::to_owned)))
    }

    async fn delete_doc(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key, ONE)))
            .send()
            .await
            .map_err(err("delete"))?;
        Ok(())
    }

    async fn append_turn(&self, conv: &str, turn: &Turn, ttl_secs: u64) -> Result<(), StoreError> {
        let sk = format!("turn#{:013}#{:08x}", turn.at_ms, fastrand::u32(..));
        let role = match turn.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(super::turns_key(conv)))
            .item("sk", s(sk))
            .item("at_ms", n(turn.at_ms))
            .item("role", s(role))
            .item("text", s(stored_text(&turn.text)))
            .item("expires_at", n(now_secs() + ttl_secs));
        if let Some(sp) = &turn.speaker {
            req = req.item("speaker", s(sp));
        }
        req.send().await.map_err(err("append_turn"))?;
        Ok(())
    }

    async fn recent_turns(&self, conv: &str, since_ms: u64, limit: usize) -> Result<Vec<Turn>, StoreError> {
        let now = now_secs();
        let mut out = Vec::new();
        let mut start = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                .filter_expression("expires_at > :now")
                .expression_attribute_values(":pk", s(super::turns_key(conv)))
                .expression_attribute_values(":lo", s(format!("turn#{since_ms:013}")))
                .expression_attribute_values(":hi", s("turn#~"))
                .expression_attribute_values(":now", n(now))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX).max(1))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err("recent_turns"))?;
            for item in page.items() {
                let role = match get_s(item, "role") {
                    Some("assistant") => Role::Assistant,
                    _ => Role::User,
                };
                out.push(Turn {
                    at_ms: get_n(item, "at_ms").unwrap_or(0),
                    role,
                    speaker: get_s(item, "speaker").map(str::to_owned),
                    text: get_s(item, "text").unwrap_or_default().to_owned(),
                });
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        out.truncate(limit);
        out.reverse();
        Ok(out)
    }

    async fn clear_turns(&self, conv: &str) -> Result<usize, StoreError> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(super::turns_key(conv)))
                .projection_expression("pk, sk")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err("clear_turns"))?;
            keys.extend(page.items().iter().cloned());
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        let count = keys.len();
        for chunk in keys.chunks(25) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .filter_map(|k| DeleteRequest::builder().set_key(Some(k.clone())).build().ok())
                .map(|d| WriteRequest::builder().delete_request(d).build())
                .collect();
            // BatchWriteItem may leave some items unprocessed under load; resend those.
            for _ in 0..8 {
                if pending.is_empty() {
                    break;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(err("clear_turns"))?;
                pending = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
            }
            if !pending.is_empty() {
                return Err(StoreError { op: "clear_turns", reason: "items left unprocessed after retries".into() });
            }
        }
        Ok(count)
    }

    async fn incr(&self, key: &str, by: i64, ttl_secs: Option<u64>) -> Result<i64, StoreError> {
        let now = now_secs();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key, ONE)))
            .expression_attribute_values(":by", n(by))
            .return_values(ReturnValue::UpdatedNew);
        req = match ttl_secs {
            Some(t) => req
                .update_expression("ADD n :by SET expires_at = if_not_exists(expires_at, :exp)")
                .condition_expression("attribute_not_exists(expires_at) OR expires_at > :now")
                .expression_attribute_values(":exp", n(now + t))
                .expression_attribute_values(":now", n(now)),
            None => req.update_expression("ADD n :by"),
        };
        match req.send().await {
            Ok(out) => Ok(out.attributes.and_then(|a| a.get("n")?.as_n().ok()?.parse().ok()).unwrap_or(by)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                // The counter expired but was not yet removed: start it again.
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .item("pk", s(key))
                    .item("sk", s(ONE))
                    .item("n", n(by))
                    .item("expires_at", n(now + ttl_secs.unwrap_or(0)))
                    .send()
                    .await
                    .map_err(err("incr"))?;
                Ok(by)
            }
            Err(e) => Err(err("incr")(e)),
        }
    }

    async fn counter(&self, key: &str) -> Result<i64, StoreError> {
        let item = self.get_live(key, "counter").await?;
        Ok(item.and_then(|i| i.get("n")?.as_n().ok()?.parse().ok()).unwrap_or(0))
    }

    async fn count_once(&self, key: &str, member: &str, ttl_secs: Option<u64>) -> Result<i64, StoreError> {
        // One UpdateItem both counts and remembers the count the member got, under an attribute
        // of its own; the condition makes a second count of the same member a no-op. Every
        // operand of a SET reads the item as it was before the update, so both get old n + 1.
        let attr = super::member_attr(member);
        let mut set = "SET n = if_not_exists(n, :zero) + :one, #m = if_not_exists(n, :zero) + :one".to_owned();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key, ONE)))
            .condition_expression("attribute_not_exists(#m)")
            .expression_attribute_names("#m", &attr)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew);
        if let Some(t) = ttl_secs {
            set.push_str(", expires_at = if_not_exists(expires_at, :exp)");
            req = req.expression_attribute_values(":exp", n(now_secs() + t));
        }
        let counted = |item: &HashMap<String, AttributeValue>| -> Result<i64, StoreError> {
            item.get(&attr).and_then(|v| v.as_n().ok()?.parse().ok()).ok_or_else(|| StoreError {
                op: "count_once",
                reason: "the counter does not hold the member's count".into(),
            })
        };
        match req.update_expression(set).send().await {
            Ok(out) => counted(&out.attributes.unwrap_or_default()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {
                counted(&self.get_live(key, "count_once").await?.unwrap_or_default())
            }
            Err(e) => Err(err("count_once")(e)),
        }
    }
}

/// Creates the table (with TTL on `expires_at`) if it does not exist. For local runs and tests;
/// in AWS the template creates it.
pub async fn ensure_table(client: &Client, table: &str) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
    };
    let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError { op: "ensure_table", reason: e.to_string() };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(build)
    };
    let key = |name: &str, t| KeySchemaElement::builder().attribute_name(name).key_type(t).build().map_err(build);
    let res = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk")?)
        .attribute_definitions(attr("sk")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .send()
        .await;
    match res {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {
            return Ok(());
        }
        Err(e) => return Err(err("ensure_table")(e)),
    }
    let ttl = TimeToLiveSpecification::builder().attribute_name("expires_at").enabled(true).build().map_err(build)?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(err("ensure_table"))?;
    Ok(())
}
