//! Catch-up (anti-entropy) messages, exchanged over libp2p request-response (PROTOCOL.md 7.5).
//!
//! A node asks a peer what it holds per exchange ([`Request::Summary`]), pages through the
//! content ids it lacks ([`Request::Inventory`]) and fetches those envelopes
//! ([`Request::Fetch`]). Every envelope obtained this way is verified exactly like gossip.
//! On the same protocol a node asks a peer who it is ([`Request::Identity`]): the answer is the
//! delegation of the key the peer connected with, which proves its exchange and zone.
//! Requests and responses are canonical CBOR; receivers decode them with [`Limits`].

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::{DecodeError, EncodeError, Limits, from_canonical, to_canonical};
use crate::{ContentId, ExchangeId, SignedDelegation, ZoneId};

/// Most content ids in one inventory page.
pub const MAX_INVENTORY: u32 = 512;
/// Most envelopes asked for in one fetch.
pub const MAX_FETCH: usize = 16;
/// Largest request accepted, bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest response accepted, bytes: a full fetch of maximal envelopes plus framing.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Most hashes in a consistency proof: two per level of a tree of 2^64 leaves.
pub const MAX_PROOF_HASHES: usize = 128;
/// Most messages in one page of a certificate topic's held messages.
pub const MAX_CERTIFICATE_PAGE: u32 = 64;
/// Most message bytes in one such page: a responder stops before the message that would pass
/// it, but always sends at least one.
pub const MAX_CERTIFICATE_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// Most signed demands in one page of [`Request::Demands`] (each at most
/// [`crate::demand::MAX_DEMAND_BYTES`]: a page stays within [`MAX_RESPONSE_BYTES`]).
pub const MAX_DEMAND_PAGE: u32 = 64;

/// A catch-up request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// What the peer holds, per exchange.
    Summary {},
    /// Content ids the peer holds for `exchange`, in its storage order, after position `after`.
    Inventory {
        /// The exchange whose announcements are listed.
        exchange: ExchangeId,
        /// Position after which to list (0 for the start).
        after: u64,
        /// Most items wanted; the responder sends at most [`MAX_INVENTORY`].
        limit: u32,
    },
    /// The envelopes with these content ids (at most [`MAX_FETCH`]).
    Fetch {
        /// Wanted envelope body ids.
        ids: Vec<ContentId>,
    },
    /// The responder's delegation (PROTOCOL.md 7.5): which zone the key it connected with
    /// speaks for.
    Identity {},
    /// The messages of every certificate topic the peer holds (certificates and certificate
    /// revocations, PROTOCOL.md 10.5, 10.6), each with its exchange, in its storage order,
    /// after position `after`.
    Certificates {
        /// Position after which to list (0 for the start).
        after: u64,
        /// Most messages wanted; the responder sends at most [`MAX_CERTIFICATE_PAGE`].
        limit: u32,
    },
    /// A forwarded application (PROTOCOL.md 11.7): a signed ApplicationRequest, sent to a node
    /// of its origin zone (or of another zone of the origin's exchange, which passes it on).
    /// Sending it again is how the applicant asks for the decision.
    Application {
        /// The SignedMessage of an ApplicationRequest, at most
        /// [`crate::application::MAX_MESSAGE_BYTES`].
        request: Blob,
    },
    /// The decisions `zone` made on its listing `listing_id` for `scenario` (PROTOCOL.md
    /// 11.8), asked of a node of that zone (or of another zone of its exchange, which passes
    /// it on).
    Precedents {
        /// The listing's origin zone.
        zone: ZoneId,
        /// The listing.
        listing_id: ContentId,
        /// The scenario, at most [`crate::precedents::SCENARIO_CHARS`] characters.
        scenario: String,
    },
    /// The supervision figures of `zone` (PROTOCOL.md 7.5), asked of a node of that zone by a
    /// node of another zone of the same exchange (the hub); answered only to such a node.
    Figures {
        /// The zone asked about: the responder's own.
        zone: ZoneId,
        /// The first day covered, `YYYY-MM-DD` (UTC).
        from: String,
        /// The last day covered, `YYYY-MM-DD` (UTC).
        to: String,
        /// `day`, `week` or `month`.
        period: String,
    },
    /// The signed demands the peer holds (PROTOCOL.md 11.9): its zone's shared ones and those
    /// of other zones it recognised, each in its latest state, in its storage order, after
    /// position `after`.
    Demands {
        /// Position after which to list (0 for the start).
        after: u64,
        /// Most demands wanted; the responder sends at most [`MAX_DEMAND_PAGE`].
        limit: u32,
    },
    /// A signed tree head of `zone`'s audit log and the consistency proof from the tree of
    /// `from` records to it (PROTOCOL.md 12.7), asked of a node of that zone.
    TreeHead {
        /// The zone whose head is asked for.
        zone: ZoneId,
        /// The size of the head the asker holds (0 for none).
        from: u64,
    },
}

/// Longest `from`, `to` or `period` of a [`Request::Figures`], in bytes.
pub const FIGURES_FIELD_BYTES: usize = 16;
/// Largest figures document a [`Response::Figures`] carries, in bytes.
pub const MAX_FIGURES_BYTES: usize = 1024 * 1024;

/// What a responder holds for one exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeSummary {
    /// The exchange.
    pub exchange: ExchangeId,
    /// How many announcements it holds for it.
    pub count: u64,
    /// [`digest`] of their content ids.
    #[serde(with = "crate::bytes::buf")]
    pub digest: Vec<u8>,
}

/// One inventory item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// The responder's position of this item (pass the last one as `after` for the next page).
    pub pos: u64,
    /// The envelope's body id.
    pub id: ContentId,
}

/// One held message of a certificate topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldMessage {
    /// The responder's position of this message (pass the last one as `after` for the next
    /// page).
    pub pos: u64,
    /// The exchange of the certificate topic it is filed under.
    pub exchange: ExchangeId,
    /// The message, exactly as published.
    #[serde(with = "crate::bytes::buf")]
    pub data: Vec<u8>,
}

/// One held signed demand (PROTOCOL.md 11.9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldDemand {
    /// The responder's position of it (pass the last one as `after` for the next page).
    pub pos: u64,
    /// The SignedMessage of the Demand, exactly as published.
    #[serde(with = "crate::bytes::buf")]
    pub data: Vec<u8>,
}

/// Bytes carried as a CBOR byte string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob(#[serde(with = "crate::bytes::buf")] pub Vec<u8>);

/// A catch-up response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Summary`].
    Summary {
        /// One entry per exchange the responder holds announcements of.
        exchanges: Vec<ExchangeSummary>,
    },
    /// Answer to [`Request::Inventory`].
    Inventory {
        /// Items in ascending `pos`.
        items: Vec<Item>,
        /// Whether more items follow the last one.
        more: bool,
    },
    /// Answer to [`Request::Fetch`]: the envelopes the responder holds, as wire bytes.
    Envelopes {
        /// Envelope bytes, each exactly as published.
        envelopes: Vec<Blob>,
    },
    /// Answer to [`Request::Identity`]: the root-signed delegation of the responder's node
    /// key, the key its libp2p identity is derived from.
    Identity {
        /// The delegation, as carried in the responder's envelopes.
        delegation: SignedDelegation,
    },
    /// Answer to [`Request::Certificates`].
    Certificates {
        /// Messages in ascending `pos`.
        items: Vec<HeldMessage>,
        /// Whether more messages follow the last one.
        more: bool,
    },
    /// Answer to [`Request::Demands`].
    Demands {
        /// Signed demands in ascending `pos`.
        items: Vec<HeldDemand>,
        /// Whether more follow the last one.
        more: bool,
    },
    /// Answer to [`Request::Application`].
    Application(ApplicationAnswer),
    /// Answer to [`Request::Precedents`]: the SignedMessage of the zone's Precedents.
    Precedents {
        /// The signed list.
        list: Blob,
    },
    /// Answer to [`Request::Figures`]: the zone's figures as the JSON document of
    /// `GET /v1/supervision/stats` (UTF-8, at most [`MAX_FIGURES_BYTES`]).
    Figures {
        /// The JSON document.
        json: Blob,
    },
    /// Answer to [`Request::TreeHead`]: the responder's signed head of its zone's audit log,
    /// and the consistency proof from `from` to the head's size.
    TreeHead {
        /// The SignedMessage of the TreeHead, at most
        /// [`crate::tree_head::MAX_TREE_HEAD_BYTES`].
        head: Blob,
        /// The proof (RFC 9162 2.1.4), 32-byte hashes; at most [`MAX_PROOF_HASHES`].
        proof: Vec<Blob>,
    },
    /// The request was understood but refused.
    Error {
        /// Why.
        message: String,
    },
}

/// The origin's answer to a forwarded application (PROTOCOL.md 11.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationAnswer {
    /// Recorded by the origin zone, awaiting its operator's decision.
    Received {},
    /// Decided: the SignedMessage of the ApplicationDecision.
    Decided {
        /// The signed decision.
        decision: Blob,
    },
    /// Not recorded: the request failed verification (PROTOCOL.md 11.4) or a rule of 11.5
    /// that leaves nothing to decide, or the origin could not be reached through the
    /// responder. Sending it again later may succeed.
    Refused {
        /// The kind: one of 6.3, or one of the kinds of 11.7.
        kind: String,
        /// What failed.
        message: String,
    },
}

/// The digest of a set of content ids: SHA-256 over their 32-byte values in ascending order.
pub fn digest<'a>(ids: impl IntoIterator<Item = &'a ContentId>) -> Vec<u8> {
    let mut sorted: Vec<&ContentId> = ids.into_iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    for id in sorted {
        h.update(id.as_bytes());
    }
    h.finalize().to_vec()
}

impl Request {
    /// Canonical bytes.
    ///
    /// # Errors
    /// Never for well-formed values; kept for symmetry with decoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        to_canonical(self)
    }

    /// Decodes untrusted bytes (size cap [`MAX_REQUEST_BYTES`]) and checks the bounds.
    ///
    /// # Errors
    /// [`DecodeError`] for anything that is not a canonical request within bounds.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let limits = Limits {
            max_size: MAX_REQUEST_BYTES,
            max_depth: 4,
        };
        let req: Request = from_canonical(bytes, &limits)?;
        if let Request::Fetch { ids } = &req
            && ids.len() > MAX_FETCH
        {
            return Err(DecodeError::Shape(format!(
                "fetch asks for {} envelopes; at most {MAX_FETCH}",
                ids.len()
            )));
        }
        if let Request::Precedents { scenario, .. } = &req
            && scenario.chars().count() > crate::precedents::SCENARIO_CHARS
        {
            return Err(DecodeError::Shape(format!(
                "a scenario of more than {} characters",
                crate::precedents::SCENARIO_CHARS
            )));
        }
        if let Request::Figures {
            from, to, period, ..
        } = &req
            && [from, to, period]
                .iter()
                .any(|f| f.len() > FIGURES_FIELD_BYTES)
        {
            return Err(DecodeError::Shape(format!(
                "a figures request field of more than {FIGURES_FIELD_BYTES} bytes"
            )));
        }
        if let Request::Application { request } = &req
            && request.0.len() > crate::application::MAX_MESSAGE_BYTES
        {
            return Err(DecodeError::TooLarge {
                size: request.0.len(),
                max: crate::application::MAX_MESSAGE_BYTES,
            });
        }
        Ok(req)
    }
}

impl Response {
    /// Canonical bytes.
    ///
    /// # Errors
    /// Never for well-formed values.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        to_canonical(self)
    }

    /// Decodes untrusted bytes (size cap [`MAX_RESPONSE_BYTES`]).
    ///
    /// # Errors
    /// [`DecodeError`] for anything that is not a canonical response within bounds.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let limits = Limits {
            max_size: MAX_RESPONSE_BYTES,
            max_depth: 4,
        };
        from_canonical(bytes, &limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        let id = ContentId::of(b"x");
        let reqs = [
            Request::Summary {},
            Request::Inventory {
                exchange: "xuchang".parse().expect("id"),
                after: 7,
                limit: 100,
            },
            Request::Fetch { ids: vec![id] },
            Request::Identity {},
            Request::Certificates {
                after: 0,
                limit: MAX_CERTIFICATE_PAGE,
            },
            Request::Application {
                request: Blob(vec![1, 2, 3]),
            },
            Request::Precedents {
                zone: "zhengzhou/main".parse().expect("zone"),
                listing_id: id,
                scenario: "企业信用评价".into(),
            },
            Request::TreeHead {
                zone: "zhengzhou/main".parse().expect("zone"),
                from: 41,
            },
        ];
        for r in reqs {
            let bytes = r.to_bytes().expect("encode");
            assert_eq!(Request::from_bytes(&bytes).expect("decode"), r);
        }
        let resp = Response::Inventory {
            items: vec![Item { pos: 3, id }],
            more: false,
        };
        let bytes = resp.to_bytes().expect("encode");
        assert_eq!(Response::from_bytes(&bytes).expect("decode"), resp);
        let resp = Response::TreeHead {
            head: Blob(vec![5; 488]),
            proof: vec![Blob(vec![1; 32]), Blob(vec![2; 32])],
        };
        let bytes = resp.to_bytes().expect("encode");
        assert_eq!(Response::from_bytes(&bytes).expect("decode"), resp);
        for answer in [
            ApplicationAnswer::Received {},
            ApplicationAnswer::Decided {
                decision: Blob(vec![9; 40]),
            },
            ApplicationAnswer::Refused {
                kind: "bad_signature".into(),
                message: "no".into(),
            },
        ] {
            let resp = Response::Application(answer);
            let bytes = resp.to_bytes().expect("encode");
            assert_eq!(Response::from_bytes(&bytes).expect("decode"), resp);
        }
    }

    #[test]
    fn the_application_messages_are_byte_exact() {
        // `{"application": {"request": h'0102'}}` and `{"application": {"received": {}}}`.
        let request = Request::Application {
            request: Blob(vec![1, 2]),
        };
        let mut expected = vec![0xa1, 0x6b];
        expected.extend_from_slice(b"application");
        expected.extend_from_slice(&[0xa1, 0x67]);
        expected.extend_from_slice(b"request");
        expected.extend_from_slice(&[0x42, 1, 2]);
        assert_eq!(request.to_bytes().expect("encode"), expected);
        let received = Response::Application(ApplicationAnswer::Received {});
        let mut expected = vec![0xa1, 0x6b];
        expected.extend_from_slice(b"application");
        expected.extend_from_slice(&[0xa1, 0x68]);
        expected.extend_from_slice(b"received");
        expected.push(0xa0);
        assert_eq!(received.to_bytes().expect("encode"), expected);
    }

    #[test]
    fn the_figures_messages_are_byte_exact_and_bounded() {
        // `{"figures": {"to": "2026-12-02", "from": "2026-12-01", "zone": "xuchang/yuzhou",
        // "period": "day"}}`: map keys in canonical order (3.1).
        let request = Request::Figures {
            zone: "xuchang/yuzhou".parse().expect("zone"),
            from: "2026-12-01".into(),
            to: "2026-12-02".into(),
            period: "day".into(),
        };
        let mut expected = vec![0xa1, 0x67];
        expected.extend_from_slice(b"figures");
        expected.extend_from_slice(&[0xa4, 0x62]);
        expected.extend_from_slice(b"to");
        expected.push(0x6a);
        expected.extend_from_slice(b"2026-12-02");
        expected.push(0x64);
        expected.extend_from_slice(b"from");
        expected.push(0x6a);
        expected.extend_from_slice(b"2026-12-01");
        expected.push(0x64);
        expected.extend_from_slice(b"zone");
        expected.push(0x6e);
        expected.extend_from_slice(b"xuchang/yuzhou");
        expected.push(0x66);
        expected.extend_from_slice(b"period");
        expected.push(0x63);
        expected.extend_from_slice(b"day");
        let bytes = request.to_bytes().expect("encode");
        assert_eq!(bytes, expected);
        assert_eq!(Request::from_bytes(&bytes).expect("decode"), request);
        // `{"figures": {"json": h'7b7d'}}`.
        let answer = Response::Figures {
            json: Blob(b"{}".to_vec()),
        };
        let mut expected = vec![0xa1, 0x67];
        expected.extend_from_slice(b"figures");
        expected.extend_from_slice(&[0xa1, 0x64]);
        expected.extend_from_slice(b"json");
        expected.extend_from_slice(&[0x42, b'{', b'}']);
        let bytes = answer.to_bytes().expect("encode");
        assert_eq!(bytes, expected);
        assert_eq!(Response::from_bytes(&bytes).expect("decode"), answer);
        // A field longer than 16 bytes is refused.
        let long = Request::Figures {
            zone: "xuchang/yuzhou".parse().expect("zone"),
            from: "2026-12-01".into(),
            to: "2026-12-02".into(),
            period: "fortnight-or-more".into(),
        };
        let bytes = long.to_bytes().expect("encode");
        assert!(matches!(
            Request::from_bytes(&bytes),
            Err(DecodeError::Shape(_))
        ));
    }

    #[test]
    fn the_demand_page_messages_are_byte_exact() {
        // `{"demands": {"after": 5, "limit": 64}}`.
        let request = Request::Demands {
            after: 5,
            limit: 64,
        };
        let mut expected = vec![0xa1, 0x67];
        expected.extend_from_slice(b"demands");
        expected.extend_from_slice(&[0xa2, 0x65]);
        expected.extend_from_slice(b"after");
        expected.extend_from_slice(&[0x05, 0x65]);
        expected.extend_from_slice(b"limit");
        expected.extend_from_slice(&[0x18, 0x40]);
        assert_eq!(request.to_bytes().expect("encode"), expected);
        // `{"demands": {"more": true, "items": [{"pos": 7, "data": h'0102'}]}}`.
        let page = Response::Demands {
            items: vec![HeldDemand {
                pos: 7,
                data: vec![1, 2],
            }],
            more: true,
        };
        let mut expected = vec![0xa1, 0x67];
        expected.extend_from_slice(b"demands");
        expected.extend_from_slice(&[0xa2, 0x64]);
        expected.extend_from_slice(b"more");
        expected.extend_from_slice(&[0xf5, 0x65]);
        expected.extend_from_slice(b"items");
        expected.extend_from_slice(&[0x81, 0xa2, 0x63]);
        expected.extend_from_slice(b"pos");
        expected.extend_from_slice(&[0x07, 0x64]);
        expected.extend_from_slice(b"data");
        expected.extend_from_slice(&[0x42, 1, 2]);
        let bytes = page.to_bytes().expect("encode");
        assert_eq!(bytes, expected);
        assert_eq!(Response::from_bytes(&bytes).expect("decode"), page);
    }

    #[test]
    fn the_certificate_page_messages_are_byte_exact() {
        // `{"certificates": {"after": 5, "limit": 64}}`: map keys in canonical order (3.1).
        let request = Request::Certificates {
            after: 5,
            limit: 64,
        };
        let mut expected = vec![0xa1, 0x6c];
        expected.extend_from_slice(b"certificates");
        expected.extend_from_slice(&[0xa2, 0x65]);
        expected.extend_from_slice(b"after");
        expected.extend_from_slice(&[0x05, 0x65]);
        expected.extend_from_slice(b"limit");
        expected.extend_from_slice(&[0x18, 0x40]);
        assert_eq!(request.to_bytes().expect("encode"), expected);
        // `{"certificates": {"more": false, "items": [{"pos": 1, "data": h'0102',
        // "exchange": "zz"}]}}`.
        let page = Response::Certificates {
            items: vec![HeldMessage {
                pos: 1,
                exchange: "zz".parse().expect("id"),
                data: vec![1, 2],
            }],
            more: false,
        };
        let mut expected = vec![0xa1, 0x6c];
        expected.extend_from_slice(b"certificates");
        expected.extend_from_slice(&[0xa2, 0x64]);
        expected.extend_from_slice(b"more");
        expected.extend_from_slice(&[0xf4, 0x65]);
        expected.extend_from_slice(b"items");
        expected.extend_from_slice(&[0x81, 0xa3, 0x63]);
        expected.extend_from_slice(b"pos");
        expected.extend_from_slice(&[0x01, 0x64]);
        expected.extend_from_slice(b"data");
        expected.extend_from_slice(&[0x42, 1, 2, 0x68]);
        expected.extend_from_slice(b"exchange");
        expected.extend_from_slice(&[0x62, b'z', b'z']);
        let bytes = page.to_bytes().expect("encode");
        assert_eq!(bytes, expected);
        assert_eq!(Response::from_bytes(&bytes).expect("decode"), page);
    }

    #[test]
    fn a_forwarded_application_over_the_message_cap_is_refused() {
        let big = Request::Application {
            request: Blob(vec![0; crate::application::MAX_MESSAGE_BYTES + 1]),
        };
        let bytes = big.to_bytes().expect("encode");
        assert!(matches!(
            Request::from_bytes(&bytes),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn an_identity_answer_fits_the_response_depth_and_is_byte_exact() {
        let root = crate::Keypair::from_seed(&[1; 32]);
        let node = crate::Keypair::from_seed(&[2; 32]);
        let delegation = SignedDelegation::sign(
            crate::Delegation {
                exchange: "xuchang".parse().expect("id"),
                zone: "xuchang/yuzhou".parse().expect("id"),
                node_key: node.public(),
                not_before: crate::Timestamp(0),
                not_after: crate::Timestamp(1),
            },
            &root,
        );
        let resp = Response::Identity {
            delegation: delegation.clone(),
        };
        let bytes = resp.to_bytes().expect("encode");
        assert_eq!(Response::from_bytes(&bytes).expect("decode"), resp);
        // `{"identity": {"delegation": <the signed delegation's own bytes>}}`.
        let mut expected = vec![0xa1, 0x68];
        expected.extend_from_slice(b"identity");
        expected.extend_from_slice(&[0xa1, 0x6a]);
        expected.extend_from_slice(b"delegation");
        expected.extend_from_slice(&delegation.to_bytes());
        assert_eq!(bytes, expected);
        let request = Request::Identity {}.to_bytes().expect("encode");
        let mut expected = vec![0xa1, 0x68];
        expected.extend_from_slice(b"identity");
        expected.push(0xa0);
        assert_eq!(request, expected);
    }

    #[test]
    fn a_fetch_over_the_bound_is_refused() {
        let ids = (0..=MAX_FETCH as u8).map(|i| ContentId::of(&[i])).collect();
        let bytes = Request::Fetch { ids }.to_bytes().expect("encode");
        assert!(matches!(
            Request::from_bytes(&bytes),
            Err(DecodeError::Shape(_))
        ));
    }

    #[test]
    fn digest_ignores_order() {
        let a = ContentId::of(b"a");
        let b = ContentId::of(b"b");
        assert_eq!(digest([&a, &b]), digest([&b, &a]));
        assert_ne!(digest([&a]), digest([&a, &b]));
    }
}
