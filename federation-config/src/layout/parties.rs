//! The demo parties of the built-in layouts. Every zone is founded with two parties, written
//! to each of its nodes' `[[parties]]`: the party its provider token is bound to and the party
//! its buyer token is bound to, so that `xchg up --demo` and the README's examples act as
//! admitted parties from the zone's first moment. Their credit codes are made up but valid
//! (GB 32100): the registering authority and kind from the layout's table, the zone's
//! administrative division, an organisation code drawn from the party id, the check character.

use sha2::{Digest, Sha256};
use xchg_protocol::party::CREDIT_CODE_ALPHABET;
use xchg_protocol::{
    Contact, CreditCode, CreditCodeError, PartyId, PartyKind, PartyProfile, ZoneId,
};

/// What a demo party does in its zone; its kinds follow from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoRole {
    /// Lists products: a resource holder and product operator.
    Provider,
    /// Buys: a processor and user of data.
    Buyer,
}

impl DemoRole {
    /// The kinds of a party in this role.
    pub(super) fn kinds(self) -> Vec<PartyKind> {
        match self {
            DemoRole::Provider => vec![PartyKind::ResourceHolder, PartyKind::ProductOperator],
            DemoRole::Buyer => vec![PartyKind::Processor],
        }
    }
}

/// The profile of demo party `id` (`name`): credit code `registration` (two characters) +
/// `division` (six digits) + nine characters drawn from the id + the check character; a
/// data desk to contact at `data@<id>.example`.
///
/// # Errors
/// A `registration` or `division` that does not make a credit code.
pub fn demo_profile(
    id: &PartyId,
    name: &str,
    registration: &str,
    division: &str,
    role: DemoRole,
) -> Result<PartyProfile, CreditCodeError> {
    let alphabet: Vec<char> = CREDIT_CODE_ALPHABET.chars().collect();
    let digest = Sha256::digest(id.as_str().as_bytes());
    let organisation: String = digest
        .iter()
        .take(9)
        .map(|b| alphabet[usize::from(*b) % alphabet.len()])
        .collect();
    Ok(PartyProfile {
        id: id.clone(),
        name: name.to_owned(),
        credit_code: CreditCode::with_check(&format!("{registration}{division}{organisation}"))?,
        kinds: role.kinds(),
        contact: demo_contact(id),
    })
}

/// A demo party's contact: a data desk at `data@<id>.example`.
pub(super) fn demo_contact(id: &PartyId) -> Contact {
    Contact {
        name: "数据专员 Data desk".to_owned(),
        phone: None,
        email: Some(format!("data@{id}.example")),
    }
}

/// The profile `xchg up --demo` gives a provider of its demo catalog that is not a zone's
/// founding party, before the zone admits it: a public institution of `zone`'s division.
///
/// # Errors
/// None in practice: the division comes from the layout tables.
pub fn demo_provider(
    zone: &ZoneId,
    id: &PartyId,
    name: &str,
) -> Result<PartyProfile, CreditCodeError> {
    demo_profile(
        id,
        name,
        "12",
        &super::inventory::division(zone),
        DemoRole::Provider,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demo_party_has_a_valid_code_of_its_division_and_a_way_to_reach_it() {
        let id: PartyId = "yuzhou-credit-center".parse().expect("id");
        let p = demo_profile(&id, "禹州市信用中心", "12", "411081", DemoRole::Provider)
            .expect("a profile");
        assert!(p.credit_code.as_str().starts_with("12411081"));
        assert_eq!(p.validate(), Ok(()));
        let again = demo_profile(&id, "禹州市信用中心", "12", "411081", DemoRole::Provider);
        assert_eq!(again.ok(), Some(p), "the same id gives the same code");
    }

    #[test]
    fn a_catalog_provider_takes_its_zones_division() {
        let zone: ZoneId = "xuchang/changge".parse().expect("zone");
        let id: PartyId = "changge-hr-market".parse().expect("id");
        let p = demo_provider(&zone, &id, "长葛市人力资源市场").expect("a profile");
        assert!(
            p.credit_code.as_str().starts_with("12411082"),
            "{}",
            p.credit_code
        );
    }
}
