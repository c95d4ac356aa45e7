//! Nothing to link: this crate holds the end-to-end test in `tests/`, which
//! needs every service crate and so belongs to none of them.
