//! The HTML report of `lameduck verify` renders in a real browser (headless Chromium from
//! Debian's `chromium` package): its timeline shows pods, router withdrawals and failures.

use std::process::{Command, Stdio};

use lameduck_testkit::process::TempDir;

use crate::util::*;

fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    lameduck_testkit::needed_or_skip(found, "chromium", "apt-get install chromium")
}

#[test]
fn html_report_renders_timeline_in_headless_chromium() {
    let _serial = serial();
    let Some(browser) = chromium() else { return };
    let tmp = TempDir::new("verify-html");
    let dir = tmp.root();
    let yaml = scenario(
        &naive(),
        "routers:\n  - kind: l4\n  - kind: l7\n",
        "uniform: {min: 0.5s, max: 2s}",
        "",
        1,
    );
    let path = dir.join("s.yaml");
    std::fs::write(&path, yaml).unwrap();
    let html = dir.join("report.html");
    let out = lameduck(&[
        "verify",
        "-q",
        "-f",
        path.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: no scripts, no external resources.
    assert!(!page.contains("<script") && !page.contains("http://") && !page.contains("https://"));

    let profile = dir.join("profile");
    let url = format!("file://{}", html.display());
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
    ];
    let user_dir = format!("--user-data-dir={}", profile.display());
    let dom = Command::new(browser)
        .args(common)
        .arg(&user_dir)
        .args(["--dump-dom", &url])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(dom.status.success());
    let dom = String::from_utf8_lossy(&dom.stdout);
    // The browser parsed the SVG: 6 pod rows, withdrawals of the 3 old pods by both routers,
    // and failure dots.
    assert_eq!(dom.matches("class=\"pod\"").count(), 6, "pod rows");
    assert_eq!(
        dom.matches("class=\"withdrawal\"").count(),
        6,
        "withdrawal marks"
    );
    assert!(dom.matches("class=\"failure\"").count() > 0, "failure dots");

    let png = dir.join("report.png");
    let shot = Command::new(browser)
        .args(common)
        .arg(&user_dir)
        .args([
            &format!("--screenshot={}", png.display()),
            "--window-size=1300,1000",
            &url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(shot.success());
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "a real screenshot: {} bytes",
        bytes.len()
    );
}
