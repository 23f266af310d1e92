//! The API side of certificate rotation.

pub mod csr;
