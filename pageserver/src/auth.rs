//! Short-lived tokens for `pagefork serve --auth`: the server's Ed25519 key pair, kept in
//! the data directory, and the EdDSA JWTs signed with it (`pagefork token create`).
//!
//! A token names its scope, the whole server or one project, and when it expires; it
//! carries `iat`, `nbf` and `exp` in seconds since the epoch. Checking one tells apart
//! every way it can be wrong (missing, malformed, signed by another key or tampered
//! with, expired, not yet valid, or for another project), so the server can say which.
//!
//! Invariants: the key file is published crash-safely with mode 0600 (never readable by
//! others, not even while it is written), created only when missing, and never replaced;
//! a file that does not hold an Ed25519 private key is an error naming it, not a new key.
//! No clock leeway: a token is refused from the second its `exp` names.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The directory under the data directory that holds the key.
const AUTH_DIR: &str = "auth";
/// The private key, PKCS#8 PEM.
const KEY_FILE: &str = "private_key.pem";

/// The longest a token may live: tokens are meant to be short-lived.
pub(crate) const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Refuses a token lifetime outside 1 s to [`MAX_TOKEN_TTL`].
pub(crate) fn check_token_ttl(ttl: Duration) -> anyhow::Result<()> {
    if ttl < Duration::from_secs(1) || ttl > MAX_TOKEN_TTL {
        bail!(
            "a token lives from 1s to {} (tokens are meant to be short-lived)",
            humantime::format_duration(MAX_TOKEN_TTL)
        );
    }
    Ok(())
}

/// What a token lets its bearer do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Every route.
    Server,
    /// The routes of one project (`/v1/projects/{project}` and below).
    Project(String),
}

impl Scope {
    /// Whether this scope reaches `path` (the request's path, as sent).
    pub(crate) fn allows(&self, path: &str) -> bool {
        match self {
            Scope::Server => true,
            Scope::Project(project) => {
                let mut segments = path.split('/').skip(1);
                segments.next() == Some("v1")
                    && segments.next() == Some("projects")
                    && segments.next() == Some(project.as_str())
            }
        }
    }
}

/// A token's claims, as signed.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// `"server"` or `"project"`.
    scope: String,
    /// The project, for a project token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    project: Option<String>,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    /// No `Authorization: Bearer` header.
    #[error(
        "this server requires a token: send Authorization: Bearer <token> (pagefork token create prints one)"
    )]
    Missing,
    /// Not a JWT, or not a bearer header.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// Signed with another key, tampered with, or not EdDSA.
    #[error("the token's signature does not match this server's key: {0}")]
    BadSignature(String),
    /// Past its `exp`.
    #[error("the token expired at {0}")]
    Expired(String),
    /// Before its `nbf`.
    #[error("the token is not valid before {0}")]
    NotYetValid(String),
    /// For another project (or a project token on a server-wide route): valid, but not
    /// for this path (403, where the others are 401).
    #[error("the token is for {scope} and does not cover the path {path}")]
    WrongScope {
        /// What the token is for.
        scope: String,
        /// The path asked for.
        path: String,
    },
}

impl TokenError {
    /// The stable code an API answer carries.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "token_missing",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::BadSignature(_) => "token_invalid",
            TokenError::Expired(_) => "token_expired",
            TokenError::NotYetValid(_) => "token_not_yet_valid",
            TokenError::WrongScope { .. } => "token_wrong_scope",
        }
    }
}

/// The server's key pair.
pub(crate) struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    path: PathBuf,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys({})", self.path.display())
    }
}

impl Keys {
    /// The key pair kept in `data_dir`, created (and published durably) if there is none.
    pub(crate) fn load_or_create(data_dir: &Path) -> anyhow::Result<Keys> {
        let dir = data_dir.join(AUTH_DIR);
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            create_key(&dir, &path)?;
        }
        Keys::load(&path)
    }

    fn load(path: &Path) -> anyhow::Result<Keys> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token key {}", path.display()))?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|error| {
            anyhow::anyhow!(
                "{} does not hold an Ed25519 private key in PKCS#8 PEM ({error})",
                path.display()
            )
        })?;
        // The key parsed once: jsonwebtoken takes the PKCS#8 DER to sign and the raw
        // public key to verify.
        let der = signing
            .to_pkcs8_der()
            .context("cannot encode the signing key")?;
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        let decoding = DecodingKey::from_ed_der(signing.verifying_key().as_bytes());
        Ok(Keys {
            encoding,
            decoding,
            path: path.to_owned(),
        })
    }

    /// A token for `scope` that expires `ttl` from `now` (see `check_token_ttl`).
    pub(crate) fn mint(
        &self,
        scope: &Scope,
        ttl: Duration,
        now: SystemTime,
    ) -> anyhow::Result<(String, u64)> {
        check_token_ttl(ttl)?;
        let iat = seconds(now);
        // Rounded up: a token lives at least its TTL, though `exp` counts whole seconds
        // and it is expired from the second `exp` names (a review's 1 s token minted late
        // in a second lived a millisecond once the boundary was checked).
        let end = now + ttl.max(Duration::from_secs(1));
        let partial = end
            .duration_since(UNIX_EPOCH)
            .is_ok_and(|since| since.subsec_nanos() > 0);
        let exp = seconds(end) + u64::from(partial);
        let (scope, project) = match scope {
            Scope::Server => ("server", None),
            Scope::Project(project) => ("project", Some(project.clone())),
        };
        let claims = Claims {
            scope: scope.to_owned(),
            project,
            iat,
            nbf: iat,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .context("cannot sign the token")?;
        Ok((token, exp))
    }

    /// The scope of `authorization` (the header's value), if it is a valid token.
    pub(crate) fn check(&self, authorization: Option<&str>) -> Result<Scope, TokenError> {
        let value = authorization.ok_or(TokenError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                TokenError::Malformed("expected Authorization: Bearer <token>".to_owned())
            })?
            .trim();
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |error| match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired(expiry_of(token)),
                ErrorKind::ImmatureSignature => TokenError::NotYetValid(not_before_of(token)),
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidEddsaKey => TokenError::BadSignature(error.to_string()),
                _ => TokenError::Malformed(error.to_string()),
            },
        )?;
        // The library takes a token as expired once `exp` is *past* (in whole seconds), so
        // it accepted one through the second its `exp` names (found by a review); a token
        // is valid only before its `exp`, as RFC 7519 says.
        if seconds(SystemTime::now()) >= data.claims.exp {
            return Err(TokenError::Expired(expiry_of(token)));
        }
        match (data.claims.scope.as_str(), data.claims.project) {
            ("server", None) => Ok(Scope::Server),
            ("project", Some(project)) => Ok(Scope::Project(project)),
            (scope, _) => Err(TokenError::Malformed(format!(
                "unknown scope {}",
                pagefork_engine::quoted(scope)
            ))),
        }
    }
}

/// Seconds since the epoch (0 before it).
fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A claim of an already-verified token (its signature checked out), as a time.
fn claim_time(token: &str, claim: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap_or_default();
    let seconds = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|claims| claims.get(claim).and_then(serde_json::Value::as_u64));
    match seconds {
        Some(seconds) => pagefork_engine::Timestamp(seconds.saturating_mul(1_000_000)).to_string(),
        None => format!("(its {claim})"),
    }
}

fn expiry_of(token: &str) -> String {
    claim_time(token, "exp")
}

fn not_before_of(token: &str) -> String {
    claim_time(token, "nbf")
}

/// Makes a new key and publishes it at `path`: written to a temporary file created with
/// mode 0600, fsynced, renamed into place, the directory fsynced.
fn create_key(dir: &Path, path: &Path) -> anyhow::Result<()> {
    pagefork_engine::create_dir_all_durably(&pagefork_engine::StdFileSystem, dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)
        .map_err(|error| anyhow::anyhow!("no randomness for a key: {error}"))?;
    let pem = SigningKey::from_bytes(&seed)
        .to_pkcs8_pem(LineEnding::LF)
        .context("cannot encode the key")?;
    let temp = path.with_extension("pem.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot publish {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_checks_out_in_its_scope_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = Keys::load_or_create(dir.path()).expect("keys");
        let (token, _) = keys
            .mint(
                &Scope::Project("shop".into()),
                Duration::from_secs(60),
                SystemTime::now(),
            )
            .expect("token");
        let scope = keys.check(Some(&format!("Bearer {token}"))).expect("valid");
        assert!(scope.allows("/v1/projects/shop/branches"));
        assert!(scope.allows("/v1/projects/shop"));
        assert!(!scope.allows("/v1/projects/shopping/branches"));
        assert!(!scope.allows("/v1/projects"));
        assert!(!scope.allows("/metrics"));
        assert!(Scope::Server.allows("/metrics"));
        // The key is kept, private, and read back the same.
        let again = Keys::load_or_create(dir.path()).expect("keys");
        assert_eq!(again.check(Some(&format!("Bearer {token}"))), Ok(scope));
        let mode = std::fs::metadata(dir.path().join("auth/private_key.pem"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn every_bad_token_is_refused_saying_why() {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = Keys::load_or_create(dir.path()).expect("keys");
        let other = Keys::load_or_create(&dir.path().join("other")).expect("keys");
        let now = SystemTime::now();
        let (expired, _) = keys
            .mint(
                &Scope::Server,
                Duration::from_secs(1),
                now - Duration::from_secs(10),
            )
            .expect("token");
        let (future, _) = keys
            .mint(
                &Scope::Server,
                Duration::from_secs(60),
                now + Duration::from_secs(3600),
            )
            .expect("token");
        let (foreign, _) = other
            .mint(&Scope::Server, Duration::from_secs(60), now)
            .expect("token");
        let (good, _) = keys
            .mint(&Scope::Server, Duration::from_secs(60), now)
            .expect("token");
        let tampered = {
            let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
            use base64::Engine as _;
            let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let claims =
                String::from_utf8(engine.decode(&parts[1]).expect("base64")).expect("utf8");
            parts[1] = engine.encode(claims.replace("\"server\"", "\"project\",\"project\":\"x\""));
            parts.join(".")
        };
        let code =
            |header: Option<String>| keys.check(header.as_deref()).map_err(|error| error.code());
        assert_eq!(code(None), Err("token_missing"));
        assert_eq!(code(Some("Basic abc".into())), Err("token_malformed"));
        assert_eq!(
            code(Some("Bearer not.a.token".into())),
            Err("token_malformed")
        );
        assert_eq!(
            code(Some(format!("Bearer {expired}"))),
            Err("token_expired")
        );
        assert_eq!(
            code(Some(format!("Bearer {future}"))),
            Err("token_not_yet_valid")
        );
        assert_eq!(
            code(Some(format!("Bearer {foreign}"))),
            Err("token_invalid")
        );
        assert_eq!(
            code(Some(format!("Bearer {tampered}"))),
            Err("token_invalid")
        );
        assert_eq!(code(Some(format!("Bearer {good}"))), Ok(Scope::Server));
        let error = keys.check(Some(&format!("Bearer {expired}"))).unwrap_err();
        assert!(error.to_string().contains("expired at 20"), "{error}");
        // Found by a review: a token was accepted through the second its `exp` names.
        // (Minted on a whole second, so its `exp` is this second.)
        let this_second = seconds(SystemTime::now());
        let (ending, exp) = keys
            .mint(
                &Scope::Server,
                Duration::from_secs(60),
                UNIX_EPOCH + Duration::from_secs(this_second - 60),
            )
            .expect("token");
        assert!(exp <= seconds(SystemTime::now()));
        // And a token lives at least its TTL: one minted now for a second is valid now.
        let (short, exp) = keys
            .mint(&Scope::Server, Duration::from_secs(1), SystemTime::now())
            .expect("token");
        assert!(exp > seconds(SystemTime::now()));
        assert_eq!(code(Some(format!("Bearer {short}"))), Ok(Scope::Server));
        assert_eq!(code(Some(format!("Bearer {ending}"))), Err("token_expired"));
    }

    #[test]
    fn a_damaged_key_file_is_an_error_naming_it_not_a_new_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        Keys::load_or_create(dir.path()).expect("keys");
        let path = dir.path().join("auth/private_key.pem");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let error = Keys::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(error.contains("private_key.pem"), "{error}");
        assert!(
            std::fs::read_to_string(&path)
                .expect("read")
                .contains("AAAA")
        );
    }

    #[test]
    fn token_lifetimes_are_bounded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = Keys::load_or_create(dir.path()).expect("keys");
        for ttl in [Duration::ZERO, MAX_TOKEN_TTL + Duration::from_secs(1)] {
            assert!(keys.mint(&Scope::Server, ttl, SystemTime::now()).is_err());
        }
    }
}
