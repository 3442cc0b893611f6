//! NetEase CommsEase / Yunxin IM (NIM), the second chat platform (nim-protocol.md): the
//! checksums, the inbound message copy (verify, parse, classify), and the REST client for
//! sending and streaming answers. Independent of the bot core: the platform seam maps these
//! types to the neutral ones.

pub mod api;
pub mod checksum;
pub mod client;
pub mod intake;

pub use api::{AskerMention, ConversationId, ConversationKind, OutgoingText, RagInfo, SentMessage, StreamChunk};
pub use client::{NimApi, NimClient, NimError, NimOptions, StreamWriter};
pub use intake::{Addressed, CopyEvent, CopyHeaders, Ignored, IntakeLimits, KnownRobot, Rejection, Verified};
