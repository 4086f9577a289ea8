// Link libdsv4: the -L folders and -l names of `pkg-config --libs dsv4` (no crate needed), else the
// system's default search path. DSV4_LIB_DIR overrides the folder.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=DSV4_LIB_DIR");
    if let Ok(dir) = std::env::var("DSV4_LIB_DIR") {
        println!("cargo:rustc-link-search=native={}", dir);
    } else if let Ok(out) = Command::new("pkg-config").args(["--libs", "dsv4"]).output() {
        if out.status.success() {
            for w in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Some(d) = w.strip_prefix("-L") {
                    println!("cargo:rustc-link-search=native={}", d);
                }
            }
        } else {
            println!("cargo:warning=pkg-config does not know dsv4; linking -ldsv4 from the default path");
        }
    }
    println!("cargo:rustc-link-lib=dylib=dsv4");
}
