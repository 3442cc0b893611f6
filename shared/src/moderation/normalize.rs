//! Normalisation: the text that rules are matched against, with a map back to the original
//! so that a match can be masked where it was written.

/// Folds case and full-width forms, and drops spacing and invisible characters ([`skipped`]).
/// Returns the normalised text and, for each of its bytes, the byte range of the original
/// character it came from.
pub fn normalize(text: &str) -> (String, Vec<(usize, usize)>) {
    let mut out = String::with_capacity(text.len());
    let mut map = Vec::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if skipped(c) {
            continue;
        }
        let orig = (i, i + c.len_utf8());
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        for l in c.to_lowercase() {
            out.push(l);
            map.extend(std::iter::repeat_n(orig, l.len_utf8()));
        }
    }
    (out, map)
}

/// Whether matching skips a character: white space, and the characters that show nothing
/// but can be put inside a word to split it (Unicode's format characters, general category
/// Cf, and its Default_Ignorable_Code_Point: zero-width space, joiners, word joiner, BOM,
/// soft hyphen, bidirectional controls, variation selectors, tags, Hangul fillers).
pub fn skipped(c: char) -> bool {
    // Cf ∪ Default_Ignorable_Code_Point, Unicode 15.1 (DerivedGeneralCategory.txt and
    // DerivedCoreProperties.txt), as sorted, disjoint ranges.
    const INVISIBLE: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x034F, 0x034F),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x115F, 0x1160),
        (0x17B4, 0x17B5),
        (0x180B, 0x180F),
        (0x200B, 0x200F),
        (0x202A, 0x202E),
        (0x2060, 0x206F),
        (0x3164, 0x3164),
        (0xFE00, 0xFE0F),
        (0xFEFF, 0xFEFF),
        (0xFFA0, 0xFFA0),
        (0xFFF0, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0000, 0xE0FFF),
    ];
    if c.is_ascii() || c.is_whitespace() {
        return c.is_whitespace();
    }
    let c = c as u32;
    INVISIBLE
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_maps_back_to_the_original() {
        let (n, map) = normalize("Ａ b\u{3000}C");
        assert_eq!(n, "abc");
        assert_eq!(map[0], (0, 3));
        assert_eq!(map[2], (8, 9));
    }
}
