//! How deep JSON may nest, measured the same way wherever it enters warren
//! (request bodies, queue messages, step outputs) and wherever it is kept
//! (every store refuses an item deeper than DynamoDB allows).
//!
//! Depth counts containers on the deepest path: `1` is 0 deep, `{}` 1,
//! `{"a": [1]}` 2. Both measures stop as soon as the limit is passed, so a
//! hostile document costs one pass at most, and neither recurses.

use serde_json::Value;

/// The deepest attribute value an item may hold: DynamoDB's 32 levels.
pub const MAX_ITEM_DEPTH: usize = 32;

/// The deepest JSON document a request, a message or a published event may
/// carry. Stored as an attribute (an event's `data`, an execution's
/// `input`), it nests exactly as deep as the item allows.
pub const MAX_INPUT_DEPTH: usize = MAX_ITEM_DEPTH;

/// The deepest output a pipeline step may return: it is kept two levels
/// down in its execution (`steps[i].output`).
pub const MAX_OUTPUT_DEPTH: usize = MAX_ITEM_DEPTH - 2;

/// Whether the JSON text nests deeper than `max`. Brackets inside strings do
/// not count; malformed text is left for the parser to refuse.
pub fn text_deeper_than(text: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Whether the value nests deeper than `max`.
pub fn deeper_than(value: &Value, max: usize) -> bool {
    // (value, its depth): containers count themselves.
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, above)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(members) => Box::new(members.values()),
            _ => continue,
        };
        let depth = above + 1;
        if depth > max {
            return true;
        }
        stack.extend(children.map(|c| (c, depth)));
    }
    false
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn text_and_value_depths_agree() {
        for (text, depth) in [
            ("1", 0),
            ("{}", 1),
            (r#"{"a": [1]}"#, 2),
            (r#"[{"a": {"b": []}}, 2]"#, 4),
            (r#"{"s": "[[[[{{{{\"]]]"}"#, 1),
            (r#"["\\", ["\"["]]"#, 2),
        ] {
            assert!(!text_deeper_than(text.as_bytes(), depth), "{text}");
            assert!(text_deeper_than(text.as_bytes(), depth.wrapping_sub(1)) || depth == 0);
            let value: Value = serde_json::from_str(text).unwrap();
            assert!(!deeper_than(&value, depth), "{text}");
            if depth > 0 {
                assert!(deeper_than(&value, depth - 1), "{text}");
            }
        }
    }

    #[test]
    fn the_limit_is_inclusive() {
        let ok = nested(MAX_INPUT_DEPTH);
        let deep = nested(MAX_INPUT_DEPTH + 1);
        assert!(!text_deeper_than(ok.as_bytes(), MAX_INPUT_DEPTH));
        assert!(text_deeper_than(deep.as_bytes(), MAX_INPUT_DEPTH));
        let value: Value = serde_json::from_str(&deep).unwrap();
        assert!(deeper_than(&value, MAX_INPUT_DEPTH));
        assert!(!deeper_than(&json!({"a": value}), MAX_INPUT_DEPTH + 2));
    }

    #[test]
    fn a_huge_document_is_measured_without_recursion() {
        let text = "[".repeat(1_000_000);
        assert!(text_deeper_than(text.as_bytes(), MAX_INPUT_DEPTH));
    }
}
