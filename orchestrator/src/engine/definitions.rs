//! Definitions as the engine uses them: compiled once per stored version and cached (a
//! version never changes, so the cache never goes stale), registered from text or from a
//! folder of `*.asl.json` files, with every diagnostic reported when one is invalid.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow_language::{Definition, Diagnostic, Diagnostics, compile};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::EngineError;
use crate::store::{DefinitionRecord, Store, StoreError};

/// How long the latest version of a name is trusted before asking the store again: another
/// replica may register a newer one, and starts should see it soon without a query each.
const LATEST_TTL: Duration = Duration::from_secs(2);

/// Compiled definitions by id and the latest version by name.
pub struct Definitions {
    store: Arc<dyn Store>,
    compiled: Mutex<HashMap<i64, Arc<Definition>>>,
    latest: Mutex<HashMap<String, (Instant, DefinitionRecord)>>,
}

impl std::fmt::Debug for Definitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Definitions").finish_non_exhaustive()
    }
}

/// The outcome of registering one definition.
#[derive(Debug, Clone)]
pub struct Registered {
    pub record: DefinitionRecord,
    /// False when the content equals the latest version's.
    pub created: bool,
    pub warnings: Vec<Diagnostic>,
}

/// A definition file that did not validate.
#[derive(Debug, Clone)]
pub struct InvalidFile {
    pub file: PathBuf,
    pub diagnostics: Diagnostics,
}

/// Why registering failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the definition is invalid ({} errors)", .0.errors().count())]
    Invalid(Diagnostics),
    #[error("definition name {0:?} is not valid: use 1-80 letters, digits, '-', '_' or '.'")]
    BadName(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Definitions {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Definitions { store, compiled: Mutex::new(HashMap::new()), latest: Mutex::new(HashMap::new()) }
    }

    /// The record of a version, or the latest when `version` is `None`.
    pub async fn record(&self, name: &str, version: Option<u32>) -> Result<DefinitionRecord, EngineError> {
        if version.is_none()
            && let Some((at, record)) = self.latest.lock().await.get(name)
            && at.elapsed() < LATEST_TTL
        {
            return Ok(record.clone());
        }
        let record = self.store.get_definition(name, version).await?.ok_or_else(|| match version {
            None => EngineError::UnknownDefinition(name.to_owned()),
            Some(v) => EngineError::UnknownVersion { name: name.to_owned(), version: v },
        })?;
        if version.is_none() {
            self.latest.lock().await.insert(name.to_owned(), (Instant::now(), record.clone()));
        }
        Ok(record)
    }

    /// The compiled form of a stored version.
    pub async fn compiled(&self, id: i64) -> Result<Arc<Definition>, EngineError> {
        if let Some(found) = self.compiled.lock().await.get(&id) {
            return Ok(found.clone());
        }
        let record = self
            .store
            .get_definition_by_id(id)
            .await?
            .ok_or_else(|| EngineError::UnknownDefinition(format!("#{id}")))?;
        let compiled = compile(&record.content).map_err(|d| EngineError::BrokenDefinition(id, d.to_string()))?;
        let definition = Arc::new(compiled.definition);
        self.compiled.lock().await.insert(id, definition.clone());
        Ok(definition)
    }

    /// Validate and store `content` as the next version of `name` (or find it unchanged).
    pub async fn register(&self, name: &str, content: &str) -> Result<Registered, RegisterError> {
        if !valid_name(name) {
            return Err(RegisterError::BadName(name.to_owned()));
        }
        let compiled = compile(content).map_err(RegisterError::Invalid)?;
        let hash = hex::encode(Sha256::digest(content.as_bytes()));
        let (record, created) = self.store.put_definition(name, content, &hash).await?;
        self.compiled.lock().await.insert(record.id, Arc::new(compiled.definition));
        self.latest.lock().await.insert(name.to_owned(), (Instant::now(), record.clone()));
        Ok(Registered { record, created, warnings: compiled.warnings })
    }

    /// Register every `*.asl.json` in `dir` (named by the file name without `.asl.json`).
    /// Nothing is registered unless every file is valid; then all problems are returned.
    pub async fn register_dir(&self, dir: &Path) -> Result<Vec<Registered>, DirError> {
        let files = definition_files(dir).map_err(|e| DirError::Read(dir.to_owned(), e))?;
        let mut parsed = Vec::new();
        let mut invalid = Vec::new();
        for file in files {
            let content = std::fs::read_to_string(&file).map_err(|e| DirError::Read(file.clone(), e))?;
            match compile(&content) {
                Ok(_) => parsed.push((file, content)),
                Err(diagnostics) => invalid.push(InvalidFile { file, diagnostics }),
            }
        }
        if !invalid.is_empty() {
            return Err(DirError::Invalid(invalid));
        }
        let mut registered = Vec::new();
        for (file, content) in parsed {
            let name = definition_name(&file);
            registered.push(self.register(&name, &content).await.map_err(|e| DirError::Register(file, e))?);
        }
        Ok(registered)
    }
}

/// Why a folder of definitions could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{} definition file(s) are invalid", .0.len())]
    Invalid(Vec<InvalidFile>),
    #[error("cannot register {0}: {1}")]
    Register(PathBuf, RegisterError),
}

/// `order.asl.json` → `order`.
pub fn definition_name(file: &Path) -> String {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.strip_suffix(".asl.json").or_else(|| name.strip_suffix(".json")).unwrap_or(name).to_owned()
}

fn definition_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".asl.json")))
        .collect();
    files.sort();
    Ok(files)
}

fn valid_name(name: &str) -> bool {
    (1..=80).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
