//! End-to-end tests live in `tests/`; this crate holds no library code of its own.
