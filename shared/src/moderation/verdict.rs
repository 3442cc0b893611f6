//! Tencent's side of moderation: which fields of a `MsgBody` are judged, and the verdict a
//! before-send callback answers (`ErrorCode` 0 with a rewritten body, 1, 2, or a custom code
//! of the command's range; protocol doc §5 and §6).

use super::engine::{Engine, mask};
use super::policy::Action;
use crate::msg::MsgElement;
use crate::webhook::Ack;

/// Where the message is going; decides which refusal codes apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Group,
    C2c,
}

impl Scope {
    /// The custom refusal codes that this command passes to the sender.
    pub fn custom_codes(self) -> std::ops::RangeInclusive<i64> {
        match self {
            Scope::Group => 10_100..=10_200,
            Scope::C2c => 120_001..=130_000,
        }
    }
}

/// The outcome of moderation.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow,
    Refuse { code: i64, text: String },
    Drop,
    Rewrite(Vec<MsgElement>),
}

impl Verdict {
    /// The webhook reply that carries this verdict.
    pub fn ack(&self) -> Ack {
        match self {
            Verdict::Allow => Ack::ok(),
            Verdict::Refuse { code, text } => Ack::verdict(*code, text.clone()),
            Verdict::Drop => Ack::verdict(2, ""),
            Verdict::Rewrite(body) => {
                let mut a = Ack::ok();
                a.msg_body = Some(body.clone());
                a
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Refuse { .. } => "refuse",
            Verdict::Drop => "drop",
            Verdict::Rewrite(_) => "mask",
        }
    }
}

impl Engine {
    /// The text that judging reads in a body, its fields joined by new lines: what the
    /// classifier is asked about. `None` when there is none.
    pub fn text(&self, body: &[MsgElement]) -> Option<String> {
        let fields: Vec<&str> = body.iter().flat_map(|e| fields(e, self.judges_custom())).collect();
        (!fields.is_empty()).then(|| fields.join("\n"))
    }

    /// Judges a message body: each text element, the text elements joined (a word split
    /// across two of them), and, when a policy asks, each custom element's `Desc` and `Data`
    /// (by the policies that ask).
    pub fn judge(&self, body: &[MsgElement], scope: Scope) -> Verdict {
        let custom = self.judges_custom();
        // Each judged field, and whether it is a text element's.
        let fields: Vec<(&str, bool)> = body
            .iter()
            .flat_map(|e| fields(e, custom).into_iter().map(move |f| (f, matches!(e, MsgElement::Text { .. }))))
            .collect();
        // Every match, as (field, action, byte range of the field).
        let mut hits: Vec<(usize, &Action, (usize, usize))> = Vec::new();
        for (f, &(text, is_text)) in fields.iter().enumerate() {
            hits.extend(self.find_in(text, !is_text).into_iter().map(|(action, span)| (f, action, span)));
        }
        let texts: Vec<usize> = (0..fields.len()).filter(|&f| fields[f].1).collect();
        if texts.len() > 1 {
            let (mut joined, mut starts) = (String::new(), Vec::with_capacity(texts.len()));
            for &f in &texts {
                starts.push(joined.len());
                joined.push_str(fields[f].0);
            }
            for (action, (s, e)) in self.find(&joined) {
                for (&f, &start) in texts.iter().zip(&starts) {
                    let end = start + fields[f].0.len();
                    if s < end && start < e {
                        hits.push((f, action, (s.max(start) - start, e.min(end) - start)));
                    }
                }
            }
        }
        // The most severe; among equals, the first found.
        let worst = hits.iter().map(|(_, action, _)| *action).min_by_key(|a| std::cmp::Reverse(a.severity()));
        let mut masks: Vec<Vec<(usize, usize)>> = vec![Vec::new(); fields.len()];
        for (f, _, span) in hits.iter().filter(|(_, action, _)| **action == Action::Mask) {
            masks[*f].push(*span);
        }
        let masked = masks.iter().any(|m| !m.is_empty());
        match worst {
            None | Some(Action::Allow) => Verdict::Allow,
            Some(Action::Mask) if masked => {
                // `fields_mut` yields the fields in the order `fields` did.
                let (mut body, mut masks) = (body.to_vec(), masks.into_iter());
                for el in &mut body {
                    for (field, spans) in fields_mut(el, custom).into_iter().zip(masks.by_ref()) {
                        *field = mask(field, spans);
                    }
                }
                Verdict::Rewrite(body)
            }
            Some(Action::Mask) => Verdict::Allow,
            Some(Action::Drop) => Verdict::Drop,
            Some(Action::RefuseWith { code, text }) if scope.custom_codes().contains(code) => {
                Verdict::Refuse { code: *code, text: text.clone() }
            }
            Some(_) => Verdict::Refuse { code: 1, text: String::new() },
        }
    }
}

/// The text fields of an element that are judged: a text element's text and, with
/// `custom`, a custom element's `Desc` and `Data`.
fn fields(el: &MsgElement, custom: bool) -> Vec<&str> {
    match el {
        MsgElement::Text { text } => vec![text.as_str()],
        MsgElement::Custom(c) if custom => c.desc.iter().chain(&c.data).map(String::as_str).collect(),
        _ => Vec::new(),
    }
}

/// [`fields`], to rewrite them.
fn fields_mut(el: &mut MsgElement, custom: bool) -> Vec<&mut String> {
    match el {
        MsgElement::Text { text } => vec![text],
        MsgElement::Custom(c) if custom => c.desc.iter_mut().chain(&mut c.data).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moderation::{Policy, policy, text};

    #[test]
    fn verdicts_and_rewrites_table() {
        let p = policy(vec![
            (vec!["bad"], vec![], Action::Mask),
            (vec!["scam"], vec![], Action::Refuse),
            (vec!["spam"], vec![], Action::Drop),
            (vec!["vip only"], vec![], Action::RefuseWith { code: 10_150, text: "VIPs only".into() }),
            (vec![], vec![r"\d{11}"], Action::Mask),
            (vec!["hello"], vec![], Action::Allow),
        ]);
        let e = Engine::compile(&[p]).unwrap_or_else(|e| panic!("{e}"));
        let cases: Vec<(&str, Scope, Verdict)> = vec![
            ("hello there", Scope::Group, Verdict::Allow),
            ("nothing to see", Scope::Group, Verdict::Allow),
            ("that is bad", Scope::Group, Verdict::Rewrite(text("that is ***"))),
            ("b a d idea", Scope::Group, Verdict::Rewrite(text("*** idea"))),
            ("ＢＡＤ", Scope::Group, Verdict::Rewrite(text("***"))),
            ("BaD and bad", Scope::C2c, Verdict::Rewrite(text("*** and ***"))),
            ("call 13800138000 now", Scope::Group, Verdict::Rewrite(text("call *********** now"))),
            ("a scam!", Scope::Group, Verdict::Refuse { code: 1, text: String::new() }),
            ("bad scam", Scope::Group, Verdict::Refuse { code: 1, text: String::new() }),
            ("buy spam", Scope::Group, Verdict::Drop),
            ("buy spam", Scope::C2c, Verdict::Drop),
            ("VIP ONLY room", Scope::Group, Verdict::Refuse { code: 10_150, text: "VIPs only".into() }),
            ("vip only room", Scope::C2c, Verdict::Refuse { code: 1, text: String::new() }),
        ];
        for (input, scope, want) in cases {
            assert_eq!(e.judge(&text(input), scope), want, "{input:?} {scope:?}");
        }
    }

    #[test]
    fn other_elements_survive_a_rewrite() {
        let e = Engine::compile(&[policy(vec![(vec!["bad"], vec![], Action::Mask)])]).unwrap_or_else(|e| panic!("{e}"));
        let img = MsgElement::Other { msg_type: "TIMImageElem".into(), content: serde_json::json!({"UUID": "x"}) };
        let v = e.judge(&[MsgElement::text("bad"), img.clone()], Scope::Group);
        assert_eq!(v, Verdict::Rewrite(vec![MsgElement::text("***"), img]));
        assert_eq!(v.ack().msg_body.map(|b| b.len()), Some(2));
    }

    #[test]
    fn invisible_characters_inside_a_word_do_not_hide_it() {
        let e = Engine::compile(&[policy(vec![
            (vec!["bad"], vec![], Action::Mask),
            (vec!["scam"], vec![], Action::Refuse),
        ])])
        .unwrap_or_else(|e| panic!("{e}"));
        let refuse = Verdict::Refuse { code: 1, text: String::new() };
        // Zero-width space, non-joiner, joiner, word joiner, BOM, soft hyphen, Mongolian vowel
        // separator, left-to-right mark, bidi isolate, tag space, variation selector, Hangul filler.
        let invisible = [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{180E}',
            '\u{200E}',
            '\u{2066}',
            '\u{E0020}',
            '\u{FE0F}',
            '\u{3164}',
        ];
        for c in invisible {
            let hidden = format!("so b{c}a{c}d");
            assert_eq!(e.judge(&text(&hidden), Scope::Group), Verdict::Rewrite(text("so ***")), "U+{:04X}", c as u32);
            assert_eq!(e.judge(&text(&format!("s{c}cam")), Scope::Group), refuse, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn a_word_split_across_two_text_elements_is_caught() {
        let e = Engine::compile(&[policy(vec![
            (vec!["badword"], vec![], Action::Mask),
            (vec!["scam"], vec![], Action::Refuse),
        ])])
        .unwrap_or_else(|e| panic!("{e}"));
        let body = vec![MsgElement::text("this is bad"), MsgElement::text("word, ok")];
        let want = vec![MsgElement::text("this is ***"), MsgElement::text("****, ok")];
        assert_eq!(e.judge(&body, Scope::Group), Verdict::Rewrite(want));
        let body = vec![MsgElement::text("a sc"), MsgElement::text("am")];
        assert_eq!(e.judge(&body, Scope::C2c), Verdict::Refuse { code: 1, text: String::new() });
    }

    #[test]
    fn custom_element_text_is_judged_when_the_policy_asks() {
        use crate::msg::CustomElem;
        let custom = |desc: &str, data: &str| {
            MsgElement::Custom(CustomElem { desc: Some(desc.into()), data: Some(data.into()), ..Default::default() })
        };
        let rules = vec![(vec!["bad"], vec![], Action::Mask), (vec!["scam"], vec![], Action::Refuse)];
        let off = Engine::compile(&[policy(rules.clone())]).unwrap_or_else(|e| panic!("{e}"));
        let on = Engine::compile(&[Policy { judge_custom: true, ..policy(rules) }]).unwrap_or_else(|e| panic!("{e}"));
        let scam = vec![custom("a scam", "{}")];
        assert_eq!(off.judge(&scam, Scope::Group), Verdict::Allow, "not asked");
        assert_eq!(on.judge(&scam, Scope::Group), Verdict::Refuse { code: 1, text: String::new() });
        let bad = vec![MsgElement::text("hi"), custom("so bad", r#"{"text":"bad news"}"#)];
        let want = vec![MsgElement::text("hi"), custom("so ***", r#"{"text":"*** news"}"#)];
        assert_eq!(on.judge(&bad, Scope::Group), Verdict::Rewrite(want));
    }

    #[test]
    fn overlapping_matches_of_two_rules_leave_no_text_visible() {
        let e = Engine::compile(&[policy(vec![(vec!["坏人", "人好"], vec![], Action::Mask)])])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.judge(&text("坏人好"), Scope::Group), Verdict::Rewrite(text("***")));
        assert_eq!(crate::bot::moderated::judge_answer(&e, "坏人好", "refused"), "***");
        // A refusing word that overlaps a masked one is found too.
        let e =
            Engine::compile(&[policy(vec![(vec!["ab"], vec![], Action::Mask), (vec!["bc"], vec![], Action::Refuse)])])
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.judge(&text("abc"), Scope::Group), Verdict::Refuse { code: 1, text: String::new() });
    }

    #[test]
    fn no_matched_character_survives_a_mask_property() {
        let alphabet = ['坏', '人', '好', 'a', 'b'];
        let mut rng = fastrand::Rng::with_seed(20_261_124);
        let mut draw = |n: usize| -> String { (0..n).map(|_| alphabet[rng.usize(..alphabet.len())]).collect() };
        for round in 0..2_000 {
            let words: Vec<String> = (0..1 + round % 4).map(|i| draw(1 + (round + i) % 3)).collect();
            let input = draw(round % 13);
            let rules = vec![(words.iter().map(String::as_str).collect(), vec![], Action::Mask)];
            let e = Engine::compile(&[policy(rules)]).unwrap_or_else(|e| panic!("{e}"));
            let out = match e.judge(&text(&input), Scope::Group) {
                Verdict::Rewrite(body) => crate::msg::joined_text(&body).unwrap_or_default(),
                _ => input.clone(),
            };
            // Every character of every occurrence of every word, found by brute force.
            let chars: Vec<char> = input.chars().collect();
            let mut covered = vec![false; chars.len()];
            for w in &words {
                let w: Vec<char> = w.chars().collect();
                for i in (0..chars.len()).filter(|&i| chars[i..].starts_with(&w)) {
                    covered[i..i + w.len()].iter_mut().for_each(|c| *c = true);
                }
            }
            let want: String = chars.iter().zip(&covered).map(|(&c, &m)| if m { '*' } else { c }).collect();
            assert_eq!(out, want, "words {words:?}, input {input:?}");
            assert_eq!(
                crate::bot::moderated::judge_answer(&e, &input, "refused"),
                want,
                "answers: {words:?}, {input:?}"
            );
        }
    }

    #[test]
    fn a_c2c_drop_is_a_silent_discard_with_error_code_2() {
        let e =
            Engine::compile(&[policy(vec![(vec!["spam"], vec![], Action::Drop)])]).unwrap_or_else(|e| panic!("{e}"));
        let v = e.judge(&text("buy spam"), Scope::C2c);
        assert_eq!(v, Verdict::Drop);
        assert_eq!((v.ack().error_code, v.ack().action_status.as_str()), (2, "OK"));
    }
}
