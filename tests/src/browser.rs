//! A real browser for the web UI's tests: Debian's headless Chromium driven
//! over WebDriver (Debian's `chromedriver`) with fantoccini. Each
//! [`Browser`] has its own chromedriver on a free port, its own profile in a
//! temp dir, and is torn down (the driver's whole process group) on drop.
//! A machine without them fails the test with what to install.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Where the tests write their screenshots: `target/ui-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("ui-screenshots")
}

impl Browser {
    /// Start chromedriver and a headless Chromium session.
    pub async fn start() -> Browser {
        let hint = "scripts/test-deps.sh installs Debian's chromium and chromium-driver";
        let driver_bin = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .unwrap_or_else(|| panic!("no chromedriver on this machine: {hint}"));
        let chromium = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"])
            .unwrap_or_else(|| panic!("no chromium on this machine: {hint}"));
        let profile = tempfile::tempdir().expect("a profile dir");
        let log = profile.path().join("chromedriver.log");
        let port = free_port();
        let driver = {
            use std::os::unix::process::CommandExt as _;
            Command::new(&driver_bin)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e} ({hint})", driver_bin.display()))
        };
        let url = format!("http://127.0.0.1:{port}");
        let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1280,900", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
            },
        }))
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!(
                    "Chromium did not start under chromedriver: {e}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Save a PNG of the viewport as `target/ui-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// The text of the first element matching `css`, waiting up to 20 s for it.
    pub async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap()
    }

    /// Wait up to 20 s for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` within 20 s: {e}"))
    }

    /// Wait until the script `js` (a function body returning a value)
    /// returns `true`; panics with `what` after `secs` seconds.
    pub async fn until(&self, js: &str, secs: u64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.client.execute(js, vec![]).await;
            if matches!(v, Ok(serde_json::Value::Bool(true))) {
                return;
            }
            if Instant::now() > deadline {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let page = self.client.source().await.unwrap_or_default();
                let page: String = page.chars().take(4000).collect();
                panic!(
                    "{what}: not within {secs} s (last answer {v:?}, at {url:?}); the page:\n{page}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Check what a screen reader and a keyboard need on the current page:
    /// every form control labelled, every button and link named, every
    /// graphic described, the language set. Panics listing what is not.
    pub async fn assert_accessible(&self, page: &str) {
        let problems = self
            .client
            .execute(
                r#"const out = [];
                if (!document.documentElement.lang) out.push('no lang');
                for (const e of document.querySelectorAll('input:not([type=hidden]), select, textarea'))
                  if (!(e.labels && e.labels.length) && !e.getAttribute('aria-label')) out.push('unlabelled ' + e.outerHTML);
                for (const e of document.querySelectorAll('button, a'))
                  if (!e.textContent.trim() && !e.getAttribute('aria-label') && !e.querySelector('title')) out.push('unnamed ' + e.outerHTML);
                for (const e of document.querySelectorAll('svg'))
                  if (!e.getAttribute('aria-label')) out.push('undescribed svg');
                return out;"#,
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(problems, serde_json::json!([]), "accessibility on {page}");
    }

    /// Sign in with `token` on the UI at `base`.
    pub async fn sign_in(&self, base: &str, token: &str) {
        self.client.goto(&format!("{base}/ui/login")).await.unwrap();
        let form = self.wait_for("form.login").await;
        form.find(Locator::Css("#token"))
            .await
            .unwrap()
            .send_keys(token)
            .await
            .unwrap();
        form.find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        self.until("return !!document.getElementById('user');", 20, "signed in")
            .await;
    }

    /// Forget every cookie (sign out without the button).
    pub async fn forget(&self) {
        self.client.delete_all_cookies().await.unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and every Chromium process it started.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
