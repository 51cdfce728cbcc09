//! Static sites.
