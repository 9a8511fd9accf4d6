//! Feeds arbitrary bytes to envelope decoding and verification.
//!
//! Run with `cargo fuzz run verify_envelope` from `protocol/` (needs cargo-fuzz and a nightly
//! toolchain). Seed the corpus with the test vectors' envelopes:
//! `mkdir -p fuzz/corpus/verify_envelope && for f in test-vectors/*.json; do
//!  python3 -c "import json,sys; sys.stdout.buffer.write(bytes.fromhex(json.load(open('$f'))['envelope']))" > fuzz/corpus/verify_envelope/$(basename $f .json); done`
//!
//! Properties checked: no panic, no unbounded allocation, and anything that verifies re-encodes
//! to exactly the input (only the canonical form is accepted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xchg_protocol::canonical::Limits;
use xchg_protocol::{Envelope, TrustStore, vectors};

fuzz_target!(|data: &[u8]| {
    let mut trust = TrustStore::default();
    trust.trust("xuchang".parse().expect("exchange"), vectors::root().public());
    let limits = Limits::default();
    if let Ok(ok) = xchg_protocol::verify(data, &trust, vectors::NOW, &limits) {
        let env: Envelope = xchg_protocol::canonical::from_canonical(data, &limits).expect("verified envelopes decode");
        assert_eq!(env.to_bytes(), data);
        assert_eq!(ok.id, env.id);
    }
});
