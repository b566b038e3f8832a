//! The moto fixture for `tests/aws_*.rs`: starts a `moto_server` of its own
//! on a free loopback port (from `.venv`, made by `scripts/moto-env`, or
//! `SPILLWAY_MOTO_SERVER`), builds SDK configs pointed at it with dummy
//! credentials, creates the Auto Scaling group, the hosted zone and the
//! coordination table, and offers a tiny loopback proxy that can answer
//! `Throttling` in moto's place and counts the calls per access key id.
//!
//! Nothing here talks to anything but 127.0.0.1; the server is killed on drop.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::config::Credentials;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use spillway::aws::{sdk_config_builder, ClientOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const REGION: &str = "us-east-1";

/// A running moto server, killed when dropped.
pub struct Moto {
    child: Option<Child>,
    pub addr: SocketAddr,
}

fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SPILLWAY_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    assert!(
        p.exists(),
        "moto_server not found at {} — run `scripts/moto-env` first (it creates .venv with the pinned moto), \
         or set SPILLWAY_MOTO_SERVER to a moto_server binary",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A bare HTTP/1.0 request; the status code, or `None` if nothing answered.
pub async fn http_status(addr: SocketAddr, method: &str, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.ok()?.ok()?;
    String::from_utf8_lossy(&buf).split_whitespace().nth(1)?.parse().ok()
}

impl Moto {
    /// Starts a server and waits (bounded) until `GET /moto-api/` answers.
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Self { child: Some(child), addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_status(moto.addr, "GET", "/moto-api/").await != Some(200) {
            assert!(Instant::now() < deadline, "moto_server did not answer on {} within 30 s", moto.addr);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn reset(&self) {
        assert_eq!(http_status(self.addr, "POST", "/moto-api/reset").await, Some(200));
    }

    /// The environment that points a `spillway` process's standard AWS
    /// chain at this server, with dummy credentials only.
    pub fn binary_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_CONFIG_FILE", "/nonexistent".to_string()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }

    /// Kills the server (connections are refused from then on).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An `SdkConfig` for `endpoint` with dummy credentials: never real AWS.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    let options = ClientOptions { region: Some(REGION.into()), endpoint_url: Some(endpoint.into()) };
    sdk_config_builder(&options)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

/// Creates a launch configuration and an Auto Scaling group.
pub async fn create_group(sdk: &aws_config::SdkConfig, name: &str, desired: i32, min: i32, max: i32) {
    let asg = aws_sdk_autoscaling::Client::new(sdk);
    let lc = format!("{name}-lc");
    asg.create_launch_configuration()
        .launch_configuration_name(&lc)
        .image_id("ami-12c6146b")
        .instance_type("t3.micro")
        .send()
        .await
        .expect("create launch configuration");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(&lc)
        .min_size(min)
        .max_size(max)
        .desired_capacity(desired)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("create auto scaling group");
}

/// The group's desired capacity as moto reports it.
pub async fn desired(sdk: &aws_config::SdkConfig, name: &str) -> i32 {
    let out = aws_sdk_autoscaling::Client::new(sdk)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    out.auto_scaling_groups()[0].desired_capacity().unwrap()
}

/// Creates a hosted zone; returns its id.
pub async fn create_zone(sdk: &aws_config::SdkConfig, name: &str) -> String {
    let out = aws_sdk_route53::Client::new(sdk)
        .create_hosted_zone()
        .name(name)
        .caller_reference(format!("spillway-{}", free_port()))
        .send()
        .await
        .expect("create hosted zone");
    out.hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_string()
}

/// Polls `check` every 100 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the coordination table: `pk`/`sk` strings, on demand.
pub async fn create_table(sdk: &aws_config::SdkConfig, name: &str) {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    let attr = |n: &str| {
        AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    let key = |n: &str, t| KeySchemaElement::builder().attribute_name(n).key_type(t).build().unwrap();
    aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(name)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
}

/// One AWS call seen by the proxy: the caller's access key id, the service
/// (from the signature's scope) and the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub key: String,
    pub service: String,
    pub api: String,
}

impl Call {
    /// Auto Scaling and Route 53 calls that change something.
    pub fn is_write(&self) -> bool {
        matches!(self.api.as_str(), "SetDesiredCapacity" | "ChangeResourceRecordSets" | "UpdateAutoScalingGroup")
    }
}

/// A loopback proxy in front of moto that answers `Throttling` while told to.
#[derive(Clone)]
pub struct ThrottleProxy {
    pub addr: SocketAddr,
    throttle: Arc<AtomicBool>,
    throttle_dynamodb: Arc<AtomicBool>,
    pub throttled: Arc<AtomicU32>,
    pub calls: Arc<Mutex<Vec<Call>>>,
}

const THROTTLING_XML: &str = "<?xml version=\"1.0\"?><ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
<Message>Rate exceeded</Message></Error><RequestId>spillway-test</RequestId></ErrorResponse>";

impl ThrottleProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            throttle: Arc::default(),
            throttle_dynamodb: Arc::default(),
            throttled: Arc::default(),
            calls: Arc::default(),
        };
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (p, client) = (p.clone(), client.clone());
                let svc = hyper::service::service_fn(move |req| p.clone().handle(req, upstream, client.clone()));
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_throttling(&self, on: bool) {
        self.throttle.store(on, Ordering::SeqCst);
    }

    /// Throttles DynamoDB only (its JSON error), leaving the other services alone.
    pub fn set_throttling_dynamodb(&self, on: bool) {
        self.throttle_dynamodb.store(on, Ordering::SeqCst);
    }

    /// The calls made with access key `key`.
    pub fn calls_by(&self, key: &str) -> Vec<Call> {
        self.calls.lock().unwrap().iter().filter(|c| c.key == key).cloned().collect()
    }

    async fn handle(
        self,
        req: Request<Incoming>,
        upstream: SocketAddr,
        client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        if self.throttle.load(Ordering::SeqCst) {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            let resp = Response::builder().status(400).header("content-type", "text/xml");
            return Ok(resp.body(Full::new(Bytes::from_static(THROTTLING_XML.as_bytes()))).unwrap());
        }
        let (mut parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let call = classify_call(&parts, &body);
        let dynamodb = call.service == "dynamodb";
        self.calls.lock().unwrap().push(call);
        if dynamodb && self.throttle_dynamodb.load(Ordering::SeqCst) {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            let resp = Response::builder().status(400).header("content-type", "application/x-amz-json-1.0");
            return Ok(resp.body(Full::new(Bytes::from_static(DYNAMODB_THROTTLING.as_bytes()))).unwrap());
        }
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        parts.uri = format!("http://{upstream}{path}").parse().unwrap();
        let answer = match client.request(Request::from_parts(parts, Full::new(body))).await {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                Response::from_parts(parts, Full::new(body))
            }
            Err(_) => Response::builder().status(502).body(Full::new(Bytes::new())).unwrap(),
        };
        Ok(answer)
    }
}

const DYNAMODB_THROTTLING: &str = "{\"__type\":\"com.amazonaws.dynamodb.v20120810#ThrottlingException\",\
\"message\":\"Rate of requests exceeds the allowed throughput.\"}";

/// Who called what: the key and service from the SigV4 scope
/// (`Credential=KEY/date/region/service/aws4_request`), the operation from
/// `X-Amz-Target` (JSON protocols), `Action=` (query protocol) or the path (Route 53).
fn classify_call(parts: &http::request::Parts, body: &[u8]) -> Call {
    let auth = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let scope = auth.split("Credential=").nth(1).unwrap_or_default().split(',').next().unwrap_or_default();
    let mut scope = scope.split('/');
    let key = scope.next().unwrap_or_default().to_string();
    let service = scope.nth(2).unwrap_or_default().to_string();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let body = String::from_utf8_lossy(body);
    let action = body.split('&').find_map(|kv| kv.strip_prefix("Action="));
    let path = parts.uri.path();
    let api = match (target, action) {
        (Some(t), _) => t.rsplit('.').next().unwrap_or(t).to_string(),
        (None, Some(a)) => a.to_string(),
        _ if path.contains("/rrset") && parts.method == http::Method::POST => "ChangeResourceRecordSets".into(),
        _ if path.contains("/rrset") => "ListResourceRecordSets".into(),
        _ if path.contains("/change/") => "GetChange".into(),
        _ => format!("{} {path}", parts.method),
    };
    Call { key, service, api }
}
