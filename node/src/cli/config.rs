//! `xchg config generate`, `xchg config add-node` and `xchg config validate`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use xchg_federation_config::layout::{self, AddNodeOptions, LayoutOptions};
use xchg_federation_config::{ConfigError, Severity};
use xchg_protocol::Timestamp;

use super::args::{AddNodeArgs, GenerateArgs, RenewArgs, parse_layout};

/// Generates a layout and prints where everything went.
pub fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let out = args.out;
    let generated = if let Some(file) = &args.inventory {
        let inventory = layout::Inventory::read(file)
            .with_context(|| format!("reading the inventory {}", file.display()))?;
        layout::generate_from(
            &inventory,
            &out,
            xchg_federation_config::RaftTuning::default(),
            Timestamp::now(),
        )
        .with_context(|| {
            format!(
                "generating the layout of {} in {}",
                file.display(),
                out.display()
            )
        })?
    } else {
        let opts = LayoutOptions {
            out: out.clone(),
            layout: parse_layout(&args.layout)?,
            nodes_per_zone: args.nodes_per_zone,
            base_port: args.base_port,
            host: args.host,
            valid_days: args.valid_days,
            raft: xchg_federation_config::RaftTuning::default(),
            api_tls: args.api_tls,
        };
        layout::generate(&opts, Timestamp::now()).with_context(|| {
            format!("generating the {} layout in {}", args.layout, out.display())
        })?
    };
    let zones: usize = generated.exchanges.iter().map(|e| e.zones.len()).sum();
    let nodes: usize = generated
        .exchanges
        .iter()
        .flat_map(|e| &e.zones)
        .map(|z| z.nodes.len())
        .sum();
    outln!(
        "generated {} exchange(s), {zones} zone(s), {nodes} node(s) in {}",
        generated.exchanges.len(),
        out.display()
    );
    for exchange in &generated.exchanges {
        outln!("  {} ({})", exchange.id, exchange.display_name);
        for zone in &exchange.zones {
            let first = zone
                .nodes
                .first()
                .map(|n| n.api_url.as_str())
                .unwrap_or("-");
            outln!(
                "    {:<24} {:<28} {} node(s), first API {first}",
                // Ids do not pad themselves.
                zone.id.to_string(),
                zone.display_name,
                zone.nodes.len()
            );
        }
    }
    outln!(
        "one bundle per node to copy to its machine (config, key, certificate): {}",
        out.join(layout::BUNDLE_DIR).display()
    );
    outln!("node configs: {}", out.join("nodes").display());
    outln!(
        "node keys (secret, mode 0600; each node's machine needs only its own): {}",
        out.join("keys").display()
    );
    outln!(
        "role tokens (secret, mode 0600): {}",
        out.join("layout.json").display()
    );
    let roots = out.join(layout::ROOT_KEY_DIR);
    outln!(
        "exchange root keys (secret, mode 0600): {}",
        roots.display()
    );
    if generated.api_ca.is_some() {
        outln!(
            "API certificate authority (give it to clients: --ca or XCHG_CA): {}",
            out.join(layout::CA_CERT_FILE).display()
        );
        outln!(
            "API certificates and keys (each node's machine needs only its own): {}",
            out.join(layout::TLS_DIR).display()
        );
    }
    eprintln!(
        "warning: {} holds the exchange root keys (and, for HTTPS APIs, the API CA key), which \
         sign delegations and revocations for every node of their exchange. They belong offline: copy them to offline storage, \
         delete them here, and bring one out only for `xchg config add-node` or `xchg \
         federation revoke`. Never copy them to a node's machine.",
        roots.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Adds a node to a zone of a generated layout and prints the two commands that start it and
/// admit it to the zone.
pub fn add_node(args: AddNodeArgs) -> anyhow::Result<ExitCode> {
    let dir = args.layout;
    let zone = args
        .zone
        .parse()
        .map_err(|e| anyhow::anyhow!("--zone: {e}"))?;
    let name = args
        .name
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--name: {e}"))?;
    let opts = AddNodeOptions {
        name,
        host: args.host,
        bind: args.bind,
        base_port: args.base_port,
        valid_days: args.valid_days,
        ..AddNodeOptions::new(&dir, zone)
    };
    let added = layout::add_node(&opts, Timestamp::now()).with_context(|| {
        format!(
            "adding a node to zone {} of the layout in {}",
            opts.zone,
            dir.display()
        )
    })?;
    let body = serde_json::to_string(&added.join_request())?;
    // An HTTPS member is verified against the layout's CA, as the CLI does.
    let ca = dir.join(layout::CA_CERT_FILE);
    let cacert = if added.member_api_url.starts_with("https://") && ca.is_file() {
        format!(" --cacert {}", ca.display())
    } else {
        String::new()
    };
    outln!("added node {} to zone {}", added.node.name, opts.zone);
    outln!("  config: {}", added.config_file.display());
    outln!("  key:    {} (mode 0600)", added.key_file.display());
    outln!(
        "  bundle: {} (copy it to the node's machine)",
        added.bundle.display()
    );
    outln!(
        "  api {}, raft {}, p2p {}",
        added.node.api_url,
        added.node.raft_addr,
        added.node.p2p_addr
    );
    for w in &added.warnings {
        eprintln!("{}: warning: {w}", added.config_file.display());
    }
    outln!("next steps:");
    outln!("  1. start the node; it waits to be added:");
    outln!(
        "     xchg run --config {} --join",
        added.config_file.display()
    );
    outln!(
        "     (on its machine, from its bundle: xchg run --config <bundle>/{} --join)",
        layout::BUNDLE_CONFIG
    );
    // The admin token is not printed: terminals, logs and CI output are read by others.
    outln!(
        "  2. add it to the zone through an existing member, as the zone's admin (its token is \
         in {}, not printed here):",
        dir.join("layout.json").display()
    );
    outln!(
        "     ADMIN=$(python3 -c \"import json,sys;print(next(z['tokens']['admin'] for e in \
         json.load(open(sys.argv[1]))['exchanges'] for z in e['zones'] if z['id']==sys.argv[2]))\" \
         {} {})",
        dir.join("layout.json").display(),
        opts.zone
    );
    outln!(
        "     curl{cacert} -X POST {}/v1/zone/members -H \"Authorization: Bearer $ADMIN\" -H 'Content-Type: application/json' -d '{body}'",
        added.member_api_url
    );
    Ok(ExitCode::SUCCESS)
}

/// Renews the delegations (and API certificates) of a layout's nodes and prints what to copy
/// where.
pub fn renew(args: RenewArgs) -> anyhow::Result<ExitCode> {
    let zone = args
        .zone
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--zone: {e}"))?;
    let opts = layout::RenewOptions {
        dir: args.layout.clone(),
        zone,
        valid_days: args.valid_days,
        renew_ca: args.renew_ca,
    };
    let renewed = layout::renew(&opts, Timestamp::now())
        .with_context(|| format!("renewing the layout in {}", args.layout.display()))?;
    outln!(
        "renewed {} node(s), valid until {}",
        renewed.nodes.len(),
        renewed.not_after
    );
    if let Some(ca) = renewed.ca_not_after {
        let file = args.layout.join("api-ca.pem");
        if renewed.ca_renewed {
            outln!(
                "renewed the API certificate authority's certificate, valid until {ca}: replace \
                 the clients' copies (XCHG_CA, --ca) with {}{}",
                file.display(),
                if args.zone.is_some() {
                    " (the bundles of the other zones keep the old copy, which still verifies \
                     their certificates until it runs out: copy the new one to them too)"
                } else {
                    ""
                }
            );
        } else {
            outln!(
                "the API certificate authority ({}) is valid until {ca}",
                file.display()
            );
        }
    }
    for node in &renewed.nodes {
        let what = if node.certificate {
            "delegation and API certificate"
        } else {
            "delegation"
        };
        let bundle = node.bundle.as_ref().map_or_else(
            || "no bundle".to_owned(),
            |b| args.layout.join(b).display().to_string(),
        );
        outln!("  {:<24} {what}: {bundle}", node.zone.to_string());
    }
    for config in &renewed.skipped {
        outln!(
            "  skipped {}: its config is gone (a node removed from its zone?)",
            config.display()
        );
    }
    outln!(
        "next: copy each bundle's {} (and with HTTPS its api.crt, api.key) to its machine and \
         restart the nodes one at a time, each back in its zone (xchg status) before the next",
        layout::BUNDLE_CONFIG
    );
    Ok(ExitCode::SUCCESS)
}

/// Validates each file and prints every violation; fails if any file has an error.
pub fn validate(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now();
    let mut failed = 0usize;
    for file in files {
        if !check_one(file, now) {
            failed += 1;
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} config file(s) invalid", files.len());
        Ok(ExitCode::FAILURE)
    } else {
        outln!("{} config file(s) valid", files.len());
        Ok(ExitCode::SUCCESS)
    }
}

fn check_one(file: &Path, now: Timestamp) -> bool {
    match xchg_federation_config::load(file, now) {
        Ok(loaded) => {
            outln!("{}: ok", file.display());
            for w in &loaded.warnings {
                outln!("{}: warning: {w}", file.display());
            }
            true
        }
        Err(ConfigError::Invalid(violations)) => {
            for v in &violations {
                let label = if v.severity == Severity::Warning {
                    "warning"
                } else {
                    "error"
                };
                outln!("{}: {label}: {v}", file.display());
            }
            false
        }
        Err(e) => {
            outln!("{}: error: {e}", file.display());
            false
        }
    }
}
