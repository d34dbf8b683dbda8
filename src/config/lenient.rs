//! Deserializers that accept a number or boolean written as a string, as MXCP's (pydantic)
//! loader does — a `${PORT}` reference resolves to a string, and must still be a port.

use serde::{de::Error, Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Loose<T> {
    Typed(T),
    Text(String),
}

pub fn u16<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    match Loose::<u16>::deserialize(deserializer)? {
        Loose::Typed(v) => Ok(v),
        Loose::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("expected a port number, got `{s}`"))),
    }
}

pub fn bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    match Loose::<bool>::deserialize(deserializer)? {
        Loose::Typed(v) => Ok(v),
        Loose::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(D::Error::custom(format!("expected true or false, got `{s}`"))),
        },
    }
}
