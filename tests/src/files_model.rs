//! A plain model of a file tree (paths to sparse files, directories, symlinks and
//! special files) and the
//! random operations the file suites run against both it and the real tree: through
//! `pagefork_files::FileTree` directly, and through a FUSE mount.
//!
//! The model says what each operation must answer (which refusal, in which order of
//! checks) so a suite can compare outcomes, not only final states.

use std::collections::BTreeMap;

use crate::TestRng;

/// Bytes per chunk of a sparse model file.
const CHUNK: u64 = 4096;

/// A file's bytes: its size and the chunks ever written (the rest reads as zeros).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SparseFile {
    /// The file's size.
    pub size: u64,
    /// Chunk index to `CHUNK` bytes.
    pub chunks: BTreeMap<u64, Vec<u8>>,
}

impl SparseFile {
    /// Writes `data` at `offset`.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let in_chunk = (at % CHUNK) as usize;
            let take = (CHUNK as usize - in_chunk).min(rest.len());
            let chunk = self
                .chunks
                .entry(at / CHUNK)
                .or_insert_with(|| vec![0; CHUNK as usize]);
            chunk[in_chunk..in_chunk + take].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            at += take as u64;
        }
        self.size = self.size.max(offset + data.len() as u64);
    }

    /// Sets the size, dropping what lies beyond it.
    pub fn truncate(&mut self, size: u64) {
        if size < self.size {
            self.chunks.retain(|&index, _| index * CHUNK < size);
            if let Some(chunk) = self.chunks.get_mut(&(size / CHUNK)) {
                chunk[(size % CHUNK) as usize..].fill(0);
            }
        }
        self.size = size;
    }

    /// Bytes `offset..offset + len`, cut at the size.
    pub fn read(&self, offset: u64, len: u64) -> Vec<u8> {
        let end = offset.saturating_add(len).min(self.size);
        let mut out = Vec::new();
        let mut at = offset;
        while at < end {
            let in_chunk = (at % CHUNK) as usize;
            let take = (CHUNK - at % CHUNK).min(end - at) as usize;
            match self.chunks.get(&(at / CHUNK)) {
                Some(chunk) => out.extend_from_slice(&chunk[in_chunk..in_chunk + take]),
                None => out.resize(out.len() + take, 0),
            }
            at += take as u64;
        }
        out
    }

    /// Ranges worth reading back: every written chunk, its neighbours, and the end.
    pub fn probes(&self) -> Vec<(u64, u64)> {
        let mut probes: Vec<(u64, u64)> = self
            .chunks
            .keys()
            .map(|&index| (index.saturating_sub(1) * CHUNK, 3 * CHUNK))
            .collect();
        probes.push((self.size.saturating_sub(CHUNK), 2 * CHUNK));
        probes
    }
}

/// A node of the model tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Node {
    /// A regular file and its permission bits.
    File(SparseFile, u32),
    /// A directory and its permission bits.
    Dir(BTreeMap<Vec<u8>, Node>, u32),
    /// A symlink's target.
    Link(Vec<u8>),
    /// A FIFO, socket or device node and its permission bits.
    Special(Special, u32),
}

/// What a special file is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Special {
    /// A named pipe.
    Fifo,
    /// A Unix domain socket's name.
    Socket,
    /// A character device with this device number.
    CharDevice(u32),
    /// A block device with this device number.
    BlockDevice(u32),
}

/// A path from the root, one name per level.
pub type Path = Vec<Vec<u8>>;

/// What an operation answers: `Ok`, or which refusal (named as `refusal_name` names a
/// `FsError`).
pub type Outcome = Result<(), &'static str>;

/// One operation on the tree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FileOp {
    /// Create an empty file.
    Create(Path, Vec<u8>, u32),
    /// Create a directory.
    Mkdir(Path, Vec<u8>, u32),
    /// Create a symlink.
    Symlink(Path, Vec<u8>, Vec<u8>),
    /// Create a special file (`mknod`).
    Mknod(Path, Vec<u8>, Special, u32),
    /// Write bytes at an offset.
    Write(Path, u64, Vec<u8>),
    /// Set a file's size.
    Truncate(Path, u64),
    /// Change permission bits.
    Chmod(Path, u32),
    /// Remove a file or symlink.
    Unlink(Path),
    /// Remove an empty directory.
    Rmdir(Path),
    /// Move a name (replacing what is there).
    Rename(Path, Path, Vec<u8>),
}

/// The model: the root directory.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Model {
    /// The root.
    pub root: Node,
}

impl Default for Model {
    fn default() -> Model {
        Model {
            root: Node::Dir(BTreeMap::new(), 0o755),
        }
    }
}

fn check_name(name: &[u8]) -> Outcome {
    if name.len() > 255 {
        return Err("NameTooLong");
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        return Err("InvalidName");
    }
    Ok(())
}

impl Model {
    /// The node at `path`.
    pub fn get(&self, path: &[Vec<u8>]) -> Option<&Node> {
        let mut node = &self.root;
        for name in path {
            match node {
                Node::Dir(entries, _) => node = entries.get(name)?,
                _ => return None,
            }
        }
        Some(node)
    }

    fn get_mut(&mut self, path: &[Vec<u8>]) -> Option<&mut Node> {
        let mut node = &mut self.root;
        for name in path {
            match node {
                Node::Dir(entries, _) => node = entries.get_mut(name)?,
                _ => return None,
            }
        }
        Some(node)
    }

    fn dir_mut(&mut self, path: &[Vec<u8>]) -> Result<&mut BTreeMap<Vec<u8>, Node>, &'static str> {
        match self.get_mut(path) {
            Some(Node::Dir(entries, _)) => Ok(entries),
            Some(_) => Err("NotDirectory"),
            None => Err("NotFound"),
        }
    }

    /// Every path in the tree (not the root), with whether it is a directory, a file or
    /// a link.
    pub fn paths(&self) -> Vec<(Path, &Node)> {
        fn walk<'a>(node: &'a Node, path: &mut Path, out: &mut Vec<(Path, &'a Node)>) {
            if let Node::Dir(entries, _) = node {
                for (name, child) in entries {
                    path.push(name.clone());
                    out.push((path.clone(), child));
                    walk(child, path, out);
                    path.pop();
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut Vec::new(), &mut out);
        out
    }

    /// Applies `op` and returns what the tree must answer.
    pub fn apply(&mut self, op: &FileOp) -> Outcome {
        match op {
            FileOp::Create(dir, name, mode) => {
                self.insert(dir, name, Node::File(SparseFile::default(), *mode))
            }
            FileOp::Mkdir(dir, name, mode) => {
                self.insert(dir, name, Node::Dir(BTreeMap::new(), *mode))
            }
            FileOp::Symlink(dir, name, target) => {
                self.insert(dir, name, Node::Link(target.clone()))
            }
            FileOp::Mknod(dir, name, special, mode) => {
                self.insert(dir, name, Node::Special(*special, *mode))
            }
            FileOp::Write(path, offset, data) => match self.get_mut(path) {
                Some(Node::File(file, _)) => {
                    file.write(*offset, data);
                    Ok(())
                }
                _ => Err("NotFound"),
            },
            FileOp::Truncate(path, size) => match self.get_mut(path) {
                Some(Node::File(file, _)) => {
                    file.truncate(*size);
                    Ok(())
                }
                _ => Err("NotFound"),
            },
            FileOp::Chmod(path, new_mode) => match self.get_mut(path) {
                Some(Node::File(_, mode) | Node::Dir(_, mode) | Node::Special(_, mode)) => {
                    *mode = *new_mode;
                    Ok(())
                }
                _ => Err("NotFound"),
            },
            FileOp::Unlink(path) => self.remove(path, false),
            FileOp::Rmdir(path) => self.remove(path, true),
            FileOp::Rename(from, to_dir, to_name) => self.rename(from, to_dir, to_name),
        }
    }

    fn insert(&mut self, dir: &[Vec<u8>], name: &[u8], node: Node) -> Outcome {
        check_name(name)?;
        let entries = self.dir_mut(dir)?;
        if entries.contains_key(name) {
            return Err("Exists");
        }
        entries.insert(name.to_vec(), node);
        Ok(())
    }

    fn remove(&mut self, path: &[Vec<u8>], directory: bool) -> Outcome {
        let (name, dir) = path.split_last().ok_or("NotFound")?;
        let entries = self.dir_mut(dir)?;
        match (entries.get(name).ok_or("NotFound")?, directory) {
            (Node::Dir(..), false) => return Err("IsDirectory"),
            (Node::Dir(children, _), true) if !children.is_empty() => return Err("NotEmpty"),
            (Node::Dir(..), true) => {}
            (_, true) => return Err("NotDirectory"),
            _ => {}
        }
        entries.remove(name);
        Ok(())
    }

    fn rename(&mut self, from: &[Vec<u8>], to_dir: &[Vec<u8>], to_name: &[u8]) -> Outcome {
        check_name(to_name)?;
        let (name, from_dir) = from.split_last().ok_or("NotFound")?;
        let source = self.dir_mut(from_dir)?.get(name).ok_or("NotFound")?.clone();
        let target = self.dir_mut(to_dir)?.get(to_name).cloned();
        if matches!(source, Node::Dir(..)) && to_dir.starts_with(from) {
            return Err("IntoOwnSubtree");
        }
        let mut to: Path = to_dir.to_vec();
        to.push(to_name.to_vec());
        if to == from {
            return Ok(());
        }
        if matches!(target, Some(Node::Dir(..))) && from.starts_with(&to) {
            // The target holds the source (Linux checks this first).
            return Err("NotEmpty");
        }
        if let Some(target) = &target {
            match (&source, target) {
                (Node::Dir(..), Node::Dir(children, _)) if !children.is_empty() => {
                    return Err("NotEmpty");
                }
                (Node::Dir(..), Node::Dir(..)) => {}
                (Node::Dir(..), _) => return Err("NotDirectory"),
                (_, Node::Dir(..)) => return Err("IsDirectory"),
                _ => {}
            }
        }
        self.dir_mut(from_dir)?.remove(name);
        self.dir_mut(to_dir)?.insert(to_name.to_vec(), source);
        Ok(())
    }
}

/// How big the generated operations get.
#[derive(Clone, Copy, Debug)]
pub struct OpLimits {
    /// The largest write.
    pub max_write: u64,
    /// The tree's page size (offsets cluster around its boundaries).
    pub page_size: u64,
    /// Per mille of writes and truncations that reach past 4 GiB (some to 64 GiB and 1 TiB).
    pub far_per_mille: u64,
    /// Only names a path can carry (no `/`, not `..`): for operations made through the
    /// kernel, which resolves those itself.
    pub path_names_only: bool,
}

/// A random operation: mostly valid ones, with a share of refusals (taken names,
/// missing paths, bad names, directories into themselves).
pub fn random_op(rng: &mut TestRng, model: &Model, limits: OpLimits) -> FileOp {
    let paths = model.paths();
    let dirs: Vec<Path> = std::iter::once(Vec::new())
        .chain(
            paths
                .iter()
                .filter(|(_, node)| matches!(node, Node::Dir(..)))
                .map(|(path, _)| path.clone()),
        )
        .collect();
    let files: Vec<Path> = paths
        .iter()
        .filter(|(_, node)| matches!(node, Node::File(..)))
        .map(|(path, _)| path.clone())
        .collect();
    let any: Vec<Path> = paths.iter().map(|(path, _)| path.clone()).collect();
    let dir = rng.pick(&dirs).cloned().unwrap_or_default();
    let name = random_name(rng, limits.path_names_only);
    let offset = |rng: &mut TestRng, size: u64| {
        if rng.chance(limits.far_per_mille) {
            // Past 4 GiB, and sometimes far past it: a truncation or unlink of a file
            // written at 1 TiB must cost its pages, not its size (found by a review: a
            // drop per block took minutes; these offsets only went to 4 GiB).
            let base: u64 = match rng.below(4) {
                0 => 1 << 40,
                1 => 1 << 36,
                _ => 4 << 30,
            };
            base + rng.below(3 * limits.page_size)
        } else {
            let page = rng.below(size / limits.page_size + 3) * limits.page_size;
            // Page boundaries, just around them, and anywhere.
            match rng.below(3) {
                0 => page,
                1 => page.saturating_sub(rng.below(5)) + rng.below(5),
                _ => page + rng.below(limits.page_size),
            }
        }
    };
    let size_of = |path: &Path| match model.get(path) {
        Some(Node::File(file, _)) => file.size,
        _ => 0,
    };
    match rng.below(100) {
        0..=12 => FileOp::Create(dir, name, 0o600 + rng.below(0o200) as u32),
        13..=14 => {
            let device = rng.below(1 << 20) as u32;
            let special = match rng.below(4) {
                0 => Special::Fifo,
                1 => Special::Socket,
                2 => Special::CharDevice(device),
                _ => Special::BlockDevice(device),
            };
            FileOp::Mknod(dir, name, special, 0o600 + rng.below(0o200) as u32)
        }
        15..=21 => FileOp::Mkdir(dir, name, 0o700 + rng.below(0o100) as u32),
        22..=24 => {
            let target = (0..rng.between(1, 300))
                .map(|_| b'a' + rng.below(26) as u8)
                .collect();
            FileOp::Symlink(dir, name, target)
        }
        25..=59 if !files.is_empty() => {
            let path = rng.pick(&files).cloned().unwrap_or_default();
            let at = offset(rng, size_of(&path));
            let len = match rng.below(4) {
                0 => limits.page_size,
                1 => rng.between(1, 16),
                _ => rng.between(1, limits.max_write),
            };
            let byte = rng.below(255) as u8 + 1;
            let data = (0..len)
                .map(|index| byte.wrapping_add(index as u8))
                .collect();
            FileOp::Write(path, at, data)
        }
        60..=69 if !files.is_empty() => {
            let path = rng.pick(&files).cloned().unwrap_or_default();
            let size = if rng.chance(200) {
                0
            } else {
                offset(rng, size_of(&path))
            };
            FileOp::Truncate(path, size)
        }
        70..=72 if !any.is_empty() => {
            // Now and then the root, whose mode is the tree's own (a review found a chmod
            // of the root missing from every file diff; no operation here touched it).
            let path = match rng.chance(100) {
                true => Vec::new(),
                false => rng.pick(&any).cloned().unwrap_or_default(),
            };
            match (model.get(&path), files.first()) {
                (Some(Node::Link(_)), Some(file)) => FileOp::Chmod(file.clone(), 0o640),
                (Some(Node::Link(_)), None) => FileOp::Create(dir, name, 0o644),
                _ => FileOp::Chmod(path, rng.below(0o1000) as u32),
            }
        }
        73..=83 if !any.is_empty() => FileOp::Unlink(rng.pick(&any).cloned().unwrap_or_default()),
        84..=88 if !any.is_empty() => FileOp::Rmdir(rng.pick(&any).cloned().unwrap_or_default()),
        89..=99 if !any.is_empty() => {
            FileOp::Rename(rng.pick(&any).cloned().unwrap_or_default(), dir, name)
        }
        _ => FileOp::Create(dir, name, 0o644),
    }
}

/// A short name from a small alphabet (so names collide), now and then a long or an
/// invalid one (with `path_names_only`, only too long).
pub fn random_name(rng: &mut TestRng, path_names_only: bool) -> Vec<u8> {
    match rng.below(100) {
        0 => vec![b'n'; 255],
        1 => vec![b'n'; 256],
        2 if !path_names_only => b"a/b".to_vec(),
        3 if !path_names_only => b"..".to_vec(),
        _ => vec![b'a' + rng.below(6) as u8],
    }
}
