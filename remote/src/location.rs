//! Where a store's remote copy lives: `s3://BUCKET/PREFIX` on S3 or any S3-compatible
//! server (`--s3-endpoint URL` or `AWS_ENDPOINT_URL`, path-style requests, plain HTTP
//! allowed for a local server). Credentials and region come from the usual `AWS_*` environment variables.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::error::{RemoteError, Result};

/// Retries of a failed request (5xx, throttling, timeouts, connection resets) before it is
/// reported, with exponential backoff and jitter in between (object_store's).
const MAX_RETRIES: usize = 8;
/// The first wait before a retry: each next wait is drawn between it and twice the last
/// (object_store's decorrelated jitter), so 8 retries span at least 4 s, which a server
/// restarting or a short network outage fits in.
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(500);
/// The longest wait between two retries.
const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(15);
/// The longest a request may keep being retried.
const RETRY_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest one request may take (a layer file of 256 MiB at 10 MiB/s takes 26 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a request may wait for the server's next bytes: a server that accepts
/// connections and never answers fails each try this soon (and it is retried, within
/// `RETRY_TIMEOUT`), instead of holding a command for all of `REQUEST_TIMEOUT` (a review
/// found `sync` and `attach` waiting 5 minutes, and `serve`'s shutdown 10).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A bucket, a prefix in it, and the server to reach it at.
#[derive(Clone)]
pub struct RemoteLocation {
    bucket: String,
    prefix: String,
    endpoint: Option<String>,
    /// Access key id and secret, when given here rather than by `AWS_*` variables.
    credentials: Option<(String, String)>,
    /// A client to use instead of building one (tests wrap the real one to inject faults).
    client: Option<Arc<dyn ObjectStore>>,
}

impl PartialEq for RemoteLocation {
    fn eq(&self, other: &RemoteLocation) -> bool {
        self.bucket == other.bucket
            && self.prefix == other.prefix
            && self.endpoint == other.endpoint
            && self.credentials == other.credentials
            && match (&self.client, &other.client) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for RemoteLocation {}

impl std::fmt::Debug for RemoteLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLocation")
            .field("url", &self.url())
            .field("endpoint", &self.endpoint)
            .field(
                "access_key_id",
                &self.credentials.as_ref().map(|(id, _)| id),
            )
            .finish_non_exhaustive()
    }
}

/// The punctuation a prefix may hold besides `/` between its components: what the S3
/// client (object_store) writes as it is. It percent-encodes the rest (`%`, `#`, `?`,
/// `*`, `~`, brackets, braces, quotes, non-ASCII...) in keys but not in listings, so
/// a store synced under such a prefix was listed as holding nothing (a review found a
/// backup at `zö` that attach never found).
const PLAIN_KEY_PUNCTUATION: &str = "!$&'()+,-.:;=@_/";

/// Whether `c` may appear in a prefix (see `PLAIN_KEY_PUNCTUATION`).
fn is_plain_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ' ' || PLAIN_KEY_PUNCTUATION.contains(c)
}

impl RemoteLocation {
    /// Parses `s3://BUCKET[/PREFIX]`; `endpoint` is an S3-compatible server's URL
    /// (`http://127.0.0.1:9000`, checked by `check_endpoint`), `None` for AWS itself.
    pub fn parse(url: &str, endpoint: Option<&str>) -> Result<RemoteLocation> {
        if let Some(endpoint) = endpoint {
            check_endpoint(endpoint)?;
        }
        let location = Self::parse_recorded(url, endpoint)?;
        if let Some(refused) = location.prefix.chars().find(|&c| !is_plain_key_char(c)) {
            return Err(RemoteError::InvalidLocation {
                location: url.to_owned(),
                why: format!(
                    "the prefix holds {refused:?}: a prefix is ASCII letters, digits, spaces \
                     and {PLAIN_KEY_PUNCTUATION:?} (the S3 client writes other characters \
                     percent-encoded, and such a store could be synced but never attached)"
                ),
            });
        }
        Ok(location)
    }

    /// Parses a location as a store's `pagefork.remote` recorded it: the endpoint only
    /// needs its scheme (what was checked when it was recorded, before `check_endpoint`
    /// existed), so no store that opened before becomes one that cannot.
    pub(crate) fn parse_recorded(url: &str, endpoint: Option<&str>) -> Result<RemoteLocation> {
        let invalid = |why: &str| RemoteError::InvalidLocation {
            location: url.to_owned(),
            why: why.to_owned(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it must start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(invalid(
                "the bucket name must be 3 to 63 lower-case letters, digits, '-' or '.'",
            ));
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix
            .split('/')
            .any(|part| part == "." || part == ".." || (part.is_empty() && !prefix.is_empty()))
        {
            return Err(invalid(
                "the prefix must not hold empty, '.' or '..' components",
            ));
        }
        if let Some(endpoint) = endpoint {
            after_scheme(endpoint)?;
        }
        Ok(RemoteLocation {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: endpoint.map(str::to_owned),
            credentials: None,
            client: None,
        })
    }

    /// The same location reached with this access key instead of the `AWS_*` variables
    /// (for programs that embed pagefork and hold their own credentials).
    pub fn with_credentials(self, access_key_id: &str, secret_access_key: &str) -> RemoteLocation {
        RemoteLocation {
            credentials: Some((access_key_id.to_owned(), secret_access_key.to_owned())),
            ..self
        }
    }

    /// The location below this one for `name` (a project of `pagefork serve`).
    pub fn child(&self, name: &str) -> RemoteLocation {
        let prefix = if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        };
        RemoteLocation {
            prefix,
            ..self.clone()
        }
    }

    /// `s3://BUCKET/PREFIX`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The S3-compatible server's URL, if not AWS.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The key of `relative` under the prefix.
    pub(crate) fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    /// The same location reached through `client` (whose keys are the bucket's, without
    /// the prefix): a client of the caller's own, or the real one wrapped (tests inject
    /// faults so).
    pub fn with_client(self, client: Arc<dyn ObjectStore>) -> RemoteLocation {
        RemoteLocation {
            client: Some(client),
            ..self
        }
    }

    /// A client for the bucket: the one given by `with_client`, or one built from the
    /// endpoint, the credentials and the `AWS_*` variables.
    pub fn client(&self) -> Result<Arc<dyn ObjectStore>> {
        if let Some(client) = &self.client {
            return Ok(Arc::clone(client));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
                backoff: BackoffConfig {
                    init_backoff: FIRST_RETRY_WAIT,
                    max_backoff: LONGEST_RETRY_WAIT,
                    base: 2.0,
                },
            });
        if let Some(endpoint) = &self.endpoint {
            // The endpoint given here is the one used: the client would take
            // `AWS_ENDPOINT_URL_S3` over it (a review found requests sent elsewhere).
            builder = builder
                .with_endpoint(endpoint)
                .with_config(AmazonS3ConfigKey::S3Endpoint, endpoint);
        }
        // Plain HTTP is allowed for the endpoint the client will use when it is an
        // `http://` one the user named, here or in `AWS_ENDPOINT_URL_S3`,
        // `AWS_ENDPOINT_URL` or `AWS_ENDPOINT` (a local server, typically).
        let used = builder
            .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
            .or_else(|| builder.get_config_value(&AmazonS3ConfigKey::Endpoint));
        let plain_http = used.is_some_and(|url| url.starts_with("http://"));
        builder = builder.with_client_options(
            ClientOptions::new()
                .with_timeout(REQUEST_TIMEOUT)
                .with_connect_timeout(CONNECT_TIMEOUT)
                .with_read_timeout(READ_TIMEOUT)
                .with_allow_http(plain_http),
        );
        if let Some((id, secret)) = &self.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|source| RemoteError::Request {
            operation: "configure a client for",
            key: self.prefix.clone(),
            location: self.url(),
            source: Box::new(source),
        })?;
        Ok(Arc::new(store))
    }
}

/// What follows an S3 endpoint's `http://` or `https://`, or why it has neither.
fn after_scheme(endpoint: &str) -> Result<&str> {
    endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| RemoteError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            why: "it must be an http:// or https:// URL".to_owned(),
        })
}

/// Refuses an S3 endpoint that is not an `http://` or `https://` URL naming a host, with
/// an optional port from 1 to 65535 and path (a server behind a proxy at a path):
/// `http://127.0.0.1:9000`, `http://[::1]:9000`, `https://s3.eu-west-1.amazonaws.com/`.
/// Credentials in it are refused too (they come from the `AWS_*` variables), and so are a
/// query and a fragment, which the client would put before each object's path (a review's
/// `?x=1` made requests to `/?x=1/bucket/...`).
fn check_endpoint(endpoint: &str) -> Result<()> {
    let invalid = |why: &str| RemoteError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        why: why.to_owned(),
    };
    let rest = after_scheme(endpoint)?;
    if rest.contains(['?', '#']) {
        return Err(invalid(
            "a query or fragment has no place in it: name the server (and a path, if it has one)",
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(invalid(
            "credentials do not go in the endpoint: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    }
    let port = match authority.strip_prefix('[') {
        // An IPv6 address: [address] or [address]:port.
        Some(bracketed) => {
            let (address, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("an IPv6 address must end with ']'"))?;
            if address.is_empty() || !address.contains(':') {
                return Err(invalid("the brackets must hold an IPv6 address"));
            }
            match after {
                "" => None,
                after => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid("only a :port may follow the IPv6 address"))?,
                ),
            }
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            if host.is_empty() {
                return Err(invalid("it names no host"));
            }
            port
        }
    };
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |port| port == 0)
    {
        return Err(invalid("its port must be a number from 1 to 65535"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix_and_refuses_the_rest() -> Result<()> {
        let location = RemoteLocation::parse("s3://pagefork-ci/stores/one/", None)?;
        assert_eq!(location.url(), "s3://pagefork-ci/stores/one");
        assert_eq!(
            location.key("index/00000001.json"),
            "stores/one/index/00000001.json"
        );
        assert_eq!(
            location.child("shop").url(),
            "s3://pagefork-ci/stores/one/shop"
        );
        let plain = "s3://bucket/a b/c+d/e!$&'()+,-.:;=@_f";
        assert_eq!(RemoteLocation::parse(plain, None)?.url(), plain);
        let bare = RemoteLocation::parse("s3://bucket", Some("http://127.0.0.1:9000"))?;
        assert_eq!(bare.key("x"), "x");
        assert_eq!(bare.endpoint(), Some("http://127.0.0.1:9000"));
        for bad in [
            "bucket/prefix",
            "s3://B/x",
            "s3://ab",
            "s3://bucket/a//b",
            "s3://bucket/../x",
            "s3://bucket/z\u{f6}",
            "s3://bucket/a#b",
            "s3://bucket/a?b",
            "s3://bucket/a%20b",
            "s3://bucket/a*",
        ] {
            assert!(
                matches!(
                    RemoteLocation::parse(bad, None),
                    Err(RemoteError::InvalidLocation { .. })
                ),
                "{bad} was accepted"
            );
        }
        for (good, bad) in [
            ("https://s3.example.com/", "127.0.0.1:9000"),
            ("http://[::1]:9000", "ftp://x"),
            ("http://localhost", "http://"),
            ("https://a.b:443/path", "http://[::1"),
            ("http://[::1]", "http://host:0"),
            ("http://h:65535", "http://host:port"),
            ("http://minio:9000/", "http://user:pw@host"),
            ("https://s3.eu-west-1.amazonaws.com", "http://::1"),
            ("http://127.0.0.1:9000", "http://a:1:2"),
            ("http://[fe80::1]:1", "http://[]:9000"),
            ("http://minio:9000/s3", "http://minio:9000/?x"),
            ("http://minio", "http://127.0.0.1:9000#f"),
            ("http://minio", "http://127.0.0.1:18014?x=1"),
        ] {
            assert!(
                RemoteLocation::parse("s3://bucket", Some(good)).is_ok(),
                "{good} was refused"
            );
            match RemoteLocation::parse("s3://bucket", Some(bad)) {
                Err(RemoteError::InvalidEndpoint { endpoint, .. }) => assert_eq!(endpoint, bad),
                other => panic!("{bad}: {other:?}"),
            }
        }
        // What a store recorded before these checks still opens.
        assert!(RemoteLocation::parse_recorded("s3://bucket", Some("http://user:pw@host")).is_ok());
        assert!(RemoteLocation::parse_recorded("s3://bucket", Some("ftp://host")).is_err());
        Ok(())
    }
}
