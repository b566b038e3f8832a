//! `spillway healthcheck` (the Dockerfile's HEALTHCHECK): 0 against a
//! running Spillway's admin `/healthz`, with its token when one is set; 1
//! when nothing listens or the token is missing.

mod support;

use std::process::Command;

use support::spillway::BIN;
use support::{simple_config, Origin, Spillway};

fn healthcheck(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).arg("healthcheck").args(args).output().expect("run spillway healthcheck");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn healthcheck_asks_the_admin_listener() {
    let origin = Origin::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "s3cret\n").unwrap();
    let config = simple_config(&[&origin], "", "").replace("[admin]\n", "[admin]\ntoken_file = \"admin.token\"\n");
    let sw = Spillway::start_in(dir, &config).await;
    let admin = sw.admin.to_string();
    let token = sw.dir().join("admin.token");
    let (code, stderr) = healthcheck(&["--admin", &admin, "--token-file", token.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stderr) = healthcheck(&["--admin", &admin]);
    assert_eq!(code, 1, "no token: 401");
    assert!(stderr.contains("401"), "{stderr}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (code, stderr) = healthcheck(&["--admin", &closed, "--timeout", "1s"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("connecting"), "{stderr}");
}
