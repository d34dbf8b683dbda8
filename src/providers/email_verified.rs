//! Which email address of a provider's profile becomes the user's `email` — what the assertion
//! carries, `get_user_email()` returns and CEL policies on `user.email` trust. Only an address
//! the provider marks verified (`email_verified: true`, or `"true"` as some providers write it)
//! qualifies. An address marked unverified (`false`, `"false"`, anything else) never does. An
//! address with no flag at all counts as what the provider's [`WithoutFlag`] says:
//! unverified unless mxgate.yml's `assume_email_verified` names the provider.

use serde_json::Value;

/// What an email address that comes without an `email_verified` flag counts as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WithoutFlag {
    /// Not verified: the address is left out (the default, and the safe choice).
    #[default]
    Unverified,
    /// Verified: the provider is trusted to give only addresses it verified
    /// (`assume_email_verified: {<provider>: true}`).
    Verified,
}

// === impl WithoutFlag ===

impl WithoutFlag {
    /// From the `assume_email_verified` setting of the provider.
    pub fn assumed_verified(assume: bool) -> Self {
        if assume {
            Self::Verified
        } else {
            Self::Unverified
        }
    }
}

/// `email` when `profile`'s `email_verified` says it is verified (without a flag: `without_flag`).
/// A left-out address is logged with the reason, never with the address.
pub fn verified_email(
    provider: &str,
    profile: &Value,
    email: Option<String>,
    without_flag: WithoutFlag,
) -> Option<String> {
    let email = email?;
    match profile.get("email_verified") {
        None | Some(Value::Null) if without_flag == WithoutFlag::Verified => Some(email),
        None | Some(Value::Null) => {
            tracing::info!(
                provider,
                "the provider does not say whether the email address is verified; it is left out of \
                 the user's identity (mxgate.yml `assume_email_verified: {{{provider}: true}}` trusts it)"
            );
            None
        }
        Some(flag) if is_true(flag) => Some(email),
        Some(_) => {
            tracing::debug!(
                provider,
                "the email address is not verified; it is left out of the user's identity"
            );
            None
        }
    }
}

/// `true`, or the string `"true"` in any case (Apple, some older IdPs); everything else is not.
fn is_true(flag: &Value) -> bool {
    match flag {
        Value::Bool(verified) => *verified,
        Value::String(text) => text.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn email_of(profile: Value, without_flag: WithoutFlag) -> Option<String> {
        let email = profile.get("email").and_then(Value::as_str).map(str::to_string);
        verified_email("p", &profile, email, without_flag)
    }

    #[test]
    fn only_an_address_marked_verified_is_kept_by_default() {
        let default = WithoutFlag::default();
        assert_eq!(default, WithoutFlag::Unverified);
        for verified in [json!(true), json!("true"), json!("TRUE"), json!(" True ")] {
            let profile = json!({"email": "a@x.test", "email_verified": verified});
            assert_eq!(email_of(profile, default).as_deref(), Some("a@x.test"), "{verified}");
        }
        for unverified in [
            json!(false),
            json!("false"),
            json!("no"),
            json!(1),
            json!({}),
            json!([true]),
        ] {
            let profile = json!({"email": "a@x.test", "email_verified": unverified});
            assert_eq!(email_of(profile, default), None, "{unverified}");
        }
        assert_eq!(email_of(json!({"email": "a@x.test"}), default), None);
        assert_eq!(
            email_of(json!({"email": "a@x.test", "email_verified": null}), default),
            None
        );
    }

    #[test]
    fn assume_verified_trusts_only_a_missing_flag() {
        let assume = WithoutFlag::assumed_verified(true);
        assert_eq!(assume, WithoutFlag::Verified);
        assert_eq!(WithoutFlag::assumed_verified(false), WithoutFlag::Unverified);
        assert_eq!(
            email_of(json!({"email": "a@x.test"}), assume).as_deref(),
            Some("a@x.test")
        );
        assert_eq!(
            email_of(json!({"email": "a@x.test", "email_verified": null}), assume).as_deref(),
            Some("a@x.test")
        );
        assert_eq!(
            email_of(json!({"email": "a@x.test", "email_verified": false}), assume),
            None
        );
        assert_eq!(
            email_of(json!({"email": "a@x.test", "email_verified": "false"}), assume),
            None
        );
        assert_eq!(
            email_of(json!({"email_verified": true}), assume),
            None,
            "no address, no email"
        );
    }
}
