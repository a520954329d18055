//! `compose.yaml` checked against the real binaries, without Docker.
//!
//! Statically: every Sagaflow service's command, flags and environment variables are ones the
//! binary accepts (read from its `--help`), every address it listens on is reachable from
//! other containers, every `host:port` one piece gives another (participant URLs, database
//! URLs, health checks, Prometheus targets, the collector's exporter, Grafana's data sources)
//! names a service and a port that service listens on, and the Grafana dashboard parses and
//! queries through a provisioned data source. `docker compose config` runs too where a Docker
//! engine answers.
//!
//! Then the Sagaflow services run as compose would start them: the same binaries, arguments
//! and variables, with container addresses mapped to free loopback ports, container paths to
//! the repository's files and each database to a fresh one on `DATABASE_URL`. Their health
//! checks must pass, orders must go through both replicas, and every metric and label the
//! dashboard queries must be in what the processes serve on `/metrics`.
//!
//! The example Kubernetes manifests (`deploy/kubernetes`) get the same static checks.

mod common;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sagaflow_e2e::cluster::{FreshDatabase, fresh_database, repo_root};
use sagaflow_e2e::process::{Process, binary, free_port};
use sagaflow_proto::participants::v1::chaos_client::ChaosClient;
use sagaflow_proto::participants::v1::{Fault, SetFaultRequest};
use sagaflow_proto::sagaflow::v1::order_service_client::OrderServiceClient;
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yaml_serde::Value;

/// Ports the third-party images listen on without configuration, from their documentation
/// (the collector's are read from its configuration file instead).
const IMAGE_PORTS: &[(&str, &[u16])] = &[
    ("postgres:", &[5432]),
    ("jaegertracing/jaeger:", &[4317, 4318, 16686]),
    ("prom/prometheus:", &[9090]),
    ("grafana/grafana:", &[3000]),
];

/// Addresses inside a container that mean "this container".
const LOOPBACK: &[&str] = &["127.0.0.1", "localhost"];
/// Listen hosts that other containers can reach.
const ANY_HOST: &[&str] = &["0.0.0.0", "[::]"];

// ---------------------------------------------------------------------------------------
// Reading compose.yaml

/// One service of compose.yaml, as far as these checks read it (merge keys and `${VAR:-x}`
/// interpolation applied, as `docker compose` does).
#[derive(Debug, Default, Clone)]
struct Service {
    name: String,
    image: String,
    /// Built from this repository (`build:`): runs the Sagaflow binaries.
    built: bool,
    build_context: Option<String>,
    dockerfile: Option<String>,
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    /// (host port, container port) of each published port.
    ports: Vec<(u16, u16)>,
    /// The health check's command line (CMD form; CMD-SHELL split on spaces).
    healthcheck: Option<Vec<String>>,
    /// Dependency and its condition.
    depends_on: BTreeMap<String, String>,
    /// (source, target in the container) of each mount; sources of bind mounts start with `./`.
    volumes: Vec<(String, String)>,
}

#[derive(Debug)]
struct Compose {
    services: BTreeMap<String, Service>,
    named_volumes: BTreeSet<String>,
}

fn load_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut value: Value =
        yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    resolve_merges(&mut value);
    value
}

/// Apply `<<` merge keys bottom-up, so a merged mapping that itself merges another (a
/// service built on `x-orchestrator`, built on `x-sagaflow-image`) is complete first.
fn resolve_merges(value: &mut Value) {
    match value {
        Value::Mapping(mapping) => {
            for child in mapping.values_mut() {
                resolve_merges(child);
            }
            if let Some(base) = mapping.remove("<<") {
                let bases = match base {
                    Value::Sequence(list) => list,
                    other => vec![other],
                };
                for base in bases {
                    let Value::Mapping(base) = base else { panic!("a merge key must name a mapping") };
                    for (key, value) in base {
                        mapping.entry(key).or_insert(value);
                    }
                }
            }
        }
        Value::Sequence(list) => list.iter_mut().for_each(resolve_merges),
        _ => {}
    }
}

/// `${NAME:-default}`, `${NAME-default}` and `$$` as compose reads them, taking the default:
/// the file must work with nothing in the environment, so every variable needs one.
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').unwrap_or_else(|| panic!("unclosed ${{ in {text:?}"));
            let inner = &body[..end];
            let default =
                inner.split_once(":-").or_else(|| inner.split_once('-')).map(|(_, d)| d).unwrap_or_else(|| {
                    panic!("${{{inner}}} in {text:?} has no default; `docker compose up` needs one")
                });
            out.push_str(default);
            rest = &body[end + 1..];
        } else {
            panic!("a bare $ in {text:?}: write $$ or ${{NAME:-default}}");
        }
    }
    out.push_str(rest);
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => interpolate(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

/// A command as compose takes it: a list, or a string split on spaces.
fn argv(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(list) => list.iter().map(scalar).collect(),
        Value::Null => Vec::new(),
        other => scalar(other).split_whitespace().map(str::to_owned).collect(),
    }
}

fn port_number(text: &str) -> u16 {
    let text = text.trim_end_matches("/tcp");
    text.parse().unwrap_or_else(|_| panic!("{text:?} is not a port number"))
}

fn load_compose() -> Compose {
    let root = load_yaml(&repo_root().join("compose.yaml"));
    let mut services = BTreeMap::new();
    let Some(listed) = root["services"].as_mapping() else { panic!("compose.yaml has no services") };
    for (name, spec) in listed {
        let name = scalar(name);
        let mut service = Service { name: name.clone(), image: scalar(&spec["image"]), ..Service::default() };
        if !spec["build"].is_null() {
            service.built = true;
            service.build_context = Some(scalar(&spec["build"]["context"]));
            service.dockerfile = Some(scalar(&spec["build"]["dockerfile"]));
        }
        service.command = argv(&spec["command"]);
        match &spec["environment"] {
            Value::Mapping(env) => {
                for (k, v) in env {
                    service.environment.insert(scalar(k), scalar(v));
                }
            }
            Value::Sequence(list) => {
                for entry in list {
                    let entry = scalar(entry);
                    let (k, v) = entry.split_once('=').unwrap_or((&entry, ""));
                    service.environment.insert(k.to_owned(), v.to_owned());
                }
            }
            Value::Null => {}
            other => panic!("{name}: environment must be a mapping or a list, found {other:?}"),
        }
        for port in spec["ports"].as_sequence().into_iter().flatten() {
            let text = scalar(port);
            let parts: Vec<&str> = text.split(':').collect();
            let container = port_number(parts[parts.len() - 1]);
            let host = if parts.len() >= 2 { port_number(parts[parts.len() - 2]) } else { container };
            service.ports.push((host, container));
        }
        if !spec["healthcheck"].is_null() {
            let test = argv(&spec["healthcheck"]["test"]);
            let command = match test.first().map(String::as_str) {
                Some("CMD") => test[1..].to_vec(),
                Some("CMD-SHELL") => test[1..].join(" ").split_whitespace().map(str::to_owned).collect(),
                _ => test,
            };
            service.healthcheck = Some(command);
        }
        match &spec["depends_on"] {
            Value::Mapping(deps) => {
                for (dep, how) in deps {
                    service.depends_on.insert(scalar(dep), scalar(&how["condition"]));
                }
            }
            Value::Sequence(deps) => {
                for dep in deps {
                    service.depends_on.insert(scalar(dep), "service_started".to_owned());
                }
            }
            _ => {}
        }
        for volume in spec["volumes"].as_sequence().into_iter().flatten() {
            let text = scalar(volume);
            let mut parts = text.split(':');
            let source = parts.next().unwrap_or_default().to_owned();
            let target = parts.next().unwrap_or_else(|| panic!("{name}: volume {text:?} has no target")).to_owned();
            service.volumes.push((source, target));
        }
        services.insert(name, service);
    }
    let named_volumes = root["volumes"].as_mapping().into_iter().flatten().map(|(k, _)| scalar(k)).collect();
    Compose { services, named_volumes }
}

impl Compose {
    /// The services that run this repository's image.
    fn ours(&self) -> impl Iterator<Item = &Service> {
        self.services.values().filter(|s| s.built)
    }

    fn service(&self, name: &str) -> &Service {
        self.services.get(name).unwrap_or_else(|| panic!("compose.yaml has no service {name:?}"))
    }

    /// The repository file behind a container path of `service`, through its bind mounts.
    fn host_path(&self, service: &Service, container_path: &str) -> Option<PathBuf> {
        service.volumes.iter().filter(|(source, _)| source.starts_with("./")).find_map(|(source, target)| {
            let rest = container_path.strip_prefix(target.as_str())?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            let source = repo_root().join(source.trim_start_matches("./"));
            let rest = rest.trim_start_matches('/');
            Some(if rest.is_empty() { source } else { source.join(rest) })
        })
    }

    /// The ports `service` listens on (for ours: what its settings say).
    fn listen_ports(&self, service: &Service) -> BTreeSet<u16> {
        if service.built {
            return listen_settings(service).into_iter().map(|(_, addr)| addr.port()).collect();
        }
        if service.image.starts_with("otel/opentelemetry-collector") {
            return collector_ports(&self.collector_config(service));
        }
        IMAGE_PORTS
            .iter()
            .find(|(prefix, _)| service.image.starts_with(prefix))
            .map(|(_, ports)| ports.iter().copied().collect())
            .unwrap_or_else(|| panic!("{}: no known ports for image {:?}", service.name, service.image))
    }

    fn collector_config(&self, collector: &Service) -> Value {
        let path = collector
            .command
            .iter()
            .find_map(|a| a.strip_prefix("--config="))
            .unwrap_or("/etc/otelcol-contrib/config.yaml");
        let file = self.host_path(collector, path).unwrap_or_else(|| panic!("the collector's {path} is not mounted"));
        load_yaml(&file)
    }
}

/// The listen settings of one of our services (variables and flags whose name ends in
/// `LISTEN`/`listen`), with the address each gives.
fn listen_settings(service: &Service) -> Vec<(String, SocketAddr)> {
    let mut found = Vec::new();
    for (name, value) in &service.environment {
        if name.ends_with("_LISTEN") {
            found.push((name.clone(), value.clone()));
        }
    }
    let mut args = service.command.iter();
    while let Some(arg) = args.next() {
        if let Some(flag) = arg.strip_prefix("--").filter(|f| f.ends_with("listen")) {
            let (flag, value) = match flag.split_once('=') {
                Some((f, v)) => (f.to_owned(), v.to_owned()),
                None => (flag.to_owned(), args.next().cloned().unwrap_or_default()),
            };
            found.push((format!("--{flag}"), value));
        }
    }
    found
        .into_iter()
        .map(|(name, value)| {
            let addr = value.parse().unwrap_or_else(|_| panic!("{}: {name}={value:?} is not HOST:PORT", service.name));
            (name, addr)
        })
        .collect()
}

/// Every string in a YAML document, for address scanning.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(list) => list.iter().for_each(|v| strings(v, out)),
        Value::Mapping(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The ports the collector's configuration listens on (receivers, extensions) and serves
/// its own metrics on.
fn collector_ports(config: &Value) -> BTreeSet<u16> {
    let mut texts = Vec::new();
    strings(&config["receivers"], &mut texts);
    strings(&config["extensions"], &mut texts);
    let mut ports: BTreeSet<u16> = texts.iter().flat_map(|t| endpoints(t)).map(|(_, port)| port).collect();
    for reader in config["service"]["telemetry"]["metrics"]["readers"].as_sequence().into_iter().flatten() {
        if let Some(port) = reader["pull"]["exporter"]["prometheus"]["port"].as_u64() {
            ports.insert(u16::try_from(port).expect("a port"));
        }
    }
    ports
}

/// Every `host:port` in a text (a URL, a `NAME=URL,...` list, a target), with its host.
fn endpoints(text: &str) -> Vec<(String, u16)> {
    let mut found = Vec::new();
    map_endpoints(text, |host, port| {
        found.push((host.to_owned(), port));
        None
    });
    found
}

/// Rewrite every `host:port` of `text` for which `rewrite` answers.
fn map_endpoints(text: &str, mut rewrite: impl FnMut(&str, u16) -> Option<String>) -> String {
    let is_host = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if !is_host(chars[i]) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_host(chars[i]) {
            i += 1;
        }
        let host: String = chars[start..i].iter().collect();
        let digits_start = i + 1;
        let mut end = digits_start;
        while end < chars.len() && chars[end].is_ascii_digit() {
            end += 1;
        }
        let port = (i < chars.len() && chars[i] == ':' && end > digits_start)
            .then(|| chars[digits_start..end].iter().collect::<String>().parse::<u16>().ok())
            .flatten();
        match port.and_then(|port| rewrite(&host, port)) {
            Some(replacement) => {
                out.push_str(&replacement);
                i = end;
            }
            None => out.push_str(&host),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// What the binaries accept

/// What one (sub)command accepts, read from its `--help`.
#[derive(Debug)]
struct Accepts {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
    help: String,
}

fn help(binary_name: &str, args: &[&str]) -> String {
    let output = Command::new(binary(binary_name).expect("binary"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("running {binary_name} {args:?} --help: {e}"));
    assert!(
        output.status.success(),
        "{binary_name} {args:?} --help failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn accepts(binary_name: &str, args: &[&str]) -> Accepts {
    let help = help(binary_name, args);
    let mut flags = BTreeSet::new();
    for line in help.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        // The flag part ends where the description starts (two spaces), if on this line.
        let spec = line.split("  ").next().unwrap_or_default();
        for word in spec.split([' ', ',']) {
            if let Some(name) = word.strip_prefix("--") {
                let name: String = name.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
                flags.insert(name);
            }
        }
    }
    let mut env = BTreeSet::new();
    for (at, _) in help.match_indices("[env: ") {
        let name: String = help[at + 6..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        env.insert(name);
    }
    Accepts { flags, env, help }
}

/// The values a help text's positional arguments take: its `Arguments:` section, in clap's
/// short form (`[possible values: a, b]`) or long form (a `Possible values:` list of `- a`).
fn possible_values(help: &str) -> Vec<String> {
    let section = help.split_once("Arguments:").map(|(_, rest)| rest).unwrap_or_default();
    let section = section.split_once("Options:").map(|(args, _)| args).unwrap_or(section);
    let mut values: Vec<String> = section
        .match_indices("[possible values: ")
        .filter_map(|(at, _)| section[at..].split_once(": ").and_then(|(_, rest)| rest.split_once(']')))
        .flat_map(|(list, _)| list.split(", ").map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let mut in_list = false;
    for line in section.lines().map(str::trim) {
        if line == "Possible values:" {
            in_list = true;
        } else if let Some(item) = line.strip_prefix("- ").filter(|_| in_list) {
            values.push(item.split([':', ' ']).next().unwrap_or_default().to_owned());
        } else {
            in_list = false;
        }
    }
    values
}

/// The subcommand words of a command line (`sagaflow serve` → `[serve]`), and what that
/// subcommand accepts.
fn accepts_for(command: &[String]) -> (Vec<String>, Accepts) {
    let binary_name = command[0].as_str();
    match binary_name {
        "sagaflow" => {
            let sub = command.get(1).cloned().unwrap_or_default();
            let top = help("sagaflow", &[]);
            assert!(
                top.lines().any(|l| l.split_whitespace().next() == Some(sub.as_str())),
                "`sagaflow {sub}` is not a command of sagaflow:\n{top}"
            );
            (vec![sub.clone()], accepts("sagaflow", &[&sub]))
        }
        "sagaflow-participant" => (Vec::new(), accepts("sagaflow-participant", &[])),
        other => panic!("{other} is not a binary of this repository"),
    }
}

/// Check a command line against what its binary accepts; returns problems.
fn check_command(origin: &str, command: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let (subcommand, accepted) = accepts_for(command);
    let rest = &command[1 + subcommand.len()..];
    let mut positional = Vec::new();
    for arg in rest {
        if let Some(flag) = arg.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap_or_default();
            if !accepted.flags.contains(flag) {
                problems.push(format!("{origin}: `{}` has no flag --{flag}", command[..=subcommand.len()].join(" ")));
            }
        } else if !arg.starts_with('-') {
            positional.push(arg.clone());
        }
    }
    // The participant's one positional is which participant it serves; the values of flags
    // are checked by running compose's commands (`compose_services_run_as_declared`).
    if command[0] == "sagaflow-participant" {
        let values = possible_values(&accepted.help);
        match positional.first() {
            Some(which) if values.contains(which) => {}
            other => problems.push(format!("{origin}: sagaflow-participant serves one of {values:?}, not {other:?}")),
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------
// The static checks

#[test]
fn compose_file_matches_what_the_binaries_accept() {
    let compose = load_compose();
    let mut problems: Vec<String> = Vec::new();

    let ours: Vec<&Service> = compose.ours().collect();
    let servers = ours.iter().filter(|s| s.command.get(1).map(String::as_str) == Some("serve")).count();
    assert!(servers >= 2, "compose.yaml should run at least two `sagaflow serve` replicas, found {servers}");
    for participant in ["payment", "inventory", "fraud", "fulfillment"] {
        assert!(
            ours.iter().any(|s| s.command.first().map(String::as_str) == Some("sagaflow-participant")
                && s.command.get(1).map(String::as_str) == Some(participant)),
            "compose.yaml runs no `sagaflow-participant {participant}`"
        );
    }

    for service in &ours {
        let origin = format!("service {}", service.name);
        assert!(!service.command.is_empty(), "{origin} has no command");
        problems.extend(check_command(&origin, &service.command));
        problems.extend(check_environment(&origin, &service.command, service.environment.keys()));
        problems.extend(check_listening(&origin, service));
        match &service.healthcheck {
            Some(check) => {
                problems.extend(check_command(&format!("{origin} health check"), check));
                // Health is a gRPC service: the check must ask the gRPC listener.
                let grpc = service.environment.get("SAGAFLOW_LISTEN").and_then(|a| a.parse::<SocketAddr>().ok());
                for (host, port) in check.iter().flat_map(|a| endpoints(a)) {
                    if LOOPBACK.contains(&host.as_str()) && Some(port) != grpc.map(|a| a.port()) {
                        problems.push(format!(
                            "{origin}: the health check asks {host}:{port}, but gRPC is served on {grpc:?}"
                        ));
                    }
                }
            }
            None => problems.push(format!("{origin} has no health check")),
        }
        match (&service.build_context, &service.dockerfile) {
            (Some(context), Some(dockerfile)) => {
                let dockerfile = repo_root().join(context).join(dockerfile);
                let text = std::fs::read_to_string(&dockerfile).unwrap_or_default();
                for binary_name in
                    service.command.first().into_iter().chain(service.healthcheck.iter().flatten().take(1))
                {
                    if !text.contains(&format!("target/release/{binary_name}")) {
                        problems.push(format!("{origin}: {} does not install {binary_name}", dockerfile.display()));
                    }
                }
            }
            _ => problems.push(format!("{origin}: build needs a context and a dockerfile")),
        }
        // Container paths in the settings must exist: mounted from the repository.
        for (name, value) in &service.environment {
            if value.starts_with('/') {
                match compose.host_path(service, value) {
                    Some(path) if path.exists() => {}
                    Some(path) => problems
                        .push(format!("{origin}: {name}={value} is mounted from {}, which is missing", path.display())),
                    None => problems.push(format!("{origin}: {name}={value} is not a mounted path")),
                }
            }
        }
    }

    // Published ports: each must be a port the service listens on.
    for service in compose.services.values() {
        let listening = compose.listen_ports(service);
        for (host, container) in &service.ports {
            if !listening.contains(container) {
                problems.push(format!(
                    "service {} publishes {host}:{container}, but listens on {listening:?}",
                    service.name
                ));
            }
        }
    }

    // Every address one service gives another names a service and a port it listens on;
    // a service depends on every service it is told to call.
    for service in compose.services.values() {
        let mut texts: Vec<String> = service.environment.values().cloned().collect();
        texts.extend(service.command.iter().cloned());
        for text in &texts {
            for (host, port) in endpoints(text) {
                if ANY_HOST.contains(&host.as_str()) {
                    continue;
                }
                problems.extend(check_reference(&compose, &format!("service {}", service.name), &host, port));
                if compose.services.contains_key(&host) && !service.depends_on.contains_key(&host) {
                    problems.push(format!("service {} calls {host} but does not depend on it", service.name));
                }
            }
        }
        for (dependency, condition) in &service.depends_on {
            match compose.services.get(dependency) {
                None => {
                    problems.push(format!("service {} depends on {dependency:?}, which is no service", service.name))
                }
                Some(d) if condition == "service_healthy" && d.healthcheck.is_none() => problems.push(format!(
                    "service {} waits for {dependency} to be healthy, but it has no health check",
                    service.name
                )),
                Some(_) => {}
            }
        }
        for (source, target) in &service.volumes {
            if source.starts_with("./") {
                if !repo_root().join(source.trim_start_matches("./")).exists() {
                    problems.push(format!("service {} mounts {source} (at {target}), which is missing", service.name));
                }
            } else if !compose.named_volumes.contains(source) {
                problems.push(format!("service {} mounts volume {source:?}, which is not declared", service.name));
            }
        }
    }

    problems.extend(check_databases(&compose));
    problems.extend(check_prometheus(&compose));
    problems.extend(check_collector(&compose));
    problems.extend(check_grafana(&compose).1);

    assert!(problems.is_empty(), "compose.yaml does not match the binaries:\n  {}", problems.join("\n  "));

    docker_compose_config();
}

/// The example Kubernetes manifests (deploy/kubernetes) run the same binaries: their
/// commands, variables, ports and probes, and the addresses they give each other, are checked
/// the same way as compose.yaml's.
#[test]
fn kubernetes_examples_match_what_the_binaries_accept() {
    let dir = repo_root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml") && !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    let mut documents = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let mut current = String::new();
        for line in text.lines().chain(std::iter::once("---")) {
            if line.trim_end() == "---" {
                let mut value: Value = yaml_serde::from_str(&current)
                    .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
                resolve_merges(&mut value);
                if !value.is_null() {
                    documents.push(value);
                }
                current.clear();
            } else {
                current.push_str(line);
                current.push('\n');
            }
        }
    }
    let dockerfile = std::fs::read_to_string(repo_root().join("deploy/Dockerfile")).expect("deploy/Dockerfile");
    let image_paths: Vec<String> = dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY "))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_end_matches('/').to_owned())
        .collect();

    /// One container of ours: its settings, its named ports, and its pod's labels.
    struct Workload {
        service: Service,
        labels: BTreeMap<String, String>,
        ports: BTreeMap<String, u16>,
    }
    let mut problems = Vec::new();
    let mut workloads = Vec::new();
    for doc in documents.iter().filter(|d| scalar(&d["kind"]) == "Deployment") {
        let name = scalar(&doc["metadata"]["name"]);
        let pod = &doc["spec"]["template"];
        let labels: BTreeMap<String, String> =
            pod["metadata"]["labels"].as_mapping().into_iter().flatten().map(|(k, v)| (scalar(k), scalar(v))).collect();
        for container in pod["spec"]["containers"].as_sequence().into_iter().flatten() {
            let command = argv(&container["command"]);
            if !matches!(command.first().map(String::as_str), Some("sagaflow" | "sagaflow-participant")) {
                continue;
            }
            let origin = format!("deployment {name}");
            let mut service = Service { name: name.clone(), built: true, command, ..Service::default() };
            for variable in container["env"].as_sequence().into_iter().flatten() {
                // Values from secrets and the downward API are not in the file: names only.
                service.environment.insert(scalar(&variable["name"]), scalar(&variable["value"]));
            }
            problems.extend(check_command(&origin, &service.command));
            problems.extend(check_environment(&origin, &service.command, service.environment.keys()));
            problems.extend(check_listening(&origin, &service));
            let listening: BTreeSet<u16> = listen_settings(&service).iter().map(|(_, a)| a.port()).collect();
            let api_port =
                service.environment.get("SAGAFLOW_LISTEN").and_then(|a| a.parse::<SocketAddr>().ok()).map(|a| a.port());
            let mut ports = BTreeMap::new();
            for port in container["ports"].as_sequence().into_iter().flatten() {
                let number = port["containerPort"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or_default();
                if !listening.contains(&number) {
                    problems.push(format!("{origin}: containerPort {number}, but it listens on {listening:?}"));
                }
                ports.insert(scalar(&port["name"]), number);
            }
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                let grpc = &container[probe]["grpc"];
                match grpc["port"].as_u64().and_then(|p| u16::try_from(p).ok()) {
                    Some(port) if Some(port) == api_port => {}
                    Some(port) => problems
                        .push(format!("{origin}: {probe} asks gRPC health on {port}, not the gRPC port {api_port:?}")),
                    None => problems.push(format!("{origin} has no gRPC {probe}")),
                }
            }
            let mounts: Vec<String> = container["volumeMounts"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|m| scalar(&m["mountPath"]))
                .collect();
            for (variable, value) in &service.environment {
                let inside = |root: &String| value == root || value.starts_with(&format!("{root}/"));
                if value.starts_with('/') && !mounts.iter().any(inside) && !image_paths.iter().any(inside) {
                    problems.push(format!("{origin}: {variable}={value} is neither mounted nor in the image"));
                }
            }
            workloads.push(Workload { service, labels: labels.clone(), ports });
        }
    }
    assert!(!workloads.is_empty(), "no Deployment in deploy/kubernetes runs the Sagaflow binaries");

    // host:port between workloads: a Service of these files, one of its ports, and behind it
    // a container port the selected workload listens on. Hosts with a dot are elsewhere
    // (another namespace, a managed service) and not checked.
    let services: Vec<&Value> = documents.iter().filter(|d| scalar(&d["kind"]) == "Service").collect();
    for workload in &workloads {
        let texts = workload.service.environment.values().chain(workload.service.command.iter());
        for (host, port) in texts.flat_map(|t| endpoints(t)) {
            if host.contains('.') || ANY_HOST.contains(&host.as_str()) {
                continue;
            }
            let origin = format!("deployment {}", workload.service.name);
            let Some(service) = services.iter().find(|s| scalar(&s["metadata"]["name"]) == host) else {
                problems.push(format!("{origin} calls {host}:{port}, but there is no Service {host:?}"));
                continue;
            };
            let Some(service_port) = service["spec"]["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|p| p["port"].as_u64() == Some(u64::from(port)))
            else {
                problems.push(format!("{origin} calls {host}:{port}, but Service {host} has no port {port}"));
                continue;
            };
            let selector: BTreeMap<String, String> = service["spec"]["selector"]
                .as_mapping()
                .into_iter()
                .flatten()
                .map(|(k, v)| (scalar(k), scalar(v)))
                .collect();
            let Some(target) = workloads.iter().find(|w| selector.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
            else {
                problems.push(format!("Service {host} selects no workload of ours"));
                continue;
            };
            let target_port = scalar(&service_port["targetPort"]);
            let container_port = target_port.parse::<u16>().ok().or_else(|| target.ports.get(&target_port).copied());
            // Workloads call each other over gRPC: the port must lead to the gRPC listener.
            let grpc = target.service.environment.get("SAGAFLOW_LISTEN").and_then(|a| a.parse::<SocketAddr>().ok());
            if container_port.is_none() || container_port != grpc.map(|a| a.port()) {
                problems.push(format!(
                    "{origin} calls {host}:{port} → targetPort {target_port} ({container_port:?}), but {} serves gRPC on {grpc:?}",
                    target.service.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "deploy/kubernetes does not match the binaries:\n  {}", problems.join("\n  "));
}

/// Every variable set for `command` is one its binary reads: clap lists it (`[env: NAME=]`)
/// or the help names it (OTEL_* are read by the OpenTelemetry setup, not by clap).
fn check_environment<'a>(origin: &str, command: &[String], names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let (_, accepted) = accepts_for(command);
    let words: BTreeSet<&str> = accepted.help.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    names
        .filter(|name| !accepted.env.contains(*name) && !words.contains(name.as_str()))
        .map(|name| {
            format!(
                "{origin}: `{}` does not read {name} (its --help lists {:?})",
                command[..2.min(command.len())].join(" "),
                accepted.env
            )
        })
        .collect()
}

/// The defaults are loopback: a service that others call must say where it listens, on an
/// address other containers reach.
fn check_listening(origin: &str, service: &Service) -> Vec<String> {
    let settings = listen_settings(service);
    let mut problems = Vec::new();
    if settings.is_empty() {
        problems.push(format!("{origin} sets no listen address (the default is loopback, unreachable)"));
    }
    for (name, addr) in &settings {
        if !addr.ip().is_unspecified() {
            problems
                .push(format!("{origin}: {name}={addr} listens on {} only; nothing outside can reach it", addr.ip()));
        }
    }
    problems
}

/// A `host:port` given to `origin` must be a service and a port that service listens on.
fn check_reference(compose: &Compose, origin: &str, host: &str, port: u16) -> Vec<String> {
    if LOOPBACK.contains(&host) {
        return vec![format!("{origin} refers to {host}:{port}: inside a container that is the container itself")];
    }
    match compose.services.get(host) {
        None => vec![format!("{origin} refers to {host}:{port}, but there is no service {host:?}")],
        Some(target) => {
            let listening = compose.listen_ports(target);
            if listening.contains(&port) {
                Vec::new()
            } else {
                vec![format!("{origin} refers to {host}:{port}, but {host} listens on {listening:?}")]
            }
        }
    }
}

/// A `postgres://user:password@host:port/database` URL, split.
#[derive(Debug)]
struct PgUrl {
    user: String,
    password: String,
    host: String,
    database: String,
}

fn pg_url(url: &str) -> Option<PgUrl> {
    let rest = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://"))?;
    let (credentials, rest) = rest.split_once('@')?;
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let (address, database) = rest.split_once('/')?;
    let database = database.split('?').next().unwrap_or_default();
    let host = address.split(':').next().unwrap_or_default();
    Some(PgUrl { user: user.into(), password: password.into(), host: host.into(), database: database.into() })
}

/// Every database URL names the server's user and password and a database that the
/// postgres image creates (POSTGRES_DB, or a `CREATE DATABASE` of an init script).
fn check_databases(compose: &Compose) -> Vec<String> {
    let mut problems = Vec::new();
    for service in compose.ours() {
        let Some(url) = service.environment.get("DATABASE_URL") else {
            problems.push(format!("service {} has no DATABASE_URL", service.name));
            continue;
        };
        let Some(url) = pg_url(url) else {
            problems.push(format!("service {}: DATABASE_URL {url:?} is not a postgres:// URL", service.name));
            continue;
        };
        let server = compose.service(&url.host);
        let mut databases: BTreeSet<String> = server.environment.get("POSTGRES_DB").cloned().into_iter().collect();
        if let Some(dir) = compose.host_path(server, "/docker-entrypoint-initdb.d") {
            for file in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let sql = std::fs::read_to_string(file.path()).unwrap_or_default();
                let sql: String =
                    sql.lines().map(|l| l.split("--").next().unwrap_or_default()).collect::<Vec<_>>().join("\n");
                for statement in sql.split(';') {
                    let words: Vec<&str> = statement.split_whitespace().collect();
                    if let [create, database, name, ..] = words.as_slice()
                        && create.eq_ignore_ascii_case("create")
                        && database.eq_ignore_ascii_case("database")
                    {
                        databases.insert(name.trim_matches('"').to_owned());
                    }
                }
            }
        }
        if !databases.contains(&url.database) {
            problems.push(format!(
                "service {} uses database {:?}, but {} creates only {databases:?}",
                service.name, url.database, url.host
            ));
        }
        if server.environment.get("POSTGRES_USER") != Some(&url.user)
            || server.environment.get("POSTGRES_PASSWORD") != Some(&url.password)
        {
            problems.push(format!("service {}: DATABASE_URL's user or password is not {}'s", service.name, url.host));
        }
    }
    problems
}

/// The Prometheus configuration that compose mounts, and its scrape targets.
fn prometheus_targets(compose: &Compose) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let Some(prometheus) = compose.services.values().find(|s| s.image.starts_with("prom/prometheus:")) else {
        return (Vec::new(), vec!["compose.yaml runs no Prometheus".to_owned()]);
    };
    let path = prometheus
        .command
        .iter()
        .find_map(|a| a.strip_prefix("--config.file="))
        .unwrap_or("/etc/prometheus/prometheus.yml");
    let Some(file) = compose.host_path(prometheus, path) else {
        return (Vec::new(), vec![format!("Prometheus's {path} is not mounted from the repository")]);
    };
    let config = load_yaml(&file);
    let mut targets = Vec::new();
    for job in config["scrape_configs"].as_sequence().into_iter().flatten() {
        for group in job["static_configs"].as_sequence().into_iter().flatten() {
            targets.extend(group["targets"].as_sequence().into_iter().flatten().map(scalar));
        }
        if !job["metrics_path"].is_null() && scalar(&job["metrics_path"]) != "/metrics" {
            problems.push(format!("job {}: Sagaflow serves /metrics only", scalar(&job["job_name"])));
        }
    }
    (targets, problems)
}

/// Every target is a service's listening port, and every Sagaflow process that serves
/// metrics is a target.
fn check_prometheus(compose: &Compose) -> Vec<String> {
    let (targets, mut problems) = prometheus_targets(compose);
    for target in &targets {
        match endpoints(target).as_slice() {
            [(host, port)] => problems.extend(check_reference(compose, "prometheus.yml", host, *port)),
            _ => problems.push(format!("prometheus.yml: target {target:?} is not HOST:PORT")),
        }
    }
    for service in compose.ours() {
        let Some(metrics) = service.environment.get("SAGAFLOW_METRICS_LISTEN") else {
            problems.push(format!("service {} serves no metrics (SAGAFLOW_METRICS_LISTEN)", service.name));
            continue;
        };
        let port = metrics.parse::<SocketAddr>().map(|a| a.port()).unwrap_or_default();
        if !targets.contains(&format!("{}:{port}", service.name)) {
            problems.push(format!("prometheus.yml does not scrape {}:{port}", service.name));
        }
    }
    problems
}

/// The services send traces to the collector's OTLP port; the collector exports to a
/// service that listens where it sends.
fn check_collector(compose: &Compose) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(collector) = compose.services.values().find(|s| s.image.starts_with("otel/opentelemetry-collector"))
    else {
        return vec!["compose.yaml runs no OpenTelemetry collector".to_owned()];
    };
    let config = compose.collector_config(collector);
    let mut texts = Vec::new();
    strings(&config["exporters"], &mut texts);
    for (host, port) in texts.iter().flat_map(|t| endpoints(t)) {
        problems.extend(check_reference(compose, "the collector's exporters", &host, port));
    }
    let pipelines = config["service"]["pipelines"]["traces"]["exporters"].as_sequence().map(Vec::len).unwrap_or(0);
    if pipelines == 0 {
        problems.push("the collector has no traces pipeline with an exporter".to_owned());
    }
    for service in compose.ours() {
        match service.environment.get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(url) if endpoints(url).iter().any(|(host, port)| *host == collector.name && *port == 4317) => {}
            other => problems.push(format!(
                "service {}: OTEL_EXPORTER_OTLP_ENDPOINT is {other:?}, not the collector's OTLP/gRPC port",
                service.name
            )),
        }
        if !service.environment.contains_key("OTEL_SERVICE_NAME") {
            problems.push(format!("service {} has no OTEL_SERVICE_NAME (its traces would be unnamed)", service.name));
        }
    }
    problems
}

/// Grafana's provisioning: data sources point at services, the dashboard folder is
/// mounted where the provider reads, and every panel queries a provisioned data source.
/// Returns the dashboards' PromQL expressions and the problems found.
fn check_grafana(compose: &Compose) -> (Vec<String>, Vec<String>) {
    let mut problems = Vec::new();
    let mut expressions = Vec::new();
    let Some(grafana) = compose.services.values().find(|s| s.image.starts_with("grafana/grafana:")) else {
        return (expressions, vec!["compose.yaml runs no Grafana".to_owned()]);
    };
    let provisioning =
        compose.host_path(grafana, "/etc/grafana/provisioning").expect("Grafana's provisioning is mounted");
    let mut uids = BTreeSet::new();
    for file in std::fs::read_dir(provisioning.join("datasources")).expect("datasources folder").flatten() {
        let config = load_yaml(&file.path());
        for source in config["datasources"].as_sequence().into_iter().flatten() {
            uids.insert(scalar(&source["uid"]));
            for (host, port) in endpoints(&scalar(&source["url"])) {
                problems.extend(check_reference(compose, "a Grafana data source", &host, port));
            }
        }
    }
    let mut dashboards = Vec::new();
    for file in std::fs::read_dir(provisioning.join("dashboards")).expect("dashboards provisioning folder").flatten() {
        let config = load_yaml(&file.path());
        for provider in config["providers"].as_sequence().into_iter().flatten() {
            let path = scalar(&provider["options"]["path"]);
            match compose.host_path(grafana, &path) {
                Some(dir) => {
                    for json in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        if json.path().extension().is_some_and(|e| e == "json") {
                            dashboards.push(json.path());
                        }
                    }
                }
                None => problems.push(format!("the dashboard provider reads {path}, which is not mounted")),
            }
        }
    }
    if let Some(home) = grafana.environment.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        && !compose.host_path(grafana, home).is_some_and(|p| p.exists())
    {
        problems.push(format!("Grafana's home dashboard {home} is not a mounted file"));
    }
    if dashboards.is_empty() {
        problems.push("no dashboard is provisioned".to_owned());
    }
    for path in dashboards {
        let text = std::fs::read_to_string(&path).expect("dashboard readable");
        let dashboard: Json =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
        let mut panels = Vec::new();
        collect_panels(&dashboard, &mut panels);
        if panels.is_empty() {
            problems.push(format!("{} has no panels", path.display()));
        }
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("panel {title:?} has no query"));
            }
            for target in targets {
                let uid = target["datasource"]["uid"].as_str().or(panel["datasource"]["uid"].as_str()).unwrap_or("");
                if !uids.contains(uid) {
                    problems.push(format!("panel {title:?} queries data source {uid:?}, provisioned: {uids:?}"));
                }
                match target["expr"].as_str() {
                    Some(expr) if !promql_metrics(expr).is_empty() => expressions.push(expr.to_owned()),
                    other => problems.push(format!("panel {title:?} has a query without a metric: {other:?}")),
                }
            }
        }
    }
    (expressions, problems)
}

/// Panels with queries, including those inside rows.
fn collect_panels<'a>(node: &'a Json, out: &mut Vec<&'a Json>) {
    for panel in node["panels"].as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            collect_panels(panel, out);
        } else {
            out.push(panel);
        }
    }
}

/// The metric names a PromQL expression reads: identifiers outside strings, label matchers
/// (`{}`), ranges (`[]`) and grouping lists (`by (...)`), that are not functions (followed by
/// `(`) or keywords.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    promql_words(expr).0
}

/// (metric names, label names of grouping lists) of a PromQL expression.
fn promql_words(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    const KEYWORDS: &[&str] = &["and", "or", "unless", "offset", "bool", "inf", "nan"];
    const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    // Aggregations may put `by (...)` before their parenthesis: `sum by (le) (...)`.
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let skip_to = |from: usize, close: char| {
        let mut i = from + 1;
        let mut quote = None;
        while i < chars.len() {
            match (quote, chars[i]) {
                (Some(_), '\\') => i += 1,
                (Some(q), c) if c == q => quote = None,
                (None, '"' | '\'' | '`') => quote = Some(chars[i]),
                (None, c) if c == close => return i + 1,
                _ => {}
            }
            i += 1;
        }
        i
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            i = j + 1;
        } else if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let opens = chars.get(next) == Some(&'(');
            if GROUPING.contains(&word.as_str()) {
                if opens {
                    let end = skip_to(next, ')');
                    let list: String = chars[next + 1..end - 1].iter().collect();
                    labels.extend(list.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned));
                    i = end;
                }
            } else if !opens
                && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str())
                && !AGGREGATIONS.contains(&word.as_str())
            {
                metrics.insert(word);
            }
        } else {
            i += 1;
        }
    }
    (metrics, labels)
}

/// `docker compose config` where a Docker engine answers; otherwise say it was skipped.
fn docker_compose_config() {
    let engine = Command::new("docker").arg("info").output();
    if !engine.as_ref().is_ok_and(|o| o.status.success()) {
        println!("skipped `docker compose config`: no Docker engine here (`docker info` failed)");
        return;
    }
    let output = Command::new("docker")
        .args(["compose", "--file", "compose.yaml", "config", "--quiet"])
        .current_dir(repo_root())
        .output()
        .expect("docker compose runs");
    assert!(
        output.status.success(),
        "`docker compose config` rejects compose.yaml:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("`docker compose config` accepts compose.yaml");
}

#[test]
fn promql_metric_names_are_found() {
    let (metrics, labels) = promql_words(
        r#"histogram_quantile(0.99, sum by (le, participant) (rate(sagaflow_task_seconds_bucket{job="sagaflow", x=~"a{1}"}[$__rate_interval]))) / ignoring(x) other_total or vector(0)"#,
    );
    assert_eq!(metrics, BTreeSet::from(["sagaflow_task_seconds_bucket".to_owned(), "other_total".to_owned()]));
    assert_eq!(labels, BTreeSet::from(["le".to_owned(), "participant".to_owned(), "x".to_owned()]));
}

#[test]
fn endpoints_are_found_and_rewritten() {
    let text = "payment=http://payment:50061,db=postgres://u:p@postgres:5432/x";
    assert_eq!(endpoints(text), vec![("payment".to_owned(), 50061), ("postgres".to_owned(), 5432)]);
    let rewritten = map_endpoints(text, |host, port| (host == "payment").then(|| format!("127.0.0.1:{}", port + 1)));
    assert_eq!(rewritten, "payment=http://127.0.0.1:50062,db=postgres://u:p@postgres:5432/x");
    assert_eq!(interpolate("a ${X:-human} $$b"), "a human $b");
}

// ---------------------------------------------------------------------------------------
// Running the Sagaflow services as compose declares them

/// Container addresses, paths and databases of compose.yaml mapped to this machine.
struct Local {
    /// (service, container port) → loopback port.
    ports: BTreeMap<(String, u16), u16>,
    /// Database name in compose.yaml → URL of a fresh database on DATABASE_URL.
    databases: BTreeMap<String, String>,
}

impl Local {
    fn port(&self, service: &str, port: u16) -> u16 {
        *self.ports.get(&(service.to_owned(), port)).unwrap_or_else(|| panic!("{service}:{port} is not mapped"))
    }

    /// One value of `service`'s command or environment, as it must read outside Docker.
    fn translate(&self, compose: &Compose, service: &Service, value: &str) -> String {
        if let Some(url) = pg_url(value) {
            return self.databases[&url.database].clone();
        }
        if value.starts_with('/')
            && let Some(path) = compose.host_path(service, value)
        {
            return path.display().to_string();
        }
        map_endpoints(value, |host, port| {
            let own = ANY_HOST.contains(&host) || LOOPBACK.contains(&host);
            let target = if own { service.name.as_str() } else { host };
            self.ports.get(&(target.to_owned(), port)).map(|local| format!("127.0.0.1:{local}"))
        })
    }
}

/// GET /metrics: the body, once the endpoint answers 200. HTTP/1.0, so the answer is never
/// chunked and ends when the connection closes.
async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
        };
        match attempt.await {
            Ok(response) if response.split_whitespace().nth(1) == Some("200") => {
                let (_, body) = response.split_once("\r\n\r\n").unwrap_or_default();
                return Ok(body.to_owned());
            }
            Ok(response) if Instant::now() > deadline => {
                anyhow::bail!("{addr}/metrics answered {:?}", response.lines().next())
            }
            Err(e) if Instant::now() > deadline => anyhow::bail!("{addr}/metrics: {e}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Sample names and label names in Prometheus (or OpenMetrics) text. A family declared by
/// `# TYPE` counts with its sample names even before it has samples: a counter of faults
/// nobody injected is still served.
fn exposition(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut names, mut labels) = (BTreeSet::new(), BTreeSet::new());
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut words = line.split_whitespace();
        let (Some(family), Some(kind)) = (words.next(), words.next()) else { continue };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
            "summary" => &["", "_sum", "_count"],
            _ => &[""],
        };
        for suffix in suffixes {
            // Prometheus' text format names a counter's family with its `_total` already.
            names.insert(if family.ends_with(suffix) { family.to_owned() } else { format!("{family}{suffix}") });
        }
    }
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        names.insert(line[..name_end].to_owned());
        if line[name_end..].starts_with('{') {
            let inside = &line[name_end + 1..line.rfind('}').unwrap_or(line.len())];
            // Label values are quoted and may hold commas: take names before each `="`.
            for (at, _) in inside.match_indices("=\"") {
                let name: String = inside[..at]
                    .chars()
                    .rev()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                labels.insert(name);
            }
        }
    }
    (names, labels)
}

#[tokio::test(flavor = "multi_thread")]
async fn compose_services_run_as_declared() {
    let _serial = sagaflow_e2e::serial().await;
    let compose = load_compose();
    let ours: Vec<Service> = compose.ours().cloned().collect();

    // A free loopback port for every port a service listens on.
    let mut ports = BTreeMap::new();
    for service in compose.services.values() {
        for port in compose.listen_ports(service) {
            ports.insert((service.name.clone(), port), free_port());
        }
    }
    // A fresh database for every database the services use.
    let mut databases = BTreeMap::new();
    let mut guards: Vec<FreshDatabase> = Vec::new();
    for service in &ours {
        let url = pg_url(&service.environment["DATABASE_URL"]).expect("a postgres URL");
        if let Entry::Vacant(slot) = databases.entry(url.database) {
            let (fresh, guard) = fresh_database(&format!("compose_{}", slot.key())).await.expect("fresh database");
            slot.insert(fresh);
            guards.push(guard);
        }
    }
    let local = Local { ports, databases };
    let log_dir =
        std::env::temp_dir().join(format!("sagaflow-compose-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]));
    std::fs::create_dir_all(&log_dir).expect("log folder");

    // Start in depends_on order, each once its dependencies among ours answer health checks.
    let mut running: BTreeMap<String, Process> = BTreeMap::new();
    while running.len() < ours.len() {
        let ready: Vec<&Service> = ours
            .iter()
            .filter(|s| !running.contains_key(&s.name))
            .filter(|s| s.depends_on.keys().all(|d| !compose.service(d).built || running.contains_key(d)))
            .collect();
        assert!(!ready.is_empty(), "the services' depends_on form a cycle");
        let mut started = Vec::new();
        for service in ready {
            let args: Vec<String> =
                service.command[1..].iter().map(|a| local.translate(&compose, service, a)).collect();
            let envs: Vec<(String, String)> =
                service.environment.iter().map(|(k, v)| (k.clone(), local.translate(&compose, service, v))).collect();
            let listen = service.environment.get("SAGAFLOW_LISTEN").expect("SAGAFLOW_LISTEN");
            let addr: SocketAddr = local.translate(&compose, service, listen).parse().expect("a listen address");
            let binary_path = binary(&service.command[0]).expect("binary");
            let process = Process::start(&service.name, binary_path, addr, args, envs, &log_dir).expect("starts");
            started.push((service.name.clone(), process));
        }
        for (name, mut process) in started {
            process.ready(Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{name} as compose runs it: {e:#}"));
            running.insert(name, process);
        }
    }

    // Each health check, as Docker would run it inside the container.
    for service in &ours {
        let check = service.healthcheck.as_ref().expect("a health check");
        let args: Vec<String> = check[1..].iter().map(|a| local.translate(&compose, service, a)).collect();
        let output = Command::new(binary(&check[0]).expect("binary")).args(&args).output().expect("health check runs");
        assert!(
            output.status.success(),
            "{}'s health check `{} {}` failed: {}{}",
            service.name,
            check[0],
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("SERVING"));
    }

    // One injected delay, so that the participants' fault counter has a sample too (a
    // counter with no sample is not served at all).
    let payment = ours.iter().find(|s| s.command.get(1).map(String::as_str) == Some("payment")).expect("payment");
    let mut chaos = ChaosClient::connect(format!("http://{}", running[&payment.name].addr)).await.expect("chaos");
    let fault = Fault { method: "payment.v1.Payment/Charge".into(), latency_ms: 5, remaining: 1, ..Fault::default() };
    chaos.set_fault(SetFaultRequest { fault: Some(fault) }).await.expect("fault set");

    // Orders through each replica: one that succeeds, one that compensates.
    let replicas: Vec<&Service> =
        ours.iter().filter(|s| s.command.get(1).map(String::as_str) == Some("serve")).collect();
    for (i, replica) in replicas.iter().enumerate() {
        let url = format!("http://{}", running[&replica.name].addr);
        let mut client = OrderServiceClient::connect(url).await.expect("API reachable");
        for (token, expected) in [("tok_ok", "SUCCEEDED"), ("tok_decline", "COMPENSATED")] {
            let mut order = common::order(&format!("compose-{i}-{token}"), "SKU-RED-MUG", 1, token);
            order.wait_for_completion = true;
            let mut request = tonic::Request::new(order);
            request.set_timeout(Duration::from_secs(60));
            let answer = client.start_order(request).await.expect("StartOrder").into_inner();
            assert_eq!(answer.status, expected, "{token} through {}: {answer:?}", replica.name);
        }
    }

    // Every Prometheus target of ours answers, and the dashboard reads only what they serve.
    let (targets, _) = prometheus_targets(&compose);
    let (mut names, mut labels) = (BTreeSet::new(), BTreeSet::new());
    for target in targets {
        let (host, port) = endpoints(&target)[0].clone();
        if !compose.service(&host).built {
            continue;
        }
        let addr: SocketAddr = format!("127.0.0.1:{}", local.port(&host, port)).parse().expect("address");
        let text = scrape(addr).await.unwrap_or_else(|e| panic!("scraping {target} ({host}): {e:#}"));
        let (n, l) = exposition(&text);
        assert!(!n.is_empty(), "{target} serves no samples");
        names.extend(n);
        labels.extend(l);
    }
    // Prometheus adds these labels to every series, and `up` for every target it scrapes.
    labels.extend(["le", "instance", "job"].map(str::to_owned));
    names.insert("up".to_owned());
    let (expressions, problems) = check_grafana(&compose);
    assert!(problems.is_empty(), "{problems:?}");
    let mut missing = Vec::new();
    for expr in &expressions {
        let (metrics, grouping) = promql_words(expr);
        for metric in metrics.difference(&names) {
            missing.push(format!("metric {metric} (in `{expr}`)"));
        }
        for label in grouping.difference(&labels) {
            missing.push(format!("label {label} (in `{expr}`)"));
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard queries what no process serves:\n  {}\nserved metrics: {names:?}\nserved labels: {labels:?}",
        missing.join("\n  ")
    );

    drop(running);
    for guard in guards {
        guard.drop_it().await.expect("database dropped");
    }
}
