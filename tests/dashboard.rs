//! The live dashboard, rendered by a real browser: headless Chromium loads
//! the admin page, its script polls `/status`, and the DOM it dumps shows
//! the pools and their gate state. (`scripts/test` installs Chromium.)

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::browser::{chromium, dump_dom};
use support::{simple_config, Origin, Spillway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_live_pool_state() {
    let origin = Origin::start("a").await;
    let sw = Spillway::start(&simple_config(&[&origin], "", "")).await;
    let url = sw.admin_url("/");
    let dom = tokio::task::spawn_blocking(move || dump_dom(&url)).await.unwrap();
    assert!(dom.contains("id=\"pool-app\""), "no pool section rendered:\n{dom}");
    assert!(dom.contains("in flight / limit"), "gate state not rendered:\n{dom}");
    assert!(dom.contains("0 / 400"), "live in-flight/limit values not rendered:\n{dom}");
    assert!(dom.contains("class=\"mode normal\""), "pool mode not rendered:\n{dom}");
    assert!(dom.contains("<div id=\"error\"></div>"), "the page reported an error:\n{dom}");
}

/// Issue 14, item 7: during a burst (reads spilling to a cloud that can
/// take only one at a time, the rest shed: issue 16) every
/// time series is at least 440 × 200 CSS pixels, and the three the data
/// plane feeds show their lines in the screenshot itself: pixels of each
/// series' colour above the zero line inside the chart's box, whose
/// coordinates the page publishes (`#chart-boxes`). The screenshot is kept in the target's tmp
/// directory (`dashboard-burst.png`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_burst_the_charts_are_readable_and_drawn() {
    let (onprem, cloud) = (Origin::start("onprem").await, Origin::start("cloud").await);
    let sw = Spillway::start(&burst_config(&onprem, &cloud)).await;
    let load: Vec<_> = (0..6)
        .map(|_| {
            let url = sw.url("web", "/read?delay_ms=80");
            tokio::spawn(async move {
                loop {
                    let _ = support::get(&url).await;
                }
            })
        })
        .collect();
    support::eventually(Duration::from_secs(10), "spilling to the cloud", || async { cloud.hits() > 10 }).await;
    let url = sw.admin_url("/");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-burst.png");
    let (dom, png) = {
        let (url, shot) = (url.clone(), shot.clone());
        tokio::task::spawn_blocking(move || {
            (browse(&url, &["--dump-dom"]), {
                browse(&url, &[&format!("--screenshot={}", shot.display())]);
                std::fs::read(&shot).expect("chromium wrote the screenshot")
            })
        })
        .await
        .unwrap()
    };
    load.iter().for_each(|t| t.abort());
    let boxes = chart_boxes(&dom);
    assert_eq!(boxes.len(), 5, "five charts: {boxes:?}");
    let image = Image::decode(&png);
    for b in &boxes {
        let id = b["id"].as_str().unwrap();
        let (w, h) = (b["w"].as_f64().unwrap(), b["h"].as_f64().unwrap());
        assert!(w >= 440.0 && h >= 200.0, "chart {id} is {w} × {h}: too small to read ({})", shot.display());
        if ["rps", "inflight", "p99"].contains(&id) {
            for color in b["colors"].as_array().unwrap() {
                let n = image.count(b, color.as_str().unwrap());
                assert!(n >= 100, "chart {id}: {n} pixels of {color}, the series is not drawn ({})", shot.display());
            }
        }
    }
}

fn burst_config(onprem: &Origin, cloud: &Origin) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n[pools.onprem]\nendpoints = {}\n\n[pools.aws]\nrole = \"cloud\"\nendpoints = {}\n\n[[route]]\nname = \"www\"\nprimary = \"onprem\"\noverflow = \"aws\"\n\n[spill]\nmode = \"static\"\nmax_in_flight = 2\nlatency_slo = \"150ms\"\ncloud_max_in_flight = 1\nqueue_timeout = \"20ms\"\n",
        support::endpoints(&[onprem]),
        support::endpoints(&[cloud]),
    )
}

/// Runs headless Chromium on `url` (1400 × 1800, six seconds of page time).
fn browse(url: &str, mode: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .args(["--window-size=1400,1800", "--force-device-scale-factor=1", "--virtual-time-budget=6000"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(mode)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The chart boxes the page published, in CSS pixels.
fn chart_boxes(dom: &str) -> Vec<serde_json::Value> {
    let start = dom.find("<pre id=\"chart-boxes\">").expect("the page publishes its chart boxes") + 22;
    let end = start + dom[start..].find("</pre>").unwrap();
    serde_json::from_str(&dom[start..end].replace("&quot;", "\"")).unwrap_or_else(|e| panic!("{e}: {dom}"))
}

/// A decoded RGB(A) screenshot.
struct Image {
    width: usize,
    channels: usize,
    pixels: Vec<u8>,
}

impl Image {
    fn decode(png_bytes: &[u8]) -> Image {
        let mut reader = png::Decoder::new(png_bytes).read_info().expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let channels = info.color_type.samples();
        Image { width: info.width as usize, channels, pixels }
    }

    /// Pixels close to `#rrggbb` inside `b` above its zero line, which the
    /// page draws 14 CSS pixels above the box's bottom edge (a series flat at
    /// zero, 3 pixels wide on that line, does not count).
    fn count(&self, b: &serde_json::Value, hex: &str) -> usize {
        let want: Vec<i32> = (0..3).map(|i| i32::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap()).collect();
        let at = |k: &str| b[k].as_f64().unwrap() as usize;
        let (x0, y0, w, h) = (at("x"), at("y"), at("w"), at("h"));
        let height = self.pixels.len() / self.channels / self.width;
        let mut n = 0;
        for y in y0..(y0 + h.saturating_sub(18)).min(height) {
            for x in x0..(x0 + w).min(self.width) {
                let p = &self.pixels[(y * self.width + x) * self.channels..][..3];
                n += usize::from((0..3).all(|i| (i32::from(p[i]) - want[i]).abs() <= 24));
            }
        }
        n
    }
}
