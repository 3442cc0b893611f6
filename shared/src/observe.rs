//! Observability: JSON logs through `tracing`, and CloudWatch metrics in Embedded Metric
//! Format (one JSON line on stdout that CloudWatch turns into metrics, no API call).

use std::collections::BTreeMap;

/// Starts JSON logging at the level in `RUST_LOG` (default `info`). Call once in `main`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "TencentChatBot";

/// One EMF record: dimensions and values, printed by [`Metrics::emit`].
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    dims: BTreeMap<String, String>,
    values: Vec<(String, f64, &'static str)>,
}

impl Metrics {
    /// A record for `function`, the first dimension of every metric.
    pub fn new(function: &str) -> Self {
        let mut m = Metrics::default();
        m.dims.insert("Function".into(), function.into());
        m
    }

    pub fn dim(mut self, name: &str, value: &str) -> Self {
        self.dims.insert(name.into(), value.into());
        self
    }

    /// A value with its CloudWatch unit (`Milliseconds`, `Count`, `Bytes`, …).
    pub fn value(mut self, name: &str, v: f64, unit: &'static str) -> Self {
        self.values.push((name.into(), v, unit));
        self
    }

    /// The EMF JSON line.
    pub fn to_json(&self) -> String {
        let mut root = serde_json::Map::new();
        for (k, v) in &self.dims {
            root.insert(k.clone(), v.clone().into());
        }
        for (k, v, _) in &self.values {
            root.insert(k.clone(), serde_json::json!(v));
        }
        let metrics: Vec<_> = self.values.iter().map(|(k, _, u)| serde_json::json!({"Name": k, "Unit": u})).collect();
        root.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": crate::store::now_ms(),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [self.dims.keys().collect::<Vec<_>>()],
                    "Metrics": metrics,
                }],
            }),
        );
        serde_json::Value::Object(root).to_string()
    }

    /// Prints the record on stdout, where Lambda's log capture finds it.
    pub fn emit(&self) {
        println!("{}", self.to_json());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_its_dimensions_and_metrics() {
        let line = Metrics::new("router").dim("Outcome", "queued").value("AckMs", 3.0, "Milliseconds").to_json();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        assert_eq!(v["Function"], "router");
        assert_eq!(v["AckMs"], 3.0);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0], serde_json::json!(["Function", "Outcome"]));
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "AckMs");
    }
}
