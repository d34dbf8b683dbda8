//! The HTML pages people see: the consent page, the sign-in choice, the sign-out confirmation
//! and the error page. No scripts; every value shown is HTML-escaped.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}.box{border:1px solid #ddd;border-radius:8px;padding:1rem 1.25rem;margin:1rem 0}\
dt{font-weight:600;margin-top:.5rem}dd{margin:0}button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem;border-radius:6px;border:1px solid #888;cursor:pointer}\
button.primary{background:#1f6feb;color:#fff;border-color:#1f6feb}code{background:#f3f3f3;padding:0 .25rem;word-break:break-all}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        text(title)
    )
}

/// A name that is the client's own claim, marked as such.
const UNVERIFIED: &str = "name given by the application, not verified";

/// Who asks for access, and how far its name can be trusted.
pub enum ClientIdentity<'a> {
    /// A client from the MXCP config: the administrator named it.
    Configured { name: &'a str },
    /// A client that registered itself: anyone can register any name.
    SelfRegistered { name: Option<&'a str> },
    /// A Client ID Metadata Document client: the host of its URL is verified, the name in the
    /// document is its own claim.
    Published { host: &'a str, name: Option<&'a str> },
}

// === impl ClientIdentity ===

impl ClientIdentity<'_> {
    /// Who would act as the person, for the headline.
    fn subject(&self) -> String {
        match self {
            Self::Configured { name } => format!("<b>{}</b>", text(name)),
            Self::SelfRegistered { name: Some(name) } => {
                format!("the application calling itself “{}”", text(name))
            }
            Self::SelfRegistered { name: None } => "an application without a name".to_string(),
            Self::Published { host, .. } => format!("the application of <b>{}</b>", text(host)),
        }
    }

    /// The "Application" entry of the page.
    fn details(&self, client_id: &str) -> String {
        let id = format!("<dd><small>Client id <code>{}</code></small></dd>", text(client_id));
        let claimed = |name: &Option<&str>| match name {
            Some(name) => format!("“{}” <small>({UNVERIFIED})</small>", text(name)),
            None => "<i>no name given</i>".to_string(),
        };
        match self {
            Self::Configured { name } => format!(
                "<dd><b>{}</b> <small>(set up on this server by its administrator)</small></dd>{id}",
                text(name)
            ),
            Self::SelfRegistered { name } => format!(
                "<dd>{}</dd><dd><small>It registered itself with this server.</small></dd>{id}",
                claimed(name)
            ),
            Self::Published { host, name } => format!(
                "<dd><b>{}</b> <small>(verified: its client id is a document published there)</small></dd>\
<dd>Calls itself {}</dd>{id}",
                text(host),
                claimed(name)
            ),
        }
    }
}

/// A provider to sign in with: the form submits `name`, the person reads `label`.
pub struct ProviderOption<'a> {
    pub name: &'a str,
    pub label: &'a str,
}

/// What the consent page shows and submits.
pub struct ConsentView<'a> {
    pub client: ClientIdentity<'a>,
    pub client_id: &'a str,
    /// Shown in full (MCP security guidance): where the code goes after sign-in.
    pub redirect_uri: &'a str,
    pub scopes: &'a [String],
    pub resource: &'a str,
    /// The providers to sign in with; one button each when there are several.
    pub providers: &'a [ProviderOption<'a>],
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
        "<h1>Allow {subject} to use this MCP server as you?</h1>\
<div class=\"box\"><dl>\
<dt>Application</dt>{application}\
<dt>After sign-in you return to</dt><dd><code>{redirect_uri}</code></dd>\
<dt>MCP server</dt><dd><code>{resource}</code></dd>\
<dt>Access requested</dt>{scopes}\
</dl></div>\
<p>{sign_in}. Only continue if you started this from that application and you recognise the \
address you return to.</p>\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"transaction\" value=\"{txn}\">\
<input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
{approve}\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\
</form>",
        subject = view.client.subject(),
        application = view.client.details(view.client_id),
        redirect_uri = text(view.redirect_uri),
        resource = text(view.resource),
        sign_in = sign_in_text(view.providers),
        approve = approve_buttons(view.providers),
        action = attr(view.form_action),
        txn = attr(view.transaction),
        csrf = attr(view.csrf_token),
    );
    page("Authorize access", &body)
}

fn sign_in_text(providers: &[ProviderOption<'_>]) -> String {
    match providers {
        [one] => format!("You will sign in with <b>{}</b>", text(one.label)),
        _ => "Choose how to sign in".to_string(),
    }
}

/// One provider: "Allow and sign in" (`decision=approve`). Several: a button per provider.
fn approve_buttons(providers: &[ProviderOption<'_>]) -> String {
    match providers {
        [_] => "<button class=\"primary\" type=\"submit\" name=\"decision\" value=\"approve\">Allow and sign in</button>"
            .to_string(),
        many => many
            .iter()
            .map(|p| {
                format!(
                    "<button class=\"primary\" type=\"submit\" name=\"provider\" value=\"{}\">Allow and sign in with {}</button>",
                    attr(p.name),
                    text(p.label)
                )
            })
            .collect(),
    }
}

/// "Sign in with …": one link per provider, to `login_path` with the provider and `return_to`.
pub fn provider_choice(providers: &[ProviderOption<'_>], login_path: &str, return_to: &str) -> String {
    let links: String = providers
        .iter()
        .map(|p| {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("provider", p.name)
                .append_pair("return_to", return_to)
                .finish();
            format!(
                "<p><a class=\"button\" href=\"{}\">Sign in with {}</a></p>",
                attr(&format!("{login_path}?{query}")),
                text(p.label)
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

    const ONE_PROVIDER: &[ProviderOption<'static>] = &[ProviderOption {
        name: "oidc",
        label: "login.example.com",
    }];

    fn view<'a>(
        client: ClientIdentity<'a>,
        redirect_uri: &'a str,
        providers: &'a [ProviderOption<'a>],
    ) -> ConsentView<'a> {
        ConsentView {
            client,
            client_id: "c<1",
            redirect_uri,
            scopes: &[],
            resource: "http://127.0.0.1:8000/mcp",
            providers,
            transaction: "t\"x",
            csrf_token: "csrf",
            form_action: "/consent",
        }
    }

    #[test]
    fn consent_page_escapes_what_clients_control() {
        let html = consent(&view(
            ClientIdentity::SelfRegistered {
                name: Some("<script>alert(1)</script>"),
            },
            "http://127.0.0.1:9/cb?a=1&b=<i>",
            ONE_PROVIDER,
        ));
        assert!(!html.contains("<script>") && !html.contains("<i>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("value=\"t&quot;x\""));
        assert!(html.contains("<code>c&lt;1</code>"));
    }

    #[test]
    fn consent_page_shows_the_full_redirect_uri() {
        let html = consent(&view(
            ClientIdentity::Configured { name: "App" },
            "https://app.example/oauth/callback?tenant=a&x=<y>",
            ONE_PROVIDER,
        ));
        assert!(
            html.contains("<code>https://app.example/oauth/callback?tenant=a&amp;x=&lt;y&gt;</code>"),
            "{html}"
        );
    }

    #[test]
    fn only_a_configured_client_is_named_without_a_warning() {
        let configured = consent(&view(
            ClientIdentity::Configured { name: "Team CLI" },
            "https://a/cb",
            ONE_PROVIDER,
        ));
        assert!(configured.contains("Allow <b>Team CLI</b>") && !configured.contains(UNVERIFIED));

        let registered = consent(&view(
            ClientIdentity::SelfRegistered {
                name: Some("Claude Desktop"),
            },
            "https://a/cb",
            ONE_PROVIDER,
        ));
        assert!(registered.contains(&format!("“Claude Desktop” <small>({UNVERIFIED})</small>")));
        assert!(
            !registered.contains("<b>Claude Desktop</b>"),
            "a claimed name is never shown as trusted"
        );
        let nameless = consent(&view(
            ClientIdentity::SelfRegistered { name: None },
            "https://a/cb",
            ONE_PROVIDER,
        ));
        assert!(nameless.contains("an application without a name"));

        let published = consent(&view(
            ClientIdentity::Published {
                host: "app.example.com",
                name: Some("Claude Desktop"),
            },
            "https://a/cb",
            ONE_PROVIDER,
        ));
        assert!(
            published.contains("Allow the application of <b>app.example.com</b>"),
            "{published}"
        );
        assert!(published.contains(&format!("Calls itself “Claude Desktop” <small>({UNVERIFIED})</small>")));
    }

    #[test]
    fn providers_are_labelled_by_display_name_and_submitted_by_name() {
        let one = consent(&view(
            ClientIdentity::Configured { name: "A" },
            "https://a/cb",
            ONE_PROVIDER,
        ));
        assert!(one.contains("You will sign in with <b>login.example.com</b>"), "{one}");
        assert!(!one.contains(">oidc<"));
        let two = [
            ProviderOption {
                name: "oidc",
                label: "Corp <SSO>",
            },
            ProviderOption {
                name: "github",
                label: "GitHub",
            },
        ];
        let several = consent(&view(ClientIdentity::Configured { name: "A" }, "https://a/cb", &two));
        assert!(several.contains("value=\"oidc\">Allow and sign in with Corp &lt;SSO&gt;</button>"));
        assert!(several.contains("value=\"github\">Allow and sign in with GitHub</button>"));
        let choice = provider_choice(&two, "/login", "/x");
        assert!(
            choice.contains("href=\"/login?provider=github&amp;return_to=%2Fx\">Sign in with GitHub</a>"),
            "{choice}"
        );
    }
}
