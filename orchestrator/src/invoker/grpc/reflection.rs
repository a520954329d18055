//! Fetching a participant's schema through gRPC server reflection.
//!
//! One bidirectional `ServerReflectionInfo` stream per fetch: list the services, ask for the
//! file that defines each one, then for every import not yet seen, until the set is closed.
//! v1 first; a server that answers `UNIMPLEMENTED` is asked again over v1alpha (older grpc-go,
//! grpc-java and tonic servers only serve that one). Both versions have the same messages, so
//! the v1 types serve for both paths.
//!
//! Files are kept as the encoded bytes the server sent (prost would drop custom options on a
//! decode/encode round trip) and built into a [`DescriptorPool`] that starts from the
//! well-known types, so a server that does not publish `google/protobuf/*.proto` still works.

use std::collections::{BTreeMap, VecDeque};

use prost::Message as _;
use prost_reflect::DescriptorPool;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Status, Streaming, client::Grpc, codegen::http::uri::PathAndQuery, transport::Channel};
use tonic_prost::ProstCodec;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, ServerReflectionResponse, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse,
};

const V1_PATH: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
const V1ALPHA_PATH: &str = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

/// A guard against a misbehaving server that keeps naming new imports.
const MAX_FILES: usize = 10_000;

/// Why a schema could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum ReflectionError {
    /// The reflection call itself failed (unreachable, unavailable, ...).
    #[error("{0}")]
    Status(Status),
    /// Neither reflection v1 nor v1alpha is served.
    #[error(
        "it does not serve gRPC server reflection (grpc.reflection.v1 or v1alpha); enable \
         reflection on the participant"
    )]
    NotServed,
    /// The server answered something that is not a usable schema.
    #[error("its reflection answer is unusable: {0}")]
    Protocol(String),
}

/// Fetches every service the participant lists, with all the files they need.
pub async fn fetch_descriptor_pool(channel: Channel) -> Result<DescriptorPool, ReflectionError> {
    let files = match fetch_files(channel.clone(), V1_PATH).await {
        Err(ReflectionError::Status(status)) if status.code() == Code::Unimplemented => {
            match fetch_files(channel, V1ALPHA_PATH).await {
                Err(ReflectionError::Status(status)) if status.code() == Code::Unimplemented => {
                    Err(ReflectionError::NotServed)
                }
                other => other,
            }
        }
        other => other,
    }?;
    build_pool(files)
}

/// One reflection conversation; a request is sent only once the previous answer arrived, so
/// answers pair with requests without relying on the optional `original_request` echo.
struct Conversation {
    requests: mpsc::Sender<ServerReflectionRequest>,
    responses: Streaming<ServerReflectionResponse>,
}

impl Conversation {
    async fn open(channel: Channel, path: &'static str) -> Result<Self, ReflectionError> {
        let (requests, rx) = mpsc::channel(1);
        let mut grpc = Grpc::new(channel);
        grpc.ready().await.map_err(|err| ReflectionError::Status(Status::from_error(Box::new(err))))?;
        let codec = ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default();
        let responses = grpc
            .streaming(Request::new(ReceiverStream::new(rx)), PathAndQuery::from_static(path), codec)
            .await
            .map_err(ReflectionError::Status)?
            .into_inner();
        Ok(Self { requests, responses })
    }

    async fn ask(&mut self, request: MessageRequest) -> Result<MessageResponse, ReflectionError> {
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
        self.requests
            .send(request)
            .await
            .map_err(|_| ReflectionError::Protocol("the server closed the stream".into()))?;
        let response = self
            .responses
            .message()
            .await
            .map_err(ReflectionError::Status)?
            .ok_or_else(|| ReflectionError::Protocol("the server ended the stream early".into()))?;
        response.message_response.ok_or_else(|| ReflectionError::Protocol("an answer with no content".into()))
    }
}

/// Encoded files by name.
type Files = BTreeMap<String, Vec<u8>>;

async fn fetch_files(channel: Channel, path: &'static str) -> Result<Files, ReflectionError> {
    let mut conversation = Conversation::open(channel, path).await?;
    let services = match conversation.ask(MessageRequest::ListServices(String::new())).await? {
        MessageResponse::ListServicesResponse(list) => list.service,
        MessageResponse::ErrorResponse(err) => return Err(error_response(err)),
        _ => {
            return Err(ReflectionError::Protocol("ListServices got a different answer".into()));
        }
    };

    let base = DescriptorPool::global();
    let mut files = Files::new();
    // Imports the well-known-type pool cannot supply and the server did not (yet) send.
    let mut wanted: VecDeque<String> = VecDeque::new();
    for service in services {
        // The reflection service describes itself; Sagaflow never calls it as a task.
        if service.name.starts_with("grpc.reflection.") {
            continue;
        }
        let answer = conversation.ask(MessageRequest::FileContainingSymbol(service.name.clone())).await?;
        add_files(&base, &mut files, &mut wanted, answer, &service.name)?;
    }
    while let Some(name) = wanted.pop_front() {
        if files.contains_key(&name) {
            continue;
        }
        if files.len() >= MAX_FILES {
            return Err(ReflectionError::Protocol(format!("more than {MAX_FILES} files; refusing to fetch more")));
        }
        let answer = conversation.ask(MessageRequest::FileByFilename(name.clone())).await?;
        match answer {
            // Well-known types come with the pool; a server need not publish them.
            MessageResponse::ErrorResponse(_) if is_bundled(&base, &name) => {}
            MessageResponse::ErrorResponse(err) => {
                return Err(ReflectionError::Protocol(format!(
                    "the file \"{name}\" is imported but not served: {}",
                    err.error_message
                )));
            }
            answer => add_files(&base, &mut files, &mut wanted, answer, &name)?,
        }
    }
    Ok(files)
}

fn add_files(
    base: &DescriptorPool,
    files: &mut Files,
    wanted: &mut VecDeque<String>,
    answer: MessageResponse,
    asked: &str,
) -> Result<(), ReflectionError> {
    let encoded = match answer {
        MessageResponse::FileDescriptorResponse(response) => response.file_descriptor_proto,
        MessageResponse::ErrorResponse(err) => {
            return Err(ReflectionError::Protocol(format!("no file for \"{asked}\": {}", err.error_message)));
        }
        _ => {
            return Err(ReflectionError::Protocol(format!("the answer for \"{asked}\" is not a file")));
        }
    };
    for bytes in encoded {
        let file = prost_types::FileDescriptorProto::decode(bytes.as_slice())
            .map_err(|err| ReflectionError::Protocol(format!("a file for \"{asked}\" does not decode: {err}")))?;
        let name = file.name().to_owned();
        for dependency in &file.dependency {
            if !files.contains_key(dependency) && !is_bundled(base, dependency) {
                wanted.push_back(dependency.clone());
            }
        }
        files.entry(name).or_insert(bytes);
    }
    Ok(())
}

/// Files the starting pool already holds (the well-known types).
fn is_bundled(base: &DescriptorPool, name: &str) -> bool {
    base.get_file_by_name(name).is_some()
}

fn build_pool(files: Files) -> Result<DescriptorPool, ReflectionError> {
    /// A `FileDescriptorSet` whose files stay encoded (field 1, repeated bytes on the wire).
    #[derive(Clone, PartialEq, prost::Message)]
    struct EncodedFileSet {
        #[prost(bytes = "vec", repeated, tag = "1")]
        file: Vec<Vec<u8>>,
    }
    let set = EncodedFileSet { file: files.into_values().collect() };
    let mut pool = DescriptorPool::global();
    pool.decode_file_descriptor_set(set.encode_to_vec().as_slice())
        .map_err(|err| ReflectionError::Protocol(format!("the files do not link: {err}")))?;
    Ok(pool)
}

fn error_response(err: tonic_reflection::pb::v1::ErrorResponse) -> ReflectionError {
    ReflectionError::Status(Status::new(Code::from(err.error_code), err.error_message))
}
