//! pagefork-engine: the copy-on-write branching page store.
//!
//! Not built yet. The engine core (page versions keyed by key and LSN, branches, reads
//! through a branch's ancestry, point-in-time recovery) arrives with the next issue and
//! writes through [`pagefork_wal`]. This crate exports nothing until then, so nothing can
//! depend on behaviour that does not exist.
