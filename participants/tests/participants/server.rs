//! Health checking and server reflection, which the orchestrator relies on.

use sagaflow_proto::participants::v1::ListFaultsRequest;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::{v1, v1alpha};

use crate::common::{Db, Harness};

const SERVICES: [&str; 5] = [
    "payment.v1.Payment",
    "inventory.v1.Inventory",
    "fraud.v1.Fraud",
    "fulfillment.v1.Fulfillment",
    "participants.v1.Chaos",
];

async fn health_reports_every_service_serving(db: Db) {
    let h = Harness::start(db).await;
    let mut health = HealthClient::new(h.channel().await);
    for service in SERVICES.iter().copied().chain([""]) {
        let status = health
            .check(HealthCheckRequest { service: service.into() })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }
    // The Chaos service answers too.
    h.chaos().await.list_faults(ListFaultsRequest {}).await.expect("chaos answers");
    h.stop().await;
}

async fn reflection_v1_lists_services_and_serves_their_files(db: Db) {
    use v1::server_reflection_client::ServerReflectionClient;
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;

    let h = Harness::start(db).await;
    let mut client = ServerReflectionClient::new(h.channel().await);
    let requests = tokio_stream::iter([
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("payment.v1.Payment".into())),
        },
    ]);
    let mut responses = client.server_reflection_info(requests).await.expect("reflection").into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.expect("a response").expect("ok").message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in SERVICES {
        assert!(names.iter().any(|n| n == service), "{service} in {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("sagaflow.")), "{names:?}");
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        responses.next().await.expect("a response").expect("ok").message_response
    else {
        panic!("expected file descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    h.stop().await;
}

async fn reflection_v1alpha_lists_services(db: Db) {
    use v1alpha::server_reflection_client::ServerReflectionClient;
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;

    let h = Harness::start(db).await;
    let mut client = ServerReflectionClient::new(h.channel().await);
    let requests = tokio_stream::iter([v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }]);
    let mut responses = client.server_reflection_info(requests).await.expect("reflection").into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.expect("a response").expect("ok").message_response
    else {
        panic!("expected a service list");
    };
    assert!(list.service.iter().any(|s| s.name == "inventory.v1.Inventory"));
    h.stop().await;
}

on_both_backends!(
    health_reports_every_service_serving,
    reflection_v1_lists_services_and_serves_their_files,
    reflection_v1alpha_lists_services,
);
