//! With the `openblas` feature, checks that a system OpenBLAS can be found before the linker
//! fails with an obscure message; says how to install it when it cannot.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=OPENBLAS_LIB_DIR");
    println!("cargo:rerun-if-env-changed=LIBRARY_PATH");
    if env::var_os("CARGO_FEATURE_OPENBLAS").is_none() {
        return;
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = env::var_os("OPENBLAS_LIB_DIR") {
        dirs.push(dir.into());
    }
    if let Some(paths) = env::var_os("LIBRARY_PATH") {
        dirs.extend(env::split_paths(&paths));
    }
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    for dir in [
        format!("/usr/lib/{arch}-linux-gnu"),
        "/usr/lib".into(),
        "/usr/lib64".into(),
        "/usr/local/lib".into(),
        "/opt/homebrew/opt/openblas/lib".into(),
        "/usr/local/opt/openblas/lib".into(),
    ] {
        dirs.push(dir.into());
    }
    let names = ["libopenblas.so", "libopenblas.a", "libopenblas.dylib"];
    let found = dirs.iter().find(|dir| names.iter().any(|name| dir.join(name).exists()));
    match found {
        Some(dir) => println!("cargo:rustc-link-search=native={}", dir.display()),
        None => panic!(
            "\n\nthe `openblas` feature needs the system OpenBLAS library, and none was found in:\n  {}\n\
             Install it (Debian/Ubuntu: `apt-get install libopenblas-dev`; Fedora: `dnf install \
             openblas-devel`; macOS: `brew install openblas`), or set OPENBLAS_LIB_DIR to the \
             directory holding libopenblas; or build without `--features openblas` to use the \
             pure-Rust GEMM.\n\n",
            dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join("\n  ")
        ),
    }
}
