//! Durable state under the state directory (SQLite): today the cleanup ledger; run
//! history, incidents and the notification outbox join it in later issues.

pub mod ledger;

pub use ledger::{Ledger, LedgerEntry, NewEntry, StoreError};
