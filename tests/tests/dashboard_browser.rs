//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! plain HTTP and JSON) against two exchanges with one node per zone. A listing approved in
//! Xuchang is found by its title in Zhengzhou's dashboard, and its provenance names its origin
//! zone and the cross-exchange agreement it was recognised under; Zhengzhou has no scenario
//! applications, and its panel says so. In Xuchang's dashboard the applications panel shows an
//! authorisation's usage against its limit, in Chinese and after the toggle in English, and the
//! listing opened from there shows its registration certificate, valid and verified; the trades
//! panel shows an order under the authorisation, settled, with its fee and split. A
//! screenshot is saved to
//! `target/test-artifacts/dashboard.png` whether the test passes or fails.
//!
//! Needs `chromium` and `chromedriver` on the PATH (Debian: `chromium`, `chromium-driver`;
//! `.ci/run` installs them). `XCHG_CHROMEDRIVER` and `XCHG_CHROMIUM` point elsewhere.

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};
use xchg_tests::{Zone, eventually, example_listing};

const XUCHANG: &str = "xuchang/municipal";
const ZHENGZHOU: &str = "zhengzhou/main";
/// How long a fresh zone may take to elect its first leader.
const ELECTION: Duration = Duration::from_secs(30);
/// The first listing waits for the gossip mesh to form.
const FIRST_CROSSING: Duration = Duration::from_secs(60);
/// How long the page may take to show what the API already has (it polls every 3 s).
const PAGE: Duration = Duration::from_secs(20);
/// The scenario the listing offers and the buyer is authorised for.
const SCENARIO: &str = "企业贷款授信审查";
/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process in its own process group; dropping it ends the group, so no
/// browser outlives the test even when it fails half-way.
struct Chromedriver {
    child: Child,
    url: String,
    /// Chromium's profile, deleted after the browser is gone.
    profile: tempfile::TempDir,
}

impl Chromedriver {
    /// Starts chromedriver on a free loopback port and waits until it is ready.
    async fn start(http: &reqwest::Client) -> anyhow::Result<Chromedriver> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let program =
            std::env::var("XCHG_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let child = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {program}: install chromium and chromium-driver (see .ci/run), \
                     or set XCHG_CHROMEDRIVER"
                )
            })?;
        let driver = Chromedriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile: tempfile::tempdir()?,
        };
        eventually(Duration::from_secs(20), "chromedriver ready", || async {
            let status: Value = http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            Ok((status["value"]["ready"] == true).then_some(()))
        })
        .await?;
        Ok(driver)
    }

    /// Opens a headless Chromium session.
    async fn session(&self, http: &reqwest::Client) -> anyhow::Result<Session> {
        let mut options = json!({
            "args": [
                "--headless=new",
                // CI runs as root, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--lang=zh-CN",
                "--window-size=1440,1800",
                format!("--user-data-dir={}", self.profile.path().display()),
            ]
        });
        let binary = std::env::var("XCHG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        if std::path::Path::new(&binary).exists() {
            options["binary"] = binary.into();
        }
        let caps = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
            }}
        });
        let resp: Value = http
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await?
            .json()
            .await?;
        let id = resp["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session: {resp}"))?;
        Ok(Session {
            http: http.clone(),
            url: format!("{}/session/{id}", self.url),
        })
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The negative id names the process group: chromedriver and the browser it started.
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .status();
        let _ = self.child.wait();
    }
}

/// One WebDriver session.
struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    /// Sends one command; the `value` of its answer.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let ok = resp.status().is_success();
        let v: Value = resp.json().await?;
        if !ok {
            bail!("WebDriver {path}: {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.post("/url", json!({"url": url})).await.map(drop)
    }

    /// Whether an element matching `css` is on the page (for `eventually`'s error type).
    async fn shown(&self, css: &str) -> Result<bool, String> {
        self.find(css)
            .await
            .map(|e| e.is_some())
            .map_err(|e| e.to_string())
    }

    /// The first element matching `css`, if any.
    async fn find(&self, css: &str) -> anyhow::Result<Option<String>> {
        let resp = self
            .http
            .post(format!("{}/element", self.url))
            .json(&json!({"using": "css selector", "value": css}))
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let v: Value = resp.json().await?;
        Ok(v["value"][ELEMENT].as_str().map(str::to_owned))
    }

    async fn type_into(&self, element: &str, text: &str) -> anyhow::Result<()> {
        self.post(&format!("/element/{element}/value"), json!({"text": text}))
            .await
            .map(drop)
    }

    async fn click(&self, element: &str) -> anyhow::Result<()> {
        self.post(&format!("/element/{element}/click"), json!({}))
            .await
            .map(drop)
    }

    async fn displayed(&self, element: &str) -> anyhow::Result<bool> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/element/{element}/displayed"),
                None,
            )
            .await?;
        Ok(v == true)
    }

    /// Runs `script` in the page; its return value.
    async fn script(&self, script: &str, args: Value) -> anyhow::Result<Value> {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    async fn screenshot(&self) -> anyhow::Result<Vec<u8>> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let b64 = v.as_str().context("screenshot is not base64 text")?;
        Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
    }

    async fn quit(&self) {
        let _ = self.call(reqwest::Method::DELETE, "", None).await;
    }
}

/// `target/test-artifacts/dashboard.png` in the workspace.
fn artifact() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-artifacts")
        .join("dashboard.png")
}

/// The text of the element with `id`, or "" if there is none.
async fn text_of(session: &Session, id: &str) -> Result<String, String> {
    session
        .script(
            "const el = document.getElementById(arguments[0]); return el ? el.textContent : '';",
            json!([id]),
        )
        .await
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .map_err(|e| e.to_string())
}

/// Clicks the first element matching `css`. The page may redraw it between finding and
/// clicking (a poll's answer arriving); a click on the replaced element fails and is tried
/// again on the new one.
async fn click_when_shown(session: &Session, what: &str, css: &str) -> anyhow::Result<()> {
    eventually(PAGE, what, || async {
        let Some(element) = session.find(css).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        session
            .click(&element)
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    })
    .await
}

/// Waits until the element with `id` contains every one of `texts`.
async fn shows(session: &Session, what: &str, id: &str, texts: &[&str]) -> anyhow::Result<()> {
    eventually(PAGE, what, || async {
        let text = text_of(session, id).await?;
        if texts.iter().all(|t| text.contains(t)) {
            Ok(Some(()))
        } else {
            Err(text)
        }
    })
    .await
}

/// What the user does: search for the title, open the listing, read its provenance.
async fn search_and_open(
    session: &Session,
    url: &str,
    title: &str,
    id: &str,
    decoy: &str,
    nodes: &[String],
) -> anyhow::Result<()> {
    session.goto(url).await?;
    let search = eventually(PAGE, "the search box", || async {
        session.find("#search").await.map_err(|e| e.to_string())
    })
    .await?;
    let address: Value = session.script("return location.href;", json!([])).await?;
    ensure!(
        !address.as_str().unwrap_or_default().contains("token="),
        "the token stays in the address bar: {address}"
    );
    let selector = format!(".result[data-id=\"{id}\"]");
    let decoy = format!(".result[data-id=\"{decoy}\"]");
    // Before searching, the catalog lists both; the search must leave only the one asked for.
    eventually(PAGE, "both listings in the catalog", || async {
        let both = session.shown(&selector).await? && session.shown(&decoy).await?;
        Ok(both.then_some(()))
    })
    .await?;
    session.type_into(&search, title).await?;
    eventually(
        PAGE,
        "the search to keep only the listing asked for",
        || async {
            let only = session.shown(&selector).await? && !session.shown(&decoy).await?;
            Ok(only.then_some(()))
        },
    )
    .await?;
    click_when_shown(
        session,
        "a click on the listing among the results",
        &selector,
    )
    .await?;
    eventually(
        PAGE,
        "provenance naming xuchang/municipal and outside:xuchang",
        || async {
            let text = text_of(session, "provenance").await?;
            let shown = text.contains(XUCHANG) && text.contains("outside:xuchang");
            if shown { Ok(Some(())) } else { Err(text) }
        },
    )
    .await?;
    eventually(PAGE, "both exchanges' nodes on the map", || async {
        let text = text_of(session, "map").await?;
        let all = nodes.iter().all(|n| text.contains(n.as_str()));
        if all { Ok(Some(())) } else { Err(text) }
    })
    .await?;
    let error = session.find("#error").await?.context("no #error element")?;
    if session.displayed(&error).await? {
        bail!(
            "the page shows an error: {}",
            text_of(session, "error").await.unwrap_or_default()
        );
    }
    ensure!(
        session.find(&selector).await?.is_some(),
        "the listing is no longer among the results"
    );
    Ok(())
}

/// What a regulator of the listing's origin zone sees at `url`: the authorisation's usage
/// against its limit in the applications panel; the listing `id`, opened from there, with its
/// certificate `number` valid and verified; both again in English after the toggle.
async fn follow_the_authorisation(
    session: &Session,
    url: &str,
    id: &str,
    number: &str,
) -> anyhow::Result<()> {
    session.goto(url).await?;
    // 20 calls reported and 100 delivered under the order.
    shows(
        session,
        "the authorisation's usage against its limit",
        "applications",
        &["已用 / 上限", SCENARIO, "已批准", "有效", "120 / 1,000"],
    )
    .await?;
    // 100 calls at 0.50 = 50.00; a 5% fee, 2.50; the provider keeps 47.50.
    shows(
        session,
        "the order and its settlement",
        "orders",
        &[
            "已结算",
            "CNY 50.00",
            "平台费 2.50",
            "提供方 47.50",
            "费率 v1",
        ],
    )
    .await?;
    let link = format!("#applications a[title=\"{id}\"]");
    click_when_shown(session, "a click on the application's listing", &link).await?;
    shows(
        session,
        "the listing's certificate, valid and verified",
        "certificates",
        &["登记确权证书", number, "有效", "验证通过", "数据资源持有权"],
    )
    .await?;
    click_when_shown(session, "a click on the language toggle", "#lang").await?;
    shows(
        session,
        "the applications panel in English",
        "applications",
        &["Used / limit", "approved", "active", "120 / 1,000"],
    )
    .await?;
    shows(
        session,
        "the trades panel in English",
        "orders",
        &[
            "settled",
            "CNY 50.00",
            "fee 2.50",
            "provider 47.50",
            "fees v1",
        ],
    )
    .await?;
    shows(
        session,
        "the certificate in English",
        "certificates",
        &[
            "Registration certificates",
            number,
            "valid",
            "verified",
            "holding",
        ],
    )
    .await
}

/// A trade under authorisation `grant` through node `i`: a fee schedule of 5%, an order of 100
/// calls, confirmed, delivered and settled.
async fn trade(
    fed: &Zone,
    i: usize,
    t: &xchg_federation_config::layout::ZoneTokens,
    grant: u64,
) -> anyhow::Result<()> {
    let schedule = json!({
        "platform_fee_bp": 500, "operator_share_bp": 0, "broker_share_bp": 0, "minimum_fee": "0",
    });
    let body = Some(("application/json", serde_json::to_vec(&schedule)?));
    let path = "/v1/zone/fee-schedule";
    let (s, v) = fed
        .send(i, reqwest::Method::PUT, path, Some(&t.admin), body)
        .await?;
    ensure!(s == 200, "fee schedule: {s} {v}");
    let order = json!({"authorization_id": grant, "quantity": 100});
    let (s, v) = fed.post(i, "/v1/orders", &t.buyer, &order).await?;
    ensure!(s == 201, "order: {s} {v}");
    let id = v["id"].as_u64().context("order id")?;
    let steps = [
        ("confirm", &t.provider, json!({})),
        (
            "deliveries",
            &t.provider,
            json!({"mode": "api", "calls": 100}),
        ),
        ("settlement", &t.operator, json!({})),
    ];
    for (step, token, body) in steps {
        let (s, v) = fed
            .post(i, &format!("/v1/orders/{id}/{step}"), token, &body)
            .await?;
        ensure!(s == 200 || s == 201, "{step}: {s} {v}");
    }
    Ok(())
}

/// The supervision panel at the origin, in English after the toggle: the complaint filed
/// against the listing, received, and the chart drawn with bars for the period's figures.
async fn supervise(session: &Session, complaint: &str) -> anyhow::Result<()> {
    shows(
        session,
        "the complaint in the supervision panel",
        "complaints",
        &[complaint, "received", "listing"],
    )
    .await?;
    eventually(PAGE, "the supervision chart's bars", || async {
        let bars: Value = session
            .script(
                "return document.querySelectorAll('#sup-chart svg rect.bar').length;",
                json!([]),
            )
            .await
            .map_err(|e| e.to_string())?;
        // Listed, applied, approved, granted and complained of today: five bars at least.
        match bars.as_u64() {
            Some(n) if n >= 5 => Ok(Some(())),
            other => Err(format!("{other:?} bars")),
        }
    })
    .await?;
    shows(
        session,
        "the standing at the period's end",
        "sup-now",
        &["Listings", "listed", "Complaints", "received"],
    )
    .await?;
    // The screenshot taken after shows the panel.
    session
        .script(
            "document.querySelector('.sup-panel').scrollIntoView();",
            json!([]),
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_from_xuchang_is_found_and_traced_in_zhengzhous_dashboard() -> anyhow::Result<()>
{
    let started = Instant::now();
    let mut fed = Zone::generate("two-exchanges", 1)?;
    fed.start_all()?;
    let xu = fed.zone_nodes(XUCHANG)[0];
    let zz = fed.zone_nodes(ZHENGZHOU)[0];
    let xt = fed.zone_tokens(XUCHANG).clone();
    let zt = fed.zone_tokens(ZHENGZHOU).clone();
    fed.wait_for_leader(xu, ELECTION).await?;
    fed.wait_for_leader(zz, ELECTION).await?;

    let unique = format!(
        "看板dashboard{}x{}",
        std::process::id(),
        started.elapsed().as_nanos() % 1_000_000
    );
    let listing = example_listing(&unique);
    let title = listing["title"].as_str().context("title")?.to_owned();
    let id = fed.approve_new(xu, &xt, &listing).await?;
    // Another listing, which the search must filter out.
    let mut other = example_listing("另一个 another product");
    other["title"] = "许昌市公交实时到站数据 decoy".into();
    let decoy = fed.approve_new(xu, &xt, &other).await?;
    for listing_id in [&id, &decoy] {
        fed.wait_for_state(
            &[zz],
            &zt.regulator,
            listing_id,
            "recognised",
            FIRST_CROSSING,
        )
        .await?;
    }
    eprintln!("recognised after {:?}", started.elapsed());
    let number = fed.certify(xu, &xt, &id).await?;
    let grant = fed.authorise(xu, &xt, &id, SCENARIO, 1000).await?;
    let usage = format!("/v1/authorizations/{grant}/usage");
    let (s, v) = fed
        .post(xu, &usage, &xt.buyer, &json!({"calls": 20}))
        .await?;
    ensure!(s == 200 && v["used"] == 20, "usage: {s} {v}");
    trade(&fed, xu, &xt, grant).await?;
    let complaint = "投诉：接口返回的数据与目录描述不符";
    let (s, v) = fed
        .post(
            xu,
            "/v1/complaints",
            &xt.buyer,
            &json!({"target": {"kind": "listing", "id": id}, "text": complaint}),
        )
        .await?;
    ensure!(s == 201, "complaint: {s} {v}");

    let http = reqwest::Client::new();
    let driver = Chromedriver::start(&http).await?;
    let session = driver.session(&http).await?;
    let url = format!("{}/#token={}", fed.nodes[zz].api_url, zt.regulator);
    let nodes: Vec<String> = fed.nodes.iter().map(|n| n.name.clone()).collect();
    let origin = format!("{}/#token={}", fed.nodes[xu].api_url, xt.regulator);
    let outcome = async {
        search_and_open(&session, &url, &title, &id, &decoy, &nodes).await?;
        shows(
            &session,
            "no applications in Zhengzhou",
            "applications",
            &["暂无场景申请"],
        )
        .await?;
        shows(
            &session,
            "Xuchang's signed audit tree head, held and consistent",
            "heads",
            &[XUCHANG, "一致"],
        )
        .await?;
        shows(
            &session,
            "the heads' count",
            "heads-count",
            &["1 个区，0 个被标记"],
        )
        .await?;
        follow_the_authorisation(&session, &origin, &id, &number).await?;
        supervise(&session, complaint).await
    }
    .await;

    // The screenshot is most useful when the test fails, so it is taken either way.
    let shot = artifact();
    if let Some(dir) = shot.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match session.screenshot().await {
        Ok(png) => {
            std::fs::write(&shot, png)?;
            eprintln!("screenshot: {}", shot.display());
        }
        Err(e) => eprintln!("no screenshot: {e}"),
    }
    session.quit().await;
    drop(driver);
    eprintln!("done after {:?}", started.elapsed());
    outcome
}
