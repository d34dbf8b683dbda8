//! Hiding tools from a `tools/list` answer: every tool that the policies would deny a
//! `tools/call` of (with no arguments) is removed, so clients do not offer what they cannot use.
//!
//! The answer is an `application/json` body (one JSON-RPC response, or a batch of them) or a
//! `text/event-stream` whose events carry them in `data:` lines. Only responses whose `id` is
//! that of a `tools/list` request of the same body are touched; everything else stays
//! byte-identical, and so does each tool that stays (members are re-joined without the
//! whitespace between them; a rewritten event's data becomes one `data:` line). A body with
//! nothing to hide is returned unchanged.

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

/// Largest answer that is buffered to be filtered; a larger one is refused (fail closed).
pub const MAX_TOOLS_LIST_BODY: usize = 8 * 1024 * 1024;

/// How the answer is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    EventStream,
}

// === impl BodyKind ===

impl BodyKind {
    /// The kind of a response with this `Content-Type`; `None` for anything else.
    pub fn of(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/json") {
            Some(Self::Json)
        } else if essence.eq_ignore_ascii_case("text/event-stream") {
            Some(Self::EventStream)
        } else {
            None
        }
    }
}

/// `body` without the tools `hide` names, or `None` when nothing is hidden (send it as it is).
/// `ids` are the ids of the request's `tools/list` calls.
pub fn filter(body: &[u8], kind: BodyKind, ids: &[Value], hide: &mut dyn FnMut(&str) -> bool) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    match kind {
        BodyKind::Json => filter_json(text, ids, hide).map(String::into_bytes),
        BodyKind::EventStream => filter_events(text, ids, hide),
    }
}

/// A JSON-RPC response, or a batch of them.
fn filter_json(text: &str, ids: &[Value], hide: &mut dyn FnMut(&str) -> bool) -> Option<String> {
    if text.trim_start().starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
        let mut changed = false;
        let rewritten: Vec<String> = items
            .iter()
            .map(|item| match filter_message(item.get(), ids, hide) {
                Some(new) => {
                    changed = true;
                    new
                }
                None => item.get().to_string(),
            })
            .collect();
        return changed.then(|| format!("[{}]", rewritten.join(",")));
    }
    filter_message(text, ids, hide)
}

/// One response: `result.tools` filtered when its `id` is a `tools/list` call's.
fn filter_message(text: &str, ids: &[Value], hide: &mut dyn FnMut(&str) -> bool) -> Option<String> {
    let message: Members = serde_json::from_str(text).ok()?;
    let id: Value = serde_json::from_str(message.get("id")?.get()).ok()?;
    if !ids.contains(&id) {
        return None;
    }
    let result: Members = serde_json::from_str(message.get("result")?.get()).ok()?;
    let tools: Vec<&RawValue> = serde_json::from_str(result.get("tools")?.get()).ok()?;
    let kept: Vec<&str> = tools
        .iter()
        .map(|t| t.get())
        .filter(|tool| tool_name(tool).is_none_or(|name| !hide(&name)))
        .collect();
    if kept.len() == tools.len() {
        return None;
    }
    let tools = format!("[{}]", kept.join(","));
    let result = result.with("tools", &tools);
    Some(message.with("result", &result))
}

fn tool_name(tool: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    serde_json::from_str::<Named>(tool).ok().map(|t| t.name)
}

/// An event stream: each event whose data is a filtered response gets that data instead.
fn filter_events(text: &str, ids: &[Value], hide: &mut dyn FnMut(&str) -> bool) -> Option<Vec<u8>> {
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut event: Vec<&str> = Vec::new();
    for line in text.split_inclusive('\n') {
        event.push(line);
        if line.trim_end_matches(['\r', '\n']).is_empty() {
            changed |= write_event(&mut out, &event, ids, hide);
            event.clear();
        }
    }
    changed |= write_event(&mut out, &event, ids, hide);
    changed.then(|| out.into_bytes())
}

/// Writes one event's lines (its blank line included); `true` when its data was rewritten.
fn write_event(out: &mut String, lines: &[&str], ids: &[Value], hide: &mut dyn FnMut(&str) -> bool) -> bool {
    let data_of = |line: &str| {
        let line = line.trim_end_matches(['\r', '\n']);
        let value = line.strip_prefix("data:")?;
        Some(value.strip_prefix(' ').unwrap_or(value).to_string())
    };
    let data: Vec<String> = lines.iter().filter_map(|l| data_of(l)).collect();
    let rewritten = (!data.is_empty())
        .then(|| filter_json(&data.join("\n"), ids, hide))
        .flatten();
    let Some(rewritten) = rewritten else {
        lines.iter().for_each(|l| out.push_str(l));
        return false;
    };
    let mut written = false;
    for line in lines {
        if data_of(line).is_none() {
            out.push_str(line);
        } else if !written {
            let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
            out.push_str("data: ");
            out.push_str(&rewritten);
            out.push_str(ending);
            written = true;
        }
    }
    true
}

/// A JSON object's members in order, each value as written.
struct Members<'a>(Vec<(String, &'a RawValue)>);

// === impl Members ===

impl<'a> Members<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// The object again, with `key`'s value replaced by the JSON text `value`.
    fn with(&self, key: &str, value: &str) -> String {
        let members: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| {
                let name = serde_json::to_string(k).unwrap_or_default();
                format!("{name}:{}", if k == key { value } else { v.get() })
            })
            .collect();
        format!("{{{}}}", members.join(","))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for MembersVisitor<'a> {
            type Value = Members<'a>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    members.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOOLS: &str = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"whoami","inputSchema":{"type":"object"}}, {"name":"drop_table","description":"x"},{"name":"admin_only"}],"nextCursor":null}}"#;

    fn hide_drop() -> impl FnMut(&str) -> bool {
        |name| name == "drop_table"
    }

    fn names(json_text: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(json_text).unwrap();
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_json_answer_loses_the_hidden_tools_and_keeps_the_rest_as_written() {
        let out = filter(TOOLS.as_bytes(), BodyKind::Json, &[json!(2)], &mut hide_drop()).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(names(&out), vec!["whoami", "admin_only"]);
        assert!(
            out.contains(r#"{"name":"whoami","inputSchema":{"type":"object"}}"#),
            "{out}"
        );
        assert!(out.contains(r#""nextCursor":null"#), "{out}");
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["id"], 2);
    }

    #[test]
    fn other_ids_other_answers_and_nothing_to_hide_stay_untouched() {
        assert!(filter(TOOLS.as_bytes(), BodyKind::Json, &[json!(3)], &mut hide_drop()).is_none());
        assert!(filter(TOOLS.as_bytes(), BodyKind::Json, &[json!(2)], &mut |_| false).is_none());
        let error = br#"{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"x"}}"#;
        assert!(filter(error, BodyKind::Json, &[json!(2)], &mut hide_drop()).is_none());
        assert!(filter(b"not json", BodyKind::Json, &[json!(2)], &mut hide_drop()).is_none());
    }

    #[test]
    fn batches_are_filtered_per_response() {
        let batch = format!(r#"[{{"jsonrpc":"2.0","id":1,"result":{{}}}}, {TOOLS}]"#);
        let out = filter(batch.as_bytes(), BodyKind::Json, &[json!(2)], &mut hide_drop()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0], json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
        assert_eq!(v[1]["result"]["tools"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn an_event_stream_has_the_tools_event_rewritten_and_the_others_kept() {
        let stream = format!(
            "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\n\n\
             event: message\r\nid: 7\r\ndata: {TOOLS}\r\n\r\n: comment\n"
        );
        let out = filter(stream.as_bytes(), BodyKind::EventStream, &[json!(2)], &mut hide_drop()).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.starts_with("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n"),
            "{out}"
        );
        assert!(out.contains("event: message\r\nid: 7\r\ndata: {"), "{out}");
        assert!(out.ends_with("}\r\n\r\n: comment\n"), "{out}");
        let data = out.lines().find(|l| l.contains("\"tools\"")).unwrap().trim_end();
        assert_eq!(
            names(data.strip_prefix("data: ").unwrap()),
            vec!["whoami", "admin_only"]
        );
    }

    #[test]
    fn data_split_over_several_lines_is_joined() {
        let stream = format!("data: {}\ndata: {}\n\n", &TOOLS[..33], &TOOLS[33..]);
        let out = filter(stream.as_bytes(), BodyKind::EventStream, &[json!(2)], &mut hide_drop()).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches("data:").count(), 1, "{out}");
    }

    #[test]
    fn content_types_are_recognised() {
        assert_eq!(BodyKind::of("application/json; charset=utf-8"), Some(BodyKind::Json));
        assert_eq!(BodyKind::of("text/event-stream"), Some(BodyKind::EventStream));
        assert_eq!(BodyKind::of("text/html"), None);
    }
}
