//! Merkle trees over an append-only log with the hashing of RFC 9162 (Certificate Transparency
//! 2.0), section 2.1 (PROTOCOL.md 12): a leaf is `SHA-256(0x00 ‖ d)`, an inner node
//! `SHA-256(0x01 ‖ left ‖ right)`, the root of a tree whose size is not a power of two is
//! split at the largest power of two below its size (2.1.1), and the empty tree's root is
//! `SHA-256("")`.
//!
//! The proofs are built from the hashes of *aligned perfect subtrees*: the subtree of level `l`
//! and index `i` covers leaves `i·2^l .. (i+1)·2^l`. A log that stores each such hash once it is
//! complete (the node's audit chain does) answers any root or proof with O(log² n) lookups,
//! never rehashing the log: see [`Nodes`].

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`: the hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an inner node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The aligned perfect subtrees whose hashes make up `MTH(D[start:end])`, as `(level, index)`,
/// left to right. `start` must be a multiple of the largest power of two not above
/// `end - start` for the range to be one of the tree's own subtrees (every range a root or a
/// proof of this module asks for is); any other range is cut into aligned pieces all the same.
pub fn aligned_nodes(start: u64, end: u64) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        // The largest aligned block starting at `at` that fits before `end`.
        let mut level = if at == 0 { 63 } else { at.trailing_zeros() };
        while level > 0 && (1u64 << level) > end - at {
            level -= 1;
        }
        out.push((level, at >> level));
        at += 1 << level;
    }
    out
}

/// `MTH(D[start:end])` from the aligned subtrees [`aligned_nodes`] names, looked up by `node`.
///
/// # Errors
/// The lookup's error.
pub fn subtree_hash<E>(
    start: u64,
    end: u64,
    node: &mut impl FnMut(u32, u64) -> Result<Hash, E>,
) -> Result<Hash, E> {
    if start >= end {
        return Ok(empty_root());
    }
    let nodes = aligned_nodes(start, end);
    // The pieces are of strictly decreasing size, so folding from the right follows the split
    // of 2.1.1 at every step.
    let mut acc: Option<Hash> = None;
    for &(level, index) in nodes.iter().rev() {
        let h = node(level, index)?;
        acc = Some(match acc {
            None => h,
            Some(right) => node_hash(&h, &right),
        });
    }
    Ok(acc.unwrap_or_else(empty_root))
}

/// The ranges `[start, end)` whose subtree hashes form the inclusion proof of leaf `index` in
/// the tree of `size` leaves (RFC 9162 2.1.3.1), from the leaf upward. `index < size`.
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    fn path(m: u64, start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(m, start, start + k, out);
            out.push((start + k, end));
        } else {
            path(m - k, start + k, end, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if index < size {
        path(index, 0, size, &mut out);
    }
    out
}

/// The ranges whose subtree hashes form the consistency proof between the trees of `from` and
/// `to` leaves (RFC 9162 2.1.4.1). Empty when `from` is 0 or equals `to`; `from <= to`.
pub fn consistency_ranges(from: u64, to: u64) -> Vec<(u64, u64)> {
    fn sub(m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
        let n = end - start;
        if m == n {
            if !whole {
                out.push((start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            sub(m, start, start + k, whole, out);
            out.push((start + k, end));
        } else {
            sub(m - k, start + k, end, false, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if from > 0 && from < to {
        sub(from, 0, to, true, &mut out);
    }
    out
}

/// Checks an inclusion proof (RFC 9162 2.1.3.2): that `leaf` is leaf `index` of the tree of
/// `size` leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// Checks a consistency proof (RFC 9162 2.1.4.2): that the tree of `to` leaves with root
/// `new_root` extends the tree of `from` leaves with root `old_root`. Equal sizes need an empty
/// proof and equal roots; the empty tree (`from` 0) is extended by every tree, with an empty
/// proof.
pub fn verify_consistency(
    from: u64,
    to: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if from > to {
        return false;
    }
    if from == to {
        return proof.is_empty() && old_root == new_root;
    }
    if from == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

/// A whole tree held in memory as its leaf hashes: the reference the vectors, the offline
/// verifier and small logs use.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// A tree of these leaf hashes.
    pub fn new(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut t = MemoryTree::default();
        for l in leaves {
            t.push(l);
        }
        t
    }

    /// Appends a leaf hash, completing the aligned subtrees it closes.
    pub fn push(&mut self, leaf: Hash) {
        let mut level = 0;
        let mut h = leaf;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            self.levels[level].push(h);
            let len = self.levels[level].len();
            if len % 2 == 1 {
                break;
            }
            h = node_hash(&self.levels[level][len - 2], &h);
            level += 1;
        }
    }

    /// Leaves held.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, std::convert::Infallible> {
        Ok(self.levels[level as usize][index as usize])
    }

    /// The root of the first `size` leaves (`size <= self.size()`).
    pub fn root(&self, size: u64) -> Hash {
        let Ok(h) = subtree_hash(0, size, &mut |l, i| self.node(l, i));
        h
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion(&self, index: u64, size: u64) -> Vec<Hash> {
        inclusion_ranges(index, size)
            .into_iter()
            .map(|(a, b)| {
                let Ok(h) = subtree_hash(a, b, &mut |l, i| self.node(l, i));
                h
            })
            .collect()
    }

    /// The consistency proof between the first `from` and the first `to` leaves.
    pub fn consistency(&self, from: u64, to: u64) -> Vec<Hash> {
        consistency_ranges(from, to)
            .into_iter()
            .map(|(a, b)| {
                let Ok(h) = subtree_hash(a, b, &mut |l, i| self.node(l, i));
                h
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH straight from RFC 9162 2.1.1, recursively over the leaf hashes.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn roots_from_aligned_subtrees_are_the_recursive_mth_of_2_1_1() {
        let all = leaves(70);
        let tree = MemoryTree::new(all.clone());
        for n in 0..=70 {
            assert_eq!(tree.root(n), mth(&all[..n as usize]), "size {n}");
        }
    }

    #[test]
    fn every_proof_of_sizes_up_to_40_verifies_and_a_changed_one_does_not() {
        let tree = MemoryTree::new(leaves(40));
        for n in 1..=40 {
            let root = tree.root(n);
            for m in 0..n {
                let path = tree.inclusion(m, n);
                let leaf = tree.levels[0][m as usize];
                assert!(verify_inclusion(m, n, &leaf, &path, &root), "{m} in {n}");
                assert!(!verify_inclusion(m, n, &[7; 32], &path, &root));
            }
            for m in 0..=n {
                let proof = tree.consistency(m, n);
                assert!(
                    verify_consistency(m, n, &tree.root(m), &root, &proof),
                    "{m} to {n}"
                );
                if m > 0 && m < n {
                    assert!(!verify_consistency(m, n, &[7; 32], &root, &proof));
                }
            }
        }
    }

    #[test]
    fn aligned_nodes_cut_a_range_into_perfect_subtrees() {
        assert_eq!(aligned_nodes(0, 7), vec![(2, 0), (1, 2), (0, 6)]);
        assert_eq!(aligned_nodes(4, 8), vec![(2, 1)]);
        assert_eq!(aligned_nodes(0, 8), vec![(3, 0)]);
        assert_eq!(aligned_nodes(6, 7), vec![(0, 6)]);
    }
}
