//! ONNX Runtime for the offline neural models (Smart Turn, the Piper voice), through the `ort`
//! crate with `load-dynamic`: the runtime's shared library comes from the models directory
//! (`onnxruntime/libonnxruntime.so`, which `scripts/install-models` unpacks from the official
//! wheel), so nothing is downloaded or compiled at build time.
//!
//! A process loads one runtime, once. Sessions are not shared between threads (`ort` runs take
//! `&mut`): a [`SessionPool`] holds one per permitted concurrent run, each single-threaded, so
//! inference never takes more than its share of the cores from the calls.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use super::BackendError;
use super::lease::LeasePool;

/// The runtime library inside a models directory.
pub fn runtime_library(models_dir: &Path) -> PathBuf {
    models_dir.join("onnxruntime").join("libonnxruntime.so")
}

static RUNTIME: OnceLock<Result<(PathBuf, Environment), String>> = OnceLock::new();

/// The process's ONNX Runtime, loaded from `models_dir` the first time. A later call naming
/// another directory gets the runtime already loaded (one per process).
pub fn environment(models_dir: &Path) -> Result<&'static Environment, BackendError> {
    let loaded = RUNTIME.get_or_init(|| {
        let lib = runtime_library(models_dir);
        if !lib.is_file() {
            return Err(format!(
                "ONNX Runtime is not installed: {} is missing (run scripts/install-models)",
                lib.display()
            ));
        }
        let env = ort::init_from(&lib)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?
            .with_name("receptionist")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))?;
        Ok((lib, env))
    });
    match loaded {
        Ok((_, env)) => Ok(env),
        Err(e) => Err(BackendError::Unavailable(e.clone())),
    }
}

/// Sessions of one model, one per concurrent run, each on one thread.
pub struct SessionPool {
    name: &'static str,
    sessions: Arc<LeasePool<Session>>,
}

/// One single-threaded session of `model` (`name` is said in errors).
pub fn load_session(name: &str, models_dir: &Path, model: &Path) -> Result<Session, BackendError> {
    let env = environment(models_dir)?;
    if !model.is_file() {
        return Err(BackendError::Unavailable(format!(
            "{name}: {} is missing (run scripts/install-models)",
            model.display()
        )));
    }
    let load = || -> Result<Session, ort::Error> {
        Session::builder(env)?
            .with_optimization_level(GraphOptimizationLevel::Level3)?
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .commit_from_file(model)
    };
    load().map_err(|e| {
        BackendError::Unavailable(format!("{name}: cannot load {}: {e}", model.display()))
    })
}

impl SessionPool {
    /// Load `model` `size` times (at least once).
    pub fn load(
        name: &'static str,
        models_dir: &Path,
        model: &Path,
        size: usize,
    ) -> Result<Self, BackendError> {
        let sessions = (0..size.max(1))
            .map(|_| load_session(name, models_dir, model))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            name,
            sessions: LeasePool::new(name, sessions),
        })
    }

    /// Run `f` with a session on a blocking thread, waiting for a free one.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Session) -> Result<T, ort::Error> + Send + 'static,
    {
        let name = self.name;
        self.sessions
            .run(move |session| {
                f(session).map_err(|e| BackendError::Failed(format!("{name}: {e}")))
            })
            .await
    }

    /// Run `f` with a session on this thread (tools and tests).
    pub fn run_here<T>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<T, ort::Error>,
    ) -> Result<T, BackendError> {
        let mut session = self
            .sessions
            .try_lease()
            .ok_or_else(|| BackendError::Failed(format!("{}: no free session", self.name)))?;
        f(&mut session).map_err(|e| BackendError::Failed(format!("{}: {e}", self.name)))
    }
}
