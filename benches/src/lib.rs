//! Criterion benchmarks for pagefork live in `benches/`; this library holds nothing yet
//! but lets the crate build on its own.
