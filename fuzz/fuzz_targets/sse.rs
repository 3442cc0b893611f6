//! Arbitrary SSE `data` payloads through the LLM event parser. Replayed as an ordinary test from
//! `fuzz/corpus/sse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shared::llm::openai::parse_event(&String::from_utf8_lossy(data));
});
