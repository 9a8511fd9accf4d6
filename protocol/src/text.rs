//! The text rule (PROTOCOL.md 4.2): what every free-text field of a listing, a delisting or a
//! revocation may hold. The node's API applies the same rule to the free text of its request
//! bodies, so that what it accepts is what every receiver accepts.
//!
//! People read these texts in catalogs, so the rule refuses what makes a text lie about itself:
//! control characters, bidirectional embedding, override and isolate controls (which can make
//! a title display in another order than it is stored), and Unicode noncharacters (reserved
//! for a program's internal use, never for interchange); and a required text must show at
//! least one visible character, not only white space or invisible characters such as
//! ZERO WIDTH SPACE.

/// Why a text breaks the rule; [`TextProblem::message`] is what the field error says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextProblem {
    /// Required, but empty or only white space.
    Empty,
    /// Required, and not empty, but every character is white space or invisible.
    OnlyInvisible,
    /// Longer than allowed: the length found, in characters.
    TooLong(usize),
    /// Holds a control character other than LINE FEED and CHARACTER TABULATION.
    Control,
    /// Holds a bidirectional embedding, override or isolate control.
    BidiControl,
    /// Holds a Unicode noncharacter.
    Noncharacter,
}

impl TextProblem {
    /// The field error's message, given the field's maximum length.
    pub fn message(self, max: usize) -> String {
        match self {
            TextProblem::Empty => "must not be empty".to_owned(),
            TextProblem::OnlyInvisible => "must show a visible character: only white space and \
                invisible characters (zero-width spaces and joiners, variation selectors, \
                direction marks and the like) is as good as empty"
                .to_owned(),
            TextProblem::TooLong(n) => format!("{n} characters, at most {max} allowed"),
            TextProblem::Control => "must not contain control characters".to_owned(),
            TextProblem::BidiControl => "must not contain bidirectional embedding, override or \
                isolate controls (U+202A-U+202E, U+2066-U+2069)"
                .to_owned(),
            TextProblem::Noncharacter => "must not contain Unicode noncharacters \
                (U+FDD0-U+FDEF, and U+FFFE and U+FFFF of every plane)"
                .to_owned(),
        }
    }
}

/// Every way `value` breaks the text rule, in a fixed order: at most `max` characters (Unicode
/// scalar values), and when `required`, not empty nor only white space or invisible characters.
pub fn problems(value: &str, max: usize, required: bool) -> Vec<TextProblem> {
    let mut found = Vec::new();
    let chars = value.chars().count();
    if required && value.trim().is_empty() {
        found.push(TextProblem::Empty);
    } else if required && value.chars().all(is_invisible) {
        found.push(TextProblem::OnlyInvisible);
    } else if chars > max {
        found.push(TextProblem::TooLong(chars));
    }
    if value.chars().any(is_forbidden_control) {
        found.push(TextProblem::Control);
    }
    if value.chars().any(is_bidi_control) {
        found.push(TextProblem::BidiControl);
    }
    if value.chars().any(is_noncharacter) {
        found.push(TextProblem::Noncharacter);
    }
    found
}

/// General category Cc, except LINE FEED and CHARACTER TABULATION.
pub fn is_forbidden_control(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// LRE, RLE, PDF, LRO, RLO (U+202A–U+202E) and LRI, RLI, FSI, PDI (U+2066–U+2069): the
/// controls that change the display order of what follows them (the "Trojan Source" controls).
/// The direction marks (LRM, RLM, ALM) only nudge neighbouring characters and are allowed.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The 66 noncharacters: U+FDD0–U+FDEF, and the last two code points of each of the 17 planes.
pub fn is_noncharacter(c: char) -> bool {
    let c = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&c) || c & 0xFFFE == 0xFFFE
}

/// White space (Unicode `White_Space`, as `char::is_whitespace`) or a default-ignorable code
/// point (Unicode `Default_Ignorable_Code_Point`): characters that show nothing by themselves.
pub fn is_invisible(c: char) -> bool {
    c.is_whitespace() || is_default_ignorable(c)
}

/// Unicode's `Default_Ignorable_Code_Point` property (DerivedCoreProperties.txt; the same set
/// in Unicode 14 to 16): ZERO WIDTH SPACE and its kin, joiners, direction marks and controls,
/// variation selectors, fillers, tags, and the code points reserved among them.
pub fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The rule as an ECMA-262 / Rust-regex pattern for the OpenAPI document: no forbidden
/// character anywhere, and with `required`, at least one visible one. (Lengths are stated by
/// `maxLength`; the pattern cannot count, so it says nothing about them.)
pub fn pattern(required: bool) -> String {
    // Characters allowed anywhere.
    let allowed = r"[^\u0000-\u0008\u000B-\u001F\u007F-\u009F\u202A-\u202E\u2066-\u2069\uFDD0-\uFDEF\uFFFE\uFFFF\u{1FFFE}\u{1FFFF}\u{2FFFE}\u{2FFFF}\u{3FFFE}\u{3FFFF}\u{4FFFE}\u{4FFFF}\u{5FFFE}\u{5FFFF}\u{6FFFE}\u{6FFFF}\u{7FFFE}\u{7FFFF}\u{8FFFE}\u{8FFFF}\u{9FFFE}\u{9FFFF}\u{AFFFE}\u{AFFFF}\u{BFFFE}\u{BFFFF}\u{CFFFE}\u{CFFFF}\u{DFFFE}\u{DFFFF}\u{EFFFE}\u{EFFFF}\u{FFFFE}\u{FFFFF}\u{10FFFE}\u{10FFFF}]";
    if !required {
        return format!("^{allowed}*$");
    }
    // …and one of them neither white space nor default-ignorable.
    let visible = r"[^\u0000-\u0020\u007F-\u00A0\u00AD\u034F\u061C\u115F\u1160\u1680\u17B4\u17B5\u180B-\u180F\u2000-\u200F\u2028-\u202F\u205F-\u206F\u3000\u3164\uFDD0-\uFDEF\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFF8\uFFFE\uFFFF\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0000}-\u{E0FFF}\u{1FFFE}\u{1FFFF}\u{2FFFE}\u{2FFFF}\u{3FFFE}\u{3FFFF}\u{4FFFE}\u{4FFFF}\u{5FFFE}\u{5FFFF}\u{6FFFE}\u{6FFFF}\u{7FFFE}\u{7FFFF}\u{8FFFE}\u{8FFFF}\u{9FFFE}\u{9FFFF}\u{AFFFE}\u{AFFFF}\u{BFFFE}\u{BFFFF}\u{CFFFE}\u{CFFFF}\u{DFFFE}\u{DFFFF}\u{EFFFE}\u{EFFFF}\u{FFFFE}\u{FFFFF}\u{10FFFE}\u{10FFFF}]";
    format!("^{allowed}*{visible}{allowed}*$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_width_and_other_invisible_characters_alone_are_as_good_as_empty() {
        for invisible in [
            "\u{200B}",
            "\u{200B}\u{200C}\u{200D}",
            "\u{FEFF}",
            "\u{2060}",
            "\u{180E}",
            "\u{3164}",
            " \u{200B} \u{3000}",
            "\u{E0020}\u{E007F}",
            "\u{FE0F}",
            "\u{200E}",
        ] {
            assert_eq!(
                problems(invisible, 200, true),
                [TextProblem::OnlyInvisible],
                "{invisible:?}"
            );
            assert_eq!(problems(invisible, 200, false), [], "{invisible:?}");
        }
        assert_eq!(problems("  ", 200, true), [TextProblem::Empty]);
        assert_eq!(problems("", 200, true), [TextProblem::Empty]);
    }

    #[test]
    fn invisible_characters_beside_visible_ones_are_allowed() {
        for text in [
            "信\u{200B}用",
            "👩\u{200D}💻",
            "نامه\u{200C}ها",
            "a\u{200E}b",
            "\u{FEFF}title",
        ] {
            assert_eq!(problems(text, 200, true), [], "{text:?}");
        }
    }

    #[test]
    fn bidirectional_overrides_and_isolates_are_refused_anywhere() {
        for c in ['\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}'] {
            let text = format!("admin{c}txt.exe");
            assert_eq!(problems(&text, 200, true), [TextProblem::BidiControl]);
            assert_eq!(problems(&text, 8000, false), [TextProblem::BidiControl]);
        }
        for c in ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'] {
            assert_eq!(
                problems(&format!("a{c}b"), 200, true),
                [TextProblem::BidiControl]
            );
        }
    }

    #[test]
    fn noncharacters_are_refused_anywhere() {
        for c in [
            '\u{FDD0}',
            '\u{FDEF}',
            '\u{FFFE}',
            '\u{FFFF}',
            '\u{1FFFE}',
            '\u{10FFFF}',
        ] {
            assert_eq!(
                problems(&format!("a{c}"), 200, true),
                [TextProblem::Noncharacter],
                "{c:?}"
            );
        }
        let all = (0..=0x10_FFFF)
            .filter_map(char::from_u32)
            .filter(|c| is_noncharacter(*c))
            .count();
        assert_eq!(all, 66);
        for fine in ['\u{FDCF}', '\u{FDF0}', '\u{FFFD}', '\u{1FFFD}'] {
            assert!(!is_noncharacter(fine), "{fine:?}");
        }
    }

    #[test]
    fn every_problem_is_reported_once() {
        assert_eq!(
            problems("\u{200B}\r\u{202E}\u{FFFF}", 200, true),
            [
                TextProblem::Control,
                TextProblem::BidiControl,
                TextProblem::Noncharacter
            ]
        );
        assert_eq!(
            problems(&"许".repeat(201), 200, true),
            [TextProblem::TooLong(201)]
        );
    }

    #[test]
    fn the_openapi_pattern_accepts_exactly_what_the_rule_accepts() {
        let optional = regex::Regex::new(&pattern(false)).expect("a valid pattern");
        let required = regex::Regex::new(&pattern(true)).expect("a valid pattern");
        let agree = |s: &str| {
            assert_eq!(
                optional.is_match(s),
                problems(s, usize::MAX, false).is_empty(),
                "optional {s:?}"
            );
            assert_eq!(
                required.is_match(s),
                problems(s, usize::MAX, true).is_empty(),
                "required {s:?}"
            );
        };
        for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
            agree(&c.to_string());
        }
        let samples = [
            "",
            "a",
            "许",
            " ",
            "\n",
            "\t",
            "\r",
            "\u{200B}",
            "\u{202E}",
            "\u{FFFF}",
            "\u{3000}",
            "\u{E0041}",
            "\u{1FFFE}",
            "\u{85}",
        ];
        for a in samples {
            for b in samples {
                for c in samples {
                    agree(&format!("{a}{b}{c}"));
                }
            }
        }
    }
}
