//! Who is who: `GET /api/v1/clients/{id}` (a customer's address, display
//! name and tickets) and `GET /api/v1/agents` (the configured agents), so
//! a ticket's `client_3` and `agent_alice` can be shown as people.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::desk::summary::client_number;

/// One configured agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub email: String,
}

pub async fn get_client(
    State(st): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(|e| ApiError::invalid("path", e.body_text()))?;
    let unknown = || {
        ApiError::not_found(format!(
            "no client {:?} (ids look like client_7 or 7)",
            crate::text::truncate_chars(&crate::text::clean_line(&id), 40)
        ))
        .field("id")
    };
    let n = client_number(&id).ok_or_else(unknown)?;
    let desk = st.desk.clone();
    let found = tokio::task::spawn_blocking(move || desk.client(n))
        .await
        .map_err(|e| ApiError::internal(format!("the query failed: {e}")))??;
    let view = found.ok_or_else(unknown)?;
    Ok((StatusCode::OK, axum::Json(view)).into_response())
}

pub async fn list_agents(State(st): State<AppState>) -> Response {
    let agents: Vec<AgentView> = st
        .desk
        .config()
        .agents
        .iter()
        .map(|a| AgentView { id: a.id.clone(), name: a.name.clone(), email: a.email.clone() })
        .collect();
    (StatusCode::OK, axum::Json(super::wire::Entries { entries: agents })).into_response()
}
