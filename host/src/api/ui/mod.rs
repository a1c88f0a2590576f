//! The web UI: server-rendered pages (maud) over the same state, identities
//! and rights as the `/v1` API, served by `capstan serve` and
//! `capstan controller --listen` under `/ui`.
//!
//! | path | what |
//! |------|------|
//! | `GET /ui/login`, `POST /ui/login`, `POST /ui/logout` | sessions ([`session`]) |
//! | `GET /ui/runs` (`/ui/runs.json`) | runs by page and filter, live |
//! | `GET /ui/runs/{id}` (`/state.json`) | a run: the DAG, tasks, attempts, params, results, plugins |
//! | `POST /ui/runs/{id}/{cancel,stop,rerun,rerun-failed}` | actions |
//! | `GET /ui/runs/{id}/logs?task=&attempt=` (`/logs/stream`, `/logs.txt`) | logs, live (server-sent events), downloaded |
//! | `GET /ui/approvals`, `POST /ui/runs/{id}/tasks/{task}/decide` | the approval inbox |
//! | `GET /ui/registry`, `/ui/registry/{name}` | plugins, versions, signatures, policy |
//! | `GET /ui/repos` | forge repositories and their deliveries |
//!
//! Nothing is loaded from elsewhere: one stylesheet and one script are
//! compiled in and served under `/ui/assets/` with their digest in the URL.
//! Every page is sent with a strict Content-Security-Policy (no inline
//! script or style, nothing from other origins, no framing), and the script
//! builds the DOM with `textContent` only (Trusted Types enforced), so text
//! from plugins, repositories or people can never become markup.

pub mod dag;
mod layout;
mod logs;
mod pages;
mod registry;
mod run;
mod runs;
pub mod session;

use std::sync::Arc;

use axum::Form;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{ApiError, ApiState};
pub use session::{Sessions, Viewer};

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The Content-Security-Policy of every `/ui` response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
     require-trusted-types-for 'script'; trusted-types 'none'";

/// An asset's URL, with its digest so a new binary's is never stale.
fn asset_url(name: &str) -> String {
    static DIGESTS: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
        use sha2::Digest as _;
        let short = |s: &str| hex::encode(&sha2::Sha256::digest(s.as_bytes())[..8]);
        (short(APP_JS), short(APP_CSS))
    });
    let v = if name.ends_with(".js") {
        &DIGESTS.0
    } else {
        &DIGESTS.1
    };
    format!("/ui/assets/{name}?v={v}")
}

/// The UI's routes (merged into the API's router).
pub fn router(_state: Arc<ApiState>) -> axum::Router<Arc<ApiState>> {
    axum::Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/assets/app.js", get(app_js))
        .route("/ui/assets/app.css", get(app_css))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/runs", get(runs::page))
        .route("/ui/runs.json", get(runs::json))
        .route("/ui/runs/{id}", get(run::page))
        .route("/ui/runs/{id}/state.json", get(run::state))
        .route("/ui/runs/{id}/{action}", post(run::act))
        .route("/ui/runs/{id}/logs", get(logs::page))
        .route("/ui/runs/{id}/logs/stream", get(logs::stream))
        .route("/ui/runs/{id}/logs.txt", get(logs::download))
        .route("/ui/runs/{id}/tasks/{task}/decide", post(pages::decide))
        .route("/ui/approvals", get(pages::approvals))
        .route("/ui/registry", get(registry::list))
        .route("/ui/registry/{name}", get(registry::plugin))
        .route("/ui/repos", get(pages::repos))
        .layer(axum::middleware::from_fn(headers))
}

/// The security headers of every UI response. The referrer policy is
/// `same-origin`, not `no-referrer`: under `no-referrer` Chromium sends
/// `Origin: null` with the UI's own forms, and the Origin check (CSRF)
/// would refuse them.
async fn headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

/// A page's signed-in person: without a live session the browser is sent
/// to the sign-in form.
impl axum::extract::FromRequestParts<Arc<ApiState>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<ApiState>,
    ) -> Result<Viewer, Response> {
        (state.ui.viewer(&state.auth, &parts.headers).await)
            .ok_or_else(|| Redirect::to("/ui/login").into_response())
    }
}

/// The signed-in person of a script's request (JSON, an event stream):
/// 401 without a live session.
pub(crate) struct Signed(pub Viewer);

impl axum::extract::FromRequestParts<Arc<ApiState>> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<ApiState>,
    ) -> Result<Signed, ApiError> {
        (state.ui.viewer(&state.auth, &parts.headers).await)
            .map(Signed)
            .ok_or_else(|| ApiError::unauthorized("signed out"))
    }
}

/// An error as a page, with its status.
pub(crate) fn error_page(viewer: Option<&Viewer>, e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let title = status.canonical_reason().unwrap_or("Error");
    let body = maud::html! {
        h1 { (title) }
        p.error role="alert" { (layout::text(&e.message)) }
        p { a href="/ui/runs" { "Back to the runs" } }
    };
    (status, layout::page(title, viewer, layout::Nav::None, body)).into_response()
}

#[derive(Deserialize)]
struct LoginQuery {
    code: Option<String>,
}

/// `GET /ui/login`: the form; with a one-time link's code, a button that
/// posts it (a GET changes nothing: link previews and prefetches cannot
/// use the code up).
async fn login_page(axum::extract::Query(q): axum::extract::Query<LoginQuery>) -> Response {
    match q.code {
        Some(code) => pages::code_form(&code).into_response(),
        None => pages::login_form(None).into_response(),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    /// A one-time sign-in link's code (`capstan serve --sign-in-link`).
    #[serde(default)]
    code: String,
}

async fn login(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(e) = session::same_origin(&headers) {
        return error_page(None, e);
    }
    if !form.code.is_empty() {
        return match state.ui.redeem(&form.code) {
            Ok(cookie) => {
                ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/runs")).into_response()
            }
            Err(e) => (
                StatusCode::UNAUTHORIZED,
                pages::login_form(Some(&e.message)),
            )
                .into_response(),
        };
    }
    let token = form.token.trim();
    let who = match state.auth.identify(token).await {
        Ok(who) => who,
        Err(e) if e.status == 401 => {
            let msg = format!("Not signed in: {}.", e.message);
            return (StatusCode::UNAUTHORIZED, pages::login_form(Some(&msg))).into_response();
        }
        Err(e) => return error_page(None, e),
    };
    tracing::info!(user = %who.user, "ui: signed in");
    match state.ui.start(who, token) {
        Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/runs")).into_response(),
        Err(e) => error_page(None, e),
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

async fn logout(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(v) = state.ui.viewer(&state.auth, &headers).await
        && let Err(e) = session::check_csrf(&v, &headers, &form.csrf)
    {
        return error_page(Some(&v), e);
    }
    let cookie = state.ui.end(&headers);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response()
}
