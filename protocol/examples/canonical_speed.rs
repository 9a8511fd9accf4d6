//! How long encoding one listing in canonical CBOR takes (every node does it for every listing
//! it applies): `cargo run --release -p xchg-protocol --example canonical_speed`.

fn main() {
    let listing = xchg_protocol::Listing::first_version(
        xchg_protocol::vectors::credit_draft(),
        "xuchang/yuzhou".parse().expect("a zone id literal"),
        xchg_protocol::Timestamp(1_000),
    );
    let rounds = 200_000;
    let started = std::time::Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        bytes += listing.canonical_bytes().len();
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    println!(
        "{micros:.2} µs per listing ({} bytes each, {rounds} rounds)",
        bytes / rounds as usize
    );
}
