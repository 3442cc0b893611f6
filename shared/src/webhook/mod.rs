//! The inbound protocol: what Tencent sends to the webhook URL and what it expects back.
//!
//! `query` reads the query string, `sign` checks the signature, `events` types the bodies of
//! every command this product serves, and `ack` types the replies.

pub mod ack;
pub mod events;
pub mod query;
pub mod sign;

pub use ack::Ack;
pub use events::{Command, WebhookEvent};
pub use query::CallbackQuery;
