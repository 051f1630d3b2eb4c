//! The operations of the model-based suites and the proptest strategies that choose them:
//! which branch, key, LSN or time an operation names, and the mix (`op`), including the
//! quiet branches, bursts and housekeep steps that reach issue 18's states.

use std::time::Duration;

use pagefork_engine::model::Refusal;
use pagefork_engine::{EngineError, Key};
use pagefork_tests::TEST_PAGE_SIZE;
use proptest::prelude::*;

pub(crate) const NAMES: [&str; 6] = ["main", "a", "b", "c", "a/b", "bad name"];
pub(crate) const KEYS: u32 = 4;

/// The store key of the model's key `index` (below `KEYS`): two blocks in each of two
/// relations, so flushes cut a relation's run into an L0 file of its own and compaction
/// moves files that overlap no other (the engine's `moves`).
pub(crate) fn key(index: u32) -> Key {
    Key::new(1 + index / 2, index % 2)
}
/// The store's PITR window: shorter than most clock steps, so cutoffs move.
pub(crate) const PITR_WINDOW: Duration = Duration::from_secs(5);
/// The WAL's segment size in both harnesses: the smallest the log takes, so a case writes
/// several segments and catalogs remove the older ones (branch points and times then fall
/// below the oldest WAL kept).
pub(crate) const WAL_SEGMENT_SIZE: u64 = 4096;
/// A branch's open layer is due for a flush at this size (a layer file every few page
/// versions: one image version takes about 1 KiB), so a branch with a commit or two keeps
/// them unflushed while busier branches flush.
pub(crate) const LAYER_FLUSH_BYTES: u64 = 4096;

/// An error where the model expects `expected` (`None`: success): it must be that refusal.
/// Any other error (an I/O error, a broken invariant, ...) fails the case, also where the
/// model expected success.
pub(crate) fn refused(error: &EngineError, expected: Option<Refusal>) -> Result<(), TestCaseError> {
    let refusal = Refusal::of(error);
    prop_assert!(
        refusal.is_some(),
        "a failure, not a refusal (the model expects {:?}): {}",
        expected,
        error
    );
    prop_assert_eq!(refusal, expected, "{}", error);
    Ok(())
}

#[derive(Clone, Debug)]
pub(crate) enum UpdateChoice {
    Image(u8),
    ShortImage,
    /// A patch if the page exists at the branch's head (per the model), else an image.
    Patch {
        offset: u32,
        len: usize,
        byte: u8,
    },
    /// A patch whether or not the page exists.
    PatchAnyway {
        offset: u32,
        len: usize,
        byte: u8,
    },
    Drop,
}

/// Which branch an operation names: mostly a live one, sometimes any name of the pool
/// (which may not exist, or break the naming rule).
#[derive(Clone, Debug)]
pub(crate) enum BranchPick {
    Live(usize),
    Pool(usize),
}

pub(crate) fn branch_pick() -> impl Strategy<Value = BranchPick> {
    prop_oneof![
        6 => any::<usize>().prop_map(BranchPick::Live),
        1 => (0..NAMES.len()).prop_map(BranchPick::Pool),
    ]
}

#[derive(Clone, Debug)]
pub(crate) enum AtChoice {
    Latest,
    /// An LSN seen so far (by index), moved by `delta` frames of 8 bytes.
    Lsn {
        index: usize,
        delta: i8,
    },
    /// Seconds after the test's start time.
    Time(u64),
    /// An LSN given as a number, whatever was seen: small ones (0/0, 0/1, ...) are below
    /// every branch's start and must be refused by name, never read as empty.
    Raw(u64),
    /// The `n`-th oldest LSN seen (counting from 0, wrapping) at which the branch it is
    /// taken on can still be read (at or above its GC cutoff, not past its head): once
    /// catalogs removed WAL, below the oldest WAL kept. Elsewhere the oldest LSN seen.
    Oldest(u8),
}

/// What follows a burst of commits.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AfterBurst {
    Nothing,
    Housekeep,
    /// A housekeep step, then a crash: the store must open what it published.
    HousekeepAndCrash,
}

#[derive(Clone, Debug)]
pub(crate) enum ExpiryChoice {
    Never,
    /// A TTL in seconds (0 is already past).
    Ttl(u64),
    /// Seconds after the test's start time.
    At(u64),
    /// A TTL of this many years: past year 9999 it is more than a store can hold and
    /// must be refused, not stored (a stored one broke every view of the branch).
    FarTtlYears(u64),
}

#[derive(Clone, Debug)]
pub(crate) enum BackupChoice {
    Default,
    Named(usize),
    Skip,
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Commit {
        branch: BranchPick,
        updates: Vec<(u32, UpdateChoice)>,
    },
    CreateBranch {
        name: usize,
        parent: BranchPick,
        at: AtChoice,
        expiry: ExpiryChoice,
        protected: bool,
    },
    Rename {
        branch: BranchPick,
        name: usize,
    },
    Protect {
        branch: BranchPick,
        protected: bool,
    },
    SetExpiry {
        branch: BranchPick,
        expiry: ExpiryChoice,
    },
    Reset {
        branch: BranchPick,
    },
    Detach {
        branch: BranchPick,
    },
    Restore {
        branch: BranchPick,
        source: BranchPick,
        at: AtChoice,
        backup: BackupChoice,
    },
    Diff {
        from: BranchPick,
        from_at: AtChoice,
        to: BranchPick,
        to_at: AtChoice,
    },
    DeleteBranch {
        branch: BranchPick,
    },
    Read {
        branch: BranchPick,
        key: u32,
        at: AtChoice,
    },
    LsnForTime {
        branch: BranchPick,
        secs: u64,
    },
    Clock {
        forward_secs: u64,
        back: bool,
    },
    /// The clock set back to just before an end that has passed: a lease's or a branch
    /// expiry's (the `nth` of those seen, modulo their number; 5 s back when none has
    /// passed). What was over counts again, unless GC forgot it: `Clock`'s fixed 5 s
    /// back-step rarely lands there (a housekeeping pass that forgot an expired lease
    /// went unseen for weeks).
    ClockBackBeforeEnd {
        nth: usize,
    },
    /// A branch created (as `CreateBranch`) that then gets one commit of one update and is
    /// left quiet: its commit stays unflushed while other branches flush and catalogs are
    /// published (a background cycle flushes only what is due; a detach flushes nothing).
    QuietBranch {
        name: usize,
        parent: BranchPick,
        at: AtChoice,
        update: (u32, UpdateChoice),
    },
    /// `commits` commits of whole pages (`pages` each) on one branch: its open layer is
    /// due for a flush, and the WAL moves on by a segment or more. Then, as `then` says, a
    /// background cycle, as the background thread would run once the branch is due (it
    /// flushes the branches that are due and publishes, while quiet branches keep their
    /// versions), and a crash right after it.
    Burst {
        branch: BranchPick,
        commits: u8,
        pages: u32,
        byte: u8,
        then: AfterBurst,
    },
    Reopen,
    Crash,
    Checkpoint,
    Compact,
    /// One background housekeeping cycle now (`Store::housekeep`): flushes what is due,
    /// publishes the catalog if anything changed; with nothing due it publishes nothing.
    Housekeep,
    /// GC now; then every read at every LSN seen must agree with the model.
    Gc,
    Lease {
        branch: BranchPick,
        at: AtChoice,
        secs: u64,
    },
    SetPitrWindow {
        branch: BranchPick,
        secs: Option<u64>,
    },
}

pub(crate) fn update_choice() -> impl Strategy<Value = UpdateChoice> {
    prop_oneof![
        12 => any::<u8>().prop_map(UpdateChoice::Image),
        1 => Just(UpdateChoice::ShortImage),
        10 => (0..TEST_PAGE_SIZE as u32 - 8, 1..9usize, any::<u8>())
            .prop_map(|(offset, len, byte)| UpdateChoice::Patch { offset, len, byte }),
        1 => (TEST_PAGE_SIZE as u32 - 4..TEST_PAGE_SIZE as u32 + 4, 5..9usize, any::<u8>())
            .prop_map(|(offset, len, byte)| UpdateChoice::PatchAnyway { offset, len, byte }),
        1 => (0..TEST_PAGE_SIZE as u32 - 8, 1..9usize, any::<u8>())
            .prop_map(|(offset, len, byte)| UpdateChoice::PatchAnyway { offset, len, byte }),
        3 => Just(UpdateChoice::Drop),
    ]
}

/// Mostly 1 to 3 updates on distinct keys; sometimes none, sometimes a key twice.
pub(crate) fn updates_choice() -> impl Strategy<Value = Vec<(u32, UpdateChoice)>> {
    prop_oneof![
        12 => prop::collection::btree_map(0..KEYS, update_choice(), 1..4)
            .prop_map(|updates| updates.into_iter().collect::<Vec<_>>()),
        1 => Just(Vec::new()),
        1 => (0..KEYS, update_choice(), update_choice())
            .prop_map(|(key, first, second)| vec![(key, first), (key, second)]),
    ]
}

pub(crate) fn at_choice() -> impl Strategy<Value = AtChoice> {
    prop_oneof![
        2 => Just(AtChoice::Latest),
        4 => (any::<usize>(), -1i8..=1).prop_map(|(index, delta)| AtChoice::Lsn { index, delta }),
        2 => (0u64..200).prop_map(AtChoice::Time),
    ]
}

/// `at_choice`, and now and then an LSN given as a small number (0/0 among them).
pub(crate) fn any_at_choice() -> impl Strategy<Value = AtChoice> {
    prop_oneof![
        8 => at_choice(),
        1 => (0u64..16).prop_map(AtChoice::Raw),
    ]
}

/// `expiry_choice`, and now and then a TTL of thousands of years or more.
pub(crate) fn any_expiry_choice() -> impl Strategy<Value = ExpiryChoice> {
    prop_oneof![
        9 => expiry_choice(),
        1 => prop_oneof![Just(7_000u64), Just(7_974), Just(8_000), Just(600_000)]
            .prop_map(ExpiryChoice::FarTtlYears),
    ]
}

/// A lease's length in seconds: mostly short, now and then 8,000 years.
pub(crate) fn lease_secs() -> impl Strategy<Value = u64> {
    prop_oneof![
        9 => 0u64..60,
        1 => Just(8_000 * 365 * 24 * 3600),
    ]
}

pub(crate) fn expiry_choice() -> impl Strategy<Value = ExpiryChoice> {
    prop_oneof![
        6 => Just(ExpiryChoice::Never),
        3 => (0u64..40).prop_map(ExpiryChoice::Ttl),
        1 => (0u64..300).prop_map(ExpiryChoice::At),
    ]
}

pub(crate) fn backup_choice() -> impl Strategy<Value = BackupChoice> {
    prop_oneof![
        2 => Just(BackupChoice::Default),
        1 => (0..NAMES.len()).prop_map(BackupChoice::Named),
        2 => Just(BackupChoice::Skip),
    ]
}

pub(crate) fn after_burst() -> impl Strategy<Value = AfterBurst> {
    prop_oneof![
        1 => Just(AfterBurst::Nothing),
        2 => Just(AfterBurst::Housekeep),
        1 => Just(AfterBurst::HousekeepAndCrash),
    ]
}

/// A point in the history, most often among the oldest LSNs seen (below the oldest WAL
/// kept once catalogs removed some), else any LSN seen or a time.
pub(crate) fn old_at_choice() -> impl Strategy<Value = AtChoice> {
    prop_oneof![
        3 => (0u8..3).prop_map(AtChoice::Oldest),
        1 => (0usize..3).prop_map(|index| AtChoice::Lsn { index, delta: 0 }),
        1 => (any::<usize>(), -1i8..=1).prop_map(|(index, delta)| AtChoice::Lsn { index, delta }),
        1 => (0u64..200).prop_map(AtChoice::Time),
    ]
}

/// The operation mix: every operation, with quiet branches (often at the oldest points
/// seen), bursts that move the WAL on by a segment or more, housekeep steps, and reopens
/// often enough to open what the last publish wrote.
pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (branch_pick(), updates_choice()).prop_map(|(branch, updates)| Op::Commit { branch, updates }),
        3 => (0..NAMES.len(), branch_pick(), any_at_choice(), any_expiry_choice(), prop::bool::weighted(0.1))
            .prop_map(|(name, parent, at, expiry, protected)| Op::CreateBranch { name, parent, at, expiry, protected }),
        1 => (branch_pick(), 0..NAMES.len()).prop_map(|(branch, name)| Op::Rename { branch, name }),
        1 => (branch_pick(), any::<bool>()).prop_map(|(branch, protected)| Op::Protect { branch, protected }),
        1 => (branch_pick(), any_expiry_choice()).prop_map(|(branch, expiry)| Op::SetExpiry { branch, expiry }),
        1 => branch_pick().prop_map(|branch| Op::Reset { branch }),
        2 => branch_pick().prop_map(|branch| Op::Detach { branch }),
        2 => (branch_pick(), branch_pick(), any_at_choice(), backup_choice())
            .prop_map(|(branch, source, at, backup)| Op::Restore { branch, source, at, backup }),
        1 => (branch_pick(), any_at_choice(), branch_pick(), any_at_choice())
            .prop_map(|(from, from_at, to, to_at)| Op::Diff { from, from_at, to, to_at }),
        1 => branch_pick().prop_map(|branch| Op::DeleteBranch { branch }),
        4 => (branch_pick(), 0..KEYS, any_at_choice()).prop_map(|(branch, key, at)| Op::Read { branch, key, at }),
        2 => (branch_pick(), 0u64..200).prop_map(|(branch, secs)| Op::LsnForTime { branch, secs }),
        3 => (0u64..20, prop::bool::weighted(0.2)).prop_map(|(forward_secs, back)| Op::Clock { forward_secs, back }),
        2 => any::<usize>().prop_map(|nth| Op::ClockBackBeforeEnd { nth }),
        5 => (0..NAMES.len() - 1, branch_pick(), old_at_choice(), 0..KEYS, update_choice())
            .prop_map(|(name, parent, at, key, update)| Op::QuietBranch { name, parent, at, update: (key, update) }),
        4 => (any::<usize>().prop_map(BranchPick::Live), 3u8..8, 2..KEYS, any::<u8>(), after_burst())
            .prop_map(|(branch, commits, pages, byte, then)| Op::Burst { branch, commits, pages, byte, then }),
        3 => Just(Op::Housekeep),
        2 => Just(Op::Reopen),
        2 => Just(Op::Crash),
        2 => Just(Op::Checkpoint),
        2 => Just(Op::Compact),
        3 => Just(Op::Gc),
        3 => (branch_pick(), any_at_choice(), lease_secs()).prop_map(|(branch, at, secs)| Op::Lease { branch, at, secs }),
        1 => (branch_pick(), prop::option::of(pitr_window_secs())).prop_map(|(branch, secs)| Op::SetPitrWindow { branch, secs }),
    ]
}

/// The operation mix before issue 18 (no quiet branches, bursts or housekeep steps), kept
/// so the simulation's regression seeds replay the runs they were found in.
pub(crate) fn op_v1() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (branch_pick(), updates_choice()).prop_map(|(branch, updates)| Op::Commit { branch, updates }),
        3 => (0..NAMES.len(), branch_pick(), at_choice(), expiry_choice(), prop::bool::weighted(0.1))
            .prop_map(|(name, parent, at, expiry, protected)| Op::CreateBranch { name, parent, at, expiry, protected }),
        1 => (branch_pick(), 0..NAMES.len()).prop_map(|(branch, name)| Op::Rename { branch, name }),
        1 => (branch_pick(), any::<bool>()).prop_map(|(branch, protected)| Op::Protect { branch, protected }),
        1 => (branch_pick(), expiry_choice()).prop_map(|(branch, expiry)| Op::SetExpiry { branch, expiry }),
        1 => branch_pick().prop_map(|branch| Op::Reset { branch }),
        2 => branch_pick().prop_map(|branch| Op::Detach { branch }),
        2 => (branch_pick(), branch_pick(), at_choice(), backup_choice())
            .prop_map(|(branch, source, at, backup)| Op::Restore { branch, source, at, backup }),
        1 => (branch_pick(), at_choice(), branch_pick(), at_choice())
            .prop_map(|(from, from_at, to, to_at)| Op::Diff { from, from_at, to, to_at }),
        1 => branch_pick().prop_map(|branch| Op::DeleteBranch { branch }),
        4 => (branch_pick(), 0..KEYS, at_choice()).prop_map(|(branch, key, at)| Op::Read { branch, key, at }),
        2 => (branch_pick(), 0u64..200).prop_map(|(branch, secs)| Op::LsnForTime { branch, secs }),
        3 => (0u64..20, prop::bool::weighted(0.2)).prop_map(|(forward_secs, back)| Op::Clock { forward_secs, back }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        2 => Just(Op::Checkpoint),
        2 => Just(Op::Compact),
        3 => Just(Op::Gc),
        1 => (branch_pick(), at_choice(), 0u64..60).prop_map(|(branch, at, secs)| Op::Lease { branch, at, secs }),
        // As when the seeds of `Mix::V1` were found (the windows' strategy draws nothing
        // else), so they replay the same runs.
        1 => (branch_pick(), prop::option::of(0u64..60)).prop_map(|(branch, secs)| Op::SetPitrWindow { branch, secs }),
    ]
}

/// A PITR window in seconds: mostly within the test's minute, now and then the longest a
/// store holds (u64 microseconds, kept exactly) or far past it (refused: a store once
/// answered such a window and kept it shorter; the exact boundary is
/// `engine_refusals`' regression test).
fn pitr_window_secs() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0u64..60,
        1 => Just(u64::MAX / 1_000_000),
        1 => Just(u64::MAX),
    ]
}
