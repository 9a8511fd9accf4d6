//! API roles: who a bearer token speaks for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a bearer token may do in its zone's HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages the zone: tokens, membership, configuration.
    Admin,
    /// Runs the zone day to day: reviews listings, approves scenario applications.
    Operator,
    /// Submits listings and registers products.
    Provider,
    /// Applies for products per scenario.
    Buyer,
    /// Reads everything in the zone, including the audit trail; changes nothing.
    Regulator,
}

impl Role {
    /// Every role, in the order the documentation lists them.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Provider,
        Role::Buyer,
        Role::Regulator,
    ];

    /// The text form used in config files, tokens and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Provider => "provider",
            Role::Buyer => "buyer",
            Role::Regulator => "regulator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}; expected one of admin, operator, provider, buyer, regulator")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips_through_text_and_serde() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            let json = serde_json::to_string(&role).expect("serialize role");
            assert_eq!(json, format!("\"{role}\""));
        }
    }

    #[test]
    fn an_unknown_role_names_the_valid_ones() {
        let err = "Admin".parse::<Role>().expect_err("roles are lowercase");
        assert!(
            err.to_string().contains("expected one of admin, operator"),
            "{err}"
        );
    }
}
