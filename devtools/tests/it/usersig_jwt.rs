//! `POST /usersig` behind the JWT authorizer `template.yaml` sets, played locally: the
//! authorizer's rules (issuer, audience, expiry, not-before, signature) are read from the
//! template's `UserSigApi` and applied by a small validator on a `jsonwebtoken` RS256 check with
//! a key generated here. A good token reaches the handler, which returns the caller's UserSig
//! (importing the account once when the deployment imports accounts); a token from another
//! issuer or for another audience, an expired, not yet valid or forged one never does.

use crate::common::{Env, guarded, unique};
use crate::template::template;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;

/// The authorizer's rules, as the template wires them, with the stack's parameter values.
#[derive(Debug)]
struct Rules {
    identity_header: String,
    issuer: String,
    audiences: Vec<String>,
}

/// Resolves a template value: a literal, or `!Ref` of a parameter given in `params`.
fn resolve(v: &serde_norway::Value, params: &HashMap<&str, &str>) -> String {
    match v {
        serde_norway::Value::Tagged(t) if t.tag == "Ref" => {
            let name = t.value.as_str().unwrap_or_default();
            params.get(name).map(|s| s.to_string()).unwrap_or_else(|| panic!("no value for parameter {name}"))
        }
        other => other.as_str().map(str::to_owned).unwrap_or_else(|| panic!("not a string: {other:?}")),
    }
}

/// The rules of the one authorizer guarding `POST /usersig`.
fn rules(params: &HashMap<&str, &str>) -> Rules {
    let t = template();
    let function = &t["Resources"]["UsersigFunction"];
    let api = function["Properties"]["Events"]["UserSig"]["Properties"]["ApiId"].clone();
    let api = match api {
        serde_norway::Value::Tagged(tv) => tv.value.as_str().unwrap_or_default().to_owned(),
        other => panic!("the UserSig route names no API: {other:?}"),
    };
    let auth = &t["Resources"][api.as_str()]["Properties"]["Auth"];
    let name = auth["DefaultAuthorizer"].as_str().unwrap_or_else(|| panic!("{api} has no default authorizer"));
    let a = &auth["Authorizers"][name];
    let jwt = &a["JwtConfiguration"];
    let audiences = jwt["audience"].as_sequence().unwrap_or_else(|| panic!("no audience list")).iter();
    let header = a["IdentitySource"].as_str().unwrap_or_default();
    Rules {
        identity_header: header.strip_prefix("$request.header.").unwrap_or_else(|| panic!("{header}")).to_lowercase(),
        issuer: resolve(&jwt["issuer"], params),
        audiences: audiences.map(|v| resolve(v, params)).collect(),
    }
}

/// What API Gateway's JWT authorizer does with a request's headers: the token (with or without
/// `Bearer `), an RS256 signature by the issuer's key, `iss` equal to the issuer, `aud` (or
/// Cognito's `client_id`) one of the audiences, `exp` in the future, `nbf` (when present) in the
/// past. It returns the claims as the function sees them (every value a string).
fn authorize(
    rules: &Rules,
    headers: &HashMap<String, String>,
    key: &DecodingKey,
) -> Result<HashMap<String, String>, String> {
    let raw = headers.get(&rules.identity_header).ok_or("no identity source")?;
    let token = raw.strip_prefix("Bearer ").unwrap_or(raw);
    let mut v = Validation::new(Algorithm::RS256);
    v.leeway = 0;
    v.validate_nbf = true;
    v.validate_aud = false; // `aud` or `client_id`, checked below
    v.set_issuer(&[&rules.issuer]);
    v.set_required_spec_claims(&["exp", "iss"]);
    let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &v).map_err(|e| e.to_string())?;
    let claims = data.claims;
    let aud: Vec<String> = match claims.get("aud").or_else(|| claims.get("client_id")) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => vec![],
    };
    if !aud.iter().any(|a| rules.audiences.contains(a)) {
        return Err("audience not allowed".into());
    }
    Ok(claims.into_iter().map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))).collect())
}

/// The private key inside a PKCS#8 document (PKCS#1 `RSAPrivateKey`), as `jsonwebtoken` takes it.
fn pkcs1_of_pkcs8(der: &[u8]) -> Vec<u8> {
    fn tlv(b: &[u8]) -> (&[u8], &[u8]) {
        let (len, head) = match b[1] {
            l if l < 0x80 => (l as usize, 2),
            l => {
                let n = (l & 0x7f) as usize;
                (b[2..2 + n].iter().fold(0usize, |acc, x| acc << 8 | *x as usize), 2 + n)
            }
        };
        (&b[head..head + len], &b[head + len..])
    }
    let (info, _) = tlv(der);
    let (_version, rest) = tlv(info);
    let (_algorithm, rest) = tlv(rest);
    tlv(rest).0.to_vec()
}

struct Issuer {
    signing: EncodingKey,
    verifying: DecodingKey,
}

impl Issuer {
    fn generate() -> Issuer {
        let pair = KeyPair::generate(KeySize::Rsa2048).unwrap_or_else(|e| panic!("{e}"));
        let pkcs8 = pair.as_der().unwrap_or_else(|e| panic!("{e}"));
        let public = PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        Issuer {
            signing: EncodingKey::from_rsa_der(&pkcs1_of_pkcs8(pkcs8.as_ref())),
            verifying: DecodingKey::from_rsa_raw_components(&public.n, &public.e),
        }
    }

    fn token(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &self.signing).unwrap_or_else(|e| panic!("{e}"))
    }
}

const ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TEST";
const AUDIENCE: &str = "app-client-1";

fn now() -> i64 {
    crate::common::now()
}

fn good_claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now() - 5, "exp": now() + 600})
}

fn bearer(token: &str) -> HashMap<String, String> {
    HashMap::from([("authorization".to_owned(), format!("Bearer {token}"))])
}

/// The sample API Gateway event with the claims the authorizer passed on.
fn request(claims: &HashMap<String, String>) -> lambda_http::Request {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/usersig.request.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let mut event: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    event["requestContext"]["authorizer"]["jwt"]["claims"] = json!(claims);
    lambda_http::request::from_str(&event.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

async fn call(service: &shared::usersigs::UserSigs, claims: &HashMap<String, String>) -> (u16, Value) {
    let resp = shared::usersigs::http_handler(service, request(claims)).await.unwrap_or_else(|e| panic!("{e}"));
    let body = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or_default(),
        other => panic!("{other:?}"),
    };
    (resp.status().as_u16(), body)
}

fn params() -> HashMap<&'static str, &'static str> {
    HashMap::from([("UserSigIssuer", ISSUER), ("UserSigAudience", AUDIENCE)])
}

#[test]
fn the_template_guards_usersig_with_the_issuer_and_audience_parameters_on_the_authorization_header() {
    let r = rules(&params());
    assert_eq!(r.identity_header, "authorization");
    assert_eq!(r.issuer, ISSUER);
    assert_eq!(r.audiences, [AUDIENCE]);
}

#[tokio::test]
async fn a_good_token_reaches_the_handler_and_the_account_is_imported_once() {
    let env = Env::new().await;
    let rules = rules(&params());
    let issuer = Issuer::generate();
    let service = shared::usersigs::UserSigs {
        sdk_app_id: crate::common::APP_ID,
        key: shared::secrets::SecretString::new(crate::common::KEY),
        admin: "administrator".into(),
        claim: "sub".into(),
        ttl: std::time::Duration::from_secs(3600),
        import: Some(shared::usersigs::AccountImport {
            chat: env.chat.clone(),
            store: guarded("UsersigFunction", &env.store),
        }),
    };
    let sub = unique("alice");
    let claims = authorize(&rules, &bearer(&issuer.token(&good_claims(&sub))), &issuer.verifying)
        .unwrap_or_else(|e| panic!("a good token was refused: {e}"));
    let (status, body) = call(&service, &claims).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["UserID"], sub.as_str());
    let sig = body["UserSig"].as_str().unwrap_or_default();
    let v =
        shared::tencent::usersig::verify(crate::common::APP_ID, crate::common::KEY.as_bytes(), &sub, sig, now() as u64);
    assert!(v.is_ok(), "{v:?}");
    assert!(env.tencent.state.accounts().contains(&sub), "the account was not imported");

    // A second UserSig for the same user: no second import.
    let (status, _) = call(&service, &claims).await;
    assert_eq!(status, 200);
    let imports = env.tencent.state.calls_to("im_open_login_svc/account_import");
    assert_eq!(imports.len(), 1, "{imports:?}");

    // Cognito access tokens carry client_id instead of aud; the authorizer takes either.
    let access = json!({"sub": sub, "iss": ISSUER, "client_id": AUDIENCE, "exp": now() + 600});
    assert!(authorize(&rules, &bearer(&issuer.token(&access)), &issuer.verifying).is_ok());
    // The token without `Bearer ` is accepted too.
    let raw = HashMap::from([("authorization".to_owned(), issuer.token(&good_claims(&sub)))]);
    assert!(authorize(&rules, &raw, &issuer.verifying).is_ok());
}

#[tokio::test]
async fn when_tencent_refuses_the_import_no_usersig_is_returned_and_the_next_call_imports() {
    let env = Env::new().await;
    let service = shared::usersigs::UserSigs {
        sdk_app_id: crate::common::APP_ID,
        key: shared::secrets::SecretString::new(crate::common::KEY),
        admin: "administrator".into(),
        claim: "sub".into(),
        ttl: std::time::Duration::from_secs(3600),
        import: Some(shared::usersigs::AccountImport {
            chat: env.chat.clone(),
            store: guarded("UsersigFunction", &env.store),
        }),
    };
    let sub = unique("bob");
    let claims = HashMap::from([("sub".to_owned(), sub.clone())]);
    env.tencent.state.refuse("im_open_login_svc/account_import", 70_398);
    let (status, body) = call(&service, &claims).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.get("UserSig").is_none());
    env.tencent.state.stop_refusing("im_open_login_svc/account_import");
    let (status, _) = call(&service, &claims).await;
    assert_eq!(status, 200);
    assert!(env.tencent.state.accounts().contains(&sub));
}

#[test]
fn tokens_from_another_issuer_for_another_audience_expired_early_or_forged_are_refused() {
    let rules = rules(&params());
    let issuer = Issuer::generate();
    let forger = Issuer::generate();
    let with = |patch: Value| {
        let mut c = good_claims("alice");
        if let (Some(c), Value::Object(p)) = (c.as_object_mut(), patch) {
            c.extend(p);
        }
        c
    };
    let cases = [
        ("another issuer", issuer.token(&with(json!({"iss": "https://evil.example.com"})))),
        ("another audience", issuer.token(&with(json!({"aud": "other-client"})))),
        ("expired", issuer.token(&with(json!({"exp": now() - 1})))),
        ("not yet valid", issuer.token(&with(json!({"nbf": now() + 300})))),
        ("no expiry", issuer.token(&json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE}))),
        ("forged", forger.token(&good_claims("alice"))),
    ];
    for (case, token) in cases {
        assert!(authorize(&rules, &bearer(&token), &issuer.verifying).is_err(), "{case} was accepted");
    }
    // A tampered payload with the original signature.
    let good = issuer.token(&good_claims("alice"));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    parts[1] = b64.encode(good_claims("administrator").to_string());
    assert!(authorize(&rules, &bearer(&parts.join(".")), &issuer.verifying).is_err(), "tampered accepted");
    assert!(authorize(&rules, &HashMap::new(), &issuer.verifying).is_err(), "no token accepted");
    // And the good one passes, so the refusals above are the rules', not a broken key.
    assert!(authorize(&rules, &bearer(&good), &issuer.verifying).is_ok());
}
