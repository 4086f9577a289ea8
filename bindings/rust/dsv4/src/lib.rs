//! Safe Rust API of libdsv4: DeepSeek-V4 language models on the CPU.
//!
//! Objects free themselves on `Drop`; the library counts references (a session keeps its context
//! and model alive, a generator its session and tokenizer), so they may be dropped in any order.
//! Every fallible call returns `Result<T, dsv4::Error>` carrying the library's message.
//!
//! Threads (docs/THREADS.md): [`Model`] and [`Tokenizer`] are `Send + Sync`. A [`Context`] and
//! the [`Session`]s and [`Generator`]s made on it are `Send` but not `Sync`: one thread at a time,
//! and they may migrate. Because the library's rule covers a context *together with* its sessions,
//! every call on them also takes the context's lock, so two of them moved to two threads take
//! turns instead of racing. [`Canceller`] (from [`Generator::canceller`]) is `Send + Sync`: any
//! thread may cancel a generation at any time.

use dsv4_sys as sys;
use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::os::raw::c_char;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex, MutexGuard};

pub mod json;

/// ABI major this crate is written against.
pub const ABI_VERSION: u32 = sys::DSV4_ABI_VERSION as u32;

/// A failed call: the status code (`dsv4_status`) and the library's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: i32,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Status codes (docs/ERRORS.md).
pub mod status {
    pub const INVALID_ARGUMENT: i32 = 1;
    pub const OUT_OF_MEMORY: i32 = 2;
    pub const IO: i32 = 3;
    pub const BAD_FORMAT: i32 = 4;
    pub const BAD_CONFIG: i32 = 5;
    pub const UNSUPPORTED: i32 = 6;
    pub const MISSING_TENSOR: i32 = 7;
    pub const TENSOR_MISMATCH: i32 = 8;
    pub const CONTEXT_FULL: i32 = 9;
    pub const ABORTED: i32 = 10;
    pub const BUFFER_TOO_SMALL: i32 = 11;
    pub const UNKNOWN_OPTION: i32 = 12;
    pub const NOT_AVAILABLE: i32 = 13;
    pub const INTERNAL: i32 = 14;
}

impl Error {
    fn new(status: i32, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }
    /// The library's static text for the status ("invalid argument", ...).
    pub fn status_text(&self) -> String {
        unsafe { cstr(sys::dsv4_status_string(self.status)) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "dsv4: {}", self.status_text())
        } else {
            write!(f, "dsv4: {}: {}", self.status_text(), self.message)
        }
    }
}

impl std::error::Error for Error {}

unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Copy and free a string returned through `char **`.
unsafe fn take(p: *mut c_char) -> Option<Vec<u8>> {
    if p.is_null() {
        return None;
    }
    let v = CStr::from_ptr(p).to_bytes().to_vec();
    sys::dsv4_free(p as *mut _);
    Some(v)
}

unsafe fn take_msg(p: *mut c_char) -> String {
    take(p).map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default()
}

fn check(st: sys::dsv4_status, msg: impl FnOnce() -> String) -> Result<()> {
    if st == 0 {
        Ok(())
    } else {
        Err(Error::new(st, msg()))
    }
}

fn c_path(p: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::new(status::INVALID_ARGUMENT, "path holds a NUL byte"))
}

/// Release of the loaded library ("0.1.0").
pub fn version() -> String {
    unsafe { cstr(sys::dsv4_version_string()) }
}

fn abi_check(found: u32, version: &str) -> Result<()> {
    if found != ABI_VERSION {
        return Err(Error::new(
            status::UNSUPPORTED,
            format!(
                "the loaded libdsv4 (release {}) has ABI version {}; this binding needs ABI version {}",
                version, found, ABI_VERSION
            ),
        ));
    }
    Ok(())
}

/// Check the loaded library's ABI major (every constructor does).
pub fn check_library() -> Result<()> {
    abi_check(unsafe { sys::dsv4_abi_version() }, &version())
}

#[doc(hidden)]
pub fn __abi_check_for_tests(found: u32, version: &str) -> Result<()> {
    abi_check(found, version)
}

struct Options(*mut sys::dsv4_options);

impl Options {
    fn new() -> Result<Options> {
        let mut p = ptr::null_mut();
        check(unsafe { sys::dsv4_options_create(&mut p) }, || "options".into())?;
        Ok(Options(p))
    }
    fn set(&self, key: u32, name: &str, v: Option<i64>) -> Result<()> {
        if let Some(v) = v {
            check(unsafe { sys::dsv4_options_set_i64(self.0, key as i32, v) }, || format!("option {}={}", name, v))?;
        }
        Ok(())
    }
}

impl Drop for Options {
    fn drop(&mut self) {
        unsafe { sys::dsv4_options_free(self.0) }
    }
}

type Domain = Arc<Mutex<()>>;

fn lock(d: &Domain) -> MutexGuard<'_, ()> {
    d.lock().unwrap_or_else(|e| e.into_inner())
}

type NotSync = PhantomData<Cell<()>>;

// ------------------------------------------------------------------------------------------------
// model
// ------------------------------------------------------------------------------------------------

/// Options of a model load; `None` = the library's default.
#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    pub load_mtp: Option<bool>,
    pub prefetch: Option<bool>,
    /// default true: the weights every token reads are copied to anonymous memory
    pub resident: Option<bool>,
}

/// A checkpoint directory mapped read-only. `Send + Sync`.
pub struct Model {
    p: NonNull<sys::dsv4_model>,
    path: PathBuf,
}

unsafe impl Send for Model {}
unsafe impl Sync for Model {}

/// Keys of [`Model::info`].
pub mod info {
    pub const VOCAB_SIZE: i32 = 2;
    pub const HIDDEN_SIZE: i32 = 3;
    pub const N_LAYERS: i32 = 4;
    pub const MAX_POSITION: i32 = 16;
}

impl Model {
    /// Load a checkpoint directory (official Hugging Face layout).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &ModelOptions::default())
    }

    pub fn load_with(path: impl AsRef<Path>, opt: &ModelOptions) -> Result<Model> {
        check_library()?;
        let o = Options::new()?;
        o.set(sys::DSV4_OPT_LOAD_MTP, "load_mtp", opt.load_mtp.map(i64::from))?;
        o.set(sys::DSV4_OPT_PREFETCH, "prefetch", opt.prefetch.map(i64::from))?;
        o.set(sys::DSV4_OPT_RESIDENT, "resident", opt.resident.map(i64::from))?;
        let cp = c_path(path.as_ref())?;
        let mut p = ptr::null_mut();
        let mut msg = ptr::null_mut();
        let st = unsafe { sys::dsv4_model_load(cp.as_ptr(), o.0, &mut p, &mut msg) };
        check(st, || unsafe { take_msg(msg) })?;
        Ok(Model { p: NonNull::new(p).expect("model"), path: path.as_ref().to_path_buf() })
    }

    /// One integer fact ([`info`] keys).
    pub fn info(&self, key: i32) -> Result<i64> {
        let mut info = ptr::null_mut();
        check(unsafe { sys::dsv4_model_get_info(self.p.as_ptr(), &mut info) }, || "model info".into())?;
        let mut v = 0i64;
        let st = unsafe { sys::dsv4_model_info_get_i64(info, key, &mut v) };
        unsafe { sys::dsv4_model_info_free(info) };
        check(st, || format!("info key {}", key))?;
        Ok(v)
    }

    pub fn vocab_size(&self) -> usize {
        self.info(info::VOCAB_SIZE).unwrap_or(0) as usize
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokenizer.json of the model's directory.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        Tokenizer::load(self.path.join("tokenizer.json"))
    }

    /// A context on this model.
    pub fn context(&self, opt: &ContextOptions) -> Result<Context> {
        let o = Options::new()?;
        o.set(sys::DSV4_OPT_THREADS, "threads", opt.threads)?;
        o.set(sys::DSV4_OPT_CONTEXT_LENGTH, "context_length", opt.context_length)?;
        o.set(sys::DSV4_OPT_NUMERICS, "numerics", opt.numerics)?;
        o.set(sys::DSV4_OPT_MAX_BATCH, "max_batch", opt.max_batch)?;
        o.set(sys::DSV4_OPT_WORKER_SPIN, "worker_spin", opt.worker_spin)?;
        let mut p = ptr::null_mut();
        let mut msg = ptr::null_mut();
        let st = unsafe { sys::dsv4_context_create(self.p.as_ptr(), o.0, &mut p, &mut msg) };
        check(st, || unsafe { take_msg(msg) })?;
        Ok(Context { p: NonNull::new(p).expect("context"), d: Arc::new(Mutex::new(())), vocab: self.vocab_size(), _ns: PhantomData })
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { sys::dsv4_model_free(self.p.as_ptr()) }
    }
}

/// Options of a context; `None` = the library's default.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    pub threads: Option<i64>,
    pub context_length: Option<i64>,
    /// [`NUMERICS_REFERENCE`] (default) or [`NUMERICS_FLOAT`].
    pub numerics: Option<i64>,
    pub max_batch: Option<i64>,
    pub worker_spin: Option<i64>,
}

pub const NUMERICS_REFERENCE: i64 = sys::DSV4_NUMERICS_REFERENCE as i64;
pub const NUMERICS_FLOAT: i64 = sys::DSV4_NUMERICS_FLOAT as i64;

/// Worker threads, scratch memory and the KV capacity of its sessions. `Send`, not `Sync`:
/// ```compile_fail,E0277
/// fn sync<T: Sync>() {}
/// sync::<dsv4::Context>();
/// ```
pub struct Context {
    p: NonNull<sys::dsv4_context>,
    d: Domain,
    vocab: usize,
    _ns: NotSync,
}

unsafe impl Send for Context {}

impl Context {
    /// A session (one conversation) at position 0.
    pub fn session(&self) -> Result<Session> {
        let _g = lock(&self.d);
        let mut p = ptr::null_mut();
        let mut msg = ptr::null_mut();
        let st = unsafe { sys::dsv4_session_create(self.p.as_ptr(), ptr::null(), &mut p, &mut msg) };
        check(st, || unsafe { take_msg(msg) })?;
        Ok(Session { p: NonNull::new(p).expect("session"), d: self.d.clone(), vocab: self.vocab, _ns: PhantomData })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let _g = lock(&self.d);
        unsafe { sys::dsv4_context_free(self.p.as_ptr()) }
    }
}

/// One conversation: position and KV state. `Send`, not `Sync`:
/// ```compile_fail,E0277
/// fn sync<T: Sync>() {}
/// sync::<dsv4::Session>();
/// ```
pub struct Session {
    p: NonNull<sys::dsv4_session>,
    d: Domain,
    vocab: usize,
    _ns: NotSync,
}

unsafe impl Send for Session {}

impl Session {
    fn fail(&self, st: i32) -> Error {
        Error::new(st, unsafe { cstr(sys::dsv4_session_last_error(self.p.as_ptr())) })
    }

    /// Feed tokens at the current position (`all_logits`: keep the logits of every position fed).
    pub fn eval(&mut self, tokens: &[i32], all_logits: bool) -> Result<()> {
        let _g = lock(&self.d);
        let flags = if all_logits { sys::DSV4_EVAL_ALL_LOGITS } else { 0 };
        let st = unsafe { sys::dsv4_session_eval(self.p.as_ptr(), tokens.as_ptr(), tokens.len() as _, flags) };
        if st != 0 {
            return Err(self.fail(st));
        }
        Ok(())
    }

    /// Copy the logits after absolute position `pos` (-1: the last fed) into `dst`.
    pub fn logits_into(&self, dst: &mut [f32], pos: i64) -> Result<()> {
        let _g = lock(&self.d);
        let st = unsafe { sys::dsv4_session_logits(self.p.as_ptr(), pos, dst.as_mut_ptr(), dst.len() as _) };
        if st != 0 {
            return Err(self.fail(st));
        }
        Ok(())
    }

    /// The logits after absolute position `pos` (-1: the last fed).
    pub fn logits(&self, pos: i64) -> Result<Vec<f32>> {
        let mut v = vec![0f32; self.vocab];
        self.logits_into(&mut v, pos)?;
        Ok(v)
    }

    pub fn position(&self) -> i64 {
        let _g = lock(&self.d);
        unsafe { sys::dsv4_session_position(self.p.as_ptr()) }
    }

    pub fn reset(&mut self) -> Result<()> {
        let _g = lock(&self.d);
        let st = unsafe { sys::dsv4_session_reset(self.p.as_ptr()) };
        if st != 0 {
            return Err(self.fail(st));
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _g = lock(&self.d);
        unsafe { sys::dsv4_session_free(self.p.as_ptr()) }
    }
}

// ------------------------------------------------------------------------------------------------
// tokenizer
// ------------------------------------------------------------------------------------------------

/// A tokenizer.json (byte-level BPE). `Send + Sync`.
pub struct Tokenizer {
    p: NonNull<sys::dsv4_tokenizer>,
}

unsafe impl Send for Tokenizer {}
unsafe impl Sync for Tokenizer {}

/// Flags of [`Tokenizer::encode`].
pub const ENCODE_ADD_BOS: u32 = sys::DSV4_ENCODE_ADD_BOS;
pub const ENCODE_NO_SPECIAL: u32 = sys::DSV4_ENCODE_NO_SPECIAL;
/// Named special tokens of [`Tokenizer::special_id`].
pub const TOKEN_BOS: i32 = sys::DSV4_TOKEN_BOS as i32;
pub const TOKEN_EOS: i32 = sys::DSV4_TOKEN_EOS as i32;

impl Tokenizer {
    pub fn load(path: impl AsRef<Path>) -> Result<Tokenizer> {
        check_library()?;
        let cp = c_path(path.as_ref())?;
        let mut p = ptr::null_mut();
        let mut msg = ptr::null_mut();
        let st = unsafe { sys::dsv4_tokenizer_load(cp.as_ptr(), ptr::null(), &mut p, &mut msg) };
        check(st, || unsafe { take_msg(msg) })?;
        Ok(Tokenizer { p: NonNull::new(p).expect("tokenizer") })
    }

    /// Token ids of UTF-8 text.
    pub fn encode(&self, text: &str, flags: u32) -> Result<Vec<i32>> {
        let mut ids = vec![0i32; text.len() + 2];
        loop {
            let mut n = 0;
            let mut msg = ptr::null_mut();
            let st = unsafe {
                sys::dsv4_tokenizer_encode(self.p.as_ptr(), text.as_ptr() as *const c_char, text.len() as _, flags,
                                           ids.as_mut_ptr(), ids.len() as _, &mut n, &mut msg)
            };
            if st == sys::DSV4_ERR_BUFFER_TOO_SMALL as i32 && n as usize > ids.len() {
                unsafe { take_msg(msg) };
                ids = vec![0; n as usize];
                continue;
            }
            check(st, || unsafe { take_msg(msg) })?;
            ids.truncate(n as usize);
            return Ok(ids);
        }
    }

    /// The bytes of token ids.
    pub fn decode_bytes(&self, ids: &[i32]) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; 16 * ids.len() + 16];
        loop {
            let mut n = 0;
            let st = unsafe {
                sys::dsv4_tokenizer_decode(self.p.as_ptr(), ids.as_ptr(), ids.len() as _, buf.as_mut_ptr() as *mut c_char,
                                           buf.len() as _, &mut n)
            };
            if st == sys::DSV4_ERR_BUFFER_TOO_SMALL as i32 && n as usize > buf.len() {
                buf = vec![0; n as usize];
                continue;
            }
            check(st, || "decode: an id is out of range or not in the vocabulary".into())?;
            buf.truncate(n as usize);
            return Ok(buf);
        }
    }

    /// The text of token ids (invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[i32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    /// Id of a named special token (`TOKEN_EOS`...), None when the tokenizer has none.
    pub fn special_id(&self, which: i32) -> Option<i32> {
        let i = unsafe { sys::dsv4_tokenizer_special_id(self.p.as_ptr(), which) };
        if i < 0 {
            None
        } else {
            Some(i)
        }
    }

    pub fn vocab_size(&self) -> usize {
        unsafe { sys::dsv4_tokenizer_vocab_size(self.p.as_ptr()) as usize }
    }
}

impl Drop for Tokenizer {
    fn drop(&mut self) {
        unsafe { sys::dsv4_tokenizer_free(self.p.as_ptr()) }
    }
}

/// The official DeepSeek-V4 prompt string of a chat request (JSON).
pub fn render_chat(request_json: &str) -> Result<String> {
    let mut out = ptr::null_mut();
    let mut msg = ptr::null_mut();
    let st = unsafe {
        sys::dsv4_chat_render(request_json.as_ptr() as *const c_char, request_json.len() as _, &mut out, &mut msg)
    };
    check(st, || unsafe { take_msg(msg) })?;
    Ok(String::from_utf8_lossy(&unsafe { take(out) }.unwrap_or_default()).into_owned())
}

// ------------------------------------------------------------------------------------------------
// generation
// ------------------------------------------------------------------------------------------------

/// Kinds of [`Event`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Reasoning,
    Content,
    ToolCallStart,
    ToolCallArgs,
    ToolCallEnd,
    Stop,
    /// A kind appended to the library after this crate.
    Other(i32),
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    Error,
    Cancelled,
    Other(i32),
}

impl FinishReason {
    fn from_raw(v: i32) -> FinishReason {
        match v as u32 {
            sys::DSV4_FINISH_STOP => FinishReason::Stop,
            sys::DSV4_FINISH_LENGTH => FinishReason::Length,
            sys::DSV4_FINISH_TOOL_CALLS => FinishReason::ToolCalls,
            sys::DSV4_FINISH_ERROR => FinishReason::Error,
            sys::DSV4_FINISH_CANCELLED => FinishReason::Cancelled,
            _ => FinishReason::Other(v),
        }
    }
    /// The OpenAI name ("stop", "length", "tool_calls", ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::Error => "error",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Other(_) => "other",
        }
    }
}

/// One piece of the streamed answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    /// reasoning/content bytes, a tool's name or a piece of its arguments JSON
    pub data: Vec<u8>,
    /// the tool call's number; -1 for other events
    pub index: i32,
    /// set on `Stop`
    pub finish: Option<FinishReason>,
}

impl Event {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

struct CancelCell(Mutex<*mut sys::dsv4_gen>);
unsafe impl Send for CancelCell {}
unsafe impl Sync for CancelCell {}

/// Cancels a generator's generation from any thread (`Send + Sync + Clone`); a no-op once the
/// generator is dropped.
#[derive(Clone)]
pub struct Canceller(Arc<CancelCell>);

impl Canceller {
    pub fn cancel(&self) {
        let g = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        if !g.is_null() {
            unsafe { sys::dsv4_gen_cancel(*g) }
        }
    }
}

/// Streams the assistant's answer on a session. `Send`, not `Sync`:
/// ```compile_fail,E0277
/// fn sync<T: Sync>() {}
/// sync::<dsv4::Generator>();
/// ```
pub struct Generator {
    p: NonNull<sys::dsv4_gen>,
    d: Domain,
    cancel: Arc<CancelCell>,
    _ns: NotSync,
}

unsafe impl Send for Generator {}

/// Integer settings of [`Generator::set`].
pub mod gen_param {
    pub const MAX_TOKENS: i32 = 1;
    pub const REASONING_EFFORT: i32 = 2;
    pub const REASONING_BUDGET: i32 = 3;
    pub const THINKING: i32 = 4;
    pub const RESPONSE_FORMAT: i32 = 5;
}

/// Settings of [`Generator::set_sampler_f64`] / [`Generator::set_sampler_i64`].
pub mod sampler_param {
    pub const TEMPERATURE: i32 = 1;
    pub const TOP_K: i32 = 2;
    pub const TOP_P: i32 = 3;
    pub const SEED: i32 = 9;
}

impl Generator {
    /// A generator on `session`, decoding with `tokenizer` (both may be dropped before it).
    pub fn new(session: &Session, tokenizer: &Tokenizer) -> Result<Generator> {
        let _g = lock(&session.d);
        let mut p = ptr::null_mut();
        check(unsafe { sys::dsv4_gen_create(session.p.as_ptr(), tokenizer.p.as_ptr(), &mut p) }, || "generator".into())?;
        Ok(Generator {
            p: NonNull::new(p).expect("generator"),
            d: session.d.clone(),
            cancel: Arc::new(CancelCell(Mutex::new(p))),
            _ns: PhantomData,
        })
    }

    fn fail(&self, st: i32) -> Error {
        Error::new(st, unsafe { cstr(sys::dsv4_gen_last_error(self.p.as_ptr())) })
    }

    fn ok(&self, st: i32) -> Result<()> {
        if st == 0 {
            Ok(())
        } else {
            Err(self.fail(st))
        }
    }

    /// A handle any thread may use to cancel the generation in progress.
    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancel.clone())
    }

    /// Integer setting ([`gen_param`]), applied from the next start.
    pub fn set(&mut self, key: i32, value: i64) -> Result<()> {
        let _g = lock(&self.d);
        self.ok(unsafe { sys::dsv4_gen_set_i64(self.p.as_ptr(), key, value) })
    }

    pub fn set_sampler_f64(&mut self, key: i32, value: f64) -> Result<()> {
        let _g = lock(&self.d);
        let s = unsafe { sys::dsv4_gen_sampler(self.p.as_ptr()) };
        check(unsafe { sys::dsv4_sampler_set_f64(s, key, value) }, || format!("sampler setting {} = {}", key, value))
    }

    pub fn set_sampler_i64(&mut self, key: i32, value: i64) -> Result<()> {
        let _g = lock(&self.d);
        let s = unsafe { sys::dsv4_gen_sampler(self.p.as_ptr()) };
        check(unsafe { sys::dsv4_sampler_set_i64(s, key, value) }, || format!("sampler setting {} = {}", key, value))
    }

    /// Start after a prompt of token ids.
    pub fn start(&mut self, prompt: &[i32]) -> Result<()> {
        let _g = lock(&self.d);
        self.ok(unsafe { sys::dsv4_gen_start(self.p.as_ptr(), prompt.as_ptr(), prompt.len() as _) })
    }

    /// Start from an OpenAI chat-completions request (JSON).
    pub fn start_request(&mut self, request_json: &str) -> Result<()> {
        let _g = lock(&self.d);
        self.ok(unsafe {
            sys::dsv4_gen_start_request(self.p.as_ptr(), request_json.as_ptr() as *const c_char, request_json.len() as _)
        })
    }

    /// The next event, generating as needed (after `Stop`, `Stop` again).
    pub fn next_event(&mut self) -> Result<Event> {
        let _g = lock(&self.d);
        let (mut t, mut idx, mut data, mut n) = (0i32, 0i32, ptr::null(), 0);
        self.ok(unsafe { sys::dsv4_gen_next(self.p.as_ptr(), &mut t, &mut idx, &mut data, &mut n) })?;
        let bytes = if data.is_null() || n == 0 {
            Vec::new()
        } else {
            unsafe { std::slice::from_raw_parts(data as *const u8, n as usize) }.to_vec()
        };
        let kind = match t as u32 {
            sys::DSV4_GEN_EVENT_REASONING => EventKind::Reasoning,
            sys::DSV4_GEN_EVENT_CONTENT => EventKind::Content,
            sys::DSV4_GEN_EVENT_TOOL_CALL_START => EventKind::ToolCallStart,
            sys::DSV4_GEN_EVENT_TOOL_CALL_ARGS => EventKind::ToolCallArgs,
            sys::DSV4_GEN_EVENT_TOOL_CALL_END => EventKind::ToolCallEnd,
            sys::DSV4_GEN_EVENT_STOP => EventKind::Stop,
            _ => EventKind::Other(t),
        };
        if kind == EventKind::Stop {
            return Ok(Event { kind, data: bytes, index: -1, finish: Some(FinishReason::from_raw(idx)) });
        }
        Ok(Event { kind, data: bytes, index: idx, finish: None })
    }

    /// Iterator of the events of the current generation, ending with (and including) `Stop`.
    pub fn events(&mut self) -> Events<'_> {
        Events { gen: self, done: false }
    }

    /// Start a request and stream its events.
    pub fn stream(&mut self, request_json: &str) -> Result<Events<'_>> {
        self.start_request(request_json)?;
        Ok(self.events())
    }

    /// Run a request to the end; the chat-completion response JSON.
    pub fn chat(&mut self, request_json: &str) -> Result<String> {
        for ev in self.stream(request_json)? {
            ev?;
        }
        self.response_json()
    }

    /// The chat-completion response JSON of the generation so far (complete after `Stop`).
    pub fn response_json(&self) -> Result<String> {
        let _g = lock(&self.d);
        let mut out = ptr::null_mut();
        self.ok(unsafe { sys::dsv4_gen_response_json(self.p.as_ptr(), &mut out) })?;
        Ok(String::from_utf8_lossy(&unsafe { take(out) }.unwrap_or_default()).into_owned())
    }

    /// Tokens generated so far.
    pub fn n_tokens(&self) -> i64 {
        let _g = lock(&self.d);
        unsafe { sys::dsv4_gen_n_tokens(self.p.as_ptr()) }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _g = lock(&self.d);
        let mut c = self.cancel.0.lock().unwrap_or_else(|e| e.into_inner());
        *c = ptr::null_mut();
        unsafe { sys::dsv4_gen_free(self.p.as_ptr()) }
    }
}

/// The events of a generation ([`Generator::events`]).
pub struct Events<'a> {
    gen: &'a mut Generator,
    done: bool,
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<Event>;
    fn next(&mut self) -> Option<Result<Event>> {
        if self.done {
            return None;
        }
        let r = self.gen.next_event();
        match &r {
            Ok(ev) if ev.kind == EventKind::Stop => self.done = true,
            Err(_) => self.done = true,
            _ => {}
        }
        Some(r)
    }
}
