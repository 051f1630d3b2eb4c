//! The checked text framing of the small objects and files remote storage writes (the
//! index, the local state file): one line of JSON, then the CRC32 of that line's bytes as
//! 8 lower-case hex digits on a line of its own.

/// `line` framed with its checksum.
pub(crate) fn encode(line: &str) -> Vec<u8> {
    format!("{line}\n{:08x}\n", crc32fast::hash(line.as_bytes())).into_bytes()
}

/// The JSON line of `bytes` once its checksum matches, or the offset of the damage and
/// what it is.
pub(crate) fn decode(bytes: &[u8]) -> Result<&str, (u64, String)> {
    let text = std::str::from_utf8(bytes)
        .map_err(|error| (error.valid_up_to() as u64, "not UTF-8 text".to_owned()))?;
    let (line, rest) = text
        .split_once('\n')
        .ok_or_else(|| (text.len() as u64, "no checksum line".to_owned()))?;
    let stated = rest.strip_suffix('\n').unwrap_or(rest);
    let expected = u32::from_str_radix(stated, 16)
        .ok()
        .filter(|_| stated.len() == 8)
        .ok_or_else(|| {
            (
                line.len() as u64 + 1,
                format!("checksum line {stated:?} is not 8 hex digits"),
            )
        })?;
    let actual = crc32fast::hash(line.as_bytes());
    if actual != expected {
        return Err((
            0,
            format!(
                "CRC32 of the JSON line is {actual:08x}, its checksum line says {expected:08x}"
            ),
        ));
    }
    Ok(line)
}

/// The `format_version` field of a JSON line, if it has one.
pub(crate) fn format_version(value: &serde_json::Value) -> Option<u64> {
    value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
}
