//! Integration tests talk to a real RabbitMQ and a real Redis (started by `.ci/run`, or already running on
//! the machine). Each test isolates itself with unique names, and waits on conditions, never on luck.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use secrecy::SecretString;

/// `BB2SNYK_TEST_AMQP_URL`, or the local broker's default.
pub fn amqp_url() -> SecretString {
    SecretString::from(
        std::env::var("BB2SNYK_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
    )
}

/// `BB2SNYK_TEST_REDIS_URL`, or the local server's default.
pub fn redis_url() -> SecretString {
    SecretString::from(
        std::env::var("BB2SNYK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    )
}

/// Settings from `vars` alone (no file, nothing from the process environment), e.g. a sandbox's variables.
pub fn settings<K: Into<String>>(
    vars: impl IntoIterator<Item = (K, String)>,
) -> bb2snyk_settings::Settings {
    let env = vars.into_iter().map(|(k, v)| (k.into(), v)).collect();
    bb2snyk_settings::load(&bb2snyk_settings::Sources { file: None, env }).expect("settings")
}

/// A name no other test (or earlier run) uses: `t-<8 hex>-<what>`.
pub fn unique(what: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t-{}-{what}", &id[..8])
}

/// Polls `check` until it returns `Some`, or panics with `what` when `limit` passes.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A listener on 127.0.0.1 that counts every connection made to it: a foreign host that must never be
/// contacted (with a credential or at all).
#[derive(Debug)]
pub struct Tripwire {
    addr: std::net::SocketAddr,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Tripwire {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("its address");
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        Self { addr, hits, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections made so far.
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Redis server of a test's own, on a free port, for tests that stop and restart Redis without
/// disturbing the shared one. Needs `redis-server` on the PATH (`.ci/run` installs it). Killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<std::process::Child>,
    /// Where an append-only file keeps the data across restarts, as a production Redis would.
    data: Option<std::path::PathBuf>,
}

impl RedisServer {
    /// Empty on every start.
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// Keeps its data across [`RedisServer::restart`] (append-only file, fsync always).
    pub async fn start_persistent() -> Self {
        let dir = std::env::temp_dir().join(unique("redis-data"));
        std::fs::create_dir_all(&dir).expect("a data folder");
        Self::launch(Some(dir)).await
    }

    async fn launch(data: Option<std::path::PathBuf>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self {
            port,
            child: None,
            data,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> SecretString {
        SecretString::from(format!("redis://127.0.0.1:{}", self.port))
    }

    /// Kills the server (as a crash would) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty, and waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let mut command = std::process::Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", ""]);
        match &self.data {
            Some(dir) => command
                .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
                .arg(dir),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        let port = self.port;
        wait_for(
            "the test's Redis to answer",
            Duration::from_secs(10),
            || async move { ping(port).await.then_some(()) },
        )
        .await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = &self.data {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").await.is_ok()
        && stream.read_exact(&mut answer).await.is_ok()
        && &answer == b"+PONG\r\n"
}

/// `BB2SNYK_TEST_MANAGEMENT_URL`, or the local broker's management API.
pub fn management_url() -> String {
    std::env::var("BB2SNYK_TEST_MANAGEMENT_URL")
        .unwrap_or_else(|_| "http://guest:guest@127.0.0.1:15672".into())
}

/// Fails the test in one line, with the fix, when RabbitMQ's management API does not answer: the tests
/// that make vhosts or list connections need it, and Debian's RabbitMQ starts without it.
pub async fn require_management() {
    let (http, base, user, password) = admin();
    let answered = http
        .get(base.join("/api/overview").expect("URL"))
        .basic_auth(&user, password.as_deref())
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map(|r| r.status());
    match answered {
        Ok(status) if status.is_success() => {}
        Ok(status) => panic!(
            "this test needs RabbitMQ's management API at {base}, which answers {status}: give the test user \
             (BB2SNYK_TEST_MANAGEMENT_URL) the administrator tag"
        ),
        Err(_) => panic!(
            "this test needs RabbitMQ's management API at {base}, which does not answer: run \
             `rabbitmq-plugins enable rabbitmq_management` (the README's test command, .ci/run, does it)"
        ),
    }
}

/// The management API's client, base URL and credentials (sent as a header, never in the URL).
pub fn admin() -> (reqwest::Client, reqwest::Url, String, Option<String>) {
    let mut base = reqwest::Url::parse(&management_url()).expect("management URL");
    let user = base.username().to_owned();
    let password = base.password().map(str::to_owned);
    // Sent as a header instead: credentials left in the URL would be sent as well, and refused.
    let _ = base.set_username("");
    let _ = base.set_password(None);
    (reqwest::Client::new(), base, user, password)
}

/// The management API, and the ids of connections whose name contains `marker`.
async fn management(
    marker: &str,
) -> (
    reqwest::Client,
    reqwest::Url,
    String,
    Option<String>,
    Vec<String>,
) {
    require_management().await;
    let (http, base, user, password) = admin();
    let connections: Vec<serde_json::Value> = http
        .get(base.join("/api/connections").expect("URL"))
        .basic_auth(&user, password.as_deref())
        .send()
        .await
        .expect("the management API answers (rabbitmq-plugins enable rabbitmq_management)")
        .json()
        .await
        .expect("a JSON list");
    let ids = connections
        .iter()
        .filter(|c| {
            c["client_properties"]["connection_name"]
                .as_str()
                .is_some_and(|n| n.contains(marker))
        })
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect();
    (http, base, user, password, ids)
}

/// A RabbitMQ virtual host of the test's own, which the test user may use: a whole broker to itself, so
/// it can close every connection without touching other tests'.
#[derive(Debug)]
pub struct Vhost {
    name: String,
}

impl Vhost {
    pub async fn create(what: &str) -> Self {
        require_management().await;
        let name = unique(what);
        let (http, base, user, password) = admin();
        let put = |path: String, body: serde_json::Value| {
            http.put(base.join(&path).expect("URL"))
                .basic_auth(&user, password.as_deref())
                .json(&body)
                .send()
        };
        let made = put(
            format!("/api/vhosts/{}", url_encode(&name)),
            serde_json::json!({}),
        )
        .await
        .expect("the management API answers");
        assert!(
            made.status().is_success(),
            "vhost {name}: {}",
            made.status()
        );
        let granted = put(
            format!(
                "/api/permissions/{}/{}",
                url_encode(&name),
                url_encode(&user)
            ),
            serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await
        .expect("the management API answers");
        assert!(
            granted.status().is_success(),
            "permissions on {name}: {}",
            granted.status()
        );
        Self { name }
    }

    /// The test broker's URL, in this vhost.
    pub fn amqp_url(&self) -> SecretString {
        use secrecy::ExposeSecret;
        let mut url = reqwest::Url::parse(amqp_url().expose_secret()).expect("AMQP URL");
        url.set_path(&format!("/{}", url_encode(&self.name)));
        SecretString::from(url.to_string())
    }

    /// `rabbitmqctl close_all_connections --vhost <this>`: the broker closes every connection in the vhost.
    /// Falls back to the management API where rabbitmqctl cannot reach the node (another machine).
    pub async fn close_all_connections(&self) {
        let closed = tokio::process::Command::new("rabbitmqctl")
            .args([
                "close_all_connections",
                "--vhost",
                &self.name,
                "--limit",
                "10000",
            ])
            .arg("bb2snyk test: the broker drops every connection")
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if !closed {
            let (http, base, user, password) = admin();
            let listed: Vec<serde_json::Value> = http
                .get(
                    base.join(&format!(
                        "/api/vhosts/{}/connections",
                        url_encode(&self.name)
                    ))
                    .expect("URL"),
                )
                .basic_auth(&user, password.as_deref())
                .send()
                .await
                .expect("the management API answers")
                .json()
                .await
                .expect("a JSON list");
            for name in listed.iter().filter_map(|c| c["name"].as_str()) {
                let _ = http
                    .delete(
                        base.join(&format!("/api/connections/{}", url_encode(name)))
                            .expect("URL"),
                    )
                    .basic_auth(&user, password.as_deref())
                    .send()
                    .await;
            }
        }
    }

    /// Removes the vhost and everything in it.
    pub async fn delete(self) {
        let (http, base, user, password) = admin();
        let _ = http
            .delete(
                base.join(&format!("/api/vhosts/{}", url_encode(&self.name)))
                    .expect("URL"),
            )
            .basic_auth(&user, password.as_deref())
            .send()
            .await;
    }
}

/// The broker's ids of the connections whose name contains `marker` (the management API lags a few seconds).
pub async fn connection_ids(marker: &str) -> Vec<String> {
    management(marker).await.4
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The environment a pipeline test runs its stages with: `api` (the sandbox's variables), the local
/// RabbitMQ and Redis under fresh names (`what` in them), short retry tiers, a short drain, and queues that
/// expire when the test is done.
pub fn pipeline_env(
    api: Vec<(&'static str, String)>,
    what: &str,
) -> std::collections::HashMap<String, String> {
    use secrecy::ExposeSecret;
    let mut env: std::collections::HashMap<String, String> =
        api.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    for (k, v) in [
        ("AMQP_URL", amqp_url().expose_secret().to_owned()),
        ("REDIS_URL", redis_url().expose_secret().to_owned()),
        ("BB2SNYK__AMQP__PREFIX", unique(what)),
        ("BB2SNYK__REDIS__PREFIX", format!("{}:", unique(what))),
        ("BB2SNYK__AMQP__EXPIRES_SECS", "300".into()),
        // Test tenants fit in one window: at an even pace a run would take as long as its requests'
        // share of a minute. The budget's own tests and the benchmark pace evenly.
        ("BB2SNYK__SNYK__EVEN_PACE", "false".into()),
        ("BB2SNYK__PIPELINE__RETRY_TIERS_SECS", "1,2".into()),
        ("BB2SNYK__PIPELINE__MAX_ATTEMPTS", "4".into()),
        ("BB2SNYK__PIPELINE__DRAIN_SECS", "5".into()),
        // Many services share a test process: each endpoint server takes a free port.
        ("BB2SNYK__METRICS__LISTEN", "127.0.0.1:0".into()),
    ] {
        env.insert(k.to_owned(), v);
    }
    env
}

/// A TCP proxy on 127.0.0.1 in front of `target`, which a test can take down (every connection through it
/// is cut and new ones are refused) and bring back on the same port: a broker outage for one process.
#[derive(Debug)]
pub struct TcpProxy {
    addr: std::net::SocketAddr,
    target: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl TcpProxy {
    pub async fn start(target: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let proxy = Self {
            addr,
            target: target.to_owned(),
            tasks: std::sync::Arc::default(),
        };
        proxy.accept(listener);
        proxy
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    fn accept(&self, listener: tokio::net::TcpListener) {
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let relay = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(relay.abort_handle());
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(acceptor.abort_handle());
    }

    /// Cuts every connection and stops listening.
    pub fn stop(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&self) {
        let listener = wait_for(
            "the proxy port to be free",
            Duration::from_secs(10),
            || async { tokio::net::TcpListener::bind(self.addr).await.ok() },
        )
        .await;
        self.accept(listener);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop();
    }
}
