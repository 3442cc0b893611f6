//! Error text that is safe to log and to send back: what went wrong and where, never the input
//! that caused it. serde_json's own text quotes the offending value (`invalid type: string
//! "…", expected u64`), and that value may be a user's message or a secret.

use serde_json::error::Category;
use std::fmt;

/// A JSON error reduced to its category and position, so that its text carries no input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    pub category: Category,
    /// 1-based; 0 when the error came from a `serde_json::Value`, which has no positions.
    pub line: usize,
    pub column: usize,
}

impl From<&serde_json::Error> for JsonError {
    fn from(e: &serde_json::Error) -> Self {
        JsonError { category: e.classify(), line: e.line(), column: e.column() }
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> Self {
        JsonError::from(&e)
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.category {
            Category::Io => "read error",
            Category::Syntax => "invalid JSON",
            Category::Data => "wrong type or value",
            Category::Eof => "unexpected end of input",
        };
        match self.line {
            0 => f.write_str(what),
            line => write!(f, "{what} at line {line}, column {}", self.column),
        }
    }
}

impl std::error::Error for JsonError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of<T: serde::de::DeserializeOwned + fmt::Debug>(json: &str) -> String {
        serde_json::from_str::<T>(json).err().map(|e| JsonError::from(e).to_string()).unwrap_or_default()
    }

    #[test]
    fn when_json_is_wrong_should_give_category_and_position_only() {
        assert_eq!(text_of::<u64>(r#""hunter2""#), "wrong type or value at line 1, column 9");
        assert_eq!(text_of::<Vec<u64>>("[1,\n 2 x"), "invalid JSON at line 2, column 4");
        assert_eq!(text_of::<Vec<String>>(r#"["hunter2""#), "unexpected end of input at line 1, column 10");
        let from_value = serde_json::from_value::<u64>(serde_json::json!("hunter2")).err().map(JsonError::from);
        assert_eq!(from_value.map(|e| e.to_string()).as_deref(), Some("wrong type or value"));
    }
}
