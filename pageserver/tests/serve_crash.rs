//! SIGKILL of `pagefork serve` under load, again and again, as users run it: one project
//! created over the API with the defaults (8 KiB pages, 16 MiB WAL segments, the default
//! flush and checkpoint thresholds), and four clients doing a mixed load over HTTP at once:
//! single-page commits, multi-page batch commits, branches created at older acknowledged
//! LSNs, at acknowledged commit times and at latest, writes on those branches, resets,
//! restores, deletes, and now and then a compaction or a GC. At a random moment the server
//! gets SIGKILL; it must start again on the same data directory (every project store must
//! open, or the test fails with the server's stderr), and then what the clients were told
//! must still hold:
//!
//! - an acknowledged commit reads back at its LSN on the branch it was written to, and at
//!   latest, unless a later write to that page or a reset or restore of that branch
//!   replaced it (a reset or restore gives the name a new branch; the old history goes);
//! - an acknowledged branch exists, with the parent and branch point it was acknowledged
//!   with;
//! - a request whose answer never came (in doubt) happened or did not, whole: a batch
//!   shows all of its pages or none of them.
//!
//! Each client writes only its own relations (on `main` and on the branches it creates)
//! and keeps a model of them: a tree of branch generations, each with the page versions
//! written on it and the LSNs they were acknowledged at, so it can say what any of its
//! pages must read at latest or at an LSN, through ancestors, by the engine's read rule.
//! After every restart a client first settles its request in doubt by reading what it
//! would have changed: it must show one of the two outcomes (the LSN of one that happened
//! is then known only to lie between the client's last acknowledged LSN and the WAL's end
//! at the restart, and reads the model cannot answer for sure are not made). Then it
//! audits every branch it owns against the branch list, every commit acknowledged since
//! the last audit (up to 4 pages of a batch) at its LSN and at latest, and a random sample
//! of older commits and of pages through ancestors, and the load goes on with the same
//! bookkeeping.
//!
//! Why a black-box test: the engine's crash tests simulate power loss in process; this one
//! runs the real binary, whose background housekeeping (flushes, catalog publication, WAL
//! segment removal) races the clients. Hundreds of MiB of pages go through over the
//! default 20 kills, most to `main` (so its open layer reaches the flush threshold and a
//! catalog is published while other branches hold unflushed writes), and after the 2nd,
//! 8th, 14th... kill a round ends with SIGTERM instead, as in a deploy: the shutdown
//! checkpoint removes the WAL, and branches made later at older LSNs point below it.
//!
//! `PAGEFORK_SERVE_KILLS` sets the number of kills (default 20), `PAGEFORK_SERVE_SEED` the
//! seed of payloads, operations and kill times (default fixed; printed, and named by every
//! failure, which also says the round, client, branch, page and LSN). Runs are not exactly
//! repeatable (threads and the server race), but a seed repeats the same kind of run.

// A test may panic: unwrapping and indexing its own fixtures is how it fails.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use pagefork_tests::TestRng as Rng;
use support::{Answer, Http, NoAnswer, Server};

const PROJECT: &str = "crash";
const BRANCHES: &str = "/v1/projects/crash/branches";
/// The default page size: the project is created without one.
const PAGE: usize = 8192;
const CLIENTS: u32 = 4;
const DEFAULT_KILLS: u64 = 20;
const DEFAULT_SEED: u64 = 0x005E_ED0F_C2A5_4001;
/// Share of writes (per mille) that go to `main`, the rest to the client's own branches:
/// `main` gets most, so its open layer reaches the flush threshold (32 MiB) and a catalog is
/// published while the other branches still hold unflushed writes.
const MAIN_WRITES: u64 = 800;
/// Load runs this many milliseconds (uniformly chosen) before each kill.
const LOAD_MS: (u64, u64) = (100, 2000);
/// Bounds of one client's load in one round, should the kill not come.
const MAX_OPS_PER_ROUND: u32 = 50_000;
const MAX_LOAD_TIME: Duration = Duration::from_secs(60);
/// How long a (re)start may take to print the address, and a request to be answered.
const START_LIMIT: Duration = Duration::from_secs(300);
const REQUEST_LIMIT: Duration = Duration::from_secs(300);
/// Single-page commits go to blocks below this in the client's small relation, batches to
/// blocks below `BULK_BLOCKS` of its bulk relation.
const SMALL_BLOCKS: u32 = 64;
const BULK_BLOCKS: u32 = 4096;
const _: () = assert!(BULK_BLOCKS.is_power_of_two());
/// Pages per batch commit.
const BATCH_PAGES: (u64, u64) = (16, 64);
/// A client deletes branches once it has more than this many, and creates none beyond
/// `MAX_OWN_BRANCHES + 8` (deletes of branches with children are refused).
const MAX_OWN_BRANCHES: usize = 6;
/// Pages of every commit acknowledged in a round read back after the restart, at the
/// commit's LSN and at latest: all of a single-page commit, this many of a batch (chosen at
/// random; a batch in doubt is read whole).
const PAGES_PER_COMMIT: usize = 4;
/// Random reads per client per audit: pages at latest or at an LSN, through ancestors; and
/// older acknowledged commits at their LSNs.
const SAMPLED_PAGES: usize = 48;
const SAMPLED_COMMITS: usize = 48;
/// The first line of every page: who wrote it, in which commit, where.
const MAGIC: &[u8; 8] = b"pfcrash1";

/// `(rel, block)`.
type Key = (u32, u32);

/// The page image client `client` writes in commit `seq` at `key`: a header naming all
/// four, then bytes from a splitmix64 stream seeded by them.
fn page(seed: u64, client: u32, seq: u64, (rel, block): Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAGE + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&client.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&rel.to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    let mut stream = Rng::new(
        seed ^ u64::from(client).rotate_left(48)
            ^ seq.rotate_left(16)
            ^ u64::from(rel).rotate_left(32)
            ^ u64::from(block),
    );
    while out.len() < PAGE {
        out.extend_from_slice(&stream.next_u64().to_le_bytes());
    }
    out.truncate(PAGE);
    out
}

/// What a page read shows, in words: whose page it is, or what else.
fn describe_page(seed: u64, body: &[u8]) -> String {
    let field = |range: std::ops::Range<usize>| body.get(range).unwrap_or_default();
    if body.len() != PAGE || field(0..8) != MAGIC {
        return format!(
            "{} bytes that are no page of this test ({:02x?}...)",
            body.len(),
            field(0..16.min(body.len()))
        );
    }
    let client = u32::from_le_bytes(field(8..12).try_into().unwrap());
    let seq = u64::from_le_bytes(field(12..20).try_into().unwrap());
    let rel = u32::from_le_bytes(field(20..24).try_into().unwrap());
    let block = u32::from_le_bytes(field(24..28).try_into().unwrap());
    let intact = page(seed, client, seq, (rel, block)) == body;
    format!(
        "the page of client {client} commit {seq} for rel {rel} block {block}{}",
        if intact { "" } else { ", its contents damaged" }
    )
}

fn parse_lsn(text: &str) -> u64 {
    let (high, low) = text
        .split_once('/')
        .unwrap_or_else(|| panic!("not an LSN: {text:?}"));
    let high = u64::from_str_radix(high, 16).unwrap_or_else(|_| panic!("not an LSN: {text:?}"));
    let low = u64::from_str_radix(low, 16).unwrap_or_else(|_| panic!("not an LSN: {text:?}"));
    (high << 32) | low
}

fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// An LSN field of a JSON answer.
fn lsn_field(value: &Value, field: &str) -> u64 {
    parse_lsn(
        value[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field} in {value}")),
    )
}

fn page_path(branch: &str, (rel, block): Key, at: Option<u64>) -> String {
    match at {
        Some(lsn) => format!(
            "{BRANCHES}/{branch}/pages/{rel}/{block}?lsn={}",
            lsn_text(lsn)
        ),
        None => format!("{BRANCHES}/{branch}/pages/{rel}/{block}"),
    }
}

fn at_text(at: Option<u64>) -> String {
    at.map_or_else(|| "latest".to_owned(), lsn_text)
}

/// When a page version was written: at an acknowledged LSN, or (a request in doubt that
/// turned out to have happened) somewhere in `after < lsn <= up_to`.
#[derive(Clone, Copy, Debug)]
enum Written {
    At(u64),
    Between { after: u64, up_to: u64 },
}

/// What a page must read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The page of this client's commit `seq`.
    Page(u64),
    /// No such page (404).
    Missing,
    /// The model cannot say (a version in doubt may or may not be visible): not read.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    Live,
    /// A reset or restore gave its name to a new branch; it is hidden (or gone).
    Replaced,
    Deleted,
}

/// One branch as the store has it (a name gets a new one on reset or restore).
#[derive(Debug)]
struct Generation {
    name: String,
    id: u64,
    /// Parent generation and branch point.
    parent: Option<(usize, u64)>,
    /// Its own history starts here (the branch point; 0 for `main`).
    start: u64,
    life: Life,
    /// This client's page versions written on it, in LSN order: when and which commit.
    writes: BTreeMap<Key, Vec<(Written, u64)>>,
    /// Its acknowledged commits (this client's): LSN and commit time.
    acked: Vec<(u64, String)>,
}

/// Where a branch is made (or restored) from.
#[derive(Clone, Debug)]
enum Point {
    Latest,
    Lsn(u64),
    /// The time of an acknowledged commit, and that commit's LSN.
    Time(String, u64),
}

/// A request sent and never answered.
#[derive(Debug)]
enum InDoubt {
    Commit {
        node: usize,
        seq: u64,
        keys: Vec<Key>,
        after: u64,
    },
    Create {
        name: String,
        parent: usize,
        point: Point,
        after: u64,
    },
    Replace {
        name: String,
        old: usize,
        /// `None` for a reset (the old parent at its head), else the restore's source.
        source: Option<(usize, Point)>,
        after: u64,
    },
    Delete {
        name: String,
        node: usize,
    },
    /// A compaction or GC: nothing to settle.
    Admin,
}

/// An acknowledged commit.
#[derive(Debug)]
struct Commit {
    node: usize,
    keys: Vec<Key>,
    lsn: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    commits: u64,
    pages: u64,
    branches: u64,
    resets: u64,
    restores: u64,
    deletes: u64,
    compactions: u64,
    gcs: u64,
    /// Time the acknowledged compactions and GCs took, together.
    admin_ms: u64,
    in_doubt: u64,
    in_doubt_happened: u64,
    refused: u64,
    load_reads: u64,
    audit_reads: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.commits += other.commits;
        self.pages += other.pages;
        self.branches += other.branches;
        self.resets += other.resets;
        self.restores += other.restores;
        self.deletes += other.deletes;
        self.compactions += other.compactions;
        self.admin_ms += other.admin_ms;
        self.gcs += other.gcs;
        self.in_doubt += other.in_doubt;
        self.in_doubt_happened += other.in_doubt_happened;
        self.refused += other.refused;
        self.load_reads += other.load_reads;
        self.audit_reads += other.audit_reads;
    }
}

/// What became of a request.
enum Sent {
    Answered(Answer),
    /// The connection was refused: it never reached the server.
    Refused,
    InDoubt,
}

fn sent(result: Result<Answer, NoAnswer>) -> Sent {
    match result {
        Ok(answer) => Sent::Answered(answer),
        Err(NoAnswer { refused: true, .. }) => Sent::Refused,
        Err(NoAnswer { .. }) => Sent::InDoubt,
    }
}

/// One client: its random stream, its model, what it has in doubt.
struct Client {
    id: u32,
    seed: u64,
    rng: Rng,
    /// The last commit sequence number (batches and branch names use it too).
    seq: u64,
    /// Every generation it has seen; 0 is `main`.
    gens: Vec<Generation>,
    /// Its live branch names (and `main`) and their generations.
    live: BTreeMap<String, usize>,
    /// Names it used that must not exist: deleted, or created by a request that never
    /// reached the server or did not happen.
    gone: BTreeSet<String>,
    /// Every LSN it was given is at most this; after a restart, at least the WAL's end.
    last_lsn: u64,
    in_doubt: Option<InDoubt>,
    commits: Vec<Commit>,
    /// Commits acknowledged since the last audit (indexes into `commits`), and pages a
    /// request in doubt turned out to have written.
    recent: Vec<usize>,
    settled: Vec<(usize, Key)>,
    round: u64,
    counters: Counters,
}

impl Client {
    fn new(id: u32, seed: u64, main_id: u64) -> Client {
        Client {
            id,
            seed,
            rng: Rng::new(seed ^ (u64::from(id) + 1).wrapping_mul(0xA076_1D64_78BD_642F)),
            seq: 0,
            gens: vec![Generation {
                name: "main".to_owned(),
                id: main_id,
                parent: None,
                start: 0,
                life: Life::Live,
                writes: BTreeMap::new(),
                acked: Vec::new(),
            }],
            live: BTreeMap::from([("main".to_owned(), 0)]),
            gone: BTreeSet::new(),
            last_lsn: 0,
            in_doubt: None,
            commits: Vec::new(),
            recent: Vec::new(),
            settled: Vec::new(),
            round: 0,
            counters: Counters::default(),
        }
    }

    fn small_rel(&self) -> u32 {
        1 + self.id
    }

    fn bulk_rel(&self) -> u32 {
        1000 + self.id
    }

    /// A failure message: where, and the seed.
    fn fail(&self, what: String) -> String {
        format!(
            "round {}, client {}: {what} (PAGEFORK_SERVE_SEED={:#x})",
            self.round, self.id, self.seed
        )
    }

    fn unexpected(&self, request: &str, answer: &Answer) -> String {
        self.fail(format!(
            "{request} answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ))
    }

    fn own_branches(&self) -> Vec<usize> {
        self.live
            .iter()
            .filter(|(name, _)| name.as_str() != "main")
            .map(|(_, node)| *node)
            .collect()
    }

    /// What `key` reads as on generation `node` at `at` (`u64::MAX`: latest), by the read
    /// rule: the generation's own versions at or below `at`, else its parent's as of
    /// `min(at, branch point)`, and so on; nothing at the root.
    fn expect(&self, node: usize, key: Key, at: u64) -> Expect {
        let (mut node, mut at) = (node, at);
        loop {
            let generation = &self.gens[node];
            let mut found = None;
            for (written, seq) in generation.writes.get(&key).into_iter().flatten() {
                match *written {
                    Written::At(lsn) if lsn <= at => found = Some(*seq),
                    Written::At(_) => break,
                    Written::Between { up_to, .. } if up_to <= at => found = Some(*seq),
                    Written::Between { after, .. } if after >= at => break,
                    Written::Between { .. } => return Expect::Unknown,
                }
            }
            if let Some(seq) = found {
                return Expect::Page(seq);
            }
            match generation.parent {
                Some((parent, branch_point)) => (node, at) = (parent, at.min(branch_point)),
                None => return Expect::Missing,
            }
        }
    }

    /// Reads `key` on live generation `node` at `at` (`None`: latest) and checks it against
    /// the model; `why` names the claim. Reads nothing if the model cannot say.
    fn check_page(
        &mut self,
        http: &Http,
        node: usize,
        key: Key,
        at: Option<u64>,
        why: &str,
    ) -> Result<(), String> {
        let expect = self.expect(node, key, at.unwrap_or(u64::MAX));
        if expect == Expect::Unknown {
            return Ok(());
        }
        let generation = &self.gens[node];
        let path = page_path(&generation.name, key, at);
        let Ok(answer) = http.get(&path) else {
            return Err(self.fail(format!("GET {path} got no answer")));
        };
        self.counters.audit_reads += 1;
        self.compare(&answer, expect, key).map_err(|read| {
            self.fail(format!(
                "{why}: branch {} (id {}) rel {} block {} at {}: expected {}, read {read}",
                generation.name,
                generation.id,
                key.0,
                key.1,
                at_text(at),
                self.describe_expect(expect, key),
            ))
        })
    }

    fn describe_expect(&self, expect: Expect, key: Key) -> String {
        match expect {
            Expect::Page(seq) => format!(
                "the page of client {} commit {seq} for rel {} block {}",
                self.id, key.0, key.1
            ),
            Expect::Missing => "no page (404)".to_owned(),
            Expect::Unknown => "anything".to_owned(),
        }
    }

    /// `Err` describes what was read instead.
    fn compare(&self, answer: &Answer, expect: Expect, key: Key) -> Result<(), String> {
        let matches = match expect {
            Expect::Page(seq) => {
                answer.status == 200 && answer.body == page(self.seed, self.id, seq, key)
            }
            Expect::Missing => {
                answer.status == 404
                    && serde_json::from_slice::<Value>(&answer.body)
                        .is_ok_and(|body| body["error"] == "page_not_found")
            }
            Expect::Unknown => true,
        };
        if matches {
            return Ok(());
        }
        Err(match answer.status {
            200 => format!(
                "{} (pagefork-lsn {:?})",
                describe_page(self.seed, &answer.body),
                answer.lsn
            ),
            status => format!("{status} {}", String::from_utf8_lossy(&answer.body)),
        })
    }

    // ---- load ----

    /// Runs operations until told to stop, the server stops answering, or the bounds.
    fn load(
        &mut self,
        http: &Http,
        stop: &AtomicBool,
        admin_busy: &AtomicBool,
        round: u64,
    ) -> Result<(), String> {
        self.round = round;
        let started = Instant::now();
        for _ in 0..MAX_OPS_PER_ROUND {
            if stop.load(Ordering::SeqCst) || started.elapsed() > MAX_LOAD_TIME {
                return Ok(());
            }
            let go_on = match self.rng.below(1000) {
                0..250 => self.commit(http, true)?,
                250..725 => self.commit(http, false)?,
                725..820 => self.create(http)?,
                820..870 => self.reset(http)?,
                870..920 => self.restore(http)?,
                920..960 => self.delete(http)?,
                960..965 => self.admin(http, admin_busy)?,
                _ => self.read(http)?,
            };
            if !go_on {
                return Ok(());
            }
        }
        Ok(())
    }

    /// A live generation to write on: mostly `main` (`MAIN_WRITES`), else one of its
    /// branches.
    fn write_target(&mut self) -> usize {
        let own = self.own_branches();
        if self.rng.chance(MAIN_WRITES) {
            return 0;
        }
        *self.rng.pick(&own).unwrap_or(&0)
    }

    /// Notes what became of a request that got no answer; returns `false` (stop).
    fn no_answer(&mut self, refused: bool, in_doubt: InDoubt) -> bool {
        if refused {
            self.counters.refused += 1;
            if let InDoubt::Create { name, .. } = in_doubt {
                self.gone.insert(name);
            }
        } else {
            self.counters.in_doubt += 1;
            self.in_doubt = Some(in_doubt);
        }
        false
    }

    /// A new LSN the server gave: it must be above every LSN given before.
    fn advance(&mut self, lsn: u64, what: &str) -> Result<(), String> {
        if lsn <= self.last_lsn {
            return Err(self.fail(format!(
                "{what} was acknowledged at LSN {}, not above {} (an earlier acknowledgment or the WAL's end at the restart)",
                lsn_text(lsn),
                lsn_text(self.last_lsn)
            )));
        }
        self.last_lsn = lsn;
        Ok(())
    }

    /// One commit on `main` or one of its branches: a single page (PUT) or a batch of
    /// pages (POST .../commit).
    fn commit(&mut self, http: &Http, single: bool) -> Result<bool, String> {
        let node = self.write_target();
        self.commit_on(http, node, single)
    }

    /// Most of the time, a commit on the branch an operation just made: users write on a
    /// branch they create, reset or restore (and its first write is what makes it need WAL
    /// from its branch point on).
    fn write_on_new(&mut self, http: &Http, node: usize) -> Result<bool, String> {
        if !self.rng.chance(800) {
            return Ok(true);
        }
        let single = self.rng.chance(500);
        self.commit_on(http, node, single)
    }

    fn commit_on(&mut self, http: &Http, node: usize, single: bool) -> Result<bool, String> {
        let name = self.gens[node].name.clone();
        self.seq += 1;
        let seq = self.seq;
        let keys: Vec<Key> = if single {
            vec![(
                self.small_rel(),
                self.rng.below(u64::from(SMALL_BLOCKS)) as u32,
            )]
        } else {
            // Distinct blocks, not in order: a random start and an odd stride (the number
            // of blocks is a power of two).
            let count = self.rng.between(BATCH_PAGES.0, BATCH_PAGES.1) as u32;
            let first = self.rng.below(u64::from(BULK_BLOCKS)) as u32;
            let stride = self.rng.below(u64::from(BULK_BLOCKS / 2)) as u32 * 2 + 1;
            (0..count)
                .map(|i| (self.bulk_rel(), (first + i * stride) % BULK_BLOCKS))
                .collect()
        };
        let after = self.last_lsn;
        let result = if single {
            let key = keys[0];
            http.put_page(
                &page_path(&name, key, None),
                &page(self.seed, self.id, seq, key),
            )
        } else {
            let mut body = String::from(r#"{"updates":["#);
            for (index, key) in keys.iter().enumerate() {
                if index > 0 {
                    body.push(',');
                }
                body.push_str(&format!(
                    r#"{{"rel":{},"block":{},"image":"{}"}}"#,
                    key.0,
                    key.1,
                    BASE64.encode(page(self.seed, self.id, seq, *key))
                ));
            }
            body.push_str("]}");
            http.post(&format!("{BRANCHES}/{name}/commit"), &body)
        };
        let answer = match sent(result) {
            Sent::Answered(answer) => answer,
            other => {
                let in_doubt = InDoubt::Commit {
                    node,
                    seq,
                    keys,
                    after,
                };
                return Ok(self.no_answer(matches!(other, Sent::Refused), in_doubt));
            }
        };
        if answer.status != 200 {
            return Err(self.unexpected(&format!("commit {seq} on {name}"), &answer));
        }
        let body = answer.json();
        let lsn = lsn_field(&body, "lsn");
        self.advance(lsn, &format!("commit {seq} on {name}"))?;
        let time = body["time"].as_str().unwrap().to_owned();
        let generation = &mut self.gens[node];
        for key in &keys {
            generation
                .writes
                .entry(*key)
                .or_default()
                .push((Written::At(lsn), seq));
        }
        generation.acked.push((lsn, time));
        self.counters.commits += 1;
        self.counters.pages += keys.len() as u64;
        self.recent.push(self.commits.len());
        self.commits.push(Commit { node, keys, lsn });
        Ok(true)
    }

    /// A point on `node` to branch or restore from: an acknowledged LSN on it (often an old
    /// one), the time of an acknowledged commit on it, or latest.
    fn point(&mut self, node: usize) -> Point {
        let choice = self.rng.below(1000);
        let Some((lsn, time)) = self.rng.pick(&self.gens[node].acked).cloned() else {
            return Point::Latest;
        };
        match choice {
            0..500 => Point::Lsn(lsn),
            500..800 => Point::Time(time, lsn),
            _ => Point::Latest,
        }
    }

    /// Checks the branch point a create or restore was answered with against what was
    /// asked: the LSN itself, at or above the LSN of the commit whose time was given, or
    /// at or above the source's own acknowledged commits.
    fn check_point(
        &self,
        what: &str,
        source: usize,
        point: &Point,
        branch_point: u64,
    ) -> Result<(), String> {
        let source_gen = &self.gens[source];
        let floor = match point {
            Point::Lsn(lsn) if branch_point != *lsn => {
                return Err(self.fail(format!(
                    "{what}: asked for LSN {} of {}, got branch point {}",
                    lsn_text(*lsn),
                    source_gen.name,
                    lsn_text(branch_point)
                )));
            }
            Point::Lsn(lsn) => *lsn,
            Point::Time(_, lsn) => *lsn,
            Point::Latest => source_gen
                .acked
                .last()
                .map_or(source_gen.start, |(lsn, _)| *lsn),
        };
        if branch_point < floor.max(source_gen.start) {
            return Err(self.fail(format!(
                "{what}: from {} at {point:?}, got branch point {}, below {} (an acknowledged commit it must see)",
                source_gen.name,
                lsn_text(branch_point),
                lsn_text(floor)
            )));
        }
        Ok(())
    }

    /// Checks a branch as the API shows it (create, reset, restore, show, list) against
    /// generation `node`: id, parent (by name, or hidden) and branch point.
    fn check_branch(&self, shown: &Value, node: usize, what: &str) -> Result<(), String> {
        let generation = &self.gens[node];
        let mut wrong = Vec::new();
        if shown["id"].as_u64() != Some(generation.id) {
            wrong.push(format!("id {} (expected {})", shown["id"], generation.id));
        }
        match generation.parent {
            None => {
                if !shown["parent"].is_null() {
                    wrong.push(format!("parent {} (expected none)", shown["parent"]));
                }
            }
            Some((parent, branch_point)) => {
                if shown["branch_point"].as_str() != Some(lsn_text(branch_point).as_str()) {
                    wrong.push(format!(
                        "branch point {} (expected {})",
                        shown["branch_point"],
                        lsn_text(branch_point)
                    ));
                }
                let parent_gen = &self.gens[parent];
                if parent_gen.life == Life::Live {
                    if shown["parent"].as_str() != Some(parent_gen.name.as_str())
                        || shown["parent_hidden"] != false
                    {
                        wrong.push(format!(
                            "parent {} hidden {} (expected {}, not hidden)",
                            shown["parent"], shown["parent_hidden"], parent_gen.name
                        ));
                    }
                } else if shown["parent_hidden"] != true {
                    wrong.push(format!(
                        "parent {} hidden {} (expected the old state of {} (id {}), hidden)",
                        shown["parent"], shown["parent_hidden"], parent_gen.name, parent_gen.id
                    ));
                }
            }
        }
        if wrong.is_empty() {
            return Ok(());
        }
        Err(self.fail(format!(
            "{what}: branch {} shows {} [{shown}]",
            generation.name,
            wrong.join(", ")
        )))
    }

    fn add_generation(&mut self, shown: &Value, parent: usize) -> usize {
        let name = shown["name"].as_str().unwrap().to_owned();
        let branch_point = lsn_field(shown, "branch_point");
        self.gens.push(Generation {
            name: name.clone(),
            id: shown["id"].as_u64().unwrap(),
            parent: Some((parent, branch_point)),
            start: branch_point,
            life: Life::Live,
            writes: BTreeMap::new(),
            acked: Vec::new(),
        });
        let node = self.gens.len() - 1;
        self.live.insert(name, node);
        node
    }

    /// Creates a branch of `main` or of one of its own, at an old LSN, a time or latest.
    fn create(&mut self, http: &Http) -> Result<bool, String> {
        let own = self.own_branches();
        if own.len() >= MAX_OWN_BRANCHES + 8 {
            return self.commit(http, true);
        }
        let parent = if self.rng.chance(300) {
            *self.rng.pick(&own).unwrap_or(&0)
        } else {
            0
        };
        self.seq += 1;
        let name = format!("c{}-b{}", self.id, self.seq);
        let point = self.point(parent);
        let mut spec = json!({"source_branch": format!("projects/{PROJECT}/branches/{}", self.gens[parent].name)});
        match &point {
            Point::Lsn(lsn) => spec["source_branch_lsn"] = json!(lsn_text(*lsn)),
            Point::Time(time, _) => spec["source_branch_time"] = json!(time),
            Point::Latest => {}
        }
        let body = json!({"branch_id": name, "spec": spec}).to_string();
        let after = self.last_lsn;
        let answer = match sent(http.post(BRANCHES, &body)) {
            Sent::Answered(answer) => answer,
            other => {
                let in_doubt = InDoubt::Create {
                    name,
                    parent,
                    point,
                    after,
                };
                return Ok(self.no_answer(matches!(other, Sent::Refused), in_doubt));
            }
        };
        let what = format!("create {name} from {} ({body})", self.gens[parent].name);
        if answer.status != 201 {
            return Err(self.unexpected(&what, &answer));
        }
        let shown = answer.json();
        self.advance(lsn_field(&shown, "created_lsn"), &what)?;
        if shown["resolved_lsn"] != shown["branch_point"] {
            return Err(self.fail(format!(
                "{what}: resolved_lsn and branch_point differ: {shown}"
            )));
        }
        self.check_point(&what, parent, &point, lsn_field(&shown, "branch_point"))?;
        let node = self.add_generation(&shown, parent);
        self.check_branch(&shown, node, &what)?;
        self.counters.branches += 1;
        self.write_on_new(http, node)
    }

    /// Resets one of its branches to its parent's latest state.
    fn reset(&mut self, http: &Http) -> Result<bool, String> {
        let own = self.own_branches();
        let Some(&old) = self.rng.pick(&own) else {
            return self.commit(http, true);
        };
        let name = self.gens[old].name.clone();
        let after = self.last_lsn;
        let answer = match sent(http.post(&format!("{BRANCHES}/{name}/reset"), "{}")) {
            Sent::Answered(answer) => answer,
            other => {
                let in_doubt = InDoubt::Replace {
                    name,
                    old,
                    source: None,
                    after,
                };
                return Ok(self.no_answer(matches!(other, Sent::Refused), in_doubt));
            }
        };
        let what = format!("reset {name}");
        if answer.status != 200 {
            return Err(self.unexpected(&what, &answer));
        }
        let node = self.replaced(&answer.json(), old, None, &what)?;
        self.counters.resets += 1;
        self.write_on_new(http, node)
    }

    /// Restores one of its branches in place from itself (or `main`) at an old LSN, a time
    /// or latest, without a backup.
    fn restore(&mut self, http: &Http) -> Result<bool, String> {
        let own = self.own_branches();
        let Some(&old) = self.rng.pick(&own) else {
            return self.commit(http, true);
        };
        let source = if self.rng.chance(700) { old } else { 0 };
        let point = self.point(source);
        let name = self.gens[old].name.clone();
        let mut body = json!({"source_branch": self.gens[source].name, "no_backup": true});
        match &point {
            Point::Lsn(lsn) => body["source_branch_lsn"] = json!(lsn_text(*lsn)),
            Point::Time(time, _) => body["source_branch_time"] = json!(time),
            Point::Latest => {}
        }
        let body = body.to_string();
        let after = self.last_lsn;
        let answer = match sent(http.post(&format!("{BRANCHES}/{name}/restore"), &body)) {
            Sent::Answered(answer) => answer,
            other => {
                let in_doubt = InDoubt::Replace {
                    name,
                    old,
                    source: Some((source, point)),
                    after,
                };
                return Ok(self.no_answer(matches!(other, Sent::Refused), in_doubt));
            }
        };
        let what = format!("restore {name} ({body})");
        if answer.status != 200 {
            return Err(self.unexpected(&what, &answer));
        }
        let shown = answer.json();
        if !shown["backup"].is_null() {
            return Err(self.fail(format!("{what}: made a backup: {shown}")));
        }
        let node = self.replaced(&shown, old, Some((source, point)), &what)?;
        self.counters.restores += 1;
        self.write_on_new(http, node)
    }

    /// Notes a reset (`source` `None`) or restore of generation `old` that happened, as
    /// `shown`, and checks it; returns the new generation.
    fn replaced(
        &mut self,
        shown: &Value,
        old: usize,
        source: Option<(usize, Point)>,
        what: &str,
    ) -> Result<usize, String> {
        self.advance(lsn_field(shown, "created_lsn"), what)?;
        if shown["id"].as_u64() == Some(self.gens[old].id) {
            return Err(self.fail(format!("{what}: the branch kept its id: {shown}")));
        }
        let branch_point = lsn_field(shown, "branch_point");
        let parent = match &source {
            None => {
                let (parent, _) = self.gens[old].parent.expect("a branch of its own");
                self.check_point(what, parent, &Point::Latest, branch_point)?;
                parent
            }
            Some((source, point)) => {
                self.check_point(what, *source, point, branch_point)?;
                *source
            }
        };
        self.gens[old].life = Life::Replaced;
        let node = self.add_generation(shown, parent);
        self.check_branch(shown, node, what)?;
        Ok(node)
    }

    /// Deletes one of its branches once it has many (refused while it has children).
    fn delete(&mut self, http: &Http) -> Result<bool, String> {
        let own = self.own_branches();
        if own.len() <= MAX_OWN_BRANCHES {
            return self.commit(http, false);
        }
        let &node = self.rng.pick(&own).unwrap();
        let name = self.gens[node].name.clone();
        let answer = match sent(http.delete(&format!("{BRANCHES}/{name}"))) {
            Sent::Answered(answer) => answer,
            other => {
                let in_doubt = InDoubt::Delete { name, node };
                return Ok(self.no_answer(matches!(other, Sent::Refused), in_doubt));
            }
        };
        match answer.status {
            200 => {
                self.gens[node].life = Life::Deleted;
                self.live.remove(&name);
                self.gone.insert(name);
                self.counters.deletes += 1;
            }
            409 if answer.json()["error"] == "has_children" => {}
            _ => return Err(self.unexpected(&format!("delete {name}"), &answer)),
        }
        Ok(true)
    }

    /// A compaction (which checkpoints first) or a GC (which flushes every branch and
    /// publishes a catalog), one at a time across clients: both remove WAL no branch needs.
    fn admin(&mut self, http: &Http, admin_busy: &AtomicBool) -> Result<bool, String> {
        if admin_busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return self.commit(http, false);
        }
        let what = if self.rng.chance(500) {
            "compact"
        } else {
            "gc"
        };
        let started = Instant::now();
        let result = http.post(&format!("/v1/projects/{PROJECT}/{what}"), "{}");
        admin_busy.store(false, Ordering::SeqCst);
        let answer = match sent(result) {
            Sent::Answered(answer) => answer,
            other => return Ok(self.no_answer(matches!(other, Sent::Refused), InDoubt::Admin)),
        };
        if answer.status != 200 {
            return Err(self.unexpected(what, &answer));
        }
        let counter = match what {
            "compact" => &mut self.counters.compactions,
            _ => &mut self.counters.gcs,
        };
        *counter += 1;
        self.counters.admin_ms += started.elapsed().as_millis() as u64;
        Ok(true)
    }

    /// A read during the load: one of its pages at latest, as the model says.
    fn read(&mut self, http: &Http) -> Result<bool, String> {
        let node = self.write_target();
        let Some(key) = self.random_key(node) else {
            return Ok(true);
        };
        let expect = self.expect(node, key, u64::MAX);
        let path = page_path(&self.gens[node].name, key, None);
        let answer = match sent(http.get(&path)) {
            Sent::Answered(answer) => answer,
            // A read changes nothing: nothing to settle.
            _ => return Ok(false),
        };
        self.counters.load_reads += 1;
        self.compare(&answer, expect, key).map_err(|read| {
            self.fail(format!(
                "read during the load: GET {path}: expected {}, read {read}",
                self.describe_expect(expect, key)
            ))
        })?;
        Ok(true)
    }

    /// A key this client wrote on `node` or one of its ancestors.
    fn random_key(&mut self, node: usize) -> Option<Key> {
        let mut chain = vec![node];
        while let Some((parent, _)) = self.gens[*chain.last().unwrap()].parent {
            chain.push(parent);
        }
        let &from = self.rng.pick(&chain).unwrap();
        let writes = &self.gens[from].writes;
        if writes.is_empty() {
            return None;
        }
        let index = self.rng.below(writes.len() as u64) as usize;
        writes.keys().nth(index).copied()
    }

    // ---- after a restart ----

    /// Settles the request in doubt, then audits (see the module doc). `wal_end` is the
    /// WAL's end right after the restart, before any client wrote.
    fn recover(&mut self, http: &Http, wal_end: u64, round: u64) -> Result<(), String> {
        self.round = round;
        if let Some(in_doubt) = self.in_doubt.take() {
            self.settle(http, in_doubt, wal_end)?;
        }
        // Everything from now on is logged after the restart.
        self.last_lsn = self.last_lsn.max(wal_end);
        self.audit_branches(http)?;
        self.audit_pages(http)
    }

    fn get_branch(&self, http: &Http, name: &str) -> Result<Answer, String> {
        http.get(&format!("{BRANCHES}/{name}"))
            .map_err(|error| self.fail(format!("GET branch {name}: no answer: {error:?}")))
    }

    fn settle(&mut self, http: &Http, in_doubt: InDoubt, wal_end: u64) -> Result<(), String> {
        match in_doubt {
            InDoubt::Commit {
                node,
                seq,
                keys,
                after,
            } => self.settle_commit(http, node, seq, &keys, after, wal_end),
            InDoubt::Create {
                name,
                parent,
                point,
                after,
            } => {
                let answer = self.get_branch(http, &name)?;
                let what = format!("create {name} (in doubt)");
                match answer.status {
                    404 => {
                        self.gone.insert(name);
                        Ok(())
                    }
                    200 => {
                        let shown = answer.json();
                        self.check_in_doubt_lsn(&shown, after, wal_end, &what)?;
                        self.check_point(&what, parent, &point, lsn_field(&shown, "branch_point"))?;
                        let node = self.add_generation(&shown, parent);
                        self.check_branch(&shown, node, &what)?;
                        self.counters.in_doubt_happened += 1;
                        Ok(())
                    }
                    _ => Err(self.unexpected(&format!("GET {name} after {what}"), &answer)),
                }
            }
            InDoubt::Replace {
                name,
                old,
                source,
                after,
            } => {
                let answer = self.get_branch(http, &name)?;
                let what = format!(
                    "{} {name} (in doubt)",
                    if source.is_some() { "restore" } else { "reset" }
                );
                if answer.status != 200 {
                    return Err(self.unexpected(&format!("GET {name} after {what}"), &answer));
                }
                let shown = answer.json();
                if shown["id"].as_u64() == Some(self.gens[old].id) {
                    return Ok(());
                }
                self.check_in_doubt_lsn(&shown, after, wal_end, &what)?;
                self.replaced(&shown, old, source, &what)?;
                self.counters.in_doubt_happened += 1;
                Ok(())
            }
            InDoubt::Delete { name, node } => {
                let answer = self.get_branch(http, &name)?;
                match answer.status {
                    404 => {
                        self.gens[node].life = Life::Deleted;
                        self.live.remove(&name);
                        self.gone.insert(name);
                        self.counters.in_doubt_happened += 1;
                        Ok(())
                    }
                    200 => self.check_branch(&answer.json(), node, "delete (in doubt)"),
                    _ => Err(self.unexpected(&format!("GET {name} after a delete"), &answer)),
                }
            }
            InDoubt::Admin => Ok(()),
        }
    }

    /// A branch operation in doubt that happened was logged after the client's last
    /// acknowledged LSN and at or before the WAL's end at the restart.
    fn check_in_doubt_lsn(
        &self,
        shown: &Value,
        after: u64,
        wal_end: u64,
        what: &str,
    ) -> Result<(), String> {
        let created = lsn_field(shown, "created_lsn");
        if created <= after || created > wal_end {
            return Err(self.fail(format!(
                "{what}: created at LSN {}, outside ({}, {}] (after the last acknowledgment, up to the WAL's end at the restart)",
                lsn_text(created),
                lsn_text(after),
                lsn_text(wal_end)
            )));
        }
        Ok(())
    }

    /// A commit in doubt: every page of it reads as the commit wrote it, or none does (and
    /// each reads as it did before).
    fn settle_commit(
        &mut self,
        http: &Http,
        node: usize,
        seq: u64,
        keys: &[Key],
        after: u64,
        wal_end: u64,
    ) -> Result<(), String> {
        let name = self.gens[node].name.clone();
        let mut written = Vec::new();
        let mut not_written = Vec::new();
        for &key in keys {
            let before = self.expect(node, key, u64::MAX);
            let path = page_path(&name, key, None);
            let answer = http
                .get(&path)
                .map_err(|error| self.fail(format!("GET {path}: no answer: {error:?}")))?;
            self.counters.audit_reads += 1;
            if self.compare(&answer, Expect::Page(seq), key).is_ok() {
                written.push(key);
            } else {
                not_written.push((key, before, answer));
            }
        }
        let what = format!(
            "commit {seq} of {} pages on {name} (in doubt, after LSN {})",
            keys.len(),
            lsn_text(after)
        );
        if !written.is_empty() && !not_written.is_empty() {
            let missing: Vec<String> = not_written
                .iter()
                .map(|(key, _, answer)| {
                    let read = self
                        .compare(answer, Expect::Page(seq), *key)
                        .err()
                        .unwrap_or_default();
                    format!("rel {} block {}: {read}", key.0, key.1)
                })
                .collect();
            return Err(self.fail(format!(
                "{what} is not all or nothing after the restart: {} of its pages show it, these do not: {}",
                written.len(),
                missing.join("; ")
            )));
        }
        if written.is_empty() {
            // It did not happen: every page reads as before it.
            for (key, before, answer) in &not_written {
                self.compare(answer, *before, *key).map_err(|read| {
                    self.fail(format!(
                        "{what} did not happen, yet rel {} block {} at latest is not what it was: expected {}, read {read}",
                        key.0,
                        key.1,
                        self.describe_expect(*before, *key)
                    ))
                })?;
            }
            return Ok(());
        }
        let generation = &mut self.gens[node];
        for &key in keys {
            generation.writes.entry(key).or_default().push((
                Written::Between {
                    after,
                    up_to: wal_end,
                },
                seq,
            ));
            self.settled.push((node, key));
        }
        self.counters.in_doubt_happened += 1;
        Ok(())
    }

    /// Every branch it owns is listed as the model has it; no name it gave up is.
    fn audit_branches(&mut self, http: &Http) -> Result<(), String> {
        let answer = http
            .get(BRANCHES)
            .map_err(|error| self.fail(format!("GET {BRANCHES}: no answer: {error:?}")))?;
        if answer.status != 200 {
            return Err(self.unexpected("list branches", &answer));
        }
        let listed: BTreeMap<String, Value> = answer.json()["branches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|branch| (branch["name"].as_str().unwrap().to_owned(), branch.clone()))
            .collect();
        for (name, &node) in &self.live {
            let Some(shown) = listed.get(name) else {
                return Err(self.fail(format!(
                    "acknowledged branch {name} (id {}) is not listed after the restart",
                    self.gens[node].id
                )));
            };
            self.check_branch(shown, node, "after the restart")?;
        }
        if let Some(name) = self.gone.iter().find(|name| listed.contains_key(*name)) {
            return Err(self.fail(format!(
                "branch {name} is listed after the restart, but it was deleted or never created: {}",
                listed[name]
            )));
        }
        Ok(())
    }

    /// Reads back what was acknowledged since the last audit (at its LSN and at latest),
    /// and a random sample of older commits and of pages through ancestors.
    fn audit_pages(&mut self, http: &Http) -> Result<(), String> {
        let mut checks: Vec<(usize, Key, Option<u64>, &str)> = Vec::new();
        for index in std::mem::take(&mut self.recent) {
            let commit = &self.commits[index];
            if self.gens[commit.node].life != Life::Live {
                continue;
            }
            let mut keys = commit.keys.clone();
            while keys.len() > PAGES_PER_COMMIT {
                keys.swap_remove(self.rng.below(keys.len() as u64) as usize);
            }
            for key in keys {
                let why = "an acknowledged commit at its LSN";
                checks.push((commit.node, key, Some(commit.lsn), why));
                let why = "the last acknowledged write at latest";
                checks.push((commit.node, key, None, why));
            }
        }
        for (node, key) in std::mem::take(&mut self.settled) {
            if self.gens[node].life == Life::Live {
                let why = "a write in doubt that happened, at latest";
                checks.push((node, key, None, why));
            }
        }
        if !self.commits.is_empty() {
            for _ in 0..SAMPLED_COMMITS {
                let index = self.rng.below(self.commits.len() as u64) as usize;
                let commit = &self.commits[index];
                if self.gens[commit.node].life == Life::Live {
                    let key = commit.keys[self.rng.below(commit.keys.len() as u64) as usize];
                    let why = "an older acknowledged commit at its LSN";
                    checks.push((commit.node, key, Some(commit.lsn), why));
                }
            }
        }
        let live: Vec<usize> = self.live.values().copied().collect();
        for _ in 0..SAMPLED_PAGES {
            let &node = self.rng.pick(&live).unwrap();
            let Some(key) = self.random_key(node) else {
                continue;
            };
            let generation = &self.gens[node];
            let mut points: Vec<u64> = generation.acked.iter().map(|(lsn, _)| *lsn).collect();
            if generation.parent.is_some() {
                points.push(generation.start);
            }
            let at = if self.rng.chance(500) {
                None
            } else {
                self.rng.pick(&points).copied()
            };
            checks.push((
                node,
                key,
                at,
                "a page as the model has it (through ancestors)",
            ));
        }
        for (node, key, at, why) in checks {
            self.check_page(http, node, key, at, why)?;
        }
        Ok(())
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number"))
        }
    }
}

/// The WAL segments of the project, for the round lines: how many, and where the oldest
/// starts (a sign that checkpoints removed WAL).
fn wal_segments(dir: &Path) -> (usize, String) {
    let wal = dir.join("projects").join(PROJECT).join("wal");
    let mut names: Vec<String> = std::fs::read_dir(&wal)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".wal"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let oldest = names
        .first()
        .and_then(|name| u64::from_str_radix(name.trim_end_matches(".wal"), 16).ok())
        .map_or_else(|| "-".to_owned(), lsn_text);
    (names.len(), oldest)
}

fn wal_end(http: &Http, round: u64) -> u64 {
    let answer = http
        .get(&format!("/v1/projects/{PROJECT}/stats"))
        .unwrap_or_else(|error| panic!("round {round}: stats: no answer: {error:?}"));
    assert_eq!(answer.status, 200, "round {round}: stats");
    lsn_field(&answer.json(), "wal_end")
}

/// How a round ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: nothing runs after it, no checkpoint.
    Kill,
    /// SIGTERM: the server finishes the requests in flight, checkpoints (flushing every
    /// branch and removing the WAL none needs) and exits 0, as in a deploy.
    Term,
}

/// The rounds: `kills` SIGKILLs, with a SIGTERM round after the 2nd, 8th, 14th... kill, so
/// that branches made later at LSNs from before it point below the WAL it removed.
fn schedule(kills: u64) -> Vec<Stop> {
    let mut stops = Vec::new();
    for kill in 1..=kills {
        stops.push(Stop::Kill);
        if kill % 6 == 2 && kill < kills {
            stops.push(Stop::Term);
        }
    }
    stops
}

fn totals(clients: &[Client]) -> Counters {
    let mut total = Counters::default();
    for client in clients {
        total.add(&client.counters);
    }
    total
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged() {
    let seed = env_u64("PAGEFORK_SERVE_SEED", DEFAULT_SEED);
    let kills = env_u64("PAGEFORK_SERVE_KILLS", DEFAULT_KILLS);
    assert!(kills > 0, "PAGEFORK_SERVE_KILLS=0: nothing would be tested");
    println!(
        "serve_crash: PAGEFORK_SERVE_SEED={seed:#x} PAGEFORK_SERVE_KILLS={kills}, {CLIENTS} clients"
    );
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = |round: u64| logs.path().join(format!("serve-{round}.log"));
    let stderr = |round: u64| std::fs::read_to_string(log(round)).unwrap_or_default();
    let start = |round: u64| Server::start_logged(dir.path(), &[], &log(round), START_LIMIT);
    let mut server = start(0).unwrap_or_else(|error| panic!("the first start failed: {error}"));
    let created = server
        .post("/v1/projects", &json!({"project_id": PROJECT}).to_string())
        .expect(201);
    assert_eq!(created["page_size"], PAGE, "{created}");
    let main = server.get(&format!("{BRANCHES}/main")).expect(200);
    let main_id = main["id"].as_u64().unwrap();

    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|id| Client::new(id, seed, main_id))
        .collect();
    let mut rng = Rng::new(seed ^ 0x6B11_1DEA_D000_0000);
    let admin_busy = AtomicBool::new(false);
    let mut killed = 0;
    for (round, stop_by) in (1..).zip(schedule(kills)) {
        if stop_by == Stop::Kill {
            killed += 1;
        }
        let how = match stop_by {
            Stop::Kill => format!("SIGKILL {killed} of {kills}"),
            Stop::Term => format!("SIGTERM after SIGKILL {killed}"),
        };
        let context = format!("round {round} ({how}, PAGEFORK_SERVE_SEED={seed:#x})");
        let http = server.http(REQUEST_LIMIT);
        let stop = AtomicBool::new(false);
        let load = Duration::from_millis(rng.between(LOAD_MS.0, LOAD_MS.1));
        let (status, outcomes) = std::thread::scope(|scope| {
            let handles: Vec<_> = clients
                .iter_mut()
                .map(|client| {
                    let (http, stop, admin_busy) = (&http, &stop, &admin_busy);
                    scope.spawn(move || client.load(http, stop, admin_busy, round))
                })
                .collect();
            std::thread::sleep(load);
            let status = match stop_by {
                Stop::Kill => Some(server.kill()),
                Stop::Term => server.terminate_within(START_LIMIT),
            };
            stop.store(true, Ordering::SeqCst);
            let outcomes: Vec<Result<(), String>> = handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .collect();
            (status, outcomes)
        });
        for outcome in outcomes {
            if let Err(error) = outcome {
                panic!("{error}");
            }
        }
        let stopped_as_told = match (stop_by, status) {
            (Stop::Kill, Some(status)) => status.signal() == Some(9),
            (Stop::Term, Some(status)) => status.success(),
            (_, None) => false,
        };
        assert!(
            stopped_as_told,
            "{context}: the server ended with {status:?} after {} ms of load; its stderr:\n{}",
            load.as_millis(),
            stderr(round - 1)
        );
        let restarting = Instant::now();
        server = start(round).unwrap_or_else(|error| {
            panic!(
                "{context}: after {} ms of load and the {how}, pagefork serve did not start again on the same data directory: {error}",
                load.as_millis()
            )
        });
        let restart = restarting.elapsed();
        let http = server.http(REQUEST_LIMIT);
        let wal_end = wal_end(&http, round);
        let auditing = Instant::now();
        let outcomes: Vec<Result<(), String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = clients
                .iter_mut()
                .map(|client| {
                    let http = &http;
                    scope.spawn(move || client.recover(http, wal_end, round))
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .collect()
        });
        for outcome in outcomes {
            if let Err(error) = outcome {
                panic!("{error}");
            }
        }
        let total = totals(&clients);
        let (segments, oldest) = wal_segments(dir.path());
        println!(
            "round {round} ({how}): {} ms of load, restart {} ms, audit {} ms, WAL end {}, {segments} WAL segments from {oldest}, {} MiB acknowledged, {} in doubt, {:.1} s",
            load.as_millis(),
            restart.as_millis(),
            auditing.elapsed().as_millis(),
            lsn_text(wal_end),
            (total.pages * PAGE as u64) >> 20,
            total.in_doubt,
            started.elapsed().as_secs_f64()
        );
    }
    let status = server.terminate_within(START_LIMIT);
    assert!(
        status.is_some_and(|status| status.success()),
        "SIGTERM after the last round: {status:?}"
    );
    let total = totals(&clients);
    println!(
        "serve_crash: {kills} kills in {:.1} s (seed {seed:#x}): {} commits acknowledged ({} pages, {} MiB), {} branches created, {} resets, {} restores, {} deletes, {} compactions and {} GCs ({} ms), {} requests in doubt ({} had happened), {} refused, {} audit reads, {} reads during the load",
        started.elapsed().as_secs_f64(),
        total.commits,
        total.pages,
        (total.pages * PAGE as u64) >> 20,
        total.branches,
        total.resets,
        total.restores,
        total.deletes,
        total.compactions,
        total.gcs,
        total.admin_ms,
        total.in_doubt,
        total.in_doubt_happened,
        total.refused,
        total.audit_reads,
        total.load_reads,
    );
}
