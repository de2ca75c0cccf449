//! The dashboard's HTTP side: the page, its JSON API and the live feed.
//!
//! - `GET /`: the page (self-contained: no script, style or font from elsewhere).
//! - `GET /api/services`: every service with instance counts and leaders.
//! - `GET /api/services/{name}`: one service's instances, leaders and per-endpoint counters.
//! - `GET /api/events`: Server-Sent Events: `snapshot` (everything, at most every
//!   [`SNAPSHOT_EVERY`]) and `event` (one line of the event log, as it happens).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aegis_runtime::subject::ServiceName;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::live::Live;
use super::stats;

/// The page.
const PAGE: &str = include_str!("page.html");
/// The shortest time between two snapshots to one page: heartbeats of many instances
/// become one update.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);

/// What every handler needs.
#[derive(Clone)]
struct Shared {
    nats: async_nats::Client,
    live: Arc<Live>,
}

/// The routes.
pub(super) fn router(nats: async_nats::Client, live: Arc<Live>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/services", get(services))
        .route("/api/services/{name}", get(service))
        .route("/api/events", get(events))
        .with_state(Shared { nats, live })
}

async fn page() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
}

async fn services(State(shared): State<Shared>) -> Json<serde_json::Value> {
    let snapshot = shared.live.snapshot();
    let services: Vec<_> = snapshot
        .services
        .iter()
        .map(|service| {
            let mut versions: Vec<&str> = service
                .instances
                .iter()
                .map(|i| i.version.as_str())
                .collect();
            versions.sort_unstable();
            versions.dedup();
            json!({
                "name": service.name,
                "instances": service.instances.len(),
                "stale_instances": service.instances.iter().filter(|i| i.stale).count(),
                "versions": versions,
                "leaders": service.leaders,
            })
        })
        .collect();
    Json(json!({ "now": snapshot.now, "services": services }))
}

async fn service(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    let not_found = |message: String| {
        (StatusCode::NOT_FOUND, Json(json!({ "error": message }))).into_response()
    };
    let Ok(parsed) = ServiceName::new(name.as_str()) else {
        return not_found(format!("{name:?} is not a valid service name"));
    };
    let Some(view) = shared.live.service(&name) else {
        return not_found(format!("no instance of {name} is registered"));
    };
    // A stale instance is gone: asking it would only wait out the timeout.
    let asked = view
        .instances
        .iter()
        .filter(|i| !i.stale)
        .map(|i| i.instance_id.clone());
    let endpoints = stats::gather(&shared.nats, &parsed, asked).await;
    Json(json!({
        "name": view.name,
        "instances": view.instances,
        "leaders": view.leaders,
        "endpoints": endpoints,
    }))
    .into_response()
}

async fn events(
    State(shared): State<Shared>,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    /// Where one page's feed is.
    struct Feed {
        live: Arc<Live>,
        changes: tokio::sync::watch::Receiver<u64>,
        events: tokio::sync::broadcast::Receiver<super::live::Event>,
        first: bool,
    }
    let feed = Feed {
        changes: shared.live.changes(),
        events: shared.live.events(),
        live: shared.live,
        first: true,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        if !feed.first {
            tokio::select! {
                event = feed.events.recv() => match event {
                    Ok(event) => return Some((Ok(json_event("event", &event)), feed)),
                    // Too slow a page missed events: the snapshot below has the log.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                },
                changed = feed.changes.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    tokio::time::sleep(SNAPSHOT_EVERY).await;
                }
            }
        }
        feed.first = false;
        feed.changes.mark_unchanged();
        let snapshot = feed.live.snapshot();
        Some((Ok(json_event("snapshot", &snapshot)), feed))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn json_event(name: &str, value: &impl serde::Serialize) -> sse::Event {
    sse::Event::default()
        .event(name)
        .data(serde_json::to_string(value).unwrap_or_default())
}
