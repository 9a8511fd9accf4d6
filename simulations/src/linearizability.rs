//! A linearizability checker for histories of client operations, in the manner of Porcupine
//! (Wing and Gong's search with the memoisation of Lowe, P-compositional by key).
//!
//! A history is the operations clients ran against a zone: each with when it was invoked,
//! when it completed (or never, for a timeout or an `outcome_unknown`), and what it returned
//! (or nothing known). It is linearizable if every operation can be given one instant between
//! its invocation and its completion such that, taken in the order of those instants, the
//! operations are a legal sequence of the [`Model`]: each returns what the model returns. An
//! operation whose completion is unknown may take effect at any instant after its invocation,
//! or never, and any output is accepted from it.
//!
//! Operations on different keys (listings) are independent registers: each key's history is
//! checked on its own, which keeps the search small.

use std::collections::{BTreeMap, HashSet};
use std::hash::Hash;

/// The sequential specification operations are checked against.
pub trait Model {
    /// The state of one key.
    type State: Clone + Eq + Hash;
    /// What an operation asks.
    type Input;
    /// What it returned.
    type Output;

    /// The state of a key no operation touched.
    fn init(&self) -> Self::State;

    /// The state after `input` is applied to `state` and returned `output` (`None`: unknown,
    /// any output is accepted); `None` if the model cannot return that output there.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<K, I, O> {
    /// The key it acts on.
    pub key: K,
    /// What it asked.
    pub input: I,
    /// When it was invoked (any monotonic unit, the same for every operation).
    pub invoked: u64,
    /// When it completed, if it did; `None`: never (timeout, outcome unknown).
    pub completed: Option<u64>,
    /// What it returned, if known.
    pub output: Option<O>,
}

/// Why a history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation<K> {
    /// The key whose history has no linearization.
    pub key: K,
    /// How many of its operations the longest legal prefix found placed.
    pub placed: usize,
    /// How many operations its history holds.
    pub operations: usize,
}

/// Most search steps per key before the checker gives up (a pathological history); an
/// exhausted search is reported as [`Verdict::Unknown`].
pub const MAX_STEPS: u64 = 10_000_000;

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<K> {
    /// Every key's history has a linearization.
    Linearizable,
    /// This key's has none.
    Violated(Violation<K>),
    /// The search for this key took more than [`MAX_STEPS`] steps.
    Unknown(K),
}

/// Checks `history` against `model`, key by key.
pub fn check<M, K, I, O>(model: &M, history: &[Operation<K, I, O>]) -> Verdict<K>
where
    M: Model<Input = I, Output = O>,
    K: Ord + Clone,
{
    let mut by_key: BTreeMap<&K, Vec<&Operation<K, I, O>>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        match check_one(model, &ops) {
            Search::Found => {}
            Search::None { placed } => {
                return Verdict::Violated(Violation {
                    key: key.clone(),
                    placed,
                    operations: ops.len(),
                });
            }
            Search::GaveUp => return Verdict::Unknown(key.clone()),
        }
    }
    Verdict::Linearizable
}

enum Search {
    Found,
    None { placed: usize },
    GaveUp,
}

/// One key's operations: the search of Wing and Gong over the operations ordered by their
/// invocation, with the states already reached for each set of placed operations remembered.
fn check_one<M: Model>(model: &M, ops: &[&Operation<impl Sized, M::Input, M::Output>]) -> Search {
    let n = ops.len();
    // Operations that never completed end after everything else.
    let end = |i: usize| ops[i].completed.unwrap_or(u64::MAX);
    let mut seen: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    // The depth-first stack: (placed set, state, next candidate index to try at this level).
    let mut placed = vec![0u64; n.div_ceil(64)];
    let mut state = model.init();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut count = 0usize;
    let mut best = 0usize;
    let mut steps = 0u64;
    let mut candidate = 0usize;
    let is_placed = |set: &[u64], i: usize| set[i / 64] & (1 << (i % 64)) != 0;
    loop {
        if count == n {
            return Search::Found;
        }
        steps += 1;
        if steps > MAX_STEPS {
            return Search::GaveUp;
        }
        // The earliest completion among unplaced operations bounds which can go next: an
        // operation invoked after some unplaced one completed cannot precede it.
        let horizon = (0..n)
            .filter(|&i| !is_placed(&placed, i))
            .map(end)
            .min()
            .unwrap_or(u64::MAX);
        let mut advanced = false;
        let mut i = candidate;
        while i < n {
            let next = (!is_placed(&placed, i) && ops[i].invoked <= horizon)
                .then(|| model.step(&state, &ops[i].input, ops[i].output.as_ref()))
                .flatten();
            if let Some(next) = next {
                let mut set = placed.clone();
                set[i / 64] |= 1 << (i % 64);
                if seen.insert((set.clone(), next.clone())) {
                    stack.push((i, state.clone()));
                    placed = set;
                    state = next;
                    count += 1;
                    best = best.max(count);
                    candidate = 0;
                    advanced = true;
                    break;
                }
            }
            i += 1;
        }
        if advanced {
            continue;
        }
        // An operation that never completed may also never take effect: once only such
        // operations are left, the history is complete.
        if (0..n).all(|i| is_placed(&placed, i) || ops[i].completed.is_none()) {
            return Search::Found;
        }
        let Some((last, previous)) = stack.pop() else {
            return Search::None { placed: best };
        };
        placed[last / 64] &= !(1 << (last % 64));
        state = previous;
        count -= 1;
        candidate = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register of one number: `Write(v)` returns nothing, `Read` returns the value.
    struct Register;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Op {
        Write(u32),
        Read,
    }

    impl Model for Register {
        type State = u32;
        type Input = Op;
        type Output = u32;

        fn init(&self) -> u32 {
            0
        }

        fn step(&self, state: &u32, input: &Op, output: Option<&u32>) -> Option<u32> {
            match input {
                Op::Write(v) => Some(*v),
                Op::Read => match output {
                    Some(seen) if seen != state => None,
                    _ => Some(*state),
                },
            }
        }
    }

    fn op(
        input: Op,
        invoked: u64,
        completed: Option<u64>,
        output: Option<u32>,
    ) -> Operation<&'static str, Op, u32> {
        Operation {
            key: "x",
            input,
            invoked,
            completed,
            output,
        }
    }

    #[test]
    fn a_read_overlapping_a_write_may_see_either_value() {
        for seen in [0, 1] {
            let history = [
                op(Op::Write(1), 0, Some(10), None),
                op(Op::Read, 5, Some(6), Some(seen)),
            ];
            assert_eq!(
                check(&Register, &history),
                Verdict::Linearizable,
                "read {seen}"
            );
        }
    }

    #[test]
    fn a_read_after_a_completed_write_that_sees_the_old_value_is_not_linearizable() {
        let history = [
            op(Op::Write(1), 0, Some(10), None),
            op(Op::Read, 11, Some(12), Some(0)),
        ];
        assert!(matches!(check(&Register, &history), Verdict::Violated(v) if v.key == "x"));
    }

    #[test]
    fn two_reads_may_not_see_values_in_an_order_no_single_history_allows() {
        // Write 1 then write 2, both completed; reader A sees 2 and then, later, 1.
        let history = [
            op(Op::Write(1), 0, Some(1), None),
            op(Op::Write(2), 2, Some(20), None),
            op(Op::Read, 3, Some(4), Some(2)),
            op(Op::Read, 5, Some(6), Some(1)),
        ];
        assert!(matches!(check(&Register, &history), Verdict::Violated(_)));
        // Seen in the other order, it is fine: the write of 2 takes effect between them.
        let history = [
            op(Op::Write(1), 0, Some(1), None),
            op(Op::Write(2), 2, Some(20), None),
            op(Op::Read, 3, Some(4), Some(1)),
            op(Op::Read, 5, Some(6), Some(2)),
        ];
        assert_eq!(check(&Register, &history), Verdict::Linearizable);
    }

    #[test]
    fn a_write_whose_outcome_is_unknown_may_take_effect_late_or_never() {
        let late = [
            op(Op::Write(7), 0, None, None),
            op(Op::Read, 10, Some(11), Some(0)),
            op(Op::Read, 20, Some(21), Some(7)),
        ];
        assert_eq!(check(&Register, &late), Verdict::Linearizable);
        let never = [
            op(Op::Write(7), 0, None, None),
            op(Op::Read, 10, Some(11), Some(0)),
        ];
        assert_eq!(check(&Register, &never), Verdict::Linearizable);
        // But not before it was invoked.
        let early = [
            op(Op::Read, 0, Some(1), Some(7)),
            op(Op::Write(7), 5, None, None),
        ];
        assert!(matches!(check(&Register, &early), Verdict::Violated(_)));
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut history = vec![
            op(Op::Write(1), 0, Some(1), None),
            op(Op::Read, 2, Some(3), Some(1)),
        ];
        history.push(Operation {
            key: "y",
            input: Op::Read,
            invoked: 2,
            completed: Some(3),
            output: Some(1),
        });
        assert!(matches!(check(&Register, &history), Verdict::Violated(v) if v.key == "y"));
    }

    #[test]
    fn many_concurrent_writers_and_readers_are_checked_quickly() {
        // 12 writers of distinct values all overlapping, then reads of the last one; the search
        // must not explode.
        let mut history: Vec<_> = (1..=12)
            .map(|v| op(Op::Write(v), 0, Some(100), None))
            .collect();
        history.push(op(Op::Read, 101, Some(102), Some(5)));
        history.push(op(Op::Read, 103, Some(104), Some(5)));
        assert_eq!(check(&Register, &history), Verdict::Linearizable);
        history.push(op(Op::Read, 105, Some(106), Some(6)));
        assert!(matches!(check(&Register, &history), Verdict::Violated(_)));
    }
}
