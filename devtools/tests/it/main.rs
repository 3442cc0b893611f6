//! Integration tests: the real handlers against moto server (DynamoDB, SQS, Secrets Manager
//! through the AWS SDK) and local HTTP servers playing Tencent and the LLM, all on loopback.

mod bus;
mod busy;
mod commands;
mod common;
mod context;
mod durability;
mod e2e;
mod events;
mod faults;
mod fuzz_corpus;
mod llm;
mod modes;
mod nim;
mod nim_e2e;
mod nim_events;
mod own_messages;
mod rest;
mod robustness;
mod router;
mod secrets;
mod soak;
mod store_contract;
mod teams;
mod template;
mod texts;
mod threads;
mod usersig_interop;
mod usersig_jwt;
