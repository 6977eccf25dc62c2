//! Soak benchmark (being written).
fn main() {}
