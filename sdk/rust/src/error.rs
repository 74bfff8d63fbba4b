//! What a call can fail with.

use kubeportal_api::error::ErrorResponse;
use reqwest::StatusCode;
use serde::Deserialize;

/// An error from a kubeportal call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// kubeportal answered with its error envelope: `name` is `InputError`
    /// (400), `AuthenticationError` (401), `NotAllowedError` (403),
    /// `NotFoundError` (404), `ConflictError` (409) or a 5xx name such as
    /// `BadGatewayError`.
    #[error("{name} ({status}): {message}")]
    Portal {
        name: String,
        status: StatusCode,
        message: String,
    },
    /// The cluster answered an error to a streaming helper (`pod_logs`,
    /// `watch`, `fleet_watch`); `reason` is the Kubernetes `Status` reason,
    /// e.g. `NotFound`, or `Expired` (410) when a watch's position is gone.
    #[error("the cluster answered {status}: {message}")]
    Cluster {
        status: StatusCode,
        reason: Option<String>,
        message: String,
    },
    /// A non-2xx answer that is neither the portal's envelope nor a
    /// Kubernetes `Status` (e.g. from a reverse proxy in front of kubeportal).
    #[error("unexpected answer {status}: {body}")]
    UnexpectedResponse { status: StatusCode, body: String },
    /// The request could not be sent or the answer not read.
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// A 2xx answer whose body is not what the API promises.
    #[error("invalid response body: {0}")]
    Decode(#[from] serde_json::Error),
    /// The base URL given to the client is not an absolute http(s) URL.
    #[error("invalid base URL: {0}")]
    BaseUrl(String),
}

impl Error {
    /// The HTTP status, for errors that came with one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Portal { status, .. }
            | Error::Cluster { status, .. }
            | Error::UnexpectedResponse { status, .. } => Some(*status),
            Error::Transport(error) => error.status(),
            Error::Decode(_) | Error::BaseUrl(_) => None,
        }
    }

    /// The portal error name (`NotFoundError`, …) for [`Error::Portal`].
    pub fn portal_name(&self) -> Option<&str> {
        match self {
            Error::Portal { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// The parts of a Kubernetes `Status` an error needs, as a cluster answers
/// it: unlike kubeportal's own (`kubeportal_api::error::KubernetesStatus`),
/// a cluster's may leave out its message and reason.
#[derive(Debug, Deserialize)]
struct KubernetesStatus {
    kind: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// The portal error a body carries, if it is Backstage's error envelope, as
/// kubeportal answers errors (the HTTP status is what is reported).
pub(crate) fn portal_error(status: StatusCode, body: &[u8]) -> Option<Error> {
    let envelope: ErrorResponse = serde_json::from_slice(body).ok()?;
    Some(Error::Portal {
        name: envelope.error.name,
        status,
        message: envelope.error.message,
    })
}

/// The error for any non-2xx body: the envelope, else a `Status`, else the text.
pub(crate) fn error_from_body(status: StatusCode, body: &[u8]) -> Error {
    if let Some(error) = portal_error(status, body) {
        return error;
    }
    if let Ok(kubernetes) = serde_json::from_slice::<KubernetesStatus>(body) {
        if kubernetes.kind == "Status" {
            return Error::Cluster {
                status,
                reason: kubernetes.reason.filter(|reason| !reason.is_empty()),
                message: kubernetes
                    .message
                    .unwrap_or_else(|| format!("the cluster answered {status}")),
            };
        }
    }
    let text = String::from_utf8_lossy(body);
    Error::UnexpectedResponse {
        status,
        body: text.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_becomes_a_portal_error() {
        let body = br#"{"error":{"name":"NotFoundError","message":"no such cluster"},"request":{"method":"GET","url":"/x"},"response":{"statusCode":404}}"#;
        let error = error_from_body(StatusCode::NOT_FOUND, body);
        assert_eq!(error.portal_name(), Some("NotFoundError"));
        assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
        assert_eq!(
            error.to_string(),
            "NotFoundError (404 Not Found): no such cluster"
        );
    }

    #[test]
    fn a_kubernetes_status_becomes_a_cluster_error() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"x\" not found","reason":"NotFound","code":404}"#;
        match error_from_body(StatusCode::NOT_FOUND, body) {
            Error::Cluster {
                reason, message, ..
            } => {
                assert_eq!(reason.as_deref(), Some("NotFound"));
                assert_eq!(message, "pods \"x\" not found");
            }
            other => panic!("expected a cluster error, got {other:?}"),
        }
        assert!(portal_error(StatusCode::NOT_FOUND, body).is_none());
    }

    #[test]
    fn anything_else_is_unexpected() {
        let error = error_from_body(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert!(matches!(error, Error::UnexpectedResponse { .. }));
        assert_eq!(error.status(), Some(StatusCode::BAD_GATEWAY));
    }
}
