//! `embed_migrations!` reads `migrations/` when the crate compiles, but Cargo
//! only rebuilds for files it knows of: without this, a new migration would
//! be left out of an incremental build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
