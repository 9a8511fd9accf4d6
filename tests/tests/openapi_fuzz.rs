//! Requests generated from the OpenAPI document the node serves, for every operation: path and
//! query parameters and bodies that the document says are valid. The node must not refuse any
//! of them as invalid: the only 4xx allowed are the business refusals every operation may give
//! whatever its input (403 for a role or party, 404 for an id that names nothing, 409 for a
//! state that does not allow it). A rule the node enforces but the document does not state
//! shows up here as a 400.
//!
//! The generator is small and strict: it knows a fixed set of JSON Schema keywords and fails on
//! any other, so that a rule added to the document cannot be ignored here. One seed reproduces
//! a run: `XCHG_FUZZ_SEED=<n>` (the seed is printed).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use proptest::strategy::{Strategy as _, ValueTree as _};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqwest::Method;
use serde_json::{Map, Value, json};
use xchg_tests::Zone;

/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);
/// Requests per operation.
const ROUNDS: usize = 25;

/// Operations not sent, and why.
const NOT_SENT: [(&str, &str); 1] = [(
    "add_zone_member",
    "a valid body starts a real membership change towards a node that does not exist; \
     tests/tests/zone_membership.rs covers it",
)];

/// Refusals that no schema can prevent, by operation: `(operation, status, field)`.
const SEMANTIC_REFUSALS: [(&str, u16, &str); 12] = [
    // A search cursor is written by the node for one search (its order, and in relevance order
    // the statistics its first page was scored with): one drawn from the pattern is not one.
    ("search_listings", 400, "cursor"),
    // A revocation must be signed by the exchange's root key, which a generator does not hold.
    ("revoke_key", 400, "envelope"),
    // A credit code's 18th character is a check character over the other 17, which no
    // pattern states (one generated code in 31 has it right).
    ("apply_party", 400, "credit_code"),
    // The operator's and the broker's shares of a fee schedule are each 0 to 10000 basis
    // points, as the schema states, and together at most 10000, which no schema states.
    ("set_fee_schedule", 400, "broker_share_bp"),
    // Dates: the pattern states the digits, months and days it can; 2026-02-30 matches it,
    // and that `from` is not after `to`, nor 100 periods before it, no schema states.
    ("supervision_stats", 400, "from"),
    ("supervision_stats", 400, "to"),
    ("supervision_federation", 400, "from"),
    ("supervision_federation", 400, "to"),
    // A tree size beyond the log's, a leaf index not below the size, an older size above the
    // newer: rules between the parameters and the log's size, which no schema states.
    ("get_audit_inclusion_proof", 400, "size"),
    ("get_audit_inclusion_proof", 400, "index"),
    ("get_audit_consistency_proof", 400, "to"),
    ("get_audit_consistency_proof", 400, "from"),
];

/// The JSON Schema keywords the generator honours.
const KNOWN_KEYWORDS: [&str; 23] = [
    "$ref",
    "minProperties",
    "maxProperties",
    "type",
    "enum",
    "oneOf",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "format",
    "description",
    "examples",
    "default",
    "title",
];

/// A seeded source of choices; proptest's runner draws strings from patterns.
struct Dice {
    state: u64,
    runner: TestRunner,
}

impl Dice {
    fn new(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
        Dice {
            state: seed,
            runner: TestRunner::new_with_rng(Config::default(), rng),
        }
    }

    /// SplitMix64.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next();
        }
        lo + self.next() % (span + 1)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.range(1, one_in) == 1
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> Option<&'a T> {
        if from.is_empty() {
            return None;
        }
        let i = usize::try_from(self.range(0, from.len() as u64 - 1)).unwrap_or(0);
        from.get(i)
    }

    /// A string matching `pattern`, anchored at both ends (proptest draws from the pattern
    /// without its anchors; an unanchored pattern only asks for less).
    fn matching(&mut self, pattern: &str) -> anyhow::Result<String> {
        let inner = pattern.strip_prefix('^').unwrap_or(pattern);
        let inner = match inner.strip_suffix('$') {
            Some(rest) if !rest.ends_with('\\') => rest,
            _ => inner,
        };
        let strategy = proptest::string::string_regex(inner)
            .with_context(|| format!("pattern {pattern:?} cannot be generated from"))?;
        let tree = strategy
            .new_tree(&mut self.runner)
            .map_err(|e| anyhow::anyhow!("drawing from {pattern:?}: {e}"))?;
        Ok(tree.current())
    }

    /// Any text: ASCII, Chinese, and any other scalar value (control characters included),
    /// for a string whose schema states no pattern.
    fn any_text(&mut self, min: u64, max: u64) -> String {
        let len = self.range(min, max.min(min + 40));
        (0..len)
            .map(|_| match self.range(0, 3) {
                0 => char::from_u32(u32::try_from(self.range(0x20, 0x7E)).unwrap_or(0x41)),
                1 => char::from_u32(u32::try_from(self.range(0x4E00, 0x9FFF)).unwrap_or(0x4E00)),
                _ => char::from_u32(u32::try_from(self.range(0, 0x10_FFFF)).unwrap_or(0)),
            })
            .map(|c| c.unwrap_or('x'))
            .collect()
    }
}

/// Generates values that the served document describes.
struct Generator {
    doc: Value,
    dice: Dice,
}

impl Generator {
    fn resolve<'a>(&'a self, schema: &'a Value) -> anyhow::Result<&'a Value> {
        let Some(r) = schema.get("$ref").and_then(Value::as_str) else {
            return Ok(schema);
        };
        let name = r
            .strip_prefix("#/components/schemas/")
            .with_context(|| format!("unexpected reference {r}"))?;
        let target = &self.doc["components"]["schemas"][name];
        ensure!(!target.is_null(), "unresolved reference {r}");
        self.resolve(target)
    }

    fn check_keywords(schema: &Value, at: &str) -> anyhow::Result<()> {
        for key in schema.as_object().into_iter().flat_map(Map::keys) {
            ensure!(
                KNOWN_KEYWORDS.contains(&key.as_str()),
                "{at}: the generator does not know the keyword `{key}`; teach it, or the rule \
                 it states is not tried"
            );
        }
        Ok(())
    }

    /// A value `schema` admits.
    fn value(&mut self, schema: &Value, at: &str) -> anyhow::Result<Value> {
        let schema = self.resolve(schema)?.clone();
        Self::check_keywords(&schema, at)?;
        if let Some(branches) = schema["oneOf"].as_array() {
            let branch = self.dice.pick(branches).context("an empty oneOf")?.clone();
            return self.value(&branch, at);
        }
        if let Some(values) = schema["enum"].as_array() {
            return self.dice.pick(values).cloned().context("an empty enum");
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            other => bail!("{at}: no type in {other} ({schema})"),
        };
        let ty = if types.contains(&"null") && types.len() > 1 && !self.dice.chance(4) {
            types
                .iter()
                .copied()
                .find(|t| *t != "null")
                .unwrap_or("null")
        } else {
            *self.dice.pick(&types).context("no type")?
        };
        match ty {
            "null" => Ok(Value::Null),
            "boolean" => Ok(Value::Bool(self.dice.chance(2))),
            "integer" => Ok(json!(self.integer(&schema, at)?.parse::<i64>()?)),
            "string" => self.string(&schema, at).map(Value::String),
            "array" => self.array(&schema, at),
            "object" => self.object(&schema, at),
            other => bail!("{at}: unknown type {other}"),
        }
    }

    fn string(&mut self, schema: &Value, at: &str) -> anyhow::Result<String> {
        match schema["format"].as_str() {
            None => {}
            // `date-time` states a real instant (RFC 3339), which its pattern alone does not:
            // one from 1970 to 9999, in the form the node writes.
            Some("date-time") => {
                let ms = self.dice.range(0, 253_402_300_799_999);
                return Ok(xchg_protocol::Timestamp(ms).to_string());
            }
            Some(other) => bail!("{at}: a string format ({other}) is not generated yet"),
        }
        let min = schema["minLength"].as_u64().unwrap_or(0);
        let max = schema["maxLength"].as_u64().unwrap_or(u64::MAX);
        let Some(pattern) = schema["pattern"].as_str() else {
            return Ok(self.dice.any_text(min, max));
        };
        for _ in 0..100 {
            let s = self.dice.matching(pattern)?;
            let n = s.chars().count() as u64;
            if (min..=max).contains(&n) {
                return Ok(s);
            }
        }
        bail!("{at}: no string of {min} to {max} characters drawn from {pattern:?}")
    }

    /// An integer as decimal text, so that query parameters can be larger than JSON allows.
    fn integer(&mut self, schema: &Value, at: &str) -> anyhow::Result<String> {
        let (format_min, format_max) = match schema["format"].as_str() {
            None => (i128::MIN, i128::MAX),
            Some("int32") => (i128::from(i32::MIN), i128::from(i32::MAX)),
            Some("int64") => (i128::from(i64::MIN), i128::from(i64::MAX)),
            Some(other) => bail!("{at}: unknown integer format {other}"),
        };
        let min = schema["minimum"]
            .as_i64()
            .map_or(format_min, i128::from)
            .max(format_min);
        let max = schema["maximum"]
            .as_i64()
            .map_or(format_max, i128::from)
            .min(format_max);
        ensure!(min <= max, "{at}: minimum above maximum");
        let low = min.max(-1_000_000);
        let n = match self.dice.range(0, 4) {
            0 => min.max(-(1 << 40)),
            1 if max < i128::from(u64::MAX) => max,
            // Far beyond 64 bits, where nothing bounds it.
            1 => 10i128.pow(25).min(max),
            2 => low + i128::from(self.dice.range(0, 3)),
            _ => {
                let span = u64::try_from((max - low).clamp(0, 1_000_000)).unwrap_or(0);
                low + i128::from(self.dice.range(0, span))
            }
        };
        Ok(n.clamp(min, max).to_string())
    }

    fn array(&mut self, schema: &Value, at: &str) -> anyhow::Result<Value> {
        let min = schema["minItems"].as_u64().unwrap_or(0);
        let max = schema["maxItems"].as_u64().unwrap_or(8);
        let n = if self.dice.chance(5) {
            max.min(40)
        } else {
            self.dice.range(min, max.min(min + 4))
        };
        let unique = schema["uniqueItems"].as_bool().unwrap_or(false);
        let mut items: Vec<Value> = Vec::new();
        let mut tries = 0;
        while (items.len() as u64) < n {
            let item = self.value(&schema["items"], &format!("{at}[{}]", items.len()))?;
            if unique && items.contains(&item) {
                tries += 1;
                // A small enumeration may hold fewer values than asked for.
                if tries > 200 && items.len() as u64 >= min {
                    break;
                }
                ensure!(tries <= 1000, "{at}: cannot draw {n} distinct items");
                continue;
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn object(&mut self, schema: &Value, at: &str) -> anyhow::Result<Value> {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut out = Map::new();
        let properties = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (name, property) in &properties {
            if required.contains(&name.as_str()) || self.dice.chance(2) {
                let v = self.value(property, &format!("{at}.{name}"))?;
                out.insert(name.clone(), v);
            }
        }
        let least = schema["minProperties"].as_u64().unwrap_or(0);
        let mut left: Vec<&String> = properties
            .keys()
            .filter(|k| !out.contains_key(*k))
            .collect();
        while (out.len() as u64) < least {
            ensure!(
                !left.is_empty(),
                "{at}: fewer properties than minProperties"
            );
            let i = usize::try_from(self.dice.range(0, left.len() as u64 - 1)).unwrap_or(0);
            let name = left.remove(i);
            let v = self.value(&properties[name], &format!("{at}.{name}"))?;
            out.insert(name.clone(), v);
        }
        if let Some(most) = schema["maxProperties"].as_u64() {
            ensure!(
                out.len() as u64 <= most,
                "{at}: the generator made more properties than maxProperties {most}"
            );
        }
        Ok(Value::Object(out))
    }

    /// A query or path parameter's text.
    fn parameter(&mut self, schema: &Value, at: &str) -> anyhow::Result<String> {
        let schema = self.resolve(schema)?.clone();
        Self::check_keywords(&schema, at)?;
        if schema["type"] == "integer" && schema.get("enum").is_none() {
            return self.integer(&schema, at);
        }
        Ok(match self.value(&schema, at)? {
            Value::String(s) => s,
            other => other.to_string(),
        })
    }
}

/// One operation of the document.
struct Operation {
    method: Method,
    path: String,
    id: String,
    spec: Value,
}

fn operations(doc: &Value) -> anyhow::Result<Vec<Operation>> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().context("no paths")? {
        for (method, spec) in item.as_object().context("a path item")? {
            out.push(Operation {
                method: Method::from_bytes(method.to_uppercase().as_bytes())?,
                path: path.clone(),
                id: spec["operationId"].as_str().unwrap_or_default().to_owned(),
                spec: spec.clone(),
            });
        }
    }
    Ok(out)
}

/// Percent-encodes a path segment.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_document_calls_valid_are_never_refused_as_invalid() -> anyhow::Result<()> {
    let seed = std::env::var("XCHG_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("XCHG_FUZZ_SEED={seed}");
    let mut zone = Zone::generate("single-zone", 1)?;
    zone.start_all()?;
    zone.wait_for_leader(0, ELECTION).await?;
    let admin = zone.tokens().admin.clone();
    let api = zone.nodes[0].api_url.clone();
    let (status, doc) = zone.get(0, "/v1/openapi.json", None).await?;
    ensure!(status == 200, "the document: {status}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut generator = Generator {
        doc: doc.clone(),
        dice: Dice::new(seed),
    };
    let mut listings: Vec<String> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut answered: BTreeMap<String, BTreeMap<u16, usize>> = BTreeMap::new();

    for op in operations(&doc)? {
        if NOT_SENT.iter().any(|(id, _)| *id == op.id) {
            continue;
        }
        for round in 0..ROUNDS {
            let at = format!("{} {}", op.method, op.path);
            let mut path = op.path.clone();
            let mut query = Vec::new();
            let mut headers = Vec::new();
            for p in op.spec["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().context("a parameter name")?;
                let required = p["required"].as_bool().unwrap_or(false);
                match p["in"].as_str() {
                    Some("path") => {
                        let value = match (name, generator.dice.pick(&listings).cloned()) {
                            ("id", Some(known)) if generator.dice.chance(2) => known,
                            _ => generator.parameter(&p["schema"], &format!("{at} {name}"))?,
                        };
                        path = path.replace(&format!("{{{name}}}"), &segment(&value));
                    }
                    Some("query") if required || generator.dice.chance(2) => {
                        let value = generator.parameter(&p["schema"], &format!("{at} ?{name}"))?;
                        query.push((name.to_owned(), value));
                    }
                    Some("query") => {}
                    Some("header") if required || generator.dice.chance(2) => {
                        let value = generator.parameter(&p["schema"], &format!("{at} {name}:"))?;
                        headers.push((name.to_owned(), value));
                    }
                    Some("header") => {}
                    other => bail!("{at}: a parameter in {other:?}"),
                }
            }
            let mut request = http
                .request(op.method.clone(), format!("{api}{path}"))
                .bearer_auth(&admin)
                .query(&query);
            for (name, value) in &headers {
                request = request.header(name.as_str(), value.as_str());
            }
            let mut sent_body = None;
            if let Some(body) = op.spec.get("requestBody") {
                let required = body["required"].as_bool().unwrap_or(false);
                if required || !generator.dice.chance(5) {
                    let schema = &body["content"]["application/json"]["schema"];
                    let mut value = generator.value(schema, &format!("{at} body"))?;
                    // A listing names an admitted party, which a generated id almost never is:
                    // most are in the name of the zone's founding provider.
                    let listing = ["submit_listing", "update_listing"].contains(&op.id.as_str());
                    if listing && !generator.dice.chance(4) {
                        value["provider"]["id"] = json!(xchg_tests::FIRST_ZONE_PARTY.0);
                    }
                    request = request
                        .header("content-type", "application/json")
                        .body(serde_json::to_vec(&value)?);
                    sent_body = Some(value);
                }
            }
            let response = request.send().await?;
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            *answered
                .entry(op.id.clone())
                .or_default()
                .entry(status)
                .or_default() += 1;
            if op.id == "submit_listing" && status == 201 {
                listings.extend(answer["id"].as_str().map(str::to_owned));
            }
            let semantic = SEMANTIC_REFUSALS.iter().any(|(id, s, field)| {
                *id == op.id && *s == status && answer["error"]["field"] == *field
            });
            let fine = (200..300).contains(&status) || [403, 404, 409].contains(&status);
            if !fine && !semantic {
                refused.push(format!(
                    "{} {path} round {round}: {status} {answer}\n  query {query:?}\n  headers \
                     {headers:?}\n  body {}",
                    op.method,
                    sent_body.map_or("-".into(), |b| b.to_string())
                ));
            }
        }
    }
    eprintln!("answers by operation and status: {answered:?}");
    ensure!(
        refused.is_empty(),
        "seed {seed}: {} requests the document calls valid were refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
    let submitted = answered
        .get("submit_listing")
        .and_then(|s| s.get(&201))
        .copied()
        .unwrap_or(0);
    ensure!(
        submitted > ROUNDS / 2,
        "only {submitted} of {ROUNDS} generated listings were created: {answered:?}"
    );
    Ok(())
}

#[test]
fn the_generator_refuses_a_keyword_it_does_not_know() {
    let mut generator = Generator {
        doc: json!({}),
        dice: Dice::new(1),
    };
    let err = generator
        .value(&json!({"type": "string", "contentEncoding": "base64"}), "x")
        .expect_err("unknown keyword");
    assert!(err.to_string().contains("contentEncoding"), "{err}");
}

#[test]
fn the_generator_keeps_to_lengths_patterns_and_unique_items() -> anyhow::Result<()> {
    let mut generator = Generator {
        doc: json!({}),
        dice: Dice::new(7),
    };
    let schema = json!({
        "type": "array", "minItems": 2, "maxItems": 3, "uniqueItems": true,
        "items": {"type": "string", "pattern": "^[a-c]{1,2}$", "maxLength": 1}
    });
    for _ in 0..50 {
        let v = generator.value(&schema, "x")?;
        let items = v.as_array().context("an array")?;
        ensure!((2..=3).contains(&items.len()), "{v}");
        for item in items {
            let s = item.as_str().context("a string")?;
            ensure!(s.len() == 1 && "abc".contains(s), "{v}");
        }
        ensure!(
            items
                .iter()
                .enumerate()
                .all(|(i, x)| !items[..i].contains(x)),
            "{v}"
        );
    }
    Ok(())
}
