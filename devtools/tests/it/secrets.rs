//! Secrets through the AWS SDK from moto's Secrets Manager.

use crate::common::{aws, unique};
use shared::secrets::{AppSecrets, SecretsError};

#[tokio::test]
async fn secret_is_read_from_secrets_manager_and_never_printed() {
    let cfg = aws().await;
    let sm = aws_sdk_secretsmanager::Client::new(&cfg);
    let id = unique("sec");
    let json = r#"{"SdkAppId":1400000009,"SecretKey":"sk-abc-123","WebhookToken":"wt-xyz"}"#;
    sm.create_secret().name(&id).secret_string(json).send().await.unwrap_or_else(|e| panic!("{e}"));
    let s = AppSecrets::fetch(&sm, &id).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.sdk_app_id, 1_400_000_009);
    assert_eq!(s.secret_key.expose(), "sk-abc-123");
    assert_eq!(s.admin_identifier, "administrator");
    let printed = format!("{s:?}");
    assert!(!printed.contains("sk-abc-123") && !printed.contains("wt-xyz"), "{printed}");
}

#[tokio::test]
async fn missing_secret_is_a_clear_error() {
    let cfg = aws().await;
    let sm = aws_sdk_secretsmanager::Client::new(&cfg);
    let err = AppSecrets::fetch(&sm, "no-such-secret").await.err();
    assert!(matches!(err, Some(SecretsError::Fetch { ref id, .. }) if id == "no-such-secret"), "{err:?}");
}
