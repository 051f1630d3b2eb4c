//! The store commands: each opens the store, does one thing, and prints the result as
//! text or JSON. Arguments are parsed and checked by clap before the store is touched.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::num::NonZeroUsize;
use std::path::Path;

use anyhow::{Context, Result};
use bytes::Bytes;
use pagefork_engine::{
    At, Backend, BranchFilter, BranchInfo, BranchOptions, Config, Key, LsnForTime, Store, TimeKind,
    Update,
};
use serde_json::json;

use crate::cli::{AtArgs, BranchCommand, PageCommand};
use crate::endpoint::EndpointSpec;
use crate::output::out;
use crate::views::{branch_json, commit_json, stats_json, time_answer_json};

/// Exit code of `page get` when the page does not exist.
pub(crate) const EXIT_NO_PAGE: i32 = 3;

/// Opens the store in `dir` (reading evicted layer files back from the location its
/// `pagefork.remote` file records, if any), telling the user on stderr what recovery
/// dropped, if anything.
pub(crate) fn open(dir: &Path, json: bool) -> Result<Store> {
    let (store, _) = crate::remote::open_store(dir, None, None)?;
    crate::recover::report_open(&store, json);
    Ok(store)
}

/// `pagefork init`; with `postgres`, `main` also becomes a Postgres data directory (and
/// on any failure no store is left behind).
pub(crate) fn init(
    dir: &Path,
    page_size: usize,
    backend: Backend,
    postgres: Option<&EndpointSpec>,
    json: bool,
) -> Result<()> {
    if let Some(spec) = postgres {
        crate::endpoint::command::check_first(spec)?;
    }
    let mut existed = entries_of(dir)?;
    // A stopped create's debris is this create's to replace: new files, so removed again
    // if Postgres fails (kept, the log left the directory refused by every later init;
    // found by a review).
    if let Some(names) = &mut existed
        && names.contains(std::ffi::OsStr::new(pagefork_engine::CREATING_MARKER_NAME))
    {
        for debris in pagefork_engine::CREATE_DEBRIS {
            names.remove(std::ffi::OsStr::new(debris));
        }
    }
    if let Some(names) = &existed {
        check_nothing_else(dir, names)?;
    }
    let config = Config {
        page_size,
        backend,
        ..Config::default()
    };
    let store = Store::create(dir, config)?;
    let initialized = match postgres {
        Some(spec) => match crate::endpoint::command::init_postgres(&store, spec) {
            Ok(initialized) => Some(initialized),
            Err(error) => {
                drop(store);
                remove_new_store(dir, existed)?;
                return Err(error.context("the store was removed again"));
            }
        },
        None => None,
    };
    let root = store.branch_info("main")?;
    if json {
        out!(
            "{}",
            json!({"data_dir": dir.display().to_string(), "page_size": page_size, "backend": backend.name(), "root": branch_json(&root), "postgres": initialized})
        );
    } else {
        out!(
            "created a store in {} ({page_size}-byte pages, {backend} backend) with branch main",
            dir.display()
        );
        if let Some(initialized) = initialized {
            out!("{initialized}");
        }
    }
    Ok(())
}

/// The names in `dir`, `None` if there is no such directory.
fn entries_of(dir: &Path) -> Result<Option<BTreeSet<OsString>>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(Some(
            entries
                .map(|entry| entry.map(|entry| entry.file_name()))
                .collect::<std::io::Result<_>>()
                .with_context(|| format!("list {}", dir.display()))?,
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("list {}", dir.display())),
    }
}

/// Refuses a directory holding files that are not a store's: a store's files would be
/// mixed with them, and `rm -r` of the store would take them (a review's `init` in a
/// directory of notes went ahead). A file system's `lost+found` may stay; a directory
/// holding a store's files is left to `Store::create` to refuse naming them (or to
/// replace a stopped create's debris).
fn check_nothing_else(dir: &Path, names: &BTreeSet<OsString>) -> Result<()> {
    // A store's file, or one a crash left half published (`NAME.tmp`: a retry of an init
    // killed there is a store's business, found by a review).
    let store_file = |name: &OsString| {
        let name = name.to_string_lossy();
        let name = name.strip_suffix(".tmp").unwrap_or(&name);
        pagefork_engine::STORE_FILE_NAMES.contains(&name)
    };
    if names.iter().any(store_file) {
        return Ok(());
    }
    let others: Vec<_> = names
        .iter()
        .filter(|name| name.as_os_str() != "lost+found")
        .collect();
    let Some(first) = others.first() else {
        return Ok(());
    };
    let more = match others.len() {
        1 => String::new(),
        count => format!(" and {} more", count - 1),
    };
    anyhow::bail!(
        "{} is not empty (it holds {}{more}): init makes a store only in an empty or missing \
         directory; name another --data-dir",
        dir.display(),
        first.to_string_lossy()
    )
}

/// Removes a store `init` just created in `dir`: the directory, unless it existed, else
/// every entry that was not in it before (`existed`).
fn remove_new_store(dir: &Path, existed: Option<BTreeSet<OsString>>) -> Result<()> {
    let Some(existed) = existed else {
        return std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()));
    };
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let entry = entry?;
        if existed.contains(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("remove {}", path.display()))?;
    }
    Ok(())
}

pub(crate) fn at(args: &AtArgs) -> At {
    match (args.lsn, args.time) {
        (Some(lsn), _) => At::Lsn(lsn),
        (None, Some(time)) => At::Time(time),
        (None, None) => At::Latest,
    }
}

pub(crate) fn branch(dir: &Path, command: &BranchCommand, json: bool) -> Result<()> {
    let store = open(dir, json)?;
    match command {
        BranchCommand::Create {
            name,
            from,
            at: at_args,
            expiry: expiry_args,
            protected,
        } => {
            let options = BranchOptions {
                expiry: expiry_args.expiry(),
                protected: *protected,
            };
            let info = store.create_branch(name, from, at(at_args), options)?;
            if json {
                out!("{}", branch_json(&info));
            } else {
                print_branch(&info)?;
            }
        }
        BranchCommand::List {
            name_prefix,
            parent,
        } => {
            let filter = BranchFilter {
                name_prefix: name_prefix.clone(),
                parent: parent.clone(),
            };
            if !json && filter == BranchFilter::default() {
                print_tree(&store.list_branches())?;
            } else {
                list_branches(&store, &filter, json)?;
            }
        }
        BranchCommand::Show { name } => {
            let info = store.branch_info(name)?;
            if json {
                out!("{}", branch_json(&info));
            } else {
                print_branch(&info)?;
            }
        }
        BranchCommand::Delete { name } => {
            store.delete_branch(name)?;
            if json {
                out!("{}", json!({"deleted": name}));
            } else {
                out!("deleted branch {name}");
            }
        }
        lifecycle => crate::lifecycle::branch(&store, lifecycle, json)?,
    }
    Ok(())
}

/// The page a `page put` reads from `file` or standard input: at most one page, so an
/// endless input (`/dev/zero`) is refused rather than read until memory runs out.
fn read_page_input(file: Option<&Path>, page_size: usize) -> Result<Vec<u8>> {
    let (source, reader): (String, Box<dyn Read>) = match file {
        Some(path) => (
            path.display().to_string(),
            Box::new(
                std::fs::File::open(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            ),
        ),
        None => ("standard input".to_owned(), Box::new(std::io::stdin())),
    };
    let mut bytes = Vec::with_capacity(page_size);
    reader
        .take(page_size as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {source}"))?;
    anyhow::ensure!(
        bytes.len() <= page_size,
        "{source} holds more than one page: a page is {page_size} bytes"
    );
    Ok(bytes)
}

pub(crate) fn page(dir: &Path, command: &PageCommand, json: bool) -> Result<i32> {
    // A page to put is read before the store is opened, so input that takes its time
    // (a pipe) does not hold the store from other commands meanwhile.
    let input = match command {
        PageCommand::Put { file, .. } => Some(read_page_input(
            file.as_deref(),
            Config::of_store(dir)?.page_size,
        )?),
        PageCommand::Get { .. } => None,
    };
    let store = open(dir, json)?;
    match command {
        PageCommand::Put {
            branch, rel, block, ..
        } => {
            let bytes = input.unwrap_or_default();
            let commit = store.commit(
                branch,
                vec![(Key::new(*rel, *block), Update::Image(Bytes::from(bytes)))],
            )?;
            if json {
                out!("{}", commit_json(&commit));
            } else {
                out!("committed at LSN {} ({})", commit.lsn, commit.time);
            }
            Ok(0)
        }
        PageCommand::Get {
            branch,
            rel,
            block,
            at: at_args,
        } => {
            let at = at(at_args);
            let (page, trace) = store.get_page_traced(branch, Key::new(*rel, *block), at)?;
            // Which state was read, as the HTTP API's headers say it: a read at a time says
            // what it snapped to (found by a review: it said nothing), and --json answers
            // JSON (it printed the raw page).
            let commit_time = trace.commit_time;
            let state = match commit_time {
                Some(time) => format!("LSN {} (last commit at or before it: {time})", trace.lsn),
                None => format!("LSN {} (no commit at or before it)", trace.lsn),
            };
            if json {
                use base64::Engine as _;
                out!(
                    "{}",
                    json!({
                        "exists": page.is_some(),
                        "lsn": trace.lsn.to_string(),
                        "commit_time": commit_time.map(|time| time.to_string()),
                        "page": page.as_ref().map(|page| base64::engine::general_purpose::STANDARD.encode(page)),
                    })
                );
            } else if let At::Time(time) = at {
                crate::output::warn_out!("pagefork: {branch} at {time} reads {state}");
            }
            match page {
                Some(page) if !json => {
                    let mut stdout = std::io::stdout().lock();
                    stdout
                        .write_all(&page)
                        .context("cannot write standard output")?;
                    stdout.flush().context("cannot write standard output")?;
                    Ok(0)
                }
                Some(_) => Ok(0),
                None => {
                    if !json {
                        crate::output::warn_out!(
                            "pagefork: rel {rel} block {block} does not exist on {branch} at {state}"
                        );
                    }
                    Ok(EXIT_NO_PAGE)
                }
            }
        }
    }
}

pub(crate) fn lsn_for_time(
    dir: &Path,
    branch: &str,
    time: pagefork_engine::Timestamp,
    json: bool,
) -> Result<()> {
    let store = open(dir, json)?;
    let answer = store.lsn_for_time(branch, time)?;
    if json {
        out!("{}", time_answer_json(&answer));
    } else {
        out!("{}", describe_time_answer(&answer));
    }
    Ok(())
}

pub(crate) fn checkpoint(dir: &Path, json: bool) -> Result<()> {
    let store = open(dir, json)?;
    let covered = store.checkpoint()?;
    if json {
        out!("{}", json!({"covered_lsn": covered.to_string()}));
    } else {
        out!("checkpoint covers the WAL up to {covered}");
    }
    Ok(())
}

pub(crate) fn compact(dir: &Path, json: bool) -> Result<()> {
    let store = open(dir, json)?;
    let covered = store.compact()?;
    let stats = store.stats();
    if json {
        out!(
            "{}",
            json!({
                "covered_lsn": covered.to_string(),
                "merges": stats.compactions,
                "images_written": stats.images_written,
                "layers": {"l0": stats.layers_l0, "l1": stats.layers_l1, "image": stats.layers_image},
            })
        );
    } else {
        out!(
            "compacted: {} L0 merges, {} image layers written; now {} L0, {} L1, {} image layers; catalog covers {covered}",
            stats.compactions,
            stats.images_written,
            stats.layers_l0,
            stats.layers_l1,
            stats.layers_image
        );
    }
    Ok(())
}

pub(crate) fn stats(dir: &Path, json: bool) -> Result<()> {
    let store = open(dir, json)?;
    let stats = store.stats();
    let copy = pagefork_remote::recorded_copy(dir)
        .with_context(|| format!("cannot read the remote state of {}", dir.display()))?;
    let lag = |copy: &pagefork_remote::RecordedCopy| {
        copy.recovery_point
            .map(|point| stats.wal_end.0.saturating_sub(point.0))
    };
    let cache = store.layer_cache_stats();
    if json {
        let mut value = stats_json(&stats);
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "remote".to_owned(),
                copy.as_ref().map_or(serde_json::Value::Null, |copy| {
                    json!({
                        "location": copy.location,
                        "generation": copy.generation,
                        "recovery_point": copy.recovery_point.map(|lsn| lsn.to_string()),
                        "lag_bytes": lag(copy),
                    })
                }),
            );
            object.insert(
                "layer_cache".to_owned(),
                crate::remote::layer_cache_json(cache),
            );
        }
        out!("{value}");
    } else {
        if let Some(copy) = &copy {
            match (copy.recovery_point, lag(copy)) {
                (Some(point), Some(lag)) => out!(
                    "remote: {} (generation {}): recovery point {point}, {lag} bytes of WAL written since",
                    copy.location,
                    copy.generation
                ),
                _ => out!(
                    "remote: {} (generation {}): not synced yet",
                    copy.location,
                    copy.generation
                ),
            }
        }
        if let Some(cache) = cache {
            out!("{}", crate::remote::describe_layer_cache(&cache));
        }
        match stats.backend {
            Backend::Native => out!(
                "layers: {} L0, {} L1, {} image",
                stats.layers_l0,
                stats.layers_l1,
                stats.layers_image
            ),
            Backend::RocksDb => out!("RocksDB: {} bytes of table files", stats.rocksdb_bytes),
        }
        out!(
            "unflushed: {} bytes (replayed from the WAL on open)",
            stats.memory_bytes
        );
    }
    Ok(())
}

pub(crate) fn describe_time_answer(answer: &LsnForTime) -> String {
    match (answer.commit_time, answer.snapped_back()) {
        (Some(commit_time), Some(back)) => format!(
            "{} -> LSN {} ({}): the commit at {commit_time}, {} earlier",
            answer.requested,
            answer.lsn,
            crate::views::time_kind_name(answer.kind),
            humantime::format_duration(back)
        ),
        // Found by a review: "no commit at or before that time" beside an LSN read as if
        // that LSN could be read or branched at that time.
        _ => format!(
            "{} -> LSN {} ({}): {}",
            answer.requested,
            answer.lsn,
            crate::views::time_kind_name(answer.kind),
            match answer.kind {
                TimeKind::Past => {
                    "before the first commit the branch can see; a read or a branch at that \
                     time is refused"
                }
                _ => "no commit at or before that time",
            }
        ),
    }
}

pub(crate) fn print_branch(info: &BranchInfo) -> anyhow::Result<()> {
    out!("branch {} ({})", info.name, info.id);
    match &info.parent {
        Some(parent) if parent.hidden => out!(
            "  parent       an old state of {} ({}, replaced; kept for its children) at {}",
            parent.name,
            parent.id,
            parent.lsn
        ),
        Some(parent) => out!("  parent       {} at {}", parent.name, parent.lsn),
        None => out!("  parent       none (root)"),
    }
    out!("  head         {}", info.head);
    out!(
        "  created      {} at LSN {}",
        info.created,
        info.created_lsn
    );
    match info.expires_at {
        Some(time) => out!("  expires      {time}"),
        None => out!("  expires      never"),
    }
    out!(
        "  protected    {}",
        if info.protected { "yes" } else { "no" }
    );
    match info.pitr_window {
        Some(window) => out!(
            "  pitr window  {}",
            crate::serve::params::duration_text(window)
        ),
        None => out!("  pitr window  the store's default"),
    }
    out!("  gc cutoff    {}", info.gc_cutoff);
    if let Some(answer) = &info.created_at_time {
        out!("  created at   {}", describe_time_answer(answer));
    }
    if !info.kept_for.is_empty() {
        let verb = match info.kept_for.len() {
            1 => "needs",
            _ => "need",
        };
        out!(
            "  status       expired; kept while {} {verb} its history",
            info.kept_for.join(", ")
        );
    }
    Ok(())
}

/// The parent a branch is drawn under: none for a root, or for a branch whose parent is
/// an old state (hidden), which is drawn at the top level.
fn shown_parent(info: &BranchInfo) -> Option<&str> {
    info.parent
        .as_ref()
        .filter(|parent| !parent.hidden)
        .map(|parent| parent.name.as_str())
}

/// Branches in name order a page at a time, printed as they come: a JSON array (one
/// branch a line) or one line each.
fn list_branches(store: &Store, filter: &BranchFilter, json: bool) -> anyhow::Result<()> {
    const PAGE: NonZeroUsize = NonZeroUsize::new(1000).expect("not zero");
    let mut after: Option<String> = None;
    let mut first = true;
    if json {
        out!("[");
    }
    loop {
        let page = store.list_branches_page(filter, after.as_deref(), PAGE);
        for info in &page.branches {
            if json {
                let separator = if first { "" } else { "," };
                out!("{separator}{}", branch_json(info));
            } else {
                let parent = info.parent.as_ref().map_or_else(String::new, |parent| {
                    format!("  from {} @ {}", parent.name, parent.lsn)
                });
                out!("{}{parent}  (head {})", info.name, info.head);
            }
            first = false;
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if json {
        out!("]");
    }
    Ok(())
}

/// Draws the branches as a tree, children under their parent.
fn print_tree(branches: &[BranchInfo]) -> anyhow::Result<()> {
    fn draw(branches: &[BranchInfo], parent: Option<&str>, prefix: &str) -> anyhow::Result<()> {
        let children: Vec<&BranchInfo> = branches
            .iter()
            .filter(|info| shown_parent(info) == parent)
            .collect();
        for (index, info) in children.iter().enumerate() {
            let last = index + 1 == children.len();
            let (branch, next) = match parent {
                None => ("", ""),
                Some(_) if last => ("└── ", "    "),
                Some(_) => ("├── ", "│   "),
            };
            let at = match &info.parent {
                Some(p) if p.hidden => format!(" @ {} of an old state of {}", p.lsn, p.name),
                Some(p) => format!(" @ {}", p.lsn),
                None => String::new(),
            };
            let expired = if info.kept_for.is_empty() {
                ""
            } else {
                " [expired, kept for its children]"
            };
            out!(
                "{prefix}{branch}{}{at}  (head {}){expired}",
                info.name,
                info.head
            );
            draw(branches, Some(&info.name), &format!("{prefix}{next}"))?;
        }
        Ok(())
    }
    draw(branches, None, "")
}
