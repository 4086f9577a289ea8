package dsv4

/*
#include <stdlib.h>
#include <dsv4/dsv4.h>
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// EventKind is a dsv4_gen_event_type.
type EventKind int32

// Event kinds.
const (
	EventReasoning     EventKind = 1 // Data: reasoning_content bytes
	EventContent       EventKind = 2 // Data: content bytes
	EventToolCallStart EventKind = 3 // Index: call number; Data: function name
	EventToolCallArgs  EventKind = 4 // Index; Data: next piece of the arguments JSON
	EventToolCallEnd   EventKind = 5 // Index: the call is complete
	EventStop          EventKind = 6 // FinishReason; the last event
)

func (k EventKind) String() string {
	switch k {
	case EventReasoning:
		return "reasoning"
	case EventContent:
		return "content"
	case EventToolCallStart:
		return "tool_call_start"
	case EventToolCallArgs:
		return "tool_call_args"
	case EventToolCallEnd:
		return "tool_call_end"
	case EventStop:
		return "stop"
	}
	return fmt.Sprintf("event(%d)", int32(k))
}

// Finish reasons of the Stop event.
const (
	FinishStop      = "stop"
	FinishLength    = "length"
	FinishToolCalls = "tool_calls"
	FinishError     = "error"
	FinishCancelled = "cancelled"
)

var finishNames = map[int32]string{0: "", 1: FinishStop, 2: FinishLength, 3: FinishToolCalls, 4: FinishError, 5: FinishCancelled}

// Event is one piece of the streamed answer.
type Event struct {
	Kind         EventKind
	Data         string // text of reasoning/content/tool-call events
	Index        int32  // tool-call number, -1 otherwise
	FinishReason string // for EventStop
}

// Generator streams the assistant's answer on a session. One goroutine at a time (with its
// context), except Cancel, which any goroutine may call at any time.
type Generator struct {
	d         *domain
	cmu       sync.RWMutex // Cancel (read) against Close (write)
	p         *C.dsv4_gen
	Session   *Session
	Tokenizer *Tokenizer
}

// NewGenerator creates a generator on a session, decoding with the tokenizer.
func NewGenerator(s *Session, t *Tokenizer) (*Generator, error) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	if s.p == nil {
		return nil, ErrClosed
	}
	tp, err := t.lock()
	if err != nil {
		return nil, err
	}
	defer t.mu.RUnlock()
	g := &Generator{d: s.d, Session: s, Tokenizer: t}
	if st := C.dsv4_gen_create(s.p, tp, &g.p); st != 0 {
		return nil, newError(st, "generator")
	}
	runtime.SetFinalizer(g, (*Generator).Close)
	return g, nil
}

// Close frees the generator (its session and tokenizer references are released).
func (g *Generator) Close() error {
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	g.cmu.Lock()
	defer g.cmu.Unlock()
	if g.p != nil {
		C.dsv4_gen_free(g.p)
		g.p = nil
		runtime.SetFinalizer(g, nil)
	}
	return nil
}

// Cancel stops the generation in progress: the token being computed finishes, then the stream
// ends with FinishCancelled. Any goroutine, any time; a no-op after Close.
func (g *Generator) Cancel() {
	g.cmu.RLock()
	defer g.cmu.RUnlock()
	if g.p != nil {
		C.dsv4_gen_cancel(g.p)
	}
}

func (g *Generator) fail(st C.dsv4_status) error {
	return newError(st, C.GoString(C.dsv4_gen_last_error(g.p)))
}

// Generator integer settings (dsv4_gen_param values) for Set.
const (
	GenMaxTokens       int32 = 1
	GenReasoningEffort int32 = 2
	GenReasoningBudget int32 = 3
	GenThinking        int32 = 4
	GenResponseFormat  int32 = 5
)

// Set sets an integer setting (applied from the next start).
func (g *Generator) Set(key int32, value int64) error {
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	if g.p == nil {
		return ErrClosed
	}
	if st := C.dsv4_gen_set_i64(g.p, C.dsv4_gen_param(key), C.int64_t(value)); st != 0 {
		return g.fail(st)
	}
	return nil
}

// Sampler settings (dsv4_sampler_param values) for SetSampler.
const (
	SamplerTemperature int32 = 1
	SamplerTopK        int32 = 2
	SamplerTopP        int32 = 3
	SamplerSeed        int32 = 9
)

// SetSampler sets a sampler setting of the generator (floats for temperature/top_p/min_p/penalties,
// integers otherwise).
func (g *Generator) SetSampler(key int32, value float64) error {
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	if g.p == nil {
		return ErrClosed
	}
	s := C.dsv4_gen_sampler(g.p)
	var st C.dsv4_status
	switch key {
	case 2, 8, 9:
		st = C.dsv4_sampler_set_i64(s, C.dsv4_sampler_param(key), C.int64_t(value))
	default:
		st = C.dsv4_sampler_set_f64(s, C.dsv4_sampler_param(key), C.double(value))
	}
	if st != 0 {
		return newError(st, fmt.Sprintf("sampler setting %d = %g", key, value))
	}
	return nil
}

// SetLogitBias adds bias to a token's logit (math.Inf(-1) bans it).
func (g *Generator) SetLogitBias(token int32, bias float32) error {
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	if g.p == nil {
		return ErrClosed
	}
	if st := C.dsv4_sampler_set_logit_bias(C.dsv4_gen_sampler(g.p), C.int32_t(token), C.float(bias)); st != 0 {
		return newError(st, "logit bias")
	}
	return nil
}

func requestBytes(request interface{}) ([]byte, error) {
	switch r := request.(type) {
	case []byte:
		return r, nil
	case string:
		return []byte(r), nil
	case json.RawMessage:
		return r, nil
	}
	return json.Marshal(request)
}

// Start starts a generation after a prompt of token ids.
func (g *Generator) Start(prompt []int32) error {
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	if g.p == nil {
		return ErrClosed
	}
	if st := C.dsv4_gen_start(g.p, idsPtr(prompt), C.size_t(len(prompt))); st != 0 {
		return g.fail(st)
	}
	return nil
}

// StartRequest starts from an OpenAI chat-completions request: JSON bytes or string, or any value
// encoding/json marshals (a map, a Request).
func (g *Generator) StartRequest(request interface{}) error {
	b, err := requestBytes(request)
	if err != nil {
		return err
	}
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	if g.p == nil {
		return ErrClosed
	}
	if st := C.dsv4_gen_start_request(g.p, cbytes(b), C.size_t(len(b))); st != 0 {
		return g.fail(st)
	}
	return nil
}

// Next returns the next event, generating as needed; after EventStop it returns EventStop again.
func (g *Generator) Next() (Event, error) {
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	if g.p == nil {
		return Event{}, ErrClosed
	}
	var t C.dsv4_gen_event_type
	var idx C.int32_t
	var data *C.char
	var n C.size_t
	if st := C.dsv4_gen_next(g.p, &t, &idx, &data, &n); st != 0 {
		return Event{}, g.fail(st)
	}
	ev := Event{Kind: EventKind(t), Index: int32(idx)}
	if data != nil && n > 0 {
		ev.Data = C.GoStringN(data, C.int(n))
	}
	if ev.Kind == EventStop {
		ev.FinishReason = finishNames[int32(idx)]
		ev.Index = -1
	}
	return ev, nil
}

// watch cancels the generation when ctx is done; the returned function stops watching.
func (g *Generator) watch(ctx context.Context) func() {
	if ctx.Done() == nil {
		return func() {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
			g.Cancel()
		case <-stop:
		}
	}()
	return func() { close(stop); wg.Wait() }
}

// Stream starts the request and returns a channel of its events, ending with EventStop, then
// closed. When ctx is done the generation is cancelled (the last event says FinishCancelled).
// Errors of the start (a bad request) are returned at once; a failure later is an EventStop with
// FinishError. A consumer that stops reading should cancel ctx: the generation then stops and its
// goroutine ends.
func (g *Generator) Stream(ctx context.Context, request interface{}) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	stopWatch := g.watch(ctx)
	if err := g.StartRequest(request); err != nil {
		stopWatch()
		if ctx.Err() != nil && errors.Is(err, ErrAborted) {
			return nil, ctx.Err() // cancelled while the prompt was fed
		}
		return nil, err
	}
	ch := make(chan Event, 16)
	go func() {
		defer close(ch)
		defer stopWatch()
		done := false
		for {
			ev, err := g.Next()
			if err != nil {
				ev = Event{Kind: EventStop, FinishReason: FinishError, Data: err.Error(), Index: -1}
			}
			if !done {
				select {
				case ch <- ev:
				case <-ctx.Done():
					done = true
					g.Cancel()
				}
			}
			if done {
				// cancelled: the rest is at most the token being computed and the stop event;
				// a reader still there gets them, one that left does not hold this goroutine long
				select {
				case ch <- ev:
				case <-time.After(5 * time.Second):
					return
				}
			}
			if ev.Kind == EventStop {
				return
			}
		}
	}()
	return ch, nil
}

// Message is an OpenAI-style chat message.
type Message struct {
	Role             string     `json:"role"`
	Content          string     `json:"content"`
	ReasoningContent string     `json:"reasoning_content,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID       string     `json:"tool_call_id,omitempty"`
}

// ToolCall is one call of an assistant message.
type ToolCall struct {
	ID       string `json:"id,omitempty"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// Response is the chat-completion response.
type Response struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Choices []struct {
		Index        int     `json:"index"`
		Message      Message `json:"message"`
		FinishReason string  `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
	Raw json.RawMessage `json:"-"`
}

// Response returns the chat-completion response of the generation so far (complete after EventStop).
func (g *Generator) Response() (*Response, error) {
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	if g.p == nil {
		return nil, ErrClosed
	}
	var out *C.char
	if st := C.dsv4_gen_response_json(g.p, &out); st != 0 {
		return nil, g.fail(st)
	}
	b := []byte(takeMsg(out))
	r := &Response{Raw: b}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Chat runs a request to the end and returns the response; ctx cancels it.
func (g *Generator) Chat(ctx context.Context, request interface{}) (*Response, error) {
	ch, err := g.Stream(ctx, request)
	if err != nil {
		return nil, err
	}
	for range ch {
	}
	r, err := g.Response()
	if err == nil && ctx.Err() != nil {
		return r, ctx.Err() // the partial response and why it stopped
	}
	return r, err
}

// NTokens is the number of tokens generated so far.
func (g *Generator) NTokens() int64 {
	g.d.mu.Lock()
	defer g.d.mu.Unlock()
	if g.p == nil {
		return -1
	}
	return int64(C.dsv4_gen_n_tokens(g.p))
}

var _ = unsafe.Pointer(nil)
