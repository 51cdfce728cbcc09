//! The JSON of Gantry's API (`/api/v1`), defined once. The server serializes answers
//! and reads requests with these types and describes them in its OpenAPI document
//! (with the `openapi` feature); the client sends requests and reads answers with the
//! same ones, so the two cannot disagree on a field.
//!
//! Requests refuse unknown fields (a typo is an error, not a silently ignored option)
//! and leave absent options out when serialized. Answers ignore unknown fields when
//! read, and fields added after the first release read as absent from an older
//! server, so a client and a server of different versions keep talking; each answer
//! serializes back to the JSON it was read from (`-o json`). Times are RFC 3339
//! strings in UTC; digests are `algorithm:hex`.

pub mod access;
pub mod collection;
pub mod keys;
pub mod promotion;
pub mod resources;

pub use access::*;
pub use collection::*;
pub use keys::*;
pub use promotion::*;
pub use resources::*;
