//! Records the target triple for `galrec._core.build_info()`: Cargo gives `TARGET` only to
//! build scripts, so it is passed on to the crate as a compile-time variable.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| String::from("unknown"));
    println!("cargo:rustc-env=GALREC_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
