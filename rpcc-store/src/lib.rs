//! # rpcc-store
//!
//! **Not implemented yet** (issue: "Deploy engine … rpcc-store"). This crate will hold
//! the state store behind core's `StateStore` role: generations, deployments with state
//! enums, the hash-chained audit log, metrics and check results, and locks; SQLite by
//! default and PostgreSQL for several control-plane instances, migrations embedded.
