//! xchg-federation-config: typed, validated node configuration and the layout generator.
