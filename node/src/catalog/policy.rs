//! The policies at a zone's boundary, as pure functions: the export firewall (what may leave),
//! the recognition policy of an agreement (what is accepted from elsewhere), and in-domain
//! delivery (how a sensitive product may be delivered to a buyer it is authorised for).

use xchg_federation_config::{Agreement, ExportPolicy, PersonalInfoExport};
use xchg_protocol::{Classification, DeliveryMode, Listing};

/// Text form of an enum value (its serde name).
fn name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The delivery modes of `listing` that let data leave its domain.
fn out_of_domain_modes(listing: &Listing) -> Vec<String> {
    listing
        .delivery_modes
        .iter()
        .filter(|m| !m.is_in_domain())
        .map(name)
        .collect()
}

/// Whether `listing` may be announced outside its zone: `Ok(())`, or why not.
///
/// `important` and `core` listings never leave, whatever the ceiling. A product with personal
/// information leaves only if every delivery mode keeps the data in its domain (and never under
/// `personal_info = "never"`).
///
/// # Errors
/// The reason the firewall withholds the listing, for the record.
pub fn export(listing: &Listing, policy: &ExportPolicy) -> Result<(), String> {
    let c = listing.classification;
    if c >= Classification::Important {
        return Err(format!("classification {} never leaves its zone", name(&c)));
    }
    if c > policy.ceiling {
        return Err(format!(
            "classification {} is above the zone's export ceiling {}",
            name(&c),
            name(&policy.ceiling)
        ));
    }
    if listing.contains_personal_info {
        if policy.personal_info == PersonalInfoExport::Never {
            return Err("contains personal information, which this zone never exports".into());
        }
        let out = out_of_domain_modes(listing);
        if !out.is_empty() {
            return Err(format!(
                "contains personal information and is delivered by {} (data would leave its domain)",
                out.join(", ")
            ));
        }
    }
    Ok(())
}

/// Whether `listing` may be authorised for delivery by `mode` (数据不出域, 可用不可见): `Ok(())`,
/// or the rule that forbids it.
///
/// A product that is `important` or `core`, or contains personal information, is delivered
/// only in its domain: `sandbox`, `privacy_computing`, `model_output` or `verification`, never
/// `file` or raw `api`. Other products may be delivered by any mode.
///
/// # Errors
/// The rule and why it applies to this product, for the refusal.
pub fn in_domain(listing: &Listing, mode: DeliveryMode) -> Result<(), String> {
    if mode.is_in_domain() {
        return Ok(());
    }
    let c = listing.classification;
    let why = if c >= Classification::Important {
        format!("it is classified {}", name(&c))
    } else if listing.contains_personal_info {
        "it contains personal information".to_owned()
    } else {
        return Ok(());
    };
    Err(format!(
        "in-domain delivery rule (数据不出域): {why}, so it is delivered only by sandbox, \
         privacy_computing, model_output or verification, not by {}",
        name(&mode)
    ))
}

/// Whether `listing` is recognised under `agreement`: `Ok(())`, or the reason it is refused.
///
/// Besides the agreement's own terms, the receiving side applies the sender's firewall rules
/// again (a misconfigured or dishonest sender must not be able to push them in).
///
/// Registration is not judged here: whether a listing carries a valid certificate depends on
/// the certificates its zone received ([`registration`]), not on the listing.
///
/// # Errors
/// The first term the listing fails, in the order: classification, personal information,
/// category, delivery modes.
pub fn recognise(listing: &Listing, agreement: &Agreement) -> Result<(), String> {
    let c = listing.classification;
    if c > agreement.max_classification || c >= Classification::Important {
        return Err(format!(
            "classification {} is above the agreed maximum {}",
            name(&c),
            name(&agreement.max_classification)
        ));
    }
    if listing.contains_personal_info {
        let out = out_of_domain_modes(listing);
        if !out.is_empty() {
            return Err(format!(
                "contains personal information with out-of-domain delivery ({})",
                out.join(", ")
            ));
        }
    }
    if !agreement.categories.contains(&listing.category) {
        return Err(format!(
            "category {} is not covered by the agreement",
            listing.category
        ));
    }
    let refused: Vec<String> = listing
        .delivery_modes
        .iter()
        .filter(|m| !agreement.delivery_modes.contains(**m))
        .map(name)
        .collect();
    if !refused.is_empty() {
        return Err(format!(
            "delivery modes not covered by the agreement: {}",
            refused.join(", ")
        ));
    }
    Ok(())
}

/// Whether a listing version passes `agreement`'s registration term, given whether the
/// receiving zone holds a valid certificate for exactly that version (`certified`,
/// PROTOCOL.md 10.5). The listing's own `registration` field is the provider's word and
/// proves nothing, so it is not consulted.
///
/// # Errors
/// Why the listing is refused, for the record.
pub fn registration(agreement: &Agreement, certified: bool) -> Result<(), String> {
    if agreement.require_registration && !certified {
        return Err(
            "the agreement requires a registration certificate, and this zone holds no valid \
             one for this listing version"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use xchg_federation_config::{CategorySet, ModeSet};
    use xchg_protocol::{DeliveryMode, Timestamp};

    fn listing(c: Classification, personal: bool, modes: &[DeliveryMode]) -> Listing {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.classification = c;
        draft.contains_personal_info = personal;
        draft.delivery_modes = modes.to_vec();
        Listing::first_version(draft, "xuchang/yuzhou".parse().expect("zone"), Timestamp(1))
    }

    #[test]
    fn export_firewall() {
        let p = ExportPolicy::default();
        let api = [DeliveryMode::Api];
        let sandbox = [DeliveryMode::Sandbox, DeliveryMode::Verification];
        assert!(export(&listing(Classification::General, false, &api), &p).is_ok());
        assert!(export(&listing(Classification::Public, false, &api), &p).is_ok());
        for c in [Classification::Important, Classification::Core] {
            let e = export(&listing(c, false, &sandbox), &p).expect_err("never leaves");
            assert!(e.contains("never leaves"), "{e}");
        }
        let e = export(
            &listing(Classification::General, true, &[DeliveryMode::File]),
            &p,
        )
        .expect_err("personal file");
        assert!(e.contains("file"), "{e}");
        assert!(export(&listing(Classification::General, true, &sandbox), &p).is_ok());
        let never = ExportPolicy {
            personal_info: PersonalInfoExport::Never,
            ..p
        };
        assert!(export(&listing(Classification::General, true, &sandbox), &never).is_err());
        let public_only = ExportPolicy {
            ceiling: Classification::Public,
            ..p
        };
        let e = export(&listing(Classification::General, false, &api), &public_only)
            .expect_err("above ceiling");
        assert!(e.contains("ceiling"), "{e}");
    }

    #[test]
    fn in_domain_delivery() {
        use DeliveryMode::*;
        let all = [
            File,
            Api,
            Sandbox,
            PrivacyComputing,
            ModelOutput,
            Verification,
        ];
        for mode in all {
            let open = listing(Classification::General, false, &all);
            assert!(
                in_domain(&open, mode).is_ok(),
                "a general product by {mode:?}"
            );
        }
        let sensitive = [
            (
                listing(Classification::Important, false, &all),
                "classified important",
            ),
            (
                listing(Classification::Core, false, &all),
                "classified core",
            ),
            (
                listing(Classification::General, true, &all),
                "personal information",
            ),
            (
                listing(Classification::Public, true, &all),
                "personal information",
            ),
        ];
        for (product, why) in &sensitive {
            for mode in [Sandbox, PrivacyComputing, ModelOutput, Verification] {
                assert!(in_domain(product, mode).is_ok(), "{why} by {mode:?}");
            }
            for (mode, shown) in [(File, "not by file"), (Api, "not by api")] {
                let e = in_domain(product, mode).expect_err("leaves its domain");
                assert!(e.contains("in-domain delivery rule"), "{e}");
                assert!(e.contains(why) && e.contains(shown), "{e}");
            }
        }
    }

    #[test]
    fn recognition_policy() {
        let all = Agreement::default();
        let api = [DeliveryMode::Api];
        assert!(recognise(&listing(Classification::General, false, &api), &all).is_ok());
        let narrow = Agreement {
            categories: CategorySet::Only(BTreeSet::from(["transport".to_owned()])),
            max_classification: Classification::Public,
            delivery_modes: ModeSet::Only(BTreeSet::from([DeliveryMode::Api])),
            require_registration: true,
        };
        let e = recognise(&listing(Classification::General, false, &api), &narrow)
            .expect_err("classification");
        assert!(e.contains("classification general"), "{e}");
        let e = recognise(&listing(Classification::Public, false, &api), &narrow)
            .expect_err("category");
        assert!(e.contains("category credit"), "{e}");
        let e = recognise(
            &listing(Classification::General, true, &[DeliveryMode::File]),
            &all,
        )
        .expect_err("personal");
        assert!(e.contains("personal"), "{e}");
        let registered = Agreement {
            require_registration: true,
            ..Agreement::default()
        };
        assert!(
            recognise(&listing(Classification::General, false, &api), &registered).is_ok(),
            "registration is judged against the certificates held, not the listing"
        );
        let e = registration(&registered, false).expect_err("no certificate");
        assert!(e.contains("registration certificate"), "{e}");
        assert!(registration(&registered, true).is_ok());
        assert!(registration(&all, false).is_ok());
        let modes = Agreement {
            delivery_modes: ModeSet::Only(BTreeSet::from([DeliveryMode::Sandbox])),
            ..Agreement::default()
        };
        let e =
            recognise(&listing(Classification::General, false, &api), &modes).expect_err("modes");
        assert!(e.contains("api"), "{e}");
    }
}
