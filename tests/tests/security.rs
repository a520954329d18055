//! Security end to end, with real processes and certificates made for the test: the API over
//! TLS with bearer tokens (a plaintext client cannot connect; no token or a wrong one is
//! refused with UNAUTHENTICATED; health stays open), mutual TLS from the orchestrator to the
//! participants (an order runs through it; a client without a certificate, or with one from
//! another CA, is refused), the API with client certificates required, and the payment token
//! of the orders nowhere in the orchestrator's log or in `show`, `history` and `export`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::order;
use sagaflow_e2e::certs::{CertFiles, TestCa};
use sagaflow_e2e::cluster::{Cluster, Options};
use sagaflow_e2e::process::{Process, binary, free_port};
use sagaflow_e2e::serial;
use sagaflow_proto::sagaflow::v1 as pb;
use sagaflow_proto::sagaflow::v1::order_service_client::OrderServiceClient;
use sagaflow_proto::sagaflow::v1::saga_service_client::SagaServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The operators' token in the server's token file.
const TOKEN: &str = "e2e-operator-token-7c1f0a9d5b3e4f26";

fn tls(ca: &Path, identity: Option<&CertFiles>) -> ClientTlsConfig {
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)));
    if let Some(files) = identity {
        config = config.identity(Identity::from_pem(read(&files.cert), read(&files.key)));
    }
    config
}

fn arg(path: &Path) -> String {
    path.display().to_string()
}

/// A health check at `url`, over TLS when given; Ok only for an answer.
async fn health(url: &str, tls: Option<ClientTlsConfig>) -> anyhow::Result<i32> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())?.connect_timeout(Duration::from_secs(3));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    let check = async {
        let channel = endpoint.connect().await?;
        let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await?;
        anyhow::Ok(answer.into_inner().status)
    };
    tokio::time::timeout(Duration::from_secs(10), check).await?
}

/// A request carrying `authorization: Bearer <token>` when a token is given.
fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("header value");
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Run the real `sagaflow` binary against `server` with the CA, and the token in
/// SAGAFLOW_TOKEN when given: (exit code, stdout, stderr).
async fn sagaflow(server: &str, ca: &Path, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(binary("sagaflow").expect("sagaflow is built"));
    command.args(args).arg("--server").arg(server).arg("--ca-cert").arg(ca).env("NO_COLOR", "1");
    command.env_remove("SAGAFLOW_TOKEN").env_remove("SAGAFLOW_REDACT");
    if let Some(token) = token {
        command.env("SAGAFLOW_TOKEN", token);
    }
    let output = command.output().await.expect("sagaflow runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sagaflow-e2e-certs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_cluster_refuses_strangers_and_never_shows_the_payment_token() {
    let _serial = serial().await;
    let dir = temp_dir();
    let ca = TestCa::new(&dir, "sagaflow").expect("CA");
    let rogue = TestCa::new(&dir, "rogue").expect("rogue CA");
    let participant = ca.server("participant").expect("participant certificate");
    let api = ca.server("api").expect("API certificate");
    let orchestrator = ca.client("orchestrator").expect("orchestrator client certificate");
    let operator = ca.client("operator").expect("operator client certificate");
    let stranger = rogue.client("stranger").expect("rogue client certificate");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("# operators\n{TOKEN}\n")).expect("token file");

    let options = Options {
        participant_args: vec![
            "--tls-cert".into(),
            arg(&participant.cert),
            "--tls-key".into(),
            arg(&participant.key),
            "--tls-client-ca".into(),
            arg(&ca.cert),
        ],
        serve_args: vec![
            "--tls-cert".into(),
            arg(&api.cert),
            "--tls-key".into(),
            arg(&api.key),
            "--participant-ca".into(),
            arg(&ca.cert),
            "--participant-client-cert".into(),
            arg(&orchestrator.cert),
            "--participant-client-key".into(),
            arg(&orchestrator.key),
            "--auth-tokens-file".into(),
            arg(&tokens),
            "--redact".into(),
            "$..paymentToken".into(),
        ],
        participant_tls: Some(tls(&ca.cert, Some(&orchestrator))),
        api_tls: Some(tls(&ca.cert, None)),
        ..Options::default()
    };
    // The harness's own readiness checks are health checks without a token: the cluster
    // starting at all shows health is exempt by default.
    let cluster = Cluster::start(options).await.expect("cluster starts");
    let replica = &cluster.replicas[0];
    let server = replica.url();
    assert!(server.starts_with("https://"), "{server}");

    // TLS on the API: a plaintext client cannot connect; a TLS client with the CA can, and
    // reaches health without a token.
    let plaintext = health(&format!("http://{}", replica.addr), None).await;
    assert!(plaintext.is_err(), "a plaintext client got an answer from a TLS server: {plaintext:?}");
    assert_eq!(health(&server, Some(tls(&ca.cert, None))).await.expect("health over TLS"), 1, "SERVING");

    // Bearer tokens: none, a wrong one, the right one.
    let channel = Cluster::channel(replica).await.expect("TLS channel");
    let mut sagas = SagaServiceClient::new(channel.clone());
    let list = || pb::ListExecutionsRequest { page_size: 5, ..Default::default() };
    let refused = sagas.list_executions(with_token(list(), None)).await.expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("bearer token"), "{}", refused.message());
    let wrong = "e2e-wrong-token-0000000000000000";
    let refused = sagas.list_executions(with_token(list(), Some(wrong))).await.expect_err("wrong token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(!refused.message().contains(wrong), "the refusal echoes the token: {}", refused.message());
    sagas.list_executions(with_token(list(), Some(TOKEN))).await.expect("the right token is accepted");
    let (code, _, err) = sagaflow(&server, &ca.cert, None, &["list"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Unauthenticated") && err.contains("SAGAFLOW_TOKEN"), "{err}");

    // Mutual TLS at the participants: no client certificate, or one from another CA, is
    // refused; the orchestrator's certificate gets through (it also ran the orders below).
    let payment = cluster.participants["payment"].url();
    assert!(health(&payment, Some(tls(&ca.cert, None))).await.is_err(), "a client without a certificate got in");
    assert!(health(&payment, Some(tls(&ca.cert, Some(&stranger)))).await.is_err(), "a rogue certificate got in");
    assert_eq!(health(&payment, Some(tls(&ca.cert, Some(&orchestrator)))).await.expect("mTLS"), 1);

    // Orders end to end over mutual TLS: one placed, one declined (the payment participant
    // quotes the declined token in its error, which must be scrubbed too).
    let mut orders = OrderServiceClient::new(channel);
    let mut ids = Vec::new();
    for (id, token, expected) in
        [("e2e-sec-ok", "tok_ok", "SUCCEEDED"), ("e2e-sec-declined", "tok_decline", "COMPENSATED")]
    {
        let mut request = order(id, "SKU-RED-MUG", 1, token);
        request.wait_for_completion = true;
        let mut call = with_token(request, Some(TOKEN));
        call.set_timeout(Duration::from_secs(120));
        let placed =
            orders.start_order(call).await.unwrap_or_else(|s| panic!("{s:?}\n{}", cluster.logs())).into_inner();
        assert_eq!(placed.status, expected, "{placed:?}\n{}", cluster.logs());
        assert!(!placed.cause.contains(token), "StartOrder's cause shows the token: {}", placed.cause);
        ids.push((placed.execution_id, token));
    }

    for (id, token) in &ids {
        let id = id.as_str();
        // The API masks the token in every answer, though the database keeps it (the
        // participants got it: the first order was charged).
        let described = sagas
            .describe_execution(with_token(pb::DescribeExecutionRequest { execution_id: id.to_owned() }, Some(TOKEN)))
            .await
            .expect("describe")
            .into_inner();
        let answer = format!("{described:?}");
        assert!(!answer.contains(token), "DescribeExecution shows {token}: {answer}");
        assert!(described.input_json.contains(r#""paymentToken":"***""#), "{}", described.input_json);
        let request =
            pb::GetExecutionHistoryRequest { execution_id: id.to_owned(), after_event_id: 0, page_size: 1000 };
        let history = sagas.get_execution_history(with_token(request, Some(TOKEN))).await.expect("history");
        let answer = format!("{:?}", history.into_inner().events);
        assert!(answer.contains("TaskScheduled") && !answer.contains(token), "the history shows {token}: {answer}");

        // The CLI: show, history and export, human and JSON, with its own masking off
        // (`--redact none`: what the server sends) and on (its default list).
        for args in [
            vec!["show", id],
            vec!["show", id, "--output", "json"],
            vec!["history", id],
            vec!["history", id, "--output", "json"],
            vec!["export", id],
            vec!["show", id, "--redact", "none"],
            vec!["history", id, "--output", "json", "--redact", "none"],
            vec!["export", id, "--redact", "none"],
        ] {
            let (code, out, err) = sagaflow(&server, &ca.cert, Some(TOKEN), &args).await;
            assert_eq!(code, 0, "sagaflow {args:?}: {err}");
            assert!(out.contains("ReserveInventory"), "sagaflow {args:?} printed no saga:\n{out}");
            assert!(!out.contains(token) && !err.contains(token), "sagaflow {args:?} shows {token}:\n{out}\n{err}");
        }
    }

    // API with client certificates required: a second replica on the same database.
    let mtls_api = ca.server("mtls-api").expect("certificate");
    let addr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        format!("{addr}"),
        "--database-url".into(),
        cluster.orchestrator_db.clone(),
        "--tls-cert".into(),
        arg(&mtls_api.cert),
        "--tls-key".into(),
        arg(&mtls_api.key),
        "--tls-client-ca".into(),
        arg(&ca.cert),
        "--participant-ca".into(),
        arg(&ca.cert),
        "--participant-client-cert".into(),
        arg(&orchestrator.cert),
        "--participant-client-key".into(),
        arg(&orchestrator.key),
    ];
    for (name, p) in &cluster.participants {
        args.extend(["--participant".into(), format!("{name}={}", p.url())]);
    }
    let envs = vec![("RUST_LOG".to_owned(), "info,sagaflow=debug".to_owned())];
    let mut second = Process::start("mtls-api", binary("sagaflow").expect("sagaflow"), addr, args, envs, &dir)
        .expect("second replica starts");
    second.use_tls(tls(&ca.cert, Some(&operator)));
    second.ready(Duration::from_secs(60)).await.expect("ready with a client certificate");
    let url = second.url();
    assert!(health(&url, Some(tls(&ca.cert, None))).await.is_err(), "a client without a certificate got in");
    assert!(health(&url, Some(tls(&ca.cert, Some(&stranger)))).await.is_err(), "a rogue certificate got in");
    second.terminate();

    // The orchestrator's log (debug level) never held either token.
    let log = std::fs::read_to_string(cluster.log_dir.join("replica-0.log")).expect("replica log");
    assert!(log.contains("execution settled"), "the log is not the replica's:\n{log}");
    for (_, token) in &ids {
        assert!(!log.contains(token), "the orchestrator's log shows {token}:\n{log}");
    }
    cluster.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
