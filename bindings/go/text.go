package dsv4

/*
#include <stdlib.h>
#include <dsv4/dsv4.h>
*/
import "C"

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"unsafe"
)

// Tokenizer is a tokenizer.json (byte-level BPE); safe for concurrent use.
type Tokenizer struct {
	mu sync.RWMutex // read: a call in flight; write: Close
	p  *C.dsv4_tokenizer
}

// Encode flags.
const (
	EncodeAddBOS    uint32 = 1 << 0
	EncodeNoSpecial uint32 = 1 << 1 // added tokens such as "<think>" are plain text (untrusted input)
)

// Special token names of Tokenizer.SpecialID (dsv4_special_token values).
const (
	TokenBOS        int32 = 0
	TokenEOS        int32 = 1
	TokenThinkBegin int32 = 5
	TokenThinkEnd   int32 = 6
)

// LoadTokenizer loads a tokenizer.json.
func LoadTokenizer(path string) (*Tokenizer, error) {
	if err := CheckLibrary(); err != nil {
		return nil, err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	t := &Tokenizer{}
	var msg *C.char
	if st := C.dsv4_tokenizer_load(cpath, nil, &t.p, &msg); st != 0 {
		return nil, newError(st, takeMsg(msg))
	}
	runtime.SetFinalizer(t, (*Tokenizer).Close)
	return t, nil
}

// Tokenizer of a model's directory (its tokenizer.json).
func (m *Model) Tokenizer() (*Tokenizer, error) {
	return LoadTokenizer(filepath.Join(m.Path, "tokenizer.json"))
}

// Close releases the caller's reference (generators keep the tokenizer alive).
func (t *Tokenizer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.p != nil {
		C.dsv4_tokenizer_free(t.p)
		t.p = nil
		runtime.SetFinalizer(t, nil)
	}
	return nil
}

func (t *Tokenizer) lock() (*C.dsv4_tokenizer, error) {
	t.mu.RLock()
	if t.p == nil {
		t.mu.RUnlock()
		return nil, ErrClosed
	}
	return t.p, nil
}

func cbytes(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(&b[0]))
}

// Encode returns the token ids of UTF-8 text.
func (t *Tokenizer) Encode(text string, flags uint32) ([]int32, error) {
	p, err := t.lock()
	if err != nil {
		return nil, err
	}
	defer t.mu.RUnlock()
	b := []byte(text)
	ids := make([]int32, len(b)+2)
	for {
		var n C.size_t
		var msg *C.char
		var ptr *C.int32_t
		if len(ids) > 0 {
			ptr = (*C.int32_t)(unsafe.Pointer(&ids[0]))
		}
		st := C.dsv4_tokenizer_encode(p, cbytes(b), C.size_t(len(b)), C.uint32_t(flags), ptr, C.size_t(len(ids)), &n, &msg)
		if st == C.DSV4_ERR_BUFFER_TOO_SMALL && int(n) > len(ids) {
			takeMsg(msg)
			ids = make([]int32, int(n))
			continue
		}
		if st != 0 {
			return nil, newError(st, takeMsg(msg))
		}
		return ids[:int(n)], nil
	}
}

func idsPtr(ids []int32) *C.int32_t {
	if len(ids) == 0 {
		return nil
	}
	return (*C.int32_t)(unsafe.Pointer(&ids[0]))
}

// DecodeBytes returns the bytes of token ids (may hold invalid UTF-8 where ids split a character).
func (t *Tokenizer) DecodeBytes(ids []int32) ([]byte, error) {
	p, err := t.lock()
	if err != nil {
		return nil, err
	}
	defer t.mu.RUnlock()
	buf := make([]byte, 16*len(ids)+16)
	for {
		var n C.size_t
		st := C.dsv4_tokenizer_decode(p, idsPtr(ids), C.size_t(len(ids)), cbytes(buf), C.size_t(len(buf)), &n)
		if st == C.DSV4_ERR_BUFFER_TOO_SMALL && int(n) > len(buf) {
			buf = make([]byte, int(n))
			continue
		}
		if st != 0 {
			return nil, newError(st, "decode: an id is out of range or not in the vocabulary")
		}
		return buf[:int(n)], nil
	}
}

// Decode returns the text of token ids.
func (t *Tokenizer) Decode(ids []int32) (string, error) {
	b, err := t.DecodeBytes(ids)
	return string(b), err
}

// SpecialID is the id of a named special token (TokenEOS...), or -1 when the tokenizer has none.
func (t *Tokenizer) SpecialID(which int32) int32 {
	p, err := t.lock()
	if err != nil {
		return -1
	}
	defer t.mu.RUnlock()
	return int32(C.dsv4_tokenizer_special_id(p, C.dsv4_special_token(which)))
}

// VocabSize is the number of ids (largest id + 1).
func (t *Tokenizer) VocabSize() int {
	p, err := t.lock()
	if err != nil {
		return -1
	}
	defer t.mu.RUnlock()
	return int(C.dsv4_tokenizer_vocab_size(p))
}

// RenderChat renders a chat request (JSON bytes, or a value encoding/json marshals) to the prompt
// string of the official DeepSeek-V4 encoder.
func RenderChat(request interface{}) (string, error) {
	b, err := requestBytes(request)
	if err != nil {
		return "", err
	}
	var out, msg *C.char
	if st := C.dsv4_chat_render(cbytes(b), C.size_t(len(b)), &out, &msg); st != 0 {
		return "", newError(st, takeMsg(msg))
	}
	return takeMsg(out), nil
}

// ChatBuilder builds a conversation by calls (the C form of the request JSON). One goroutine at a time.
type ChatBuilder struct {
	mu sync.Mutex
	p  *C.dsv4_chat
}

// NewChatBuilder creates an empty conversation.
func NewChatBuilder() (*ChatBuilder, error) {
	if err := CheckLibrary(); err != nil {
		return nil, err
	}
	c := &ChatBuilder{}
	if st := C.dsv4_chat_create(&c.p); st != 0 {
		return nil, newError(st, "chat")
	}
	runtime.SetFinalizer(c, (*ChatBuilder).Close)
	return c, nil
}

// Close frees the conversation.
func (c *ChatBuilder) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != nil {
		C.dsv4_chat_free(c.p)
		c.p = nil
		runtime.SetFinalizer(c, nil)
	}
	return nil
}

func cstr(s *string) *C.char {
	if s == nil {
		return nil
	}
	return C.CString(*s)
}

func freeStr(p *C.char) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}

func (c *ChatBuilder) check(st C.dsv4_status) error {
	if st != 0 {
		return newError(st, C.GoString(C.dsv4_chat_last_error(c.p)))
	}
	return nil
}

// AddMessage appends a message (role: system, user, assistant, latest_reminder, developer).
func (c *ChatBuilder) AddMessage(role, content string, reasoning *string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		return ErrClosed
	}
	r, ct, rs := C.CString(role), C.CString(content), cstr(reasoning)
	defer freeStr(r)
	defer freeStr(ct)
	defer freeStr(rs)
	return c.check(C.dsv4_chat_add_message(c.p, r, ct, rs))
}

// SetThinking switches thinking mode on or off.
func (c *ChatBuilder) SetThinking(on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		return ErrClosed
	}
	v := C.int64_t(0)
	if on {
		v = 1
	}
	return c.check(C.dsv4_chat_set_i64(c.p, C.DSV4_CHAT_THINKING, v))
}

// Render returns the prompt string.
func (c *ChatBuilder) Render() (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		return "", ErrClosed
	}
	var out *C.char
	if err := c.check(C.dsv4_chat_render_text(c.p, &out)); err != nil {
		return "", err
	}
	return takeMsg(out), nil
}

// RenderIDs returns the prompt's token ids.
func (c *ChatBuilder) RenderIDs(t *Tokenizer) ([]int32, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		return nil, ErrClosed
	}
	tp, err := t.lock()
	if err != nil {
		return nil, err
	}
	defer t.mu.RUnlock()
	var n C.size_t
	st := C.dsv4_chat_render_ids(c.p, tp, nil, 0, &n)
	if st != C.DSV4_ERR_BUFFER_TOO_SMALL && st != 0 {
		return nil, c.check(st)
	}
	ids := make([]int32, int(n)+1)
	if err := c.check(C.dsv4_chat_render_ids(c.p, tp, idsPtr(ids), C.size_t(len(ids)), &n)); err != nil {
		return nil, err
	}
	return ids[:int(n)], nil
}

var _ = fmt.Sprintf
