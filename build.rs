//! Embeds the hypervisor's page (feature `app-hypervisor`) gzip-compressed: each file of
//! `src/apps/hypervisor/assets/` and, with `hv-term`, xterm.js, its CSS and its fit addon
//! (from `$SKYWIRE_XTERM_DIR`, else `vendor/xterm/`, fetched there by `scripts/xterm.sh`
//! when missing) are written to `$OUT_DIR/hv/<name>.gz` by the system's `gzip -9n`. The
//! server sends those bytes with `Content-Encoding: gzip`, so the binary carries no
//! decompressor. Nothing runs without the feature.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_APP_HYPERVISOR").is_none() {
        return;
    }
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("hv");
    std::fs::create_dir_all(&out).expect("create OUT_DIR/hv");
    let assets = root.join("src/apps/hypervisor/assets");
    println!("cargo:rerun-if-changed={}", assets.display());
    for name in ["index.html", "app.js", "app.css"] {
        gzip(&assets.join(name), &out);
    }
    if std::env::var_os("CARGO_FEATURE_HV_TERM").is_none() {
        return;
    }
    println!("cargo:rerun-if-env-changed=SKYWIRE_XTERM_DIR");
    let dir = match std::env::var_os("SKYWIRE_XTERM_DIR") {
        Some(d) => PathBuf::from(d),
        None => root.join("vendor/xterm"),
    };
    let files = ["xterm.js", "xterm.css", "addon-fit.js"];
    if files.iter().any(|f| !dir.join(f).exists()) {
        let st = Command::new("bash")
            .arg(root.join("scripts/xterm.sh"))
            .arg(&dir)
            .status();
        match st {
            Ok(s) if s.success() => {}
            other => panic!(
                "the `hv-term` feature needs xterm.js in {}: `bash scripts/xterm.sh` fetches it \
                 from npm ({other:?}); or build without the feature \
                 (--no-default-features --features …)",
                dir.display()
            ),
        }
    }
    for f in files {
        println!("cargo:rerun-if-changed={}", dir.join(f).display());
        gzip(&dir.join(f), &out);
    }
}

fn gzip(src: &Path, out: &Path) {
    let name = src.file_name().expect("file name").to_string_lossy();
    let dst = out.join(format!("{name}.gz"));
    let bytes = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .arg(src)
        .output()
        .unwrap_or_else(|e| panic!("gzip {} (install gzip): {e}", src.display()));
    if !bytes.status.success() {
        panic!(
            "gzip {}: {}",
            src.display(),
            String::from_utf8_lossy(&bytes.stderr)
        );
    }
    std::fs::write(&dst, &bytes.stdout).unwrap_or_else(|e| panic!("{}: {e}", dst.display()));
    println!("cargo:rerun-if-changed={}", src.display());
}
