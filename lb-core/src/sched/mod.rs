//! Schedulers (reference §5): pure functions over caller-owned state.
//!
//! This branch's part: wlc, the table schedulers (sh, dh, mh) and the locality caches (lblc,
//! lblcr). The director owns every table and cache and passes them in; nothing here allocates.

pub mod dh;
pub mod lblc;
pub mod lblcr;
pub mod mh;
pub mod sh;
pub mod wlc;
