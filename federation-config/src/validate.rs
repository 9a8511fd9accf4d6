//! Step two of loading: from the raw file to the validated model, reporting every violation.
//!
//! Each section is checked on its own and yields `None` if anything in it is wrong; cross-section
//! rules (the node is a member, the delegation matches the zone and the member key, ...) run
//! whenever the values they need were readable, so one mistake does not hide another.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use multiaddr::{Multiaddr, Protocol};
use serde::de::DeserializeOwned;
use serde::de::value::{Error as ValueError, StrDeserializer};
use xchg_protocol::announcement::CLOCK_SKEW_MS;
use xchg_protocol::{
    Classification, Contact, CreditCode, DeliveryMode, ExchangeId, IdError, KeyError, NodeName,
    PartyId, PartyKind, PartyProfile, PublicKey, SignedDelegation, Timestamp, TrustStore,
    VerifyError, ZoneId,
};

use crate::HostPort;
use crate::model::{
    Agreement, ApiSection, ApiTls, CategorySet, ExchangeSection, ExportPolicy, Gossip, HttpLimits,
    Listen, Member, ModeSet, NodeConfig, NodeSection, OutsideExchange, PersonalInfoExport,
    RaftTuning, TokenHash, ZoneSection,
};
use crate::raw::{
    RawAgreement, RawApi, RawConfig, RawExchange, RawExport, RawGossip, RawListen, RawMember,
    RawOutside, RawParty, RawRaft, RawToken, RawZone,
};
use crate::role::Role;
use crate::violation::Report;

/// The schema version this crate reads.
pub const SCHEMA_VERSION: i64 = 1;

/// A delegation expiring sooner than this draws a warning: 30 days.
pub const DELEGATION_RENEWAL_MS: u64 = 30 * DAY_MS;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// The highest `raft.snapshot_log_percent` accepted.
const MAX_SNAPSHOT_LOG_PERCENT: u64 = 1000;

/// The outcome of checking a raw file: the model if every section was readable, what was wrong,
/// and the values the key-file check of [`crate::load`] needs.
pub(crate) struct Checked {
    /// The model, if every section was readable (errors may still have been recorded).
    pub(crate) config: Option<NodeConfig>,
    /// Every violation found.
    pub(crate) report: Report,
    /// `node.key_file` resolved against the config directory.
    pub(crate) key_file: Option<PathBuf>,
    /// Index and key of this node's entry in `zone.members`.
    pub(crate) own_key: Option<(usize, PublicKey)>,
}

/// Checks every rule of schema version 1.
pub(crate) fn check(raw: &RawConfig, base_dir: &Path, now: Timestamp) -> Checked {
    let mut c = Checker {
        report: Report::default(),
        base_dir,
        now,
        key_file: None,
        own_key: None,
    };
    let config = c.config(raw);
    Checked {
        config,
        report: c.report,
        key_file: c.key_file,
        own_key: c.own_key,
    }
}

/// Checks an export policy found at `prefix` of another file (the layout inventory) by the
/// rules of a node config's `[export]`, into `report`.
pub(crate) fn check_export(report: &mut Report, prefix: &str, raw: Option<&RawExport>) {
    with_checker(report, |c| {
        c.export(prefix, raw);
    });
}

/// Checks an agreement found at `prefix` of another file by the rules of a node config's
/// `[sibling_agreement]` (`required` false) or `[outside.agreement]` (`required` true).
pub(crate) fn check_agreement(
    report: &mut Report,
    prefix: &str,
    raw: &RawAgreement,
    required: bool,
) {
    with_checker(report, |c| {
        c.agreement(prefix, Some(raw), required);
    });
}

/// Checks a name shown to people found at `path` of another file by the rules of a node
/// config's display names (not empty, no control characters).
pub(crate) fn check_display_name(report: &mut Report, path: &str, text: &str) {
    with_checker(report, |c| {
        c.display_name(path, text);
    });
}

/// Runs `check` on a checker whose findings go to `report`.
fn with_checker(report: &mut Report, check: impl FnOnce(&mut Checker<'_>)) {
    let mut c = Checker {
        report: std::mem::take(report),
        base_dir: Path::new("."),
        now: Timestamp(0),
        key_file: None,
        own_key: None,
    };
    check(&mut c);
    *report = c.report;
}

struct Checker<'a> {
    report: Report,
    base_dir: &'a Path,
    now: Timestamp,
    /// Found on the way, for the key-file check.
    key_file: Option<PathBuf>,
    /// Found on the way, for the key-file check.
    own_key: Option<(usize, PublicKey)>,
}

impl Checker<'_> {
    /// Runs every check, then assembles the model if every part was readable.
    fn config(&mut self, raw: &RawConfig) -> Option<NodeConfig> {
        if raw.version != SCHEMA_VERSION {
            self.report.error(
                "version",
                format!(
                    "unsupported schema version {}; this node reads version {SCHEMA_VERSION}",
                    raw.version
                ),
            );
        }
        let name = self.parse::<NodeName>("node.name", &raw.node.name);
        self.key_file = self.relative_path("node.key_file", &raw.node.key_file);
        let data_dir = self.relative_path("node.data_dir", &raw.node.data_dir);
        let listen = self.listen(&raw.listen);
        let exchange = self.exchange(&raw.exchange);
        let members = self.members(&raw.zone.members);
        let own = name
            .as_ref()
            .and_then(|name| self.own_member(name, &members));
        if let Some((i, me)) = own.and_then(|i| Some((i, members.get(i)?.as_ref()?))) {
            self.own_key = Some((i, me.public_key));
            if let Some(listen) = &listen {
                self.listen_matches_member(listen.raft, i, &me.raft_addr);
            }
        }
        let zone = self.zone(&raw.zone, exchange.as_ref(), members);
        let raft = self.raft(raw.raft.as_ref());
        let export = self.export("export", raw.export.as_ref());
        let sibling_agreement =
            self.agreement("sibling_agreement", raw.sibling_agreement.as_ref(), false);
        let gossip = self.gossip(raw.gossip.as_ref());
        let outside = self.outside(&raw.outside, exchange.as_ref());
        if gossip.as_ref().is_some_and(|g| g.bootstrap.is_empty()) && raw.outside.is_empty() {
            self.report.warning(
                "gossip.bootstrap",
                "empty, and there is no [[outside]] exchange: this node dials no gossip peer, so \
                 its listings reach other zones only if they dial it",
            );
        }
        let api = self.api(raw.api.as_ref(), listen.as_ref().map(|l| l.api));
        let parties = self.parties(&raw.parties);
        Some(NodeConfig {
            node: NodeSection {
                name: name?,
                key_file: self.key_file.clone()?,
                data_dir: data_dir?,
            },
            listen: listen?,
            exchange: exchange?,
            zone: zone?,
            raft: raft?,
            export: export?,
            sibling_agreement: sibling_agreement?,
            gossip: gossip?,
            outside: outside?,
            api: api?,
            parties: parties?,
        })
    }

    /// `[[parties]]`: each founding party whole and valid, no id or credit code twice.
    fn parties(&mut self, raw: &[RawParty]) -> Option<Vec<PartyProfile>> {
        let mark = self.report.errors();
        let parties: Vec<Option<PartyProfile>> = raw
            .iter()
            .enumerate()
            .map(|(i, p)| self.party(i, p))
            .collect();
        let ids: Vec<Option<String>> = raw.iter().map(|p| Some(p.id.clone())).collect();
        self.duplicates(&ids, |i| format!("parties[{i}].id"));
        let codes: Vec<Option<String>> = raw.iter().map(|p| Some(p.credit_code.clone())).collect();
        self.duplicates(&codes, |i| format!("parties[{i}].credit_code"));
        let parties: Option<Vec<PartyProfile>> = parties.into_iter().collect();
        parties.filter(|_| self.report.clean_since(mark))
    }

    fn party(&mut self, i: usize, raw: &RawParty) -> Option<PartyProfile> {
        let at = |field: &str| format!("parties[{i}].{field}");
        let id = self.parse::<PartyId>(&at("id"), &raw.id);
        let credit_code = self
            .report
            .check(at("credit_code"), raw.credit_code.parse::<CreditCode>());
        let kinds: Vec<Option<PartyKind>> = raw
            .kinds
            .iter()
            .enumerate()
            .map(|(k, kind)| {
                self.report
                    .check(at(&format!("kinds[{k}]")), kind.parse::<PartyKind>())
            })
            .collect();
        let profile = PartyProfile {
            id: id?,
            name: raw.name.clone(),
            credit_code: credit_code?,
            kinds: kinds.into_iter().collect::<Option<_>>()?,
            contact: Contact {
                name: raw.contact.name.clone(),
                phone: raw.contact.phone.clone(),
                email: raw.contact.email.clone(),
            },
        };
        match profile.validate() {
            Ok(()) => Some(profile),
            Err(e) => {
                for problem in e.0 {
                    self.report.error(at(&problem.field), problem.message);
                }
                None
            }
        }
    }

    /// Parses an identifier; the protocol's message says what is expected.
    fn parse<T: FromStr<Err = IdError>>(&mut self, path: &str, text: &str) -> Option<T> {
        self.report.check(path, text.parse::<T>())
    }

    fn display_name(&mut self, path: &str, text: &str) -> Option<String> {
        if text.trim().is_empty() {
            self.report
                .error(path, "must not be empty; it is the name people see");
            return None;
        }
        if text.chars().any(char::is_control) {
            self.report
                .error(path, "must not contain control characters");
            return None;
        }
        Some(text.to_owned())
    }

    fn relative_path(&mut self, path: &str, text: &str) -> Option<PathBuf> {
        if text.trim().is_empty() {
            self.report.error(
                path,
                "must not be empty; expected a path relative to this file",
            );
            return None;
        }
        Some(self.base_dir.join(text))
    }

    fn socket_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        let parsed = text.parse::<SocketAddr>().map_err(|_| {
            format!("{text:?} is not a socket address; expected IP:port, e.g. 127.0.0.1:7101")
        });
        self.report.check(path, parsed)
    }

    fn multiaddr(&mut self, path: &str, text: &str) -> Option<Multiaddr> {
        let parsed = text.parse::<Multiaddr>().map_err(|e| {
            format!("{text:?} is not a multiaddr ({e}); expected e.g. /ip4/127.0.0.1/tcp/7102")
        });
        self.report.check(path, parsed)
    }

    /// A peer address to dial: a multiaddr that should name the peer it expects.
    fn dial_addrs(&mut self, path: &str, texts: &[String]) -> Option<Vec<Multiaddr>> {
        let addrs: Vec<_> = texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let path = format!("{path}[{i}]");
                let addr = self.multiaddr(&path, text)?;
                if !addr.iter().any(|p| matches!(p, Protocol::P2p(_))) {
                    self.report.warning(
                        path,
                        "has no /p2p/<peer id> at the end, so any peer answering at this address \
                         is accepted",
                    );
                }
                Some(addr)
            })
            .collect();
        addrs.into_iter().collect()
    }

    fn public_key(&mut self, path: &str, text: &str) -> Option<PublicKey> {
        self.report.check(path, public_key_from_base64(text))
    }

    fn classification(&mut self, path: &str, text: &str) -> Option<Classification> {
        let parsed = from_name(text).ok_or_else(|| {
            format!("unknown classification {text:?}; expected one of {CLASSIFICATIONS}")
        });
        self.report.check(path, parsed)
    }

    /// A classification that may cross a zone boundary.
    fn crossing_classification(&mut self, path: &str, text: &str) -> Option<Classification> {
        let class = self.classification(path, text)?;
        if class > Classification::General {
            self.report.error(
                path,
                format!(
                    "{text:?} is above general: important and core data never leave their zone; \
                     expected public or general"
                ),
            );
            return None;
        }
        Some(class)
    }

    fn listen(&mut self, raw: &RawListen) -> Option<Listen> {
        let api = self.socket_addr("listen.api", &raw.api);
        let raft = self.socket_addr("listen.raft", &raw.raft);
        let p2p = self.multiaddr("listen.p2p", &raw.p2p);
        if api.is_some() && api == raft {
            self.report.error(
                "listen.raft",
                "same address as listen.api; each needs its own port",
            );
        }
        Some(Listen {
            api: api?,
            raft: raft?,
            p2p: p2p?,
        })
    }

    fn exchange(&mut self, raw: &RawExchange) -> Option<ExchangeSection> {
        Some(ExchangeSection {
            id: self.parse("exchange.id", &raw.id)?,
            display_name: self.display_name("exchange.display_name", &raw.display_name)?,
            root_public_key: self.public_key("exchange.root_public_key", &raw.root_public_key)?,
        })
    }

    /// Checks every member; the entry is `None` where a field is unreadable.
    fn members(&mut self, raw: &[RawMember]) -> Vec<Option<Member>> {
        if raw.is_empty() {
            self.report.error(
                "zone.members",
                "empty; list every node of the zone, this one included, as [[zone.members]]",
            );
        } else if raw.len().is_multiple_of(2) {
            let n = raw.len();
            self.report.warning(
                "zone.members",
                format!(
                    "{n} members tolerate no more failed nodes than {} (both tolerate {}); use an \
                     odd number",
                    n - 1,
                    (n - 1) / 2
                ),
            );
        }
        let (mut names, mut addrs, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        let mut members = Vec::new();
        for (i, m) in raw.iter().enumerate() {
            let at = |field: &str| format!("zone.members[{i}].{field}");
            let name = self.parse::<NodeName>(&at("name"), &m.name);
            let raft_addr = self.report.check(at("raft_addr"), raft_addr(&m.raft_addr));
            let api_url = self.report.check(at("api_url"), api_url(&m.api_url));
            let public_key = self.public_key(&at("public_key"), &m.public_key);
            names.push(name.as_ref().map(ToString::to_string));
            addrs.push(raft_addr.as_ref().map(ToString::to_string));
            keys.push(public_key.as_ref().map(PublicKey::to_base64));
            members.push(match (name, raft_addr, api_url, public_key) {
                (Some(name), Some(raft_addr), Some(api_url), Some(public_key)) => Some(Member {
                    name,
                    raft_addr,
                    api_url,
                    public_key,
                }),
                _ => None,
            });
        }
        self.duplicates(&names, |i| format!("zone.members[{i}].name"));
        self.duplicates(&addrs, |i| format!("zone.members[{i}].raft_addr"));
        self.duplicates(&keys, |i| format!("zone.members[{i}].public_key"));
        members
    }

    /// Reports each value equal to an earlier one, naming the earlier one's path.
    fn duplicates(&mut self, values: &[Option<String>], path: impl Fn(usize) -> String) {
        for (i, value) in values.iter().enumerate() {
            let Some(value) = value else { continue };
            if let Some(j) = values[..i].iter().position(|v| v.as_ref() == Some(value)) {
                self.report
                    .error(path(i), format!("duplicates {} ({value})", path(j)));
            }
        }
    }

    /// The index of this node in `zone.members`.
    fn own_member(&mut self, name: &NodeName, members: &[Option<Member>]) -> Option<usize> {
        let found = members
            .iter()
            .position(|m| m.as_ref().is_some_and(|m| m.name == *name));
        // With an unreadable member the name may be there; only say it is missing when it is.
        if found.is_none() && members.iter().all(Option::is_some) && !members.is_empty() {
            let names: Vec<String> = members
                .iter()
                .flatten()
                .map(|m| m.name.to_string())
                .collect();
            self.report.error(
                "node.name",
                format!(
                    "\"{name}\" is not among zone.members ({}); a node must be a member of its zone",
                    names.join(", ")
                ),
            );
        }
        found
    }

    fn listen_matches_member(&mut self, listen: SocketAddr, index: usize, member: &HostPort) {
        // Binding all interfaces on the member's port is how a node behind NAT or in a
        // container listens at its advertised address; a member named by host name is reached
        // at whatever the name resolves to (`localhost` excepted), so only its port is known
        // to match. The rules are an inventory's `bind` rules (`Host::bind_misfit`).
        if listen.port() != member.port {
            self.report.error(
                "listen.raft",
                format!(
                    "{listen} differs from zone.members[{index}].raft_addr ({member}); the zone \
                     reaches this node at its member address"
                ),
            );
        } else if let Some(why) = member.host.bind_misfit(listen.ip()) {
            self.report.error(
                "listen.raft",
                format!("{listen}, where zone.members[{index}].raft_addr is {member}: {why}"),
            );
        }
    }

    fn zone(
        &mut self,
        raw: &RawZone,
        exchange: Option<&ExchangeSection>,
        members: Vec<Option<Member>>,
    ) -> Option<ZoneSection> {
        let id = self.parse::<ZoneId>("zone.id", &raw.id);
        if let (Some(id), Some(exchange)) = (&id, exchange)
            && id.exchange() != exchange.id
        {
            self.report.error(
                "zone.id",
                format!(
                    "{id} is not a zone of exchange {} (exchange.id); expected {}/<zone>",
                    exchange.id, exchange.id
                ),
            );
        }
        let display_name = self.display_name("zone.display_name", &raw.display_name);
        let delegation = self.delegation(&raw.delegation, id.as_ref(), exchange);
        let members: Option<Vec<Member>> = members.into_iter().collect();
        Some(ZoneSection {
            id: id?,
            display_name: display_name?,
            delegation: delegation?,
            members: members.filter(|m| !m.is_empty())?,
        })
    }

    /// Decodes the delegation and checks it against the exchange root, the zone, this node's
    /// member key and `now`.
    fn delegation(
        &mut self,
        text: &str,
        zone: Option<&ZoneId>,
        exchange: Option<&ExchangeSection>,
    ) -> Option<SignedDelegation> {
        const PATH: &str = "zone.delegation";
        let bytes = self.report.check(
            PATH,
            hex::decode(text.trim()).map_err(|e| {
                format!("not hex ({e}); expected the hex form of the signed delegation's CBOR")
            }),
        )?;
        let signed = self.report.check(
            PATH,
            SignedDelegation::from_bytes(&bytes)
                .map_err(|e| format!("does not decode as a signed delegation: {e}")),
        )?;
        let mark = self.report.errors();
        let d = &signed.delegation;
        if let Some(exchange) = exchange {
            if d.exchange != exchange.id {
                self.report.error(
                    PATH,
                    format!(
                        "issued by exchange {}, but exchange.id is {}",
                        d.exchange, exchange.id
                    ),
                );
            }
            self.delegation_signature(&signed, exchange);
        }
        if let Some(zone) = zone.filter(|z| **z != d.zone) {
            self.report.error(
                PATH,
                format!("delegates zone {}, but zone.id is {zone}", d.zone),
            );
        }
        if let Some((index, key)) = self.own_key.filter(|(_, key)| *key != d.node_key) {
            self.report.error(
                PATH,
                format!(
                    "delegates node key {}, but zone.members[{index}].public_key (this node) is {}",
                    d.node_key.to_base64(),
                    key.to_base64()
                ),
            );
        }
        self.delegation_validity(d.not_before, d.not_after);
        self.report.clean_since(mark).then_some(signed)
    }

    /// Checks that the exchange root signed the delegation.
    fn delegation_signature(&mut self, signed: &SignedDelegation, exchange: &ExchangeSection) {
        // Trust the root under the delegation's own exchange name: a wrong name is reported by
        // the caller, and this way the signature is still checked.
        let mut trust = TrustStore::default();
        trust.trust(signed.delegation.exchange.clone(), exchange.root_public_key);
        match signed.verify(&trust, self.now) {
            Err(VerifyError::UntrustedRoot { .. }) => self.report.error(
                "zone.delegation",
                format!(
                    "signed by root key {}, not by exchange.root_public_key ({})",
                    signed.root_key.to_base64(),
                    exchange.root_public_key.to_base64()
                ),
            ),
            Err(VerifyError::BadDelegationSignature) => self.report.error(
                "zone.delegation",
                "the root key's signature does not verify",
            ),
            // The zone and the validity window are checked on their own, signature or not.
            _ => {}
        }
    }

    /// Errors for a delegation outside its validity window, a warning when it ends soon.
    fn delegation_validity(&mut self, not_before: Timestamp, not_after: Timestamp) {
        const PATH: &str = "zone.delegation";
        let now = self.now;
        if now.plus_millis(CLOCK_SKEW_MS) < not_before {
            self.report
                .error(PATH, format!("not valid before {not_before} (now {now})"));
        } else if now >= not_after {
            self.report.error(
                PATH,
                format!(
                    "expired at {not_after} (now {now}); ask the exchange for a new delegation"
                ),
            );
        } else if not_after.millis() - now.millis() < DELEGATION_RENEWAL_MS {
            let days = (not_after.millis() - now.millis()) / DAY_MS;
            self.report.warning(
                PATH,
                format!(
                    "expires at {not_after}, in {days} days; ask the exchange for a new delegation"
                ),
            );
        }
    }

    fn raft(&mut self, raw: Option<&RawRaft>) -> Option<RaftTuning> {
        let d = RaftTuning::default();
        let raw = raw.cloned().unwrap_or_default();
        let t = RaftTuning {
            heartbeat_ms: raw.heartbeat_ms.unwrap_or(d.heartbeat_ms),
            election_timeout_min_ms: raw
                .election_timeout_min_ms
                .unwrap_or(d.election_timeout_min_ms),
            election_timeout_max_ms: raw
                .election_timeout_max_ms
                .unwrap_or(d.election_timeout_max_ms),
            snapshot_every_entries: raw
                .snapshot_every_entries
                .unwrap_or(d.snapshot_every_entries),
            snapshot_log_percent: raw.snapshot_log_percent.unwrap_or(d.snapshot_log_percent),
            keep_log_entries: raw.keep_log_entries.unwrap_or(d.keep_log_entries),
        };
        let mark = self.report.errors();
        if t.heartbeat_ms == 0 {
            self.report.error("raft.heartbeat_ms", "must be at least 1");
        }
        if t.election_timeout_min_ms <= t.heartbeat_ms {
            self.report.error(
                "raft.election_timeout_min_ms",
                format!(
                    "{} is not above raft.heartbeat_ms ({}); followers would start elections \
                     while the leader is healthy",
                    t.election_timeout_min_ms, t.heartbeat_ms
                ),
            );
        }
        if t.election_timeout_max_ms <= t.election_timeout_min_ms {
            self.report.error(
                "raft.election_timeout_max_ms",
                format!(
                    "{} is not above raft.election_timeout_min_ms ({}); the timeout needs a range \
                     to be randomised in, or elections split votes again and again",
                    t.election_timeout_max_ms, t.election_timeout_min_ms
                ),
            );
        }
        if t.snapshot_every_entries == 0 {
            self.report
                .error("raft.snapshot_every_entries", "must be at least 1");
        }
        if t.snapshot_log_percent > MAX_SNAPSHOT_LOG_PERCENT {
            self.report.error(
                "raft.snapshot_log_percent",
                format!(
                    "{} is above {MAX_SNAPSHOT_LOG_PERCENT}: the log could grow to about ten \
                     times the catalog before it is compacted",
                    t.snapshot_log_percent
                ),
            );
        }
        self.report.clean_since(mark).then_some(t)
    }

    /// An export policy at `prefix`.
    fn export(&mut self, prefix: &str, raw: Option<&RawExport>) -> Option<ExportPolicy> {
        let d = ExportPolicy::default();
        let ceiling = match raw.and_then(|r| r.ceiling.as_deref()) {
            Some(text) => self.crossing_classification(&format!("{prefix}.ceiling"), text),
            None => Some(d.ceiling),
        };
        let personal_info = match raw.and_then(|r| r.personal_info.as_deref()) {
            Some(text) => {
                let parsed = [PersonalInfoExport::InDomainOnly, PersonalInfoExport::Never]
                    .into_iter()
                    .find(|p| p.as_str() == text)
                    .ok_or_else(|| {
                        format!("unknown value {text:?}; expected \"in_domain_only\" or \"never\"")
                    });
                self.report.check(format!("{prefix}.personal_info"), parsed)
            }
            None => Some(d.personal_info),
        };
        Some(ExportPolicy {
            ceiling: ceiling?,
            personal_info: personal_info?,
        })
    }

    /// An agreement at `prefix`. Missing terms take the sibling defaults unless `required`.
    fn agreement(
        &mut self,
        prefix: &str,
        raw: Option<&RawAgreement>,
        required: bool,
    ) -> Option<Agreement> {
        let d = Agreement::default();
        let raw = raw.cloned().unwrap_or_default();
        let missing = |report: &mut Report, field: &str, hint: &str| {
            if required {
                report.error(
                    format!("{prefix}.{field}"),
                    format!(
                        "missing; an agreement with an outside exchange states every term ({hint})"
                    ),
                );
            }
        };
        let categories = match &raw.categories {
            Some(list) => self.categories(&format!("{prefix}.categories"), list),
            None => {
                missing(&mut self.report, "categories", "[\"*\"] for every category");
                Some(d.categories)
            }
        };
        let max_classification = match &raw.max_classification {
            Some(text) => {
                self.crossing_classification(&format!("{prefix}.max_classification"), text)
            }
            None => {
                missing(
                    &mut self.report,
                    "max_classification",
                    "\"public\" or \"general\"",
                );
                Some(d.max_classification)
            }
        };
        let delivery_modes = match &raw.delivery_modes {
            Some(list) => self.modes(&format!("{prefix}.delivery_modes"), list),
            None => {
                missing(&mut self.report, "delivery_modes", "[\"*\"] for every mode");
                Some(d.delivery_modes)
            }
        };
        let require_registration = raw.require_registration.unwrap_or_else(|| {
            missing(&mut self.report, "require_registration", "true or false");
            d.require_registration
        });
        Some(Agreement {
            categories: categories?,
            max_classification: max_classification?,
            delivery_modes: delivery_modes?,
            require_registration,
        })
    }

    /// `["*"]`, or names each read by `read`; the shared shape of categories and modes.
    fn star_list<T: Ord>(
        &mut self,
        path: &str,
        list: &[String],
        what: &str,
        mut read: impl FnMut(&str) -> Result<T, String>,
    ) -> Option<Option<BTreeSet<T>>> {
        if list.iter().any(|s| s == "*") {
            if list.len() > 1 {
                self.report.error(
                    path,
                    format!("\"*\" means every {what} and cannot be combined with names"),
                );
                return None;
            }
            return Some(None);
        }
        if list.is_empty() {
            self.report.warning(
                path,
                format!("empty: nothing is recognised under this agreement; use [\"*\"] for every {what}"),
            );
        }
        let read: Vec<Option<T>> = list
            .iter()
            .enumerate()
            .map(|(i, s)| self.report.check(format!("{path}[{i}]"), read(s)))
            .collect();
        read.into_iter().collect::<Option<BTreeSet<T>>>().map(Some)
    }

    fn categories(&mut self, path: &str, list: &[String]) -> Option<CategorySet> {
        let set = self.star_list(path, list, "category", |s| {
            let ok = !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
            if ok {
                Ok(s.to_owned())
            } else {
                Err(format!(
                    "{s:?} is not a category; expected 1 to 64 characters of a-z, 0-9, '_' and '-', or \"*\""
                ))
            }
        })?;
        Some(set.map_or(CategorySet::All, CategorySet::Only))
    }

    fn modes(&mut self, path: &str, list: &[String]) -> Option<ModeSet> {
        let set = self.star_list(path, list, "delivery mode", |s| {
            from_name::<DeliveryMode>(s).ok_or_else(|| {
                format!("unknown delivery mode {s:?}; expected \"*\" or one of {DELIVERY_MODES}")
            })
        })?;
        Some(set.map_or(ModeSet::All, ModeSet::Only))
    }

    fn gossip(&mut self, raw: Option<&RawGossip>) -> Option<Gossip> {
        let raw = raw.cloned().unwrap_or_default();
        Some(Gossip {
            bootstrap: self.dial_addrs("gossip.bootstrap", &raw.bootstrap)?,
        })
    }

    fn outside(
        &mut self,
        raw: &[RawOutside],
        own: Option<&ExchangeSection>,
    ) -> Option<Vec<OutsideExchange>> {
        let mark = self.report.errors();
        let mut ids = Vec::new();
        // The own root first, so that an outside exchange reusing it is named as a duplicate.
        let mut roots = vec![own.map(|e| e.root_public_key.to_base64())];
        let mut parsed = Vec::new();
        for (i, o) in raw.iter().enumerate() {
            let at = |field: &str| format!("outside[{i}].{field}");
            let id = self.parse::<ExchangeId>(&at("id"), &o.id);
            if let (Some(id), Some(own)) = (&id, own)
                && *id == own.id
            {
                self.report.error(
                    at("id"),
                    format!(
                        "{id} is this node's own exchange; its zones are recognised under \
                         [sibling_agreement], not as an outside exchange"
                    ),
                );
            }
            let display_name = self.display_name(&at("display_name"), &o.display_name);
            let root = self.public_key(&at("root_public_key"), &o.root_public_key);
            let bootstrap = self.dial_addrs(&at("bootstrap"), &o.bootstrap);
            let agreement = self.agreement(&at("agreement"), Some(&o.agreement), true);
            ids.push(id.as_ref().map(ToString::to_string));
            roots.push(root.as_ref().map(PublicKey::to_base64));
            parsed.push(match (id, display_name, root, bootstrap, agreement) {
                (
                    Some(id),
                    Some(display_name),
                    Some(root_public_key),
                    Some(bootstrap),
                    Some(agreement),
                ) => Some(OutsideExchange {
                    id,
                    display_name,
                    root_public_key,
                    bootstrap,
                    agreement,
                }),
                _ => None,
            });
        }
        self.duplicates(&ids, |i| format!("outside[{i}].id"));
        self.duplicates(&roots, |i| match i {
            0 => "exchange.root_public_key".to_owned(),
            i => format!("outside[{}].root_public_key", i - 1),
        });
        let parsed: Option<Vec<_>> = parsed.into_iter().collect();
        parsed.filter(|_| self.report.clean_since(mark))
    }

    fn api(&mut self, raw: Option<&RawApi>, listen: Option<SocketAddr>) -> Option<ApiSection> {
        let raw = raw.cloned().unwrap_or_default();
        let mark = self.report.errors();
        let tls = self.api_tls(&raw, listen);
        let ca_cert = raw
            .ca_cert
            .as_deref()
            .and_then(|text| self.relative_path("api.ca_cert", text));
        let max_body_bytes = raw
            .max_body_bytes
            .unwrap_or(ApiSection::DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 || max_body_bytes > ApiSection::MAX_MAX_BODY_BYTES {
            self.report.error(
                "api.max_body_bytes",
                format!(
                    "must be from 1 to {} (16 MiB): a request becomes one Raft command, and every \
                     command must fit the zone's 64 MiB replication frame",
                    ApiSection::MAX_MAX_BODY_BYTES
                ),
            );
        }
        let limits = self.http_limits(&raw);
        let tokens: Vec<Option<TokenHash>> = raw
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| self.token(i, t))
            .collect();
        let hashes: Vec<Option<String>> = tokens
            .iter()
            .map(|t| t.as_ref().map(|t| hex::encode(t.sha256)))
            .collect();
        self.duplicates(&hashes, |i| format!("api.tokens[{i}].sha256"));
        // An unreadable role may have been meant as admin; its error is enough.
        let roles_readable = raw.tokens.iter().all(|t| t.role.parse::<Role>().is_ok());
        if roles_readable && !tokens.iter().flatten().any(|t| t.role == Role::Admin) {
            self.report.warning(
                "api.tokens",
                "no admin token: the zone starts with nobody able to manage it through the API",
            );
        }
        let tokens: Option<Vec<TokenHash>> = tokens.into_iter().collect();
        tokens
            .filter(|_| self.report.clean_since(mark))
            .map(|tokens| ApiSection {
                max_body_bytes,
                limits,
                tokens,
                tls,
                ca_cert,
            })
    }

    /// `tls_cert` and `tls_key` come together; without them the API is plain HTTP, which is
    /// refused on an address other than loopback unless `allow_plain_http` says so (and then
    /// warned about): bearer tokens would cross the network in clear text.
    fn api_tls(&mut self, raw: &RawApi, listen: Option<SocketAddr>) -> Option<ApiTls> {
        let cert = raw
            .tls_cert
            .as_deref()
            .and_then(|text| self.relative_path("api.tls_cert", text));
        let key = raw
            .tls_key
            .as_deref()
            .and_then(|text| self.relative_path("api.tls_key", text));
        match (&raw.tls_cert, &raw.tls_key) {
            (Some(_), None) => self.report.error(
                "api.tls_key",
                "missing: tls_cert is set, and a certificate is served only with its private key",
            ),
            (None, Some(_)) => self.report.error(
                "api.tls_cert",
                "missing: tls_key is set, and a private key is served only with its certificate",
            ),
            _ => {}
        }
        let tls = cert.zip(key).map(|(cert, key)| ApiTls { cert, key });
        let allowed = raw.allow_plain_http.unwrap_or(false);
        let plain = raw.tls_cert.is_none() && raw.tls_key.is_none();
        match listen {
            Some(addr) if plain && !addr.ip().is_loopback() && !allowed => self.report.error(
                "listen.api",
                format!(
                    "{addr} is not a loopback address and the API has no TLS: bearer tokens \
                     would cross the network in clear text. Set [api] tls_cert and tls_key \
                     (`xchg config generate --api-tls` issues them), or allow_plain_http = true \
                     behind a TLS-terminating proxy"
                ),
            ),
            Some(addr) if plain && !addr.ip().is_loopback() => self.report.warning(
                "api.allow_plain_http",
                format!(
                    "the API serves plain HTTP on {addr}: bearer tokens cross the network in \
                     clear text unless a proxy in front of it terminates TLS"
                ),
            ),
            _ => {}
        }
        tls
    }

    fn http_limits(&mut self, raw: &RawApi) -> HttpLimits {
        let d = HttpLimits::default();
        let max_connections = raw.max_connections.unwrap_or(u64::from(d.max_connections));
        if max_connections == 0 || max_connections > u64::from(HttpLimits::MAX_CONNECTIONS) {
            self.report.error(
                "api.max_connections",
                format!(
                    "must be from 1 to {}: each connection holds a file descriptor",
                    HttpLimits::MAX_CONNECTIONS
                ),
            );
        }
        let limits = HttpLimits {
            max_connections: u32::try_from(max_connections).unwrap_or(d.max_connections),
            header_read_timeout_ms: raw
                .header_read_timeout_ms
                .unwrap_or(d.header_read_timeout_ms),
            idle_timeout_ms: raw.idle_timeout_ms.unwrap_or(d.idle_timeout_ms),
            request_timeout_ms: raw.request_timeout_ms.unwrap_or(d.request_timeout_ms),
        };
        for (key, ms) in [
            ("api.header_read_timeout_ms", limits.header_read_timeout_ms),
            ("api.idle_timeout_ms", limits.idle_timeout_ms),
            ("api.request_timeout_ms", limits.request_timeout_ms),
        ] {
            if !(HttpLimits::MIN_TIMEOUT_MS..=HttpLimits::MAX_TIMEOUT_MS).contains(&ms) {
                self.report.error(
                    key,
                    format!(
                        "{ms} is outside {} to {} milliseconds (0.1 s to one hour): a client \
                         must get time to send, and a silent one must not hold its connection \
                         for good",
                        HttpLimits::MIN_TIMEOUT_MS,
                        HttpLimits::MAX_TIMEOUT_MS
                    ),
                );
            }
        }
        limits
    }

    fn token(&mut self, i: usize, raw: &RawToken) -> Option<TokenHash> {
        let role = self
            .report
            .check(format!("api.tokens[{i}].role"), raw.role.parse::<Role>());
        let sha256 = self
            .report
            .check(format!("api.tokens[{i}].sha256"), sha256_hex(&raw.sha256));
        let path = format!("api.tokens[{i}].party");
        let party = match &raw.party {
            Some(text) => Some(self.parse::<PartyId>(&path, text)?),
            None if role == Some(Role::Provider) => {
                // Unbound, a provider token could list in any party's name and update every
                // listing made with it.
                self.report.error(
                    path,
                    "required for a provider token: the party (a listing's provider.id, e.g. \
                     party = \"yuzhou-credit-center\") whose listings it may submit and update",
                );
                return None;
            }
            None if role == Some(Role::Buyer) => {
                // A buyer acts on the market (applications, authorisations) as a party the zone
                // admitted, never anonymously.
                self.report.error(
                    path,
                    "required for a buyer token: the party it buys for (a party id, e.g. party = \
                     \"yuzhou-rural-bank\"), one the zone admits",
                );
                return None;
            }
            None => None,
        };
        Some(TokenHash {
            role: role?,
            sha256: sha256?,
            party,
        })
    }
}

/// Reads a base64 config-file key, saying exactly what is wrong with a bad one.
pub(crate) fn public_key_from_base64(text: &str) -> Result<PublicKey, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("not base64 ({e}); expected 32 bytes of standard base64"))?;
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| format!("not 32 bytes of base64 (got {})", raw.len()))?;
    PublicKey::from_bytes(&bytes).map_err(|e| match e {
        KeyError::Weak => "a weak (small-order) ed25519 key, for which signatures prove nothing; \
                           generate a new key"
            .to_owned(),
        other => format!("not an ed25519 public key ({other})"),
    })
}

fn sha256_hex(text: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    let lower_hex = text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if !lower_hex || hex::decode_to_slice(text, &mut out).is_err() {
        return Err(
            "not 64 lowercase hex digits; expected the SHA-256 of the token text".to_owned(),
        );
    }
    Ok(out)
}

/// Checks a member's Raft address: `host:port` ([`HostPort`]) whose host reaches a machine.
///
/// # Errors
/// What is wrong with it.
pub fn raft_addr(text: &str) -> Result<HostPort, String> {
    let at: HostPort = text
        .parse()
        .map_err(|e: crate::HostPortError| e.to_string())?;
    match at.host.nowhere() {
        Some(ip) => Err(format!(
            "{ip} is no one's address: a member is reached at its raft_addr, so name its \
             machine's address or host name"
        )),
        None => Ok(at),
    }
}

/// Checks a member's API base URL (`http(s)://host[:port][/path]`, the host an IP address or a
/// host name as in [`crate::Host`], one that reaches a machine) and drops trailing slashes.
///
/// # Errors
/// What is wrong with it.
pub fn api_url(text: &str) -> Result<String, String> {
    let bad = || format!("{text:?} is not an http(s) URL; expected e.g. http://127.0.0.1:7100");
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    let clean = |c: char| !(c.is_whitespace() || c.is_control() || matches!(c, '?' | '#' | '@'));
    if authority.is_empty() || !text.chars().all(clean) {
        return Err(bad());
    }
    // host:port, or a host alone (a v6 address in brackets: its colons are not a port's).
    let host = match authority.parse::<HostPort>() {
        Ok(at) => at.host,
        Err(_) if authority.contains(':') && !authority.starts_with('[') => return Err(bad()),
        Err(_) => authority
            .parse::<crate::Host>()
            .map_err(|e| format!("{text:?} is not an http(s) URL with a host: {e}"))?,
    };
    if let Some(ip) = host.nowhere() {
        return Err(format!(
            "{text:?} names {ip}, which is no one's address: name the machine's address or host \
             name"
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// Reads a unit enum from its serde (snake_case) name.
fn from_name<T: DeserializeOwned>(name: &str) -> Option<T> {
    T::deserialize(StrDeserializer::<ValueError>::new(name)).ok()
}

const CLASSIFICATIONS: &str = "public, general, important, core";
const DELIVERY_MODES: &str = "file, api, sandbox, privacy_computing, model_output, verification";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_must_be_http_with_a_host() {
        assert_eq!(
            api_url("http://127.0.0.1:7100/"),
            Ok("http://127.0.0.1:7100".to_owned())
        );
        assert!(api_url("https://node.example/xchg").is_ok());
        assert!(api_url("https://[fd00::1]:7100").is_ok());
        assert!(api_url("https://[fd00::1]").is_ok());
        for bad in [
            "127.0.0.1:7100",
            "ftp://x",
            "http://",
            "http:// x",
            "http://a@b",
            "https://bad_host:7100",
            "https://localhost.:7100",
            "http://0.0.0.0:7100",
            "https://xc.example.cn:0",
            "http://fd00::1:7100",
            "http://::1",
        ] {
            assert!(api_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_short_key_says_how_many_bytes_it_has() {
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 31]);
        assert_eq!(
            public_key_from_base64(&short),
            Err("not 32 bytes of base64 (got 31)".to_owned())
        );
    }

    #[test]
    fn enum_names_are_the_serde_names() {
        assert_eq!(
            from_name::<DeliveryMode>("privacy_computing"),
            Some(DeliveryMode::PrivacyComputing)
        );
        assert_eq!(from_name::<Classification>("General"), None);
    }
}
