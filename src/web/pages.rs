//! The gallery's HTML, written with maud: templates are Rust, compiled into the binary and
//! checked by the compiler; every `(value)` is HTML-escaped (text and attributes alike), so a
//! device name such as `<img src=x onerror=alert(1)>` is shown as text. Names in URLs go
//! through [`super::url_segment`]; the page's script reads names from `data-` attributes and
//! only ever sets them with `textContent`.

use super::index::{Camera, Index};
use super::{camera_url, picture_url, GridQuery, QuarantineItem};
use crate::metrics::Metrics;
use crate::sink::iso_time;
use maud::{html, Markup, DOCTYPE};
use std::sync::atomic::Ordering::Relaxed;

/// Cameras per page of the grid.
pub const PAGE_SIZE: usize = 120;
const DAY_MS: i64 = 86_400_000;

fn layout(title: &str, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · receiver" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header {
                    nav {
                        a.brand href="/" { "receiver" }
                        @for (href, name) in [("/", "Cameras"), ("/quarantine", "Quarantine"), ("/status", "Status")] {
                            a href=(href) class=[(name == active).then_some("active")] { (name) }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// "3 min ago".
pub fn ago(now_ms: i64, t_ms: i64) -> String {
    let s = (now_ms - t_ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        3600..=86_399 => format!("{} h ago", s / 3600),
        _ => format!("{} d ago", s / 86_400),
    }
}

/// receiving, late (no picture for longer than three of its usual intervals, at least two
/// minutes) or silent (nothing for a day).
pub fn camera_state(cam: &Camera, now_ms: i64) -> &'static str {
    let Some(last) = cam.pictures.last() else {
        return "silent";
    };
    let age = now_ms - last.time_ms;
    if age > DAY_MS {
        return "silent";
    }
    let recent: Vec<i64> = cam
        .pictures
        .iter()
        .rev()
        .take(11)
        .map(|p| p.time_ms)
        .collect();
    let mut gaps: Vec<i64> = recent.windows(2).map(|w| w[0] - w[1]).collect();
    gaps.sort_unstable();
    let usual = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
    if age > (3 * usual).max(120_000) {
        "late"
    } else {
        "receiving"
    }
}

fn time_el(t_ms: i64, now_ms: i64) -> Markup {
    let iso = iso_time(t_ms);
    html! { time datetime=(iso) title=(iso) { (ago(now_ms, t_ms)) } }
}

/// `/`: every camera with its latest picture, filtered and paged.
pub fn grid(index: &Index, quarantined: &[QuarantineItem], q: &GridQuery, now_ms: i64) -> Markup {
    let needle = q.q.to_lowercase();
    let since = now_ms - DAY_MS;
    let (total, cards) = index.with_cameras(|cams| {
        let mut total = 0;
        let mut cards = Vec::new();
        for cam in cams {
            let d = &cam.device;
            if !needle.is_empty()
                && !d.product_key.to_lowercase().contains(&needle)
                && !d.device_name.to_lowercase().contains(&needle)
            {
                continue;
            }
            if total / PAGE_SIZE == q.page {
                let last = cam.pictures.last();
                let day = cam.pictures.iter().rev().take_while(|p| p.time_ms >= since).count();
                let quarantined_day = quarantined
                    .iter()
                    .filter(|x| x.device == *d && x.time_ms >= since)
                    .count();
                let state = camera_state(cam, now_ms);
                cards.push(html! {
                    article.card data-pk=(d.product_key) data-dn=(d.device_name) {
                        a href=(camera_url(d)) {
                            @if let Some(p) = last {
                                img.thumb loading="lazy" width="160" height="120" alt="" src=(picture_url("thumb", d, &p.name));
                            } @else {
                                div.nothumb { "no picture" }
                            }
                        }
                        div.name {
                            span.pk { (d.product_key) } " / " span.dn { (d.device_name) }
                        }
                        div.meta {
                            span class={ "state " (state) } { (state) } " "
                            @if let Some(p) = last { span.when { (time_el(p.time_ms, now_ms)) } }
                        }
                        div.meta {
                            span.day { (day) } " pictures, "
                            span.qday { (quarantined_day) } " quarantined in 24 h"
                        }
                    }
                });
            }
            total += 1;
        }
        (total, cards)
    });
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let live = needle.is_empty() && q.page == 0;
    layout(
        "Cameras",
        "Cameras",
        html! {
            form.filter method="get" action="/" {
                input type="search" name="q" value=(q.q) placeholder="Filter by product key or device name";
                button type="submit" { "Filter" }
                span.count { (total) " cameras" }
            }
            section #grid .grid data-live=(if live { "1" } else { "0" }) {
                @for c in &cards { (c) }
            }
            @if pages > 1 {
                nav.pages {
                    @for p in 0..pages {
                        @if p == q.page { span.current { (p + 1) } }
                        @else { a href={ "/?page=" (p) "&q=" (url_query(&q.q)) } { (p + 1) } }
                    }
                }
            }
        },
    )
}

/// Percent-encodes a query value.
fn url_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/camera/<pk>/<dn>`: one day of a camera's pictures, by hour; the viewer is in app.js.
pub fn camera(cam: &Camera, day: Option<&str>) -> Markup {
    let d = &cam.device;
    let day_of = |t: i64| iso_time(t)[..10].to_owned();
    let mut days: Vec<String> = cam.pictures.iter().map(|p| day_of(p.time_ms)).collect();
    days.dedup();
    let shown = day
        .filter(|x| days.iter().any(|d| d == x))
        .map(str::to_owned)
        .or_else(|| days.last().cloned())
        .unwrap_or_default();
    let pics: Vec<_> = cam
        .pictures
        .iter()
        .filter(|p| day_of(p.time_ms) == shown)
        .collect();
    let mut groups: Vec<(String, Vec<(usize, &super::index::Picture)>)> = Vec::new();
    for (i, p) in pics.iter().enumerate() {
        let hour = iso_time(p.time_ms)[11..13].to_owned();
        match groups.last_mut() {
            Some((h, g)) if *h == hour => g.push((i, p)),
            _ => groups.push((hour, vec![(i, p)])),
        }
    }
    let title = format!("{} / {}", d.product_key, d.device_name);
    layout(
        &title,
        "",
        html! {
            h1 { span.pk { (d.product_key) } " / " span.dn { (d.device_name) } }
            nav.days {
                @for x in days.iter().rev().take(60) {
                    @if *x == shown { span.current { (x) } }
                    @else { a href={ (camera_url(d)) "?day=" (x) } { (x) } }
                }
            }
            p { (pics.len()) " pictures on " (shown) " (UTC). "
                button #play type="button" { "Play time-lapse" } }
            section #pictures {
                @for (hour, group) in &groups {
                    h2.hour { (hour) ":00" }
                    @for (i, p) in group {
                        @let iso = iso_time(p.time_ms);
                        a.pic href=(picture_url("picture", d, &p.name)) data-index=(i)
                            data-time=(iso) data-bytes=(p.bytes) data-name=(p.name)
                            data-format=(p.format.unwrap_or("format not recorded"))
                            data-download={ (picture_url("picture", d, &p.name)) "?download=1" } {
                            img loading="lazy" width="160" height="120" alt=(iso) src=(picture_url("thumb", d, &p.name));
                        }
                    }
                }
            }
            div #viewer hidden {
                div.bar {
                    button #prev type="button" { "← Previous" }
                    span #vtime {}
                    span #vsize {}
                    span #vformat {}
                    a #vdownload href="#" { "Download" }
                    button #next type="button" { "Next →" }
                    button #close type="button" { "Close" }
                }
                img #vimg alt="";
            }
        },
    )
}

/// `/quarantine`: every quarantined picture, newest first (the latest 1 000).
pub fn quarantine(items: &[QuarantineItem]) -> Markup {
    layout(
        "Quarantine",
        "Quarantine",
        html! {
            h1 { "Quarantine" }
            p { (items.len()) " quarantined pictures (newest first)." }
            table.quarantine {
                thead { tr { th { "Preview" } th { "Device" } th { "Time" } th { "Reason" } th { "Detail" } th { "Size" } th { "Raw" } } }
                tbody {
                    @for q in items.iter().take(1000) {
                        @let seg = |kind: &str| format!("/quarantine/{kind}/{}/{}/{}",
                            super::url_segment(&q.device.product_key),
                            super::url_segment(&q.device.device_name),
                            super::url_segment(&q.file));
                        tr {
                            td { img.qprev loading="lazy" width="96" height="72" alt="no preview" src=(seg("preview")); }
                            td { span.pk { (q.device.product_key) } " / " span.dn { (q.device.device_name) } }
                            td { (iso_time(q.time_ms)) }
                            td.reason { (q.reason) }
                            td.detail {
                                (q.detail)
                                @if q.missing_count > 0 { " (" (q.missing_count) " chunks missing)" }
                                @if let Some(f) = &q.format { " [" (f) "]" }
                            }
                            td { (q.bytes) " B" }
                            td { a href=(seg("raw")) { "bytes" } }
                        }
                    }
                }
            }
        },
    )
}

/// `/status`: the same counters as `/metrics`, and the message rate as an SVG chart.
pub fn status(m: &Metrics, rates: &[(i64, f64)], cameras: usize) -> Markup {
    let (w, h) = (600.0, 120.0);
    let max = rates.iter().map(|r| r.1).fold(1.0_f64, f64::max);
    let n = rates.len().max(2) as f64 - 1.0;
    let points: Vec<String> = rates
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{:.1},{:.1}", i as f64 / n * w, h - r.1 / max * h))
        .collect();
    let rows: Vec<(&str, String)> = vec![
        (
            "Receiver links attached",
            m.links_attached.load(Relaxed).to_string(),
        ),
        ("Reconnects", m.reconnects.load(Relaxed).to_string()),
        (
            "Refused sign-ins",
            m.auth_failures.load(Relaxed).to_string(),
        ),
        ("Deliveries", m.messages_total().to_string()),
        ("Pictures written", m.images_written().to_string()),
        ("Quarantined", m.quarantined_total().to_string()),
        ("Open pictures", m.open_assemblies.load(Relaxed).to_string()),
        ("Spool bytes", m.spool_bytes.load(Relaxed).to_string()),
        ("Intake paused", m.paused.load(Relaxed).to_string()),
        ("I/O errors", m.io_errors.load(Relaxed).to_string()),
        ("Cameras", cameras.to_string()),
    ];
    layout(
        "Status",
        "Status",
        html! {
            h1 { "Status" }
            h2 { "Messages per second" }
            svg.chart viewBox={ "0 0 " (w) " " (h) } width=(w) height=(h) role="img" {
                polyline fill="none" stroke="currentColor" stroke-width="2" points=(points.join(" ")) {}
            }
            p.small { "Peak " (format!("{max:.1}")) "/s over the last " (rates.len() * 5) " s (sampled every 5 s)." }
            table.status {
                @for (k, v) in &rows { tr { th { (k) } td { (v) } } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::DeviceId;

    #[test]
    fn hostile_names_are_escaped_everywhere() {
        let index = Index::new();
        let d = DeviceId::new("pk\"'", "<img src=x onerror=alert(1)>");
        index.add(&d, &format!("{}.jpg", crate::sink::file_time(1_000)), 10);
        let page = grid(&index, &[], &GridQuery::default(), 2_000).into_string();
        assert!(!page.contains("<img src=x"), "{page}");
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{page}"
        );
        assert!(page.contains("data-pk=\"pk&quot;'\""), "{page}");
        let cam = camera(&index.camera(&d).unwrap(), None).into_string();
        assert!(!cam.contains("<img src=x"), "{cam}");
    }

    #[test]
    fn states() {
        let index = Index::new();
        let d = DeviceId::new("p", "d");
        for t in [0, 60_000, 120_000] {
            index.add(&d, &format!("{}.jpg", crate::sink::file_time(t)), 1);
        }
        let cam = index.camera(&d).unwrap();
        assert_eq!(camera_state(&cam, 130_000), "receiving");
        assert_eq!(camera_state(&cam, 120_000 + 400_000), "late");
        assert_eq!(camera_state(&cam, 120_000 + DAY_MS + 1), "silent");
    }

    /// The performance target, measured (not a timed test: `cargo test --release --lib
    /// gallery_grid_bench -- --ignored --nocapture`): 1 000 cameras x 100 pictures.
    #[test]
    #[ignore]
    fn gallery_grid_bench() {
        let index = Index::new();
        let mut pics = Vec::new();
        for c in 0..1000 {
            let d = DeviceId::new("a1BenchPK01", &format!("cam-{c:04}"));
            for p in 0..100i64 {
                pics.push(crate::output::StoredPicture {
                    device: d.clone(),
                    name: format!(
                        "{}.jpg",
                        crate::sink::file_time(1_764_000_000_000 + p * 60_000 + c)
                    ),
                    bytes: 20_000,
                    format: Some("v2"),
                });
            }
        }
        let t = std::time::Instant::now();
        index.extend(pics);
        let build = t.elapsed();
        let now = 1_764_000_000_000 + 100 * 60_000;
        let mut times = Vec::new();
        let mut size = 0;
        for page in 0..50 {
            let q = GridQuery {
                q: String::new(),
                page: page % 9,
            };
            let t = std::time::Instant::now();
            size = grid(&index, &[], &q, now).into_string().len();
            times.push(t.elapsed());
        }
        times.sort();
        let p99 = times[times.len() * 99 / 100];
        let q = GridQuery {
            q: "cam-09".into(),
            page: 0,
        };
        let t = std::time::Instant::now();
        let filtered = grid(&index, &[], &q, now).into_string().len();
        eprintln!(
            "index of 100 000 pictures built in {build:?}; / (120 of 1 000 cameras): p50 {:?}, \
             p99 {p99:?}, {size} bytes; filtered: {:?}, {filtered} bytes",
            times[times.len() / 2],
            t.elapsed()
        );
    }
}
