//! The chatbot domain: what a robot does with a message addressed to it.
//!
//! `job` is the unit of work the router queues, `profile` a robot's settings, `texts` its fixed
//! replies and notices in its language, `window` the conversation memory sent to the LLM,
//! `sink` the outbound port through which an answer reaches a platform, `fallback` the
//! switch to the next stream mode when a platform refuses one, `moderated` the judging of an answer's text
//! before it reaches a sink, `pump` the loop that streams LLM tokens into a sink, `worker` the
//! SQS-triggered function body that ties them together for C2C and group messages alike, and
//! `dead_letter` the record a worker leaves in the dead-letter queue when it gives up.

/// Busy checks and burst inbox notes the routers make beside each queued message.
pub mod arrivals;
pub mod context;
pub mod dead_letter;
pub mod fallback;
pub mod job;
/// Markdown-aware cutting of long answers into chat messages (fences closed and reopened).
pub mod markdown;
pub mod moderated;
pub mod profile;
pub mod pump;
pub mod sink;
pub mod texts;
pub mod window;
pub mod worker;
