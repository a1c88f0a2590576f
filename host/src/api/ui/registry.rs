//! The registry in the browser: its plugins, and each plugin's versions
//! with what the component declares, its signatures and trusted signer,
//! yanked and deprecated marks, and the platform policy's verdicts.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout::{self, Nav, text};
use super::{Viewer, error_page};
use crate::api::{ApiError, ApiState, catalog};

/// `GET /ui/registry`.
pub(super) async fn list(State(state): State<Arc<ApiState>>, v: Viewer) -> Response {
    let sched = state.sched.clone();
    let rows = match tokio::task::spawn_blocking(move || catalog::plugins(&sched)).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => return error_page(Some(&v), ApiError::internal(format!("{e:#}"))),
        Err(e) => return error_page(Some(&v), ApiError::internal(e)),
    };
    let body = html! {
        h1 { "Registry" }
        p { "Location: " code { (text(&state.sched.registry.location())) } }
        @if rows.is_empty() { p.empty { "No plugin is published." } } @else {
            table.registry {
                thead { tr { th scope="col" { "Plugin" } th scope="col" { "Latest" } th scope="col" { "Versions" } th scope="col" { "Description" } } }
                tbody {
                    @for r in &rows {
                        tr {
                            th scope="row" { a href={ "/ui/registry/" (r.name) } { (r.name) } }
                            td { @if let Some(l) = &r.latest { (l) } @else { "all yanked" } }
                            td { (r.versions) }
                            td { (text(&r.description)) }
                        }
                    }
                }
            }
        }
    };
    layout::page("Registry", Some(&v), Nav::Registry, body).into_response()
}

/// `GET /ui/registry/{name}`.
pub(super) async fn plugin(
    State(state): State<Arc<ApiState>>,
    v: Viewer,
    Path(name): Path<String>,
) -> Response {
    let versions = match crate::api::plugin_versions(&state, name.clone()).await {
        Ok(x) => x,
        Err(e) => return error_page(Some(&v), e),
    };
    let body = html! {
        h1 { "Plugin " (name) }
        p { a href="/ui/registry" { "All plugins" } }
        @for e in versions.iter().rev() {
            section.version #{ "v" (e.version) } {
                h2 { (e.version)
                    @if e.yanked { " " span.tag.warn { "yanked" } }
                    @if e.deprecated.is_some() { " " span.tag.warn { "deprecated" } }
                    @if e.refused.is_some() || e.not_admitted.is_some() { " " span.tag.bad { "refused" } }
                }
                @if let Some(d) = &e.deprecated { p { "Deprecated: " (text(d)) } }
                @if let Some(r) = &e.refused { p.error { "Resolution refuses this component: " (text(r)) } }
                @if let Some(r) = &e.not_admitted { p.error { "The platform policy does not admit it: " (text(r)) } }
                dl.summary {
                    dt { "Description" } dd { (text(&e.description)) }
                    dt { "World" } dd { (text(&e.world)) }
                    dt { "Digest" } dd { code.digest { (e.digest) } }
                    dt { "Size" } dd { (e.size) " bytes" }
                    dt { "Published" } dd { (text(&e.published_at)) }
                    dt { "Signed by" } dd {
                        @if let Some(s) = &e.signer { "trusted key " code { (text(s)) } }
                        @else if let Some(u) = &e.unsigned { span.bad { (text(u)) } }
                        @else { "no trusted signature (the policy requires none)" }
                    }
                    dt { "Signatures" } dd {
                        @if e.signatures.is_empty() { "none" }
                        @for s in &e.signatures { code { (text(&s.key_id)) } " " }
                    }
                }
                h3 { "Capabilities it declares" }
                @if e.capabilities.is_empty() { p { "None: it can only compute on its inputs." } } @else {
                    table {
                        thead { tr { th scope="col" { "Capability" } th scope="col" { "Platform policy" } } }
                        tbody {
                            @for c in &e.capabilities {
                                tr {
                                    td { code { (c.name) } }
                                    td { @if let Some(why) = &c.denied { span.bad { "denied: " (text(why)) } } @else { "allowed" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(&format!("Plugin {name}"), Some(&v), Nav::Registry, body).into_response()
}
