//! The fuzz corpora (`fuzz/corpus/{router,sse}`, grown by `cargo fuzz run router|sse`) replayed
//! as ordinary tests, the same way the fuzz targets run them: no input may panic, and every
//! router input gets an ack.

use std::path::PathBuf;

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(name);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap_or_default()))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

#[tokio::test]
async fn router_corpus_replays_without_panic() {
    let router = devtools::memory_router();
    let mut queued = 0;
    for (name, data) in corpus("router") {
        let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
        let query = String::from_utf8_lossy(&data[..split]).into_owned();
        let body = data.get(split + 1..).unwrap_or_default();
        let (ack, outcome) =
            router.handle(&query, body, 1_700_000_000, "replay").await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(ack.action_status == "OK" || ack.action_status == "FAIL", "{name}");
        queued += usize::from(outcome.kind() == "queued");
    }
    assert!(queued > 0, "the seeds, signed for that time, reach the queue");
}

#[test]
fn sse_corpus_replays_without_panic() {
    for (_, data) in corpus("sse") {
        let _ = shared::llm::openai::parse_event(&String::from_utf8_lossy(&data));
    }
}
