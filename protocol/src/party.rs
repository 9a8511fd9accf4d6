//! Who trades: the unified social credit code (统一社会信用代码, GB 32100-2015) that names a legal
//! entity in China, and the kinds of market participant the Xuchang plan names (section 16 and
//! 17). These are value types with one text form each; which parties a zone admits, and what
//! they may do, is the node's registry (`xchg-node`'s `catalog::parties`). Neither travels
//! between zones in protocol version 1: a listing names its party by [`crate::PartyId`] only.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::PartyId;
use crate::listing::{ValidationError, Violations};

/// The 31 characters a credit code is written in, in the order of their values 0 to 30:
/// the digits and the capital letters less I, O, S, V and Z (GB 32100-2015, table 1).
pub const CREDIT_CODE_ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Characters in a credit code.
pub const CREDIT_CODE_CHARS: usize = 18;

/// The weight of each of the first 17 characters: 3^(i-1) mod 31 for position i.
const WEIGHTS: [u32; 17] = {
    let mut w = [1u32; 17];
    let mut i = 1;
    while i < 17 {
        w[i] = w[i - 1] * 3 % 31;
        i += 1;
    }
    w
};

/// The value (0 to 30) of a credit-code character, or `None` outside the alphabet.
fn value_of(c: char) -> Option<u32> {
    CREDIT_CODE_ALPHABET
        .find(c)
        .and_then(|i| u32::try_from(i).ok())
}

/// The check character (the 18th) of a credit code whose first 17 characters are `body`:
/// 31 − (Σ value × weight mod 31), where 31 is written `0`. `None` unless `body` is 17
/// characters of the alphabet.
pub fn check_character(body: &str) -> Option<char> {
    if body.chars().count() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (c, w) in body.chars().zip(WEIGHTS) {
        sum += value_of(c)? * w;
    }
    let check = (31 - sum % 31) % 31;
    CREDIT_CODE_ALPHABET
        .chars()
        .nth(usize::try_from(check).ok()?)
}

/// Why a string is not a unified social credit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditCodeError {
    /// Not 18 characters.
    #[error("a unified social credit code has 18 characters; this one has {0}")]
    Length(usize),
    /// A character outside the code's alphabet.
    #[error(
        "character {position} ({found:?}) is not one of 0-9 A-H J-N P-R T-U W-Y: a credit code \
         is written in capitals, without I, O, S, V and Z"
    )]
    Character {
        /// Its position, from 1.
        position: usize,
        /// The character.
        found: char,
    },
    /// Characters 3 to 8, the administrative division code, are not digits.
    #[error(
        "characters 3 to 8 are the registering authority's administrative division code, six \
         digits; character {position} is {found:?}"
    )]
    Division {
        /// Its position, from 1.
        position: usize,
        /// The character.
        found: char,
    },
    /// The 18th character is not the one the first 17 give.
    #[error(
        "the check character (the 18th) of a code beginning {body} is {expected}, not \
         {found}: a character is mistyped"
    )]
    Check {
        /// The first 17 characters.
        body: String,
        /// The check character they give.
        expected: char,
        /// The 18th character given.
        found: char,
    },
}

/// A unified social credit code (统一社会信用代码): 18 characters — the registering
/// authority, the kind of entity, the six-digit administrative division, the nine-character
/// organisation code, and a check character over the first 17 (GB 32100-2015).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CreditCode(String);

impl CreditCode {
    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code made of `body` (17 characters of the alphabet) and its check character.
    ///
    /// # Errors
    /// As parsing: a `body` that is not 17 characters of the alphabet with a six-digit division.
    pub fn with_check(body: &str) -> Result<CreditCode, CreditCodeError> {
        let check = check_character(body).unwrap_or('0');
        let mut code = body.to_owned();
        code.push(check);
        code.parse()
    }
}

impl FromStr for CreditCode {
    type Err = CreditCodeError;

    fn from_str(s: &str) -> Result<Self, CreditCodeError> {
        let chars: Vec<char> = s.chars().collect();
        if chars.len() != CREDIT_CODE_CHARS {
            return Err(CreditCodeError::Length(chars.len()));
        }
        for (i, c) in chars.iter().enumerate() {
            if value_of(*c).is_none() {
                return Err(CreditCodeError::Character {
                    position: i + 1,
                    found: *c,
                });
            }
        }
        if let Some((i, c)) = chars
            .iter()
            .enumerate()
            .take(8)
            .skip(2)
            .find(|(_, c)| !c.is_ascii_digit())
        {
            return Err(CreditCodeError::Division {
                position: i + 1,
                found: *c,
            });
        }
        let body: String = chars[..17].iter().collect();
        let expected = check_character(&body).unwrap_or('0');
        if chars[17] != expected {
            return Err(CreditCodeError::Check {
                body,
                expected,
                found: chars[17],
            });
        }
        Ok(CreditCode(s.to_owned()))
    }
}

impl fmt::Display for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CreditCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CreditCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A kind of market participant (交易主体), as the Xuchang plan lists them. A party has one or
/// more kinds. The wire names are stable: a kind is added, never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PartyKind {
    /// 数据资源持有方: holds data resources.
    ResourceHolder,
    /// 数据加工使用方: processes and uses data.
    Processor,
    /// 数据产品经营方: operates data products.
    ProductOperator,
    /// 资源型数据商: a data merchant of resources.
    MerchantResource,
    /// 集成型数据商: a data merchant integrating sources.
    MerchantIntegration,
    /// 渠道型数据商: a data merchant selling through its channels.
    MerchantChannel,
    /// 科技型数据商: a data merchant of technology.
    MerchantTechnology,
    /// 委托型数据商: a data merchant acting on entrustment.
    MerchantEntrusted,
    /// 媒体型数据商: a media data merchant.
    MerchantMedia,
    /// 知识型数据商: a knowledge data merchant.
    MerchantKnowledge,
    /// 平台型数据商: a platform data merchant.
    MerchantPlatform,
    /// 数据经纪人: a data broker, acting for other parties.
    DataBroker,
    /// 第三方专业服务机构 (数据集成): data integration services.
    ServiceIntegration,
    /// 第三方专业服务机构 (数据经纪): brokerage services.
    ServiceBrokerage,
    /// 第三方专业服务机构 (资产评估): asset valuation services.
    ServiceValuation,
    /// 第三方专业服务机构 (交易撮合): trade matchmaking services.
    ServiceMatchmaking,
}

impl PartyKind {
    /// Every kind, in the plan's order.
    pub const ALL: [PartyKind; 16] = [
        PartyKind::ResourceHolder,
        PartyKind::Processor,
        PartyKind::ProductOperator,
        PartyKind::MerchantResource,
        PartyKind::MerchantIntegration,
        PartyKind::MerchantChannel,
        PartyKind::MerchantTechnology,
        PartyKind::MerchantEntrusted,
        PartyKind::MerchantMedia,
        PartyKind::MerchantKnowledge,
        PartyKind::MerchantPlatform,
        PartyKind::DataBroker,
        PartyKind::ServiceIntegration,
        PartyKind::ServiceBrokerage,
        PartyKind::ServiceValuation,
        PartyKind::ServiceMatchmaking,
    ];

    /// The kinds whose trade is acting for other parties: only a party of one of them may be
    /// entrusted as a broker.
    pub const BROKERS: [PartyKind; 3] = [
        PartyKind::DataBroker,
        PartyKind::MerchantEntrusted,
        PartyKind::ServiceBrokerage,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PartyKind::ResourceHolder => "resource_holder",
            PartyKind::Processor => "processor",
            PartyKind::ProductOperator => "product_operator",
            PartyKind::MerchantResource => "merchant_resource",
            PartyKind::MerchantIntegration => "merchant_integration",
            PartyKind::MerchantChannel => "merchant_channel",
            PartyKind::MerchantTechnology => "merchant_technology",
            PartyKind::MerchantEntrusted => "merchant_entrusted",
            PartyKind::MerchantMedia => "merchant_media",
            PartyKind::MerchantKnowledge => "merchant_knowledge",
            PartyKind::MerchantPlatform => "merchant_platform",
            PartyKind::DataBroker => "data_broker",
            PartyKind::ServiceIntegration => "service_integration",
            PartyKind::ServiceBrokerage => "service_brokerage",
            PartyKind::ServiceValuation => "service_valuation",
            PartyKind::ServiceMatchmaking => "service_matchmaking",
        }
    }

    /// The plan's own name for it.
    pub fn label_zh(self) -> &'static str {
        match self {
            PartyKind::ResourceHolder => "数据资源持有方",
            PartyKind::Processor => "数据加工使用方",
            PartyKind::ProductOperator => "数据产品经营方",
            PartyKind::MerchantResource => "资源型数据商",
            PartyKind::MerchantIntegration => "集成型数据商",
            PartyKind::MerchantChannel => "渠道型数据商",
            PartyKind::MerchantTechnology => "科技型数据商",
            PartyKind::MerchantEntrusted => "委托型数据商",
            PartyKind::MerchantMedia => "媒体型数据商",
            PartyKind::MerchantKnowledge => "知识型数据商",
            PartyKind::MerchantPlatform => "平台型数据商",
            PartyKind::DataBroker => "数据经纪人",
            PartyKind::ServiceIntegration => "数据集成服务机构",
            PartyKind::ServiceBrokerage => "数据经纪服务机构",
            PartyKind::ServiceValuation => "资产评估服务机构",
            PartyKind::ServiceMatchmaking => "交易撮合服务机构",
        }
    }

    /// Whether a party of this kind may act for others under an entrustment.
    pub fn acts_for_others(self) -> bool {
        PartyKind::BROKERS.contains(&self)
    }
}

impl fmt::Display for PartyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no party kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown party kind {0:?}; expected one of {list}", list = kind_list())]
pub struct UnknownPartyKind(pub String);

fn kind_list() -> String {
    PartyKind::ALL.map(PartyKind::as_str).join(", ")
}

impl FromStr for PartyKind {
    type Err = UnknownPartyKind;

    fn from_str(s: &str) -> Result<Self, UnknownPartyKind> {
        PartyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownPartyKind(s.to_owned()))
    }
}

/// The lengths of a party's texts, in characters.
pub mod limits {
    /// Legal name.
    pub const NAME_CHARS: usize = 200;
    /// The contact person's name.
    pub const CONTACT_NAME_CHARS: usize = 100;
    /// A phone number.
    pub const PHONE_CHARS: usize = 32;
    /// An e-mail address (RFC 5321's limit).
    pub const EMAIL_CHARS: usize = 254;
}

/// What a phone number looks like: digits, with spaces and `-` inside and an optional leading
/// `+`; 5 to 32 characters ([`Contact::validate`] checks exactly this).
pub const PHONE_PATTERN: &str = r"^\+?[0-9][0-9 -]{3,29}[0-9]$";

/// What an e-mail address looks like: printable ASCII without spaces, one `@`, and a `.` inside
/// the domain; at most 254 characters ([`Contact::validate`] checks exactly this).
pub const EMAIL_PATTERN: &str = r"^[!-?A-~]+@[!-?A-~]+\.[!-?A-~]+$";

/// Whom to reach at a party: a person, and a phone number or an e-mail address (or both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// The contact person (or desk).
    pub name: String,
    /// A phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// An e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

fn phone_ok(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or(phone);
    let b = digits.as_bytes();
    (5..=31).contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_digit)
        && b.last().is_some_and(u8::is_ascii_digit)
        && b.iter()
            .all(|c| c.is_ascii_digit() || *c == b' ' || *c == b'-')
}

fn email_ok(email: &str) -> bool {
    // Printable ASCII other than space and `@`.
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_graphic() && c != b'@');
    match email.split_once('@') {
        Some((local, domain)) => {
            email.len() <= limits::EMAIL_CHARS
                && plain(local)
                && plain(domain)
                && domain.len() >= 3
                && domain[1..domain.len() - 1].contains('.')
        }
        None => false,
    }
}

impl Contact {
    fn check(&self, v: &mut Violations, at: &str) {
        v.text(
            &format!("{at}name"),
            &self.name,
            limits::CONTACT_NAME_CHARS,
            true,
        );
        if let Some(phone) = &self.phone
            && !phone_ok(phone)
        {
            v.add(
                format!("{at}phone"),
                "expected 5 to 32 characters: digits, spaces and '-' inside, an optional \
                 leading '+', e.g. \"0374-1234567\"",
            );
        }
        if let Some(email) = &self.email
            && !email_ok(email)
        {
            v.add(
                format!("{at}email"),
                "expected an e-mail address: printable ASCII without spaces, one '@', a '.' \
                 inside the domain, at most 254 characters",
            );
        }
        if self.phone.is_none() && self.email.is_none() {
            v.add(
                format!("{at}phone"),
                "a contact needs a phone number or an e-mail address",
            );
        }
    }

    /// Checks every rule of a contact.
    ///
    /// # Errors
    /// Every broken rule, with its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        self.check(&mut v, "");
        v.finish()
    }
}

/// A party as it applies to an exchange and as the registry keeps it: who it is (its id in
/// listings, its legal name, its credit code), what kinds of participant it is, whom to reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PartyProfile {
    /// The party's id: what a listing's `provider.id` and a token's `party` hold.
    pub id: PartyId,
    /// Its legal name, as registered (e.g. `禹州市信用中心`).
    pub name: String,
    /// Its unified social credit code.
    pub credit_code: CreditCode,
    /// What kinds of participant it is: at least one, each once.
    pub kinds: Vec<PartyKind>,
    /// Whom to reach.
    pub contact: Contact,
}

impl PartyProfile {
    /// Checks every rule a profile's typed fields do not already hold (the id and the credit
    /// code are checked as they are parsed): the name's text rule, kinds, the contact.
    ///
    /// # Errors
    /// Every broken rule, with its field (`name`, `kinds`, `contact.email`, ...).
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        v.text("name", &self.name, limits::NAME_CHARS, true);
        if self.kinds.is_empty() {
            v.add("kinds", "at least one kind of participant required");
        }
        let mut seen = Vec::with_capacity(self.kinds.len());
        for kind in &self.kinds {
            if seen.contains(kind) {
                v.add("kinds", format!("lists {kind} twice"));
            }
            seen.push(*kind);
        }
        self.contact.check(&mut v, "contact.");
        v.finish()
    }

    /// Whether it may act for other parties: one of its kinds is a broker's
    /// ([`PartyKind::BROKERS`]).
    pub fn is_broker(&self) -> bool {
        self.kinds.iter().any(|k| k.acts_for_others())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes whose check characters were computed by hand from the definition (a separate
    /// script, not this code): 3^(i-1) mod 31 weights, 31 − (sum mod 31), 31 written 0. The
    /// first is the example published with the standard's guidance; the last two exercise the
    /// ends of the range (check value 30, `Y`, and 31 written `0`).
    const VALID: [&str; 5] = [
        "91350100M000100Y43",
        "91411000MA44XD2K1M",
        "11411081005012345B",
        "91411081751284935Y",
        "9141108175128493T0",
    ];

    #[test]
    fn the_weights_are_powers_of_three_modulo_31() {
        assert_eq!(
            WEIGHTS,
            [
                1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28
            ]
        );
        assert_eq!(CREDIT_CODE_ALPHABET.chars().count(), 31);
    }

    #[test]
    fn codes_with_their_computed_check_character_parse_and_print_back() {
        for code in VALID {
            let parsed: CreditCode = code.parse().unwrap_or_else(|e| panic!("{code}: {e}"));
            assert_eq!(parsed.as_str(), code);
            assert_eq!(check_character(&code[..17]), code.chars().last());
            assert_eq!(CreditCode::with_check(&code[..17]).ok(), Some(parsed));
        }
    }

    #[test]
    fn a_wrong_check_character_is_refused_naming_the_right_one() {
        let err = "91411000MA44XD2K1N"
            .parse::<CreditCode>()
            .expect_err("a wrong check character");
        assert_eq!(
            err,
            CreditCodeError::Check {
                body: "91411000MA44XD2K1".into(),
                expected: 'M',
                found: 'N'
            }
        );
        // Two characters swapped: the weights differ, so the check catches it.
        let swapped = "91411000AM44XD2K1M";
        assert!(matches!(
            swapped.parse::<CreditCode>(),
            Err(CreditCodeError::Check { .. })
        ));
    }

    #[test]
    fn a_code_of_another_length_is_refused_counting_characters_not_bytes() {
        for (code, len) in [
            ("", 0),
            ("91411000MA44XD2K1", 17),
            ("91411000MA44XD2K1MM", 19),
            ("统一社会信用代码", 8),
        ] {
            assert_eq!(
                code.parse::<CreditCode>(),
                Err(CreditCodeError::Length(len)),
                "{code}"
            );
        }
    }

    #[test]
    fn letters_outside_the_alphabet_lowercase_and_other_characters_are_refused_by_position() {
        for (code, position, found) in [
            ("91411000mA44XD2K1M", 9, 'm'),
            ("91411000IA44XD2K1M", 9, 'I'),
            ("91411000OA44XD2K1M", 9, 'O'),
            ("91411000SA44XD2K1M", 9, 'S'),
            ("91411000VA44XD2K1M", 9, 'V'),
            ("91411000ZA44XD2K1M", 9, 'Z'),
            ("91411000 A44XD2K1M", 9, ' '),
            ("91411000MA44XD2K1Ｍ", 18, 'Ｍ'),
        ] {
            assert_eq!(
                code.parse::<CreditCode>(),
                Err(CreditCodeError::Character { position, found }),
                "{code}"
            );
        }
    }

    #[test]
    fn the_division_code_is_six_digits() {
        let err = "91A11000MA44XD2K1M"
            .parse::<CreditCode>()
            .expect_err("a letter in the division");
        assert_eq!(
            err,
            CreditCodeError::Division {
                position: 3,
                found: 'A'
            }
        );
    }

    #[test]
    fn party_kinds_have_stable_snake_case_wire_names() {
        for kind in PartyKind::ALL {
            let json = serde_json::to_string(&kind).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(kind.as_str().parse::<PartyKind>(), Ok(kind));
        }
        assert!("broker".parse::<PartyKind>().is_err());
        assert!(PartyKind::DataBroker.acts_for_others());
        assert!(!PartyKind::ResourceHolder.acts_for_others());
    }

    fn profile() -> PartyProfile {
        PartyProfile {
            id: "yuzhou-credit-center".parse().expect("a party id"),
            name: "禹州市信用中心".into(),
            credit_code: "11411081005012345B".parse().expect("a credit code"),
            kinds: vec![PartyKind::ResourceHolder, PartyKind::ProductOperator],
            contact: Contact {
                name: "数据专员".into(),
                phone: Some("0374-8888888".into()),
                email: None,
            },
        }
    }

    fn fields(p: &PartyProfile) -> Vec<String> {
        p.validate()
            .err()
            .map(|e| e.0.into_iter().map(|f| f.field).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_profile_with_a_name_a_kind_and_a_way_to_reach_it_is_valid() {
        assert_eq!(fields(&profile()), Vec::<String>::new());
    }

    #[test]
    fn a_profile_names_every_broken_rule() {
        let mut p = profile();
        p.name = "\u{200b} ".into();
        p.kinds = vec![PartyKind::DataBroker, PartyKind::DataBroker];
        p.contact = Contact {
            name: String::new(),
            phone: Some("12".into()),
            email: Some("nobody".into()),
        };
        assert_eq!(
            fields(&p),
            [
                "name",
                "kinds",
                "contact.name",
                "contact.phone",
                "contact.email"
            ]
        );
        p.kinds.clear();
        p.contact.phone = None;
        p.contact.email = None;
        assert!(fields(&p).contains(&"contact.phone".to_owned()));
        assert!(fields(&p).contains(&"kinds".to_owned()));
    }

    #[test]
    fn phone_and_email_checks_accept_exactly_what_their_patterns_state() {
        let phone = regex::Regex::new(PHONE_PATTERN).expect("the phone pattern");
        let email = regex::Regex::new(EMAIL_PATTERN).expect("the e-mail pattern");
        for sample in [
            "0374-8888888",
            "+86 374 888 8888",
            "12345",
            "1234",
            "+1234",
            "-12345",
            "12345-",
            "123456789012345678901234567890123",
            "1234567890123456789012345678901",
            "+1234567890123456789012345678901",
            "0374_888",
            "０３７４８８８８",
        ] {
            assert_eq!(phone_ok(sample), phone.is_match(sample), "phone {sample:?}");
        }
        for sample in [
            "data@yuzhou.example",
            "a@b.c",
            "a@.bc",
            "a@bc.",
            "a@bc",
            "@b.c",
            "a b@c.d",
            "a@b@c.d",
            "数据@b.c",
            "a@b..c",
        ] {
            assert_eq!(email_ok(sample), email.is_match(sample), "email {sample:?}");
        }
    }
}
