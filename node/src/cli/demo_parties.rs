//! The providers of `xchg up --demo`'s catalog that are not a zone's founding party: before an
//! admin gives one a token, the zone's operator has it apply and admits it, as any party would
//! be (with a made-up but valid credit code of the zone's division).

use anyhow::Context as _;
use reqwest::Method;
use xchg_federation_config::layout::{LayoutZone, demo_provider};

use super::client::Target;
use super::up::{again, already_done};

/// Makes sure `party` (`name`) is admitted in `zone`, through the node at `api`: applies for it
/// and admits it as the zone's operator unless it already is (an earlier, interrupted run may
/// have done either).
///
/// # Errors
/// A call that fails, or a party id the layout cannot make a profile for.
pub async fn admit(zone: &LayoutZone, api: &str, party: &str, name: &str) -> anyhow::Result<()> {
    let operator = Target {
        node: api.to_owned(),
        token: Some(zone.tokens.operator.clone()),
        json: false,
        ca: None,
    };
    let path = format!("/v1/parties/{party}");
    let state = match operator.call(Method::GET, &path, None).await {
        Ok(found) => found["state"].as_str().unwrap_or_default().to_owned(),
        Err(_) => {
            let id = party.parse().context("a demo party id")?;
            let profile = demo_provider(&zone.id, &id, name)
                .with_context(|| format!("a profile for demo party {party}"))?;
            let body = serde_json::to_value(&profile)?;
            // The operator's token: staff are not held to the applications' rate limit. A
            // busy zone may time the write out: it is sent again, and a 409 then says an
            // earlier try was applied.
            let applied = again(|| {
                let (operator, body) = (operator.clone(), body.clone());
                async move { operator.call(Method::POST, "/v1/parties", Some(body)).await }
            })
            .await;
            match applied {
                Ok(_) => {}
                Err(e) if already_done(&e) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("{party} applying in {}", zone.id));
                }
            }
            "applied".to_owned()
        }
    };
    if state == "applied" {
        let admit = format!("{path}/admit");
        let admitted = again(|| {
            let (operator, admit) = (operator.clone(), admit.clone());
            async move { operator.call(Method::POST, &admit, None).await }
        })
        .await;
        match admitted {
            Ok(_) => {}
            // Admitted already, by an earlier try whose answer was lost.
            Err(e) if already_done(&e) => {}
            Err(e) => return Err(e).with_context(|| format!("admitting {party} in {}", zone.id)),
        }
    }
    Ok(())
}
