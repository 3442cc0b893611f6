//! The Lambda adapters: how each kind of invocation reaches the code, in one place. Every
//! function's `main` is one of these around the service it builds:
//!
//! - [`serve_http`]: API Gateway HTTP API requests (the webhook, `/nim`, `/usersig`,
//!   `/threads`), answered with [`json_response`]; [`request_id`] names the invocation;
//! - [`serve_sqs`]: SQS batches, FIFO or standard, answered with the failed items
//!   ([`batch_response`], `ReportBatchItemFailures`); the handler gets the Lambda deadline;
//! - [`serve_invoke`]: synchronous invocations, JSON in and JSON out (the before-send
//!   moderation functions, invoked by the router).
//!
//! Errors from these runners are the runtime's own (it could not reach the Runtime API): the
//! handlers answer every input themselves, bad input included.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_http::{Body, Request, Response};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use std::future::Future;

/// The error a function's `main` returns.
pub type Error = lambda_runtime::Error;

/// Serves HTTP requests with `handler` until the runtime stops.
pub async fn serve_http<F, Fut>(handler: F) -> Result<(), Error>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, lambda_http::Error>> + Send,
{
    lambda_http::run(lambda_http::service_fn(handler)).await
}

/// Serves SQS batches with `handler`, which gets the batch and the invocation's deadline (unix
/// milliseconds, as the context gives it) and answers the items that failed.
pub async fn serve_sqs<F, Fut>(handler: F) -> Result<(), Error>
where
    F: Fn(SqsEvent, u64) -> Fut,
    Fut: Future<Output = SqsBatchResponse> + Send,
{
    lambda_runtime::run(lambda_runtime::service_fn(|ev: LambdaEvent<SqsEvent>| {
        let answered = handler(ev.payload, ev.context.deadline);
        async move { Ok::<_, Error>(answered.await) }
    }))
    .await
}

/// Serves synchronous invocations with `handler`: the payload as JSON, its answer as JSON.
pub async fn serve_invoke<F, Fut, T>(handler: F) -> Result<(), Error>
where
    F: Fn(serde_json::Value) -> Fut,
    Fut: Future<Output = T> + Send,
    T: Serialize,
{
    lambda_runtime::run(lambda_runtime::service_fn(|ev: LambdaEvent<serde_json::Value>| {
        let answered = handler(ev.payload);
        async move { Ok::<_, Error>(answered.await) }
    }))
    .await
}

/// A JSON response with `status`.
pub fn json_response(status: u16, body: String) -> Result<Response<Body>, lambda_http::Error> {
    Ok(Response::builder().status(status).header("content-type", "application/json").body(Body::Text(body))?)
}

/// The invocation's request id (empty outside Lambda, as in tests that build requests).
pub fn request_id(req: &Request) -> String {
    use lambda_http::RequestExt;
    req.lambda_context_ref().map(|c| c.request_id.clone()).unwrap_or_default()
}

/// The answer to an SQS batch whose items `failed` (by message id) are to be delivered again.
pub fn batch_response(failed: impl IntoIterator<Item = String>) -> SqsBatchResponse {
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_response_names_each_failed_item() {
        let r = batch_response(["a".to_owned(), "b".to_owned()]);
        let ids: Vec<&str> = r.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(batch_response(Vec::new()).batch_item_failures.is_empty());
    }

    #[test]
    fn a_json_response_says_it_is_json() {
        let r = json_response(401, "{\"error\":\"no\"}".into()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        assert!(matches!(r.body(), Body::Text(t) if t == "{\"error\":\"no\"}"));
    }
}
