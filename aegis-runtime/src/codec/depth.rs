//! Nesting depth of JSON text, measured without recursion.
//!
//! MessagePack needs no such scan: rmp-serde counts levels as it decodes and stops at the
//! limit. serde_json stops only at its own fixed limit (128), above [`MAX_DEPTH`]
//! (super::MAX_DEPTH), so JSON is measured first, in one pass over the bytes.

/// Whether the maps and arrays of the JSON text `bytes` nest deeper than `limit`.
///
/// Brackets inside strings do not count. Text that is not valid JSON is measured all the
/// same (the decoder rejects it afterwards); an unbalanced closing bracket never makes the
/// depth negative.
pub(super) fn json_exceeds(bytes: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::json_exceeds;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn counts_levels_up_to_the_limit_exactly() {
        assert!(!json_exceeds(nested(100).as_bytes(), 100));
        assert!(json_exceeds(nested(101).as_bytes(), 100));
        assert!(!json_exceeds(b"{\"a\":[1,{\"b\":2}],\"c\":{}}", 3));
        assert!(json_exceeds(b"{\"a\":[1,{\"b\":2}],\"c\":{}}", 2));
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        assert!(!json_exceeds(br#"{"a":"[[[[{{{{\"[[["}"#, 1));
        assert!(!json_exceeds(br#"["\\", "[[["]"#, 1));
    }

    #[test]
    fn siblings_do_not_add_up_and_stray_closers_do_not_go_negative() {
        let siblings = format!("[{}]", ["[[]]"; 1000].join(","));
        assert!(!json_exceeds(siblings.as_bytes(), 3));
        assert!(!json_exceeds(b"]]]]][[", 2));
        assert!(json_exceeds(b"]]]]][[[", 2));
    }
}
