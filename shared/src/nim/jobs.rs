//! NIM's intake side of the platform seam: a message copy addressed to a robot
//! ([`Addressed`]) mapped to a neutral [`Job`], and a job's place mapped back to the NIM
//! conversation its answer goes to.
//!
//! Everything NIM-specific about an inbound message ends here: `msgidServer` names the message,
//! a team is a group, and a super team is a group whose id carries [`SUPER_TEAM_PREFIX`] (the
//! neutral job has no field for the kind of team, and the two kinds number their ids
//! independently, so the prefix also keeps their conversations apart).

use super::api::ConversationId;
use super::intake::{Addressed, Content, MsgType, Place as NimPlace, TeamKind};
use crate::bot::job::{JOB_VERSION, Job, Part, Place, Platform};

/// Marks a super team's id in a job's group id: `super:<tid>`. Advanced teams keep their id.
/// (A NIM team id is a number, so no advanced team's id starts with it.)
pub const SUPER_TEAM_PREFIX: &str = "super:";

/// The job of a message addressed to one of our robots, received at `received_ms`.
pub fn job(request_id: &str, received_ms: u64, a: &Addressed) -> Job {
    let place = match &a.place {
        NimPlace::OneToOne => Place::Direct,
        NimPlace::Team { team_id, kind: TeamKind::Advanced } => Place::Group { id: team_id.clone(), topic: None },
        NimPlace::Team { team_id, kind: TeamKind::Super } => {
            Place::Group { id: format!("{SUPER_TEAM_PREFIX}{team_id}"), topic: None }
        }
    };
    let parts = match &a.content {
        Content::Text => Vec::new(),
        Content::NonText(t) => vec![Part::Other { what: part_name(t).to_owned() }],
    };
    Job {
        v: JOB_VERSION,
        platform: Platform::Nim,
        request_id: request_id.to_owned(),
        received_ms,
        bot: a.robot.clone(),
        sender: a.sender.clone(),
        place,
        msg_id: a.msg_id_server.clone(),
        text: a.text.clone(),
        parts,
        per_member: false,
    }
}

/// The neutral name of a NIM message type that is not text.
fn part_name(t: &MsgType) -> &'static str {
    match t {
        MsgType::Picture => "image",
        MsgType::Audio => "voice",
        MsgType::Video => "video",
        MsgType::Location => "location",
        MsgType::File => "file",
        MsgType::Custom => "custom",
        MsgType::Text | MsgType::Notification | MsgType::Tips | MsgType::Other(_) => "message",
    }
}

/// The NIM place of a job: one-to-one, or the (super) team its group id names.
pub fn nim_place(job: &Job) -> NimPlace {
    match &job.place {
        Place::Direct => NimPlace::OneToOne,
        Place::Group { id, .. } => match id.strip_prefix(SUPER_TEAM_PREFIX) {
            Some(tid) => NimPlace::Team { team_id: tid.to_owned(), kind: TeamKind::Super },
            None => NimPlace::Team { team_id: id.clone(), kind: TeamKind::Advanced },
        },
    }
}

/// The conversation the robot answers a job in, as the robot: with the asker, or in the team.
pub fn reply_conversation(job: &Job) -> ConversationId {
    ConversationId::reply_to(&job.bot, &job.sender, &nim_place(job))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nim::intake::AddressedBy;

    fn addressed(place: NimPlace, content: Content, text: &str) -> Addressed {
        Addressed {
            robot: "mybot".into(),
            sender: "alice".into(),
            sender_nick: Some("Alice".into()),
            place,
            msg_id_server: "1234567890123".into(),
            msg_id_client: Some("c1".into()),
            text: text.into(),
            content,
            by: AddressedBy::Direct,
            sent_ms: Some(1),
            resent: false,
        }
    }

    #[test]
    fn a_one_to_one_message_becomes_a_direct_nim_job_keyed_by_msgid_server() {
        let j = job("req", 5, &addressed(NimPlace::OneToOne, Content::Text, "hello"));
        assert_eq!(
            (j.platform, &j.place, j.bot.as_str(), j.sender.as_str(), j.msg_id.as_str(), j.text.as_str()),
            (Platform::Nim, &Place::Direct, "mybot", "alice", "1234567890123", "hello")
        );
        assert_eq!((j.v, j.request_id.as_str(), j.received_ms, j.parts.len()), (JOB_VERSION, "req", 5, 0));
        assert_eq!(j.key(), "nim#c2c#mybot#alice#1234567890123");
        assert_eq!(reply_conversation(&j).wire(), "mybot|1|alice");
        // A job survives the queue unchanged.
        let body = serde_json::to_string(&j).unwrap_or_default();
        assert_eq!(Job::decode(&body).ok(), Some(j));
    }

    #[test]
    fn teams_and_super_teams_become_distinct_groups_and_map_back() {
        let team = NimPlace::Team { team_id: "2837465".into(), kind: TeamKind::Advanced };
        let j = job("r", 1, &addressed(team.clone(), Content::Text, "what is X?"));
        assert_eq!(j.place, Place::Group { id: "2837465".into(), topic: None });
        assert_eq!((nim_place(&j), reply_conversation(&j).wire()), (team, "mybot|2|2837465".into()));
        assert_eq!(j.key(), "nim#grp#2837465#1234567890123#mybot");
        let sup = NimPlace::Team { team_id: "2837465".into(), kind: TeamKind::Super };
        let s = job("r", 1, &addressed(sup.clone(), Content::Text, "hi"));
        assert_eq!(s.place, Place::Group { id: "super:2837465".into(), topic: None });
        assert_eq!((nim_place(&s), reply_conversation(&s).wire()), (sup, "mybot|3|2837465".into()));
        assert_ne!(j.ordering_key(), s.ordering_key());
    }

    #[test]
    fn non_text_is_a_neutral_part_and_no_text() {
        let j = job("r", 1, &addressed(NimPlace::OneToOne, Content::NonText(MsgType::Picture), ""));
        assert_eq!((j.text.as_str(), j.parts.clone()), ("", vec![Part::Other { what: "image".into() }]));
        let j = job("r", 1, &addressed(NimPlace::OneToOne, Content::NonText(MsgType::Other("X".into())), ""));
        assert_eq!(j.parts, vec![Part::Other { what: "message".into() }]);
    }
}
