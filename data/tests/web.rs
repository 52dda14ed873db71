//! The live page in a real browser: headless Chromium loads it, and points arrive as
//! records are written to the store by another connection (as the orchestrator's writer
//! would).
//!
//! Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
//! NUL-separated JSON on file descriptors 3 and 4), so the test reads the page's live
//! state without a WebSocket client. It is skipped, with a message, when no Chromium is
//! installed (`apt-get install chromium`; `MAGI_CHROMIUM` names another binary).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use magi_data::web::{self, WebOptions};
use magi_data::{Record, Store};
use serde_json::{json, Value};

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MAGI_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in [
            "chromium",
            "chromium-browser",
            "google-chrome",
            "google-chrome-stable",
        ] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

struct Browser {
    child: Child,
    to: ChildStdin,
    from: Receiver<Value>,
    next_id: u64,
    session: Option<String>,
}

impl Browser {
    fn launch(chromium: &Path, profile: &Path, url: &str) -> Browser {
        // fd 3 is what Chromium reads commands from, fd 4 where it writes answers: bash
        // wires them to our pipes, then becomes Chromium.
        let script = "exec \"$0\" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
             --disable-background-networking --disable-component-update --disable-sync \
             --disable-dev-shm-usage --disable-crash-reporter --user-data-dir=\"$1\" \
             --remote-debugging-pipe \"$2\" 3<&0 4>&1 0</dev/null 1>/dev/null 2>\"$1/chromium.log\"";
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg(chromium)
            .arg(profile)
            .arg(url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let to = child.stdin.take().expect("stdin");
        let mut out = child.stdout.take().expect("stdout");
        let (tx, from) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            while let Ok(n) = out.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(i) = buf.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = buf.drain(..=i).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to,
            from,
            next_id: 0,
            session: None,
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer from chromium to {method}"));
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn attach_to_page(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let targets = self.call("Target.getTargets", json!({}));
            let page = targets["targetInfos"]
                .as_array()
                .and_then(|a| a.iter().find(|t| t["type"] == "page"))
                .and_then(|t| t["targetId"].as_str())
                .map(str::to_string);
            if let Some(id) = page {
                let r = self.call(
                    "Target.attachToTarget",
                    json!({"targetId": id, "flatten": true}),
                );
                self.session = r["sessionId"].as_str().map(str::to_string);
                return;
            }
            assert!(Instant::now() < deadline, "chromium opened no page");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// The page's count of points received (None before the page has loaded).
    fn points(&mut self) -> Option<u64> {
        self.eval("(() => { const e = document.getElementById('points'); return e ? Number(e.textContent) : null; })()").as_u64()
    }

    fn wait_points(&mut self, want: u64, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let n = self.points();
            if n == Some(want) || Instant::now() > deadline {
                return n.unwrap_or(0);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.session = None;
        let mut bytes = json!({"id": 999_999, "method": "Browser.close"})
            .to_string()
            .into_bytes();
        bytes.push(0);
        let _ = self.to.write_all(&bytes);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample(host: &str, peer: &str, dir: &str, t: f64, bytes: u64) -> Record {
    Record {
        run: "live".into(),
        agent: "monitor_agent".into(),
        host: host.into(),
        created: t,
        data: json!({"peerNode": peer, "trafficDirection": dir, "bytes": bytes, "packets": 10})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    }
}

#[test]
fn live_page_shows_points_as_records_arrive() {
    let Some(chromium) = find_chromium() else {
        magi_testkit::skip(
            "live_page_shows_points_as_records_arrive",
            "no Chromium found (install it with `apt-get install -y chromium`, or set MAGI_CHROMIUM)",
        );
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let store_path = tmp.path().join("data.sqlite");
    let target = store_path.to_str().expect("utf-8").to_string();

    // History: 10 seconds of the server's outgoing traffic, plus records the filter drops.
    let t0 = 1_700_000_000.0;
    let mut writer = Store::open(&target).expect("open store");
    let mut history: Vec<Record> = (0..10)
        .map(|i| {
            sample(
                "servernode",
                "clientnode",
                "out",
                t0 + i as f64,
                125_000 * (i + 1),
            )
        })
        .collect();
    history.extend((0..10).map(|i| sample("servernode", "clientnode", "in", t0 + i as f64, 600)));
    history.extend((0..10).map(|i| sample("clientnode", "servernode", "out", t0 + i as f64, 600)));
    writer.insert_batch(&history).expect("insert history");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_store = Store::open(&target).expect("open store");
    let opts = WebOptions {
        poll: Duration::from_millis(200),
        ..WebOptions::default()
    };
    let server = rt.spawn(web::serve(listener, server_store, opts, async move {
        let _ = stop_rx.await;
    }));

    let profile = tmp.path().join("chromium-profile");
    std::fs::create_dir_all(&profile).expect("profile dir");
    let url = format!("http://{addr}/?host=servernode&trafficDirection=out");
    let mut browser = Browser::launch(&chromium, &profile, &url);
    browser.attach_to_page();

    // The history arrives first ...
    let n = browser.wait_points(10, Duration::from_secs(30));
    assert_eq!(n, 10, "history points on the page");
    assert_eq!(
        browser.eval("document.getElementById('status').textContent"),
        json!("live")
    );
    assert_eq!(
        browser.eval("document.getElementById('filter').textContent"),
        json!("host=servernode trafficDirection=out")
    );

    // ... then records written while the page is open, in two batches; the filter keeps
    // the server's outgoing ones only.
    for batch in 0..2 {
        let recs: Vec<Record> = (0..5)
            .flat_map(|i| {
                let t = t0 + 10.0 + (batch * 5 + i) as f64;
                [
                    sample("servernode", "clientnode", "out", t, 250_000),
                    sample("servernode", "clientnode", "in", t, 600),
                ]
            })
            .collect();
        writer.insert_batch(&recs).expect("insert live records");
        let want = 10 + 5 * (batch as u64 + 1);
        let n = browser.wait_points(want, Duration::from_secs(20));
        assert_eq!(n, want, "points after live batch {batch}");
    }
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        browser.points(),
        Some(20),
        "records outside the filter must not be drawn"
    );

    // The chart has been drawn: pixels of the first series' colour on the canvas.
    std::thread::sleep(Duration::from_millis(400));
    let red = browser.eval(
        "(() => { const c = document.getElementById('chart'); \
           const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; \
           for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i+1] < 60 && d[i+2] < 60) n++; return n; })()",
    );
    assert!(
        red.as_u64().unwrap_or(0) > 200,
        "the canvas shows no curve ({red})"
    );

    // The original's `?host=<configHost>.<exp>.<proj>` form is accepted.
    browser.call(
        "Page.navigate",
        json!({"url": format!("http://{addr}/?host=servernode.cs.montage&trafficDirection=out")}),
    );
    let n = browser.wait_points(30, Duration::from_secs(30));
    assert_eq!(
        n, 30,
        "every host's outgoing records: 20 of servernode, 10 of clientnode"
    );
    let note = browser.eval("document.getElementById('note').textContent");
    assert!(
        note.as_str().unwrap_or("").contains("database address"),
        "{note}"
    );

    drop(browser);
    let _ = stop_tx.send(());
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    });
}
