//! Page updates and redo: what a commit says about one page, and how versions combine.
//!
//! Invariant: reconstruction starts from an initializing update (`Image` or `Drop`) and
//! applies later `Patch`es in LSN order; a patch never applies to a page that does not
//! exist (commits are refused before that can be written).

use bytes::{Bytes, BytesMut};

use crate::key::Key;

/// How far back a walk over one page's versions (newest first) goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Depth {
    /// Down to the newest initializing version (image or drop): what rebuilding the page
    /// needs.
    ToWhole,
    /// The newest version only: what telling whether the page exists needs, since a patch
    /// is logged only over a page that exists.
    Newest,
}

impl Depth {
    /// Whether a walk that just met `update` has what it needs.
    pub fn stops_at(self, update: &Update) -> bool {
        self == Depth::Newest || update.is_initializing()
    }
}

/// A change to one page.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Update {
    /// The whole page: exactly the store's page size.
    Image(Bytes),
    /// `bytes` written at `offset` over the previous version of the page.
    Patch {
        /// Byte offset in the page.
        offset: u32,
        /// The bytes to write there.
        bytes: Bytes,
    },
    /// The page no longer exists.
    Drop,
}

impl Update {
    /// Whether reconstruction can stop here: an image or a drop does not need what came
    /// before it.
    pub fn is_initializing(&self) -> bool {
        matches!(self, Update::Image(_) | Update::Drop)
    }

    /// Bytes of page data it carries.
    pub fn payload_len(&self) -> usize {
        match self {
            Update::Image(bytes) | Update::Patch { bytes, .. } => bytes.len(),
            Update::Drop => 0,
        }
    }
}

/// Why a set of versions cannot be turned into a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedoError {
    pub(crate) key: Key,
    pub(crate) reason: String,
}

/// Rebuilds a page from its versions, given newest first and ending with the initializing
/// one (or with no initializing one if the page never existed). `None`: no page.
pub(crate) fn reconstruct(
    key: Key,
    newest_first: &[Update],
    page_size: usize,
) -> Result<Option<Bytes>, RedoError> {
    let Some(base_index) = newest_first.iter().position(Update::is_initializing) else {
        return if newest_first.is_empty() {
            Ok(None)
        } else {
            Err(RedoError {
                key,
                reason: "patches with no image below them".to_owned(),
            })
        };
    };
    let (patches, base) = newest_first.split_at(base_index);
    let base = match base.first() {
        Some(Update::Image(image)) => image,
        _ if patches.is_empty() => return Ok(None),
        _ => {
            return Err(RedoError {
                key,
                reason: "patches on a dropped page".to_owned(),
            });
        }
    };
    if patches.is_empty() {
        return Ok(Some(base.clone()));
    }
    let mut page = BytesMut::from(&base[..]);
    for patch in patches.iter().rev() {
        let Update::Patch { offset, bytes } = patch else {
            unreachable!("only patches lie above the base");
        };
        let start = *offset as usize;
        let target = page
            .get_mut(start..start + bytes.len())
            .filter(|_| start + bytes.len() <= page_size)
            .ok_or_else(|| RedoError {
                key,
                reason: format!(
                    "patch at offset {offset} of {} bytes is out of bounds",
                    bytes.len()
                ),
            })?;
        target.copy_from_slice(bytes);
    }
    Ok(Some(page.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: Key = Key::new(1, 2);

    fn patch(offset: u32, bytes: &[u8]) -> Update {
        Update::Patch {
            offset,
            bytes: Bytes::copy_from_slice(bytes),
        }
    }

    #[test]
    fn patches_apply_oldest_first_on_the_image() {
        let image = Update::Image(Bytes::from(vec![0u8; 8]));
        let newest_first = [patch(1, b"bc"), patch(0, b"ab"), image];
        let page = reconstruct(KEY, &newest_first, 8).unwrap().unwrap();
        assert_eq!(&page[..], b"abc\0\0\0\0\0");
    }

    #[test]
    fn no_versions_or_a_drop_mean_no_page() {
        assert_eq!(reconstruct(KEY, &[], 8), Ok(None));
        assert_eq!(reconstruct(KEY, &[Update::Drop], 8), Ok(None));
    }

    #[test]
    fn impossible_histories_are_errors_not_panics() {
        assert!(reconstruct(KEY, &[patch(0, b"x")], 8).is_err());
        assert!(reconstruct(KEY, &[patch(0, b"x"), Update::Drop], 8).is_err());
        let image = Update::Image(Bytes::from(vec![0u8; 8]));
        assert!(reconstruct(KEY, &[patch(7, b"xy"), image], 8).is_err());
    }
}
