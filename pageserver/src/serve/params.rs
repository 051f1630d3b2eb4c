//! Parsing what requests carry: LSNs (`X/Y`), times (RFC 3339), durations (`3600s`,
//! `1h`), branch references (a name or `projects/P/branches/B`) and which state of a
//! branch a request means. Each failure is a 400 naming the field and the value.
//!
//! Invariant: what these accept is exactly what the patterns below (stated in the
//! OpenAPI document) match, so the document is the contract: a value it allows is never
//! refused as malformed (400), and one it forbids never gets through. A well-formed value
//! can still be refused for what it means (an LSN past the head, a time before the
//! history): that is a 422.

use std::time::Duration;

use serde::Deserialize as _;

use pagefork_engine::{At, Expiry, Lsn, Timestamp};

use super::error::{ApiError, quoted};

/// A project in a path (for the document; the handlers take `Path<String>`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct ProjectParam {
    #[param(value_type = super::schema::ProjectNameText)]
    project: String,
}

/// A project and a branch in a path (a `/` in a branch name is sent as `%2F`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct BranchParams {
    #[param(value_type = super::schema::ProjectNameText)]
    project: String,
    #[param(value_type = super::schema::BranchNameText)]
    branch: String,
}

/// An LSN: two hexadecimal halves of 1-8 digits, like `0/16B3748`.
pub(crate) const LSN_PATTERN: &str = "^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$";

/// A time: RFC 3339 in UTC (`Z` or `+00:00`), 1970 to 9999, real calendar dates
/// (February 29 in leap years only), seconds up to 59 (a leap second has no instant of its
/// own in the store's times), up to nine fraction digits.
pub(crate) const TIME_PATTERN: &str = concat!(
    "^(",
    "(19[7-9][0-9]|[2-9][0-9]{3})-(",
    "(0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])",
    "|(0[469]|11)-(0[1-9]|[12][0-9]|30)",
    "|02-(0[1-9]|1[0-9]|2[0-8])",
    ")",
    "|(19(7[26]|8[048]|9[26])|[2-9][0-9](0[48]|[2468][048]|[13579][26])|([2468][048]|[3579][26])00)-02-29",
    ")T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|\\+00:00)$"
);

/// A duration: one to four amounts with a unit (`ms`, `s`, `m`, `h`, `d`, `w`, `y`),
/// optionally one space apart: `3600s`, `1h 30m`, `2d`.
pub(crate) const DURATION_PATTERN: &str =
    "^[0-9]{1,9}(ms|s|m|h|d|w|y)( ?[0-9]{1,9}(ms|s|m|h|d|w|y)){0,3}$";

/// [`DURATION_PATTERN`], compiled once (humantime alone accepts more, like `1hour`).
static DURATION: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(DURATION_PATTERN).expect("a valid pattern (the tests compile it)")
});

/// Deserializes an optional field that, when present, must hold a value: `null` is
/// refused, as the document says (it marks these fields not nullable).
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A flag that only takes `true` (see `schema::TrueOnly`): absent is `false`, an explicit
/// `false` is refused rather than silently meaning nothing.
pub(crate) fn only_true(field: &str, value: Option<bool>) -> Result<bool, ApiError> {
    match value {
        None => Ok(false),
        Some(true) => Ok(true),
        Some(false) => Err(ApiError::bad_request(format!(
            "{field}: give true or leave it out"
        ))),
    }
}

/// The body of a request that changes something but takes no parameters: `{}`, sent as
/// `application/json` like every other body, so that no browser can send it cross-origin
/// without a preflight (see `guard`).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParameters {}

/// `text`, the value of `field`, as an LSN (0/0 parses; the store refuses it, as every LSN
/// below a branch's start).
pub(crate) fn lsn(field: &str, text: &str) -> Result<Lsn, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "{field}: invalid LSN {}: expected X/Y in hexadecimal, like 0/16B3748",
            quoted(text)
        ))
    })
}

/// `text`, the value of `field`, as a time (the parser accepts exactly [`TIME_PATTERN`]:
/// the tests below check it).
pub(crate) fn time(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    text.parse().map_err(|error: pagefork_engine::ParseTimestampError| {
        ApiError::bad_request(format!(
            "{field}: invalid time {}: expected RFC 3339 in UTC, like 2026-11-21T10:00:00Z ({})",
            quoted(text),
            error.reason
        ))
    })
}

/// `text` as a duration ([`DURATION_PATTERN`], the one grammar the CLI and the API
/// accept), or why not.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let refused = |reason: String| {
        format!(
            "invalid duration {} ({reason}): use amounts with units ms, s, m, h, d, w or y, like 3600s, 90m or 1h 30m",
            quoted(text)
        )
    };
    if !DURATION.is_match(text) {
        // An amount too long to be taken says so, not that the form is wrong (found by a
        // review: 99999999999999999999s was "not of the form 90m").
        let longest_amount = text
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        return Err(refused(match longest_amount {
            10.. => "an amount has more than 9 digits".to_owned(),
            _ => "not of the form 90m".to_owned(),
        }));
    }
    humantime::parse_duration(text).map_err(|error| refused(error.to_string()))
}

/// `duration` as [`DURATION_PATTERN`] writes it, so that a value the API or the CLI
/// answers can be given back as it is (a review found `3d` answered as `3days`, which the
/// grammar refuses): each unit from the largest down (`1y 1d`, `1d 12h`, `1s 500ms`), or,
/// when that takes more than four amounts, the fewest amounts that write it (`y`, `d` and
/// `ms` write any whole number of milliseconds in three). A part below a millisecond
/// (the engine's own API can set one, and stores whose windows an older build took with
/// microseconds hold some) is written by humantime, which the grammar does not take.
pub(crate) fn duration_text(duration: Duration) -> String {
    const UNITS: [(&str, u128); 6] = [
        ("y", 31_557_600_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let total = duration.as_millis();
    if !duration.subsec_nanos().is_multiple_of(1_000_000) {
        return humantime::format_duration(duration).to_string();
    }
    if total == 0 {
        return "0s".to_owned();
    }
    // The amounts in `units` (indices into UNITS, larger first), if they write `total`
    // exactly, each of at most nine digits, leaving out those of zero.
    let written_in = |units: &[usize]| -> Option<String> {
        let mut left = total;
        let mut parts = Vec::new();
        for &index in units {
            let (name, size) = UNITS.get(index)?;
            let amount = left / size;
            left %= size;
            if amount > 999_999_999 {
                return None;
            }
            if amount > 0 {
                parts.push(format!("{amount}{name}"));
            }
        }
        (left == 0 && parts.len() <= 4).then(|| parts.join(" "))
    };
    let every_unit: Vec<usize> = (0..UNITS.len()).collect();
    if let Some(text) = written_in(&every_unit) {
        return text;
    }
    // Every choice of one to four units, fewest first, then larger units first.
    let mut choices: Vec<Vec<usize>> = (1u32..1 << UNITS.len())
        .filter(|mask| mask.count_ones() <= 4)
        .map(|mask| {
            (0..UNITS.len())
                .filter(|bit| mask & (1 << bit) != 0)
                .collect()
        })
        .collect();
    choices.sort_by(|a: &Vec<usize>, b| (a.len(), a).cmp(&(b.len(), b)));
    choices
        .iter()
        .find_map(|units| written_in(units))
        .unwrap_or_else(|| humantime::format_duration(duration).to_string())
}

/// `text`, the value of `field`, as a duration.
pub(crate) fn duration(field: &str, text: &str) -> Result<Duration, ApiError> {
    parse_duration(text).map_err(|reason| ApiError::bad_request(format!("{field}: {reason}")))
}

/// The state `lsn` or `time` (at most one) names, as `field_lsn` / `field_time`.
pub(crate) fn at(
    lsn_field: &str,
    lsn_text: Option<&str>,
    time_field: &str,
    time_text: Option<&str>,
) -> Result<At, ApiError> {
    match (lsn_text, time_text) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "give at most one of {lsn_field} and {time_field}"
        ))),
        (Some(text), None) => Ok(At::Lsn(lsn(lsn_field, text)?)),
        (None, Some(text)) => Ok(At::Time(time(time_field, text)?)),
        (None, None) => Ok(At::Latest),
    }
}

/// A branch named in a body or query: a plain name, or `projects/P/branches/B` with `P`
/// the project the request is for. Malformed is a 400; another project's branch is a
/// well-formed reference this request cannot use (422).
pub(crate) fn branch_reference<'a>(
    field: &str,
    project: &str,
    text: &'a str,
) -> Result<&'a str, ApiError> {
    match resource_form(text) {
        Some((named, branch)) if named == project => Ok(branch),
        Some((named, _)) => Err(ApiError::unprocessable(
            "invalid_request",
            format!(
                "{field}: {} names project {}, but this request is for project {}",
                quoted(text),
                quoted(named),
                quoted(project)
            ),
        )),
        None if pagefork_engine::validate_branch_name(text).is_ok() => Ok(text),
        None => Err(ApiError::bad_request(format!(
            "{field}: {} is neither a branch name ({}) nor projects/P/branches/B",
            quoted(text),
            pagefork_engine::BRANCH_NAME_RULE
        ))),
    }
}

/// `text` as project and branch, if it has the resource form `projects/P/branches/B`.
fn resource_form(text: &str) -> Option<(&str, &str)> {
    text.strip_prefix("projects/")
        .and_then(|rest| rest.split_once("/branches/"))
        .filter(|(named, branch)| {
            super::projects::validate_project_name(named).is_ok()
                && pagefork_engine::validate_branch_name(branch).is_ok()
        })
}

/// Refuses, as the name of a new branch (`field`), a name of the resource form
/// `projects/P/branches/B`: a reference to it would name branch B of project P instead.
pub(crate) fn new_branch_name(field: &str, name: &str) -> Result<(), ApiError> {
    match resource_form(name) {
        Some((project, branch)) => Err(ApiError::bad_request(format!(
            "{field}: {} has the form projects/P/branches/B, which names branch {} of project {} in a request: choose another name",
            quoted(name),
            quoted(branch),
            quoted(project)
        ))),
        None => Ok(()),
    }
}

/// `at`, for a query string: a query cannot state "at most one of" in the document, so
/// giving both is a well-formed request refused for what it means (422).
pub(crate) fn at_in_query(
    lsn_field: &str,
    lsn_text: Option<&str>,
    time_field: &str,
    time_text: Option<&str>,
) -> Result<At, ApiError> {
    if lsn_text.is_some() && time_text.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_request",
            format!("give at most one of {lsn_field} and {time_field}"),
        ));
    }
    at(lsn_field, lsn_text, time_field, time_text)
}

/// A JSON object as `T`. Serde would also build a struct from an array of its fields in
/// order (`["x"]` for `{"name": "x"}`); the document says object, so only an object is.
pub(crate) fn object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
    T::deserialize(serde_json::Value::Object(map)).map_err(serde::de::Error::custom)
}

/// `object` for an optional field that must not be `null`.
pub(crate) fn present_object<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    object(deserializer).map(Some)
}

/// The most elements an array of objects may hold (a commit's updates). Each is parsed
/// and converted on its own, as it comes, so a request holds one JSON object at a time
/// besides what it converted: a body of 1.5 million small updates, under the 64 MiB
/// limit, had the server parse them all into JSON maps at once, 2 GB (found by a
/// review).
pub(crate) const MAX_OBJECTS: usize = 65_536;

/// `object` for each element of an array of at most `MAX_OBJECTS`.
pub(crate) fn objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    struct Objects<T>(std::marker::PhantomData<T>);
    impl<'de, T: serde::de::DeserializeOwned> serde::de::Visitor<'de> for Objects<T> {
        type Value = Vec<T>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(formatter, "an array of at most {MAX_OBJECTS} objects")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            use serde::de::Error as _;
            let mut found = Vec::new();
            while let Some(map) =
                seq.next_element::<serde_json::Map<String, serde_json::Value>>()?
            {
                if found.len() == MAX_OBJECTS {
                    return Err(A::Error::custom(format!(
                        "more than {MAX_OBJECTS} elements in one array"
                    )));
                }
                found.push(
                    T::deserialize(serde_json::Value::Object(map)).map_err(A::Error::custom)?,
                );
            }
            Ok(found)
        }
    }
    deserializer.deserialize_seq(Objects(std::marker::PhantomData))
}

/// A whole number up to `u32::MAX`, written as JSON writes it: `7` or `7.0` (JSON Schema
/// counts both as integers).
pub(crate) fn whole_u32<'de, D>(deserializer: D) -> Result<u32, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = match (number.as_u64(), number.as_f64()) {
        (Some(value), _) => u32::try_from(value).ok(),
        (None, Some(value))
            if value.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&value) =>
        {
            Some(value as u32)
        }
        _ => None,
    };
    whole.ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{number} is not a whole number from 0 to {}",
            u32::MAX
        ))
    })
}

/// `whole_u32` for an optional field that must not be `null`.
pub(crate) fn present_whole_u32<'de, D>(deserializer: D) -> Result<Option<u32>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    whole_u32(deserializer).map(Some)
}

/// The expiry a body gives with Lakebase's fields (at most one of them): `None` if it
/// gives none. `no_expiry: false` gives none (Lakebase takes it, and answers "Expiration
/// must be specified" for it when one is required), so it goes with `ttl` or
/// `expire_time` too.
pub(crate) fn expiry(
    ttl: Option<&str>,
    expire_time: Option<&str>,
    no_expiry: Option<bool>,
) -> Result<Option<Expiry>, ApiError> {
    let no_expiry = no_expiry == Some(true);
    let given =
        usize::from(ttl.is_some()) + usize::from(expire_time.is_some()) + usize::from(no_expiry);
    if given > 1 {
        return Err(ApiError::bad_request(
            "give at most one of spec.ttl, spec.expire_time and spec.no_expiry",
        ));
    }
    Ok(match (ttl, expire_time, no_expiry) {
        (Some(ttl), _, _) => Some(Expiry::Ttl(duration("spec.ttl", ttl)?)),
        (_, Some(at), _) => Some(Expiry::At(time("spec.expire_time", at)?)),
        (_, _, true) => Some(Expiry::Never),
        _ => None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::serve::schema::{BRANCH_PARTS_PATTERN, BRANCH_REFERENCE_CHARACTERS_PATTERN};
    use proptest::prelude::*;

    fn matches(pattern: &str, text: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(text)
    }

    /// A pattern's strings, for proptest (which reads it without the anchors).
    fn from(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
        let inner = pattern.trim_start_matches('^').trim_end_matches('$');
        proptest::string::string_regex(inner).unwrap()
    }

    /// Strings near the pattern's: one of its strings with a character changed, cut or
    /// doubled, where the parser and the pattern are most likely to disagree.
    fn near(pattern: &str) -> impl Strategy<Value = String> {
        (
            from(pattern),
            any::<prop::sample::Index>(),
            any::<char>(),
            0..3u8,
        )
            .prop_map(|(text, index, replacement, how)| {
                let mut chars: Vec<char> = text.chars().collect();
                if chars.is_empty() {
                    return replacement.to_string();
                }
                let at = index.index(chars.len());
                match how {
                    0 => chars[at] = replacement,
                    1 => chars.truncate(at),
                    _ => chars.insert(at, chars[at]),
                }
                chars.into_iter().collect()
            })
    }

    /// What the document says of a branch name: its parts pattern and its length.
    fn documented_branch_name(name: &str) -> bool {
        matches(BRANCH_PARTS_PATTERN, name)
            && (1..=pagefork_engine::BRANCH_NAME_MAX_BYTES).contains(&name.len())
    }

    /// A reference as the document states it: both patterns of its `allOf`.
    fn documented_branch_reference(text: &str) -> bool {
        matches(BRANCH_REFERENCE_CHARACTERS_PATTERN, text) && matches(BRANCH_PARTS_PATTERN, text)
    }

    /// A reference's malformed cases are 400s; other outcomes are not about its shape.
    fn reference_is_malformed(text: &str) -> bool {
        branch_reference("f", "shop", text)
            .is_err_and(|error| error.status == axum::http::StatusCode::BAD_REQUEST)
    }

    /// Branch names with an empty, `.` or `..` part: a review found `..` reachable over
    /// HTTP only as `%2E%2E`. The parts pattern and the rule once let them through.
    #[test]
    fn regressions_for_branch_name_parts() {
        for refused in [".", "..", "a/..", "./a", "a//b", "/a", "a/", "/"] {
            assert!(!documented_branch_name(refused), "{refused}");
            assert!(
                pagefork_engine::validate_branch_name(refused).is_err(),
                "{refused}"
            );
            let reference = format!("projects/shop/branches/{refused}");
            assert!(!documented_branch_reference(&reference), "{reference}");
            assert!(reference_is_malformed(&reference), "{reference}");
        }
        for accepted in ["...", ".a/..b/c.", "a.b/-_"] {
            assert!(documented_branch_name(accepted), "{accepted}");
            assert!(
                pagefork_engine::validate_branch_name(accepted).is_ok(),
                "{accepted}"
            );
        }
    }

    /// What the API and CLI answer for a duration, they take back (found by a review:
    /// `3d` was answered `3days`).
    #[test]
    fn durations_are_written_as_the_grammar_reads_them() {
        for (millis, text) in [
            (0, "0s"),
            (1_500, "1s 500ms"),
            (3 * 86_400_000, "3d"),
            (7 * 86_400_000, "7d"),
            (36 * 3_600_000, "1d 12h"),
            (2 * 31_557_600_000, "2y"),
            (31_557_600_000 + 86_400_000, "1y 1d"),
            (90_061_001, "90061001ms"),
        ] {
            assert_eq!(duration_text(Duration::from_millis(millis)), text);
        }
    }

    /// An amount longer than the grammar's nine digits is named as such (found by a
    /// review: "not of the form 90m").
    #[test]
    fn a_too_long_amount_is_named() {
        for text in ["99999999999999999999s", "1h 18446744073709551615ms"] {
            let reason = parse_duration(text).unwrap_err();
            assert!(reason.contains("more than 9 digits"), "{reason}");
        }
        let reason = parse_duration("soon").unwrap_err();
        assert!(reason.contains("not of the form 90m"), "{reason}");
    }

    /// Found by the property tests below: the pattern once called 1998 a leap year, and
    /// the time parser alone accepts a doubled `Z`. Found by a review: a leap second
    /// (`:60`) was folded back to `:59`, so `23:39:60Z` snapped before a commit at
    /// `23:39:59.216`.
    #[test]
    fn regressions_between_the_time_pattern_and_the_parser() {
        for refused in [
            "1998-02-29T00:00:00Z",
            "1970-03-01T00:00:00ZZ",
            "1900-02-29T00:00:00Z",
            "2026-12-05T23:39:60Z",
            "2000-02-29T23:59:60.123456789+00:00",
        ] {
            assert!(!matches(TIME_PATTERN, refused), "{refused}");
            assert!(time("t", refused).is_err(), "{refused}");
        }
        for accepted in [
            "1996-02-29T00:00:00Z",
            "2000-02-29T23:59:59.123456789+00:00",
        ] {
            assert!(matches(TIME_PATTERN, accepted), "{accepted}");
            assert!(time("t", accepted).is_ok(), "{accepted}");
        }
    }

    proptest! {
        #[test]
        fn branch_and_project_names_follow_their_documented_patterns(
            branch in near(BRANCH_PARTS_PATTERN),
            project in near(super::super::schema::PROJECT_NAME_PATTERN),
        ) {
            prop_assert_eq!(
                pagefork_engine::validate_branch_name(&branch).is_ok(),
                documented_branch_name(&branch),
                "{}", branch
            );
            prop_assert_eq!(
                super::super::projects::validate_project_name(&project).is_ok(),
                matches(super::super::schema::PROJECT_NAME_PATTERN, &project),
                "{}", project
            );
        }

        #[test]
        fn branch_references_are_malformed_exactly_where_the_document_says(
            name in near(BRANCH_PARTS_PATTERN),
            project in near(super::super::schema::PROJECT_NAME_PATTERN),
        ) {
            for text in [name.clone(), format!("projects/{project}/branches/{name}")] {
                prop_assert_eq!(
                    reference_is_malformed(&text),
                    !documented_branch_reference(&text),
                    "{}", text
                );
            }
        }

        #[test]
        fn the_time_parser_accepts_exactly_the_documented_pattern(
            valid in from(TIME_PATTERN),
            other in near(TIME_PATTERN),
        ) {
            prop_assert!(time("t", &valid).is_ok(), "{} is documented but refused", valid);
            prop_assert_eq!(time("t", &other).is_ok(), matches(TIME_PATTERN, &other), "{}", other);
        }

        #[test]
        fn a_written_duration_reads_back_as_itself(
            millis in prop_oneof![
                0..100_000_000_000u64,
                0..=u64::try_from(pagefork_engine::MAX_PITR_WINDOW.as_millis()).unwrap(),
            ],
        ) {
            let duration = Duration::from_millis(millis);
            let text = duration_text(duration);
            prop_assert!(matches(DURATION_PATTERN, &text), "{}", text);
            prop_assert_eq!(parse_duration(&text), Ok(duration), "{}", text);
        }

        #[test]
        fn the_duration_parser_accepts_exactly_the_documented_pattern(
            valid in from(DURATION_PATTERN),
            other in near(DURATION_PATTERN),
        ) {
            prop_assert!(duration("d", &valid).is_ok(), "{} is documented but refused", valid);
            prop_assert_eq!(duration("d", &other).is_ok(), matches(DURATION_PATTERN, &other), "{}", other);
        }

        #[test]
        fn the_lsn_parser_accepts_exactly_the_documented_pattern(
            valid in from(LSN_PATTERN),
            other in near(LSN_PATTERN),
        ) {
            prop_assert!(valid.parse::<Lsn>().is_ok(), "{} is documented but refused", valid);
            prop_assert_eq!(other.parse::<Lsn>().is_ok(), matches(LSN_PATTERN, &other), "{}", other);
        }
    }

    #[test]
    fn durations_follow_the_documented_pattern() {
        for good in [
            "3600s",
            "1h",
            "1h 30m",
            "1h30m",
            "500ms",
            "2d 3h 4m 5s",
            "8000y",
            "0s",
        ] {
            assert!(duration("ttl", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "abc",
            "1",
            "h",
            "1 h",
            "1h  30m",
            "1h 2m 3s 4ms 5d",
            "1234567890s",
            "-1s",
            "1.5h",
            " 1h",
            "1h ",
            "1hour",
        ] {
            assert!(duration("ttl", bad).is_err(), "{bad}");
        }
    }
}
