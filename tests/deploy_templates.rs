//! The AWS templates (`deploy/aws/*.yaml`) against the example configs
//! (`config/dc1.toml`, `config/dc2.toml`): every name, set identifier,
//! group, port and path one side states, the other must state too. The
//! templates are parsed as YAML (CloudFormation's `!Ref`, `!Sub` and
//! `!GetAtt` as tagged values) and resolved with their parameters'
//! defaults; the configs go through Spillway's own loader. Then the pinned
//! `cfn-lint` (`scripts/moto-env`) must pass them with nothing to say.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;
use spillway::config::Config;

/// What the coordination engineer's code and these templates agree on.
const TABLE: &str = "spillway-coordination";
const TOPIC: &str = "spillway-events";
const NAMESPACE: &str = "Spillway";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// A parsed template, with parameter values given at deploy time.
struct Template {
    name: &'static str,
    doc: Value,
    given: BTreeMap<String, String>,
}

impl Template {
    fn parse(name: &'static str, text: &str) -> Template {
        let doc = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        Template { name, doc, given: BTreeMap::new() }
    }

    fn load(name: &'static str) -> Template {
        Template::parse(name, &read(&format!("deploy/aws/{name}")))
    }

    fn param(&self, name: &str) -> Option<String> {
        self.given.get(name).cloned().or_else(|| scalar(&self.doc["Parameters"][name]["Default"]))
    }

    /// `(logical id, properties)` of every resource of type `ty`.
    fn resources(&self, ty: &str) -> Vec<(String, &Value)> {
        let Some(all) = self.doc["Resources"].as_mapping() else { return Vec::new() };
        all.iter()
            .filter(|(_, r)| r["Type"].as_str() == Some(ty))
            .map(|(id, r)| (id.as_str().unwrap_or_default().to_string(), &r["Properties"]))
            .collect()
    }

    /// The value as deployed with the defaults: scalars, `!Ref` of a
    /// parameter and `!Sub` over parameters (pseudo parameters stay as
    /// written). `None` for anything else.
    fn resolve(&self, v: &Value) -> Option<String> {
        match v {
            Value::Tagged(t) if t.tag == "!Ref" => self.param(t.value.as_str()?),
            Value::Tagged(t) if t.tag == "!Sub" => self.sub(t.value.as_str()?),
            other => scalar(other),
        }
    }

    fn sub(&self, text: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            let end = rest[at..].find('}')? + at;
            let name = &rest[at + 2..end];
            out.push_str(&rest[..at]);
            match name.starts_with("AWS::") {
                true => out.push_str(&rest[at..=end]),
                false => out.push_str(&self.param(name)?),
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// The logical id a `!Ref` names.
    fn ref_of(v: &Value) -> Option<&str> {
        match v {
            Value::Tagged(t) if t.tag == "!Ref" => t.value.as_str(),
            _ => None,
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One example config: Spillway's typed view and the raw TOML (for
/// sections this build may not know yet, such as `[coordination]`).
struct Site {
    file: &'static str,
    config: Config,
    raw: toml::Value,
}

impl Site {
    fn parse(file: &'static str, text: &str) -> Site {
        let path = root().join("config").join(file);
        let loaded = spillway::config::from_str(text, &path, &root().join("config")).expect("example config is valid");
        Site { file, config: loaded.config, raw: toml::from_str(text).unwrap() }
    }

    fn load(file: &'static str) -> Site {
        Site::parse(file, &read(&format!("config/{file}")))
    }

    fn group(&self) -> &str {
        &self.config.scale.as_ref().expect("[scale]").auto_scaling_group
    }

    fn dns(&self) -> &spillway::config::DnsConfig {
        self.config.dns.as_ref().expect("[dns]")
    }

    /// The cloud pool's one endpoint: the burst load balancer, `host:port`.
    fn cloud_endpoint(&self) -> (String, u16) {
        let pool = self.config.pools.values().find(|p| p.role == spillway::config::PoolRole::Cloud).unwrap();
        let (host, port) = pool.endpoints[0].rsplit_once(':').unwrap();
        (host.to_string(), port.parse().unwrap())
    }

    fn cloud_health_path(&self) -> String {
        let pool = self.config.pools.values().find(|p| p.role == spillway::config::PoolRole::Cloud).unwrap();
        pool.health.as_ref().unwrap().path.clone()
    }
}

/// Collects disagreements instead of stopping at the first.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn same(&mut self, what: &str, template: Option<impl ToString>, config: impl ToString) {
        let (t, c) = (template.map(|t| t.to_string()), config.to_string());
        if t.as_deref() != Some(c.as_str()) {
            self.0.push(format!("{what}: template says {t:?}, config says {c:?}"));
        }
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.0.push(what.into());
        }
    }
}

fn burst_groups(t: &Template, sites: &[Site], p: &mut Problems) {
    let groups: BTreeSet<String> = t
        .resources("AWS::AutoScaling::AutoScalingGroup")
        .iter()
        .filter_map(|(_, r)| t.resolve(&r["AutoScalingGroupName"]))
        .collect();
    let wanted: BTreeSet<String> = sites.iter().map(|s| s.group().to_string()).collect();
    p.check(groups == wanted, format!("{}: groups {groups:?}, configs name {wanted:?}", t.name));
    let lbs = t.resources("AWS::ElasticLoadBalancingV2::LoadBalancer");
    let lb = lbs.first().and_then(|(_, r)| t.resolve(&r["Name"])).unwrap_or_default();
    let https: Vec<_> = t.resources("AWS::ElasticLoadBalancingV2::Listener");
    let port = https.first().and_then(|(_, r)| t.resolve(&r["Port"]));
    for s in sites {
        let (host, endpoint_port) = s.cloud_endpoint();
        p.check(
            host.starts_with(&format!("{lb}-")) && host.ends_with(".elb.amazonaws.com"),
            format!("{}: cloud endpoint {host} is not load balancer {lb:?}'s name", s.file),
        );
        p.same(&format!("{}: load balancer port", s.file), port.clone(), endpoint_port);
        let scale = s.config.scale.as_ref().unwrap();
        p.same(&format!("{}: MinSize", s.file), t.param("MinSize"), scale.min);
        p.same(&format!("{}: MaxSize", s.file), t.param("MaxSize"), scale.max);
        p.same(&format!("{}: WarmupSeconds", s.file), t.param("WarmupSeconds"), scale.warmup.as_secs());
        p.same(&format!("{}: target group health path", s.file), t.param("HealthCheckPath"), s.cloud_health_path());
    }
}

/// The Route 53 health check a record's `HealthCheckId` names.
fn health_check<'a>(t: &'a Template, record: &Value) -> Option<&'a Value> {
    let id = Template::ref_of(&record["HealthCheckId"])?;
    let checks = t.resources("AWS::Route53::HealthCheck");
    checks.into_iter().find(|(cid, _)| cid == id).map(|(_, c)| &c["HealthCheckConfig"])
}

fn weighted_records(t: &Template, sites: &[Site], p: &mut Problems) {
    let records = t.resources("AWS::Route53::RecordSet");
    let by_id: BTreeMap<String, &Value> =
        records.iter().filter_map(|(_, r)| Some((t.resolve(&r["SetIdentifier"])?, *r))).collect();
    let wanted: BTreeSet<String> = sites
        .iter()
        .flat_map(|s| [s.dns().onprem.set_identifier.clone(), s.dns().aws.set_identifier.clone()])
        .collect();
    p.check(
        by_id.keys().cloned().collect::<BTreeSet<_>>() == wanted,
        format!("set identifiers {:?} vs {wanted:?}", by_id.keys()),
    );
    for s in sites {
        let dns = s.dns();
        for (role, target) in [("onprem", &dns.onprem), ("aws", &dns.aws)] {
            let what = format!("{} [dns] {role} ({})", s.file, target.set_identifier);
            let Some(r) = by_id.get(&target.set_identifier) else { continue };
            p.same(&format!("{what}: name"), t.resolve(&r["Name"]), &dns.record);
            p.same(&format!("{what}: type"), t.resolve(&r["Type"]), &dns.record_type);
            p.same(&format!("{what}: TTL"), t.resolve(&r["TTL"]), dns.ttl);
            let value = r["ResourceRecords"].as_sequence().and_then(|v| v.first()).and_then(|v| t.resolve(v));
            p.same(&format!("{what}: value"), value, &target.value);
            match health_check(t, r) {
                None => p.0.push(format!("{what}: no health check")),
                Some(hc) if role == "onprem" => edge_check(t, hc, s, &what, p),
                Some(hc) => aws_check(t, hc, s, &what, p),
            }
        }
    }
}

/// An edge's health check asks a listener's readiness path on its port,
/// over TLS if (and only if) that listener has TLS, and the edge's name.
fn edge_check(t: &Template, hc: &Value, s: &Site, what: &str, p: &mut Problems) {
    let tls = t.resolve(&hc["Type"]).as_deref() == Some("HTTPS");
    let port: Option<u16> = t.resolve(&hc["Port"]).and_then(|v| v.parse().ok());
    let listener = s.config.listeners.iter().find(|l| Some(l.listen.port()) == port && l.tls.is_some() == tls);
    let Some(listener) = listener else {
        return p.0.push(format!("{what}: health check on port {port:?} (TLS {tls}): no such listener"));
    };
    p.same(
        &format!("{what}: readiness path"),
        t.resolve(&hc["ResourcePath"]),
        listener.readiness_path.as_deref().unwrap_or("(disabled)"),
    );
    let fqdn = t.resolve(&hc["FullyQualifiedDomainName"]).map(|f| format!("{f}."));
    p.same(&format!("{what}: health check name"), fqdn, &s.dns().onprem.value);
}

/// The AWS records' health check asks the load balancer on its port.
fn aws_check(t: &Template, hc: &Value, s: &Site, what: &str, p: &mut Problems) {
    let (host, port) = s.cloud_endpoint();
    p.same(&format!("{what}: health check name"), t.resolve(&hc["FullyQualifiedDomainName"]), host);
    p.same(&format!("{what}: health check port"), t.resolve(&hc["Port"]), port);
    p.same(&format!("{what}: health check path"), t.resolve(&hc["ResourcePath"]), s.cloud_health_path());
}

fn coordination(t: &Template, sites: &[Site], p: &mut Problems) {
    let tables = t.resources("AWS::DynamoDB::Table");
    let table = tables.first().map(|(_, r)| *r).unwrap_or(&Value::Null);
    p.same("table name", t.resolve(&table["TableName"]), TABLE);
    p.same("billing", t.resolve(&table["BillingMode"]), "PAY_PER_REQUEST");
    let keys: Vec<_> = table["KeySchema"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|k| (scalar(&k["AttributeName"]), scalar(&k["KeyType"])))
        .collect();
    p.check(
        keys == [(Some("pk".into()), Some("HASH".into())), (Some("sk".into()), Some("RANGE".into()))],
        format!("key schema {keys:?}"),
    );
    let types: Vec<_> = table["AttributeDefinitions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|a| scalar(&a["AttributeType"]))
        .collect();
    p.check(types == [Some("S".to_string()), Some("S".to_string())], format!("attribute types {types:?}"));
    p.same("TTL attribute", t.resolve(&table["TimeToLiveSpecification"]["AttributeName"]), "expires_at");
    let topics = t.resources("AWS::SNS::Topic");
    let Some((topic_id, topic)) = topics.first() else { return p.0.push("no SNS topic".into()) };
    p.same("topic name", t.resolve(&topic["TopicName"]), TOPIC);
    for s in sites {
        let site = &s.config.runtime.site;
        if let Some(table) = s.raw.get("coordination").and_then(|c| c.get("table")).and_then(|v| v.as_str()) {
            p.same(&format!("{}: [coordination] table", s.file), Some(TABLE), table);
        }
        if let Some(arn) = s.raw.get("notify").and_then(|c| c.get("sns_topic_arn")).and_then(|v| v.as_str()) {
            p.check(
                arn.ends_with(&format!(":{TOPIC}")),
                format!("{}: sns_topic_arn {arn} is not topic {TOPIC}", s.file),
            );
        }
        for (metric, threshold, operator) in
            [("SpillShare", "0.5", "GreaterThanThreshold"), ("DisasterRecovery", "1", "GreaterThanOrEqualToThreshold")]
        {
            alarm(t, topic_id, site, metric, (threshold, operator), p);
        }
    }
}

/// Exactly one alarm on `metric` for `site`, as agreed, notifying the topic.
fn alarm(t: &Template, topic: &str, site: &str, metric: &str, (threshold, operator): (&str, &str), p: &mut Problems) {
    let all = t.resources("AWS::CloudWatch::Alarm");
    let of_site: Vec<_> = all
        .iter()
        .filter(|(_, a)| t.resolve(&a["MetricName"]).as_deref() == Some(metric))
        .filter(|(_, a)| {
            let dims = a["Dimensions"].as_sequence().cloned().unwrap_or_default();
            dims.iter().any(|d| {
                t.resolve(&d["Name"]).as_deref() == Some("site") && t.resolve(&d["Value"]).as_deref() == Some(site)
            })
        })
        .collect();
    let what = format!("{metric} alarm of site {site}");
    let [(_, a)] = of_site.as_slice() else { return p.0.push(format!("{what}: {} found", of_site.len())) };
    p.same(&format!("{what}: namespace"), t.resolve(&a["Namespace"]), NAMESPACE);
    p.same(&format!("{what}: threshold"), t.resolve(&a["Threshold"]), threshold);
    p.same(&format!("{what}: operator"), t.resolve(&a["ComparisonOperator"]), operator);
    if metric == "SpillShare" {
        let secs = |k: &str| t.resolve(&a[k]).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        p.check(
            secs("Period") * secs("EvaluationPeriods") == 300 && secs("DatapointsToAlarm") == secs("EvaluationPeriods"),
            format!("{what}: not five minutes running"),
        );
    }
    let actions = a["AlarmActions"].as_sequence().cloned().unwrap_or_default();
    p.check(actions.iter().any(|v| Template::ref_of(v) == Some(topic)), format!("{what}: does not notify {topic}"));
}

/// The calls Spillway makes, and nothing else.
const CALLS: [&str; 12] = [
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:SetDesiredCapacity",
    "route53:ChangeResourceRecordSets",
    "route53:ListResourceRecordSets",
    "route53:GetChange",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:DeleteItem",
    "sns:Publish",
    "cloudwatch:PutMetricData",
];

/// The policy's parameters name what the configs and the coordination
/// template name.
fn iam_names(t: &Template, coordination: &Template, sites: &[Site], p: &mut Problems) {
    for (s, param) in sites.iter().zip(["Dc1AutoScalingGroupName", "Dc2AutoScalingGroupName"]) {
        p.same(&format!("{}: {param}", s.file), t.param(param), s.group());
        let record = s.dns().record.trim_end_matches('.').to_ascii_lowercase();
        p.same(&format!("{}: RecordName", s.file), t.param("RecordName"), record);
        p.same(&format!("{}: RecordType", s.file), t.param("RecordType"), &s.dns().record_type);
    }
    p.same("TableName", t.param("TableName"), coordination.param("TableName").unwrap_or_default());
    p.same("TopicName", t.param("TopicName"), coordination.param("TopicName").unwrap_or_default());
    p.same("MetricNamespace", t.param("MetricNamespace"), NAMESPACE);
}

/// The policy allows exactly the calls Spillway makes, the capacity of
/// both groups included.
fn iam_grants(t: &Template, sites: &[Site], p: &mut Problems) {
    let policies = t.resources("AWS::IAM::ManagedPolicy");
    let statements: Vec<&Value> = policies
        .iter()
        .flat_map(|(_, r)| r["PolicyDocument"]["Statement"].as_sequence().into_iter().flatten())
        .collect();
    let actions_of = |s: &Value| s["Action"].as_sequence().into_iter().flatten().filter_map(scalar).collect::<Vec<_>>();
    let actions: BTreeSet<String> = statements.iter().flat_map(|s| actions_of(s)).collect();
    let wanted: BTreeSet<String> = CALLS.map(String::from).into();
    p.check(actions == wanted, format!("actions {actions:?}, Spillway calls {wanted:?}"));
    let set: Vec<String> = statements
        .iter()
        .filter(|s| actions_of(s).iter().any(|a| a == "autoscaling:SetDesiredCapacity"))
        .flat_map(|s| s["Resource"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|r| t.resolve(&r))
        .collect();
    for s in sites {
        let granted = set.iter().any(|r| r.ends_with(&format!("/{}", s.group())));
        p.check(granted, format!("SetDesiredCapacity not granted on {}", s.group()));
    }
}

fn templates() -> [Template; 4] {
    ["burst-asg.yaml", "route53-weighted.yaml", "spillway-coordination.yaml", "spillway-controller-iam.yaml"]
        .map(Template::load)
}

/// Every disagreement between the templates and the sites' configs.
fn cross_check(mut t: [Template; 4], sites: &[Site]) -> Vec<String> {
    let mut p = Problems::default();
    // Deployed as the runbook says: AwsTarget is the load balancer's name.
    t[1].given.insert("AwsTarget".into(), sites[0].cloud_endpoint().0);
    burst_groups(&t[0], sites, &mut p);
    weighted_records(&t[1], sites, &mut p);
    coordination(&t[2], sites, &mut p);
    iam_names(&t[3], &t[2], sites, &mut p);
    iam_grants(&t[3], sites, &mut p);
    p.0
}

#[test]
fn templates_agree_with_the_example_configs() {
    let sites = [Site::load("dc1.toml"), Site::load("dc2.toml")];
    let problems = cross_check(templates(), &sites);
    assert!(problems.is_empty(), "deploy/aws disagrees with config/dc1.toml and dc2.toml:\n{}", problems.join("\n"));
}

#[test]
fn a_disagreement_is_found() {
    let dc2 = read("config/dc2.toml");
    for (from, to, expect) in [
        ("set_identifier = \"aws-dc2\"", "set_identifier = \"aws\"", "set identifiers"),
        ("\"sportchat-burst-dc2\"", "\"sportchat-burst\"", "groups"),
        ("listen = \"0.0.0.0:8443\"", "listen = \"0.0.0.0:443\"", "no such listener"),
        ("name = \"public-https\"", "name = \"public-https\"\nreadiness_path = \"/healthz\"", "readiness path"),
        ("site = \"dc2\"", "site = \"dc3\"", "alarm of site dc3"),
    ] {
        assert!(dc2.contains(from), "{from}");
        let sites = [Site::load("dc1.toml"), Site::parse("dc2.toml", &dc2.replace(from, to))];
        let problems = cross_check(templates(), &sites);
        assert!(problems.iter().any(|p| p.contains(expect)), "{to}: {problems:?}");
    }
    let mut t = templates();
    t[3] = Template::parse(
        "spillway-controller-iam.yaml",
        &read("deploy/aws/spillway-controller-iam.yaml").replace("- sns:Publish", "- sns:*"),
    );
    let sites = [Site::load("dc1.toml"), Site::load("dc2.toml")];
    assert!(cross_check(t, &sites).iter().any(|p| p.contains("actions")), "a wider grant is found");
}

fn cfn_lint() -> PathBuf {
    if let Some(p) = std::env::var_os("SPILLWAY_CFN_LINT") {
        return PathBuf::from(p);
    }
    let p = root().join(".venv/bin/cfn-lint");
    assert!(
        p.exists(),
        "cfn-lint not found at {} — run `scripts/moto-env` (it installs the pinned cfn-lint), or set SPILLWAY_CFN_LINT",
        p.display()
    );
    p
}

#[test]
fn cfn_lint_passes_every_template_without_a_word() {
    let dir = root().join("deploy/aws");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    let out = std::process::Command::new(cfn_lint())
        .args(&files)
        .current_dir(Path::new(&root()))
        .output()
        .expect("run cfn-lint");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "cfn-lint ({}):\n{said}", out.status);
}
