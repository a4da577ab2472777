//! The `/_devcluster/` admin endpoint: fault injection over HTTP (loopback only).

use std::time::Duration;

use ::http::{Method, Response};
use serde::Deserialize;
use serde_json::json;

use super::http::{self, Body};
use super::Server;
use crate::faults::RequestMatch;
use crate::status::ApiError;

/// `POST /_devcluster/faults/fail` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FailRequest {
    #[serde(flatten)]
    matcher: RequestMatch,
    #[serde(default = "one")]
    times: u32,
    code: u16,
}

/// `POST /_devcluster/faults/drop-response` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DropRequest {
    #[serde(flatten)]
    matcher: RequestMatch,
    #[serde(default = "one")]
    times: u32,
}

/// `POST /_devcluster/faults/latency` body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LatencyRequest {
    millis: u64,
}

fn one() -> u32 {
    1
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("invalid fault request: {err}")))
}

pub(crate) fn handle(server: &Server, method: &Method, path: &str, body: &[u8]) -> Response<Body> {
    let faults = &server.faults;
    if (method, path.trim_end_matches('/')) == (&Method::GET, "requests") {
        return http::json(200, &json!({ "requests": server.requests.snapshot() }));
    }
    let result = match (method, path.trim_end_matches('/')) {
        (&Method::GET, "health") => Ok(()),
        (&Method::POST, "faults/fail") => {
            parse::<FailRequest>(body).map(|r| faults.fail_next(r.matcher, r.times, r.code))
        }
        (&Method::POST, "faults/drop-response") => {
            parse::<DropRequest>(body).map(|r| faults.drop_response_next(r.matcher, r.times))
        }
        (&Method::POST, "faults/latency") => parse::<LatencyRequest>(body)
            .map(|r| faults.set_latency(Duration::from_millis(r.millis))),
        (&Method::POST, "faults/end-watches") => {
            faults.end_watches();
            Ok(())
        }
        (&Method::POST, "faults/expire-next-watch") => {
            faults.expire_next_watch();
            Ok(())
        }
        (&Method::POST, "faults/compact") => {
            faults.compact_history();
            Ok(())
        }
        (&Method::DELETE, "faults") => {
            faults.clear();
            Ok(())
        }
        _ => Err(ApiError::new(
            404,
            "NotFound",
            format!("unknown devcluster admin endpoint: {method} /_devcluster/{path}"),
        )),
    };
    match result {
        Ok(()) => http::json(200, &json!({ "ok": true })),
        Err(err) => http::error(&err),
    }
}
