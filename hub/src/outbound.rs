//! Outbound HTTP to the providers the hub talks to by their APIs (SMS, work apps): one client
//! shape and one bounded exchange, so each provider's code is only its protocol.

use std::time::Duration;

/// A client on reqwest (rustls, as the webhooks): a user agent naming the hub, no redirects
/// (the APIs never redirect; a redirect means a wrong endpoint), the proxy from the
/// environment unless `direct`. Errors are described without the URL.
pub(crate) fn client(direct: bool) -> Result<reqwest::Client, String> {
    infra::tls::install_default_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("hub/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    if direct {
        builder = builder.no_proxy();
    }
    builder.build().map_err(describe)
}

/// Why an exchange produced no answer.
#[derive(Debug)]
pub(crate) enum Failed {
    /// Nothing complete within the timeout.
    Timeout,
    /// Connecting, sending or reading failed (described without the URL).
    Transport(String),
}

/// Sends `request` and reads the status and at most `max` bytes of the body, all within
/// `timeout` (a slow or endless answer cannot hold the caller).
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    max: usize,
) -> Result<(u16, Vec<u8>), Failed> {
    let exchange = async {
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < max {
            match response.chunk().await? {
                Some(c) => body.extend_from_slice(&c),
                None => break,
            }
        }
        body.truncate(max);
        Ok::<_, reqwest::Error>((status, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(Failed::Timeout),
        Ok(Err(e)) => Err(Failed::Transport(describe(e))),
        Ok(Ok(answer)) => Ok(answer),
    }
}

/// The error and its causes on one line, without the URL: URLs of these APIs may carry a
/// key or token in their query.
pub(crate) fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Problems of a provider's base URL given in the config (`endpoint`): http(s), no query or
/// fragment.
pub(crate) fn base_url_problems(e: &str) -> Vec<String> {
    match reqwest::Url::parse(e) {
        Err(err) => vec![format!("endpoint: {e:?} is not a URL: {err}")],
        Ok(u) => {
            let mut p = Vec::new();
            if !matches!(u.scheme(), "http" | "https") {
                p.push(format!("endpoint: scheme {:?}; use https", u.scheme()));
            }
            if u.query().is_some() || u.fragment().is_some() {
                p.push("endpoint: give the base URL without a query or '#'".into());
            }
            p
        }
    }
}
