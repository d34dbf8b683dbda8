//! The JSON-RPC messages of an MCP request body, as policies see them (`rpc`, `tool`).
//!
//! A body that is not JSON, or not JSON-RPC, gives no messages (`rpc.method == ""`): the core
//! rejects it. A batch (a JSON array) gives one message per element, each decided on its own.

use super::variables::{RpcCall, ToolCall};
use serde_json::Value;

/// Most messages of one batch that are evaluated; a larger batch is refused.
pub const MAX_BATCH: usize = 256;

/// A batch with more than [`MAX_BATCH`] messages.
#[derive(Debug, PartialEq, Eq)]
pub struct BatchTooLarge;

/// The messages of `body`; empty when it is not a JSON-RPC message or batch.
pub fn calls(body: &[u8]) -> Result<Vec<RpcCall>, BatchTooLarge> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Ok(Vec::new());
    };
    match value {
        Value::Array(items) if items.len() > MAX_BATCH => Err(BatchTooLarge),
        Value::Array(items) => Ok(items.iter().map(call).collect()),
        message @ Value::Object(_) => Ok(vec![call(&message)]),
        _ => Ok(Vec::new()),
    }
}

/// One message (anything not an object has method `""`).
fn call(message: &Value) -> RpcCall {
    let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
    let tool = (method == "tools/call").then(|| {
        let params = message.get("params");
        ToolCall {
            name: params
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            arguments: params
                .and_then(|p| p.get("arguments"))
                .filter(|a| a.is_object())
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default())),
        }
    });
    RpcCall {
        method: method.to_string(),
        id: message.get("id").cloned().unwrap_or(Value::Null),
        tool,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_single_calls_batches_and_tools() {
        let one =
            calls(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"drop","arguments":{"t":"x"}}}"#)
                .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].method, "tools/call");
        assert_eq!(one[0].id, json!(7));
        let tool = one[0].tool.as_ref().unwrap();
        assert_eq!((tool.name.as_str(), &tool.arguments), ("drop", &json!({"t": "x"})));

        let batch = calls(br#"[{"jsonrpc":"2.0","id":"a","method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}, 3]"#)
            .unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!((batch[0].method.as_str(), &batch[0].id), ("tools/list", &json!("a")));
        assert!(batch[0].tool.is_none());
        assert_eq!(batch[1].id, Value::Null);
        assert_eq!(batch[2].method, "", "a non-object element is no call");

        let no_args = calls(br#"{"method":"tools/call","params":{"name":"t","arguments":[1]}}"#).unwrap();
        assert_eq!(no_args[0].tool.as_ref().unwrap().arguments, json!({}));
    }

    #[test]
    fn anything_else_is_no_call_and_huge_batches_are_refused() {
        for body in [&b"not json"[..], b"", b"\"text\"", b"42"] {
            assert!(calls(body).unwrap().is_empty(), "{body:?}");
        }
        let huge = format!("[{}]", vec!["{}"; MAX_BATCH + 1].join(","));
        assert_eq!(calls(huge.as_bytes()), Err(BatchTooLarge));
    }
}
