//! Query-string and form parameters of OAuth requests. A parameter sent twice is refused
//! (RFC 6749 §3.1); an empty value counts as absent.

use std::collections::HashMap;

pub struct Params(HashMap<String, String>);

// === impl Params ===

impl Params {
    /// Parses `application/x-www-form-urlencoded` text; `Err(name)` names a repeated parameter.
    pub fn parse(input: &[u8]) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (key, value) in form_urlencoded::parse(input) {
            if value.is_empty() {
                continue;
            }
            if map.insert(key.to_string(), value.to_string()).is_some() {
                return Err(key.to_string());
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decodes_and_refuses_repeats() {
        let p = Params::parse(b"a=1&b=x%20y&c=&d=%2F").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("x y"));
        assert_eq!(p.get("c"), None);
        assert_eq!(p.get("d"), Some("/"));
        assert_eq!(Params::parse(b"a=1&a=2").err().as_deref(), Some("a"));
    }
}
