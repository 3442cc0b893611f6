//! Hostile input, generated: thousands of mutated webhook bodies and query strings through the
//! router, and random SSE payloads through the LLM event parser. Nothing may panic; every
//! webhook gets an ack. (Deterministic: a fixed xorshift seed, so a failure reproduces.)

use shared::webhook::CallbackQuery;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEEDS: [&str; 6] = [
    "callback-router.bot-c2c-message.json",
    "callback-router.bot-group-message.json",
    "callback-router.stop-generating.json",
    "callback-router.unknown-command.json",
    "callback-router.group-before-send-msg.json",
    "callback-router.group-after-send-msg.json",
];

const SPLICE: [&str; 12] = ["\"", "{", "}", "[", "]", ",", ":", "null", "-1", "1e999", "\"\\u0000\"", "\u{FF21}"];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            1 => {
                let s = SPLICE[rng.below(SPLICE.len())].as_bytes();
                v.splice(at..at, s.iter().copied());
            }
            2 if at < v.len() => v[at] = rng.next() as u8,
            _ => v.truncate(at),
        }
    }
    v
}

#[tokio::test]
async fn the_router_acks_every_mutated_webhook_without_panicking() {
    let router = devtools::memory_router();
    let now = shared::store::now_secs() as i64;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut accepted = 0;
    for name in SEEDS {
        let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
        let ev: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default()).unwrap_or_default();
        let body = ev["body"].as_str().unwrap_or_default().as_bytes().to_vec();
        let command =
            CallbackQuery::parse(ev["rawQueryString"].as_str().unwrap_or_default()).command.unwrap_or_default();
        let good_query = CallbackQuery::encode(1_400_000_000, &command, Some(("local-dev-token", now)));
        for _ in 0..800 {
            let b = mutate(&mut rng, &body);
            let q = if rng.below(4) == 0 {
                String::from_utf8_lossy(&mutate(&mut rng, good_query.as_bytes())).into_owned()
            } else {
                good_query.clone()
            };
            let (ack, outcome) = router.handle(&q, &b, now, "fuzz").await.unwrap_or_else(|e| panic!("{e}"));
            assert!(ack.action_status == "OK" || ack.action_status == "FAIL");
            if outcome.kind() == "queued" {
                accepted += 1;
            }
        }
    }
    assert!(accepted > 0, "some mutations stay valid and are queued");
}

#[test]
fn the_sse_parser_survives_random_payloads() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seeds = [
        r#"{"choices":[{"delta":{"content":"Hel"}}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}"#,
        r#"{"error":{"message":"overloaded"}}"#,
        "[DONE]",
    ];
    for _ in 0..5_000 {
        let seed = seeds[rng.below(seeds.len())];
        let data = String::from_utf8_lossy(&mutate(&mut rng, seed.as_bytes())).into_owned();
        let _ = shared::llm::openai::parse_event(&data);
    }
}
