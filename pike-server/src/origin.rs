//! Browser origins allowed to open device WebSockets (`GET /v1/ws`): the
//! entries of an app's `allowed_origins` and how a request's `Origin`
//! header is matched against them.
//!
//! An entry is one of:
//!
//! - `*`: any origin (`null` included);
//! - `scheme://host[:port]` with `http` or `https`: exactly that origin
//!   (ASCII case-insensitive; a default port, `:80` for `http` and `:443`
//!   for `https`, is the same as none, as browsers omit it);
//! - `scheme://*.domain[:port]`: every subdomain of `domain`, at any depth,
//!   not `domain` itself.
//!
//! Paths, queries, user info and a trailing `/` are refused at config load
//! (browsers never send them in `Origin`), so that an entry that could
//! never match is an error, not a silent refusal.

/// Most entries in one app's `allowed_origins`.
pub const MAX_ALLOWED_ORIGINS: usize = 64;

/// Longest entry of `allowed_origins`, and longest `Origin` header that is
/// matched at all (a longer one matches only `*`), bytes.
pub const MAX_ORIGIN_LEN: usize = 256;

/// Why the list `entries` is not a valid `allowed_origins`, if it is not.
pub fn check_allowed_origins(entries: &[String]) -> Result<(), String> {
    if entries.len() > MAX_ALLOWED_ORIGINS {
        return Err(format!(
            "allowed_origins has {} entries; at most {MAX_ALLOWED_ORIGINS}",
            entries.len()
        ));
    }
    for entry in entries {
        if entry.len() > MAX_ORIGIN_LEN {
            return Err(format!(
                "allowed_origins entry {:?}... is longer than {MAX_ORIGIN_LEN} bytes",
                entry.chars().take(32).collect::<String>()
            ));
        }
        if entry == "*" {
            continue;
        }
        let parsed = parse(entry).ok_or_else(|| {
            format!(
                "allowed_origins entry {entry:?} is not \"*\", scheme://host[:port] or scheme://*.domain[:port] (http or https, no path, no trailing /)"
            )
        })?;
        if parsed.host.contains('*') && !parsed.wildcard {
            return Err(format!(
                "allowed_origins entry {entry:?}: a wildcard must be the whole first label (https://*.example.com)"
            ));
        }
    }
    Ok(())
}

/// Whether `origin`, the value of a request's `Origin` header, is allowed
/// by `entries` (checked with [`check_allowed_origins`]).
pub fn origin_allowed(entries: &[String], origin: &str) -> bool {
    if entries.iter().any(|e| e == "*") {
        return true;
    }
    if origin.len() > MAX_ORIGIN_LEN {
        return false;
    }
    let Some(origin) = parse(origin) else {
        return false;
    };
    if origin.wildcard || origin.host.contains('*') {
        return false;
    }
    entries
        .iter()
        .filter_map(|e| parse(e))
        .any(|entry| entry.matches(&origin))
}

/// An origin, lower-cased, its default port removed.
#[derive(Debug, Eq, PartialEq)]
struct Origin {
    scheme: String,
    /// The host, without the `*.` of a wildcard entry.
    host: String,
    port: Option<u16>,
    /// `scheme://*.host`.
    wildcard: bool,
}

impl Origin {
    fn matches(&self, origin: &Self) -> bool {
        if self.scheme != origin.scheme || self.port != origin.port {
            return false;
        }
        if self.wildcard {
            origin
                .host
                .strip_suffix(self.host.as_str())
                .is_some_and(|label| label.len() > 1 && label.ends_with('.'))
        } else {
            self.host == origin.host
        }
    }
}

/// `scheme://host[:port]` or `scheme://*.host[:port]`, or `None`.
fn parse(text: &str) -> Option<Origin> {
    let text = text.to_ascii_lowercase();
    let (scheme, rest) = text.split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    // An IPv6 literal keeps its colons inside brackets.
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    let port = match port {
        None => None,
        Some(digits) => {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let port: u16 = digits.parse().ok()?;
            (port != default_port).then_some(port)
        }
    };
    let (wildcard, host) = match host.strip_prefix("*.") {
        Some(domain) => (true, domain),
        None => (false, host),
    };
    let valid = if let Some(inner) = host.strip_prefix('[') {
        // An IPv6 literal: `[` hex digits, `:` and `.` `]`.
        !wildcard
            && inner.strip_suffix(']').is_some_and(|ip| {
                !ip.is_empty()
                    && ip
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
            })
    } else {
        let name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '*');
        !host.is_empty() && host.chars().all(name) && !host.starts_with('.') && !host.ends_with('.')
    };
    if !valid {
        return None;
    }
    Some(Origin {
        scheme: scheme.to_owned(),
        host: host.to_owned(),
        port,
        wildcard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Vec<String> {
        entries.iter().map(|e| (*e).to_owned()).collect()
    }

    #[test]
    fn exact_entries_match_scheme_host_and_port() {
        let entries = list(&["https://shop.example", "http://127.0.0.1:8080"]);
        assert!(check_allowed_origins(&entries).is_ok());
        for yes in [
            "https://shop.example",
            "HTTPS://Shop.Example",
            "https://shop.example:443",
            "http://127.0.0.1:8080",
        ] {
            assert!(origin_allowed(&entries, yes), "{yes}");
        }
        for no in [
            "http://shop.example",
            "https://shop.example:8443",
            "https://evil.shop.example",
            "https://shop.example.evil",
            "http://127.0.0.1",
            "http://127.0.0.1:80801",
            "null",
            "",
            "https://shop.example/",
        ] {
            assert!(!origin_allowed(&entries, no), "{no}");
        }
    }

    #[test]
    fn wildcards_match_subdomains_only_and_star_matches_all() {
        let entries = list(&["https://*.example.com"]);
        assert!(check_allowed_origins(&entries).is_ok());
        assert!(origin_allowed(&entries, "https://a.example.com"));
        assert!(origin_allowed(&entries, "https://a.b.example.com"));
        assert!(!origin_allowed(&entries, "https://example.com"));
        assert!(!origin_allowed(&entries, "https://badexample.com"));
        assert!(!origin_allowed(&entries, "http://a.example.com"));
        assert!(!origin_allowed(&entries, "https://*.example.com"));
        let any = list(&["*"]);
        assert!(origin_allowed(&any, "null"));
        assert!(origin_allowed(&any, "https://anything.test:1"));
        assert!(!origin_allowed(&[], "https://anything.test"));
    }

    #[test]
    fn bad_entries_and_long_lists_are_refused() {
        for bad in [
            "shop.example",
            "ftp://shop.example",
            "https://shop.example/",
            "https://shop.example/path",
            "https://",
            "https://shop.example:",
            "https://shop.example:99999",
            "https://a*.example.com",
            "https://*",
            "https://user@shop.example",
            "https://[::1]x",
        ] {
            let err = check_allowed_origins(&list(&[bad])).unwrap_err();
            assert!(err.contains("allowed_origins"), "{bad}: {err}");
        }
        assert!(check_allowed_origins(&list(&["http://[::1]:8080"])).is_ok());
        assert!(origin_allowed(
            &list(&["http://[::1]:8080"]),
            "http://[::1]:8080"
        ));
        let long = format!("https://{}.example", "a".repeat(MAX_ORIGIN_LEN));
        let err = check_allowed_origins(&[long]).unwrap_err();
        assert!(err.contains("longer than"), "{err}");
        let many: Vec<String> = (0..=MAX_ALLOWED_ORIGINS)
            .map(|i| format!("https://s{i}.example"))
            .collect();
        let err = check_allowed_origins(&many).unwrap_err();
        assert!(err.contains("at most"), "{err}");
        assert!(check_allowed_origins(&many[..MAX_ALLOWED_ORIGINS]).is_ok());
    }
}
