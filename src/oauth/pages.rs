//! The HTML pages people see: the consent page and the error page. No scripts; every value
//! shown is HTML-escaped.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}.box{border:1px solid #ddd;border-radius:8px;padding:1rem 1.25rem;margin:1rem 0}\
dt{font-weight:600;margin-top:.5rem}dd{margin:0}button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem;border-radius:6px;border:1px solid #888;cursor:pointer}\
button.primary{background:#1f6feb;color:#fff;border-color:#1f6feb}code{background:#f3f3f3;padding:0 .25rem}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        text(title)
    )
}

/// What the consent page shows and submits.
pub struct ConsentView<'a> {
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub redirect_host: &'a str,
    pub scopes: &'a [String],
    pub resource: &'a str,
    /// The providers to sign in with; one button each when there are several.
    pub providers: &'a [&'a str],
    pub transaction: &'a str,
    pub csrf_token: &'a str,
    pub form_action: &'a str,
}

pub fn consent(view: &ConsentView<'_>) -> String {
    let scopes = if view.scopes.is_empty() {
        "<dd>(none)</dd>".to_string()
    } else {
        view.scopes
            .iter()
            .map(|s| format!("<dd><code>{}</code></dd>", text(s)))
            .collect()
    };
    let body = format!(
        "<h1>Allow {name} to use this MCP server as you?</h1>\
<div class=\"box\"><dl>\
<dt>Application</dt><dd>{name} <small>(client id <code>{id}</code>)</small></dd>\
<dt>After sign-in you return to</dt><dd><code>{host}</code></dd>\
<dt>MCP server</dt><dd><code>{resource}</code></dd>\
<dt>Access requested</dt>{scopes}\
</dl></div>\
<p>{sign_in}. Only continue if you started this from {name}.</p>\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"transaction\" value=\"{txn}\">\
<input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
{approve}\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\
</form>",
        name = text(view.client_name),
        id = text(view.client_id),
        host = text(view.redirect_host),
        resource = text(view.resource),
        sign_in = sign_in_text(view.providers),
        approve = approve_buttons(view.providers),
        action = attr(view.form_action),
        txn = attr(view.transaction),
        csrf = attr(view.csrf_token),
    );
    page("Authorize access", &body)
}

fn sign_in_text(providers: &[&str]) -> String {
    match providers {
        [one] => format!("You will sign in with <b>{}</b>", text(one)),
        _ => "Choose how to sign in".to_string(),
    }
}

/// One provider: "Allow and sign in" (`decision=approve`). Several: a button per provider.
fn approve_buttons(providers: &[&str]) -> String {
    match providers {
        [_] => "<button class=\"primary\" type=\"submit\" name=\"decision\" value=\"approve\">Allow and sign in</button>"
            .to_string(),
        many => many
            .iter()
            .map(|p| {
                format!(
                    "<button class=\"primary\" type=\"submit\" name=\"provider\" value=\"{}\">Allow and sign in with {}</button>",
                    attr(p),
                    text(p)
                )
            })
            .collect(),
    }
}

/// "Sign in with …": one link per provider, to `login_path` with the provider and `return_to`.
pub fn provider_choice(providers: &[&str], login_path: &str, return_to: &str) -> String {
    let links: String = providers
        .iter()
        .map(|p| {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("provider", p)
                .append_pair("return_to", return_to)
                .finish();
            format!(
                "<p><a class=\"button\" href=\"{}\">Sign in with {}</a></p>",
                attr(&format!("{login_path}?{query}")),
                text(p)
            )
        })
        .collect();
    page("Sign in", &format!("<h1>Sign in</h1><div class=\"box\">{links}</div>"))
}

/// "Sign out?": a form that posts back with the browser's CSRF token.
pub fn logout_confirmation(action: &str, csrf_token: &str) -> String {
    page(
        "Sign out",
        &format!(
            "<h1>Sign out of this MCP server?</h1><form method=\"post\" action=\"{}\">\
<input type=\"hidden\" name=\"csrf_token\" value=\"{}\">\
<button class=\"primary\" type=\"submit\">Sign out</button></form>",
            attr(action),
            attr(csrf_token)
        ),
    )
}

pub fn error(title: &str, message: &str) -> String {
    page(
        title,
        &format!(
            "<h1>{}</h1><div class=\"box\"><p>{}</p></div>",
            text(title),
            text(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_page_escapes_what_clients_control() {
        let html = consent(&ConsentView {
            client_name: "<script>alert(1)</script>",
            client_id: "c\"1",
            redirect_host: "evil.example",
            scopes: &["mxcp:access".into()],
            resource: "http://127.0.0.1:8000/mcp",
            providers: &["oidc"],
            transaction: "t\"x",
            csrf_token: "csrf",
            form_action: "/consent",
        });
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("value=\"t&quot;x\""));
        assert!(html.contains("evil.example"));
    }
}
