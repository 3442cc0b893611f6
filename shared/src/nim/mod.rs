//! NetEase CommsEase / Yunxin IM (NIM), the second chat platform (nim-protocol.md): the
//! checksums, the inbound message copy (verify, parse, classify), and the REST client for
//! sending and streaming answers; and NIM's side of the platform seam: copies mapped to neutral
//! jobs (`jobs`), the message-copy router (`router`), and the sinks answers go out through
//! (`sinks`). `checksum`, `intake`, `api` and `client` do not depend on the bot core.

pub mod api;
pub mod checksum;
pub mod client;
pub mod intake;
pub mod jobs;
pub mod router;
pub mod sinks;

pub use api::{AskerMention, ConversationId, ConversationKind, OutgoingText, RagInfo, SentMessage, StreamChunk};
pub use client::{NimApi, NimClient, NimError, NimOptions, StreamWriter};
pub use intake::{Addressed, CopyEvent, CopyHeaders, Ignored, IntakeLimits, KnownRobot, Rejection, Verified};
pub use router::NimRouter;
pub use sinks::NimOutbound;
