//! The command line: every subcommand, its arguments and its help text (clap).
//!
//! Only what the engine can do today is offered; commands for capabilities still to come
//! (gc, lease, detach, serve, bench, ...) are added as those land, never as stubs.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pagefork_engine::{Backend, Expiry, Lsn, Timestamp};

/// pagefork: a local copy-on-write branching page store.
///
/// Branches copy nothing, point-in-time recovery says exactly which commit it snapped to,
/// and every commit is durable before it is acknowledged.
#[derive(Debug, Parser)]
#[command(name = "pagefork", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The store's data directory.
    #[arg(
        long,
        global = true,
        env = "PAGEFORK_DATA_DIR",
        default_value = "./pagefork-data"
    )]
    pub(crate) data_dir: PathBuf,
    /// Print JSON instead of text, for scripts.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Reproduce the Lakebase branching and PITR experiment on the local disk, in seconds.
    ///
    /// Loads a ~63 MB catalog, branches it with a one-hour TTL, runs a migration on the
    /// branch, wipes the 32 entity pages on main, recovers them with a branch at a noted
    /// time, checks everything, and prints what it measured beside Lakebase's figures.
    /// Uses a temporary directory unless --data-dir is given explicitly.
    ///
    /// With --postgres, the same scenario in SQL on a real Postgres (endpoints on
    /// mounted branches): a catalog table of 32 rows and ~63 MB of refresh state, a branch
    /// and a migration on it with a schema diff, a DELETE on main, a branch at the noted
    /// time counting 32 rows, main restored in place. Needs root, /dev/fuse and Debian's
    /// postgresql-15.
    #[command(
        after_help = "Example:\n  pagefork demo\n  pagefork demo --data-dir /tmp/demo-store --json\n  pagefork demo --postgres"
    )]
    Demo {
        /// Run the scenario on a real Postgres.
        #[arg(long)]
        postgres: bool,
    },
    /// Create a new store in the data directory with its root branch `main`.
    #[command(
        after_help = "Examples:\n  pagefork --data-dir ./data init --page-size 8192\n  pagefork --data-dir ./pg init --postgres"
    )]
    Init {
        /// Page size in bytes: a power of two from 512 to 65536.
        #[arg(long, default_value_t = 8192, value_parser = parse_page_size)]
        page_size: usize,
        /// Where flushed page versions live: `native` layer files, or `rocksdb` (in a build
        /// with the `rocksdb` feature). Fixed for the store's life.
        #[arg(long, default_value = "native")]
        backend: Backend,
        /// Also make `main` a Postgres data directory: mount it, run `initdb` into it and
        /// start and stop Postgres once (an endpoint's first start on an empty branch does
        /// the same). Needs root, /dev/fuse and Debian's postgresql-15; checked first, and
        /// if anything fails no store is left behind.
        #[arg(long)]
        postgres: bool,
        /// Where Postgres' programs are (as for `endpoint start`).
        #[arg(long, value_name = "DIR", requires = "postgres")]
        pg_bin: Option<PathBuf>,
    },
    /// Create, list, show and delete branches.
    #[command(subcommand)]
    Branch(BranchCommand),
    /// Write and read pages.
    #[command(subcommand)]
    Page(PageCommand),
    /// Which LSN shows a branch as it was at a time, and how the time was snapped.
    #[command(after_help = "Example:\n  pagefork lsn-for-time main 2026-04-08T10:15:30Z")]
    LsnForTime {
        /// The branch.
        branch: String,
        /// The time, RFC 3339.
        #[arg(value_parser = parse_time)]
        time: Timestamp,
    },
    /// Write a checkpoint so the next open replays less WAL, and drop covered WAL segments.
    Checkpoint,
    /// Check whether the store opens and, if it does not, say exactly what is damaged and
    /// what `--salvage` would discard. Changes nothing unless `--salvage` is given; exits 1
    /// when the store is damaged.
    Recover {
        /// Cut the WAL at its last good record, discarding everything after the damage,
        /// and report what was discarded (like RocksDB's point-in-time recovery).
        #[arg(long)]
        salvage: bool,
    },
    /// Checkpoint, then merge every branch's L0 delta layers into L1 layers and write image
    /// layers over long delta chains.
    Compact,
    /// Layer files by level, unflushed memory, and what housekeeping did since opening.
    Stats,
    /// The branch-graph history: every branch operation with its LSN and time.
    #[command(after_help = "Example:\n  pagefork log\n  pagefork log --json")]
    Log,
    /// Run GC now: move every branch's cutoff to the start of its PITR window and remove
    /// the history below it that no branch point or lease needs; say what went and why
    /// the rest stayed.
    #[command(after_help = "Example:\n  pagefork gc\n  pagefork gc --json")]
    Gc,
    /// Copy the store's layer files, catalog and WAL to S3-compatible object storage, then
    /// publish an index of them; prints the recovery point (every commit at or below it is
    /// in the bucket). Credentials and region come from the `AWS_*` environment variables.
    #[command(
        after_help = "Example:\n  pagefork sync --remote s3://backups/shop --s3-endpoint http://127.0.0.1:9000"
    )]
    Sync {
        /// Where: `s3://BUCKET/PREFIX` (one store per prefix).
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        remote: String,
        /// An S3-compatible server's URL (path-style requests; plain http allowed).
        #[arg(long, value_name = "URL")]
        s3_endpoint: Option<String>,
        /// After the sync, evict the least recently read uploaded layer files until at
        /// most this many bytes of them stay on local disk (0: every uploaded one goes);
        /// evicted ones are downloaded again by the first read that needs them.
        #[arg(long, value_parser = parse_bytes, value_name = "BYTES")]
        local_cache_bytes: Option<u64>,
    },
    /// Rebuild a store from object storage in an empty `--data-dir` (another machine, or
    /// after losing the disk): every branch and its history up to the recovery point. The
    /// new copy takes a new generation there, so the process it replaces can no longer
    /// publish.
    #[command(
        after_help = "Example:\n  pagefork --data-dir /srv/shop attach --remote s3://backups/shop --s3-endpoint http://127.0.0.1:9000"
    )]
    Attach {
        /// Where: `s3://BUCKET/PREFIX`.
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        remote: String,
        /// An S3-compatible server's URL (path-style requests; plain http allowed).
        #[arg(long, value_name = "URL")]
        s3_endpoint: Option<String>,
        /// Make a copy to inspect (a backup's check, say) without taking the location
        /// over: no generation is claimed, so the process that writes there goes on.
        #[arg(long, conflicts_with = "lazy")]
        no_claim: bool,
        /// Download no layer file now: each is downloaded by the first read that needs it
        /// (the local disk is a cache of the bucket from then on).
        #[arg(long)]
        lazy: bool,
    },
    /// Show a branch as a directory (FUSE) that any program can use: files, directories
    /// and their metadata are pages of the branch, so branching, PITR and diff cover the
    /// whole tree. Runs in the foreground; SIGTERM, SIGINT or `umount DIR` unmount it,
    /// after which everything written is durable. Needs root (or fusermount3) and
    /// /dev/fuse. With --lsn or --time the mount is read-only and shows exactly that state.
    #[command(
        after_help = "Examples:\n  pagefork mount main /mnt/main\n  pagefork mount main /mnt/then --time 2026-12-03T10:15:00Z"
    )]
    Mount {
        /// The branch.
        branch: String,
        /// The mount point: an existing, empty directory.
        dir: PathBuf,
        /// Refuse writes (implied by --lsn and --time).
        #[arg(long)]
        read_only: bool,
        #[command(flatten)]
        at: AtArgs,
    },
    /// Keep a branch's state at an LSN from GC for a while (a branch can be created
    /// there while the lease lasts). Without an LSN, list the active leases.
    #[command(after_help = "Examples:\n  pagefork lease main 0/16B3748 --for 1h\n  pagefork lease")]
    Lease {
        /// The branch.
        #[arg(requires = "lsn")]
        branch: Option<String>,
        /// The LSN to keep.
        #[arg(value_parser = parse_lsn, requires = "branch")]
        lsn: Option<Lsn>,
        /// How long, e.g. 30m, 1h, 2d.
        #[arg(long = "for", value_parser = parse_duration, default_value = "1h")]
        duration: Duration,
    },
    /// Serve the HTTP API (JSON under /v1) for the projects in the data directory: each
    /// project is a store in DATA_DIR/projects/<project>. Prints the address it listens
    /// on, logs each request to standard error (PAGEFORK_LOG sets the filter), and on
    /// SIGTERM or SIGINT lets the requests in flight finish (within --shutdown-grace),
    /// then checkpoints and closes.
    #[command(
        after_help = "Examples:\n  pagefork serve --listen 127.0.0.1:7070\n  pagefork serve --listen 127.0.0.1:0 --require-expiration\n  curl -X POST localhost:7070/v1/projects -d '{\"project_id\": \"demo\"}' -H 'content-type: application/json'"
    )]
    Serve {
        /// Address and port to listen on (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:7070")]
        listen: std::net::SocketAddr,
        /// Refuse to create a branch without an expiry (ttl, expire_time or no_expiry),
        /// as Lakebase does.
        #[arg(long)]
        require_expiration: bool,
        /// Also answer requests whose Host header is NAME (repeatable). IP addresses and
        /// localhost are always answered; other names are refused, against DNS rebinding.
        #[arg(long = "allow-host", value_name = "NAME")]
        allow_hosts: Vec<String>,
        /// How long a client gets to send a request's header.
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        header_timeout: Duration,
        /// How long a client gets to send a request's body, once the header is in.
        #[arg(long, value_parser = parse_duration, default_value = "60s")]
        body_timeout: Duration,
        /// On SIGTERM or SIGINT, how long requests in flight get to finish before their
        /// connections are dropped and the stores checkpointed and closed; then how long
        /// programs get to close the files they hold under a mount before it is cut off,
        /// and with --remote how long the last sync is waited for.
        #[arg(long, value_parser = parse_duration, default_value = "10s")]
        shutdown_grace: Duration,
        /// Branches are mounted (POST .../mount) only at directories inside this one
        /// (default: DATA_DIR/mounts).
        #[arg(long, value_name = "DIR")]
        mount_root: Option<PathBuf>,
        /// Where endpoints find Postgres' programs (default: PAGEFORK_PG_BIN, the newest
        /// /usr/lib/postgresql/N/bin, then PATH).
        #[arg(long, value_name = "DIR")]
        pg_bin: Option<PathBuf>,
        /// Require `Authorization: Bearer <token>` on every request but /healthz and
        /// /v1/openapi.json (tokens from `pagefork token create`; the key is kept in
        /// DATA_DIR/auth).
        #[arg(long)]
        auth: bool,
        /// Serve without --auth on an address that is not loopback (refused otherwise).
        #[arg(long)]
        insecure_no_auth: bool,
        /// Keep every project's store in S3-compatible object storage at
        /// `s3://BUCKET/PREFIX/<project>` (layer files, WAL and an index, synced in the
        /// background); credentials from the `AWS_*` environment variables.
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        remote: Option<String>,
        /// An S3-compatible server's URL for --remote (path-style; plain http allowed).
        #[arg(long, value_name = "URL", requires = "remote")]
        s3_endpoint: Option<String>,
        /// Time between background syncs to --remote.
        #[arg(long, value_parser = parse_duration, default_value = "10s", requires = "remote")]
        remote_interval: Duration,
        /// Make each project's local disk a cache of --remote: after each sync, evict the
        /// least recently read uploaded layer files until at most this many bytes of them
        /// stay on disk; a read that needs an evicted one downloads it first.
        #[arg(long, value_parser = parse_bytes, value_name = "BYTES", requires = "remote")]
        local_cache_bytes: Option<u64>,
    },
    /// Short-lived tokens for `pagefork serve --auth`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Postgres on a branch (an endpoint): the branch mounted, `postgres` started on it.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Maintenance of a store's copy in object storage.
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Measure branch creation, branch at a time, restore and reads at data sizes you
    /// pick, beside a full copy of the same data made in the same run; print medians and
    /// p99s. Runs in a directory of its own, made inside --data-dir if given (else in the
    /// system's temporary directory) and removed at the end, also when stopped by SIGINT
    /// or SIGTERM.
    #[command(
        after_help = "Examples:\n  pagefork bench\n  pagefork bench --size 63MiB,1GiB --branches 200 --depth 10 --plot latency.svg\n  pagefork bench --size 16MiB --json"
    )]
    Bench {
        /// Data sizes, comma-separated (like 63MiB,1GiB).
        #[arg(long, value_delimiter = ',', value_parser = parse_size, default_value = "63MiB")]
        size: Vec<u64>,
        /// Samples of each branch operation.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        branches: u32,
        /// Reads go through a chain of this many branches.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=1000))]
        depth: u32,
        /// Also draw median latency against size as an SVG file (for the first backend).
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Backends to run the same work on, comma-separated (`native,rocksdb` prints them
        /// side by side with the ratio; `rocksdb` needs a build with the feature).
        #[arg(long, value_delimiter = ',', default_value = "native")]
        backend: Vec<Backend>,
    },
    /// Look inside the store's files.
    #[command(subcommand)]
    Inspect(InspectCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum BranchCommand {
    /// Create a branch: O(1), nothing is copied.
    #[command(
        after_help = "Examples:\n  pagefork branch create dev --ttl 1h\n  pagefork branch create recovered --time 2026-04-08T10:15:30Z --no-expiry\n  pagefork branch create old --from dev --lsn 0/16B3748"
    )]
    Create {
        /// Name of the new branch: 1-63 characters of [A-Za-z0-9._/-].
        #[arg(value_parser = parse_new_branch_name)]
        name: String,
        /// The parent branch.
        #[arg(long, default_value = "main")]
        from: String,
        #[command(flatten)]
        at: AtArgs,
        #[command(flatten)]
        expiry: ExpiryArgs,
        /// Protect the branch from deletion.
        #[arg(long)]
        protected: bool,
    },
    /// List branches: as a tree, or with a filter as a list in name order.
    List {
        /// Only branches whose name starts with this.
        #[arg(long)]
        name_prefix: Option<String>,
        /// Only children of this branch.
        #[arg(long)]
        parent: Option<String>,
    },
    /// Everything known about a branch.
    Show {
        /// The branch.
        name: String,
    },
    /// Delete a branch (refused while it has children, while protected, and for the store's
    /// last branch that never expires).
    Delete {
        /// The branch.
        name: String,
    },
    /// Reset a branch to its parent's latest state, dropping its own changes (its children
    /// keep theirs).
    #[command(after_help = "Example:\n  pagefork branch reset dev")]
    Reset {
        /// The branch.
        name: String,
    },
    /// Detach a branch from its parent: it gets copies of the pages it reads through its
    /// ancestors (and the history it can still read below its branch point), so the
    /// parent can be deleted. Reads do not change.
    #[command(after_help = "Example:\n  pagefork branch detach dev && pagefork branch delete main")]
    Detach {
        /// The branch.
        name: String,
    },
    /// Restore a branch in place to a state of itself or another branch; the previous
    /// state is kept as NAME_old_<time> unless told otherwise.
    #[command(
        after_help = "Examples:\n  pagefork branch restore main --time 2026-04-08T10:15:30Z\n  pagefork branch restore main --from main_old_20260408T101800Z --no-backup"
    )]
    Restore {
        /// The branch to restore.
        name: String,
        /// Where the state comes from (default: the branch itself).
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        at: AtArgs,
        /// Name the backup of the previous state.
        #[arg(long, conflicts_with = "no_backup", value_parser = parse_new_branch_name)]
        backup_name: Option<String>,
        /// Keep no backup of the previous state.
        #[arg(long)]
        no_backup: bool,
    },
    /// Rename a branch (its id, pages and children stay).
    #[command(after_help = "Example:\n  pagefork branch rename dev feature/login")]
    Rename {
        /// The branch.
        name: String,
        /// Its new name.
        #[arg(value_parser = parse_new_branch_name)]
        new_name: String,
    },
    /// Pages that differ between two branch states: added, removed, changed, per relation.
    #[command(
        after_help = "Examples:\n  pagefork branch diff main dev\n  pagefork branch diff main main --from-time 2026-04-08T10:15:30Z"
    )]
    Diff {
        /// The first state's branch.
        from: String,
        /// The second state's branch.
        to: String,
        /// The first state at this LSN (default: latest).
        #[arg(long, value_parser = parse_lsn, conflicts_with = "from_time")]
        from_lsn: Option<Lsn>,
        /// The first state at this time.
        #[arg(long, value_parser = parse_time)]
        from_time: Option<Timestamp>,
        /// The second state at this LSN (default: latest).
        #[arg(long, value_parser = parse_lsn, conflicts_with = "to_time")]
        to_lsn: Option<Lsn>,
        /// The second state at this time.
        #[arg(long, value_parser = parse_time)]
        to_time: Option<Timestamp>,
        /// Tell the difference as files (of trees made by `pagefork mount`): paths added,
        /// removed and changed, with their sizes.
        #[arg(long)]
        files: bool,
    },
    /// Protect a branch (no delete, reset or restore), or unprotect it with --off.
    #[command(
        after_help = "Example:\n  pagefork branch protect main\n  pagefork branch protect main --off"
    )]
    Protect {
        /// The branch.
        name: String,
        /// Remove the protection instead.
        #[arg(long)]
        off: bool,
    },
    /// Change when a branch expires (a TTL counts from now).
    #[command(
        after_help = "Examples:\n  pagefork branch set-expiry dev --ttl 2h\n  pagefork branch set-expiry dev --no-expiry"
    )]
    SetExpiry {
        /// The branch.
        name: String,
        #[command(flatten)]
        expiry: RequiredExpiryArgs,
    },
    /// Set how much history a branch keeps readable (its PITR window), or go back to the
    /// store's default (7 days). GC never brings back what it already removed.
    #[command(
        after_help = "Examples:\n  pagefork branch set-pitr-window dev --window 1d\n  pagefork branch set-pitr-window dev --default"
    )]
    SetPitrWindow {
        /// The branch.
        name: String,
        /// The window, e.g. 1h, 2d.
        #[arg(long, value_parser = parse_duration, required_unless_present = "default", conflicts_with = "default")]
        window: Option<Duration>,
        /// Use the store's default window.
        #[arg(long)]
        default: bool,
    },
}

/// Exactly one of --ttl, --expire-time, --no-expiry.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct RequiredExpiryArgs {
    /// Expire this long from now, like 3600s or 1h.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) ttl: Option<Duration>,
    /// Expire at this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub(crate) expire_time: Option<Timestamp>,
    /// Never expire.
    #[arg(long)]
    pub(crate) no_expiry: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RemoteCommand {
    /// List and remove the objects no index lists (left by a crash between an upload and
    /// its index, or a deletion cut short). Never removes a listed object, an object of a
    /// generation newer than the newest index's, or one younger than `--min-age`.
    #[command(
        after_help = "Example:\n  pagefork remote scrub --remote s3://backups/shop --s3-endpoint http://127.0.0.1:9000 --dry-run"
    )]
    Scrub {
        /// Where: `s3://BUCKET/PREFIX`.
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        remote: String,
        /// An S3-compatible server's URL (path-style requests; plain http allowed).
        #[arg(long, value_name = "URL")]
        s3_endpoint: Option<String>,
        /// Keep unlisted objects younger than this (an upload in flight is not listed yet).
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        min_age: Duration,
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PageCommand {
    /// Write one page image, read from a file or standard input; prints the commit.
    #[command(after_help = "Example:\n  pagefork page put main 1 0 --file page.bin")]
    Put {
        /// The branch.
        branch: String,
        /// Relation number.
        rel: u32,
        /// Block number.
        block: u32,
        /// Read the page from this file instead of standard input.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Read one page to standard output (nothing, exit code 3, if it does not exist).
    #[command(
        after_help = "Example:\n  pagefork page get main 1 0 --time 2026-04-08T10:15:30Z > page.bin"
    )]
    Get {
        /// The branch.
        branch: String,
        /// Relation number.
        rel: u32,
        /// Block number.
        block: u32,
        #[command(flatten)]
        at: AtArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum InspectCommand {
    /// A layer file: header, ranges, versions, checksum, and a check of every block.
    #[command(
        after_help = "Example:\n  pagefork inspect layer ./pagefork-data/layers/000001.layer"
    )]
    Layer {
        /// The layer file (read directly; the store is not opened).
        file: PathBuf,
    },
    /// The whole store: formats, catalog, WAL segments, and each branch's layer files,
    /// every one read and checked against its checksums (exit code 1 if any is damaged).
    #[command(
        after_help = "Example:\n  pagefork inspect store\n  pagefork inspect store --no-verify --json"
    )]
    Store {
        /// Do not read the layer files to check them (fast on a large store).
        #[arg(long)]
        no_verify: bool,
    },
    /// WAL records from an LSN (default: the oldest kept), like pg_waldump.
    Wal {
        /// Start at this record boundary, as X/Y.
        #[arg(long, value_parser = parse_lsn)]
        from: Option<Lsn>,
        /// Show at most this many records.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Which state: the latest (default), an LSN, or a time.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub(crate) struct AtArgs {
    /// At this LSN, as X/Y.
    #[arg(long, value_parser = parse_lsn)]
    pub(crate) lsn: Option<Lsn>,
    /// At this time (RFC 3339), snapped to the last commit at or before it.
    #[arg(long, value_parser = parse_time)]
    pub(crate) time: Option<Timestamp>,
}

/// The expiry the three flags mean (clap lets at most one be given).
fn expiry_of(ttl: Option<Duration>, expire_time: Option<Timestamp>) -> Expiry {
    match (ttl, expire_time) {
        (Some(ttl), _) => Expiry::Ttl(ttl),
        (None, Some(time)) => Expiry::At(time),
        (None, None) => Expiry::Never,
    }
}

impl RequiredExpiryArgs {
    pub(crate) fn expiry(&self) -> Expiry {
        expiry_of(self.ttl, self.expire_time)
    }
}

impl ExpiryArgs {
    pub(crate) fn expiry(&self) -> Expiry {
        expiry_of(self.ttl, self.expire_time)
    }
}

/// Expiry: at most one of --ttl, --expire-time, --no-expiry (the default).
#[derive(Debug, Args)]
#[group(multiple = false)]
pub(crate) struct ExpiryArgs {
    /// Expire this long after creation, like 3600s or 1h.
    #[arg(long, value_parser = parse_duration)]
    pub(crate) ttl: Option<Duration>,
    /// Expire at this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub(crate) expire_time: Option<Timestamp>,
    /// Never expire (the default).
    #[arg(long)]
    pub(crate) no_expiry: bool,
}

fn parse_lsn(text: &str) -> Result<Lsn, String> {
    text.parse()
        .map_err(|error: pagefork_wal::ParseLsnError| error.to_string())
}

/// A name for a branch to be made: refused as a bad argument (exit 2, before the store is
/// opened) when no branch may have it.
fn parse_new_branch_name(text: &str) -> Result<String, String> {
    pagefork_engine::validate_branch_name(text)
        .map(|()| text.to_owned())
        .map_err(|error| error.to_string())
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.parse()
        .map_err(|error: pagefork_engine::ParseTimestampError| error.to_string())
}

/// A byte count with a unit, 0 allowed (`--local-cache-bytes 0`: keep no layer file).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = text.parse().map_err(|error| {
        format!("invalid size {text:?} ({error}): use forms like 0, 512MiB or 1GiB")
    })?;
    Ok(size.as_u64())
}

fn parse_size(text: &str) -> Result<u64, String> {
    let size = parse_bytes(text)?;
    if size < 8192 {
        return Err(format!("size {text:?} is smaller than one 8 KiB page"));
    }
    Ok(size)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::serve::parse_duration(text)
}

/// A page size for `init`: checked here, so a wrong one is a bad argument (exit code 2).
fn parse_page_size(text: &str) -> Result<usize, String> {
    let size: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of bytes"))?;
    pagefork_engine::check_page_size(size).map_err(|error| error.to_string())?;
    Ok(size)
}

/// A token's lifetime: checked here, so a refused one exits before the server's key is
/// made.
fn parse_token_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration(text)?;
    crate::auth::check_token_ttl(ttl).map_err(|error| error.to_string())?;
    Ok(ttl)
}

/// `pagefork endpoint`.
#[derive(Debug, Subcommand)]
pub(crate) enum EndpointCommand {
    /// Mount BRANCH and start Postgres on it, listening on 127.0.0.1 (initdb first if the
    /// branch is empty); print the connection string once it accepts connections, and run
    /// until SIGTERM or SIGINT: then a fast shutdown, an unmount, a checkpoint. Postgres
    /// runs as the `postgres` user when pagefork runs as root. To run endpoints on several
    /// branches at once, use `pagefork serve` (POST .../branches/B/endpoint).
    #[command(
        after_help = "Examples:\n  pagefork endpoint start main\n  pagefork endpoint start trial --port 55432 -c shared_buffers=256MB\n  psql postgresql://postgres@127.0.0.1:55432/postgres"
    )]
    Start {
        /// The branch.
        branch: String,
        /// The port on 127.0.0.1, from 1024 (default: a free one).
        #[arg(long, value_parser = clap::value_parser!(u16).range(i64::from(crate::endpoint::MIN_PORT)..))]
        port: Option<u16>,
        /// Where Postgres' programs are (default: PAGEFORK_PG_BIN, the newest
        /// /usr/lib/postgresql/N/bin, then PATH).
        #[arg(long, value_name = "DIR")]
        pg_bin: Option<PathBuf>,
        /// A server setting, name=value (repeatable), after the endpoint's own.
        #[arg(short = 'c', value_name = "NAME=VALUE", value_parser = parse_setting)]
        settings: Vec<(String, String)>,
        /// Mount the branch here (an existing, empty directory; default: a new temporary
        /// one). The server's log goes beside it.
        #[arg(long, value_name = "DIR")]
        mount: Option<PathBuf>,
    },
    /// Stop the endpoint a `pagefork endpoint start` command runs on BRANCH of this store
    /// (as SIGTERM to that command would: a fast shutdown, an unmount, a checkpoint) and
    /// wait until it has.
    #[command(after_help = "Example:\n  pagefork endpoint stop trial")]
    Stop {
        /// The branch.
        branch: String,
    },
    /// List the endpoints `pagefork endpoint start` commands run on this store (those of
    /// `pagefork serve`: GET /v1/projects/P/endpoints).
    #[command(after_help = "Example:\n  pagefork endpoint list\n  pagefork --json endpoint list")]
    List,
    /// Compare two branches' database schemas: start an endpoint on each (as `start`
    /// would, crash recovery included), `pg_dumpall --schema-only` both, stop them, and
    /// print the unified diff (`--json`: from, to, identical, diff).
    #[command(
        after_help = "Examples:\n  pagefork endpoint schema-diff main migration-test\n  pagefork --json endpoint schema-diff main dev"
    )]
    SchemaDiff {
        /// The first branch.
        from: String,
        /// The second branch.
        to: String,
        /// Where Postgres' programs are (as for `start`).
        #[arg(long, value_name = "DIR")]
        pg_bin: Option<PathBuf>,
    },
}

/// `name=value`, as `postgres -c` takes it.
fn parse_setting(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not name=value"))?;
    if let Some(why) = crate::endpoint::setting_name_refusal(name)
        .or_else(|| crate::endpoint::setting_value_refusal(name, value))
    {
        return Err(why);
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// `pagefork token`.
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Print a token (an EdDSA JWT) for the server on this data directory: for one project,
    /// or for the whole server. Creates the server's key in DATA_DIR/auth if there is none.
    #[command(
        after_help = "Examples:\n  pagefork token create --ttl 1h\n  pagefork token create --ttl 15m --project shop\n  curl -H \"Authorization: Bearer $(pagefork token create --ttl 5m)\" localhost:7070/v1/projects"
    )]
    Create {
        /// How long the token lives (at most 30 days).
        #[arg(long, value_parser = parse_token_ttl, default_value = "1h")]
        ttl: Duration,
        /// Only this project's routes; without it, the whole server.
        #[arg(long)]
        project: Option<String>,
    },
}
