//! The chatbot domain: what a robot does with a message addressed to it.
//!
//! `job` is the unit of work the router queues, `profile` a robot's settings, `window` the
//! conversation memory sent to the LLM, `sink` the ways an answer reaches Tencent, `moderated`
//! the judging of an answer's text before it reaches a sink, `pump` the loop that streams LLM
//! tokens into a sink, `worker` the SQS-triggered function body that ties them together for
//! C2C and group messages alike, and `dead_letter` the record a worker leaves in the
//! dead-letter queue when it gives up.

pub mod dead_letter;
pub mod job;
pub mod moderated;
pub mod profile;
pub mod pump;
pub mod sink;
pub mod window;
pub mod worker;

/// Shown when an answer could not be produced or was cut. Fixed text: internal errors never
/// reach the user.
pub const APOLOGY: &str = "Sorry, something went wrong on my side. Please try again in a moment.";
/// Shown in place of an answer a moderation policy refuses. Fixed text: which rule matched is
/// not revealed.
pub const ANSWER_REFUSED: &str = "I can't answer that.";
/// Appended when an answer was cut at the message size limit.
pub const TRUNCATED_NOTICE: &str = "\n\n(The answer was too long and has been cut here.)";
/// The reply to `/help`.
pub const HELP: &str = "I'm an AI assistant. Write to me in plain text and I'll answer.\n\
/reset - forget our conversation so far\n/help - show this help";
/// The reply to a message without text.
pub const TEXT_ONLY: &str = "I can only read text messages for now. Please write your question in words.";
/// The reply to `/reset`.
pub const RESET_DONE: &str = "Done: I've forgotten our conversation. What shall we talk about?";
