//! Placeholder: the side-by-side benchmark (see issue 5) is being written.
fn main() {}
