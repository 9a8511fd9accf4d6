//! Listings (data products) and the rules every valid listing obeys.
//!
//! A [`ListingDraft`] is what a provider submits; a [`Listing`] is a draft plus what the node
//! assigns (origin zone, version, times, and from version 2 on the listing id). A listing's id is
//! the content id of its version-1 encoding; later versions carry that id in `listing_id`, so the
//! same product has the same id in every zone and exchange.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{ContentId, PartyId, ZoneId};
use crate::time::Timestamp;

/// Bounds on listing fields. Characters are Unicode scalar values, so a Chinese title of 200
/// characters is allowed.
pub mod limits {
    /// Title length in characters.
    pub const TITLE_CHARS: usize = 200;
    /// Description length in characters.
    pub const DESCRIPTION_CHARS: usize = 8_000;
    /// Length of short free-text fields (names, scenario and keyword entries, coverage).
    pub const SHORT_TEXT_CHARS: usize = 200;
    /// Entries in `scenarios`.
    pub const SCENARIOS: usize = 32;
    /// Entries in `keywords`.
    pub const KEYWORDS: usize = 32;
    /// Length of a category.
    pub const CATEGORY_CHARS: usize = 64;
}

/// Classification and grading (分类分级). Ordered: `public < general < important < core`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// Open data.
    Public,
    /// 一般数据.
    General,
    /// 重要数据: never leaves its zone.
    Important,
    /// 核心数据: never leaves its zone.
    Core,
}

/// What kind of product it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProductForm {
    /// A data set.
    Dataset,
    /// A data service behind an API.
    Api,
    /// A trained model.
    Model,
    /// An analysis report.
    Report,
    /// A verification (check) service.
    Verification,
    /// An algorithm or data tool.
    Algorithm,
}

/// How the product is delivered (交付方式).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Files handed over: the data leaves its domain.
    File,
    /// Records served over an API: the data leaves its domain.
    Api,
    /// Computation in a sandbox at the provider.
    Sandbox,
    /// Privacy-preserving computation (MPC, federated learning, ...).
    PrivacyComputing,
    /// Only a model's outputs leave.
    ModelOutput,
    /// Only yes/no verification answers leave.
    Verification,
}

impl DeliveryMode {
    /// Whether the data stays in its domain with this mode (数据不出域, 可用不可见).
    pub fn is_in_domain(self) -> bool {
        !matches!(self, DeliveryMode::File | DeliveryMode::Api)
    }
}

/// A right claimed over the data (三权分置).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// 数据资源持有权.
    Holding,
    /// 数据加工使用权.
    ProcessingUse,
    /// 数据产品经营权.
    Operating,
}

/// How often the data is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UpdateFrequency {
    /// Continuously.
    Realtime,
    /// Every hour.
    Hourly,
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
    /// Every month.
    Monthly,
    /// Every quarter.
    Quarterly,
    /// Every year.
    Yearly,
    /// When needed.
    Irregular,
    /// Never: a fixed data set.
    Static,
}

/// The pricing model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PricingModel {
    /// No charge; no amount.
    Free,
    /// One price for the product.
    Fixed,
    /// A price per call.
    PerCall,
    /// A price per subscription period.
    Subscription,
    /// Agreed case by case; no amount.
    Negotiated,
}

impl PricingModel {
    /// Whether this model needs an amount and a currency.
    pub fn needs_amount(self) -> bool {
        matches!(
            self,
            PricingModel::Fixed | PricingModel::PerCall | PricingModel::Subscription
        )
    }
}

/// A price. Money is a decimal string (`"0.50"`), never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// The pricing model.
    pub model: PricingModel,
    /// Decimal amount: up to 15 integer digits, up to 4 decimals, no sign, no leading zeros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// ISO 4217 currency code, e.g. `CNY`; present exactly when `amount` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// A provider: who offers the product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Stable party id.
    pub id: PartyId,
    /// Display name.
    pub name: String,
}

/// A reference to a registration certificate (登记证书) issued for the product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegistrationRef {
    /// The certificate number as printed by its issuer.
    pub certificate_id: String,
    /// The issuing registry or exchange, as a display string.
    pub issuer: String,
}

/// What a provider submits. Field names are the same in JSON and CBOR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ListingDraft {
    /// Product title.
    pub title: String,
    /// What the product contains and how it may be used.
    pub description: String,
    /// Who offers it.
    pub provider: Provider,
    /// Industry domain, e.g. `credit`, `healthcare`: `[a-z0-9_-]`, 1 to 64 characters.
    pub category: String,
    /// Product form.
    pub product_form: ProductForm,
    /// Classification level.
    pub classification: Classification,
    /// Whether it contains personal information.
    pub contains_personal_info: bool,
    /// Offered delivery modes: at least one, no repeats.
    pub delivery_modes: Vec<DeliveryMode>,
    /// Price.
    pub pricing: Pricing,
    /// Usage scenarios it may be applied for: at least one.
    pub scenarios: Vec<String>,
    /// Update frequency.
    pub update_frequency: UpdateFrequency,
    /// Rights claimed: at least one, no repeats.
    pub rights: Vec<Right>,
    /// Search keywords.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// Spatial coverage, e.g. `许昌市禹州市`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial_coverage: Option<String>,
    /// Temporal coverage, e.g. `2019-01 至今`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal_coverage: Option<String>,
    /// Registration certificate, where one was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<RegistrationRef>,
}

/// A listing as announced and stored: the draft plus what the origin zone assigns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Listing {
    /// Absent in version 1 (whose content id *is* the listing id); from version 2 on, the
    /// listing id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing_id: Option<ContentId>,
    /// Version, from 1.
    pub version: u32,
    /// The zone where it was submitted; its exchange is the part before the `/`.
    pub origin: ZoneId,
    /// When version 1 was submitted.
    pub created_at: Timestamp,
    /// When this version was submitted.
    pub updated_at: Timestamp,
    /// Product title.
    pub title: String,
    /// What the product contains and how it may be used.
    pub description: String,
    /// Who offers it.
    pub provider: Provider,
    /// Industry domain.
    pub category: String,
    /// Product form.
    pub product_form: ProductForm,
    /// Classification level.
    pub classification: Classification,
    /// Whether it contains personal information.
    pub contains_personal_info: bool,
    /// Offered delivery modes.
    pub delivery_modes: Vec<DeliveryMode>,
    /// Price.
    pub pricing: Pricing,
    /// Usage scenarios.
    pub scenarios: Vec<String>,
    /// Update frequency.
    pub update_frequency: UpdateFrequency,
    /// Rights claimed.
    pub rights: Vec<Right>,
    /// Search keywords.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// Spatial coverage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial_coverage: Option<String>,
    /// Temporal coverage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporal_coverage: Option<String>,
    /// Registration certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<RegistrationRef>,
}

/// One violated rule, with the field it concerns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the field, e.g. `pricing.amount`, `scenarios[2]`.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

/// Every rule a listing breaks (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError(pub Vec<FieldError>);

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects every broken rule of one object, so that all are reported at once.
#[derive(Default)]
pub(crate) struct Violations(Vec<FieldError>);

impl Violations {
    pub(crate) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// The text rule ([`crate::text`]): at most `max` characters; no control character other
    /// than newline and tab, no bidirectional override or isolate, no noncharacter; and when
    /// `required`, at least one visible character.
    pub(crate) fn text(&mut self, field: &str, value: &str, max: usize, required: bool) {
        for problem in crate::text::problems(value, max, required) {
            self.add(field, problem.message(max));
        }
    }

    fn text_list(&mut self, field: &str, values: &[String], max_len: usize, min: usize) {
        if values.len() < min {
            self.add(field, format!("at least {min} entry required"));
        }
        if values.len() > max_len {
            self.add(
                field,
                format!("{} entries, at most {max_len} allowed", values.len()),
            );
        }
        for (i, v) in values.iter().enumerate() {
            self.text(&format!("{field}[{i}]"), v, limits::SHORT_TEXT_CHARS, true);
            if values[..i].contains(v) {
                self.add(format!("{field}[{i}]"), "repeats an earlier entry");
            }
        }
    }

    pub(crate) fn finish(self) -> Result<(), ValidationError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationError(self.0))
        }
    }
}

fn distinct<T: PartialEq>(values: &[T]) -> bool {
    values
        .iter()
        .enumerate()
        .all(|(i, v)| !values[..i].contains(v))
}

/// Checks a decimal amount: `0`, `12`, `0.50`, `1234.5678`; no sign, exponent or leading zero.
pub fn valid_amount(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let int_ok = !int.is_empty()
        && int.len() <= 15
        && int.bytes().all(|c| c.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'));
    let frac_ok =
        frac.is_none_or(|f| !f.is_empty() && f.len() <= 4 && f.bytes().all(|c| c.is_ascii_digit()));
    int_ok && frac_ok
}

/// The content rules, shared by drafts and listings; `v` collects violations.
fn check_content(v: &mut Violations, d: &ListingDraft) {
    v.text("title", &d.title, limits::TITLE_CHARS, true);
    v.text(
        "description",
        &d.description,
        limits::DESCRIPTION_CHARS,
        false,
    );
    v.text(
        "provider.name",
        &d.provider.name,
        limits::SHORT_TEXT_CHARS,
        true,
    );
    let category_ok = !d.category.is_empty()
        && d.category.len() <= limits::CATEGORY_CHARS
        && d.category
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
    if !category_ok {
        v.add(
            "category",
            "expected 1 to 64 characters of lowercase a-z, 0-9, '_' and '-', e.g. \"credit\"",
        );
    }
    if d.delivery_modes.is_empty() {
        v.add("delivery_modes", "at least one delivery mode required");
    } else if !distinct(&d.delivery_modes) {
        v.add("delivery_modes", "lists a mode twice");
    }
    if d.rights.is_empty() {
        v.add("rights", "at least one right required");
    } else if !distinct(&d.rights) {
        v.add("rights", "lists a right twice");
    }
    v.text_list("scenarios", &d.scenarios, limits::SCENARIOS, 1);
    v.text_list("keywords", &d.keywords, limits::KEYWORDS, 0);
    for (field, value) in [
        ("spatial_coverage", &d.spatial_coverage),
        ("temporal_coverage", &d.temporal_coverage),
    ] {
        if let Some(value) = value {
            v.text(field, value, limits::SHORT_TEXT_CHARS, true);
        }
    }
    if let Some(r) = &d.registration {
        v.text(
            "registration.certificate_id",
            &r.certificate_id,
            limits::SHORT_TEXT_CHARS,
            true,
        );
        v.text(
            "registration.issuer",
            &r.issuer,
            limits::SHORT_TEXT_CHARS,
            true,
        );
    }
    let p = &d.pricing;
    match (p.model.needs_amount(), &p.amount) {
        (true, None) => v.add("pricing.amount", "required for this pricing model"),
        (false, Some(_)) => v.add(
            "pricing.amount",
            "must be absent for free and negotiated pricing",
        ),
        (_, Some(a)) if !valid_amount(a) => v.add(
            "pricing.amount",
            "expected a decimal string such as \"0.50\" (at most 15 integer digits and 4 decimals)",
        ),
        _ => {}
    }
    match (&p.amount, &p.currency) {
        (Some(_), None) => v.add("pricing.currency", "required when an amount is given"),
        (None, Some(_)) => v.add("pricing.currency", "must be absent when there is no amount"),
        (_, Some(c)) if !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())) => v.add(
            "pricing.currency",
            "expected a three-letter ISO 4217 code such as \"CNY\"",
        ),
        _ => {}
    }
}

impl ListingDraft {
    /// Checks every content rule and reports all violations.
    ///
    /// # Errors
    /// [`ValidationError`] listing each broken rule with its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        check_content(&mut v, self);
        v.finish()
    }
}

impl Listing {
    /// Version 1 of a new listing.
    pub fn first_version(draft: ListingDraft, origin: ZoneId, now: Timestamp) -> Self {
        Self::from_draft(draft, None, 1, origin, now, now)
    }

    /// The next version of `self`, with new content from `draft`.
    pub fn next_version(&self, draft: ListingDraft, now: Timestamp) -> Self {
        Self::from_draft(
            draft,
            Some(self.id()),
            self.version.saturating_add(1),
            self.origin.clone(),
            self.created_at,
            now,
        )
    }

    fn from_draft(
        d: ListingDraft,
        listing_id: Option<ContentId>,
        version: u32,
        origin: ZoneId,
        created_at: Timestamp,
        updated_at: Timestamp,
    ) -> Self {
        Listing {
            listing_id,
            version,
            origin,
            created_at,
            updated_at,
            title: d.title,
            description: d.description,
            provider: d.provider,
            category: d.category,
            product_form: d.product_form,
            classification: d.classification,
            contains_personal_info: d.contains_personal_info,
            delivery_modes: d.delivery_modes,
            pricing: d.pricing,
            scenarios: d.scenarios,
            update_frequency: d.update_frequency,
            rights: d.rights,
            keywords: d.keywords,
            spatial_coverage: d.spatial_coverage,
            temporal_coverage: d.temporal_coverage,
            registration: d.registration,
        }
    }

    /// The provider-editable content of this version.
    pub fn draft(&self) -> ListingDraft {
        ListingDraft {
            title: self.title.clone(),
            description: self.description.clone(),
            provider: self.provider.clone(),
            category: self.category.clone(),
            product_form: self.product_form,
            classification: self.classification,
            contains_personal_info: self.contains_personal_info,
            delivery_modes: self.delivery_modes.clone(),
            pricing: self.pricing.clone(),
            scenarios: self.scenarios.clone(),
            update_frequency: self.update_frequency,
            rights: self.rights.clone(),
            keywords: self.keywords.clone(),
            spatial_coverage: self.spatial_coverage.clone(),
            temporal_coverage: self.temporal_coverage.clone(),
            registration: self.registration.clone(),
        }
    }

    /// Canonical CBOR of this version.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Listings hold only strings, integers, booleans, arrays and maps: always encodable.
        crate::canonical::to_canonical(self).unwrap_or_default()
    }

    /// The content id of this version.
    pub fn content_id(&self) -> ContentId {
        ContentId::of(&self.canonical_bytes())
    }

    /// The listing id: `listing_id` from version 2 on, this version's content id in version 1.
    pub fn id(&self) -> ContentId {
        self.listing_id.unwrap_or_else(|| self.content_id())
    }

    /// Checks the content rules and the version rules.
    ///
    /// # Errors
    /// [`ValidationError`] listing each broken rule.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut v = Violations::default();
        match (self.version, self.listing_id) {
            (0, _) => v.add("version", "versions start at 1"),
            (1, Some(_)) => v.add("listing_id", "must be absent in version 1"),
            (2.., None) => v.add("listing_id", "required from version 2 on"),
            _ => {}
        }
        if self.updated_at < self.created_at {
            v.add("updated_at", "earlier than created_at");
        }
        if self.version == 1 && self.updated_at != self.created_at {
            v.add("updated_at", "must equal created_at in version 1");
        }
        check_content(&mut v, &self.draft());
        v.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn example_draft() -> ListingDraft {
        serde_json::from_str(
            r#"{"title":"禹州市企业信用核验接口","description":"按统一社会信用代码核验企业登记与信用状态",
            "provider":{"id":"yuzhou-credit-center","name":"禹州市信用中心"},"category":"credit",
            "product_form":"verification","classification":"general","contains_personal_info":false,
            "delivery_modes":["verification","api"],
            "pricing":{"model":"per_call","amount":"0.50","currency":"CNY"},
            "scenarios":["企业贷款授信审查"],"update_frequency":"daily","rights":["holding","operating"]}"#,
        )
        .expect("the issue's example body parses")
    }

    #[test]
    fn the_example_body_from_the_api_issue_is_a_valid_draft() {
        example_draft().validate().expect("valid");
    }

    #[test]
    fn every_broken_rule_is_reported_with_its_field() {
        let mut d = example_draft();
        d.title = "  ".into();
        d.delivery_modes.clear();
        d.scenarios.clear();
        d.pricing.amount = Some("-1".into());
        d.category = "Credit Info".into();
        let err = d.validate().expect_err("invalid");
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "title",
                "category",
                "delivery_modes",
                "scenarios",
                "pricing.amount"
            ]
        );
    }

    #[test]
    fn an_amount_is_required_exactly_when_the_model_needs_one() {
        let mut d = example_draft();
        d.pricing = Pricing {
            model: PricingModel::Free,
            amount: None,
            currency: None,
        };
        d.validate().expect("free without amount");
        d.pricing.amount = Some("1".into());
        d.pricing.currency = Some("CNY".into());
        assert_eq!(
            d.validate().expect_err("free with amount").0[0].field,
            "pricing.amount"
        );
        d.pricing.model = PricingModel::Fixed;
        d.validate().expect("fixed with amount");
        d.pricing.currency = None;
        assert_eq!(
            d.validate().expect_err("no currency").0[0].field,
            "pricing.currency"
        );
    }

    #[test]
    fn amounts_are_plain_decimals() {
        for ok in ["0", "0.5", "0.50", "12", "1234.5678", "999999999999999"] {
            assert!(valid_amount(ok), "{ok}");
        }
        for bad in [
            "",
            "-1",
            "+1",
            "01",
            "1.",
            ".5",
            "1e3",
            "1.23456",
            "1,5",
            "0x10",
            "1000000000000000",
        ] {
            assert!(!valid_amount(bad), "{bad}");
        }
    }

    #[test]
    fn unknown_fields_in_a_draft_are_refused() {
        let err = serde_json::from_str::<ListingDraft>(r#"{"title":"x","colour":"red"}"#)
            .expect_err("unknown field");
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn later_versions_keep_the_first_versions_id() {
        let zone: ZoneId = "xuchang/yuzhou".parse().expect("zone");
        let v1 = Listing::first_version(example_draft(), zone, Timestamp(1_000));
        let mut d = example_draft();
        d.title.push_str("(第二版)");
        let v2 = v1.next_version(d, Timestamp(2_000));
        assert_eq!(v2.version, 2);
        assert_eq!(v2.id(), v1.id());
        assert_ne!(v2.content_id(), v1.content_id());
        v1.validate().expect("v1");
        v2.validate().expect("v2");
    }
}
