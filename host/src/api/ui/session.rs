//! Browser sessions of the web UI, made from an API token.
//!
//! - **Sign-in** takes a token the API accepts (a `capstan token add` token
//!   locally, a Kubernetes bearer token in the cluster), checks it as the
//!   API does ([`Auth::identify`]), and keeps a session in memory: the
//!   identity, the token (re-checked every minute, so a revoked token or a
//!   deleted ServiceAccount ends the session), a CSRF token and an expiry.
//!   Only the SHA-256 of the session id is kept, so the table itself holds
//!   nothing a cookie could be made from.
//! - **Cookie**: `HttpOnly`, `SameSite=Strict`, `Path=/ui`; with an https
//!   public URL also `Secure` and the `__Host-` name prefix (then `Path=/`,
//!   as the prefix requires). Cookies count under `/ui` only: `/v1` stays
//!   bearer-only, so a cookie can never act on the API.
//! - **CSRF**: every state-changing form carries the session's CSRF token,
//!   compared in constant time; requests whose `Sec-Fetch-Site` says
//!   cross-site, or whose `Origin` is not this server's, are refused first
//!   (the sign-in form too, so nobody can sign a victim in as themselves).
//! - Sessions live in this process: a restart or (in Kubernetes) a new
//!   leader asks people to sign in again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::api::{ApiError, Auth, Identity};

/// How long a session lasts from sign-in.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How often a session's token is checked again.
const RECHECK: Duration = Duration::from_secs(60);
/// At most this many sessions at once: past it, the oldest session goes.
const MAX_SESSIONS: usize = 10_000;
/// At most this many sessions per user: past it, that user's oldest goes
/// (one identity signing in in a loop cannot push everyone else out).
const MAX_PER_USER: usize = 32;
/// At most this many live log streams per user at once (each holds a
/// connection and reads the store four times a second).
pub const MAX_STREAMS_PER_USER: usize = 16;

struct Session {
    who: Identity,
    started: Instant,
    /// None: signed in with a one-time link of this process (nothing to
    /// check again; it lasts while this process runs).
    token: Option<SecretString>,
    csrf: String,
    expires: Instant,
    checked: Instant,
}

/// The signed-in person of a request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub who: Identity,
    /// The token every form of this session must send back.
    pub csrf: String,
}

pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    /// One-time sign-in codes (`capstan serve --sign-in-link`), by digest.
    codes: Mutex<HashMap<[u8; 32], (Identity, Instant)>>,
    /// Live log streams per user.
    streams: std::sync::Arc<Mutex<HashMap<String, usize>>>,
    secure: bool,
}

/// A live log stream counted against its user until dropped.
pub struct StreamSlot {
    streams: std::sync::Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut m = self.streams.lock().unwrap();
        if let Some(n) = m.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

/// How long a one-time sign-in link stays valid.
const CODE_LIFETIME: Duration = Duration::from_secs(600);

fn random_hex() -> Result<String, ApiError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| ApiError::internal(format!("random: {e}")))?;
    Ok(hex::encode(raw))
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// `secure`: the UI is reached over https (the public URL's scheme).
    pub fn new(secure: bool) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            streams: Default::default(),
            secure,
        }
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-capstan-session"
        } else {
            "capstan-session"
        }
    }

    fn cookie(&self, value: String, max_age: Duration) -> String {
        let mut c = cookie::Cookie::build((self.cookie_name(), value))
            .http_only(true)
            .same_site(cookie::SameSite::Strict)
            .path(if self.secure { "/" } else { "/ui" })
            .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64));
        if self.secure {
            c = c.secure(true);
        }
        c.build().to_string()
    }

    /// Start a session for `who` signed in with `token`: the `Set-Cookie`
    /// value.
    pub fn start(&self, who: Identity, token: &str) -> Result<String, ApiError> {
        self.open(who, Some(SecretString::from(token.to_string())))
    }

    /// A slot for one more live log stream of `user`, unless the user has
    /// [`MAX_STREAMS_PER_USER`] open.
    pub fn stream_slot(&self, user: &str) -> Option<StreamSlot> {
        let mut m = self.streams.lock().unwrap();
        let n = m.entry(user.to_string()).or_insert(0);
        if *n >= MAX_STREAMS_PER_USER {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            streams: self.streams.clone(),
            user: user.to_string(),
        })
    }

    /// A one-time sign-in code for `who`, valid for ten minutes: the person
    /// at the server's terminal opens `/ui/login?code=CODE`.
    pub fn sign_in_code(&self, who: Identity) -> Result<String, ApiError> {
        let code = random_hex()?;
        let mut codes = self.codes.lock().unwrap();
        codes.retain(|_, (_, until)| *until > Instant::now());
        codes.insert(key(&code), (who, Instant::now() + CODE_LIFETIME));
        Ok(code)
    }

    /// Use a one-time code: the `Set-Cookie` value of the new session.
    pub fn redeem(&self, code: &str) -> Result<String, ApiError> {
        let found = self.codes.lock().unwrap().remove(&key(code));
        match found {
            Some((who, until)) if until > Instant::now() => self.open(who, None),
            _ => Err(ApiError::unauthorized(
                "this sign-in link was used already or has expired",
            )),
        }
    }

    fn open(&self, who: Identity, token: Option<SecretString>) -> Result<String, ApiError> {
        let id = random_hex()?;
        let now = Instant::now();
        let session = Session {
            who,
            started: now,
            token,
            csrf: random_hex()?,
            expires: now + LIFETIME,
            checked: now,
        };
        let mut map = self.map.lock().unwrap();
        let oldest = |map: &HashMap<[u8; 32], Session>, user: Option<&str>| {
            map.iter()
                .filter(|(_, s)| user.is_none_or(|u| s.who.user == u))
                .min_by_key(|(_, s)| s.started)
                .map(|(k, _)| *k)
        };
        if map
            .iter()
            .filter(|(_, s)| s.who.user == session.who.user)
            .count()
            >= MAX_PER_USER
            && let Some(k) = oldest(&map, Some(&session.who.user))
        {
            map.remove(&k);
        }
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS
                && let Some(k) = oldest(&map, None)
            {
                map.remove(&k);
            }
        }
        map.insert(key(&id), session);
        Ok(self.cookie(id, LIFETIME))
    }

    /// End the request's session: the `Set-Cookie` value that clears it.
    pub fn end(&self, headers: &HeaderMap) -> String {
        if let Some(id) = self.id_of(headers) {
            self.map.lock().unwrap().remove(&key(&id));
        }
        self.cookie(String::new(), Duration::ZERO)
    }

    fn id_of(&self, headers: &HeaderMap) -> Option<String> {
        let name = self.cookie_name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == name)
            .map(|c| c.value().to_string())
    }

    /// The signed-in person, if the request carries a live session. The
    /// token is checked again when the last check is over a minute old.
    pub async fn viewer(&self, auth: &Auth, headers: &HeaderMap) -> Option<Viewer> {
        let k = key(&self.id_of(headers)?);
        let token = {
            let mut map = self.map.lock().unwrap();
            let s = map.get(&k)?;
            if s.expires <= Instant::now() {
                map.remove(&k);
                return None;
            }
            match &s.token {
                Some(t) if s.checked.elapsed() >= RECHECK => t.clone(),
                _ => {
                    return Some(Viewer {
                        who: s.who.clone(),
                        csrf: s.csrf.clone(),
                    });
                }
            }
        };
        match auth.identify(token.expose_secret()).await {
            Ok(who) => {
                let mut map = self.map.lock().unwrap();
                let s = map.get_mut(&k)?;
                s.who = who;
                s.checked = Instant::now();
                Some(Viewer {
                    who: s.who.clone(),
                    csrf: s.csrf.clone(),
                })
            }
            // Refused: the session ends. Any other failure (the cluster's
            // TokenReview unreachable) refuses this request only.
            Err(e) if e.status == 401 => {
                tracing::info!("ui: a session's token is no longer accepted: {}", e.message);
                self.map.lock().unwrap().remove(&k);
                None
            }
            Err(e) => {
                tracing::warn!("ui: a session's token could not be checked: {}", e.message);
                None
            }
        }
    }
}

/// Refuse a state-changing request another site could have made: a
/// cross-site `Sec-Fetch-Site`, or an `Origin` that is not this server's
/// (`Host`). Browsers send at least one of them on every POST.
pub fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Err(ApiError::forbidden(format!(
            "refused: a {site} request (the UI accepts forms from its own pages only)"
        )));
    }
    if let Some(origin) = get("origin") {
        let host = get("host").unwrap_or_default();
        let theirs = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or(origin);
        if host.is_empty() || theirs != host {
            return Err(ApiError::forbidden(format!(
                "refused: a request from origin `{}` (the UI accepts forms from its own pages only)",
                crate::escape::for_terminal(origin)
            )));
        }
    }
    Ok(())
}

/// Check a form's CSRF token against the session's, in constant time.
pub fn check_csrf(viewer: &Viewer, headers: &HeaderMap, sent: &str) -> Result<(), ApiError> {
    same_origin(headers)?;
    if bool::from(sent.as_bytes().ct_eq(viewer.csrf.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "refused: the form's CSRF token is missing or stale (reload the page)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_strict_and_http_only_and_host_prefixed_over_https() {
        let plain = Sessions::new(false);
        let c = plain.cookie("abc".into(), LIFETIME);
        assert!(c.starts_with("capstan-session=abc"), "{c}");
        for part in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(!c.contains("Secure"), "{c}");
        let tls = Sessions::new(true);
        let c = tls.cookie("abc".into(), LIFETIME);
        assert!(c.starts_with("__Host-capstan-session=abc"), "{c}");
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
    }

    #[test]
    fn foreign_origins_and_cross_site_requests_are_refused() {
        let ok = headers(&[
            ("host", "ci.example:8080"),
            ("origin", "http://ci.example:8080"),
        ]);
        assert!(same_origin(&ok).is_ok());
        for bad in [
            headers(&[
                ("host", "ci.example:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[("host", "ci.example:8080"), ("origin", "null")]),
            headers(&[("host", "ci.example"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "ci.example"), ("sec-fetch-site", "same-site")]),
        ] {
            assert_eq!(same_origin(&bad).unwrap_err().status, 403);
        }
    }

    #[tokio::test]
    async fn sessions_end_when_their_token_is_no_longer_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::api::auth::TokenFile::path(dir.path());
        let token = crate::api::auth::TokenFile::add(&path, "alice", &[]).unwrap();
        let auth = Auth::Tokens(path.clone());
        let sessions = Sessions::new(false);
        let who = auth.identify(&token).await.unwrap();
        let set = sessions.start(who, &token).unwrap();
        let value = set.split(';').next().unwrap().to_string();
        let h = headers(&[("cookie", &value)]);
        assert_eq!(sessions.viewer(&auth, &h).await.unwrap().who.user, "alice");
        // Revoke every token, and make the last check old.
        std::fs::write(&path, "").unwrap();
        for s in sessions.map.lock().unwrap().values_mut() {
            s.checked = Instant::now() - RECHECK * 2;
        }
        assert!(sessions.viewer(&auth, &h).await.is_none());
        assert!(sessions.map.lock().unwrap().is_empty());
        // A one-time code works once.
        let code = sessions
            .sign_in_code(Identity {
                user: "local".into(),
                groups: vec![],
            })
            .unwrap();
        assert!(sessions.redeem(&code).is_ok());
        assert_eq!(sessions.redeem(&code).unwrap_err().status, 401);
        // One user's sign-ins in a loop replace that user's oldest sessions.
        let bob = Identity {
            user: "bob".into(),
            groups: vec![],
        };
        for _ in 0..MAX_PER_USER * 2 {
            sessions.start(bob.clone(), "t").unwrap();
        }
        let bobs = (sessions.map.lock().unwrap().values())
            .filter(|s| s.who.user == "bob")
            .count();
        assert_eq!(bobs, MAX_PER_USER);
        // Log streams per user are bounded, and a closed one frees its slot.
        let slots: Vec<_> = (0..MAX_STREAMS_PER_USER)
            .map(|_| sessions.stream_slot("bob").unwrap())
            .collect();
        assert!(sessions.stream_slot("bob").is_none());
        assert!(sessions.stream_slot("alice").is_some());
        drop(slots);
        assert!(sessions.stream_slot("bob").is_some());
        // A made-up session id is nobody.
        let h = headers(&[("cookie", "capstan-session=00")]);
        assert!(sessions.viewer(&auth, &h).await.is_none());
    }
}
