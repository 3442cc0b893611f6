//! The synchronous-invoke port: the router calls a before-send function and waits for its
//! verdict (Lambda's Invoke API in AWS, cargo-lambda's locally).

use async_trait::async_trait;

/// A failed synchronous invocation.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invoking {function} failed: {reason}")]
pub struct InvokeError {
    pub function: String,
    pub reason: String,
}

/// The port.
#[async_trait]
pub trait Invoker: Send + Sync {
    /// Invokes `function` with a JSON payload and returns its JSON result.
    async fn invoke(&self, function: &str, payload: &[u8]) -> Result<Vec<u8>, InvokeError>;
}

/// The AWS Lambda adapter (`InvocationType: RequestResponse`).
#[derive(Clone, Debug)]
pub struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
}

impl LambdaInvoker {
    pub fn new(client: aws_sdk_lambda::Client) -> Self {
        LambdaInvoker { client }
    }
}

#[async_trait]
impl Invoker for LambdaInvoker {
    async fn invoke(&self, function: &str, payload: &[u8]) -> Result<Vec<u8>, InvokeError> {
        let fail = |reason: String| InvokeError { function: function.to_owned(), reason };
        let out = self
            .client
            .invoke()
            .function_name(function)
            .payload(aws_sdk_lambda::primitives::Blob::new(payload))
            .send()
            .await
            .map_err(|e| fail(aws_sdk_lambda::error::DisplayErrorContext(e).to_string()))?;
        if let Some(err) = out.function_error() {
            return Err(fail(format!("function error {err}")));
        }
        Ok(out.payload.map(|b| b.into_inner()).unwrap_or_default())
    }
}
