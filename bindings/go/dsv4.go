// Package dsv4 is the Go binding of libdsv4: DeepSeek-V4 language models on the CPU.
//
// It links the shared library through cgo and pkg-config (`#cgo pkg-config: dsv4`; for an
// uninstalled build tree set PKG_CONFIG_PATH=build/pkgconfig and LD_LIBRARY_PATH=build).
//
// Objects (Model, Context, Session, Tokenizer, Generator, ChatBuilder) have Close() and a
// finalizer. The library counts references (a session keeps its context and model alive, a
// generator its session and tokenizer), so they may be closed or collected in any order.
//
// Goroutines: a Model and a Tokenizer may be used from any number of goroutines. A Context and the
// sessions and generators made on it are one thread at a time in the library (docs/THREADS.md);
// this package serialises the calls on one context with a mutex, so sharing them is safe (they take
// turns). For parallel work give each goroutine its own Context. Generator.Cancel may be called
// from any goroutine at any time; the Chat and Stream calls cancel the generation when their
// context.Context is done.
package dsv4

/*
#cgo pkg-config: dsv4
#include <stdlib.h>
#include <dsv4/dsv4.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// ABIVersion is the ABI major this package is written against (DSV4_ABI_VERSION).
const ABIVersion = 0

// Status is a dsv4_status (int32_t at the boundary; values append-only).
type Status int32

// The status codes of docs/ERRORS.md.
const (
	StatusOK              Status = 0
	StatusInvalidArgument Status = 1
	StatusOutOfMemory     Status = 2
	StatusIO              Status = 3
	StatusBadFormat       Status = 4
	StatusBadConfig       Status = 5
	StatusUnsupported     Status = 6
	StatusMissingTensor   Status = 7
	StatusTensorMismatch  Status = 8
	StatusContextFull     Status = 9
	StatusAborted         Status = 10
	StatusBufferTooSmall  Status = 11
	StatusUnknownOption   Status = 12
	StatusNotAvailable    Status = 13
	StatusInternal        Status = 14
)

// String is the library's static text for the status.
func (s Status) String() string { return C.GoString(C.dsv4_status_string(C.dsv4_status(s))) }

// Error is a failed libdsv4 call: its status and the library's message (the file, field or
// option at fault). errors.Is(err, dsv4.ErrContextFull) compares statuses.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "dsv4: " + e.Status.String()
	}
	return "dsv4: " + e.Status.String() + ": " + e.Message
}

// Is reports whether target is an *Error of the same status.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Status == e.Status
}

// Sentinel errors, one per status, for errors.Is.
var (
	ErrInvalidArgument = &Error{Status: StatusInvalidArgument}
	ErrOutOfMemory     = &Error{Status: StatusOutOfMemory}
	ErrIO              = &Error{Status: StatusIO}
	ErrBadFormat       = &Error{Status: StatusBadFormat}
	ErrBadConfig       = &Error{Status: StatusBadConfig}
	ErrUnsupported     = &Error{Status: StatusUnsupported}
	ErrMissingTensor   = &Error{Status: StatusMissingTensor}
	ErrTensorMismatch  = &Error{Status: StatusTensorMismatch}
	ErrContextFull     = &Error{Status: StatusContextFull}
	ErrAborted         = &Error{Status: StatusAborted}
	ErrBufferTooSmall  = &Error{Status: StatusBufferTooSmall}
	ErrUnknownOption   = &Error{Status: StatusUnknownOption}
	ErrNotAvailable    = &Error{Status: StatusNotAvailable}
	ErrInternal        = &Error{Status: StatusInternal}
	// ErrClosed is returned by methods of an object after Close.
	ErrClosed = errors.New("dsv4: object is closed")
)

func newError(st C.dsv4_status, msg string) error {
	if st == 0 {
		return nil
	}
	return &Error{Status: Status(st), Message: msg}
}

// takeMsg copies and frees a message returned through char **.
func takeMsg(p *C.char) string {
	if p == nil {
		return ""
	}
	s := C.GoString(p)
	C.dsv4_free(unsafe.Pointer(p))
	return s
}

// IncompatibleError: the loaded library's ABI major is not the one this package needs.
type IncompatibleError struct {
	Found, Needed uint32
	Version       string
}

func (e *IncompatibleError) Error() string {
	return fmt.Sprintf("dsv4: the loaded libdsv4 (release %s) has ABI version %d; this binding needs ABI version %d",
		e.Version, e.Found, e.Needed)
}

func checkABI(found uint32, version string) error {
	if found != ABIVersion {
		return &IncompatibleError{Found: found, Needed: ABIVersion, Version: version}
	}
	return nil
}

var (
	abiOnce sync.Once
	abiErr  error
)

// CheckLibrary checks the loaded library's ABI version (done by every constructor).
func CheckLibrary() error {
	abiOnce.Do(func() {
		abiErr = checkABI(uint32(C.dsv4_abi_version()), Version())
	})
	return abiErr
}

// Version is the release of the loaded library ("0.1.0").
func Version() string { return C.GoString(C.dsv4_version_string()) }

// ---------------------------------------------------------------------------------------------
// options and the per-context domain
// ---------------------------------------------------------------------------------------------

type options struct{ p *C.dsv4_options }

func newOptions() (*options, error) {
	o := &options{}
	if st := C.dsv4_options_create(&o.p); st != 0 {
		return nil, newError(st, "options")
	}
	return o, nil
}

func (o *options) set(key C.dsv4_option, name string, v *int64) error {
	if v == nil {
		return nil
	}
	if st := C.dsv4_options_set_i64(o.p, key, C.int64_t(*v)); st != 0 {
		return newError(st, fmt.Sprintf("option %s=%d", name, *v))
	}
	return nil
}

func (o *options) free() { C.dsv4_options_free(o.p) }

// domain serialises the calls on one context and everything made on it.
type domain struct{ mu sync.Mutex }

// Int64 returns a pointer to v, for the optional settings of ContextOptions and friends.
func Int64(v int64) *int64 { return &v }

// ---------------------------------------------------------------------------------------------
// model
// ---------------------------------------------------------------------------------------------

// Model is a checkpoint directory mapped read-only; safe for concurrent use.
type Model struct {
	mu   sync.RWMutex // read: a call in flight; write: Close
	p    *C.dsv4_model
	Path string
}

// ModelOptions: nil fields take the library's defaults.
type ModelOptions struct {
	LoadMTP  *int64 // 0/1, default 1
	Prefetch *int64 // 0/1, default 0
	Resident *int64 // 0/1, default 1: the weights every token reads copied to anonymous memory
}

// LoadModel loads a checkpoint directory in the official Hugging Face layout.
func LoadModel(path string, opt *ModelOptions) (*Model, error) {
	if err := CheckLibrary(); err != nil {
		return nil, err
	}
	o, err := newOptions()
	if err != nil {
		return nil, err
	}
	defer o.free()
	if opt != nil {
		if err := o.set(C.DSV4_OPT_LOAD_MTP, "load_mtp", opt.LoadMTP); err != nil {
			return nil, err
		}
		if err := o.set(C.DSV4_OPT_PREFETCH, "prefetch", opt.Prefetch); err != nil {
			return nil, err
		}
		if err := o.set(C.DSV4_OPT_RESIDENT, "resident", opt.Resident); err != nil {
			return nil, err
		}
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	m := &Model{Path: path}
	var msg *C.char
	if st := C.dsv4_model_load(cpath, o.p, &m.p, &msg); st != 0 {
		return nil, newError(st, takeMsg(msg))
	}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

// Close releases the caller's reference (contexts made from the model keep it alive).
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.p != nil {
		C.dsv4_model_free(m.p)
		m.p = nil
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

// ptr read-locks the model for a call: unlock with m.mu.RUnlock() when ok.
func (m *Model) ptr() (*C.dsv4_model, error) {
	m.mu.RLock()
	if m.p == nil {
		m.mu.RUnlock()
		return nil, ErrClosed
	}
	return m.p, nil
}

// Info returns one integer fact (C.DSV4_INFO_* key; see InfoVocabSize and friends).
func (m *Model) Info(key int32) (int64, error) {
	p, err := m.ptr()
	if err != nil {
		return 0, err
	}
	defer m.mu.RUnlock()
	var info *C.dsv4_model_info
	if st := C.dsv4_model_get_info(p, &info); st != 0 {
		return 0, newError(st, "model info")
	}
	defer C.dsv4_model_info_free(info)
	var v C.int64_t
	if st := C.dsv4_model_info_get_i64(info, C.dsv4_info_key(key), &v); st != 0 {
		return 0, newError(st, fmt.Sprintf("info key %d", key))
	}
	return int64(v), nil
}

// Keys of Model.Info.
const (
	InfoVocabSize   int32 = 2
	InfoHiddenSize  int32 = 3
	InfoNLayers     int32 = 4
	InfoMaxPosition int32 = 16
	InfoHasMTP      int32 = 28
)

// VocabSize is the model's vocabulary size (0 on error).
func (m *Model) VocabSize() int {
	v, _ := m.Info(InfoVocabSize)
	return int(v)
}

// ContextOptions: nil fields take the library's defaults.
type ContextOptions struct {
	Threads       *int64
	ContextLength *int64
	Numerics      *int64 // NumericsReference (default) or NumericsFloat
	Revision      *int64
	MaxBatch      *int64
	WorkerSpin    *int64
}

// Values of ContextOptions.Numerics.
const (
	NumericsDefault   = 0
	NumericsReference = 1
	NumericsFloat     = 2
)

// Context holds worker threads, scratch memory and the KV capacity of its sessions.
type Context struct {
	d     *domain
	p     *C.dsv4_context
	Model *Model
	vocab int
}

func vocabOf(p *C.dsv4_model) int {
	var info *C.dsv4_model_info
	if C.dsv4_model_get_info(p, &info) != 0 {
		return 0
	}
	defer C.dsv4_model_info_free(info)
	var v C.int64_t
	C.dsv4_model_info_get_i64(info, C.DSV4_INFO_VOCAB_SIZE, &v)
	return int(v)
}

// NewContext creates a context on a model.
func (m *Model) NewContext(opt *ContextOptions) (*Context, error) {
	p, err := m.ptr()
	if err != nil {
		return nil, err
	}
	defer m.mu.RUnlock()
	o, err := newOptions()
	if err != nil {
		return nil, err
	}
	defer o.free()
	if opt != nil {
		for _, kv := range []struct {
			k    C.dsv4_option
			name string
			v    *int64
		}{{C.DSV4_OPT_THREADS, "threads", opt.Threads}, {C.DSV4_OPT_CONTEXT_LENGTH, "context_length", opt.ContextLength},
			{C.DSV4_OPT_NUMERICS, "numerics", opt.Numerics}, {C.DSV4_OPT_REVISION, "revision", opt.Revision},
			{C.DSV4_OPT_MAX_BATCH, "max_batch", opt.MaxBatch}, {C.DSV4_OPT_WORKER_SPIN, "worker_spin", opt.WorkerSpin}} {
			if err := o.set(kv.k, kv.name, kv.v); err != nil {
				return nil, err
			}
		}
	}
	c := &Context{d: &domain{}, Model: m, vocab: vocabOf(p)}
	var msg *C.char
	if st := C.dsv4_context_create(p, o.p, &c.p, &msg); st != 0 {
		return nil, newError(st, takeMsg(msg))
	}
	runtime.SetFinalizer(c, (*Context).Close)
	return c, nil
}

// Close releases the caller's reference (sessions keep the context alive).
func (c *Context) Close() error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if c.p != nil {
		C.dsv4_context_free(c.p)
		c.p = nil
		runtime.SetFinalizer(c, nil)
	}
	return nil
}

// Session is one conversation (position and KV state) on a context.
type Session struct {
	d       *domain
	p       *C.dsv4_session
	Context *Context
	vocab   int
}

// NewSession creates a session at position 0.
func (c *Context) NewSession() (*Session, error) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if c.p == nil {
		return nil, ErrClosed
	}
	s := &Session{d: c.d, Context: c, vocab: c.vocab}
	var msg *C.char
	if st := C.dsv4_session_create(c.p, nil, &s.p, &msg); st != 0 {
		return nil, newError(st, takeMsg(msg))
	}
	runtime.SetFinalizer(s, (*Session).Close)
	return s, nil
}

// Close releases the caller's reference (generators keep the session alive).
func (s *Session) Close() error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.p != nil {
		C.dsv4_session_free(s.p)
		s.p = nil
		runtime.SetFinalizer(s, nil)
	}
	return nil
}

func (s *Session) fail(st C.dsv4_status) error {
	return newError(st, C.GoString(C.dsv4_session_last_error(s.p)))
}

// Eval feeds tokens at the current position; allLogits keeps the logits of every position fed.
func (s *Session) Eval(tokens []int32, allLogits bool) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.p == nil {
		return ErrClosed
	}
	var flags C.uint32_t
	if allLogits {
		flags = C.DSV4_EVAL_ALL_LOGITS
	}
	var ptr *C.int32_t
	if len(tokens) > 0 {
		ptr = (*C.int32_t)(unsafe.Pointer(&tokens[0]))
	}
	if st := C.dsv4_session_eval(s.p, ptr, C.size_t(len(tokens)), flags); st != 0 {
		return s.fail(st)
	}
	return nil
}

// LogitsInto copies the next-token logits after absolute position pos (-1: the last fed) into dst.
func (s *Session) LogitsInto(dst []float32, pos int64) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.p == nil {
		return ErrClosed
	}
	var ptr *C.float
	if len(dst) > 0 {
		ptr = (*C.float)(unsafe.Pointer(&dst[0]))
	}
	if st := C.dsv4_session_logits(s.p, C.int64_t(pos), ptr, C.size_t(len(dst))); st != 0 {
		return s.fail(st)
	}
	return nil
}

// Logits returns the next-token logits after absolute position pos (-1: the last fed).
func (s *Session) Logits(pos int64) ([]float32, error) {
	dst := make([]float32, s.vocab)
	if err := s.LogitsInto(dst, pos); err != nil {
		return nil, err
	}
	return dst, nil
}

// Position is the number of tokens fed so far.
func (s *Session) Position() int64 {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.p == nil {
		return -1
	}
	return int64(C.dsv4_session_position(s.p))
}

// Reset forgets the conversation.
func (s *Session) Reset() error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.p == nil {
		return ErrClosed
	}
	if st := C.dsv4_session_reset(s.p); st != 0 {
		return s.fail(st)
	}
	return nil
}
