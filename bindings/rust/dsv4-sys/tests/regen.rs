//! The checked-in declarations are what bindgen makes of today's headers.
use std::process::Command;

#[test]
fn bindings_match_the_headers() {
    let here = env!("CARGO_MANIFEST_DIR");
    let have_bindgen = Command::new("bindgen").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !have_bindgen {
        assert!(std::env::var("CI").map(|v| v != "true").unwrap_or(true), "bindgen missing (Debian: bindgen)");
        eprintln!("bindgen missing: the comparison is skipped");
        return;
    }
    let out = std::env::temp_dir().join(format!("dsv4-bindings-{}.rs", std::process::id()));
    let st = Command::new("sh").arg(format!("{}/regen.sh", here)).arg(&out).status().expect("regen.sh");
    assert!(st.success(), "regen.sh failed");
    let fresh = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let checked_in = std::fs::read_to_string(format!("{}/src/bindings.rs", here)).unwrap();
    assert!(fresh == checked_in, "src/bindings.rs is out of date with include/dsv4/*.h: run bindings/rust/dsv4-sys/regen.sh");
}

#[test]
fn abi_constants() {
    assert_eq!(dsv4_sys::DSV4_ABI_VERSION, 0);
    assert_eq!(std::mem::size_of::<dsv4_sys::dsv4_status>(), 4);
    assert_eq!(std::mem::size_of::<dsv4_sys::dsv4_sampler_callbacks>(), 6 * std::mem::size_of::<usize>());
    assert_eq!(unsafe { dsv4_sys::dsv4_abi_version() }, 0);
}
