//! The outbound protocol: UserSig, and the REST client that speaks as the app admin.

pub mod accounts;
pub mod api;
pub mod client;
pub mod groups;
pub mod intake;
pub mod sinks;
pub mod usersig;

pub use api::*;
pub use client::{ChatApi, RestClient, RestError};
