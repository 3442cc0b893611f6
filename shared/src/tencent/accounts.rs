//! `v4/im_open_login_svc/account_check`: whether accounts exist in the app (Tencent's REST API
//! page "Querying Accounts"): up to 100 `CheckItem`s, each answered with `AccountStatus`
//! `Imported` or `NotImported`. It changes nothing, so it is also a harmless
//! call to prove the credentials.

use super::client::{RestClient, RestError};
use crate::tencent::client::Repeat;
use serde::{Deserialize, Serialize};

/// The request body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountCheck {
    #[serde(rename = "CheckItem")]
    pub check_item: Vec<CheckItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckItem {
    #[serde(rename = "UserID")]
    pub user_id: String,
}

/// The reply: one item per account asked about.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct AccountCheckReply {
    #[serde(rename = "ResultItem", default)]
    pub result_item: Vec<AccountStatus>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AccountStatus {
    #[serde(rename = "UserID")]
    pub user_id: String,
    #[serde(rename = "ResultCode", default)]
    pub result_code: i64,
    /// `Imported` when the account exists, `NotImported` when it does not.
    #[serde(rename = "AccountStatus", default)]
    pub account_status: String,
}

impl AccountStatus {
    pub fn exists(&self) -> bool {
        self.result_code == 0 && self.account_status == "Imported"
    }
}

impl RestClient {
    /// `im_open_login_svc/account_check` for `ids` (at most 100, Tencent's limit per call).
    pub async fn account_check(&self, ids: &[&str]) -> Result<AccountCheckReply, RestError> {
        let req = AccountCheck { check_item: ids.iter().map(|id| CheckItem { user_id: (*id).to_owned() }).collect() };
        self.call("im_open_login_svc/account_check", &req, Repeat::Safe).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_reply_reads_as_imported_or_not() {
        let reply = r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ResultItem":[
            {"UserID":"administrator","ResultCode":0,"ResultInfo":"","AccountStatus":"Imported"},
            {"UserID":"ghost","ResultCode":0,"ResultInfo":"","AccountStatus":"NotImported"}]}"#;
        let r: AccountCheckReply = serde_json::from_str(reply).unwrap_or_default();
        let exists: Vec<(&str, bool)> = r.result_item.iter().map(|a| (a.user_id.as_str(), a.exists())).collect();
        assert_eq!(exists, [("administrator", true), ("ghost", false)]);
        let body = serde_json::to_string(&AccountCheck { check_item: vec![CheckItem { user_id: "a".into() }] });
        assert_eq!(body.ok().as_deref(), Some(r#"{"CheckItem":[{"UserID":"a"}]}"#));
    }
}
