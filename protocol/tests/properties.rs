//! Properties of the canonical encoding and of envelope verification, over generated listings.

use proptest::prelude::*;
use xchg_protocol::canonical::{Limits, from_canonical, to_canonical};
use xchg_protocol::{
    Classification, DeliveryMode, Envelope, Listing, ListingDraft, Pricing, PricingModel,
    ProductForm, Provider, Right, Timestamp, TrustStore, UpdateFrequency, vectors, verify,
};

fn text(max: usize) -> impl Strategy<Value = String> {
    // Mixed ASCII and CJK, so multi-byte UTF-8 is exercised.
    let first = prop_oneof![Just('a'), Just('Z'), Just('许'), Just('数'), Just('7')];
    let rest = proptest::collection::vec(
        prop_oneof![Just('a'), Just(' '), Just('许'), Just('7')],
        0..max,
    );
    (first, rest).prop_map(|(f, rest)| std::iter::once(f).chain(rest).collect())
}

fn subset<T: Clone + std::fmt::Debug + 'static>(all: Vec<T>) -> impl Strategy<Value = Vec<T>> {
    let n = all.len();
    proptest::sample::subsequence(all, 1..=n)
}

fn draft() -> impl Strategy<Value = ListingDraft> {
    (
        (
            text(40),
            text(200),
            "[a-z]{1,12}",
            prop::sample::select(vec![
                ProductForm::Dataset,
                ProductForm::Api,
                ProductForm::Model,
                ProductForm::Report,
                ProductForm::Verification,
                ProductForm::Algorithm,
            ]),
        ),
        (
            prop::sample::select(vec![
                Classification::Public,
                Classification::General,
                Classification::Important,
                Classification::Core,
            ]),
            any::<bool>(),
        ),
        subset(vec![
            DeliveryMode::File,
            DeliveryMode::Api,
            DeliveryMode::Sandbox,
            DeliveryMode::PrivacyComputing,
            DeliveryMode::ModelOutput,
            DeliveryMode::Verification,
        ]),
        prop_oneof![
            Just(Pricing {
                model: PricingModel::Free,
                amount: None,
                currency: None
            }),
            (0u32..100_000, 0u32..100).prop_map(|(a, c)| Pricing {
                model: PricingModel::PerCall,
                amount: Some(format!("{a}.{c:02}")),
                currency: Some("CNY".into())
            }),
        ],
        proptest::collection::vec(text(20), 1..4).prop_map(|mut v| {
            v.sort();
            v.dedup();
            v
        }),
        subset(vec![Right::Holding, Right::ProcessingUse, Right::Operating]),
        proptest::collection::vec(text(10), 0..3).prop_map(|mut v| {
            v.sort();
            v.dedup();
            v
        }),
        proptest::option::of(text(20)),
    )
        .prop_map(
            |(
                (title, description, category, product_form),
                (classification, pi),
                delivery_modes,
                pricing,
                scenarios,
                rights,
                keywords,
                spatial,
            )| ListingDraft {
                title,
                description,
                provider: Provider {
                    id: "prop-provider".parse().expect("id"),
                    name: "测试".into(),
                },
                category,
                product_form,
                classification,
                contains_personal_info: pi,
                delivery_modes,
                pricing,
                scenarios,
                update_frequency: UpdateFrequency::Daily,
                rights,
                keywords,
                spatial_coverage: spatial,
                temporal_coverage: None,
                registration: None,
            },
        )
}

fn listing() -> impl Strategy<Value = Listing> {
    (draft(), 1_700_000_000_000u64..1_780_000_000_000).prop_map(|(d, t)| {
        Listing::first_version(d, "xuchang/yuzhou".parse().expect("zone"), Timestamp(t))
    })
}

proptest! {
    #[test]
    fn encode_decode_encode_is_byte_identical(l in listing()) {
        prop_assert!(l.validate().is_ok(), "generator made an invalid listing: {:?}", l.validate());
        let bytes = to_canonical(&l).expect("encode");
        let back: Listing = from_canonical(&bytes, &Limits::default()).expect("decode");
        prop_assert_eq!(&back, &l);
        prop_assert_eq!(to_canonical(&back).expect("encode"), bytes);
    }

    #[test]
    fn flipping_any_single_byte_of_an_envelope_never_verifies(l in listing(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut trust = TrustStore::default();
        trust.trust("xuchang".parse().expect("exchange"), vectors::root().public());
        let now = Timestamp(1_780_000_000_000);
        let env = Envelope::listing(&l, &vectors::node(), vectors::delegation());
        let mut wire = env.to_bytes();
        prop_assert!(verify(&wire, &trust, now, &Limits::default()).is_ok());
        let i = pos.index(wire.len());
        wire[i] ^= 1 << bit;
        prop_assert!(verify(&wire, &trust, now, &Limits::default()).is_err(), "flipped byte {} bit {} still verifies", i, bit);
    }
}
