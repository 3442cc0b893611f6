//! Arbitrary query strings and bodies through the router: the input is `query \n body`.
//! Replayed as an ordinary test from `fuzz/corpus/router` (devtools/tests/it/fuzz_corpus.rs).
#![no_main]

use async_trait::async_trait;
use libfuzzer_sys::fuzz_target;
use shared::queue::{Queue, QueueError, QueueMessage};
use shared::router::Router;
use shared::secrets::SecretString;
use shared::store::MemoryStore;
use std::sync::Arc;

struct NullQueue;

#[async_trait]
impl Queue for NullQueue {
    async fn send(&self, _: &str, _: &QueueMessage) -> Result<(), QueueError> {
        Ok(())
    }
    async fn retry_after(&self, _: &str, _: &str, _: std::time::Duration) -> Result<(), QueueError> {
        Ok(())
    }
}

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    // The corpus is signed with this token at RequestTime 1700000000; the fuzzer runs with that
    // as "now" so signed inputs reach the parser.
    static ROUTER: Router = Router::new(
        1_400_000_000,
        Some(SecretString::new("local-dev-token")),
        Arc::new(MemoryStore::new()),
        Arc::new(NullQueue),
        "q".into(),
        "g".into(),
    );
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let query = String::from_utf8_lossy(&data[..split]).into_owned();
    let body = data.get(split + 1..).unwrap_or_default();
    ROUTER.with(|router| {
        RT.with(|rt| {
            let (ack, _) = rt.block_on(router.handle(&query, body, 1_700_000_000, "fuzz")).expect("in-memory adapters do not fail");
            assert!(ack.action_status == "OK" || ack.action_status == "FAIL");
        })
    });
});
