//! Markdown-aware cutting of long answers into chat messages.
//!
//! An LLM answer that outgrows one Tencent Chat message is cut, and every cut should leave both
//! sides well-formed Markdown: a message should end after a paragraph, a list item, a heading or
//! a code block rather than in the middle of a word, and a fenced code block cut in two is closed
//! at the end of the first message and reopened, with the same info string, at the start of the
//! next, so the second half is still shown as code.
//!
//! Where to cut is found by `text-splitter`'s [`MarkdownSplitter`], sized in bytes and untrimmed:
//! its first chunk of the pending text is the longest prefix that ends at the highest-ranked
//! boundary that fits. The ranking, from best to worst: before a heading (a higher level first),
//! at a thematic break, after a block (paragraph, list item, code block, quote, table row), at a
//! line break, around an inline element, after a sentence, after a word (Unicode word
//! segmentation, with a dictionary for Chinese and Japanese, which have no spaces), between
//! grapheme clusters, between characters. The splitter judges a level by its first section alone,
//! so leading spaces and a code block's opening line, which it takes as sections of their own,
//! are stepped over here. Fences are found with `pulldown-cmark` offsets, the parser
//! `text-splitter` itself uses.
//!
//! - [`cut`]: how much of the pending text to put in a message that has `room` bytes left.
//! - [`break_message`] and [`truncate_message`]: the same, for the streaming pump's two overflow
//!   policies, with the fence to close in this message and to reopen in the next.
//! - [`split`]: a whole answer into messages of at most `max` bytes.
//! - [`open_fence`], [`closing_fence`], [`last_block_end`]: the building blocks.
//!
//! A cut can only fall inside the text it is shown: a streaming caller that wants good cuts holds
//! back some text (a few hundred bytes) once the message nears its limit, so that the pending
//! text spans the region where the cut should fall.
//!
//! Sizes: a cut never splits a character, so any `max` below [`MIN_MAX`] is raised to it.
//! Fences are repaired only where the closing and reopening lines fit beside at least one more
//! character; below that (a `max` smaller than about twice a fence line) a part is cut without
//! repair rather than made longer than `max`.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use std::borrow::Cow;
use std::ops::Range;
use text_splitter::{ChunkConfig, ChunkSizer, MarkdownSplitter};

/// The smallest part size [`split`] honours: one UTF-8 character of any length.
pub const MIN_MAX: usize = 4;

/// How far past `room` the pending text is parsed (to the end of that line, at most this many
/// bytes): enough to see whether the block at the limit ends there, without parsing the whole
/// rest of a long answer for every cut.
const LOOKAHEAD: usize = 512;

/// Sizes chunks in UTF-8 bytes, the unit of Tencent's message limit.
struct Bytes;

impl ChunkSizer for Bytes {
    fn size(&self, chunk: &str) -> usize {
        chunk.len()
    }
}

/// The Markdown dialect parsed here: the one `text-splitter` parses, so boundaries and fences
/// agree.
fn options() -> Options {
    Options::all()
}

/// The byte length of the best prefix of `pending` to put in a message that has `room` bytes
/// left: all of it when it fits, else the longest prefix ending at the best-ranked boundary that
/// fits (see the module documentation), with the line breaks that follow it when they fit too.
///
/// The result is a character boundary, never more than `room`, never between a `\r` and its
/// `\n`. It is 0 only when `pending` is empty or `room` is smaller than its first character (or
/// its leading `\r\n`): the text already in the message is not seen here, so ending the message
/// now is left to [`break_message`], which sees it.
pub fn cut(pending: &str, room: usize) -> usize {
    best_cut("", pending, room)
}

/// [`cut`], parsing `pending` as if it followed `ctx` (a fence line that reopens a code block,
/// so that code is not read as Markdown); `ctx` is not counted in `room`.
fn best_cut(ctx: &str, pending: &str, room: usize) -> usize {
    if pending.len() <= room {
        return pending.len();
    }
    // Leading spaces would be a section of their own at every level, which the splitter would
    // take as the whole first chunk; they go with whatever follows them instead.
    let lead = pending.len() - pending.trim_start_matches([' ', '\t']).len();
    if lead > 0 {
        if lead >= room {
            return room;
        }
        return lead + best_cut(ctx, &pending[lead..], room - lead);
    }
    if room == 0 {
        return 0;
    }
    let window = &pending[..window_end(pending, room)];
    let text: Cow<'_, str> = if ctx.is_empty() { window.into() } else { format!("{ctx}{window}").into() };
    let capacity = room + ctx.len();
    let splitter = MarkdownSplitter::new(ChunkConfig::new(capacity).with_sizer(Bytes).with_trim(false));
    let end = splitter.chunk_indices(&text).next().map_or(0, |(start, chunk)| start + chunk.len());
    if end > capacity {
        // Nothing fits, not even one character.
        return 0;
    }
    let take = end.saturating_sub(ctx.len());
    if ctx.is_empty()
        && let Some(fence) = find_open_fence(&pending[..take])
        && fence.line_start == 0
        && fence.line_end >= take
    {
        // The splitter ranks a code block's opening line as a section of its own, so a block
        // too long to fit can come back as that line alone; the code is cut instead.
        let line = fence.line_end;
        let inner = if line < room { best_cut(&pending[..line], &pending[line..], room - line) } else { 0 };
        if inner > 0 {
            return line + inner;
        }
    }
    if take == 0 && !ctx.is_empty() {
        // The first chunk was the reopening fence line alone: the first line of code does not
        // fit, so it is cut without the context.
        return best_cut("", pending, room);
    }
    settle(pending, take, room)
}

/// Where the parsed window of `pending` ends: the end of the line at `room`, at most
/// [`LOOKAHEAD`] bytes further.
fn window_end(pending: &str, room: usize) -> usize {
    let far = pending.floor_char_boundary(room.saturating_add(LOOKAHEAD));
    match pending.as_bytes()[room..far].iter().position(|&b| b == b'\n') {
        Some(i) => room + i + 1,
        None => far,
    }
}

/// Moves a cut past the line breaks that follow it when they fit (so a message ends with its
/// line break rather than the next one starting with it), back before the indentation of a line
/// it has only begun, and off the middle of a `\r\n`.
fn settle(pending: &str, mut take: usize, room: usize) -> usize {
    loop {
        let rest = &pending[take..];
        let ws = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let after = &rest[ws..];
        let nl = if after.starts_with("\r\n") {
            2
        } else if after.starts_with('\n') {
            1
        } else {
            0
        };
        if nl == 0 || take + ws + nl > room {
            break;
        }
        take += ws + nl;
    }
    // Nor does a message end with the indentation of the next line.
    let kept = pending[..take].trim_end_matches([' ', '\t']);
    if kept.ends_with('\n') {
        take = kept.len();
    }
    if take > 0 && pending.as_bytes()[take - 1] == b'\r' && pending[take..].starts_with('\n') {
        take -= 1;
    }
    take
}

/// A fenced code block left open at the end of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fence {
    /// The byte offset in the text of the start of the opening line.
    line_start: usize,
    /// The byte offset in the text of the end of the opening line (after its line break).
    line_end: usize,
    /// The opening line without indentation, container markers or line break: "```rust".
    opener: String,
    /// What comes before the fence on its line, list bullets and numbers blanked: "  " in a
    /// list item, "> " in a quote. The closing line repeats it, so the block closes inside its
    /// container rather than ending it and opening a new block.
    indent: String,
}

impl Fence {
    /// The line that closes the block where it stands.
    fn closer(&self) -> String {
        format!("{}{}", self.indent, closing_fence(&self.opener))
    }

    /// The line that reopens the block at the start of a new message: with its indentation
    /// where that keeps it a fence (quote markers, or up to three spaces), so the content's
    /// indentation is stripped as before.
    fn reopener(&self, nl: &str) -> String {
        let keep = self.indent.contains('>') || self.indent.len() <= 3;
        let indent = if keep { self.indent.as_str() } else { "" };
        format!("{indent}{}{nl}", self.opener)
    }
}

/// If `text` ends inside a fenced code block, the line that opened it, without indentation,
/// container markers (`>`, list bullets) or line break: "```rust", "~~~", "````md". The caller
/// closes the block at the end of this message with [`closing_fence`] and reopens it at the
/// start of the next one with this line.
pub fn open_fence(text: &str) -> Option<String> {
    find_open_fence(text).map(|f| f.opener)
}

/// The line that closes a code block opened by `opener` (as [`open_fence`] returns it): its run
/// of backticks or tildes, "```" for "```rust".
pub fn closing_fence(opener: &str) -> &str {
    let opener = opener.trim_start();
    let mark = opener.chars().next().unwrap_or('`');
    let n = opener.len() - opener.trim_start_matches(mark).len();
    &opener[..n]
}

fn find_open_fence(text: &str) -> Option<Fence> {
    let mut last = None;
    for_fenced_blocks(text, |block, closed| {
        last = (!closed && text[block.end..].trim().is_empty()).then_some(block.start);
    });
    let start = last?;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = line_end(text, start);
    let opener = text[start..line_end].trim().to_owned();
    let indent = text[line_start..start].chars().map(|c| if c == '>' || c.is_whitespace() { c } else { ' ' }).collect();
    Some(Fence { line_start, line_end, opener, indent })
}

/// Calls `f` with the range of each fenced code block of `text` (from its opening fence to its
/// closing fence, or to where it ends unclosed) and whether a closing fence ends it.
fn for_fenced_blocks(text: &str, mut f: impl FnMut(Range<usize>, bool)) {
    // The fenced block being read: its range and where its content ends so far.
    let mut current: Option<(Range<usize>, usize)> = None;
    for (event, range) in Parser::new_ext(text, options()).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(_))) => {
                current = Some((range.clone(), line_end(text, range.start)));
            }
            Event::Text(_) => {
                if let Some((_, content_end)) = current.as_mut() {
                    *content_end = (*content_end).max(range.end);
                }
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some((block, content_end)) = current.take() {
                    // A closed block's range runs past its content over the closing fence line.
                    let closed = text.get(content_end..block.end).is_some_and(|t| t.contains(['`', '~']));
                    f(block, closed);
                }
            }
            _ => {}
        }
    }
}

/// The offset just past the line break of the line containing `at`, or the end of `text`.
fn line_end(text: &str, at: usize) -> usize {
    text[at..].find('\n').map_or(text.len(), |i| at + i + 1)
}

/// Whether `text` ends with a blank line: the end of a block.
fn ends_block(text: &str) -> bool {
    let t = text.trim_end_matches([' ', '\t']);
    t.ends_with("\n\n") || t.ends_with("\n\r\n")
}

/// The largest offset, at most `limit`, at which a complete block of `text` ends (a paragraph,
/// heading, list item, list, quote, table, code block or thematic break), not counting the
/// whitespace after it; 0 if there is none. A block at the very end of `text` counts as complete
/// only when a blank line (or, for a closed fenced block, a line break) follows it, since more
/// text could still extend it. This is where a truncation notice can go.
pub fn last_block_end(text: &str, limit: usize) -> usize {
    let mut closed_fences = Vec::new();
    for_fenced_blocks(text, |block, closed| {
        if closed {
            closed_fences.push(block.end);
        }
    });
    let mut best = 0;
    for (event, range) in Parser::new_ext(text, options()).into_offset_iter() {
        let block = match event {
            Event::End(tag) => matches!(
                tag,
                TagEnd::Paragraph
                    | TagEnd::Heading(_)
                    | TagEnd::BlockQuote(_)
                    | TagEnd::CodeBlock
                    | TagEnd::HtmlBlock
                    | TagEnd::List(_)
                    | TagEnd::Item
                    | TagEnd::Table
                    | TagEnd::FootnoteDefinition
                    | TagEnd::DefinitionList
            ),
            Event::Rule => true,
            _ => false,
        };
        if !block {
            continue;
        }
        let end = range.start + text[range.clone()].trim_end().len();
        if end <= limit && end > best && complete(text, range.end, closed_fences.contains(&range.end)) {
            best = end;
        }
    }
    best
}

/// Whether a block whose range ends at `end` is over: text follows it, or a blank line does, or
/// a line break follows the closing line of a fenced block (`closed_fence`).
fn complete(text: &str, end: usize, closed_fence: bool) -> bool {
    let after = &text[end..];
    if !after.trim().is_empty() {
        return true;
    }
    let breaks = after.matches('\n').count() + usize::from(text[..end].ends_with('\n'));
    breaks >= 2 || (closed_fence && breaks >= 1)
}

/// Where a message ends: how much of the pending text it takes, and the fence lines around the
/// cut.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cut {
    /// The byte length of the prefix of the pending text that goes in this message.
    pub take: usize,
    /// Text to append after it to close a code block left open, such as "\n```"; empty if none.
    pub close: String,
    /// Text to start the next message with to reopen that block, such as "```rust\n"; empty if
    /// none. It counts toward the next message's size.
    pub reopen: String,
}

/// Ends a message that already holds `sent`, for an answer that continues in a new message:
/// which prefix of `pending` to add (as [`cut`] chooses it), and the fence lines that close a
/// code block left open and reopen it in the next message. `room` is the bytes left in the
/// message, for the taken text and the closing line together.
///
/// The message ends at once (`take` 0) when `sent` ends with a blank line, the next block does
/// not fit whole, and less than a quarter of the message is left: a paragraph then starts in the
/// next message rather than with a few words at the foot of this one. A message with nothing in
/// it always takes at least one character when `room` allows.
pub fn break_message(sent: &str, pending: &str, room: usize) -> Cut {
    end_message(sent, pending, room, Mode::Continue)
}

/// Ends a message that already holds `sent`, for an answer truncated here: the prefix of
/// `pending` to add before the notice, ending at the last complete block that fits (see
/// [`last_block_end`]); when none does, nothing more if `sent` ends a block, else the best cut
/// (a line, a sentence, a word). Trailing whitespace is left out, since the notice comes after a
/// gap of its own. `close` closes a code block left open; `reopen` is empty. `room` is the bytes
/// left for the taken text and the closing line together (the notice's room already kept free).
pub fn truncate_message(sent: &str, pending: &str, room: usize) -> Cut {
    let mut c = end_message(sent, pending, room, Mode::Truncate);
    c.reopen.clear();
    c
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Continue,
    Truncate,
    /// [`split`]: `sent` is only the reopening fence line, and a block the answer itself leaves
    /// open at its end is left so.
    Split,
}

fn end_message(sent: &str, pending: &str, room: usize, mode: Mode) -> Cut {
    let nl = if sent.contains("\r\n") || pending.contains("\r\n") { "\r\n" } else { "\n" };
    let ctx = find_open_fence(sent).map(|f| f.reopener(nl)).unwrap_or_default();
    // Bytes kept free for the closing fence line; grows until the choice and its closing line
    // fit together.
    let mut reserve = 0;
    loop {
        let r = room.saturating_sub(reserve);
        let take = choose(sent, &ctx, pending, r, room, mode);
        let message = format!("{sent}{}", &pending[..take]);
        let Some(fence) = find_open_fence(&message) else {
            return Cut { take, ..Cut::default() };
        };
        if mode == Mode::Split && take == pending.len() {
            // The last part: a block the answer leaves open is not ours to close.
            return Cut { take, ..Cut::default() };
        }
        let close = if message.ends_with('\n') { fence.closer() } else { format!("{nl}{}", fence.closer()) };
        if take + close.len() <= room {
            let reopen = fence.reopener(nl);
            return Cut { take, close, reopen };
        }
        if r == 0 {
            // Not even the closing line fits: the block stays open.
            return Cut { take, ..Cut::default() };
        }
        reserve = (reserve + 1).max(close.len());
    }
}

/// The prefix of `pending` a message takes within `r` bytes (`room` is the full room, for the
/// quarter rule).
fn choose(sent: &str, ctx: &str, pending: &str, r: usize, room: usize, mode: Mode) -> usize {
    match mode {
        Mode::Truncate => {
            if pending.len() <= r {
                return pending.trim_end().len();
            }
            let window = &pending[..window_end(pending, r)];
            let text = format!("{sent}{window}");
            let end = last_block_end(&text, sent.len() + r);
            if end > sent.len() {
                return end - sent.len();
            }
            if ends_block(sent) && !sent.trim().is_empty() {
                return 0;
            }
            let take = best_cut(ctx, pending, r);
            pending[..take].trim_end().len()
        }
        Mode::Continue | Mode::Split => {
            let mut take = best_cut(ctx, pending, r);
            if take == pending.len() {
                return take;
            }
            // A fence opened in this message with nothing in it yet is moved to the next one.
            if let Some(f) = find_open_fence(&format!("{sent}{}", &pending[..take]))
                && f.line_end >= sent.len() + take
                && f.line_start > sent.len()
            {
                take = f.line_start - sent.len();
            }
            let ends_line = pending[..take].ends_with('\n');
            if mode == Mode::Continue
                && !ends_line
                && ends_block(sent)
                && !sent.trim().is_empty()
                && room < (sent.len() + room) / 4
            {
                return 0;
            }
            take
        }
    }
}

/// Splits a whole answer into parts of at most `max` bytes (at least [`MIN_MAX`]), each cut as
/// [`break_message`] cuts, with a code block cut in two closed at the end of one part and
/// reopened with the same info string at the start of the next; those added lines count toward
/// `max`. Removing them and joining the parts gives back `text`. An empty text gives no parts.
pub fn split(text: &str, max: usize) -> Vec<String> {
    plan(text, max).into_iter().map(|p| format!("{}{}{}", p.reopen, &text[p.range], p.close)).collect()
}

/// One part of a [`split`]: the lines added around a slice of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    reopen: String,
    range: Range<usize>,
    close: String,
}

fn plan(text: &str, max: usize) -> Vec<Part> {
    let max = max.max(MIN_MAX);
    let mut parts = Vec::new();
    let mut pos = 0;
    let mut reopen = String::new();
    while pos < text.len() {
        let rest = &text[pos..];
        let room = max.saturating_sub(reopen.len());
        let mut c = if room > 0 { end_message(&reopen, rest, room, Mode::Split) } else { Cut::default() };
        if c.take == 0 {
            // The reopening line leaves no room for a character: this part goes without it.
            reopen.clear();
            c = end_message("", rest, max, Mode::Split);
        }
        if c.take == 0 {
            // Only a closing line would fit: cut bare.
            c = Cut { take: best_cut("", rest, max), ..Cut::default() };
        }
        let range = pos..pos + c.take;
        pos = range.end;
        let done = pos >= text.len();
        let next = if done { String::new() } else { c.reopen };
        let close = if done { String::new() } else { c.close };
        parts.push(Part { reopen: std::mem::replace(&mut reopen, next), range, close });
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every part within `max`, and the parts, less their added lines, give back `text`.
    fn assert_plan(text: &str, max: usize) -> Vec<Part> {
        let parts = plan(text, max);
        let mut joined = String::new();
        let mut pos = 0;
        for p in &parts {
            assert_eq!(p.range.start, pos, "parts are contiguous: {parts:?}");
            pos = p.range.end;
            joined.push_str(&text[p.range.clone()]);
            let len = p.reopen.len() + p.range.len() + p.close.len();
            assert!(len <= max.max(MIN_MAX), "part of {len} bytes over {max}: {p:?}");
            assert!(!p.range.is_empty(), "every part takes text: {parts:?}");
        }
        assert_eq!(joined, text);
        parts
    }

    /// The fenced code blocks of `part` that run unclosed to its end, found independently of
    /// the module: a closed block's last line is a run of its fence characters.
    fn unclosed_fences(part: &str) -> Vec<String> {
        let mut open = Vec::new();
        for (event, range) in Parser::new_ext(part, Options::all()).into_offset_iter() {
            if let Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(_))) = event {
                let block = &part[range.clone()];
                let first = block.lines().next().unwrap_or("").trim();
                let mark = first.chars().next().unwrap_or('`');
                let n = first.chars().take_while(|&c| c == mark).count();
                let last = block.lines().last().unwrap_or("");
                let last = last.trim_start_matches(|c: char| c == '>' || c.is_whitespace()).trim_end();
                let closes = block.lines().count() > 1 && last.chars().all(|c| c == mark) && last.chars().count() >= n;
                if !closes {
                    open.push(first.to_owned());
                }
            }
        }
        open
    }

    // ---- cut

    #[test]
    fn cut_when_everything_fits_should_take_everything() {
        assert_eq!(cut("short", 10), 5);
        assert_eq!(cut("", 0), 0);
        assert_eq!(cut("", 10), 0);
    }

    #[test]
    fn cut_should_prefer_the_end_of_a_paragraph_over_more_text() {
        let text = "First paragraph.\n\nSecond paragraph is a good deal longer than that.";
        assert_eq!(&text[..cut(text, 40)], "First paragraph.\n\n");
    }

    #[test]
    fn cut_should_end_after_a_whole_list_item() {
        let text = "- one apple\n- two pears\n  - a nested item\n- three plums and more\n";
        let c = cut(text, 45);
        assert_eq!(&text[..c], "- one apple\n- two pears\n  - a nested item\n");
    }

    #[test]
    fn cut_should_end_after_a_fenced_block_with_its_line_break() {
        let text = "```rust\nfn main() {}\n```\n\nAnd then a long explanation follows here.";
        assert_eq!(&text[..cut(text, 40)], "```rust\nfn main() {}\n```\n\n");
    }

    #[test]
    fn cut_of_a_code_block_too_long_to_fit_should_take_whole_lines_of_it() {
        let text = "```py\nprint(1)\nprint(2)\nprint(3)\nprint(4)\n```\n";
        assert_eq!(&text[..cut(text, 30)], "```py\nprint(1)\nprint(2)\n");
    }

    #[test]
    fn cut_should_leave_a_heading_for_the_next_message() {
        let text = "Intro text.\n\n# Heading\n\nBody of the section.";
        let c = cut(text, 30);
        assert_eq!(&text[..c], "Intro text.\n\n");
    }

    #[test]
    fn cut_within_a_paragraph_should_fall_back_to_a_line_then_a_sentence_then_a_word() {
        let lines = "one line here\nsecond line is here\nthird";
        assert_eq!(&lines[..cut(lines, 30)], "one line here\n");
        let sentences = "It rains. The sun shines again soon.";
        assert_eq!(&sentences[..cut(sentences, 20)], "It rains. ");
        let words = "alpha beta gamma delta";
        assert_eq!(&words[..cut(words, 13)], "alpha beta ");
    }

    #[test]
    fn cut_of_a_single_long_word_should_fall_on_a_char_boundary() {
        let word = "é".repeat(50);
        let c = cut(&word, 11);
        assert_eq!(c, 10);
        assert!(word.is_char_boundary(c));
    }

    #[test]
    fn cut_of_chinese_text_should_end_a_sentence_or_a_word() {
        let text = "你好世界。这是一个很长的句子，没有空格。第二句话在这里！";
        let c = cut(text, 30);
        assert_eq!(&text[..c], "你好世界。");
        // Inside one sentence, a word boundary from the dictionary, not a character cut.
        let c = cut(&text[15..], 20);
        assert_eq!(&text[15..15 + c], "这是一个很长");
    }

    #[test]
    fn cut_should_never_split_a_crlf() {
        let text = "line one\r\nline two\r\n\r\npara two\r\n";
        for room in 0..text.len() {
            let c = cut(text, room);
            assert!(c <= room);
            assert!(!(c > 0 && text.as_bytes()[c - 1] == b'\r'), "room {room} cut {c}");
        }
        assert_eq!(&text[..cut(text, 24)], "line one\r\nline two\r\n\r\n");
    }

    #[test]
    fn cut_below_one_character_should_take_nothing() {
        assert_eq!(cut("你好", 2), 0);
        assert_eq!(cut("abc", 0), 0);
        assert_eq!(cut("你好", 3), 3);
    }

    // ---- open_fence

    #[test]
    fn open_fence_should_find_the_opening_line_of_an_unclosed_block() {
        assert_eq!(open_fence("Look:\n\n```rust\nfn main() {\n"), Some("```rust".into()));
        assert_eq!(open_fence("~~~\nplain\n"), Some("~~~".into()));
        assert_eq!(open_fence("```py\n"), Some("```py".into()));
        assert_eq!(open_fence("```py"), Some("```py".into()));
        assert_eq!(open_fence("```py\r\ncode\r\n"), Some("```py".into()));
        assert_eq!(open_fence("> ```sh\n> ls\n"), Some("```sh".into()));
        assert_eq!(open_fence("1. Step\n\n   ```sh\n   ls\n"), Some("```sh".into()));
    }

    #[test]
    fn open_fence_should_be_none_when_blocks_are_closed() {
        assert_eq!(open_fence(""), None);
        assert_eq!(open_fence("plain text"), None);
        assert_eq!(open_fence("```rust\nfn main() {}\n```"), None);
        assert_eq!(open_fence("```rust\nfn main() {}\n```\n\nafter"), None);
        assert_eq!(open_fence("```\n```"), None);
        assert_eq!(open_fence("    ```indented code, not a fence\n"), None);
        assert_eq!(open_fence("Use `x` and ``y``."), None);
    }

    #[test]
    fn open_fence_should_match_a_four_backtick_fence_past_inner_three() {
        let text = "````md\n```rust\nfn f() {}\n```\n";
        assert_eq!(open_fence(text), Some("````md".into()));
        assert_eq!(open_fence(&format!("{text}````\n")), None);
        assert_eq!(closing_fence("````md"), "````");
        assert_eq!(closing_fence("~~~ python"), "~~~");
    }

    // ---- last_block_end

    #[test]
    fn last_block_end_should_end_a_complete_block_within_the_limit() {
        let text = "First.\n\nSecond one.\n\nThird, still going";
        assert_eq!(last_block_end(text, text.len()), "First.\n\nSecond one.".len());
        assert_eq!(last_block_end(text, 10), "First.".len());
        assert_eq!(last_block_end(text, 5), 0);
        assert_eq!(last_block_end("", 10), 0);
    }

    #[test]
    fn last_block_end_should_not_trust_a_block_that_text_could_still_extend() {
        assert_eq!(last_block_end("para\n", 10), 0);
        assert_eq!(last_block_end("para\n\n", 10), 4);
        assert_eq!(last_block_end("```\ncode\n```", 20), 0);
        assert_eq!(last_block_end("```\ncode\n```\n", 20), 12);
        assert_eq!(last_block_end("- a\n- b", 10), 3, "item a is over, b may go on");
    }

    // ---- split

    #[test]
    fn split_of_empty_or_short_text() {
        assert!(split("", 10).is_empty());
        assert_eq!(split("hello", 10), vec!["hello"]);
    }

    #[test]
    fn split_should_close_and_reopen_a_fence_cut_in_half() {
        let code: String = (0..20).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here:\n\n```rust\n{code}```\n\nDone.");
        let parts = split(&text, 120);
        assert!(parts.len() > 2, "{parts:#?}");
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= 120);
            assert!(unclosed_fences(p).is_empty(), "part {i} {p:?}");
            if i > 0 && i + 1 < parts.len() {
                assert!(p.starts_with("```rust\n"), "part {i} {p:?}");
            }
        }
        assert_eq!(parts[0], "Here:\n\n", "the fence starts in the second part, not as a bare line");
        assert_plan(&text, 120);
    }

    #[test]
    fn split_should_reopen_tilde_and_long_fences_with_their_own_marks() {
        let inner: String = (0..10).map(|i| format!("line {i}\n")).collect();
        let text = format!("~~~text\n{inner}~~~\n");
        let parts = split(&text, 40);
        assert!(parts.iter().skip(1).all(|p| p.starts_with("~~~text\n")), "{parts:#?}");
        assert!(parts.iter().all(|p| unclosed_fences(p).is_empty()), "{parts:#?}");

        let text = format!("````md\n```rust\n{inner}```\n````\n");
        let parts = split(&text, 40);
        assert!(parts.iter().skip(1).all(|p| p.starts_with("````md\n")), "{parts:#?}");
        assert!(parts[..parts.len() - 1].iter().all(|p| p.ends_with("````")), "{parts:#?}");
        assert_plan(&text, 40);
    }

    #[test]
    fn split_should_close_a_fence_inside_a_list_item_inside_the_item() {
        let inner: String = (0..10).map(|i| format!("   echo {i}\n")).collect();
        let text = format!("1. Run:\n\n   ```sh\n{inner}   ```\n2. Done\n");
        let parts = split(&text, 60);
        assert!(parts.iter().all(|p| unclosed_fences(p).is_empty()), "{parts:#?}");
        assert_eq!(parts[0], "1. Run:\n\n", "the fence starts in the next part");
        assert!(parts[1].ends_with("echo 3\n   ```"), "{parts:#?}");
        assert!(parts[2].starts_with("   ```sh\n   echo 4"), "{parts:#?}");
    }

    #[test]
    fn split_should_use_crlf_for_added_lines_in_crlf_text() {
        let inner: String = (0..10).map(|i| format!("line {i}\r\n")).collect();
        let text = format!("```\r\n{inner}```\r\n");
        let parts = split(&text, 40);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| !p.replace("\r\n", "").contains('\n')), "{parts:#?}");
        assert_plan(&text, 40);
    }

    #[test]
    fn split_of_chinese_text_should_cut_at_sentences() {
        let text = "你好世界。这是一个很长的句子，没有空格。第二句话在这里！第三句。".repeat(3);
        let parts = split(&text, 64);
        for p in &parts {
            assert!(p.len() <= 64);
            assert!(p.ends_with(['。', '！', '，']) || p == parts.last().unwrap_or(p), "{parts:#?}");
        }
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn split_below_a_fence_line_should_stay_within_max_without_repair() {
        let text = "```a-rather-long-info-string\ncode line one\ncode line two\n```\n";
        for max in 0..40 {
            assert_plan(text, max);
        }
        let long = "x".repeat(100);
        for max in [1, 2, 3, 4, 7] {
            assert_plan(&long, max);
        }
        assert_plan(&"你".repeat(10), 1);
    }

    // ---- break_message and truncate_message

    #[test]
    fn break_message_should_close_the_fence_it_leaves_open() {
        let sent = "Try this:\n\n```python\nprint(1)\n";
        let pending = "print(2)\nprint(3)\n```\n";
        let c = break_message(sent, pending, 15);
        assert_eq!(&pending[..c.take], "print(2)\n");
        assert_eq!(c.close, "```");
        assert_eq!(c.reopen, "```python\n");
        assert!(c.take + c.close.len() <= 15);
    }

    #[test]
    fn break_message_should_end_now_after_a_block_when_little_room_is_left() {
        let sent = format!("{}\n\n", "a".repeat(200));
        let pending = "A new paragraph that will certainly not fit here.";
        assert_eq!(break_message(&sent, pending, 20).take, 0);
        // Mid-paragraph, the room is filled up to a word.
        let sent = "a".repeat(200);
        assert_eq!(&pending[..break_message(&sent, pending, 19).take], "A new paragraph ");
        // A fresh message always takes something.
        assert!(break_message("\n\n", pending, 20).take > 0);
    }

    #[test]
    fn truncate_message_should_end_at_the_last_complete_block() {
        let sent = "Intro.\n\n";
        let pending = "First point.\n\nSecond point is long and will not fit at all.";
        let c = truncate_message(sent, pending, 40);
        assert_eq!(&pending[..c.take], "First point.");
        assert_eq!(c, Cut { take: 12, close: String::new(), reopen: String::new() });
        // No block ends in reach and the message ends one: nothing more.
        assert_eq!(truncate_message(sent, "Long paragraph with no end in sight", 10).take, 0);
        // Mid-paragraph, the best cut instead, without trailing space.
        let c = truncate_message("Some", " words and more words", 12);
        assert_eq!(&" words and more words"[..c.take], " words and");
    }

    #[test]
    fn truncate_message_inside_code_should_close_the_block() {
        let sent = "```js\nlet a = 1;\n";
        let pending = "let b = 2;\nlet c = 3;\n";
        let c = truncate_message(sent, pending, 16);
        assert_eq!(&pending[..c.take], "let b = 2;");
        assert_eq!(c.close, "\n```");
        assert!(c.reopen.is_empty());
    }

    // ---- properties

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,8}",
            "[你好世界这是一个很长的句子没有空格第二话在里]{1,6}",
            Just("`code`".to_owned()),
            Just("**bold**".to_owned()),
        ]
    }

    fn sentence() -> impl Strategy<Value = String> {
        (prop::collection::vec(word(), 1..12), prop_oneof![Just("."), Just("。"), Just("!"), Just("")])
            .prop_map(|(w, end)| format!("{}{end}", w.join(" ")))
    }

    fn block() -> impl Strategy<Value = String> {
        let fence = (
            prop_oneof![Just("```"), Just("~~~"), Just("````")],
            prop_oneof![Just(""), Just("rust"), Just("python"), Just("sh")],
            prop::collection::vec("[ a-z0-9=;(){}#>-]{0,30}", 0..8),
            prop_oneof![Just(""), Just("  ")],
        )
            .prop_map(|(mark, lang, lines, indent)| {
                let body: String = lines.iter().map(|l| format!("{indent}{l}\n")).collect();
                let open = format!("{indent}{mark}{lang}\n{body}{indent}{mark}");
                if indent.is_empty() { open } else { format!("- item\n\n{open}") }
            });
        prop_oneof![
            prop::collection::vec(sentence(), 1..4).prop_map(|s| s.join(" ")),
            prop::collection::vec(sentence(), 1..4).prop_map(|s| s.join("\n")),
            (sentence(), 1usize..4).prop_map(|(s, l)| format!("{} {s}", "#".repeat(l))),
            prop::collection::vec((0usize..3, sentence()), 1..5).prop_map(|items| items
                .iter()
                .map(|(depth, s)| format!("{}- {s}", "  ".repeat(*depth)))
                .collect::<Vec<_>>()
                .join("\n")),
            fence,
            "[a-zA-Z0-9]{60,300}",
            "[你好世界这是一个很长的句子没有空格第二话在里。]{20,120}",
        ]
    }

    fn document() -> impl Strategy<Value = String> {
        (prop::collection::vec(block(), 0..8), any::<bool>(), any::<bool>()).prop_map(|(blocks, crlf, tail)| {
            let mut text = blocks.join("\n\n");
            if tail {
                text.push('\n');
            }
            if crlf { text.replace('\n', "\r\n") } else { text }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn split_keeps_sizes_fences_and_content(text in document(), max in 1usize..400) {
            let parts = assert_plan(&text, max);
            let strings = split(&text, max);
            prop_assert_eq!(strings.len(), parts.len());
            for (i, (p, s)) in parts.iter().zip(&strings).enumerate() {
                prop_assert!(s.len() <= max.max(MIN_MAX));
                prop_assert_eq!(s, &format!("{}{}{}", p.reopen, &text[p.range.clone()], p.close));
                prop_assert!(p.reopen.is_empty() || closing_fence(p.reopen.trim()).len() >= 3);
                prop_assert!(p.close.is_empty() || p.close.trim_start().starts_with(['`', '~']));
                // Fences are repaired wherever two fence lines and some text fit.
                if max >= 64 && i + 1 < parts.len() {
                    let open = unclosed_fences(s);
                    prop_assert!(open.is_empty(), "part {} leaves {:?} open: {:?}", i, open, s);
                }
            }
        }

        #[test]
        fn cut_stays_within_room_on_a_char_boundary(text in document(), room in 0usize..500) {
            let c = cut(&text, room);
            prop_assert!(c <= room.min(text.len()));
            prop_assert!(text.is_char_boundary(c));
            prop_assert!(c > 0 || text.is_empty() || room < 4);
        }
    }

    /// The time of one `cut` of a 4 KB pending text into 3 KB of room; run with
    /// `cargo test -p shared --release --lib markdown::tests::cut_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints a timing, asserts nothing about it"]
    fn cut_timing() {
        let para =
            "Rust is a language empowering everyone to build reliable software. 这是一个很长的句子，没有空格。\n";
        let code = "```rust\nfn main() {\n    println!(\"hi\");\n}\n```\n\n";
        let mut text = String::new();
        while text.len() < 4096 {
            text.push_str(para);
            text.push_str("- a list item with some words\n\n");
            text.push_str(code);
        }
        let text = &text[..text.floor_char_boundary(4096)];
        let mut times: Vec<std::time::Duration> = (0..201)
            .map(|_| {
                let t = std::time::Instant::now();
                std::hint::black_box(cut(std::hint::black_box(text), 3072));
                t.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "cut of {} bytes into 3072: median {:?}, min {:?}, max {:?}",
            text.len(),
            times[100],
            times[0],
            times[200]
        );
    }
}
