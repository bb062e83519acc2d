//! The sandbox: a thin layer that narrows wasmtime to what wasmonkey needs.
//!
//! - Components are compiled once per version: the machine code is cached on
//!   disk under the component's sha256 and the engine's compatibility hash,
//!   and mapped from there (`sandbox/code_cache.rs`). A component's
//!   `metadata()` answer is remembered there too, per contract and limits.
//! - Each run gets a fresh store from a pre-instantiated component, with
//!   fuel, a memory cap, a stack cap, an epoch deadline and a timeout.
//! - A component that imports WASI gets a deny-by-default WASI: no files, no
//!   network, no environment, no arguments; its stdout and stderr go to the
//!   host log, tagged with the plugin.

use std::collections::BTreeMap;
use std::hash::{Hash as _, Hasher as _};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::contract::{Linked, Outcome, Param, PluginMetadata, RunError, Strategy, Version};
use crate::files;
use crate::limits::{Limit, LimitBreach, Limits};
use crate::session::Session;

pub mod budget;
mod code_cache;
use budget::Budget;
pub use code_cache::CacheUsage;
use code_cache::CodeCache;

/// How often the epoch advances; the wall-clock deadline's resolution.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Ticks between two looks at the wall-clock deadline and the brakes.
const BRAKE_TICKS: u64 = 10;
/// A stopped run's grace, on the wall clock.
const STOP_GRACE: Duration = Duration::from_millis(crate::guard::GRACE_MS);
/// Fuel between cooperative yields, so a busy plugin cannot starve the host.
const FUEL_YIELD_INTERVAL: u64 = 10_000_000;
/// Most bytes a WASI plugin may print to stdout or stderr per run.
const STDIO_CAPACITY: usize = 1024 * 1024;
/// The largest component file the host reads (Python's runtime, the largest
/// we ship, is about 18 MB).
pub(crate) const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;

/// Compiles and runs plugin components.
pub struct Sandbox {
    cache: CodeCache,
    /// One engine per stack cap: the stack limit is an engine setting.
    engines: Arc<Mutex<BTreeMap<usize, Engine>>>,
    ticker: Option<JoinHandle<()>>,
    /// Dropped to stop the ticker: its wait ends at once, so a run's exit
    /// does not wait out the rest of a tick.
    stop: Option<mpsc::Sender<()>>,
}

/// A component compiled for one engine.
#[derive(Clone)]
pub struct Compiled {
    /// The engine it was compiled for: its settings are the sandbox's.
    pub engine: Engine,
    /// The stack cap of that engine, in bytes.
    pub stack_bytes: usize,
    /// The machine code.
    pub component: Component,
    /// Hex sha256 of the component file.
    pub sha256: String,
    /// Whether the machine code came from the disk cache.
    pub from_cache: bool,
    /// How long loading (from cache) or compiling took.
    pub load_time: Duration,
    /// Names of the component's imports.
    pub imports: Vec<String>,
    /// Names of the component's exports.
    pub exports: Vec<String>,
}

impl Compiled {
    /// Whether the component imports any `wasi:*` interface.
    pub fn imports_wasi(&self) -> bool {
        self.imports.iter().any(|name| name.starts_with("wasi:"))
    }
}

/// A component linked against this host, ready to instantiate cheaply.
#[derive(Clone)]
pub struct Prepared {
    /// What it was linked from.
    pub compiled: Compiled,
    pre: Linked<StoreState>,
}

/// What a remembered `metadata()` answer was asked under.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct MetadataQuestion {
    contract: String,
    limits: Limits,
}

impl MetadataQuestion {
    /// A short name for the question, part of the answer's file name.
    fn key(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex(&Sha256::digest(json)[..8])
    }
}

/// A `metadata()` answer on disk, with what it was asked under.
#[derive(serde::Serialize, serde::Deserialize)]
struct RememberedMetadata {
    question: MetadataQuestion,
    metadata: PluginMetadata,
}

/// Why a plugin file could not be compiled or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The file is not one the host reads, or could not be read.
    #[error("{0}")]
    File(files::FileProblem),
    /// The bytes are not a component this host can compile.
    #[error("not a valid WebAssembly component: {0:#}")]
    Invalid(anyhow::Error),
    /// The engine could not be set up (a host problem, not the plugin's).
    #[error("cannot set up the engine: {0:#}")]
    Engine(anyhow::Error),
}

/// Why a plugin run produced no outcome.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunFailure {
    /// A limit was breached.
    #[error(transparent)]
    Limit(#[from] LimitBreach),
    /// The plugin trapped (a panic, an unreachable, a bad memory access…).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The plugin returned its own error.
    #[error("plugin failed: {0}")]
    Plugin(String),
    /// The host failed, not the plugin (an engine that could not be set up,
    /// a journal that could not be written).
    #[error("host fault: {0}")]
    Host(String),
    /// The run was stopped (a stop condition or the kill switch) and the
    /// plugin did not return within its grace.
    #[error("stopped: {0}")]
    Stopped(String),
}

/// What a store holds: the session and the sandbox's own bookkeeping.
pub(crate) struct StoreState {
    session: Session,
    budget: Budget,
    wasi: WasiCtx,
    table: ResourceTable,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Sandbox {
    /// A sandbox caching compiled code in `cache_dir`.
    pub fn new(cache_dir: &Path) -> anyhow::Result<Sandbox> {
        let engines: Arc<Mutex<BTreeMap<usize, Engine>>> = Arc::default();
        let (stop, stopped) = mpsc::channel::<()>();
        let ticker = {
            let engines = Arc::clone(&engines);
            std::thread::Builder::new()
                .name("wasmonkey-epoch".into())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                        if let Ok(engines) = engines.lock() {
                            engines.values().for_each(Engine::increment_epoch);
                        }
                    }
                })
                .context("starting the epoch ticker thread")?
        };
        Ok(Sandbox {
            cache: CodeCache::open(cache_dir)?,
            engines,
            ticker: Some(ticker),
            stop: Some(stop),
        })
    }

    /// What the compiled-code cache in `dir` holds.
    pub(crate) fn cache_usage(dir: &Path) -> anyhow::Result<CacheUsage> {
        Ok(CodeCache::open(dir)?.usage())
    }

    /// Prune the compiled-code cache in `dir` of what went unused for
    /// `max_age`; answers what was removed.
    pub(crate) fn prune_cache(dir: &Path, max_age: Duration) -> anyhow::Result<CacheUsage> {
        Ok(CodeCache::open(dir)?.prune(max_age))
    }

    /// The engine for a stack cap, created on first use.
    pub fn engine(&self, stack_bytes: usize) -> anyhow::Result<Engine> {
        let mut engines = self
            .engines
            .lock()
            .map_err(|_| anyhow::anyhow!("engine table poisoned"))?;
        if let Some(engine) = engines.get(&stack_bytes) {
            return Ok(engine.clone());
        }
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(stack_bytes)
            // Host functions run on the same fiber stack as the plugin.
            .async_stack_size(stack_bytes + 2 * 1024 * 1024);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        engines.insert(stack_bytes, engine.clone());
        Ok(engine)
    }

    /// Load a plugin file: its machine code from the cache when the file is
    /// unchanged since it was last hashed (without reading the file), else
    /// read, hash and [`Sandbox::compile`] it. The file must be a regular
    /// file of at most [`MAX_COMPONENT_BYTES`], checked on the open
    /// descriptor before a byte is read.
    pub fn compile_file(&self, path: &Path, stack_bytes: usize) -> Result<Compiled, CompileError> {
        let started = Instant::now();
        let engine = self.engine(stack_bytes).map_err(CompileError::Engine)?;
        // Taken before the read: a write after it changes the fingerprint.
        let (file, metadata) =
            files::open(path, MAX_COMPONENT_BYTES).map_err(CompileError::File)?;
        let known = self.cache.known_sha256(path, &metadata);
        if let Some(hit) =
            known.and_then(|sha256| self.cached(&engine, stack_bytes, &sha256, started))
        {
            return Ok(hit);
        }
        let bytes = files::read(file, MAX_COMPONENT_BYTES).map_err(CompileError::File)?;
        let compiled = self.compile_with(engine, stack_bytes, &bytes, started)?;
        self.cache
            .remember_sha256(path, &metadata, &compiled.sha256);
        Ok(compiled)
    }

    /// Compile a component, or load its machine code from the cache.
    pub fn compile(&self, bytes: &[u8], stack_bytes: usize) -> Result<Compiled, CompileError> {
        let started = Instant::now();
        let engine = self.engine(stack_bytes).map_err(CompileError::Engine)?;
        self.compile_with(engine, stack_bytes, bytes, started)
    }

    /// The component `sha256` for `engine`, from the cache, if it is there.
    fn cached(
        &self,
        engine: &Engine,
        stack_bytes: usize,
        sha256: &str,
        started: Instant,
    ) -> Option<Compiled> {
        let entry = self.cache.entry(sha256, compatibility(engine));
        let component = load_entry(engine, &entry)?;
        Some(compiled(
            engine.clone(),
            stack_bytes,
            component,
            sha256.to_owned(),
            true,
            started,
        ))
    }

    fn compile_with(
        &self,
        engine: Engine,
        stack_bytes: usize,
        bytes: &[u8],
        started: Instant,
    ) -> Result<Compiled, CompileError> {
        let sha256 = hex(&Sha256::digest(bytes));
        if let Some(hit) = self.cached(&engine, stack_bytes, &sha256, started) {
            return Ok(hit);
        }
        // Whoever else compiles this component now finishes first; then the
        // entry is there to load.
        let entry = self.cache.entry(&sha256, compatibility(&engine));
        let lock = self.cache.lock(&entry);
        if let Some(hit) = self.cached(&engine, stack_bytes, &sha256, started) {
            return Ok(hit);
        }
        let machine_code = engine
            .precompile_component(bytes)
            .map_err(|err| CompileError::Invalid(err.into()))?;
        if let Err(err) = self.cache.store(&entry, &machine_code) {
            tracing::warn!(
                "cannot cache compiled plugin at {}: {err:#}",
                entry.display()
            );
        }
        drop(lock);
        // SAFETY: produced just above by this engine.
        #[allow(unsafe_code, reason = "loading machine code wasmtime just wrote")]
        let component = unsafe { Component::deserialize(&engine, &machine_code) }
            .map_err(|err| CompileError::Invalid(err.into()))?;
        Ok(compiled(
            engine,
            stack_bytes,
            component,
            sha256,
            false,
            started,
        ))
    }

    /// Link a compiled component against this host's contract (and the
    /// deny-by-default WASI, if it asks for WASI).
    pub fn prepare(&self, compiled: Compiled) -> anyhow::Result<Prepared> {
        let named = compiled.imports.iter().chain(&compiled.exports);
        let version = Version::of_interfaces(named.map(String::as_str)).map_err(|why| {
            anyhow::anyhow!("the component does not fit this host's contract: {why}")
        })?;
        let mut linker = Linker::<StoreState>::new(&compiled.engine);
        version
            .add_to_linker(&mut linker, |state| &mut state.session)
            .map_err(anyhow::Error::from)?;
        if compiled.imports_wasi() {
            wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        }
        let pre = linker
            .instantiate_pre(&compiled.component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "the component does not fit this host's world ({} strategy-plugin); it imports {:?}",
                    version.package(),
                    compiled.imports
                )
            })?;
        let pre = Linked::new(version, pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "the component does not export {}'s strategy interface",
                    version.package()
                )
            })?;
        Ok(Prepared { compiled, pre })
    }

    /// The same component, linked for the engine of `limits`' stack cap. The
    /// stack cap is an engine setting, so a run whose limits differ from
    /// those the component was loaded under (an experiment's `stack_kib`,
    /// `metadata()`'s own cap) must run on the engine its limits name.
    pub(crate) fn prepared_for(
        &self,
        prepared: &Prepared,
        limits: &Limits,
    ) -> anyhow::Result<Prepared> {
        let stack_bytes = limits.stack_bytes();
        if prepared.compiled.stack_bytes == stack_bytes {
            return Ok(prepared.clone());
        }
        let started = Instant::now();
        let engine = self.engine(stack_bytes)?;
        let sha256 = prepared.compiled.sha256.clone();
        let entry = self.cache.entry(&sha256, compatibility(&engine));
        let component = match load_entry(&engine, &entry) {
            Some(component) => component,
            None => {
                // Engines that differ only in their stack cap share machine code.
                let machine_code = prepared
                    .compiled
                    .component
                    .serialize()
                    .map_err(anyhow::Error::from)?;
                if let Err(err) = self.cache.store(&entry, &machine_code) {
                    tracing::warn!(
                        "cannot cache compiled plugin at {}: {err:#}",
                        entry.display()
                    );
                }
                // SAFETY: serialized just above by wasmtime from a component
                // it compiled; deserialize checks the engine's settings.
                #[allow(unsafe_code, reason = "loading machine code wasmtime just wrote")]
                let component = unsafe { Component::deserialize(&engine, &machine_code) };
                component.map_err(anyhow::Error::from)?
            }
        };
        self.prepare(compiled(
            engine,
            stack_bytes,
            component,
            sha256,
            true,
            started,
        ))
    }

    /// Call the plugin's `metadata()` in a store whose imports all trap.
    pub async fn metadata(
        &self,
        prepared: &Prepared,
        limits: &Limits,
    ) -> Result<PluginMetadata, RunFailure> {
        let session = Session::inert(limits);
        let (_, result) = self
            .call(prepared, session, |plugin, store| {
                Box::pin(async move { plugin.metadata(store).await })
            })
            .await;
        result
    }

    /// The plugin's `metadata()`, as [`Sandbox::metadata`] answers it, but
    /// remembered on disk per component, contract and limits: a component
    /// that already answered under these limits starts no instance. Failures
    /// are not remembered, so a plugin that failed is asked again.
    pub(crate) async fn metadata_remembered(
        &self,
        prepared: &Prepared,
        limits: &Limits,
    ) -> Result<PluginMetadata, RunFailure> {
        let question = MetadataQuestion {
            contract: prepared.pre.version().package().to_owned(),
            limits: *limits,
        };
        let sha256 = &prepared.compiled.sha256;
        let key = question.key();
        if let Some(answer) = self.cache.answer(sha256, &key) {
            match serde_json::from_slice::<RememberedMetadata>(&answer) {
                Ok(remembered) if remembered.question == question => {
                    return Ok(remembered.metadata);
                }
                _ => tracing::debug!("ignoring a damaged metadata answer of {sha256}"),
            }
        }
        let metadata = self.metadata(prepared, limits).await?;
        let remembered = RememberedMetadata { question, metadata };
        if let Ok(answer) = serde_json::to_vec(&remembered) {
            self.cache.remember_answer(sha256, &key, &answer);
        }
        Ok(remembered.metadata)
    }

    /// A fresh store and instance under `limits`, dropped at once: what every
    /// call to a plugin costs before its own code runs.
    pub async fn instantiate(
        &self,
        prepared: &Prepared,
        limits: &Limits,
    ) -> Result<(), RunFailure> {
        let (_, result) = self
            .call(prepared, Session::inert(limits), |_, _| {
                Box::pin(async { Ok(()) })
            })
            .await;
        result
    }

    /// Run the plugin's experiment. The session comes back, whatever
    /// happened, so the host can finish watching recovery and journal.
    pub async fn run(
        &self,
        prepared: &Prepared,
        session: Session,
        params: Vec<Param>,
    ) -> (Session, Result<Result<Outcome, RunError>, RunFailure>) {
        self.call(prepared, session, move |plugin, store| {
            Box::pin(async move { plugin.run(store, &params).await })
        })
        .await
    }

    async fn call<R: Send + 'static>(
        &self,
        prepared: &Prepared,
        session: Session,
        body: impl for<'a> FnOnce(
                &'a Strategy,
                &'a mut Store<StoreState>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = wasmtime::Result<R>> + Send + 'a>,
            > + Send,
    ) -> (Session, Result<R, RunFailure>) {
        let limits = *session.limits();
        let label = session.plugin().to_string();
        let prepared = match self.prepared_for(prepared, &limits) {
            Ok(prepared) => prepared,
            Err(err) => {
                let failure = RunFailure::Host(format!(
                    "cannot set up the engine for a {} KiB stack: {err:#}",
                    limits.stack_kib
                ));
                return (session, Err(failure));
            }
        };
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        // Deny by default: no preopened directories, no env, no args, and
        // no network of any kind.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = StoreState {
            session,
            budget: Budget::new(limits.memory_bytes()),
            wasi,
            table: ResourceTable::new(),
            stdout: stdout.clone(),
            stderr: stderr.clone(),
        };
        let mut store = Store::new(&prepared.compiled.engine, state);
        store.limiter(|state| &mut state.budget);
        // wasmtime copies a host call's arguments out of the plugin before
        // the host sees them: bound that copy, not only what arrives.
        store.set_hostcall_fuel(limits.host_call_bytes());
        let configured = store
            .set_fuel(limits.fuel)
            .and_then(|()| store.fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL)));
        // The clock's own brakes, looked at every few ticks whether or not
        // the plugin calls the host: its wall-clock deadline, and the
        // grace of a stopped run (a pause or a stop condition tripped
        // while it computes).
        let deadline = Instant::now() + limits.timeout();
        let guard = std::sync::Arc::clone(store.data().session.guard());
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                return Err(wasmtime::Error::new(Trap::Interrupt));
            }
            if let Some(trip) = guard.tripped() {
                if guard.stopped_for().is_some_and(|since| since >= STOP_GRACE) {
                    return Err(wasmtime::Error::new(crate::session::Stopped(
                        crate::guard::Guard::past_grace(&trip),
                    )));
                }
            }
            Ok(wasmtime::UpdateDeadline::Yield(BRAKE_TICKS))
        });
        store.set_epoch_deadline(BRAKE_TICKS);

        let result = match configured {
            Err(err) => Err(RunFailure::Trap(format!("configuring the store: {err}"))),
            Ok(()) => {
                let run = async {
                    let plugin = prepared.pre.instantiate(&mut store).await?;
                    body(&plugin, &mut store).await
                };
                match tokio::time::timeout(limits.timeout(), run).await {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(err)) => Err(classify(&err, &limits)),
                    Err(_) => Err(RunFailure::Limit(LimitBreach::new(
                        Limit::Timeout,
                        format!(
                            "the run took longer than {} s of wall-clock time",
                            limits.timeout_secs
                        ),
                    ))),
                }
            }
        };
        let state = store.into_data();
        forward_stdio(&label, "stdout", &state.stdout);
        forward_stdio(&label, "stderr", &state.stderr);
        (state.session, result)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// Name the limit behind a wasmtime error, or keep the trap's message.
fn classify(err: &wasmtime::Error, limits: &Limits) -> RunFailure {
    if let Some(breach) = err.downcast_ref::<LimitBreach>() {
        return RunFailure::Limit(breach.clone());
    }
    if let Some(fault) = err.downcast_ref::<crate::session::HostFault>() {
        return RunFailure::Host(fault.0.clone());
    }
    if let Some(stopped) = err.downcast_ref::<crate::session::Stopped>() {
        return RunFailure::Stopped(stopped.0.clone());
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => RunFailure::Limit(LimitBreach::new(
            Limit::Fuel,
            format!("the plugin used all {} units of fuel", limits.fuel),
        )),
        Some(Trap::Interrupt) => RunFailure::Limit(LimitBreach::new(
            Limit::Timeout,
            format!(
                "the run took longer than {} s of wall-clock time",
                limits.timeout_secs
            ),
        )),
        Some(Trap::StackOverflow) => RunFailure::Limit(LimitBreach::new(
            Limit::Stack,
            format!("the plugin's call stack exceeded {} KiB", limits.stack_kib),
        )),
        _ if hostcall_fuel_exhausted(err) => RunFailure::Limit(LimitBreach::new(
            Limit::HostCallBytes,
            format!(
                "the plugin passed more than {} bytes in one host call or answer; \
                 wasmtime stopped before copying them",
                limits.host_call_bytes()
            ),
        )),
        _ => RunFailure::Trap(format!("{err:#}")),
    }
}

/// Whether wasmtime stopped a copy out of the plugin at the store's hostcall
/// fuel. Its error type is private, so its message is what tells (a test
/// breaks if a wasmtime upgrade changes it).
fn hostcall_fuel_exhausted(err: &wasmtime::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

fn forward_stdio(plugin: &str, stream: &str, pipe: &MemoryOutputPipe) {
    let bytes = pipe.contents();
    for line in String::from_utf8_lossy(&bytes).lines() {
        let line = crate::text::shown(line, crate::session::MAX_LOG_LINE_BYTES);
        tracing::info!(plugin = %crate::text::one_line(plugin), stream, "{line}");
    }
}

/// The engine's compatibility hash, folded to name cache entries.
fn compatibility(engine: &Engine) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// A cache entry, mapped; `None` (after a warning if it is unusable) when
/// there is none to use.
fn load_entry(engine: &Engine, entry: &Path) -> Option<Component> {
    if !entry.is_file() {
        return None;
    }
    // SAFETY: entries are only created by `CodeCache::store`, whole, from
    // what `Engine::precompile_component` wrote, and never changed in place
    // (wasmtime checks the header and the compatibility hash again). The
    // cache directory must be as trusted as the host binary.
    #[allow(unsafe_code, reason = "loading cached machine code")]
    let loaded = unsafe { Component::deserialize_file(engine, entry) };
    match loaded {
        Ok(component) => {
            CodeCache::touch(entry);
            Some(component)
        }
        Err(err) => {
            tracing::warn!("ignoring unusable cache entry {}: {err:#}", entry.display());
            None
        }
    }
}

fn compiled(
    engine: Engine,
    stack_bytes: usize,
    component: Component,
    sha256: String,
    from_cache: bool,
    started: Instant,
) -> Compiled {
    let kind = component.component_type();
    let imports = kind
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports = kind
        .exports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    Compiled {
        engine,
        stack_bytes,
        component,
        sha256,
        from_cache,
        load_time: started.elapsed(),
        imports,
        exports,
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ticker alone ends a plugin that never yields to the host (the
    /// timeout around a call can only act when the plugin yields): an
    /// endless loop with fuel to spare traps at its epoch deadline.
    #[test]
    fn the_epoch_ticker_interrupts_a_loop_that_never_yields() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path()).unwrap();
        let engine = sandbox.engine(512 * 1024).unwrap();
        let wasm = wat::parse_str(r#"(module (func (export "spin") (loop (br 0))))"#).unwrap();
        let module = wasmtime::Module::new(&engine, wasm).unwrap();
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let mut store = wasmtime::Store::new(&engine, ());
            store.set_fuel(u64::MAX).unwrap();
            store.set_epoch_deadline(2);
            store.epoch_deadline_trap();
            let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
            let spin = instance
                .get_typed_func::<(), ()>(&mut store, "spin")
                .unwrap();
            let _ = done.send(spin.call(&mut store, ()));
        });
        // Two ticks are 20 ms: ten seconds without an answer is no tick.
        let answer = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the loop was never interrupted: the epoch does not advance");
        let err = answer.expect_err("an endless loop cannot return");
        assert_eq!(
            err.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt),
            "{err:?}"
        );
        drop(sandbox);
    }

    /// A component that imports nothing of the contract is linked as the
    /// version its strategy export names, not the newest: the export here
    /// is an empty 0.1.0 interface, so linking fails naming 0.1.0.
    #[test]
    fn the_contract_version_is_read_from_the_exports_too() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::new(dir.path()).unwrap();
        let wasm = wat::parse_str(
            r#"(component
                (instance $strategy)
                (export "wasmonkey:chaos/strategy@0.1.0" (instance $strategy)))"#,
        )
        .unwrap();
        let compiled = sandbox.compile(&wasm, 512 * 1024).unwrap();
        assert!(compiled.imports.is_empty(), "{:?}", compiled.imports);
        let Err(err) = sandbox.prepare(compiled) else {
            panic!("an empty strategy interface was linked");
        };
        let err = format!("{err:#}");
        assert!(
            err.contains("wasmonkey:chaos@0.1.0") && !err.contains("0.2.0"),
            "{err}"
        );
    }
}
