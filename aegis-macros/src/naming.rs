//! Names derived from the user's identifiers.

/// `OrderProcessor` → `order-processor`, `HTTPGateway` → `http-gateway`: the default
/// service name of a type.
pub(crate) fn kebab_case(ident: &str) -> String {
    let chars: Vec<char> = ident.trim_start_matches("r#").chars().collect();
    let mut out = String::with_capacity(chars.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c == '_' {
            out.push('-');
            continue;
        }
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            // A word starts at a capital after a lowercase letter or digit (`orderId`), or at
            // the last capital of an acronym followed by lowercase (`HTTPGateway`).
            if (prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower))
                && !out.ends_with('-')
            {
                out.push('-');
            }
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// The wire name of a method: its identifier without `r#`.
pub(crate) fn unraw(ident: &syn::Ident) -> String {
    let name = ident.to_string();
    name.strip_prefix("r#").map(str::to_owned).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kebab_case_splits_words_and_acronyms() {
        for (input, expected) in [
            ("OrderProcessor", "order-processor"),
            ("Echo", "echo"),
            ("HTTPGateway", "http-gateway"),
            ("ServiceV2", "service-v2"),
            ("Order2Svc", "order2-svc"),
            ("order_processor", "order-processor"),
            ("ABC", "abc"),
            ("r#Type", "type"),
        ] {
            assert_eq!(kebab_case(input), expected, "{input}");
        }
    }

    #[test]
    fn unraw_strips_the_raw_prefix() {
        let ident: syn::Ident = syn::parse_str("r#type").expect("ident");
        assert_eq!(unraw(&ident), "type");
        let ident: syn::Ident = syn::parse_str("ping").expect("ident");
        assert_eq!(unraw(&ident), "ping");
    }
}
