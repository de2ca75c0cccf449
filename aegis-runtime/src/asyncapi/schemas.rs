//! The `components.schemas` of a document: JSON Schemas from schemars (2020-12, with their
//! own `$defs`) moved to where references inside an AsyncAPI document resolve.
//!
//! A reference in an AsyncAPI document resolves against the document, so every `$defs`
//! entry is hoisted into `components.schemas` and its references rewritten to
//! `#/components/schemas/{name}`. Two schemas of the same name but different content get
//! distinct names (`Name`, `Name_2`, …); the same schema met twice is kept once. The nested
//! `$schema` goes, and the one 2020-12 keyword whose meaning draft 07 (the base of the
//! AsyncAPI Schema Object) spells differently is converted: `prefixItems` becomes the array
//! form of `items`, and a `items` beside it becomes `additionalItems`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Where hoisted schemas are referenced from.
const PREFIX: &str = "#/components/schemas/";

/// Keywords whose value is one schema.
const ONE: [&str; 13] = [
    "items",
    "additionalItems",
    "additionalProperties",
    "unevaluatedItems",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "contentSchema",
    "dependentSchemas",
];

/// Keywords whose value is an array of schemas.
const MANY: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];

/// Keywords whose value maps names to schemas.
const MAP: [&str; 3] = ["properties", "patternProperties", "dependentSchemas"];

/// The schemas of a document, by name, in the order they were added.
#[derive(Debug, Default)]
pub(super) struct Schemas {
    by_name: Map<String, Value>,
}

impl Schemas {
    /// Adds a schema under `name` (or a free variant of it) and returns a reference to it.
    /// `schema` may refer to components already added, never to `$defs`.
    pub(super) fn named(&mut self, name: &str, schema: Value) -> Value {
        let name = self.place(&sanitize(name), &schema, &[]);
        self.by_name.insert(name.clone(), schema);
        reference(&name)
    }

    /// Adds a root schema as schemars writes it, with its `$defs`, and returns what stands
    /// for it: a reference to its component (named after its `title`, else `fallback`), or
    /// the schema itself when it is a primitive or has no title, and nothing refers to it.
    pub(super) fn root(&mut self, fallback: &str, root: &Value) -> Value {
        let Value::Object(object) = root else {
            // `true` or `false`: nothing to hoist.
            return root.clone();
        };
        let mut object = object.clone();
        object.remove("$schema");
        let mut defs = Map::new();
        for key in ["$defs", "definitions"] {
            if let Some(Value::Object(more)) = object.remove(key) {
                defs.extend(more);
            }
        }
        let title = object.get("title").and_then(Value::as_str).map(sanitize);
        let refers_to_itself = refers_to_root(&Value::Object(object.clone()), &defs);
        // The root counts as one more definition, under the key "#".
        let root_key = "#".to_owned();
        // A named type is a component; a primitive (`string`, `double`, …) stays inline.
        let hoist_root = (title.is_some() && !primitive(&object)) || refers_to_itself;
        let mut wanted: BTreeMap<String, String> = defs
            .keys()
            .map(|key| (key.clone(), sanitize(key)))
            .collect();
        if hoist_root {
            wanted.insert(
                root_key.clone(),
                title.unwrap_or_else(|| sanitize(fallback)),
            );
        }
        let mut sources = defs;
        sources.insert(root_key.clone(), Value::Object(object));
        // Names are raised (`X` → `X_2`) until each schema either has a name of its own or
        // shares it with an identical schema; the content depends on the names of the ones
        // it refers to, so repeat until nothing changes.
        let mut names: BTreeMap<String, String> = wanted.clone();
        loop {
            let rewritten: BTreeMap<&String, Value> = sources
                .iter()
                .map(|(key, schema)| (key, convert(schema, &names)))
                .collect();
            let mut changed = false;
            let mut taken: Vec<String> = Vec::new();
            for (key, name) in names.iter_mut() {
                let schema = &rewritten[key];
                let placed = self.place(name, schema, &taken);
                if placed != *name {
                    *name = placed;
                    changed = true;
                }
                taken.push(name.clone());
            }
            if changed {
                continue;
            }
            let mut stands_for = None;
            for (key, schema) in rewritten {
                match names.get(key) {
                    Some(name) => {
                        if *key == root_key {
                            stands_for = Some(reference(name));
                        }
                        self.by_name.insert(name.clone(), schema);
                    }
                    None => stands_for = Some(schema),
                }
            }
            return stands_for.unwrap_or(Value::Bool(true));
        }
    }

    /// The first of `name`, `name_2`, `name_3`, … that is free (neither a component nor in
    /// `taken`) or names a component equal to `schema`.
    fn place(&self, name: &str, schema: &Value, taken: &[String]) -> String {
        let base = base_name(name);
        let mut candidate = name.to_owned();
        let mut n = 1;
        loop {
            let free = !taken.contains(&candidate);
            match self.by_name.get(&candidate) {
                Some(existing) if free && existing == schema => return candidate,
                None if free => return candidate,
                _ => {}
            }
            n += 1;
            candidate = format!("{base}_{n}");
        }
    }

    /// The `components.schemas` object.
    pub(super) fn into_value(self) -> Value {
        Value::Object(self.by_name)
    }
}

/// A reference to the component `name`.
pub(super) fn reference(name: &str) -> Value {
    serde_json::json!({ "$ref": format!("{PREFIX}{name}") })
}

/// `name` with every character a component key may not hold (`^[\w\d\.\-_]+$`) replaced
/// by `_`; `_` for an empty name.
pub(super) fn sanitize(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "_".to_owned()
    } else {
        clean
    }
}

/// `name` without a `_N` suffix that a clash added before (so `X_2` raises to `X_3`).
fn base_name(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((base, n)) if !base.is_empty() && n.parse::<u32>().is_ok_and(|n| n >= 2) => base,
        _ => name,
    }
}

/// Whether `schema` is a bare primitive type: `{"type": "string", "format": …}` and the
/// like, with no enumeration or combination.
fn primitive(schema: &Map<String, Value>) -> bool {
    let simple_type = matches!(
        schema.get("type").and_then(Value::as_str),
        Some("string" | "number" | "integer" | "boolean" | "null")
    );
    simple_type
        && !["enum", "const", "oneOf", "anyOf", "allOf", "not"]
            .iter()
            .any(|keyword| schema.contains_key(*keyword))
}

/// Whether `schema` (or one of `defs`) refers to the root, `#`.
fn refers_to_root(schema: &Value, defs: &Map<String, Value>) -> bool {
    fn walk(value: &Value) -> bool {
        match value {
            Value::Object(object) => {
                object.get("$ref").and_then(Value::as_str) == Some("#") || object.values().any(walk)
            }
            Value::Array(items) => items.iter().any(walk),
            _ => false,
        }
    }
    walk(schema) || defs.values().any(walk)
}

/// A copy of `schema` with its references rewritten through `names` (keyed by the `$defs`
/// name, `#` for the root), and `prefixItems` in draft 07's words.
fn convert(schema: &Value, names: &BTreeMap<String, String>) -> Value {
    let Value::Object(object) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in object {
        let converted = match key.as_str() {
            "$schema" => continue,
            "$ref" => match value.as_str() {
                Some(target) => Value::String(rewrite_ref(target, names)),
                None => value.clone(),
            },
            k if MANY.contains(&k) => match value {
                Value::Array(items) => {
                    Value::Array(items.iter().map(|item| convert(item, names)).collect())
                }
                other => other.clone(),
            },
            k if MAP.contains(&k) && value.is_object() => match value {
                Value::Object(entries) => Value::Object(
                    entries
                        .iter()
                        .map(|(name, item)| (name.clone(), convert(item, names)))
                        .collect(),
                ),
                other => other.clone(),
            },
            k if ONE.contains(&k) => match value {
                // The draft 07 (and 2019-09) array form of `items`.
                Value::Array(items) => {
                    Value::Array(items.iter().map(|item| convert(item, names)).collect())
                }
                other => convert(other, names),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if let Some(prefix) = out.remove("prefixItems") {
        if let Some(rest) = out.remove("items") {
            out.insert("additionalItems".to_owned(), rest);
        }
        out.insert("items".to_owned(), prefix);
    }
    Value::Object(out)
}

/// `#/$defs/X/…` → `#/components/schemas/{names[X]}/…`; `#` → the root's component.
fn rewrite_ref(target: &str, names: &BTreeMap<String, String>) -> String {
    if target == "#"
        && let Some(name) = names.get("#")
    {
        return format!("{PREFIX}{name}");
    }
    for defs in ["#/$defs/", "#/definitions/"] {
        if let Some(rest) = target.strip_prefix(defs) {
            let (escaped, tail) = match rest.find('/') {
                Some(at) => rest.split_at(at),
                None => (rest, ""),
            };
            let key = escaped.replace("~1", "/").replace("~0", "~");
            if let Some(name) = names.get(&key) {
                return format!("{PREFIX}{name}{tail}");
            }
        }
    }
    target.to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defs_are_hoisted_and_refs_rewritten() {
        let mut schemas = Schemas::default();
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Order",
            "type": "object",
            "properties": {"line": {"$ref": "#/$defs/Line"}},
            "$defs": {"Line": {"type": "object", "properties": {"n": {"type": "integer"}}}}
        });
        assert_eq!(
            schemas.root("fallback", &root),
            json!({"$ref": "#/components/schemas/Order"})
        );
        let all = schemas.into_value();
        assert_eq!(
            all["Order"],
            json!({"title": "Order", "type": "object",
                   "properties": {"line": {"$ref": "#/components/schemas/Line"}}})
        );
        assert_eq!(all["Line"]["properties"]["n"]["type"], "integer");
    }

    #[test]
    fn same_name_other_content_gets_another_name_and_same_content_is_shared() {
        let mut schemas = Schemas::default();
        let a = json!({"title": "A", "properties": {"x": {"$ref": "#/$defs/X"}},
                       "$defs": {"X": {"type": "string"}}});
        let b = json!({"title": "B", "properties": {"x": {"$ref": "#/$defs/X"}},
                       "$defs": {"X": {"type": "integer"}}});
        let c = json!({"title": "C", "properties": {"x": {"$ref": "#/$defs/X"}},
                       "$defs": {"X": {"type": "string"}}});
        schemas.root("a", &a);
        schemas.root("b", &b);
        schemas.root("c", &c);
        let all = schemas.into_value();
        assert_eq!(all["X"], json!({"type": "string"}));
        assert_eq!(all["X_2"], json!({"type": "integer"}));
        assert_eq!(
            all["B"]["properties"]["x"],
            json!({"$ref": "#/components/schemas/X_2"})
        );
        assert_eq!(
            all["C"]["properties"]["x"],
            json!({"$ref": "#/components/schemas/X"})
        );
    }

    #[test]
    fn a_clash_renames_the_schemas_that_refer_to_the_renamed_one_only_if_they_differ() {
        let mut schemas = Schemas::default();
        // Two roots named Outer whose Inner differ: both Inner and Outer get new names.
        let one = json!({"title": "Outer", "properties": {"i": {"$ref": "#/$defs/Inner"}},
                         "$defs": {"Inner": {"type": "string"}}});
        let two = json!({"title": "Outer", "properties": {"i": {"$ref": "#/$defs/Inner"}},
                         "$defs": {"Inner": {"type": "boolean"}}});
        assert_eq!(
            schemas.root("x", &one),
            json!({"$ref": "#/components/schemas/Outer"})
        );
        assert_eq!(
            schemas.root("x", &two),
            json!({"$ref": "#/components/schemas/Outer_2"})
        );
        let all = schemas.into_value();
        assert_eq!(
            all["Outer_2"]["properties"]["i"],
            json!({"$ref": "#/components/schemas/Inner_2"})
        );
    }

    #[test]
    fn recursion_through_the_root_and_tuples_become_draft_07() {
        let mut schemas = Schemas::default();
        let root = json!({"title": "Tree<T>", "type": "object", "properties": {
            "children": {"type": "array", "items": {"$ref": "#"}},
            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}],
                     "items": false, "minItems": 2}
        }});
        assert_eq!(
            schemas.root("x", &root),
            json!({"$ref": "#/components/schemas/Tree_T_"})
        );
        let all = schemas.into_value();
        let tree = &all["Tree_T_"]["properties"];
        assert_eq!(
            tree["children"]["items"],
            json!({"$ref": "#/components/schemas/Tree_T_"})
        );
        assert_eq!(
            tree["pair"]["items"],
            json!([{"type": "string"}, {"type": "number"}])
        );
        assert_eq!(tree["pair"]["additionalItems"], json!(false));
    }

    #[test]
    fn primitives_stay_inline_and_enumerations_become_components() {
        let mut schemas = Schemas::default();
        let double = json!({"$schema": "https://json-schema.org/draft/2020-12/schema",
                            "title": "double", "type": "number", "format": "double"});
        assert_eq!(
            schemas.root("x", &double),
            json!({"title": "double", "type": "number", "format": "double"})
        );
        let status = json!({"title": "Status", "type": "string", "enum": ["on", "off"]});
        assert_eq!(
            schemas.root("x", &status),
            json!({"$ref": "#/components/schemas/Status"})
        );
    }

    #[test]
    fn property_names_that_look_like_keywords_are_left_alone() {
        let mut schemas = Schemas::default();
        let root = json!({"type": "object", "properties": {
            "prefixItems": {"type": "string"}, "$schema": {"type": "string"}
        }, "default": {"$ref": "#/$defs/Nope"}});
        let inline = schemas.root("x", &root);
        assert_eq!(
            inline["properties"]["prefixItems"],
            json!({"type": "string"})
        );
        assert_eq!(inline["properties"]["$schema"], json!({"type": "string"}));
        assert_eq!(inline["default"], json!({"$ref": "#/$defs/Nope"}));
    }
}
