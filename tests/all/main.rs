//! wasmonkey's integration tests: one binary, loading real plugins built
//! from source (`cargo xtask plugins`).
