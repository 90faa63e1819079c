//! The OData query options the MDE API accepts: `$filter`, `$top`,
//! `$skip`, `$orderby`, `$count`, `$select`, `$expand` (alerts' evidence)
//! and `$skiptoken` (the position a server-made next link resumes from).
//!
//! Everything here is hand written (no parser generator) so that the accepted
//! language is exactly the small subset MDE documents, and so that the cost of
//! parsing is easy to reason about:
//!
//! * [`ODataQuery::parse`] splits and percent-decodes the raw query string and
//!   validates each option.
//! * [`parse_filter`] turns a `$filter` expression into a [`Filter`] tree with a
//!   tokenizer followed by a recursive-descent parser that uses precedence
//!   climbing for `and` / `or`.
//!
//! Untrusted input is bounded up front: a filter is at most
//! [`MAX_FILTER_LEN`] bytes, at most [`MAX_DEPTH`] levels of parentheses /
//! `not` / `any()` deep, and an `in` list holds at most [`MAX_IN_VALUES`]
//! values. Each stage is a single left-to-right pass, so parsing is linear in
//! the input length and cannot overflow the stack.
//!
//! Every failure is an [`ODataError`] whose text is written for the API user
//! (it becomes the `message` of a 400 response).

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use uuid::Uuid;

/// The largest `$top` MDE accepts.
pub const MAX_TOP: u32 = 10_000;

/// The longest `$filter` expression accepted, in bytes (after percent-decoding).
pub const MAX_FILTER_LEN: usize = 8 * 1024;

/// How many parentheses, `not`s and `any()`s may enclose one another.
pub const MAX_DEPTH: usize = 64;

/// The most values one `in (...)` list may hold.
pub const MAX_IN_VALUES: usize = 1000;
/// Most `and`/`or` operators in one filter. Each makes the tree one level
/// deeper, and every consumer of the tree walks it recursively.
pub const MAX_CONDITIONS: usize = 100;

/// A constant in a filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    DateTime(DateTime<Utc>),
    Guid(Uuid),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    /// The operator that keeps the meaning when its operands swap sides
    /// (`5 lt x` is `x gt 5`).
    pub fn mirrored(self) -> CompareOp {
        match self {
            CompareOp::Eq => CompareOp::Eq,
            CompareOp::Ne => CompareOp::Ne,
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::Ge => CompareOp::Le,
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::Le => CompareOp::Ge,
        }
    }

    /// The OData keyword for this operator.
    pub fn keyword(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    fn from_keyword(word: &str) -> Option<CompareOp> {
        const OPS: [CompareOp; 6] = [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ];
        OPS.into_iter()
            .find(|op| op.keyword().eq_ignore_ascii_case(word))
    }
}

/// A parsed `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `property op literal`; a `literal op property` input is normalised to this form with the operator mirrored (gt<->lt, ge<->le).
    Compare {
        property: String,
        op: CompareOp,
        value: Literal,
    },
    /// startswith(property, 'prefix')
    StartsWith {
        property: String,
        prefix: String,
    },
    /// property in ('a', 'b', 3)
    In {
        property: String,
        values: Vec<Literal>,
    },
    /// collection/any(var: predicate). Inside `predicate`, a `property` equal to `variable` denotes the element itself.
    Any {
        collection: String,
        variable: String,
        predicate: Box<Filter>,
    },
}

/// One `$orderby` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub property: String,
    pub descending: bool,
}

/// All OData options of one request. Absent options are `None` / empty / `false`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ODataQuery {
    pub filter: Option<Filter>,
    pub top: Option<u32>,
    pub skip: Option<u64>,
    pub order_by: Vec<OrderBy>,
    pub count: bool,
    pub select: Option<Vec<String>>,
    /// Navigation properties to expand, as written (the entity checks them).
    pub expand: Vec<String>,
    /// Opaque to clients: where a next link the server made resumes.
    pub skip_token: Option<String>,
    /// The page size a client without `$top` asked for in its
    /// `Prefer: odata.maxpagesize=N` header (not a query option).
    pub max_page_size: Option<u32>,
}

/// The problem found, worded for a person (it becomes the `message` of a 400 `ODataError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ODataError(pub String);

impl ODataError {
    fn new(message: impl Into<String>) -> ODataError {
        ODataError(message.into())
    }
}

// ---------------------------------------------------------------------------
// Query string
// ---------------------------------------------------------------------------

/// The options we understand; used to detect repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueryOption {
    Filter,
    Top,
    Skip,
    OrderBy,
    Count,
    Select,
    Expand,
    SkipToken,
}

impl ODataQuery {
    /// Parses a raw URL query string (the part after `?`, still percent-encoded, `+` meaning space).
    ///
    /// Parameters whose name does not start with `$` are ignored: they belong
    /// to the endpoint, not to OData.
    pub fn parse(raw_query: &str) -> Result<ODataQuery, ODataError> {
        // Be forgiving about callers that pass the `?` along.
        let raw = raw_query.strip_prefix('?').unwrap_or(raw_query);
        let mut query = ODataQuery::default();
        let mut seen: Vec<QueryOption> = Vec::new();

        // Split before decoding so that an encoded `&` or `=` stays data.
        for pair in raw.split('&').filter(|pair| !pair.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(raw_name)?;
            if !name.starts_with('$') {
                continue;
            }
            let option = match name.to_ascii_lowercase().as_str() {
                "$filter" => QueryOption::Filter,
                "$top" => QueryOption::Top,
                "$skip" => QueryOption::Skip,
                "$orderby" => QueryOption::OrderBy,
                "$count" => QueryOption::Count,
                "$select" => QueryOption::Select,
                "$expand" => QueryOption::Expand,
                "$skiptoken" => QueryOption::SkipToken,
                _ => {
                    return Err(ODataError(format!(
                        "Query option '{}' is not supported.",
                        shorten(&name, 64)
                    )))
                }
            };
            if seen.contains(&option) {
                return Err(ODataError(format!(
                    "Query option '{}' is specified more than once.",
                    name.to_ascii_lowercase()
                )));
            }
            seen.push(option);

            let value = percent_decode(raw_value)?;
            match option {
                QueryOption::Filter => query.filter = Some(parse_filter(&value)?),
                QueryOption::Top => query.top = Some(parse_top(&value)?),
                QueryOption::Skip => query.skip = Some(parse_skip(&value)?),
                QueryOption::OrderBy => query.order_by = parse_order_by(&value)?,
                QueryOption::Count => query.count = parse_count(&value)?,
                QueryOption::Select => query.select = Some(parse_names("$select", &value)?),
                QueryOption::Expand => query.expand = parse_names("$expand", &value)?,
                QueryOption::SkipToken => query.skip_token = Some(value),
            }
        }
        Ok(query)
    }
}

/// Decodes `%XX` escapes and `+` (form encoding for a space).
fn percent_decode(s: &str) -> Result<String, ODataError> {
    decode_escapes(s, true)
}

/// Decodes `%XX` escapes; with `plus_is_space`, `+` too (a query string's, not a path's).
fn decode_escapes(s: &str, plus_is_space: bool) -> Result<String, ODataError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|&b| hex_value(b));
                let lo = bytes.get(i + 2).and_then(|&b| hex_value(b));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    // `i` is at an ASCII `%`, so slicing there is safe.
                    let escape: String = s[i..].chars().take(3).collect();
                    return Err(ODataError(format!(
                        "The query string contains an invalid percent-encoding '{escape}'; \
                         '%' must be followed by two hexadecimal digits."
                    )));
                };
                out.push((hi << 4) | lo);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| ODataError::new("The query string is not valid UTF-8 after percent-decoding."))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_top(value: &str) -> Result<u32, ODataError> {
    let text = value.trim_matches(is_space);
    if !is_all_digits(text) {
        return Err(ODataError(format!(
            "The value '{}' for $top is not valid; expected a non-negative integer.",
            shorten(value, 64)
        )));
    }
    // Any digit string that does not fit, however long, is simply over the limit.
    match text.parse::<u32>() {
        Ok(0) => Err(ODataError(format!(
            "The value '0' for $top is not valid; expected 1 to {MAX_TOP}."
        ))),
        Ok(top) if top <= MAX_TOP => Ok(top),
        _ => Err(ODataError(format!(
            "The limit of '{MAX_TOP}' for Top query has been exceeded. \
             The value from the incoming request is '{}'.",
            shorten(text, 64)
        ))),
    }
}

fn parse_skip(value: &str) -> Result<u64, ODataError> {
    let text = value.trim_matches(is_space);
    if !is_all_digits(text) {
        return Err(ODataError(format!(
            "The value '{}' for $skip is not valid; expected a non-negative integer.",
            shorten(value, 64)
        )));
    }
    text.parse::<u64>().map_err(|_| {
        ODataError(format!(
            "The value '{}' for $skip is too large.",
            shorten(text, 64)
        ))
    })
}

fn parse_count(value: &str) -> Result<bool, ODataError> {
    let text = value.trim_matches(is_space);
    if text.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(ODataError(format!(
            "The value '{}' for $count is not valid; expected 'true' or 'false'.",
            shorten(value, 64)
        )))
    }
}

fn parse_order_by(value: &str) -> Result<Vec<OrderBy>, ODataError> {
    let mut items = Vec::new();
    for item in value.split(',') {
        let mut words = item.split(is_space).filter(|w| !w.is_empty());
        let Some(property) = words.next() else {
            return Err(ODataError(format!(
                "The $orderby value '{}' contains an empty item; \
                 expected 'property [asc|desc]' separated by commas.",
                shorten(value, 200)
            )));
        };
        if !is_identifier(property) {
            return Err(ODataError(format!(
                "'{}' in $orderby is not a valid property name.",
                shorten(property, 64)
            )));
        }
        let descending = match words.next() {
            None => false,
            Some(dir) if dir.eq_ignore_ascii_case("asc") => false,
            Some(dir) if dir.eq_ignore_ascii_case("desc") => true,
            Some(dir) => {
                return Err(ODataError(format!(
                    "'{}' in $orderby is not a sort direction; expected 'asc' or 'desc' after '{property}'.",
                    shorten(dir, 64)
                )))
            }
        };
        if let Some(extra) = words.next() {
            return Err(ODataError(format!(
                "Unexpected '{}' in $orderby item '{}'; separate items with commas.",
                shorten(extra, 64),
                shorten(item.trim_matches(is_space), 64)
            )));
        }
        items.push(OrderBy {
            property: property.to_string(),
            descending,
        });
    }
    Ok(items)
}

/// A comma-separated list of property names (`$select`, `$expand`).
fn parse_names(option: &str, value: &str) -> Result<Vec<String>, ODataError> {
    let mut properties = Vec::new();
    for item in value.split(',') {
        let property = item.trim_matches(is_space);
        if property.is_empty() {
            return Err(ODataError(format!(
                "The {option} value '{}' contains an empty item; expected property names separated by commas.",
                shorten(value, 200)
            )));
        }
        if !is_identifier(property) {
            return Err(ODataError(format!(
                "'{}' in {option} is not a valid property name.",
                shorten(property, 64)
            )));
        }
        properties.push(property.to_string());
    }
    Ok(properties)
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// Whitespace between tokens: spaces (from `+` or `%20`) and tabs.
fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_continue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(is_ident_start) && bytes.all(is_ident_continue)
}

/// Words with a grammatical role; they cannot name a property or a variable.
/// (`true`, `false` and `null` never reach this check: the tokenizer turns them
/// into literals.)
fn is_reserved(word: &str) -> bool {
    ["and", "or", "not", "in", "eq", "ne", "gt", "ge", "lt", "le"]
        .iter()
        .any(|kw| kw.eq_ignore_ascii_case(word))
}

/// Caps user text echoed in messages so that an 8 KiB filter does not
/// produce an 8 KiB error.
fn shorten(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------
// $filter: tokenizer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    LParen,
    RParen,
    Comma,
    Colon,
    Slash,
    /// An identifier or keyword; the parser decides which by context.
    Ident(&'a str),
    Lit(Literal),
    Eof,
}

#[derive(Debug, Clone)]
struct Token<'a> {
    tok: Tok<'a>,
    /// Byte range in the source, for error messages.
    start: usize,
    end: usize,
}

/// Builds "Syntax error at position N in '...': message." with N counted in
/// characters from 0 (the convention of Microsoft's OData library).
fn syntax_error(src: &str, byte_pos: usize, message: impl fmt::Display) -> ODataError {
    let position = src
        .get(..byte_pos)
        .map_or(byte_pos, |before| before.chars().count());
    ODataError(format!(
        "Syntax error at position {position} in '{}': {message}.",
        shorten(src, 200)
    ))
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// Splits a filter into tokens. Always ends with `Tok::Eof`.
fn tokenize(src: &str) -> Result<Vec<Token<'_>>, ODataError> {
    let mut lexer = Lexer {
        src,
        bytes: src.as_bytes(),
        pos: 0,
    };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let done = token.tok == Tok::Eof;
        tokens.push(token);
        if done {
            return Ok(tokens);
        }
    }
}

impl<'a> Lexer<'a> {
    fn error(&self, byte_pos: usize, message: impl fmt::Display) -> ODataError {
        syntax_error(self.src, byte_pos, message)
    }

    fn peek_byte(&self, offset: usize) -> Option<u8> {
        self.bytes.get(self.pos + offset).copied()
    }

    fn next_token(&mut self) -> Result<Token<'a>, ODataError> {
        while matches!(self.peek_byte(0), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(b) = self.peek_byte(0) else {
            return Ok(Token {
                tok: Tok::Eof,
                start,
                end: start,
            });
        };
        let single = match b {
            b'(' => Some(Tok::LParen),
            b')' => Some(Tok::RParen),
            b',' => Some(Tok::Comma),
            b':' => Some(Tok::Colon),
            b'/' => Some(Tok::Slash),
            _ => None,
        };
        let tok = if let Some(tok) = single {
            self.pos += 1;
            tok
        } else if b == b'\'' {
            Tok::Lit(Literal::String(self.string_body()?))
        } else if let Some(guid) = guid_at(self.src, start) {
            // GUIDs go first: they may start like a number or an identifier.
            self.pos += GUID_LEN;
            Tok::Lit(Literal::Guid(guid))
        } else if date_shape_at(self.bytes, start) {
            // Likewise a bare date starts like a number.
            Tok::Lit(Literal::DateTime(self.datetime()?))
        } else if b.is_ascii_digit() || b == b'-' {
            Tok::Lit(self.number()?)
        } else if is_ident_start(b) {
            self.word()?
        } else {
            let c = self.src[start..].chars().next().unwrap_or('?');
            return Err(self.error(start, format_args!("unexpected character '{c}'")));
        };
        Ok(Token {
            tok,
            start,
            end: self.pos,
        })
    }

    /// A single-quoted string at `self.pos`; `''` stands for one quote.
    fn string_body(&mut self) -> Result<String, ODataError> {
        let open = self.pos;
        self.pos += 1;
        let mut text = String::new();
        loop {
            // `'` is ASCII and never part of a multi-byte character, so byte
            // search keeps us on character boundaries.
            let Some(offset) = self.bytes[self.pos..].iter().position(|&b| b == b'\'') else {
                return Err(self.error(
                    open,
                    "the string starting here is missing its closing quote",
                ));
            };
            let chunk = &self.src[self.pos..self.pos + offset];
            // No stored text holds a NUL (PostgreSQL cannot store one).
            if let Some(nul) = chunk.find('\0') {
                return Err(self.error(self.pos + nul, "a string may not contain NUL characters"));
            }
            text.push_str(chunk);
            self.pos += offset + 1;
            if self.peek_byte(0) == Some(b'\'') {
                text.push('\'');
                self.pos += 1;
            } else {
                return Ok(text);
            }
        }
    }

    /// A bare date/time; `self.pos` is at a `dddd-dd-dd` prefix.
    fn datetime(&mut self) -> Result<DateTime<Utc>, ODataError> {
        let start = self.pos;
        // Take everything that could belong to the value, then parse it
        // strictly, so that `2018-08-01Zx` is one bad value, not two tokens.
        let len = self.bytes[start..]
            .iter()
            .take_while(|&&b| {
                b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'+' | b'-' | b'_')
            })
            .count();
        let text = &self.src[start..start + len];
        self.pos += len;
        parse_datetime_text(text).ok_or_else(|| {
            self.error(
                start,
                format_args!(
                    "'{}' is not a valid date/time; expected e.g. 2018-08-01, 2018-08-01Z or 2019-11-22T00:00:00Z",
                    shorten(text, 40)
                ),
            )
        })
    }

    /// An integer (`-12`) or a decimal (`1.5`, `2e10`).
    fn number(&mut self) -> Result<Literal, ODataError> {
        let start = self.pos;
        if self.peek_byte(0) == Some(b'-') {
            self.pos += 1;
        }
        if !self.peek_byte(0).is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.error(start, "expected a digit after '-'"));
        }
        self.skip_digits();
        let mut is_float = false;
        if self.peek_byte(0) == Some(b'.') && self.peek_byte(1).is_some_and(|b| b.is_ascii_digit())
        {
            self.pos += 1;
            self.skip_digits();
            is_float = true;
        }
        if matches!(self.peek_byte(0), Some(b'e' | b'E')) {
            let digits_at = if matches!(self.peek_byte(1), Some(b'+' | b'-')) {
                2
            } else {
                1
            };
            if self
                .peek_byte(digits_at)
                .is_some_and(|b| b.is_ascii_digit())
            {
                self.pos += digits_at;
                self.skip_digits();
                is_float = true;
            }
        }
        // A number glued to letters (`12abc`, `1.`) is a typo, not two tokens.
        if self
            .peek_byte(0)
            .is_some_and(|b| is_ident_continue(b) || b == b'.')
        {
            let len = self.bytes[start..]
                .iter()
                .take_while(|&&b| is_ident_continue(b) || matches!(b, b'.' | b'-' | b'+'))
                .count();
            let text = &self.src[start..start + len];
            return Err(self.error(
                start,
                format_args!("'{}' is not a valid number", shorten(text, 40)),
            ));
        }
        let text = &self.src[start..self.pos];
        if is_float {
            match text.parse::<f64>() {
                Ok(value) if value.is_finite() => Ok(Literal::Float(value)),
                _ => Err(self.error(
                    start,
                    format_args!("the number '{}' is out of range", shorten(text, 40)),
                )),
            }
        } else {
            text.parse::<i64>().map(Literal::Int).map_err(|_| {
                self.error(
                    start,
                    format_args!(
                        "the integer '{}' does not fit in 64 bits",
                        shorten(text, 40)
                    ),
                )
            })
        }
    }

    fn skip_digits(&mut self) {
        while self.peek_byte(0).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// An identifier, a keyword literal (`true`, `false`, `null`) or a typed
    /// literal such as `datetime'2018-08-01T00:00:00Z'`.
    fn word(&mut self) -> Result<Tok<'a>, ODataError> {
        let start = self.pos;
        while self.peek_byte(0).is_some_and(is_ident_continue) {
            self.pos += 1;
        }
        let word = &self.src[start..self.pos];
        if self.peek_byte(0) == Some(b'\'') {
            return self.typed_literal(start, word);
        }
        Ok(if word.eq_ignore_ascii_case("true") {
            Tok::Lit(Literal::Bool(true))
        } else if word.eq_ignore_ascii_case("false") {
            Tok::Lit(Literal::Bool(false))
        } else if word.eq_ignore_ascii_case("null") {
            Tok::Lit(Literal::Null)
        } else {
            Tok::Ident(word)
        })
    }

    fn typed_literal(&mut self, start: usize, type_name: &str) -> Result<Tok<'a>, ODataError> {
        let is_datetime = type_name.eq_ignore_ascii_case("datetime")
            || type_name.eq_ignore_ascii_case("datetimeoffset");
        let is_guid = type_name.eq_ignore_ascii_case("guid");
        if !is_datetime && !is_guid {
            return Err(self.error(
                start,
                format_args!(
                    "typed literals of type '{}' are not supported; only datetime'...' and guid'...' are",
                    shorten(type_name, 40)
                ),
            ));
        }
        let body = self.string_body()?;
        if is_datetime {
            parse_datetime_text(&body)
                .map(|dt| Tok::Lit(Literal::DateTime(dt)))
                .ok_or_else(|| {
                    self.error(
                        start,
                        format_args!("'{}' is not a valid date/time", shorten(&body, 40)),
                    )
                })
        } else {
            // The same strict 8-4-4-4-12 shape as a bare GUID.
            match guid_at(&body, 0) {
                Some(guid) if body.len() == GUID_LEN => Ok(Tok::Lit(Literal::Guid(guid))),
                _ => Err(self.error(
                    start,
                    format_args!("'{}' is not a valid GUID", shorten(&body, 40)),
                )),
            }
        }
    }
}

const GUID_LEN: usize = 36;

/// A GUID written as 8-4-4-4-12 hex digits at `start`, not followed by
/// anything that would make it part of a longer word.
fn guid_at(src: &str, start: usize) -> Option<Uuid> {
    let bytes = src.as_bytes().get(start..)?;
    let candidate = bytes.get(..GUID_LEN)?;
    let shape_ok = candidate.iter().enumerate().all(|(i, &b)| match i {
        8 | 13 | 18 | 23 => b == b'-',
        _ => b.is_ascii_hexdigit(),
    });
    let boundary_ok = !bytes
        .get(GUID_LEN)
        .is_some_and(|&b| is_ident_continue(b) || b == b'-');
    if !(shape_ok && boundary_ok) {
        return None;
    }
    // All 36 bytes are ASCII, so this slice is on character boundaries.
    Uuid::parse_str(&src[start..start + GUID_LEN]).ok()
}

/// Whether `dddd-dd-dd` starts at `start`.
fn date_shape_at(bytes: &[u8], start: usize) -> bool {
    let Some(candidate) = bytes.get(start..start + 10) else {
        return false;
    };
    candidate.iter().enumerate().all(|(i, &b)| match i {
        4 | 7 => b == b'-',
        _ => b.is_ascii_digit(),
    })
}

/// Parses ISO-8601 as MDE clients write it:
/// `YYYY-MM-DD[Thh:mm[:ss[.f{1,7}]]][Z|±hh:mm]`. No zone means UTC; a date
/// alone means midnight.
fn parse_datetime_text(text: &str) -> Option<DateTime<Utc>> {
    let mut cur = Cursor {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let year = cur.digits(4)?;
    cur.expect(b'-')?;
    let month = cur.digits(2)?;
    cur.expect(b'-')?;
    let day = cur.digits(2)?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;

    let mut time = NaiveTime::MIN;
    if cur.eat(b'T') || cur.eat(b't') {
        let hour = cur.digits(2)?;
        cur.expect(b':')?;
        let minute = cur.digits(2)?;
        let (mut second, mut nanos) = (0, 0);
        if cur.eat(b':') {
            second = cur.digits(2)?;
            if cur.eat(b'.') {
                nanos = cur.fraction_nanos()?;
            }
        }
        time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    }

    let offset_seconds = if cur.eat(b'Z') || cur.eat(b'z') {
        0
    } else if let Some(sign) = cur.sign() {
        let hours = cur.digits(2)?;
        cur.expect(b':')?;
        let minutes = cur.digits(2)?;
        if minutes >= 60 {
            return None;
        }
        sign * i32::try_from(hours * 3600 + minutes * 60).ok()?
    } else {
        0
    };
    if cur.pos != cur.bytes.len() {
        return None;
    }
    FixedOffset::east_opt(offset_seconds)?
        .from_local_datetime(&date.and_time(time))
        .single()
        .map(|dt| dt.with_timezone(&Utc))
}

/// A tiny byte cursor for [`parse_datetime_text`].
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn eat(&mut self, b: u8) -> bool {
        let hit = self.bytes.get(self.pos) == Some(&b);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        self.eat(b).then_some(())
    }

    fn sign(&mut self) -> Option<i32> {
        if self.eat(b'+') {
            Some(1)
        } else if self.eat(b'-') {
            Some(-1)
        } else {
            None
        }
    }

    /// Exactly `count` decimal digits.
    fn digits(&mut self, count: usize) -> Option<u32> {
        let slice = self.bytes.get(self.pos..self.pos + count)?;
        let mut value = 0u32;
        for &b in slice {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u32::from(b - b'0');
        }
        self.pos += count;
        Some(value)
    }

    /// One to seven fractional-second digits (.NET's 100 ns ticks), as nanoseconds.
    fn fraction_nanos(&mut self) -> Option<u32> {
        let count = self.bytes[self.pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if !(1..=7).contains(&count) {
            return None;
        }
        let value = self.digits(count)?;
        Some(value * 10u32.pow(9 - count as u32))
    }
}

// ---------------------------------------------------------------------------
// $filter: parser
// ---------------------------------------------------------------------------

/// Parses a `$filter` expression (already percent-decoded).
pub fn parse_filter(input: &str) -> Result<Filter, ODataError> {
    if input.len() > MAX_FILTER_LEN {
        return Err(ODataError(format!(
            "The $filter expression is too long ({} bytes); the limit is {MAX_FILTER_LEN} bytes.",
            input.len()
        )));
    }
    if input.trim_matches(is_space).is_empty() {
        return Err(ODataError::new("The $filter expression is empty."));
    }
    let tokens = tokenize(input)?;
    let mut parser = Parser {
        src: input,
        tokens,
        pos: 0,
        depth: 0,
        conditions: 0,
        lambda_variable: None,
    };
    let filter = parser.expression()?;
    let next = parser.peek();
    match next.tok {
        Tok::Eof => Ok(filter),
        Tok::RParen => Err(parser.error(next.start, "')' has no matching '('")),
        _ => Err(parser.error(
            next.start,
            format_args!(
                "expected 'and', 'or' or the end of the filter but found {}",
                parser.describe(next)
            ),
        )),
    }
}

/// One side of a comparison.
enum Operand {
    Property(String),
    Value(Literal),
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token<'a>>,
    pos: usize,
    /// Current nesting of parentheses, `not` and `any()`; bounded by [`MAX_DEPTH`].
    depth: usize,
    /// `and`/`or` operators seen so far; bounded by [`MAX_CONDITIONS`].
    conditions: usize,
    /// The variable of the enclosing `any()`, when inside one.
    lambda_variable: Option<&'a str>,
}

/// Binding strength of the binary boolean operators; higher binds tighter.
const PREC_OR: u8 = 1;
const PREC_AND: u8 = 2;

impl<'a> Parser<'a> {
    fn error(&self, byte_pos: usize, message: impl fmt::Display) -> ODataError {
        syntax_error(self.src, byte_pos, message)
    }

    fn peek(&self) -> &Token<'a> {
        self.peek_at(0)
    }

    /// The token `offset` ahead; past the end this is the final `Eof`.
    fn peek_at(&self, offset: usize) -> &Token<'a> {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.pos + offset).min(last)]
    }

    fn advance(&mut self) -> Token<'a> {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        token
    }

    /// Whether the next token is the keyword `word` (any case).
    fn at_keyword(&self, word: &str) -> bool {
        matches!(self.peek().tok, Tok::Ident(w) if w.eq_ignore_ascii_case(word))
    }

    /// How a token is quoted in a message.
    fn describe(&self, token: &Token<'_>) -> String {
        match token.tok {
            Tok::Eof => "the end of the filter".to_string(),
            _ => format!("'{}'", shorten(&self.src[token.start..token.end], 40)),
        }
    }

    /// Consumes the expected punctuation or fails with `what` ("expected ...").
    fn expect(&mut self, tok: Tok<'static>, what: &str) -> Result<Token<'a>, ODataError> {
        if self.peek().tok == tok {
            return Ok(self.advance());
        }
        let next = self.peek();
        Err(self.error(
            next.start,
            format_args!("{what} but found {}", self.describe(next)),
        ))
    }

    fn enter_nesting(&mut self) -> Result<(), ODataError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ODataError(format!(
                "The filter is nested too deeply (more than {MAX_DEPTH} levels of parentheses, 'not' or 'any')."
            )));
        }
        Ok(())
    }

    fn leave_nesting(&mut self) {
        self.depth -= 1;
    }

    /// expression := unary (('and' | 'or') unary)*, by precedence climbing.
    fn expression(&mut self) -> Result<Filter, ODataError> {
        self.binary(PREC_OR)
    }

    /// Parses operators binding at least as tightly as `min_prec`. The right
    /// operand is parsed at `prec + 1`, which makes both operators
    /// left-associative; with only two levels the recursion here stays shallow.
    fn binary(&mut self, min_prec: u8) -> Result<Filter, ODataError> {
        let mut left = self.unary()?;
        loop {
            let prec = if self.at_keyword("and") {
                PREC_AND
            } else if self.at_keyword("or") {
                PREC_OR
            } else {
                break;
            };
            if prec < min_prec {
                break;
            }
            self.conditions += 1;
            if self.conditions > MAX_CONDITIONS {
                return Err(ODataError(format!(
                    "The filter has more than {MAX_CONDITIONS} 'and'/'or' operators."
                )));
            }
            self.advance();
            let right = self.binary(prec + 1)?;
            left = if prec == PREC_AND {
                Filter::And(Box::new(left), Box::new(right))
            } else {
                Filter::Or(Box::new(left), Box::new(right))
            };
        }
        Ok(left)
    }

    /// unary := 'not' unary | primary
    fn unary(&mut self) -> Result<Filter, ODataError> {
        if !self.at_keyword("not") {
            return self.primary();
        }
        self.enter_nesting()?;
        self.advance();
        let inner = self.unary()?;
        self.leave_nesting();
        Ok(Filter::Not(Box::new(inner)))
    }

    /// primary := '(' expression ')' | function call | collection/any(...) | comparison
    fn primary(&mut self) -> Result<Filter, ODataError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::LParen => {
                self.enter_nesting()?;
                self.advance();
                let inner = self.expression()?;
                let what = format!(
                    "expected ')' to close the '(' at position {}",
                    self.src[..token.start].chars().count()
                );
                self.expect(Tok::RParen, &what)?;
                self.leave_nesting();
                Ok(inner)
            }
            Tok::Ident(name) if self.peek_at(1).tok == Tok::LParen => self.function(name, &token),
            Tok::Ident(name) if self.peek_at(1).tok == Tok::Slash => self.any(name, &token),
            _ => self.comparison(),
        }
    }

    /// A function call used as a boolean: only `startswith` is supported.
    fn function(&mut self, name: &'a str, token: &Token<'a>) -> Result<Filter, ODataError> {
        if name.eq_ignore_ascii_case("any") || name.eq_ignore_ascii_case("all") {
            return Err(self.error(
                token.start,
                format_args!(
                    "'{name}' must follow a collection property, as in machineTags/any(t: t eq 'value')"
                ),
            ));
        }
        if !name.eq_ignore_ascii_case("startswith") {
            return Err(self.error(
                token.start,
                format_args!(
                    "the function '{}' is not supported; the only supported function is startswith",
                    shorten(name, 40)
                ),
            ));
        }
        self.advance(); // name
        self.advance(); // (
        let property =
            match self.operand("expected a property name as the first argument of startswith")? {
                Operand::Property(property) => property,
                Operand::Value(_) => {
                    return Err(self.error(
                        token.start,
                        "the first argument of startswith must be a property name, not a value",
                    ))
                }
            };
        self.expect(
            Tok::Comma,
            "expected ',' after the first argument of startswith",
        )?;
        let prefix_token = self.advance();
        let Tok::Lit(Literal::String(prefix)) = prefix_token.tok else {
            return Err(self.error(
                prefix_token.start,
                format_args!(
                    "the second argument of startswith must be a string in single quotes, but found {}",
                    self.describe(&prefix_token)
                ),
            ));
        };
        self.expect(
            Tok::RParen,
            "expected ')' after the arguments of startswith",
        )?;
        let call = Filter::StartsWith { property, prefix };

        // `startswith(...) eq true` means the same as the bare call.
        let next = self.peek().clone();
        let op = match next.tok {
            Tok::Ident(word) => CompareOp::from_keyword(word),
            _ => None,
        };
        let Some(op @ (CompareOp::Eq | CompareOp::Ne)) = op else {
            return Ok(call);
        };
        self.advance();
        let value = self.advance();
        let Tok::Lit(Literal::Bool(expected)) = value.tok else {
            return Err(self.error(
                value.start,
                format_args!(
                    "startswith(...) can only be compared with true or false, but found {}",
                    self.describe(&value)
                ),
            ));
        };
        Ok(if (op == CompareOp::Eq) == expected {
            call
        } else {
            Filter::Not(Box::new(call))
        })
    }

    /// collection/any(variable: predicate)
    fn any(
        &mut self,
        collection: &'a str,
        collection_token: &Token<'a>,
    ) -> Result<Filter, ODataError> {
        self.advance(); // collection
        self.advance(); // '/'
        let operator = self.advance();
        let is_any = matches!(operator.tok, Tok::Ident(w) if w.eq_ignore_ascii_case("any"));
        if !is_any || self.peek().tok != Tok::LParen {
            let message = match operator.tok {
                Tok::Ident(w) if w.eq_ignore_ascii_case("all") => {
                    "the lambda operator 'all' is not supported; only any is".to_string()
                }
                _ => format!(
                    "'/' is only allowed as in 'collection/any(x: ...)'; found '{}/{}'",
                    shorten(collection, 40),
                    shorten(&self.src[operator.start..operator.end], 40)
                ),
            };
            return Err(self.error(operator.start, message));
        }
        if self.lambda_variable.is_some() {
            return Err(self.error(collection_token.start, "nested any() is not supported"));
        }
        self.check_property_name(collection_token, collection)?;
        self.advance(); // '('

        if self.peek().tok == Tok::RParen {
            return Err(self.error(
                self.peek().start,
                format_args!(
                    "any() without a lambda is not supported; write e.g. {collection}/any(x: x eq 'value')"
                ),
            ));
        }
        let variable_token = self.advance();
        let variable = match variable_token.tok {
            Tok::Ident(name) if !is_reserved(name) => name,
            _ => {
                return Err(self.error(
                    variable_token.start,
                    format_args!(
                        "expected a lambda variable name after 'any(' but found {}",
                        self.describe(&variable_token)
                    ),
                ))
            }
        };
        self.expect(Tok::Colon, "expected ':' after the lambda variable")?;

        self.enter_nesting()?;
        self.lambda_variable = Some(variable);
        let predicate = self.expression()?;
        self.lambda_variable = None;
        self.expect(Tok::RParen, "expected ')' to close any(")?;
        self.leave_nesting();

        Ok(Filter::Any {
            collection: collection.to_string(),
            variable: variable.to_string(),
            predicate: Box::new(predicate),
        })
    }

    /// comparison := operand op operand | property 'in' '(' literal (',' literal)* ')'
    fn comparison(&mut self) -> Result<Filter, ODataError> {
        let left_token = self.peek().clone();
        let left =
            self.operand("expected a property name, a value, 'not', '(' or startswith(...)")?;

        let op_token = self.peek().clone();
        if let Tok::Ident(word) = op_token.tok {
            if word.eq_ignore_ascii_case("in") {
                let Operand::Property(property) = left else {
                    return Err(self.error(
                        left_token.start,
                        "the left side of 'in' must be a property name",
                    ));
                };
                self.advance();
                let values = self.in_list()?;
                return Ok(Filter::In { property, values });
            }
            if let Some(op) = CompareOp::from_keyword(word) {
                self.advance();
                let after = format!("expected a value after '{word}'");
                let right_token = self.peek().clone();
                let right = self.operand(&after)?;
                return match (left, right) {
                    (Operand::Property(property), Operand::Value(value)) => Ok(Filter::Compare {
                        property,
                        op,
                        value,
                    }),
                    (Operand::Value(value), Operand::Property(property)) => Ok(Filter::Compare {
                        property,
                        op: op.mirrored(),
                        value,
                    }),
                    (Operand::Property(_), Operand::Property(_)) => Err(self.error(
                        right_token.start,
                        format_args!("comparing two properties is not supported; {after}"),
                    )),
                    (Operand::Value(_), Operand::Value(_)) => Err(self.error(
                        left_token.start,
                        "a comparison needs a property name on one side, but both sides are values",
                    )),
                };
            }
        }
        let subject = match left {
            Operand::Property(_) => "after the property",
            Operand::Value(_) => "after the value",
        };
        Err(self.error(
            op_token.start,
            format_args!(
                "expected an operator (eq, ne, gt, ge, lt, le or in) {subject} {} but found {}",
                self.describe(&left_token),
                self.describe(&op_token)
            ),
        ))
    }

    /// '(' literal (',' literal)* ')'
    fn in_list(&mut self) -> Result<Vec<Literal>, ODataError> {
        self.expect(Tok::LParen, "expected '(' after 'in'")?;
        let mut values = Vec::new();
        loop {
            let token = self.advance();
            let Tok::Lit(value) = token.tok else {
                let message = if token.tok == Tok::RParen && values.is_empty() {
                    "the list after 'in' needs at least one value".to_string()
                } else {
                    format!(
                        "expected a value in the list after 'in' but found {}",
                        self.describe(&token)
                    )
                };
                return Err(self.error(token.start, message));
            };
            if values.len() == MAX_IN_VALUES {
                return Err(ODataError(format!(
                    "The list after 'in' has more than {MAX_IN_VALUES} values."
                )));
            }
            values.push(value);
            let separator = self.advance();
            match separator.tok {
                Tok::Comma => continue,
                Tok::RParen => return Ok(values),
                _ => {
                    return Err(self.error(
                        separator.start,
                        format_args!(
                            "expected ',' or ')' in the list after 'in' but found {}",
                            self.describe(&separator)
                        ),
                    ))
                }
            }
        }
    }

    /// A property name or a literal. `expected` completes the error message
    /// when neither is found.
    fn operand(&mut self, expected: &str) -> Result<Operand, ODataError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Lit(value) => {
                self.advance();
                Ok(Operand::Value(value))
            }
            Tok::Ident(name) => {
                match self.peek_at(1).tok {
                    Tok::LParen => {
                        return Err(self.error(
                            token.start,
                            format_args!(
                                "the function '{}' cannot be used as a value here",
                                shorten(name, 40)
                            ),
                        ))
                    }
                    Tok::Slash => {
                        return Err(self.error(
                            token.start,
                            "'/' is only allowed as in 'collection/any(x: ...)'",
                        ))
                    }
                    _ => {}
                }
                self.check_property_name(&token, name)?;
                self.advance();
                Ok(Operand::Property(name.to_string()))
            }
            _ => Err(self.error(
                token.start,
                format_args!("{expected} but found {}", self.describe(&token)),
            )),
        }
    }

    /// Rejects keywords used as names, and inside `any()` anything but its variable.
    fn check_property_name(&self, token: &Token<'a>, name: &str) -> Result<(), ODataError> {
        if is_reserved(name) {
            return Err(self.error(
                token.start,
                format_args!("expected a property name or a value but found the keyword '{name}'"),
            ));
        }
        match self.lambda_variable {
            Some(variable) if variable != name => Err(self.error(
                token.start,
                format_args!(
                    "inside any(), only the lambda variable '{variable}' can be used, not '{}'",
                    shorten(name, 40)
                ),
            )),
            _ => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Function parameters: `findbyip(ip='10.1.2.3',timestamp=2019-09-22T08:44:05Z)`
// ---------------------------------------------------------------------------

/// The longest parameter list of a function call accepted, in bytes.
pub const MAX_FUNCTION_PARAMETERS_LEN: usize = 1024;

/// Parses the parameters of an OData function call, the text between its
/// parentheses as it stands in the path (still percent-encoded):
/// `name=literal` pairs separated by commas, each literal as in `$filter`
/// (`'text'` with `''` for a quote, a date/time, a number, `true`, `null`, a GUID).
pub fn parse_function_parameters(raw: &str) -> Result<Vec<(String, Literal)>, ODataError> {
    if raw.len() > MAX_FUNCTION_PARAMETERS_LEN {
        return Err(ODataError(format!(
            "The function parameters are too long ({} bytes); the limit is {MAX_FUNCTION_PARAMETERS_LEN} bytes.",
            raw.len()
        )));
    }
    let text = decode_escapes(raw, false)?;
    let mut parameters: Vec<(String, Literal)> = Vec::new();
    for part in split_outside_quotes(&text)? {
        let part = part.trim_matches(is_space);
        let Some((name, value)) = part.split_once('=') else {
            return Err(ODataError(format!(
                "Function parameter '{}' is not of the form name=value.",
                shorten(part, 64)
            )));
        };
        let name = name.trim_matches(is_space);
        if !is_identifier(name) {
            return Err(ODataError(format!(
                "'{}' is not a parameter name.",
                shorten(name, 64)
            )));
        }
        if parameters.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(ODataError(format!(
                "Function parameter '{name}' is given more than once."
            )));
        }
        let value = value.trim_matches(is_space);
        let literal = match tokenize(value)?.as_slice() {
            [Token {
                tok: Tok::Lit(literal),
                ..
            }, Token { tok: Tok::Eof, .. }] => literal.clone(),
            _ => {
                return Err(ODataError(format!(
                    "The value of function parameter '{name}' is not a literal: '{}'; quote text ('10.1.2.3').",
                    shorten(value, 64)
                )))
            }
        };
        parameters.push((name.to_string(), literal));
    }
    Ok(parameters)
}

/// `text` split at the commas outside single-quoted strings; none for blank text.
fn split_outside_quotes(text: &str) -> Result<Vec<&str>, ODataError> {
    if text.trim_matches(is_space).is_empty() {
        return Ok(vec![]);
    }
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, b) in text.bytes().enumerate() {
        match b {
            // `''` inside a string toggles twice: it stays a string.
            b'\'' => quoted = !quoted,
            b',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(ODataError::new(
            "A function parameter's string is missing its closing quote.",
        ));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// A date/time as `$filter` literals and function parameters write it.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    parse_datetime_text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    // -- helpers ------------------------------------------------------------

    fn filter(input: &str) -> Filter {
        parse_filter(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
    }

    fn filter_err(input: &str) -> String {
        match parse_filter(input) {
            Ok(f) => panic!("{input:?} should fail, got {f:?}"),
            Err(e) => e.0,
        }
    }

    fn query(raw: &str) -> ODataQuery {
        ODataQuery::parse(raw).unwrap_or_else(|e| panic!("{raw:?} should parse: {e}"))
    }

    fn query_err(raw: &str) -> String {
        match ODataQuery::parse(raw) {
            Ok(q) => panic!("{raw:?} should fail, got {q:?}"),
            Err(e) => e.0,
        }
    }

    /// Asserts that `message` mentions every one of `needles`.
    #[track_caller]
    fn assert_mentions(message: &str, needles: &[&str]) {
        for needle in needles {
            assert!(
                message.contains(needle),
                "message {message:?} should mention {needle:?}"
            );
        }
    }

    fn cmp(property: &str, op: CompareOp, value: Literal) -> Filter {
        Filter::Compare {
            property: property.to_string(),
            op,
            value,
        }
    }

    fn s(text: &str) -> Literal {
        Literal::String(text.to_string())
    }

    fn and(a: Filter, b: Filter) -> Filter {
        Filter::And(Box::new(a), Box::new(b))
    }

    fn or(a: Filter, b: Filter) -> Filter {
        Filter::Or(Box::new(a), Box::new(b))
    }

    fn not(a: Filter) -> Filter {
        Filter::Not(Box::new(a))
    }

    fn starts(property: &str, prefix: &str) -> Filter {
        Filter::StartsWith {
            property: property.to_string(),
            prefix: prefix.to_string(),
        }
    }

    fn any(collection: &str, variable: &str, predicate: Filter) -> Filter {
        Filter::Any {
            collection: collection.to_string(),
            variable: variable.to_string(),
            predicate: Box::new(predicate),
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, sec: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, sec).unwrap()
    }

    fn dt(input: &str) -> DateTime<Utc> {
        match filter(&format!("lastSeen gt {input}")) {
            Filter::Compare {
                value: Literal::DateTime(value),
                ..
            } => value,
            other => panic!("{input:?} gave {other:?}"),
        }
    }

    // -- MDE documentation examples ------------------------------------------

    #[test]
    fn doc_risk_score_eq() {
        assert_eq!(
            query("$filter=riskScore+eq+'High'").filter,
            Some(cmp("riskScore", CompareOp::Eq, s("High")))
        );
    }

    #[test]
    fn doc_health_status_with_top() {
        let q = query("$filter=healthStatus+ne+'Active'&$top=100");
        assert_eq!(
            q,
            ODataQuery {
                filter: Some(cmp("healthStatus", CompareOp::Ne, s("Active"))),
                top: Some(100),
                ..ODataQuery::default()
            }
        );
    }

    #[test]
    fn doc_last_seen_date() {
        assert_eq!(
            query("$filter=lastSeen gt 2018-08-01Z").filter,
            Some(cmp(
                "lastSeen",
                CompareOp::Gt,
                Literal::DateTime(utc(2018, 8, 1, 0, 0, 0))
            ))
        );
    }

    #[test]
    fn doc_startswith() {
        assert_eq!(
            query("$filter=startswith(computerDnsName,'mymachine')").filter,
            Some(starts("computerDnsName", "mymachine"))
        );
    }

    #[test]
    fn doc_machine_tags_any() {
        assert_eq!(
            query("$filter=machineTags/any(tag: tag eq 'ExampleTag')").filter,
            Some(any(
                "machineTags",
                "tag",
                cmp("tag", CompareOp::Eq, s("ExampleTag"))
            ))
        );
    }

    #[test]
    fn doc_requestor_and_type() {
        assert_eq!(
            query("$filter=requestor eq 'Analyst@contoso.com' and type eq 'RunAntiVirusScan'")
                .filter,
            Some(and(
                cmp("requestor", CompareOp::Eq, s("Analyst@contoso.com")),
                cmp("type", CompareOp::Eq, s("RunAntiVirusScan"))
            ))
        );
    }

    #[test]
    fn doc_machine_id_with_top() {
        let q = query("$filter=machineId eq 'f46b9bb259ed4a7fb9981b73510e3cc7aa81ec1f'&$top=2");
        assert_eq!(
            q.filter,
            Some(cmp(
                "machineId",
                CompareOp::Eq,
                s("f46b9bb259ed4a7fb9981b73510e3cc7aa81ec1f")
            ))
        );
        assert_eq!(q.top, Some(2));
    }

    #[test]
    fn doc_in_list() {
        assert_eq!(
            filter("id in ('a','b')"),
            Filter::In {
                property: "id".into(),
                values: vec![s("a"), s("b")]
            }
        );
    }

    #[test]
    fn doc_count() {
        assert!(query("$count=true").count);
    }

    #[test]
    fn doc_percent_encoded() {
        assert_eq!(
            query("%24filter=riskScore%20eq%20%27High%27").filter,
            Some(cmp("riskScore", CompareOp::Eq, s("High")))
        );
    }

    // -- query options ---------------------------------------------------------

    #[test]
    fn empty_query_is_default() {
        assert_eq!(query(""), ODataQuery::default());
        assert_eq!(query("?"), ODataQuery::default());
        assert_eq!(query("&&"), ODataQuery::default());
    }

    #[test]
    fn all_options_together() {
        let q = query(
            "?$filter=a+eq+1&$top=5&$skip=10&$orderby=lastSeen+desc,id&$count=true&$select=id,computerDnsName",
        );
        assert_eq!(
            q,
            ODataQuery {
                filter: Some(cmp("a", CompareOp::Eq, Literal::Int(1))),
                top: Some(5),
                skip: Some(10),
                order_by: vec![
                    OrderBy {
                        property: "lastSeen".into(),
                        descending: true
                    },
                    OrderBy {
                        property: "id".into(),
                        descending: false
                    },
                ],
                count: true,
                select: Some(vec!["id".into(), "computerDnsName".into()]),
                ..ODataQuery::default()
            }
        );
    }

    #[test]
    fn option_names_are_case_insensitive() {
        let q = query("$Top=3&$SKIP=4&$Count=TRUE&$FILTER=a eq 1&$OrderBy=a DESC&$SeLeCt=a");
        assert_eq!(q.top, Some(3));
        assert_eq!(q.skip, Some(4));
        assert!(q.count);
        assert!(q.filter.is_some());
        assert!(q.order_by[0].descending);
        assert_eq!(q.select, Some(vec!["a".to_string()]));
    }

    #[test]
    fn non_dollar_parameters_are_ignored() {
        let q = query("tag=abc&$top=1&api-version=1.0&weird=%zz&flag");
        assert_eq!(q.top, Some(1));
    }

    #[test]
    fn encoded_ampersand_stays_in_value() {
        assert_eq!(
            query("$filter=name%20eq%20'a%26b%3Dc'").filter,
            Some(cmp("name", CompareOp::Eq, s("a&b=c")))
        );
    }

    #[test]
    fn percent_decoding_handles_utf8() {
        assert_eq!(
            query("$filter=name+eq+'caf%C3%A9'").filter,
            Some(cmp("name", CompareOp::Eq, s("café")))
        );
    }

    #[test]
    fn plus_must_be_encoded_in_offsets() {
        // A raw `+` is a space, so an offset has to be sent as %2B.
        assert_eq!(
            query("$filter=lastSeen+gt+2019-11-22T02:00:00%2B02:00").filter,
            Some(cmp(
                "lastSeen",
                CompareOp::Gt,
                Literal::DateTime(utc(2019, 11, 22, 0, 0, 0))
            ))
        );
    }

    #[test]
    fn unsupported_options() {
        assert_eq!(query("$expand=evidence").expand, vec!["evidence"]);
        assert_mentions(&query_err("$expand=a,,b"), &["$expand", "empty item"]);
        assert_eq!(query("$skiptoken=a%2Bb").skip_token.as_deref(), Some("a+b"));
        assert_eq!(query_err("$foo=1"), "Query option '$foo' is not supported.");
        assert_mentions(&query_err("%24search=x"), &["'$search'", "not supported"]);
    }

    #[test]
    fn repeated_option() {
        assert_mentions(&query_err("$top=1&$top=2"), &["'$top'", "more than once"]);
        assert_mentions(&query_err("$top=1&$TOP=2"), &["'$top'", "more than once"]);
        assert_mentions(
            &query_err("$filter=a eq 1&$filter=b eq 2"),
            &["'$filter'", "more than once"],
        );
    }

    #[test]
    fn invalid_percent_encoding() {
        assert_mentions(&query_err("$filter=a%2"), &["'%2'", "percent-encoding"]);
        assert_mentions(&query_err("$filter=a%zzb"), &["'%zz'", "percent-encoding"]);
        assert_mentions(&query_err("%2$top=1"), &["percent-encoding"]);
        assert_mentions(&query_err("$filter=a%"), &["'%'", "percent-encoding"]);
        assert_mentions(&query_err("$filter=%FF"), &["UTF-8"]);
    }

    #[test]
    fn top_values() {
        assert_mentions(&query_err("$top=0"), &["'0'", "1 to 10000"]);
        assert_eq!(query("$top=1").top, Some(1));
        assert_eq!(query("$top=10000").top, Some(10_000));
        assert_eq!(
            query_err("$top=20000"),
            "The limit of '10000' for Top query has been exceeded. The value from the incoming request is '20000'."
        );
        assert_mentions(
            &query_err("$top=99999999999999999999999"),
            &["limit of '10000'", "'99999999999999999999999'"],
        );
        assert_mentions(&query_err("$top=abc"), &["'abc'", "$top"]);
        assert_mentions(&query_err("$top=-1"), &["'-1'", "$top", "non-negative"]);
        assert_mentions(&query_err("$top=1.5"), &["'1.5'", "$top"]);
        assert_mentions(&query_err("$top="), &["$top"]);
        assert_mentions(&query_err("$top"), &["$top"]);
    }

    #[test]
    fn skip_values() {
        assert_eq!(query("$skip=0").skip, Some(0));
        assert_eq!(query("$skip=18446744073709551615").skip, Some(u64::MAX));
        assert_mentions(
            &query_err("$skip=18446744073709551616"),
            &["$skip", "too large"],
        );
        assert_mentions(&query_err("$skip=-5"), &["'-5'", "$skip"]);
        assert_mentions(&query_err("$skip=x"), &["'x'", "$skip"]);
        assert_mentions(&query_err("$skip="), &["$skip"]);
    }

    #[test]
    fn count_values() {
        assert!(!query("$count=false").count);
        assert!(query("$count=True").count);
        assert!(!query("$count=FALSE").count);
        assert_mentions(&query_err("$count=yes"), &["'yes'", "$count"]);
        assert_mentions(&query_err("$count="), &["$count"]);
    }

    #[test]
    fn order_by_values() {
        assert_eq!(
            query("$orderby=lastSeen").order_by,
            vec![OrderBy {
                property: "lastSeen".into(),
                descending: false
            }]
        );
        assert_eq!(
            query("$orderby=a%20ASC,%20b+Desc,c").order_by,
            vec![
                OrderBy {
                    property: "a".into(),
                    descending: false
                },
                OrderBy {
                    property: "b".into(),
                    descending: true
                },
                OrderBy {
                    property: "c".into(),
                    descending: false
                },
            ]
        );
        assert_mentions(&query_err("$orderby="), &["$orderby", "empty item"]);
        assert_mentions(&query_err("$orderby=a,,b"), &["$orderby", "empty item"]);
        assert_mentions(&query_err("$orderby=a,"), &["$orderby", "empty item"]);
        assert_mentions(
            &query_err("$orderby=a sideways"),
            &["'sideways'", "asc", "desc"],
        );
        assert_mentions(&query_err("$orderby=a desc b"), &["'b'", "commas"]);
        assert_mentions(&query_err("$orderby=1abc"), &["'1abc'", "$orderby"]);
        assert_mentions(&query_err("$orderby=a/b"), &["'a/b'", "$orderby"]);
    }

    #[test]
    fn select_values() {
        assert_eq!(
            query("$select=id,+computerDnsName").select,
            Some(vec!["id".to_string(), "computerDnsName".to_string()])
        );
        assert_mentions(&query_err("$select="), &["$select", "empty item"]);
        assert_mentions(&query_err("$select=a,,b"), &["$select", "empty item"]);
        assert_mentions(&query_err("$select=a b"), &["'a b'", "$select"]);
        assert_mentions(&query_err("$select=*"), &["'*'", "$select"]);
    }

    #[test]
    fn filter_errors_surface_through_parse() {
        assert_mentions(&query_err("$filter="), &["$filter", "empty"]);
        assert_mentions(
            &query_err("$filter=riskScore+eq"),
            &["expected a value after 'eq'"],
        );
    }

    // -- filter: constructs ------------------------------------------------------

    #[test]
    fn every_comparison_operator() {
        for (word, op) in [
            ("eq", CompareOp::Eq),
            ("ne", CompareOp::Ne),
            ("gt", CompareOp::Gt),
            ("ge", CompareOp::Ge),
            ("lt", CompareOp::Lt),
            ("le", CompareOp::Le),
            ("EQ", CompareOp::Eq),
            ("Gt", CompareOp::Gt),
        ] {
            assert_eq!(
                filter(&format!("x {word} 1")),
                cmp("x", op, Literal::Int(1))
            );
        }
    }

    #[test]
    fn literal_on_the_left_is_mirrored() {
        assert_eq!(filter("5 lt x"), cmp("x", CompareOp::Gt, Literal::Int(5)));
        assert_eq!(filter("5 le x"), cmp("x", CompareOp::Ge, Literal::Int(5)));
        assert_eq!(filter("5 gt x"), cmp("x", CompareOp::Lt, Literal::Int(5)));
        assert_eq!(filter("5 ge x"), cmp("x", CompareOp::Le, Literal::Int(5)));
        assert_eq!(filter("'a' eq x"), cmp("x", CompareOp::Eq, s("a")));
        assert_eq!(filter("'a' ne x"), cmp("x", CompareOp::Ne, s("a")));
    }

    #[test]
    fn literals() {
        let value = |input: &str| match filter(&format!("x eq {input}")) {
            Filter::Compare { value, .. } => value,
            other => panic!("{other:?}"),
        };
        assert_eq!(value("'it''s'"), s("it's"));
        assert_eq!(value("''"), s(""));
        assert_eq!(value("''''"), s("'"));
        assert_eq!(value("'a b\tc'"), s("a b\tc"));
        assert_eq!(value("'ünïcødé'"), s("ünïcødé"));
        assert_eq!(value("42"), Literal::Int(42));
        assert_eq!(value("-42"), Literal::Int(-42));
        assert_eq!(value("007"), Literal::Int(7));
        assert_eq!(value("9223372036854775807"), Literal::Int(i64::MAX));
        assert_eq!(value("-9223372036854775808"), Literal::Int(i64::MIN));
        assert_eq!(value("1.5"), Literal::Float(1.5));
        assert_eq!(value("-0.25"), Literal::Float(-0.25));
        assert_eq!(value("2e3"), Literal::Float(2000.0));
        assert_eq!(value("1.5E-2"), Literal::Float(0.015));
        assert_eq!(value("true"), Literal::Bool(true));
        assert_eq!(value("FALSE"), Literal::Bool(false));
        assert_eq!(value("Null"), Literal::Null);
        let guid: Uuid = "d3f1bb5c-1f0e-4d4a-9f1e-3f1c4a1b2c3d".parse().unwrap();
        assert_eq!(
            value("d3f1bb5c-1f0e-4d4a-9f1e-3f1c4a1b2c3d"),
            Literal::Guid(guid)
        );
        assert_eq!(
            value("D3F1BB5C-1F0E-4D4A-9F1E-3F1C4A1B2C3D"),
            Literal::Guid(guid)
        );
        assert_eq!(
            value("guid'd3f1bb5c-1f0e-4d4a-9f1e-3f1c4a1b2c3d'"),
            Literal::Guid(guid)
        );
        // Starts with digits, like a number, and with letters, like a name.
        let numeric: Uuid = "12345678-1234-1234-1234-123456789012".parse().unwrap();
        assert_eq!(
            value("12345678-1234-1234-1234-123456789012"),
            Literal::Guid(numeric)
        );
        let alpha: Uuid = "abcdefab-cdef-abcd-efab-cdefabcdefab".parse().unwrap();
        assert_eq!(
            value("abcdefab-cdef-abcd-efab-cdefabcdefab"),
            Literal::Guid(alpha)
        );
    }

    #[test]
    fn datetimes() {
        assert_eq!(dt("2018-08-01Z"), utc(2018, 8, 1, 0, 0, 0));
        assert_eq!(dt("2018-08-01"), utc(2018, 8, 1, 0, 0, 0));
        assert_eq!(dt("2019-11-22T00:00:00Z"), utc(2019, 11, 22, 0, 0, 0));
        assert_eq!(dt("2019-11-22T13:14:15"), utc(2019, 11, 22, 13, 14, 15));
        assert_eq!(dt("2019-11-22T13:14Z"), utc(2019, 11, 22, 13, 14, 0));
        assert_eq!(
            dt("2021-01-25T07:27:36.052313Z"),
            utc(2021, 1, 25, 7, 27, 36) + chrono::Duration::microseconds(52_313)
        );
        assert_eq!(
            dt("2021-01-25T07:27:36.1234567Z"),
            utc(2021, 1, 25, 7, 27, 36) + chrono::Duration::nanoseconds(123_456_700)
        );
        assert_eq!(dt("2019-11-22T02:00:00+02:00"), utc(2019, 11, 22, 0, 0, 0));
        assert_eq!(dt("2019-11-21T22:30:00-01:30"), utc(2019, 11, 22, 0, 0, 0));
        assert_eq!(
            dt("datetime'2018-08-01T00:00:00Z'"),
            utc(2018, 8, 1, 0, 0, 0)
        );
        assert_eq!(
            dt("DateTimeOffset'2018-08-01T00:00:00Z'"),
            utc(2018, 8, 1, 0, 0, 0)
        );
        assert_eq!(dt("2020-02-29"), utc(2020, 2, 29, 0, 0, 0));
        // Glued to a closing parenthesis.
        assert_eq!(
            filter("(lastSeen gt 2018-08-01Z)"),
            cmp(
                "lastSeen",
                CompareOp::Gt,
                Literal::DateTime(utc(2018, 8, 1, 0, 0, 0))
            )
        );
    }

    #[test]
    fn in_lists() {
        assert_eq!(
            filter("x IN ('a', 3, true, null, 2018-08-01Z)"),
            Filter::In {
                property: "x".into(),
                values: vec![
                    s("a"),
                    Literal::Int(3),
                    Literal::Bool(true),
                    Literal::Null,
                    Literal::DateTime(utc(2018, 8, 1, 0, 0, 0)),
                ]
            }
        );
        assert_eq!(
            filter("x in('only')"),
            Filter::In {
                property: "x".into(),
                values: vec![s("only")]
            }
        );
        let max = format!("x in ({})", vec!["1"; MAX_IN_VALUES].join(","));
        match filter(&max) {
            Filter::In { values, .. } => assert_eq!(values.len(), MAX_IN_VALUES),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn precedence_and_associativity() {
        let a = || cmp("a", CompareOp::Eq, Literal::Int(1));
        let b = || cmp("b", CompareOp::Eq, Literal::Int(2));
        let c = || cmp("c", CompareOp::Eq, Literal::Int(3));
        assert_eq!(
            filter("a eq 1 or b eq 2 and c eq 3"),
            or(a(), and(b(), c()))
        );
        assert_eq!(
            filter("a eq 1 and b eq 2 or c eq 3"),
            or(and(a(), b()), c())
        );
        assert_eq!(
            filter("(a eq 1 or b eq 2) and c eq 3"),
            and(or(a(), b()), c())
        );
        assert_eq!(
            filter("a eq 1 and b eq 2 and c eq 3"),
            and(and(a(), b()), c())
        );
        assert_eq!(filter("a eq 1 or b eq 2 or c eq 3"), or(or(a(), b()), c()));
        assert_eq!(filter("not a eq 1 and b eq 2"), and(not(a()), b()));
        assert_eq!(filter("not (a eq 1 and b eq 2)"), not(and(a(), b())));
        assert_eq!(filter("not not a eq 1"), not(not(a())));
        assert_eq!(
            filter("NOT a eq 1 OR b eq 2 AND c eq 3"),
            or(not(a()), and(b(), c()))
        );
        assert_eq!(filter("((a eq 1))"), a());
        assert_eq!(filter("not(a eq 1)"), not(a()));
        assert_eq!(filter("\ta eq 1\tand\tb eq 2 "), and(a(), b()));
    }

    #[test]
    fn startswith_forms() {
        assert_eq!(filter("StartsWith(name, 'x')"), starts("name", "x"));
        assert_eq!(filter("startswith( name , 'x' )"), starts("name", "x"));
        assert_eq!(filter("startswith(name,'x') eq true"), starts("name", "x"));
        assert_eq!(filter("startswith(name,'x') EQ TRUE"), starts("name", "x"));
        assert_eq!(
            filter("startswith(name,'x') eq false"),
            not(starts("name", "x"))
        );
        assert_eq!(
            filter("startswith(name,'x') ne true"),
            not(starts("name", "x"))
        );
        assert_eq!(filter("startswith(name,'x') ne false"), starts("name", "x"));
        assert_eq!(
            filter("startswith(name,'x') eq true and a eq 1"),
            and(
                starts("name", "x"),
                cmp("a", CompareOp::Eq, Literal::Int(1))
            )
        );
        assert_eq!(filter("not startswith(name,'x')"), not(starts("name", "x")));
    }

    #[test]
    fn any_forms() {
        assert_eq!(
            filter("machineTags/any(t: t eq 'x')"),
            any("machineTags", "t", cmp("t", CompareOp::Eq, s("x")))
        );
        assert_eq!(
            filter("machineTags/any(tag: startswith(tag,'pre') or tag eq 'y')"),
            any(
                "machineTags",
                "tag",
                or(starts("tag", "pre"), cmp("tag", CompareOp::Eq, s("y")))
            )
        );
        assert_eq!(
            filter("machineTags/ANY(t:t in ('a','b'))"),
            any(
                "machineTags",
                "t",
                Filter::In {
                    property: "t".into(),
                    values: vec![s("a"), s("b")]
                }
            )
        );
        assert_eq!(
            filter("machineTags / any ( t : 'x' eq t ) and not machineTags/any(u: u eq 'y')"),
            and(
                any("machineTags", "t", cmp("t", CompareOp::Eq, s("x"))),
                not(any("machineTags", "u", cmp("u", CompareOp::Eq, s("y"))))
            )
        );
        // The variable goes out of scope after the closing parenthesis.
        assert_eq!(
            filter("tags/any(t: t eq 'x') or t eq 'z'"),
            or(
                any("tags", "t", cmp("t", CompareOp::Eq, s("x"))),
                cmp("t", CompareOp::Eq, s("z"))
            )
        );
    }

    #[test]
    fn identifiers_keep_their_case() {
        assert_eq!(
            filter("RiskScore eq 'x'"),
            cmp("RiskScore", CompareOp::Eq, s("x"))
        );
        assert_eq!(filter("_a1 eq 'x'"), cmp("_a1", CompareOp::Eq, s("x")));
    }

    // -- filter: errors ------------------------------------------------------------

    #[test]
    fn error_message_format() {
        assert_eq!(
            filter_err("riskScore eq"),
            "Syntax error at position 12 in 'riskScore eq': expected a value after 'eq' but found the end of the filter."
        );
    }

    #[test]
    fn empty_and_too_long() {
        assert_mentions(&filter_err(""), &["empty"]);
        assert_mentions(&filter_err("  \t "), &["empty"]);
        let long = format!("x eq '{}'", "a".repeat(MAX_FILTER_LEN));
        assert_mentions(&filter_err(&long), &["too long", "8192"]);
        // Right at the limit is fine.
        let exact = format!("x eq '{}'", "a".repeat(MAX_FILTER_LEN - 7));
        assert_eq!(exact.len(), MAX_FILTER_LEN);
        assert!(parse_filter(&exact).is_ok());
    }

    #[test]
    fn nesting_limits() {
        let ok = format!("{}a eq 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse_filter(&ok).is_ok());
        let deep = format!(
            "{}a eq 1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_mentions(&filter_err(&deep), &["nested too deeply"]);
        assert_mentions(&filter_err(&"(".repeat(5000)), &["nested too deeply"]);
        assert_mentions(&filter_err(&"not ".repeat(2000)), &["nested too deeply"]);
        assert_mentions(&filter_err(&"not (".repeat(1000)), &["nested too deeply"]);
        assert_mentions(&filter_err(&"(".repeat(20_000)), &["too long"]);
        let ok_not = format!("{}a eq 1", "not ".repeat(MAX_DEPTH));
        assert!(parse_filter(&ok_not).is_ok());
    }

    #[test]
    fn chains_are_bounded_by_max_conditions() {
        let chain = |n: usize| format!("a eq 1{}", " or a eq 1".repeat(n));
        assert!(parse_filter(&chain(MAX_CONDITIONS)).is_ok());
        assert_mentions(
            &filter_err(&chain(MAX_CONDITIONS + 1)),
            &["more than 100 'and'/'or' operators"],
        );
    }

    #[test]
    fn missing_value() {
        assert_mentions(
            &filter_err("riskScore eq"),
            &["position 12", "expected a value after 'eq'"],
        );
        assert_mentions(
            &filter_err("riskScore eq )"),
            &["expected a value after 'eq'", "')'"],
        );
        assert_mentions(&filter_err("riskScore gt and b eq 1"), &["keyword 'and'"]);
    }

    #[test]
    fn missing_operator() {
        assert_mentions(
            &filter_err("riskScore"),
            &["expected an operator", "'riskScore'", "end of the filter"],
        );
        assert_mentions(
            &filter_err("riskScore 'High'"),
            &["expected an operator", "'riskScore'", "'High'"],
        );
        assert_mentions(
            &filter_err("riskScore equals 'High'"),
            &["expected an operator", "'equals'"],
        );
        assert_mentions(
            &filter_err("'High'"),
            &["expected an operator", "after the value"],
        );
        assert_mentions(&filter_err("true"), &["expected an operator"]);
    }

    #[test]
    fn trailing_and_dangling() {
        assert_mentions(
            &filter_err("a eq 1 b eq 2"),
            &["expected 'and', 'or'", "'b'", "position 7"],
        );
        assert_mentions(&filter_err("a eq 1 and"), &["end of the filter"]);
        assert_mentions(&filter_err("a eq 1 or"), &["end of the filter"]);
        assert_mentions(&filter_err("and a eq 1"), &["keyword 'and'"]);
        assert_mentions(&filter_err("not"), &["end of the filter"]);
        assert_mentions(&filter_err("a eq 1)"), &["')' has no matching '('"]);
        assert_mentions(&filter_err("(a eq 1"), &["expected ')'", "position 0"]);
        assert_mentions(&filter_err("()"), &["')'"]);
        assert_mentions(&filter_err("a eq 1,"), &["','"]);
    }

    #[test]
    fn comparison_sides() {
        assert_mentions(&filter_err("a eq b"), &["two properties"]);
        assert_mentions(&filter_err("1 eq 2"), &["both sides are values"]);
        assert_mentions(&filter_err("eq eq 1"), &["keyword 'eq'"]);
        assert_mentions(&filter_err("a eq tolower(b)"), &["'tolower'"]);
        assert_mentions(&filter_err("a eq b/c"), &["'/'"]);
    }

    #[test]
    fn in_errors() {
        assert_mentions(&filter_err("x in ()"), &["at least one value"]);
        assert_mentions(&filter_err("x in ('a',)"), &["expected a value", "')'"]);
        assert_mentions(
            &filter_err("x in ('a' 'b')"),
            &["expected ',' or ')'", "'b'"],
        );
        assert_mentions(
            &filter_err("x in ('a'"),
            &["expected ',' or ')'", "end of the filter"],
        );
        assert_mentions(&filter_err("x in 'a'"), &["expected '(' after 'in'"]);
        assert_mentions(&filter_err("x in (y)"), &["expected a value", "'y'"]);
        assert_mentions(&filter_err("'a' in ('a')"), &["left side of 'in'"]);
        let too_many = format!("x in ({})", vec!["1"; MAX_IN_VALUES + 1].join(","));
        assert_mentions(&filter_err(&too_many), &["more than 1000 values"]);
    }

    #[test]
    fn startswith_errors() {
        assert_mentions(
            &filter_err("startswith('x', name)"),
            &["first argument", "property"],
        );
        assert_mentions(
            &filter_err("startswith(name, 5)"),
            &["second argument", "'5'"],
        );
        assert_mentions(
            &filter_err("startswith(name, other)"),
            &["second argument", "'other'"],
        );
        assert_mentions(&filter_err("startswith(name)"), &["expected ','", "')'"]);
        assert_mentions(
            &filter_err("startswith(name, 'a', 'b')"),
            &["expected ')'", "','"],
        );
        assert_mentions(&filter_err("startswith(name, 'a'"), &["expected ')'"]);
        assert_mentions(&filter_err("startswith()"), &["first argument"]);
        assert_mentions(
            &filter_err("startswith(name,'x') eq 'y'"),
            &["true or false", "'y'"],
        );
        assert_mentions(
            &filter_err("startswith(name,'x') gt true"),
            &["expected 'and', 'or'", "'gt'"],
        );
        assert_mentions(
            &filter_err("contains(name,'x')"),
            &["'contains'", "not supported"],
        );
        assert_mentions(
            &filter_err("endswith(name,'x')"),
            &["'endswith'", "not supported"],
        );
    }

    #[test]
    fn any_errors() {
        assert_mentions(
            &filter_err("machineTags/any()"),
            &["any() without a lambda"],
        );
        assert_mentions(
            &filter_err("machineTags/all(t: t eq 'x')"),
            &["'all'", "not supported"],
        );
        assert_mentions(
            &filter_err("machineTags/count eq 1"),
            &["'/'", "'machineTags/count'"],
        );
        assert_mentions(&filter_err("machineTags/any"), &["'/'"]);
        assert_mentions(
            &filter_err("machineTags/any(t t eq 'x')"),
            &["expected ':'"],
        );
        assert_mentions(
            &filter_err("machineTags/any('t': t eq 'x')"),
            &["lambda variable"],
        );
        assert_mentions(
            &filter_err("machineTags/any(eq: eq eq 'x')"),
            &["lambda variable"],
        );
        assert_mentions(
            &filter_err("machineTags/any(t: t eq 'x'"),
            &["expected ')' to close any("],
        );
        assert_mentions(&filter_err("machineTags/any(t:)"), &["')'"]);
        assert_mentions(
            &filter_err("a/any(t: t/any(u: u eq 'x'))"),
            &["nested any() is not supported"],
        );
        assert_mentions(
            &filter_err("a/any(t: b/any(u: u eq 'x'))"),
            &["nested any() is not supported"],
        );
        assert_mentions(
            &filter_err("machineTags/any(t: other eq 'x')"),
            &["only the lambda variable 't'", "'other'"],
        );
        assert_mentions(&filter_err("any(t: t eq 'x')"), &["collection property"]);
        assert_mentions(&filter_err("/any(t: t eq 'x')"), &["but found '/'"]);
        assert_mentions(&filter_err("1/any(t: t eq 'x')"), &["'/'"]);
    }

    #[test]
    fn lexical_errors() {
        assert_mentions(&filter_err("x eq 'abc"), &["closing quote", "position 5"]);
        assert_mentions(&filter_err("x eq 'it''s"), &["closing quote"]);
        assert_mentions(
            &filter_err("x eq 12abc"),
            &["'12abc'", "not a valid number"],
        );
        assert_mentions(&filter_err("x eq 1."), &["'1.'", "not a valid number"]);
        assert_mentions(&filter_err("x eq 1.2.3"), &["'1.2.3'"]);
        assert_mentions(&filter_err("x eq -"), &["after '-'"]);
        assert_mentions(&filter_err("x eq -a"), &["after '-'"]);
        assert_mentions(
            &filter_err("x eq 9223372036854775808"),
            &["'9223372036854775808'", "64 bits"],
        );
        assert_mentions(&filter_err("x eq 1e999"), &["'1e999'", "out of range"]);
        assert_mentions(
            &filter_err("x eq \"a\""),
            &["unexpected character '\"'", "position 5"],
        );
        assert_mentions(
            &filter_err("x eq 'a' && y eq 1"),
            &["unexpected character '&'"],
        );
        assert_mentions(&filter_err("x eq .5"), &["unexpected character '.'"]);
        assert_mentions(
            &filter_err("naïve eq 1"),
            &["unexpected character 'ï'", "position 2"],
        );
        assert_mentions(&filter_err("x eq 1\n"), &["unexpected character"]);
        assert_mentions(
            &filter_err("x eq duration'P1D'"),
            &["'duration'", "not supported"],
        );
        assert_mentions(&filter_err("x eq guid'nope'"), &["'nope'", "GUID"]);
        assert_mentions(
            &filter_err("x eq datetime'2018-13-01'"),
            &["'2018-13-01'", "date/time"],
        );
        assert_mentions(&filter_err("x eq datetime'abc"), &["closing quote"]);
    }

    #[test]
    fn function_parameters() {
        let parsed =
            parse_function_parameters("ip='10.248.240.38',timestamp=2019-09-22T08:44:05Z").unwrap();
        assert_eq!(
            parsed,
            vec![
                ("ip".to_string(), Literal::String("10.248.240.38".into())),
                (
                    "timestamp".to_string(),
                    Literal::DateTime(utc(2019, 9, 22, 8, 44, 5))
                ),
            ]
        );
        let encoded =
            parse_function_parameters("ip=%27a,%20''b''%27,%20timestamp=2019-09-22T10:44:05+02:00")
                .unwrap();
        assert_eq!(encoded[0].1, Literal::String("a, 'b'".into()));
        assert_eq!(encoded[1].1, Literal::DateTime(utc(2019, 9, 22, 8, 44, 5)));
        assert_eq!(parse_function_parameters("").unwrap(), vec![]);
        for bad in [
            "ip=10.1.2.3",
            "ip='x",
            "ip",
            "='x'",
            "ip='a',ip='b'",
            "ip='a' 'b'",
            "timestamp=2019-13-01T00:00:00Z",
            "ip='a',",
            "%zz",
        ] {
            assert!(parse_function_parameters(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn datetime_errors() {
        for bad in [
            "2018-13-01",
            "2018-02-30",
            "2018-08-01T",
            "2018-08-01T25:00:00Z",
            "2018-08-01T10:60:00Z",
            "2018-08-01T10:00:61Z",
            "2018-08-01T10:00:00.Z",
            "2018-08-01T10:00:00.12345678Z",
            "2018-08-01T10:00:00+2:00",
            "2018-08-01T10:00:00+02:60",
            "2018-08-01T10:00:00+24:00",
            "2018-08-01Zx",
            "2018-08-01ZZ",
            "2018-08-011",
            "2018-08-01T1:00:00Z",
        ] {
            let message = filter_err(&format!("x eq {bad}"));
            let quoted = format!("'{bad}'");
            assert_mentions(
                &message,
                &[quoted.as_str(), "not a valid date/time", "position 5"],
            );
        }
    }

    #[test]
    fn error_positions_count_characters() {
        // 'é' is two bytes but one character.
        assert_mentions(&filter_err("x eq 'é' y"), &["position 9"]);
    }

    #[test]
    fn error_messages_shorten_long_input() {
        let long = format!("x eq '{}' zzz", "a".repeat(1000));
        let message = filter_err(&long);
        assert!(message.len() < 600, "{message}");
        assert_mentions(&message, &["...", "'zzz'"]);
    }
}
