//! A format-neutral tree of input values with source spans. TOML text becomes a tree
//! with byte spans (for line/column in errors); JSON, Python dicts or any serde source
//! become a tree without spans. The inventory decoder reads only this tree.

use std::ops::Range;

/// One value of the input tree.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub kind: NodeKind,
    /// Byte range in the source text, when there is one.
    pub span: Option<Range<usize>>,
}

/// The kind of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// A string.
    String(String),
    /// An integer (wide enough to report out-of-range input instead of wrapping).
    Integer(i128),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A TOML date-time (kept as text; rpcc has no date fields, so it is always an error).
    Datetime(String),
    /// An array.
    Array(Vec<Node>),
    /// A table; keys keep input order and their own spans.
    Table(Vec<TableEntry>),
    /// An explicit null (JSON `null`, Python `None`): treated as an absent field.
    Null,
}

/// A key and its value in a table.
#[derive(Clone, Debug, PartialEq)]
pub struct TableEntry {
    /// The key.
    pub key: String,
    /// The key's span in the source.
    pub key_span: Option<Range<usize>>,
    /// The value.
    pub value: Node,
}

impl Node {
    /// A node without a span.
    pub fn new(kind: NodeKind) -> Self {
        Self { kind, span: None }
    }

    /// What kind of value this is, for "expected a string, found an integer".
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::String(_) => "a string",
            NodeKind::Integer(_) => "an integer",
            NodeKind::Float(_) => "a float",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Datetime(_) => "a date-time",
            NodeKind::Array(_) => "an array",
            NodeKind::Table(_) => "a table",
            NodeKind::Null => "null",
        }
    }

    /// Parse TOML text into a spanned tree. Syntax errors carry their location.
    pub fn from_toml(source: &str) -> Result<Node, TomlSyntaxError> {
        let doc = toml::de::DeTable::parse(source)
            .map_err(|e| TomlSyntaxError { message: e.message().trim().to_owned(), span: e.span() })?;
        let span = doc.span();
        Ok(Node { kind: NodeKind::Table(convert_table(doc.into_inner())), span: Some(span) })
    }
}

/// A TOML syntax error with its byte span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TomlSyntaxError {
    /// The parser's message.
    pub message: String,
    /// Where.
    pub span: Option<Range<usize>>,
}

fn convert_table(table: toml::de::DeTable<'_>) -> Vec<TableEntry> {
    table
        .into_iter()
        .map(|(k, v)| {
            let key_span = Some(k.span());
            TableEntry { key: k.into_inner().into_owned(), key_span, value: convert_value(v) }
        })
        .collect()
}

fn convert_value(v: toml::Spanned<toml::de::DeValue<'_>>) -> Node {
    use toml::de::DeValue;
    let span = Some(v.span());
    let kind = match v.into_inner() {
        DeValue::String(s) => NodeKind::String(s.into_owned()),
        DeValue::Integer(i) => NodeKind::Integer(i128::from_str_radix(i.as_str(), i.radix()).unwrap_or(i128::MAX)),
        DeValue::Float(f) => NodeKind::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => NodeKind::Bool(b),
        DeValue::Datetime(d) => NodeKind::Datetime(d.to_string()),
        DeValue::Array(a) => NodeKind::Array(a.into_iter().map(convert_value).collect()),
        DeValue::Table(t) => NodeKind::Table(convert_table(t)),
    };
    Node { kind, span }
}

impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an inventory value (string, number, boolean, list or table)")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::new(NodeKind::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::new(NodeKind::Integer(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::new(NodeKind::Integer(v.into())))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::new(NodeKind::Integer(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::new(NodeKind::Float(v)))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::new(NodeKind::Null))
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::new(NodeKind::Null))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        serde::Deserialize::deserialize(d)
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::new(NodeKind::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::new(NodeKind::String(v)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Node::new(NodeKind::Array(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Node>()? {
            entries.push(TableEntry { key, key_span: None, value });
        }
        Ok(Node::new(NodeKind::Table(entries)))
    }
}
