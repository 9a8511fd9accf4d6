//! `xchg application submit|approve|list`: scenario applications through a node's API
//! (`/v1/applications`), with the token from `XCHG_TOKEN` or `--token-file` like the listing
//! commands. A summary by default, the API's JSON with `--json`.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::args::{ApplicationApproveArgs, ApplicationListArgs, ApplicationSubmitArgs};

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// Percent-encodes a query value.
fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `xchg application submit --listing ID --scenario S --purpose P --mode M --days N --limit N`.
pub async fn submit(args: ApplicationSubmitArgs) -> anyhow::Result<ExitCode> {
    let t = args.target.into_target()?;
    let body = json!({
        "listing_id": args.listing,
        "scenario": args.scenario,
        "purpose": args.purpose,
        "delivery_mode": args.mode,
        "duration_days": args.days,
        "usage_limit": args.limit,
    });
    let v = t.call(Method::POST, "/v1/applications", Some(body)).await?;
    t.print(&v, |v| {
        outln!("application {}  {}", v["id"], s(&v["state"]));
        for p in v["precedents"].as_array().into_iter().flatten() {
            outln!(
                "  earlier: application {} {} {}",
                p["application_id"],
                s(&p["decision"]),
                match s(&p["decision"]) {
                    "approved" => format!(
                        "({} days, {} calls, {})",
                        p["duration_days"],
                        p["usage_limit"],
                        s(&p["delivery_mode"])
                    ),
                    _ => format!("({})", s(&p["reason"])),
                }
            );
        }
    });
    Ok(ExitCode::SUCCESS)
}

/// `xchg application approve ID [--days N] [--limit N] [--mode M]`.
pub async fn approve(args: ApplicationApproveArgs) -> anyhow::Result<ExitCode> {
    let t = args.target.into_target()?;
    let mut terms = Map::new();
    if let Some(days) = args.days {
        terms.insert("duration_days".into(), json!(days));
    }
    if let Some(limit) = args.limit {
        terms.insert("usage_limit".into(), json!(limit));
    }
    if let Some(mode) = args.mode {
        terms.insert("delivery_mode".into(), json!(mode));
    }
    let path = format!("/v1/applications/{}/approve", args.id);
    let v = t
        .call(Method::POST, &path, Some(Value::Object(terms)))
        .await?;
    t.print(&v, |v| {
        let a = &v["authorization"];
        outln!(
            "application {} approved: authorization {}  {} calls by {} until {}",
            v["application_id"],
            v["authorization_id"],
            a["usage_limit"],
            s(&a["delivery_mode"]),
            s(&a["expires_at"])
        );
    });
    Ok(ExitCode::SUCCESS)
}

/// `xchg application list [--state S] [--listing ID] [--limit N]`.
pub async fn list(args: ApplicationListArgs) -> anyhow::Result<ExitCode> {
    let t = args.target.into_target()?;
    let mut path = format!("/v1/applications?limit={}", args.limit);
    if let Some(state) = &args.state {
        path.push_str(&format!("&state={}", encoded(state)));
    }
    if let Some(listing) = &args.listing {
        path.push_str(&format!("&listing_id={}", encoded(listing)));
    }
    let v = t.call(Method::GET, &path, None).await?;
    t.print(&v, |v| {
        for a in v["items"].as_array().into_iter().flatten() {
            // Across exchanges: where it went, or where it came from.
            let across = &a["across"];
            let decided = matches!(a["state"].as_str(), Some("approved" | "rejected"));
            let route = match (
                across["origin_zone"].as_str(),
                across["applicant_zone"].as_str(),
            ) {
                (Some(origin), _) if decided => format!("  decided by {origin}"),
                (Some(origin), _) => format!("  sent to {origin}, which decides"),
                (None, Some(applicant)) => format!(
                    "  from {applicant} (its application {})",
                    across["applicant_application"]
                ),
                (None, None) => String::new(),
            };
            // The terms asked; an approval's granted terms are its authorisation's.
            let granted = a["authorization_id"]
                .as_u64()
                .map_or(String::new(), |n| format!("  → authorization {n}"));
            outln!(
                "{:>6}  {:<10}  {}  {}  {}  asked {}, {} calls{granted}{route}",
                a["id"],
                s(&a["state"]),
                s(&a["listing_id"]),
                s(&a["buyer"]),
                s(&a["scenario"]),
                s(&a["delivery_mode"]),
                a["usage_limit"]
            );
        }
    });
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::encoded;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encoded("sha256:ab"), "sha256%3Aab");
        assert_eq!(encoded("submitted"), "submitted");
        assert_eq!(encoded("供应"), "%E4%BE%9B%E5%BA%94");
    }
}
