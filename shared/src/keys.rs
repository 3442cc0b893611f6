//! Every store key and queue id of the chatbot, built in one place from neutral ids.
//!
//! Tencent's keys are byte-for-byte the strings deployed tables already hold (no migration);
//! another platform's keys are the same shapes with the platform's name (`nim#`) after the
//! key's kind, so every key keeps the leading prefix (`reply#`, `conv#`, `quota#`, …) that the
//! functions' IAM policies grant (`dynamodb:LeadingKeys` in `template.yaml`).

use crate::bot::job::{Job, Place, Platform};

/// The platform's mark inside a key: nothing for Tencent, `nim#` for NetEase.
fn mark(platform: Platform) -> &'static str {
    match platform {
        Platform::Tencent => "",
        Platform::Nim => "nim#",
    }
}

/// Identifies a message for a robot: its FIFO deduplication id, its answer's reply record, its
/// quota count. In a topic-enabled Community `MsgSeq` is numbered per topic, so a topic
/// message's key names its topic; a message outside topics keeps the key it always had.
pub fn job(j: &Job) -> String {
    let m = mark(j.platform);
    match (&j.place, j.place.topic()) {
        (Place::Direct, _) => format!("{m}c2c#{}#{}#{}", j.bot, j.sender, j.msg_id),
        (Place::Group { id, .. }, None) => format!("{m}grp#{id}#{}#{}", j.msg_id, j.bot),
        (Place::Group { id, .. }, Some(topic)) => format!("{m}grp#{id}#{topic}#{}#{}", j.msg_id, j.bot),
    }
}

/// Messages with the same ordering key are answered one at a time, in order: one conversation
/// of a robot with a user, one robot in a group (topic), or, for a robot with a conversation per
/// member, one member's mentions of it there. Robots mentioned in one group do not wait for each
/// other's answers.
pub fn ordering(j: &Job) -> String {
    match &j.place {
        Place::Direct => direct_scope(j.platform, &j.bot, &j.sender),
        Place::Group { id, .. } => {
            group_conversation(j.platform, id, j.place.topic(), &j.bot, j.per_member.then_some(j.sender.as_str()))
        }
    }
}

/// The one-to-one conversation of `bot` with `user`: its turns, its stop requests.
pub fn direct_scope(platform: Platform, bot: &str, user: &str) -> String {
    format!("{}c2c#{bot}#{user}", mark(platform))
}

/// The conversation a group message continues: the group's (topic's) with the robot, or, with
/// `per_member`, the sender's own within it.
pub fn group_conversation(
    platform: Platform,
    group: &str,
    topic: Option<&str>,
    bot: &str,
    member: Option<&str>,
) -> String {
    let m = mark(platform);
    let topic = topic.unwrap_or("");
    match member {
        None => format!("{m}grp#{group}#{topic}#{bot}"),
        Some(member) => format!("{m}grp#{group}#{topic}#{bot}#{member}"),
    }
}

/// The conversation a job continues.
pub fn conversation(j: &Job, per_member: bool) -> String {
    match &j.place {
        Place::Direct => direct_scope(j.platform, &j.bot, &j.sender),
        Place::Group { id, .. } => {
            group_conversation(j.platform, id, j.place.topic(), &j.bot, per_member.then_some(j.sender.as_str()))
        }
    }
}

/// The answer's reply record (`sending`, `open`, `done`).
pub fn reply(j: &Job) -> String {
    reply_of_key(&job(j))
}

/// A reply record by job key (the dead-letter redrive has the key, not the job).
pub fn reply_of_key(job_key: &str) -> String {
    format!("reply#{job_key}")
}

/// The counter of the messages a job's sender sent its robot on the (UTC) day the job was
/// received, against the daily quota.
pub fn quota(j: &Job) -> String {
    let day = j.received_ms / 86_400_000;
    format!("quota#{}{}#{}#{day}", mark(j.platform), j.bot, j.sender)
}

/// A robot's profile.
pub fn profile(platform: Platform, bot: &str) -> String {
    format!("profile#{}{bot}", mark(platform))
}

/// The robot whose profile `key` holds, and its platform; `None` for any other key. The inverse
/// of [`profile`], for tools that list the profiles of a table.
pub fn profile_owner(key: &str) -> Option<(Platform, &str)> {
    let rest = key.strip_prefix("profile#")?;
    let (platform, bot) = match rest.strip_prefix(mark(Platform::Nim)) {
        Some(bot) => (Platform::Nim, bot),
        None => (Platform::Tencent, rest),
    };
    (!bot.is_empty()).then_some((platform, bot))
}

/// A stop flag: for one streamed reply (`msg_key`), or for whatever the robot is streaming in
/// that scope when the client did not say which (`*`).
pub fn stop(scope: &str, msg_key: Option<&str>) -> String {
    format!("stop#{scope}#{}", msg_key.unwrap_or("*"))
}

/// The partition key under which a conversation's turns are stored.
pub fn turns(conv: &str) -> String {
    format!("conv#{conv}")
}

/// The mark of a group (topic) whose messages are logged for group context.
pub fn context_mark(group: &str, topic: Option<&str>) -> String {
    format!("gctx#{group}#{}", topic.unwrap_or(""))
}

/// The conversation in which a group's (topic's) messages are logged for group context (its
/// turns are stored under `conv#ctx#…`).
pub fn context_log(group: &str, topic: Option<&str>) -> String {
    format!("ctx#{group}#{}", topic.unwrap_or(""))
}

/// The mark of a conversation whose answer is in progress (the message being answered): a
/// message that arrives meanwhile may be told it will be answered next. `ordering` is
/// [`ordering`]'s key.
pub fn busy(ordering: &str) -> String {
    format!("busy#{ordering}")
}

/// The conversation (its turns stored under `conv#inbox#…`) in which the router notes every
/// message of an ordering key as it arrives, so that the worker answering one can see the
/// messages sent right after it (a burst) and answer them as one turn.
pub fn inbox(ordering: &str) -> String {
    format!("inbox#{ordering}")
}

/// The mark that a waiting message was told it will be answered next (told once).
pub fn busy_note(j: &Job) -> String {
    format!("reply#note#{}", job(j))
}

/// The remembered start of a conversation's window.
pub fn window_start(conv: &str) -> String {
    format!("winstart#{conv}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::job::testing::job;

    /// Deployed tables hold these strings: they must never change.
    #[test]
    fn tencent_keys_are_the_deployed_strings() {
        let c2c = job("@RBT#a", "ann", None, "1_2_3", "hi");
        assert_eq!(super::job(&c2c), "c2c#@RBT#a#ann#1_2_3");
        assert_eq!(ordering(&c2c), "c2c#@RBT#a#ann");
        assert_eq!(reply(&c2c), "reply#c2c#@RBT#a#ann#1_2_3");
        assert_eq!(conversation(&c2c, false), "c2c#@RBT#a#ann");
        assert_eq!(quota(&c2c), "quota#@RBT#a#ann#0");
        assert_eq!(stop(&direct_scope(Platform::Tencent, "@RBT#a", "ann"), None), "stop#c2c#@RBT#a#ann#*");
        assert_eq!(profile(Platform::Tencent, "@RBT#a"), "profile#@RBT#a");
        let grp = job("@RBT#a", "ann", Some(("@TGS#g", None)), "7", "hi");
        assert_eq!(super::job(&grp), "grp#@TGS#g#7#@RBT#a");
        assert_eq!(ordering(&grp), "grp#@TGS#g##@RBT#a");
        assert_eq!(conversation(&grp, false), "grp#@TGS#g##@RBT#a");
        assert_eq!(conversation(&grp, true), "grp#@TGS#g##@RBT#a#ann");
        let member = Job { per_member: true, ..grp.clone() };
        assert_eq!(ordering(&member), "grp#@TGS#g##@RBT#a#ann", "a member's conversation is its own FIFO group");
        assert_eq!(super::job(&member), super::job(&grp), "the message's key does not change");
        let topic = job("@RBT#a", "ann", Some(("@TGS#_g", Some("t1"))), "7", "hi");
        assert_eq!(super::job(&topic), "grp#@TGS#_g#t1#7#@RBT#a");
        assert_eq!(ordering(&topic), "grp#@TGS#_g#t1#@RBT#a");
        assert_eq!(conversation(&topic, false), "grp#@TGS#_g#t1#@RBT#a");
        // An empty topic is no topic.
        let empty = job("@RBT#a", "ann", Some(("@TGS#g", Some(""))), "7", "hi");
        assert_eq!(super::job(&empty), super::job(&grp));
    }

    #[test]
    fn other_platforms_keep_the_granted_prefixes_and_never_meet_tencent_s_keys() {
        let mut c2c = job("bot1", "ann", None, "9", "hi");
        let tencent = [super::job(&c2c), reply(&c2c), quota(&c2c), conversation(&c2c, false)];
        c2c.platform = Platform::Nim;
        let nim = [super::job(&c2c), reply(&c2c), quota(&c2c), conversation(&c2c, false)];
        for (t, n) in tencent.iter().zip(&nim) {
            assert_ne!(t, n);
        }
        assert!(reply(&c2c).starts_with("reply#nim#") && quota(&c2c).starts_with("quota#nim#"));
        assert!(profile(Platform::Nim, "bot1").starts_with("profile#nim#"));
    }

    #[test]
    fn a_profile_key_names_its_robot_and_platform() {
        for (platform, bot) in [(Platform::Tencent, "@RBT#001"), (Platform::Nim, "mybot")] {
            assert_eq!(profile_owner(&profile(platform, bot)), Some((platform, bot)));
        }
        assert_eq!(profile_owner("profile#"), None);
        assert_eq!(profile_owner("reply#c2c#@RBT#001#u#1"), None);
    }
}
