//! Money for trades: decimal amounts, never floats.
//!
//! An amount is a decimal string as listing pricing writes it (`xchg_protocol::valid_amount`:
//! up to 15 integer digits, up to 4 decimals, no sign, no leading zero) and is computed in
//! whole ten-thousandths of its currency unit (1/10000 CNY) in a `u128`, with checked
//! arithmetic: a result that does not fit is refused, never wrapped.
//!
//! Settlement amounts are rounded to the fen (0.01 of the currency unit) **half up**
//! (四舍五入): an exact half fen goes up, anything less goes down (all amounts are
//! non-negative). Rates and shares are whole basis points (1/10000), so every product is exact
//! before its one rounding.

use std::fmt;

/// Ten-thousandths in one currency unit.
pub const UNITS: u128 = 10_000;
/// Ten-thousandths in one fen (0.01).
pub const FEN: u128 = 100;
/// Basis points in a whole (a rate of 1).
pub const WHOLE_BP: u32 = 10_000;
/// The largest amount kept: 15 integer digits and 4 decimals.
pub const MAX: Money = Money(1_000_000_000_000_000 * UNITS - 1);

/// An amount of money, in ten-thousandths of its currency unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Money(pub u128);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// Parses a decimal string of the listing pricing rule (`0`, `12`, `0.50`, `1234.5678`).
    ///
    /// # Errors
    /// What is expected, for a string that breaks the rule.
    pub fn parse(s: &str) -> Result<Money, String> {
        if !xchg_protocol::listing::valid_amount(s) {
            return Err(format!(
                "{s:.40?} is not a decimal amount: up to 15 integer digits and up to 4 decimals, \
                 no sign, exponent or leading zero (e.g. \"0.50\")"
            ));
        }
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let whole: u128 = int.parse().map_err(|_| format!("{s:?}: integer part"))?;
        let mut decimals: u128 = 0;
        for d in frac.bytes().chain(std::iter::repeat(b'0')).take(4) {
            decimals = decimals * 10 + u128::from(d - b'0');
        }
        Ok(Money(whole * UNITS + decimals))
    }

    /// `self × n`, if it fits under [`MAX`].
    pub fn times(self, n: u64) -> Option<Money> {
        self.0
            .checked_mul(u128::from(n))
            .map(Money)
            .filter(|m| *m <= MAX)
    }

    /// `self + other`, if it fits under [`MAX`].
    pub fn plus(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money).filter(|m| *m <= MAX)
    }

    /// `self − other`, if not negative.
    pub fn minus(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// Rounded to the fen, half up.
    pub fn to_fen(self) -> Money {
        Money(div_half_up(self.0, FEN) * FEN)
    }

    /// `bp` basis points of `self`, rounded to the fen, half up.
    pub fn share_bp(self, bp: u32) -> Money {
        // self.0 < 10^19 and bp ≤ 10^4 when bp is a rate; any u32 still fits in u128.
        let exact = self.0 * u128::from(bp);
        Money(div_half_up(exact, UNITS * FEN) * FEN)
    }

    /// Whether it is a whole number of fen.
    pub fn is_fen(self) -> bool {
        self.0.is_multiple_of(FEN)
    }

    /// With exactly two decimals (for amounts rounded to the fen).
    pub fn fen_string(self) -> String {
        let fen = self.0 / FEN;
        format!("{}.{:02}", fen / 100, fen % 100)
    }
}

/// `n / d` rounded half up.
fn div_half_up(n: u128, d: u128) -> u128 {
    let q = n / d;
    if (n % d) * 2 >= d { q + 1 } else { q }
}

impl fmt::Display for Money {
    /// At least two decimals, at most four, trailing zeros beyond two dropped: `0.50`,
    /// `25.00`, `0.1234`, `12000.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / UNITS;
        let mut frac = format!("{:04}", self.0 % UNITS);
        while frac.len() > 2 && frac.ends_with('0') {
            frac.pop();
        }
        write!(f, "{whole}.{frac}")
    }
}

/// Basis points as a decimal rate, `250` → `0.025`, for people.
pub fn bp_rate(bp: u32) -> String {
    let s = format!("{}.{:04}", bp / WHOLE_BP, bp % WHOLE_BP);
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        Money::parse(s).expect(s)
    }

    #[test]
    fn amounts_parse_to_ten_thousandths_and_print_back() {
        assert_eq!(m("0"), Money(0));
        assert_eq!(m("0.5"), Money(5_000));
        assert_eq!(m("0.50"), Money(5_000));
        assert_eq!(m("12"), Money(120_000));
        assert_eq!(m("1234.5678"), Money(12_345_678));
        assert_eq!(m("999999999999999.9999"), MAX);
        assert_eq!(m("0.50").to_string(), "0.50");
        assert_eq!(m("25").to_string(), "25.00");
        assert_eq!(m("0.1234").to_string(), "0.1234");
        assert_eq!(m("0.120").to_string(), "0.12");
        assert_eq!(m("0.0001").to_string(), "0.0001");
        for bad in [
            "", "-1", "1e3", "01", "0.12345", "1.", ".5", " 1", "1,5", "一",
        ] {
            assert!(Money::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn products_and_sums_are_checked_never_wrapped() {
        // 200 calls at 0.50: 100.00.
        assert_eq!(m("0.50").times(200), Some(m("100")));
        // 3 periods at 12000: 36000.00.
        assert_eq!(m("12000").times(3), Some(m("36000")));
        assert_eq!(MAX.times(1), Some(MAX));
        assert_eq!(MAX.times(2), None);
        assert_eq!(Money(u128::MAX).times(2), None);
        assert_eq!(MAX.plus(Money(1)), None);
        assert_eq!(m("1").minus(m("2")), None);
        assert_eq!(m("2").minus(m("0.0001")), Some(m("1.9999")));
    }

    #[test]
    fn rounding_to_the_fen_is_half_up() {
        // 0.125 → 0.13 (an exact half goes up); 0.1249 → 0.12; 0.1251 → 0.13.
        assert_eq!(m("0.125").to_fen(), m("0.13"));
        assert_eq!(m("0.1249").to_fen(), m("0.12"));
        assert_eq!(m("0.1251").to_fen(), m("0.13"));
        // Half-up, not half-even: 0.135 → 0.14 and 0.145 → 0.15 alike.
        assert_eq!(m("0.135").to_fen(), m("0.14"));
        assert_eq!(m("0.145").to_fen(), m("0.15"));
        assert_eq!(m("0.0049").to_fen(), m("0"));
        assert_eq!(m("0.005").to_fen(), m("0.01"));
        assert_eq!(m("7").to_fen(), m("7"));
        // 3 calls at 0.0015 = 0.0045 → 0.00; 7 calls at 0.0015 = 0.0105 → 0.01.
        assert_eq!(m("0.0015").times(3).map(Money::to_fen), Some(m("0")));
        assert_eq!(m("0.0015").times(7).map(Money::to_fen), Some(m("0.01")));
        assert_eq!(m("0.13").fen_string(), "0.13");
        assert_eq!(m("36000").fen_string(), "36000.00");
    }

    #[test]
    fn a_share_in_basis_points_is_rounded_once_half_up() {
        // 5% (500 bp) of 100.00 = 5.00.
        assert_eq!(m("100").share_bp(500), m("5"));
        // 2.5% of 0.50 = 0.0125 → 0.01.
        assert_eq!(m("0.50").share_bp(250), m("0.01"));
        // 2.5% of 0.60 = 0.015 → 0.02 (the half goes up).
        assert_eq!(m("0.60").share_bp(250), m("0.02"));
        // 3.33% of 10.00 = 0.333 → 0.33.
        assert_eq!(m("10").share_bp(333), m("0.33"));
        assert_eq!(m("10").share_bp(0), Money::ZERO);
        assert_eq!(m("10").share_bp(WHOLE_BP), m("10"));
        assert_eq!(MAX.to_fen().share_bp(WHOLE_BP), MAX.to_fen());
        assert_eq!(bp_rate(250), "0.025");
        assert_eq!(bp_rate(10_000), "1");
        assert_eq!(bp_rate(0), "0");
    }
}
