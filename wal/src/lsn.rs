//! `Lsn`: a position in the write-ahead log.
//!
//! An LSN is the byte position in the log's address space just *after* a record (records
//! are keyed by their end, as Neon does), so the LSN of one record is also the start of the
//! next one. LSN 0 is never the end of a record and is treated as invalid by every API that
//! takes a record boundary. LSNs print and parse the way Postgres shows them: the high and
//! low 32 bits in upper-case hex, `0/16B3748`.
//!
//! Arithmetic is checked: adding a byte count that would overflow is an error, never a wrap.

use std::fmt;
use std::str::FromStr;

/// A log sequence number: a byte position in the log (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The invalid LSN. No record ends here.
    pub const INVALID: Lsn = Lsn(0);

    /// The largest representable LSN.
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// Whether this LSN can be a record boundary (it is not 0).
    pub fn is_valid(self) -> bool {
        self != Lsn::INVALID
    }

    /// This LSN moved forward by `bytes`, or `None` on overflow.
    pub fn checked_add(self, bytes: u64) -> Option<Lsn> {
        self.0.checked_add(bytes).map(Lsn)
    }

    /// The number of bytes from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_distance_from(self, earlier: Lsn) -> Option<u64> {
        self.0.checked_sub(earlier.0)
    }

    /// Whether this LSN is a multiple of `alignment` (a power of two).
    pub fn is_aligned(self, alignment: u64) -> bool {
        debug_assert!(alignment.is_power_of_two());
        self.0 & (alignment - 1) == 0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl fmt::Debug for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Lsn({self})")
    }
}

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid LSN {input:?}: expected two hex numbers of at most 8 digits as HIGH/LOW, like 0/16B3748"
)]
pub struct ParseLsnError {
    /// The text that failed to parse.
    pub input: String,
}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(input: &str) -> Result<Lsn, ParseLsnError> {
        let error = || ParseLsnError {
            input: input.to_owned(),
        };
        let (high, low) = input.split_once('/').ok_or_else(error)?;
        let parse_half = |half: &str| {
            let well_formed =
                !half.is_empty() && half.len() <= 8 && half.bytes().all(|b| b.is_ascii_hexdigit());
            if !well_formed {
                return Err(error());
            }
            u32::from_str_radix(half, 16).map_err(|_| error())
        };
        let high = parse_half(high)?;
        let low = parse_half(low)?;
        Ok(Lsn((u64::from(high) << 32) | u64::from(low)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn displays_like_postgres() {
        assert_eq!(Lsn(0x16B3748).to_string(), "0/16B3748");
        assert_eq!(Lsn(0x1_0000_0000).to_string(), "1/0");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn parses_like_postgres() {
        assert_eq!("0/16B3748".parse::<Lsn>(), Ok(Lsn(0x16B3748)));
        assert_eq!("0/16b3748".parse::<Lsn>(), Ok(Lsn(0x16B3748)));
        assert_eq!("A/0".parse::<Lsn>(), Ok(Lsn(0xA_0000_0000)));
    }

    #[test]
    fn rejects_malformed_text_naming_it() {
        for bad in [
            "",
            "/",
            "0/",
            "/1",
            "16B3748",
            "0/1/2",
            "x/1",
            "0/123456789",
            "+1/0",
            " 0/1",
        ] {
            let error = bad.parse::<Lsn>().expect_err(bad);
            assert_eq!(error.input, bad);
            assert!(error.to_string().contains("invalid LSN"));
        }
    }

    #[test]
    fn checked_arithmetic_refuses_overflow() {
        assert_eq!(Lsn(10).checked_add(5), Some(Lsn(15)));
        assert_eq!(Lsn::MAX.checked_add(1), None);
        assert_eq!(Lsn(10).checked_distance_from(Lsn(4)), Some(6));
        assert_eq!(Lsn(4).checked_distance_from(Lsn(10)), None);
        assert!(!Lsn::INVALID.is_valid());
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(value: u64) {
            let lsn = Lsn(value);
            prop_assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
        }
    }
}
