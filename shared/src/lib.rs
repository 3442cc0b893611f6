//! The shared crate of the Tencent Cloud Chat chatbot backend.
//!
//! Every webhook function is a thin `main` over this crate: the inbound protocol
//! ([`webhook`]), the outbound protocol ([`tencent`]), storage ([`store`]), the queue
//! ([`queue`]), the LLM client ([`llm`]), secrets and settings, and the domain logic of each
//! command ([`router`], [`bot`]).

pub mod boot;
pub mod bot;
pub mod bounded;
pub mod bus;
pub mod community;
pub mod config;
pub mod event_worker;
pub mod invoke;
pub mod keys;
/// The Lambda adapters: HTTP, SQS batches, synchronous invocations.
pub mod lambda;
pub mod lenient;
pub mod llm;
pub mod moderation;
pub mod msg;
pub mod nim;
pub mod observe;
pub mod platforms;
pub mod presence;
pub mod queue;
pub mod redact;
pub mod router;
pub mod secrets;
pub mod selector;
pub mod stats;
pub mod store;
pub mod teams;
pub mod tencent;
pub mod threads;
pub mod usersigs;
pub mod webhook;
