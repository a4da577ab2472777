//! Request parsing and response building shared by the handlers.

use std::collections::HashMap;
use std::convert::Infallible;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use serde_json::Value;

use crate::status::ApiError;

/// Every response body devcluster sends: buffered JSON or a watch stream.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Decoded query parameters (the last value wins for repeated keys).
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 3)
            .filter(|_| bytes[i] == b'%')
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((key, value)) => (percent_decode(key), percent_decode(value)),
                None => (percent_decode(pair), String::new()),
            })
            .collect();
        Self(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A boolean parameter (`true` or `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON response with `code`.
pub fn json(code: u16, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    json_bytes(code, bytes)
}

pub fn json_bytes(code: u16, bytes: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(full(bytes));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A Kubernetes `Status` response for `error`.
pub fn error(error: &ApiError) -> Response<Body> {
    json(error.code, &error.to_status())
}

/// Parses a request body as JSON, Kubernetes protobuf (typed client-go clients), or YAML.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if crate::protobuf::is_protobuf(body) {
        return crate::protobuf::decode(body).map_err(|err| ApiError::bad_request(err.0));
    }
    serde_json::from_slice(body).or_else(|json_error| {
        serde_yaml::from_slice::<Value>(body).map_err(|_| {
            ApiError::bad_request(format!("the object provided is unrecognized: {json_error}"))
        })
    })
}

/// The `Status` a fault answers with for an HTTP code.
pub fn fault_error(code: u16) -> ApiError {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    ApiError::new(
        code,
        reason,
        format!("devcluster: injected fault ({code} {reason})"),
    )
}
