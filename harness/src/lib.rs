//! CPU kernel harness (see issue 4).
