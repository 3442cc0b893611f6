//! Arbitrary query strings and bodies through the router: the input is `query \n body`.
//! Replayed as an ordinary test from `fuzz/corpus/router` (devtools/tests/it/fuzz_corpus.rs).
#![no_main]

use async_trait::async_trait;
use libfuzzer_sys::fuzz_target;
use shared::queue::{Queue, QueueError, QueueMessage};
use shared::router::{Router, Routes};
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
    static ROUTER: Router = Router {
        sdk_app_id: 1_400_000_000,
        // The corpus is signed with this token at RequestTime 1700000000; the fuzzer runs with
        // that as "now" so signed inputs reach the parser.
        token: Some(SecretString::new("local-dev-token")),
        sign_window_secs: 60,
        max_body_bytes: 65_536,
        store: Arc::new(MemoryStore::new()),
        queue: Arc::new(NullQueue),
        c2c_queue_url: "q".into(),
        group_queue_url: "g".into(),
        stop_ttl_secs: 60,
        routes: Routes::default(),
    };
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
