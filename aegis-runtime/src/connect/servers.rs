//! The server list: comma-separated or repeated URLs, with any credentials inside them taken
//! out, because async-nats 0.51 ignores a URL's userinfo and would print it in errors.

use super::error::ConnectError;

/// The credentials found in a URL's userinfo: `user:password@` or `token@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum UrlCredentials {
    /// `nats://user:password@host`.
    UserPassword { user: String, password: String },
    /// `nats://token@host` (the NATS convention for a token in a URL).
    Token(String),
}

/// The parsed server list: addresses without userinfo, and the credentials of the first
/// URL that carried any.
#[derive(Debug)]
pub(super) struct Servers {
    pub(super) addrs: Vec<async_nats::ServerAddr>,
    /// The addresses as shown in messages: no userinfo.
    pub(super) shown: Vec<String>,
    pub(super) credentials: Option<UrlCredentials>,
}

/// Parses server specs; each may itself be a comma-separated list. A spec without a scheme
/// gets `nats://`.
pub(super) fn parse<'a>(specs: impl IntoIterator<Item = &'a str>) -> Result<Servers, ConnectError> {
    let mut servers = Servers {
        addrs: Vec::new(),
        shown: Vec::new(),
        credentials: None,
    };
    for part in specs.into_iter().flat_map(|spec| spec.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let with_scheme = if part.contains("://") {
            part.to_owned()
        } else {
            format!("nats://{part}")
        };
        let (shown, userinfo) = split_userinfo(&with_scheme);
        let addr =
            shown
                .parse::<async_nats::ServerAddr>()
                .map_err(|source| ConnectError::InvalidUrl {
                    url: shown.clone(),
                    reason: source.to_string(),
                })?;
        if let Some(found) = userinfo.map(|info| credentials(&info)) {
            match &servers.credentials {
                None => servers.credentials = Some(found),
                // One connection authenticates one way, whichever server it reaches.
                Some(first) if *first != found => {
                    return Err(ConnectError::ConflictingAuth {
                        first: "credentials inside one server URL",
                        second: "other credentials inside another",
                    });
                }
                Some(_) => {}
            }
        }
        servers.addrs.push(addr);
        servers.shown.push(shown);
    }
    if servers.addrs.is_empty() {
        return Err(ConnectError::NoServer);
    }
    Ok(servers)
}

/// `url` without its userinfo, and the userinfo.
fn split_userinfo(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_owned(), None);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => (
            format!("{scheme}://{host}{path}"),
            Some(userinfo.to_owned()),
        ),
        None => (url.to_owned(), None),
    }
}

/// A URL with any userinfo removed, for messages and `Debug`.
pub(super) fn redact(url: &str) -> String {
    url.split(',')
        .map(|part| split_userinfo(part.trim()).0)
        .collect::<Vec<_>>()
        .join(",")
}

fn credentials(userinfo: &str) -> UrlCredentials {
    match userinfo.split_once(':') {
        Some((user, password)) => UrlCredentials::UserPassword {
            user: percent_decode(user),
            password: percent_decode(password),
        },
        None => UrlCredentials::Token(percent_decode(userinfo)),
    }
}

/// Decodes `%XX` escapes, which a URL needs for `@`, `:` or `/` in a password. A malformed
/// escape is kept as written: the server then rejects the credential, which says more than
/// a parse error would.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_separated_list_and_repeated_specs_make_one_list() {
        let servers =
            parse(["nats://127.0.0.1:4222, 127.0.0.1:4223", "tls://h:4224"]).expect("valid list");
        assert_eq!(
            servers.shown,
            [
                "nats://127.0.0.1:4222",
                "nats://127.0.0.1:4223",
                "tls://h:4224"
            ]
        );
        assert!(servers.addrs[2].tls_required());
        assert_eq!(servers.credentials, None);
    }

    #[test]
    fn credentials_are_taken_out_of_the_url() {
        let servers = parse(["nats://svc:p%40ss@127.0.0.1:4222/"]).expect("valid");
        assert_eq!(servers.shown, ["nats://127.0.0.1:4222/"]);
        assert_eq!(
            servers.credentials,
            Some(UrlCredentials::UserPassword {
                user: "svc".into(),
                password: "p@ss".into()
            })
        );
        assert!(!servers.addrs[0].has_user_pass());
        let token = parse(["nats://T0KEN@127.0.0.1"]).expect("valid");
        assert_eq!(
            token.credentials,
            Some(UrlCredentials::Token("T0KEN".into()))
        );
    }

    #[test]
    fn a_bad_url_is_named_without_its_password() {
        let err = parse(["nats://svc:hunter2@127.0.0.1:notaport"]).expect_err("bad port");
        let message = err.to_string();
        assert!(message.contains("nats://127.0.0.1:notaport"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(matches!(parse([" , "]), Err(ConnectError::NoServer)));
        let differing = parse(["nats://a:pw1@h1,nats://a:pw2@h2"]).expect_err("two passwords");
        assert!(
            matches!(differing, ConnectError::ConflictingAuth { .. }),
            "{differing}"
        );
        assert!(!differing.to_string().contains("pw1"), "{differing}");
        parse(["nats://a:pw@h1,nats://a:pw@h2"]).expect("the same credentials twice");
    }

    #[test]
    fn redact_removes_userinfo_from_every_url() {
        assert_eq!(
            redact("nats://a:b@h1:1,nats://tok@h2:2,h3"),
            "nats://h1:1,nats://h2:2,h3"
        );
    }
}
