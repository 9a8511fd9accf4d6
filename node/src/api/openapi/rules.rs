//! The rules of request bodies that the types' derived schemas cannot state (lengths in
//! characters, the text rule's pattern, `minItems`, `uniqueItems`, which pricing fields go with
//! which model), written into the document from the same constants and rule the validators use.
//! A test generates bodies from the served document and expects none of them refused as
//! invalid (`tests/tests/openapi_fuzz.rs`), so a rule enforced but not stated here fails it.

use serde_json::{Value, json};
use xchg_protocol::listing::limits;
use xchg_protocol::text;

use xchg_protocol::party::{self as party, EMAIL_PATTERN, PHONE_PATTERN};

use crate::api::{listings, tokens};
use crate::catalog::applications::{
    MAX_CALLS, MAX_DURATION_DAYS, MAX_PURPOSE_CHARS, MAX_USAGE_LIMIT,
};
use crate::catalog::complaints;
use crate::catalog::parties::MAX_REASON_CHARS as PARTY_REASON_CHARS;
use crate::catalog::{demands, valuation};

/// A required text: at least one visible character, at most `max` characters.
fn required_text(max: usize) -> Value {
    json!({"minLength": 1, "maxLength": max, "pattern": text::pattern(true)})
}

/// A required text as an array's items: a string with the text rule.
fn typed_text(max: usize) -> Value {
    let mut items = required_text(max);
    items["type"] = json!("string");
    items
}

/// An optional text: may be empty, at most `max` characters.
fn optional_text(max: usize) -> Value {
    json!({"maxLength": max, "pattern": text::pattern(false)})
}

/// Adds `rules` to the schema of `schema`'s property `property`, keeping what it has. A
/// property that is not there is recorded in `missed` (a renamed field, most likely).
fn state(
    schemas: &mut Value,
    schema: &str,
    property: &str,
    rules: Value,
    missed: &mut Vec<String>,
) {
    let target = schemas
        .get_mut(schema)
        .and_then(|s| s.get_mut("properties"))
        .and_then(|p| p.get_mut(property))
        .and_then(Value::as_object_mut);
    match (target, rules) {
        (Some(target), Value::Object(rules)) => target.extend(rules),
        _ => missed.push(format!("{schema}.{property}")),
    }
}

/// The pricing fields that go with each model (PROTOCOL.md 4.3): an amount and a currency
/// exactly for the models with a price.
fn pricing(description: Value) -> Value {
    let model = |models: &[&str]| json!({"type": "string", "enum": models});
    json!({
        "description": description,
        "oneOf": [
            {
                "type": "object",
                "description": "No amount: free, or agreed case by case.",
                "required": ["model"],
                "properties": {"model": model(&["free", "negotiated"])},
                "additionalProperties": false
            },
            {
                "type": "object",
                "description": "A price: a decimal amount (no sign, no exponent, no leading \
                    zero; at most 15 integer digits and 4 decimals) and its ISO 4217 currency.",
                "required": ["model", "amount", "currency"],
                "properties": {
                    "model": model(&["fixed", "per_call", "subscription"]),
                    "amount": {
                        "type": "string",
                        "pattern": r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,4})?$",
                        "examples": ["0.50"]
                    },
                    "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["CNY"]}
                },
                "additionalProperties": false
            }
        ]
    })
}

/// `POST /v1/orders/{id}/deliveries`: what each delivery mode records (`trades::delivery_shape`):
/// a file delivery its manifest hashes and no calls; a model output delivery its calls, its
/// output ids or both; every other mode its calls. The mode's enum, the calls and the note
/// keep the derived rules of `schema`.
fn delivery(schema: Value) -> Value {
    use crate::catalog::trades::{
        MAX_DELIVERY_CALLS, MAX_MANIFEST_HASHES, MAX_MODEL_OUTPUTS, MAX_NOTE_CHARS,
        MAX_OUTPUT_ID_CHARS,
    };
    let mode = |modes: &[&str]| json!({"type": "string", "enum": modes});
    let calls = json!({"type": "integer", "format": "int64", "minimum": 1,
        "maximum": MAX_DELIVERY_CALLS});
    let mut note = optional_text(MAX_NOTE_CHARS);
    note["type"] = json!("string");
    let hashes = json!({
        "type": "array", "minItems": 1, "maxItems": MAX_MANIFEST_HASHES, "uniqueItems": true,
        "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    });
    let outputs = json!({
        "type": "array", "minItems": 1, "maxItems": MAX_MODEL_OUTPUTS, "uniqueItems": true,
        "items": {"type": "string",
            "pattern": format!("^[A-Za-z0-9._:-]{{1,{MAX_OUTPUT_ID_CHARS}}}$")}
    });
    let branch = |description: &str, required: Value, properties: Value| {
        json!({
            "type": "object",
            "description": description,
            "required": required,
            "properties": properties,
            "additionalProperties": false
        })
    };
    let counted = ["api", "sandbox", "privacy_computing", "verification"];
    let mut both = json!({"oneOf": [
        branch(
            "A file delivery: the SHA-256 of each file handed over; no calls.",
            json!(["mode", "manifest_hashes"]),
            json!({"mode": mode(&["file"]), "manifest_hashes": hashes, "note": note}),
        ),
        branch(
            "A model output delivery by its calls (and, if given, its output ids).",
            json!(["mode", "calls"]),
            json!({"mode": mode(&["model_output"]), "calls": calls,
                "model_output_ids": outputs, "note": note}),
        ),
        branch(
            "A model output delivery by its output ids alone.",
            json!(["mode", "model_output_ids"]),
            json!({"mode": mode(&["model_output"]), "model_output_ids": outputs,
                "note": note}),
        ),
        branch(
            "A delivery counted in calls.",
            json!(["mode", "calls"]),
            json!({"mode": mode(&counted), "calls": calls, "note": note}),
        ),
    ]});
    if let Some(description) = schema.get("description") {
        both["description"] = description.clone();
    }
    both
}

/// `POST /v1/tokens`: a provider or buyer token names its party (a provider lists only for
/// that party; the party must be admitted, which is `403 party_not_admitted` otherwise); a
/// token of another role may name one (the caller's name in the audit chain). Two branches of
/// the derived `schema`, which already carries the property rules.
fn new_token(schema: Value) -> Value {
    use xchg_federation_config::Role;
    let bound = [Role::Provider, Role::Buyer];
    let mut provider = schema.clone();
    provider["properties"]["role"] = json!({"type": "string", "enum": bound.map(Role::as_str)});
    if let Some(party) = provider["properties"]["party"].as_object_mut() {
        party.insert("type".into(), json!("string"));
    }
    provider["required"] = json!(["role", "party", "label"]);
    provider["description"] =
        json!("A provider or buyer token: `party` is required, a party the zone admitted.");
    let mut other = schema.clone();
    let others: Vec<&str> = Role::ALL
        .into_iter()
        .filter(|r| !bound.contains(r))
        .map(Role::as_str)
        .collect();
    other["properties"]["role"] = json!({"type": "string", "enum": others});
    other["description"] = json!("A token of another role: `party` is optional.");
    let mut both = json!({"oneOf": [provider, other]});
    if let Some(description) = schema.get("description") {
        both["description"] = description.clone();
    }
    both
}

/// A party's contact: a person, and a phone or an e-mail or both. Three branches, each an
/// object of exactly its properties, so that exactly one matches any valid contact.
fn contact(description: Value) -> Value {
    let name = {
        let mut n = required_text(party::limits::CONTACT_NAME_CHARS);
        n["type"] = json!("string");
        n["description"] = json!("The contact person (or desk).");
        n
    };
    let phone = json!({
        "type": "string",
        "maxLength": party::limits::PHONE_CHARS,
        "pattern": PHONE_PATTERN,
        "examples": ["0374-8888888"],
        "description": "Digits, with spaces and '-' inside and an optional leading '+'."
    });
    let email = json!({
        "type": "string",
        "maxLength": party::limits::EMAIL_CHARS,
        "pattern": EMAIL_PATTERN,
        "examples": ["data@yuzhou-credit-center.example"],
        "description": "Printable ASCII without spaces, one '@', a '.' inside the domain."
    });
    let branch = |what: &str, fields: &[(&str, &Value)]| {
        let properties: serde_json::Map<String, Value> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).clone()))
            .collect();
        let required: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        json!({
            "type": "object",
            "description": what,
            "required": required,
            "properties": properties,
            "additionalProperties": false
        })
    };
    json!({
        "description": description,
        "oneOf": [
            branch("A phone number.", &[("name", &name), ("phone", &phone)]),
            branch("An e-mail address.", &[("name", &name), ("email", &email)]),
            branch(
                "Both.",
                &[("name", &name), ("phone", &phone), ("email", &email)]
            ),
        ]
    })
}

/// A complaint's target: the pattern of its `id` follows its `kind`.
fn complaint_target(description: Value, party_pattern: Value) -> Value {
    let branch = |kind: &str, pattern: Value, what: &str| {
        json!({
            "type": "object",
            "description": what,
            "required": ["kind", "id"],
            "additionalProperties": false,
            "properties": {
                "kind": {"type": "string", "enum": [kind]},
                "id": {"type": "string", "pattern": pattern},
            }
        })
    };
    json!({
        "description": description,
        "oneOf": [
            branch("listing", json!("^sha256:[0-9a-f]{64}$"), "A listing the zone holds, by its listing id."),
            branch("party", party_pattern, "A party of the zone's registry or a founding party, by its id."),
            branch("order", json!("^[1-9][0-9]{0,17}$"), "An order of the zone, by its number."),
        ]
    })
}

fn party_pattern_of(schemas: &Value) -> Value {
    schemas
        .get("PartyId")
        .map_or(Value::Null, |p| p["pattern"].clone())
}

/// The property rules: `(schema, property, what to add to its schema)`.
fn property_rules(party_pattern: Value) -> Vec<(&'static str, &'static str, Value)> {
    let short = limits::SHORT_TEXT_CHARS;
    let entries = |min: usize, max: usize| {
        let mut items = required_text(short);
        items["type"] = json!("string");
        json!({"minItems": min, "maxItems": max, "uniqueItems": true, "items": items})
    };
    let review = listings::MAX_REASON_CHARS;
    let days = json!({"minimum": 1, "maximum": MAX_DURATION_DAYS});
    let calls = json!({"minimum": 1, "maximum": MAX_USAGE_LIMIT});
    vec![
        ("ListingDraft", "title", required_text(limits::TITLE_CHARS)),
        (
            "ListingDraft",
            "description",
            optional_text(limits::DESCRIPTION_CHARS),
        ),
        (
            "ListingDraft",
            "category",
            json!({
                "minLength": 1,
                "maxLength": limits::CATEGORY_CHARS,
                "pattern": format!("^[a-z0-9_-]{{1,{}}}$", limits::CATEGORY_CHARS)
            }),
        ),
        (
            "ListingDraft",
            "delivery_modes",
            json!({"minItems": 1, "uniqueItems": true}),
        ),
        (
            "ListingDraft",
            "rights",
            json!({"minItems": 1, "uniqueItems": true}),
        ),
        ("ListingDraft", "scenarios", entries(1, limits::SCENARIOS)),
        ("ListingDraft", "keywords", entries(0, limits::KEYWORDS)),
        // Present (even as ""), these are required text; absent or null, nothing.
        ("ListingDraft", "spatial_coverage", required_text(short)),
        ("ListingDraft", "temporal_coverage", required_text(short)),
        ("Provider", "name", required_text(short)),
        ("RegistrationRef", "certificate_id", required_text(short)),
        ("RegistrationRef", "issuer", required_text(short)),
        ("Review", "compliance_review", optional_text(review)),
        ("Review", "security_assessment", optional_text(review)),
        ("Review", "notes", optional_text(review)),
        ("ReasonBody", "reason", required_text(review)),
        ("NewToken", "label", required_text(tokens::MAX_LABEL_CHARS)),
        (
            "NewToken",
            "party",
            json!({"pattern": party_pattern.clone()}),
        ),
        (
            "PartyProfile",
            "name",
            required_text(party::limits::NAME_CHARS),
        ),
        (
            "PartyProfile",
            "kinds",
            json!({"minItems": 1, "uniqueItems": true}),
        ),
        ("AdmitBody", "notes", optional_text(PARTY_REASON_CHARS)),
        (
            "NewEntrustment",
            "broker",
            json!({"pattern": party_pattern.clone()}),
        ),
        ("NewOrder", "buyer", json!({"pattern": party_pattern})),
        (
            "NewEntrustment",
            "scope",
            json!({"minItems": 1, "uniqueItems": true}),
        ),
        ("NewApplication", "scenario", required_text(short)),
        (
            "NewApplication",
            "purpose",
            required_text(MAX_PURPOSE_CHARS),
        ),
        ("NewApplication", "duration_days", days.clone()),
        ("NewApplication", "usage_limit", calls.clone()),
        ("Terms", "duration_days", days),
        ("Terms", "usage_limit", calls),
        (
            "Usage",
            "calls",
            json!({"minimum": 1, "maximum": MAX_CALLS}),
        ),
        (
            "RegistrationRequest",
            "rights",
            json!({"minItems": 1, "uniqueItems": true}),
        ),
        (
            "RegistrationRequest",
            "evidence_hashes",
            json!({
                "minItems": 1,
                "maxItems": xchg_protocol::certificate::MAX_EVIDENCE,
                "uniqueItems": true,
                "items": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
            }),
        ),
        ("ApproveBody", "notes", optional_text(review)),
        (
            "ValuationRequest",
            "assumptions",
            json!({
                "maxItems": valuation::MAX_ASSUMPTIONS,
                "items": typed_text(valuation::MAX_ASSUMPTION_CHARS),
            }),
        ),
        (
            "DemandRequest",
            "title",
            required_text(demands::MAX_TITLE_CHARS),
        ),
        (
            "DemandRequest",
            "description",
            required_text(demands::MAX_DESCRIPTION_CHARS),
        ),
        (
            "DemandRequest",
            "scenario",
            required_text(demands::MAX_SCENARIO_CHARS),
        ),
        (
            "DemandRequest",
            "delivery_modes",
            json!({"minItems": 1, "uniqueItems": true}),
        ),
        (
            "ProposalRequest",
            "note",
            optional_text(demands::MAX_NOTE_CHARS),
        ),
        (
            "FeeSchedule",
            "note",
            optional_text(crate::catalog::trades::MAX_NOTE_CHARS),
        ),
        (
            "NewComplaint",
            "text",
            required_text(complaints::MAX_TEXT_CHARS),
        ),
        (
            "NewComplaint",
            "category",
            required_text(complaints::MAX_CATEGORY_CHARS),
        ),
        (
            "NoteBody",
            "note",
            required_text(complaints::MAX_NOTE_CHARS),
        ),
        (
            "ResolveBody",
            "note",
            required_text(complaints::MAX_NOTE_CHARS),
        ),
    ]
}

/// Writes the rules into `doc`; returns the properties it did not find (none, unless a type
/// changed without this file).
pub fn apply(doc: &mut Value) -> Vec<String> {
    let mut missed = Vec::new();
    let schemas = &mut doc["components"]["schemas"];
    let party_pattern = schemas
        .get("PartyId")
        .map_or(Value::Null, |p| p["pattern"].clone());
    for (schema, property, rules) in property_rules(party_pattern) {
        state(schemas, schema, property, rules, &mut missed);
    }
    // At least one approach: `minProperties` (utoipa 5.5's `min_properties` attribute writes
    // `maxProperties`, so the rule is stated here).
    match schemas.get_mut("Approaches").and_then(Value::as_object_mut) {
        Some(a) => {
            a.insert("minProperties".into(), json!(1));
        }
        None => missed.push("Approaches".to_owned()),
    }
    match schemas.get_mut("NewToken") {
        Some(t) => *t = new_token(t.take()),
        None => missed.push("NewToken".to_owned()),
    }
    match schemas.get_mut("DeliveryRequest") {
        Some(d) => *d = delivery(d.take()),
        None => missed.push("DeliveryRequest".to_owned()),
    }
    match schemas.get_mut("Contact") {
        Some(c) => {
            let description = c["description"].take();
            *c = contact(description);
        }
        None => missed.push("Contact".to_owned()),
    }
    let party_ids = party_pattern_of(schemas);
    match schemas.get_mut("Target") {
        Some(t) => {
            let description = t["description"].take();
            *t = complaint_target(description, party_ids);
        }
        None => missed.push("Target".to_owned()),
    }
    match schemas.get_mut("Pricing") {
        Some(p) => {
            let description = p["description"].take();
            *p = pricing(description);
        }
        None => missed.push("Pricing".to_owned()),
    }

    // Every `cursor` but the listing search's (a cursor of its own, `search_cursor_schema`) is
    // read by `listings::paging`, whichever route takes it. The ids of an
    // external demand's path and of a demand search's `origin` follow PROTOCOL.md 2.1 and 2.2.
    let cursor = serde_json::to_value(listings::cursor_schema()).unwrap_or(Value::Null);
    const ID: &str = "[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?";
    let id = json!({"type": "string", "pattern": format!("^{ID}$")});
    let origin = json!({
        "type": "string",
        "pattern": format!("^(local|external|{ID}(/{ID})?)$"),
    });
    for (path, item) in doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|p| p.iter_mut())
    {
        let external = path.starts_with("/v1/demands/external/");
        let search = path == "/v1/demands";
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|i| i.values_mut())
        {
            let params = op.get_mut("parameters").and_then(Value::as_array_mut);
            for param in params.into_iter().flatten() {
                if param["in"] == "query" && param["name"] == "cursor" && path != "/v1/listings" {
                    param["schema"] = cursor.clone();
                }
                let name = param["name"].as_str().unwrap_or_default().to_owned();
                if external && param["in"] == "path" && (name == "exchange" || name == "zone") {
                    param["schema"] = id.clone();
                }
                if search && param["in"] == "query" && name == "origin" {
                    param["schema"] = origin.clone();
                }
            }
        }
    }
    missed
}
