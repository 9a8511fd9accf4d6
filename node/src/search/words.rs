//! Words of a listing's text, as the search index stores them and as a query asks for them.
//!
//! Chinese has no spaces, so text is segmented into words with jieba's dictionary and its
//! hidden Markov model for words the dictionary lacks, plus the data market's own vocabulary
//! ([`MARKET_WORDS`]). Each word takes the next position (phrases are matched by position); a
//! word of three or more characters also stands, at the same position, for the dictionary words
//! inside it, so `信用` finds `信用评价`; and a word the dictionary does not know (a name, a new
//! term) also stands for its two-character pieces, which is how a query for an unknown word is
//! answered ([`query_words`]). Latin letters are lowercased; punctuation and spaces are not
//! words.

use std::sync::LazyLock;

use jieba_rs::Jieba;

/// Terms of the data-element market that a general dictionary splits or lacks, kept whole.
pub const MARKET_WORDS: &[&str] = &[
    "数据产品",
    "数据要素",
    "数据资产",
    "数据资源",
    "数据交易",
    "数据服务",
    "数据集",
    "数据接口",
    "数据沙箱",
    "数据脱敏",
    "数据确权",
    "数据质量",
    "数据安全",
    "数据治理",
    "数据空间",
    "可信数据空间",
    "公共数据",
    "政务数据",
    "企业数据",
    "个人数据",
    "隐私计算",
    "联邦学习",
    "模型输出",
    "授信",
    "征信",
    "信用评价",
    "信用核验",
    "企业信用",
    "普惠金融",
    "市场主体",
    "场景应用",
    "授权运营",
    "登记证书",
    "合规审查",
    "挂牌",
    "互认",
    "交付",
    "不动产",
    "公积金",
    "社保",
    "医保",
    "碳排放",
    "许昌",
    "禹州",
    "长葛",
    "鄢陵",
    "襄城",
    "建安",
    "魏都",
    "郑州",
];

/// The segmenter, with the market vocabulary added (built once, on first use: about 0.3 s).
static JIEBA: LazyLock<Jieba> = LazyLock::new(|| {
    let mut jieba = Jieba::new();
    for word in MARKET_WORDS {
        // A high frequency keeps the term whole where the dictionary would split it.
        jieba.add_word(word, Some(100_000), None);
    }
    jieba
});

/// Builds the segmenter now rather than on the first listing or query.
pub fn warm_up() {
    LazyLock::force(&JIEBA);
}

/// One word of a text and its position (the n-th word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word, lowercased.
    pub text: String,
    /// Its position: words standing for a part of a longer word share its position.
    pub position: usize,
    /// Its byte offsets in the text.
    pub from: usize,
    /// End of the byte range.
    pub to: usize,
}

fn is_word(s: &str) -> bool {
    s.chars().any(char::is_alphanumeric)
}

fn is_han(c: char) -> bool {
    matches!(c, '\u{3400}'..='\u{4dbf}' | '\u{4e00}'..='\u{9fff}' | '\u{f900}'..='\u{faff}')
}

/// A word of jieba's cut and where it is.
struct Piece<'a> {
    word: &'a str,
    byte_start: usize,
    byte_end: usize,
}

/// jieba's words of `text`, without punctuation and spaces, a Latin compound joined by
/// connectors (`CANARY-CORE-91bd`, `v2.1`) cut into its alphanumeric parts.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    for token in JIEBA.cut(text, true) {
        if !is_word(token.word) {
            continue;
        }
        let mut start = 0;
        for part in token.word.split(|c: char| !c.is_alphanumeric()) {
            if !part.is_empty() {
                let from = start + (part.as_ptr() as usize - token.word[start..].as_ptr() as usize);
                out.push(Piece {
                    word: part,
                    byte_start: token.byte_start + from,
                    byte_end: token.byte_start + from + part.len(),
                });
                start = from + part.len();
            }
        }
    }
    out
}

/// `word` lowercased. Most words are Chinese or already lowercase, and `str::to_lowercase`
/// looks every character up in Unicode's tables (a seventh of the indexer's tokenising).
fn lowercase(word: &str) -> String {
    if word
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || is_han(c))
    {
        word.to_owned()
    } else {
        word.to_lowercase()
    }
}

/// The words of `text` as the index stores them, appended to `out` from position `first`;
/// returns the next free position.
pub fn index_words(text: &str, first: usize, out: &mut Vec<Word>) -> usize {
    let mut position = first;
    let mut chars: Vec<(usize, char)> = Vec::new();
    for token in pieces(text) {
        let word = lowercase(token.word);
        chars.clear();
        chars.extend(token.word.char_indices());
        let han = chars.iter().all(|&(_, c)| is_han(c));
        if han && chars.len() >= 3 {
            let known = JIEBA.has_word(token.word);
            let mut inner = |from: usize, len: usize| {
                let start = chars[from].0;
                let end = chars.get(from + len).map_or(token.word.len(), |&(i, _)| i);
                let part = &token.word[start..end];
                if len == 2 && !known || JIEBA.has_word(part) {
                    out.push(Word {
                        text: part.to_owned(),
                        position,
                        from: token.byte_start + start,
                        to: token.byte_start + end,
                    });
                }
            };
            for len in [2, 3] {
                if len < chars.len() {
                    for from in 0..=chars.len() - len {
                        inner(from, len);
                    }
                }
            }
        }
        out.push(Word {
            text: word,
            position,
            from: token.byte_start,
            to: token.byte_end,
        });
        position += 1;
    }
    position
}

/// The words of a query term, in order, as the index would have stored them; a Chinese word
/// of three or more characters that the dictionary does not know comes with its two-character
/// pieces too, for the index to fall back on.
pub fn query_words(term: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for token in pieces(term) {
        let chars: Vec<char> = token.word.chars().collect();
        let pieces = if chars.len() >= 2 && chars.iter().all(|&c| is_han(c)) {
            chars.windows(2).map(|w| w.iter().collect()).collect()
        } else {
            Vec::new()
        };
        out.push((lowercase(token.word), pieces));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        index_words(text, 0, &mut out);
        out.into_iter().map(|w| (w.text, w.position)).collect()
    }

    #[test]
    fn a_longer_word_also_stands_for_the_words_inside_it() {
        let words = texts("企业信用评价接口");
        let has = |w: &str| words.iter().any(|(t, _)| t == w);
        assert!(has("信用"), "{words:?}");
        assert!(has("评价"), "{words:?}");
        assert!(has("企业"), "{words:?}");
    }

    #[test]
    fn market_terms_stay_whole_and_latin_is_lowercased() {
        let words = texts("公共数据 API 接口, 数据产品 CANARY-CORE-91bd");
        let has = |w: &str| words.iter().any(|(t, _)| t == w);
        assert!(has("公共数据"), "{words:?}");
        assert!(has("数据产品"), "{words:?}");
        assert!(has("api"), "{words:?}");
        assert!(has("canary") && has("core") && has("91bd"), "{words:?}");
        assert!(!words.iter().any(|(t, _)| t.trim().is_empty() || t == ","));
    }

    #[test]
    fn positions_advance_by_word_and_parts_share_their_words_position() {
        let words = texts("信用评价 数据");
        let of = |w: &str| words.iter().find(|(t, _)| t == w).map(|(_, p)| *p);
        assert_eq!(of("信用"), of("信用评价"));
        assert_eq!(of("数据"), of("信用评价").map(|p| p + 1));
    }

    #[test]
    fn the_quick_lowercase_agrees_with_unicodes() {
        for word in [
            "信用评价",
            "api",
            "v2",
            "CANARY",
            "Ｑ币",
            "ΣΑΣ",
            "İstanbul",
            "ß",
            "数据API",
        ] {
            assert_eq!(lowercase(word), word.to_lowercase(), "{word}");
        }
    }

    #[test]
    fn a_query_word_carries_its_two_character_pieces() {
        let words = query_words("禹州市");
        assert!(!words.is_empty());
        let all: Vec<&String> = words.iter().flat_map(|(_, p)| p).collect();
        assert!(
            words.iter().any(|(w, _)| w.chars().count() >= 2) || !all.is_empty(),
            "{words:?}"
        );
    }
}
