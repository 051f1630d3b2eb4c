//! `Key`: which page, as Postgres names a block: (relation, block number).

use std::fmt;

/// Which page: `(rel, block)`, ordered by relation then block.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Key {
    /// Relation number.
    pub rel: u32,
    /// Block number within the relation.
    pub block: u32,
}

impl Key {
    /// The key of block `block` of relation `rel`.
    pub const fn new(rel: u32, block: u32) -> Key {
        Key { rel, block }
    }

    /// The key as one number, in key order (relation, then block).
    pub(crate) const fn packed(self) -> u64 {
        ((self.rel as u64) << 32) | self.block as u64
    }

    /// The key `packed` names (the inverse of `packed`).
    pub(crate) const fn from_packed(packed: u64) -> Key {
        Key {
            rel: (packed >> 32) as u32,
            block: packed as u32,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rel {} block {}", self.rel, self.block)
    }
}
