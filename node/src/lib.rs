//! xchg-node: the node daemon and CLI.
