//! A deterministic randomized robustness test for the OData parser, runnable on
//! stable Rust (the coverage-guided fuzzer lives in `/fuzz`).
//!
//! It mutates and splices a corpus of valid filters and query strings, mixes in
//! random text, and checks that parsing never panics, that whatever parses
//! satisfies the invariants downstream code relies on, and that pathological
//! nesting is rejected quickly.

use std::panic::{catch_unwind, AssertUnwindSafe};

use palisade_contract::odata::{
    parse_filter, parse_function_parameters, Filter, ODataQuery, MAX_CONDITIONS, MAX_DEPTH,
    MAX_FILTER_LEN, MAX_IN_VALUES, MAX_TOP,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Fixed so that a failure reproduces; change it to explore other inputs.
const SEED: u64 = 0x0DA7_A5EE_D000_0001;
const CASES: usize = 20_000;

const FILTERS: &[&str] = &[
    "riskScore eq 'High'",
    "healthStatus ne 'Active'",
    "lastSeen gt 2018-08-01Z",
    "lastSeen ge 2019-11-22T00:00:00Z and lastSeen lt 2021-01-25T07:27:36.052313Z",
    "lastSeen le 2019-11-22T02:00:00+02:00",
    "lastSeen gt datetime'2018-08-01T00:00:00Z'",
    "startswith(computerDnsName,'mymachine')",
    "startswith(computerDnsName,'my') eq false",
    "machineTags/any(tag: tag eq 'ExampleTag')",
    "machineTags/any(t: startswith(t,'pre') or t eq 'y')",
    "requestor eq 'Analyst@contoso.com' and type eq 'RunAntiVirusScan'",
    "machineId eq 'f46b9bb259ed4a7fb9981b73510e3cc7aa81ec1f'",
    "id in ('a','b', 3, null, true)",
    "aadDeviceId eq d3f1bb5c-1f0e-4d4a-9f1e-3f1c4a1b2c3d",
    "not (osPlatform eq 'Windows10' or osPlatform eq 'Linux') and rbacGroupId gt -12",
    "exposureScore ge 1.5e3 and 5 lt count",
    "(a eq 'it''s') or (b ne null)",
];

const QUERIES: &[&str] = &[
    "$filter=riskScore+eq+'High'",
    "$filter=healthStatus+ne+'Active'&$top=100",
    "%24filter=riskScore%20eq%20%27High%27",
    "$top=2&$skip=10&$count=true",
    "$orderby=lastSeen+desc,computerDnsName&$select=id,riskScore",
    "?$Top=0&tag=abc&$COUNT=False",
    "$filter=lastSeen+gt+2019-11-22T02:00:00%2B02:00",
];

/// Pieces that are likely to reach interesting parser states.
const FRAGMENTS: &[&str] = &[
    " and ",
    " or ",
    "not ",
    " NOT ",
    "(",
    ")",
    "((",
    "))",
    " eq ",
    " gt ",
    " le ",
    " in (",
    " in ()",
    "'",
    "''",
    ",",
    ", ",
    ":",
    "/",
    "/any(",
    "/all(",
    "any()",
    "t: t",
    "startswith(",
    "endswith(",
    "2018-08-01Z",
    "2018-08-01",
    "T00:00:00",
    ".1234567",
    ".12345678",
    "+02:00",
    "-",
    "--",
    ".",
    "1e",
    "1e999",
    "-9223372036854775808",
    "9223372036854775808",
    "0.5",
    "d3f1bb5c-1f0e-4d4a-9f1e-3f1c4a1b2c3d",
    "datetime'",
    "guid'",
    "duration'",
    "true",
    "null",
    "%",
    "%2",
    "%zz",
    "%24",
    "%25",
    "%27",
    "%C3%A9",
    "%FF",
    "&",
    "=",
    "$top=",
    "$skip=",
    "$filter=",
    "$orderby=",
    "$select=",
    "$count=",
    "$expand=",
    "20000",
    "+",
    "\t",
    " ",
    "é",
    "€",
    "😀",
    "\u{0}",
    "\u{202e}",
    "\n",
];

const ALPHABET: &[char] = &[
    'a', 'b', 'z', 'A', 'Z', '_', '0', '1', '9', ' ', '\t', '\'', '"', '(', ')', ',', ':', '/',
    '-', '+', '.', '%', '&', '=', '$', '?', '*', '\\', 'e', 'E', 'T', 'Z', 'é', '€', '😀', '\u{0}',
    '\u{7f}', '\u{fffd}',
];

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// A random half-open range inside `0..len`, at most `max_len` long.
fn range(rng: &mut StdRng, len: usize, max_len: usize) -> (usize, usize) {
    let start = rng.random_range(0..=len);
    let end = (start + rng.random_range(0..=max_len)).min(len);
    (start, end)
}

fn random_text(rng: &mut StdRng, max_len: usize) -> Vec<char> {
    let len = rng.random_range(0..=max_len);
    (0..len).map(|_| *pick(rng, ALPHABET)).collect()
}

/// Applies a few random edits. Working on `char`s keeps the result valid UTF-8.
fn mutate(rng: &mut StdRng, base: &str, corpus: &[&str]) -> String {
    let mut text: Vec<char> = base.chars().collect();
    for _ in 0..rng.random_range(1..=4) {
        let len = text.len();
        match rng.random_range(0..8) {
            0 => {
                let at = rng.random_range(0..=len);
                text.insert(at, *pick(rng, ALPHABET));
            }
            1 => {
                let at = rng.random_range(0..=len);
                let fragment: Vec<char> = pick(rng, FRAGMENTS).chars().collect();
                text.splice(at..at, fragment);
            }
            2 => {
                let (start, end) = range(rng, len, 8);
                text.drain(start..end);
            }
            3 => {
                // Duplicating a span builds repetition (nesting, long lists).
                let (start, end) = range(rng, len, 24);
                let copy: Vec<char> = text[start..end].to_vec();
                let times = rng.random_range(1..=8);
                for _ in 0..times {
                    text.splice(end..end, copy.iter().copied());
                }
            }
            4 => {
                if len > 0 {
                    let at = rng.random_range(0..len);
                    text[at] = *pick(rng, ALPHABET);
                }
            }
            5 => {
                // Splice: our prefix with another entry's suffix.
                let other: Vec<char> = pick(rng, corpus).chars().collect();
                let cut_here = rng.random_range(0..=len);
                let cut_there = rng.random_range(0..=other.len());
                text.truncate(cut_here);
                text.extend_from_slice(&other[cut_there..]);
            }
            6 => {
                let at = rng.random_range(0..=len);
                let noise = random_text(rng, 6);
                text.splice(at..at, noise);
            }
            _ => {
                // Flip letter case: keywords are case-insensitive, names are not.
                if len > 0 {
                    let at = rng.random_range(0..len);
                    let c = text[at];
                    text[at] = if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    };
                }
            }
        }
    }
    text.into_iter().collect()
}

/// Percent-encodes a random subset of characters, as a browser might.
fn encode_some(rng: &mut StdRng, text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c == ' ' && rng.random_bool(0.5) {
            out.push('+');
        } else if !c.is_ascii_alphanumeric() && rng.random_bool(0.5) {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The guarantees consumers of `Filter` rely on. `nesting` counts the `Not`
/// and `Any` nodes above `filter`; `in_any` is the enclosing lambda variable.
fn check_invariants(filter: &Filter, nesting: usize, in_any: Option<&str>, input: &str) {
    // `startswith(..) eq false` adds one `Not` beyond the counted nesting.
    assert!(nesting <= MAX_DEPTH + 1, "too deep a tree from {input:?}");
    let check_name = |name: &str| {
        assert!(is_identifier(name), "bad name {name:?} from {input:?}");
        if let Some(variable) = in_any {
            assert_eq!(name, variable, "foreign name inside any() from {input:?}");
        }
    };
    match filter {
        Filter::And(a, b) | Filter::Or(a, b) => {
            check_invariants(a, nesting, in_any, input);
            check_invariants(b, nesting, in_any, input);
        }
        Filter::Not(inner) => check_invariants(inner, nesting + 1, in_any, input),
        Filter::Compare { property, .. } | Filter::StartsWith { property, .. } => {
            check_name(property)
        }
        Filter::In { property, values } => {
            check_name(property);
            assert!(
                !values.is_empty() && values.len() <= MAX_IN_VALUES,
                "bad in-list size from {input:?}"
            );
        }
        Filter::Any {
            collection,
            variable,
            predicate,
        } => {
            assert!(in_any.is_none(), "nested any() from {input:?}");
            assert!(is_identifier(collection) && is_identifier(variable));
            check_invariants(predicate, nesting + 1, Some(variable), input);
        }
    }
}

fn check_filter(input: &str) {
    let result = catch_unwind(AssertUnwindSafe(|| parse_filter(input)))
        .unwrap_or_else(|_| panic!("parse_filter panicked on {input:?}"));
    match &result {
        Ok(filter) => {
            assert!(input.len() <= MAX_FILTER_LEN);
            check_invariants(filter, 0, None, input);
            assert_eq!(parse_filter(input), result, "not deterministic: {input:?}");
        }
        Err(error) => assert!(!error.0.is_empty(), "empty message for {input:?}"),
    }
}

fn check_query(raw: &str) {
    let result = catch_unwind(AssertUnwindSafe(|| ODataQuery::parse(raw)))
        .unwrap_or_else(|_| panic!("ODataQuery::parse panicked on {raw:?}"));
    match result {
        Ok(query) => {
            assert!(query.top.is_none_or(|top| top <= MAX_TOP), "{raw:?}");
            if let Some(filter) = &query.filter {
                check_invariants(filter, 0, None, raw);
            }
        }
        Err(error) => assert!(!error.0.is_empty(), "empty message for {raw:?}"),
    }
}

#[test]
fn random_inputs_never_panic() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let (mut filters_ok, mut queries_ok) = (0, 0);
    for _ in 0..CASES {
        let filter = match rng.random_range(0..10) {
            0 => random_text(&mut rng, 64).into_iter().collect(),
            _ => {
                let base = *pick(&mut rng, FILTERS);
                mutate(&mut rng, base, FILTERS)
            }
        };
        check_filter(&filter);
        filters_ok += usize::from(parse_filter(&filter).is_ok());

        let query = match rng.random_range(0..3) {
            0 => {
                let base = *pick(&mut rng, QUERIES);
                mutate(&mut rng, base, QUERIES)
            }
            1 => format!("$filter={}", encode_some(&mut rng, &filter)),
            _ => format!(
                "{}&{}",
                encode_some(&mut rng, &format!("$filter={filter}")),
                mutate(&mut rng, "$top=10&$orderby=a desc", QUERIES)
            ),
        };
        check_query(&query);
        queries_ok += usize::from(ODataQuery::parse(&query).is_ok());
    }
    eprintln!("{filters_ok} of {CASES} filters and {queries_ok} queries parsed");
    // Make sure the mutations are neither all harmless nor all fatal.
    assert!(filters_ok > CASES / 50, "only {filters_ok} filters parsed");
    assert!(filters_ok < CASES * 9 / 10, "{filters_ok} filters parsed");
    assert!(queries_ok > CASES / 50, "only {queries_ok} queries parsed");
}

/// Parameter lists of OData function calls (`findbyip(...)`), as they stand in a path.
const FUNCTION_PARAMETERS: &[&str] = &[
    "ip='10.248.240.38',timestamp=2019-09-22T08:44:05Z",
    "ip='10.1.2.3'",
    "ip=%2710.1.2.3%27,timestamp=2019-09-22T10:44:05.1234567+02:00",
    "IP='fe80::1',Timestamp='2019-09-22T08:44:05Z'",
    "ip='it''s',timestamp=2019-09-22",
    " ip = '10.0.0.1' , timestamp = 2019-09-22T08:44Z ",
    "",
];

/// Function parameters never panic, and what parses names each parameter once.
#[test]
fn random_function_parameters_never_panic() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 0xF1);
    let mut parsed = 0;
    for _ in 0..CASES {
        let input = match rng.random_range(0..10) {
            0 => random_text(&mut rng, 64).into_iter().collect(),
            1 => {
                let base = *pick(&mut rng, FUNCTION_PARAMETERS);
                encode_some(&mut rng, base)
            }
            _ => {
                let base = *pick(&mut rng, FUNCTION_PARAMETERS);
                mutate(&mut rng, base, FUNCTION_PARAMETERS)
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| parse_function_parameters(&input)))
            .unwrap_or_else(|_| panic!("parse_function_parameters panicked on {input:?}"));
        match result {
            Ok(parameters) => {
                parsed += 1;
                for (i, (name, _)) in parameters.iter().enumerate() {
                    assert!(is_identifier(name), "{name:?} from {input:?}");
                    assert!(
                        parameters[..i]
                            .iter()
                            .all(|(n, _)| !n.eq_ignore_ascii_case(name)),
                        "{name:?} twice in {input:?}"
                    );
                }
            }
            Err(error) => assert!(!error.0.is_empty(), "empty message for {input:?}"),
        }
    }
    assert!(parsed > CASES / 50, "only {parsed} parameter lists parsed");
    assert!(parsed < CASES * 9 / 10, "{parsed} parameter lists parsed");
}

/// Asserts that `input` is rejected (speed is the benchmark's business, not a test's).
#[track_caller]
fn assert_rejected(input: &str) {
    let filter = parse_filter(input);
    let query = ODataQuery::parse(&format!("$filter={}", input.replace(' ', "%20")));
    assert!(filter.is_err(), "accepted {} bytes", input.len());
    assert!(query.is_err(), "query accepted {} bytes", input.len());
}

#[test]
fn deep_nesting_is_rejected() {
    for unit in ["(", "not ", "not (", "((not ", "a/any(t: "] {
        // Over the length limit ...
        assert_rejected(&unit.repeat(10_000));
        // ... and within it, where the depth limit must catch it.
        let count = MAX_FILTER_LEN / unit.len();
        assert_rejected(&unit.repeat(count));
        assert_rejected(&format!("{}a eq 1", unit.repeat(count - 2)));
    }
    // Deep but balanced, and just too deep.
    let depth = MAX_DEPTH + 1;
    assert_rejected(&format!("{}a eq 1{}", "(".repeat(depth), ")".repeat(depth)));
    // Unbalanced closers and long runs of operators.
    assert_rejected(&")".repeat(8000));
    assert_rejected(&format!("a eq 1{}", " and".repeat(2000)));
    assert_rejected(&"'".repeat(8001));
}

#[test]
fn widest_valid_inputs_parse() {
    let chain = format!("a eq 1{}", " or a eq 1".repeat(MAX_CONDITIONS));
    assert!(parse_filter(&chain).is_ok());

    let list = format!("a in ({})", vec!["1"; MAX_IN_VALUES].join(","));
    assert!(parse_filter(&list).is_ok());

    let nested = format!("{}a eq 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(parse_filter(&nested).is_ok());

    let long_string = format!("a eq '{}'", "''".repeat((MAX_FILTER_LEN - 7) / 2));
    assert!(parse_filter(&long_string).is_ok());
}
