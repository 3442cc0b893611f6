//! Interoperability with Tencent's own UserSig implementation (npm `tls-sig-api-v2`, clock
//! pinned): their sig verifies with our code, and ours decodes and verifies with theirs (Node's
//! zlib and crypto). Compressed bytes differ between zlib builds, so decoded documents are
//! compared, never the strings.

use shared::tencent::usersig;
use std::path::PathBuf;
use std::process::Command;

fn npm_module() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var("TLS_SIG_API_V2")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join(".local/npm/node_modules/tls-sig-api-v2"))
}

#[test]
fn our_usersig_and_tencents_verify_each_other() {
    let module = npm_module();
    assert!(
        module.exists(),
        "{} is missing: run scripts/test.sh (it runs `npm install --prefix .local/npm tls-sig-api-v2@1.0.2`)",
        module.display()
    );
    let (appid, key, id, expire, time) = (
        1_400_000_000u64,
        "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e",
        "administrator",
        86_400u64,
        1_700_000_000u64,
    );
    let ours = usersig::generate(appid, key.as_bytes(), id, expire, time);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/usersig.js");
    let out = Command::new("node")
        .arg(script)
        .arg(&module)
        .args([appid.to_string(), key.into(), id.into(), expire.to_string(), time.to_string(), ours.clone()])
        .output()
        .unwrap_or_else(|e| panic!("node: {e}"));
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    // Theirs verifies with our verifier and decodes to the same document as ours.
    let theirs = v["theirs"].as_str().unwrap_or_default();
    let their_doc = usersig::verify(appid, key.as_bytes(), id, theirs, time + 10).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Ok(their_doc), usersig::decode(&ours));
    // Ours inflates with Node's zlib and its HMAC matches one computed by Node's crypto.
    assert_eq!(v["hmacMatches"], true);
    assert_eq!(v["ours"]["TLS.identifier"], id);
    assert_eq!(v["ours"]["TLS.time"], time);
}

#[tokio::test]
async fn the_usersig_endpoint_signs_for_the_authorizer_s_caller_and_tencent_s_code_accepts_it() {
    let event =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/usersig.request.json"))
            .unwrap_or_else(|e| panic!("{e}"));
    let req = lambda_http::request::from_str(&event).unwrap_or_else(|e| panic!("{e}"));
    let key = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";
    let service = shared::usersigs::UserSigs {
        sdk_app_id: 1_400_000_000,
        key: shared::secrets::SecretString::new(key),
        admin: "administrator".into(),
        claim: "sub".into(),
        ttl: std::time::Duration::from_secs(86_400),
        import: None,
    };
    let resp = shared::usersigs::http_handler(&service, req).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or_default(),
        other => panic!("{other:?}"),
    };
    assert_eq!((body["SdkAppId"].as_u64(), body["UserID"].as_str()), (Some(1_400_000_000), Some("alice_01")));
    let sig = body["UserSig"].as_str().unwrap_or_default();
    let doc = usersig::decode(sig).unwrap_or_else(|e| panic!("{e}"));
    // Tencent's npm implementation inflates it and recomputes the same HMAC.
    let module = npm_module();
    assert!(module.exists(), "{} is missing: run scripts/test.sh", module.display());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/usersig.js");
    let out = Command::new("node")
        .arg(script)
        .arg(&module)
        .args(["1400000000", key, "alice_01", &doc.expire.to_string(), &doc.time.to_string(), sig])
        .output()
        .unwrap_or_else(|e| panic!("node: {e}"));
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["hmacMatches"], true);
    assert_eq!(v["ours"]["TLS.identifier"], "alice_01");
    // Without the claim: 401, and nothing signed.
    let no_claim = event.replace(r#""sub": "alice_01", "#, "");
    let req = lambda_http::request::from_str(&no_claim).unwrap_or_else(|e| panic!("{e}"));
    let resp = shared::usersigs::http_handler(&service, req).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 401);
}
