package dsv4

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment (set by bindings/go/run-tests.sh): DSV4_SHARED_DIR, DSV4_DEMO_MODEL; the library
// comes from PKG_CONFIG_PATH / LD_LIBRARY_PATH (the build tree).

func sharedDir(t *testing.T) string {
	d := os.Getenv("DSV4_SHARED_DIR")
	if d == "" {
		d = "../../../shared"
	}
	if _, err := os.Stat(filepath.Join(d, "golden", "index.json")); err != nil {
		t.Fatalf("shared test material not found at %s (set DSV4_SHARED_DIR)", d)
	}
	return d
}

func demoDir(t *testing.T) string {
	d := os.Getenv("DSV4_DEMO_MODEL")
	if d == "" {
		d = "../../models/tiny"
	}
	if _, err := os.Stat(filepath.Join(d, "tokenizer.json")); err != nil {
		t.Fatalf("demo model not found at %s (bindings/demo-model.sh makes it; set DSV4_DEMO_MODEL)", d)
	}
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type rig struct {
	m   *Model
	c   *Context
	s   *Session
	tok *Tokenizer
	g   *Generator
}

func openRig(t *testing.T, dir, tokPath string, nctx int64) *rig {
	t.Helper()
	r := &rig{}
	var err error
	r.m, err = LoadModel(dir, nil)
	must(t, err)
	r.c, err = r.m.NewContext(&ContextOptions{Threads: Int64(1), ContextLength: Int64(nctx)})
	must(t, err)
	r.s, err = r.c.NewSession()
	must(t, err)
	if tokPath == "" {
		tokPath = filepath.Join(dir, "tokenizer.json")
	}
	r.tok, err = LoadTokenizer(tokPath)
	must(t, err)
	r.g, err = NewGenerator(r.s, r.tok)
	must(t, err)
	return r
}

func (r *rig) close() {
	r.g.Close()
	r.tok.Close()
	r.s.Close()
	r.c.Close()
	r.m.Close()
}

var hello = []Message{{Role: "user", Content: "Hello!"}}

func TestVersionAndABI(t *testing.T) {
	must(t, CheckLibrary())
	if Version() != "0.1.0" {
		t.Fatalf("version %q", Version())
	}
	err := checkABI(7, "7.0.0")
	var ie *IncompatibleError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "ABI version 7") ||
		!strings.Contains(err.Error(), "needs ABI version 0") || !strings.Contains(err.Error(), "7.0.0") {
		t.Fatalf("incompatible library message: %v", err)
	}
}

func TestLoadDemoAndGolden(t *testing.T) {
	m, err := LoadModel(demoDir(t), nil)
	must(t, err)
	defer m.Close()
	if m.VocabSize() != 129280 {
		t.Fatalf("demo vocab %d", m.VocabSize())
	}
	g, err := LoadModel(filepath.Join(sharedDir(t), "golden", "tiny-a", "ckpt"), &ModelOptions{Resident: Int64(0)})
	must(t, err)
	defer g.Close()
	if n, _ := g.Info(InfoNLayers); n != 4 || g.VocabSize() != 512 {
		t.Fatalf("golden layers %d vocab %d", n, g.VocabSize())
	}
}

func TestTokenizerGoldenRoundTrip(t *testing.T) {
	shared := sharedDir(t)
	f, err := os.Open(filepath.Join(shared, "tokenizers", "deepseek-v4", "golden-ids.jsonl"))
	must(t, err)
	defer f.Close()
	type rec struct {
		Text string  `json:"text"`
		IDs  []int32 `json:"ids"`
	}
	var cases []rec
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r rec
		must(t, json.Unmarshal(sc.Bytes(), &r))
		cases = append(cases, r)
	}
	if len(cases) < 200 {
		t.Fatalf("%d golden cases", len(cases))
	}
	for _, path := range []string{filepath.Join(shared, "tokenizers", "deepseek-v4", "tokenizer.json"),
		filepath.Join(demoDir(t), "tokenizer.json")} {
		tok, err := LoadTokenizer(path)
		must(t, err)
		bad := 0
		for _, c := range cases {
			ids, err := tok.Encode(c.Text, 0)
			must(t, err)
			text, err := tok.Decode(c.IDs)
			must(t, err)
			if !equalIDs(ids, c.IDs) || text != c.Text {
				bad++
				if bad < 3 {
					t.Errorf("%s: %q: ids %v want %v; decode %q", path, c.Text, ids, c.IDs, text)
				}
			}
		}
		if bad > 0 {
			t.Fatalf("%s: %d/%d cases differ", path, bad, len(cases))
		}
		if tok.VocabSize() != 129280 || tok.SpecialID(TokenEOS) < 0 {
			t.Fatal("vocab size / special ids")
		}
		tok.Close()
	}
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func loadNpyF32(t *testing.T, path string) ([]int, []float32) {
	b, err := os.ReadFile(path)
	must(t, err)
	if string(b[:6]) != "\x93NUMPY" {
		t.Fatalf("%s: not .npy", path)
	}
	var hlen, start int
	if b[6] == 1 {
		hlen, start = int(binary.LittleEndian.Uint16(b[8:10])), 10
	} else {
		hlen, start = int(binary.LittleEndian.Uint32(b[8:12])), 12
	}
	header := string(b[start : start+hlen])
	if !strings.Contains(header, "'<f4'") || strings.Contains(header, "'fortran_order': True") {
		t.Fatalf("%s: header %s", path, header)
	}
	m := regexp.MustCompile(`'shape': \((\d+), (\d+)\)`).FindStringSubmatch(header)
	if m == nil {
		t.Fatalf("%s: shape in %s", path, header)
	}
	var shape [2]int
	for i := 0; i < 2; i++ {
		for _, ch := range m[i+1] {
			shape[i] = shape[i]*10 + int(ch-'0')
		}
	}
	body := b[start+hlen:]
	out := make([]float32, shape[0]*shape[1])
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:]))
	}
	return shape[:], out
}

func TestGoldenLogitsWithin1e5(t *testing.T) {
	dir := filepath.Join(sharedDir(t), "golden", "tiny-a")
	var toks []int32
	b, err := os.ReadFile(filepath.Join(dir, "short", "tokens.json"))
	must(t, err)
	must(t, json.Unmarshal(b, &toks))
	shape, gl := loadNpyF32(t, filepath.Join(dir, "short", "noaq", "logits_f32_prefill.npy"))
	n, V := shape[0], shape[1]
	if n != len(toks) {
		t.Fatalf("%d rows for %d tokens", n, len(toks))
	}
	m, err := LoadModel(filepath.Join(dir, "ckpt"), nil)
	must(t, err)
	defer m.Close()
	c, err := m.NewContext(&ContextOptions{Numerics: Int64(NumericsFloat), Threads: Int64(1)})
	must(t, err)
	defer c.Close()
	s, err := c.NewSession()
	must(t, err)
	defer s.Close()
	must(t, s.Eval(toks, true))
	worst := 0.0
	for p := 0; p < n; p++ {
		row, err := s.Logits(int64(p))
		must(t, err)
		if len(row) != V {
			t.Fatalf("row of %d", len(row))
		}
		for v := 0; v < V; v++ {
			worst = math.Max(worst, math.Abs(float64(row[v])-float64(gl[p*V+v])))
		}
	}
	if worst > 1e-5 {
		t.Fatalf("max |logit - golden| = %g", worst)
	}
	if err := s.LogitsInto(make([]float32, V-1), -1); !errors.Is(err, ErrBufferTooSmall) {
		t.Fatalf("short buffer: %v", err)
	}
	if _, err := s.Logits(int64(n + 3)); !errors.Is(err, ErrNotAvailable) {
		t.Fatalf("position not kept: %v", err)
	}
}

func TestStreamConcatenatesToResponse(t *testing.T) {
	r := openRig(t, demoDir(t), "", 2048)
	defer r.close()
	req := map[string]interface{}{"messages": hello, "max_tokens": 48, "seed": 3, "thinking_budget": 12}
	ch, err := r.g.Stream(context.Background(), req)
	must(t, err)
	var content, reasoning strings.Builder
	var last Event
	stops := 0
	for ev := range ch {
		switch ev.Kind {
		case EventContent:
			content.WriteString(ev.Data)
		case EventReasoning:
			reasoning.WriteString(ev.Data)
		case EventStop:
			stops++
		}
		last = ev
	}
	if stops != 1 || last.Kind != EventStop || (last.FinishReason != FinishStop && last.FinishReason != FinishLength) {
		t.Fatalf("last event %+v, %d stops", last, stops)
	}
	resp, err := r.g.Response()
	must(t, err)
	msg := resp.Choices[0].Message
	if content.String() != msg.Content || reasoning.String() != msg.ReasoningContent || reasoning.Len() == 0 {
		t.Fatalf("events %q/%q, response %q/%q", reasoning.String(), content.String(), msg.ReasoningContent, msg.Content)
	}
	if resp.Choices[0].FinishReason != last.FinishReason || int64(resp.Usage.CompletionTokens) != r.g.NTokens() {
		t.Fatalf("finish %s/%s usage %d/%d", resp.Choices[0].FinishReason, last.FinishReason,
			resp.Usage.CompletionTokens, r.g.NTokens())
	}
	again, err := r.g.Chat(context.Background(), req)
	must(t, err)
	if again.Choices[0].Message.Content != msg.Content {
		t.Fatal("the same request gives another answer")
	}
	// the chat builder renders what the request renders
	cb, err := NewChatBuilder()
	must(t, err)
	defer cb.Close()
	must(t, cb.AddMessage("user", "Hello!", nil))
	text, err := cb.Render()
	must(t, err)
	want, err := RenderChat(map[string]interface{}{"messages": hello})
	must(t, err)
	ids, err := cb.RenderIDs(r.tok)
	must(t, err)
	enc, err := r.tok.Encode(text, 0)
	must(t, err)
	if text != want || !equalIDs(ids, enc) {
		t.Fatalf("builder %q, request %q", text, want)
	}
}

func TestJSONModeParses(t *testing.T) {
	r := openRig(t, demoDir(t), "", 2048)
	defer r.close()
	for seed := 0; seed < 3; seed++ {
		resp, err := r.g.Chat(context.Background(), map[string]interface{}{"messages": hello, "seed": seed,
			"max_tokens": 10 + 9*seed, "response_format": map[string]string{"type": "json_object"},
			"thinking": map[string]string{"type": "disabled"}})
		must(t, err)
		var obj map[string]interface{}
		if err := json.Unmarshal([]byte(resp.Choices[0].Message.Content), &obj); err != nil {
			t.Fatalf("seed %d: %q: %v", seed, resp.Choices[0].Message.Content, err)
		}
	}
}

var tools = json.RawMessage(`[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":
{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}},
{"type":"function","function":{"name":"add","parameters":{"type":"object","properties":
{"x":{"type":"number"},"y":{"type":"number"}},"required":["x","y"]}}}]`)

func TestToolCallParses(t *testing.T) {
	r := openRig(t, demoDir(t), "", 2048)
	defer r.close()
	for seed := 0; seed < 3; seed++ {
		ch, err := r.g.Stream(context.Background(), map[string]interface{}{
			"messages": []Message{{Role: "user", Content: "Weather in Paris?"}}, "tools": tools,
			"tool_choice": "required", "seed": seed, "max_tokens": 80, "thinking": map[string]string{"type": "disabled"}})
		must(t, err)
		names := map[int32]string{}
		args := map[int32]string{}
		ended := map[int32]bool{}
		for ev := range ch {
			switch ev.Kind {
			case EventToolCallStart:
				names[ev.Index] = ev.Data
			case EventToolCallArgs:
				args[ev.Index] += ev.Data
			case EventToolCallEnd:
				ended[ev.Index] = true
			}
		}
		resp, err := r.g.Response()
		must(t, err)
		calls := resp.Choices[0].Message.ToolCalls
		if len(calls) == 0 {
			t.Fatalf("seed %d: no tool calls: %s", seed, resp.Raw)
		}
		for i, call := range calls {
			var a, b map[string]interface{}
			if err := json.Unmarshal([]byte(call.Function.Arguments), &a); err != nil {
				t.Fatalf("arguments %q: %v", call.Function.Arguments, err)
			}
			must(t, json.Unmarshal([]byte(args[int32(i)]), &b))
			if names[int32(i)] != call.Function.Name || !ended[int32(i)] || len(a) != len(b) {
				t.Fatalf("call %d: stream %q %q, response %q %q", i, names[int32(i)], args[int32(i)],
					call.Function.Name, call.Function.Arguments)
			}
		}
	}
}

func TestErrorsKeepTheMessage(t *testing.T) {
	_, err := LoadModel(filepath.Join(t.TempDir(), "no-such-model"), nil)
	var e *Error
	if !errors.Is(err, ErrIO) || !errors.As(err, &e) || !strings.Contains(e.Message, "no-such-model") {
		t.Fatalf("missing model dir: %v", err)
	}
	r := openRig(t, demoDir(t), "", 256)
	defer r.close()
	if err := r.g.StartRequest("{not json"); !errors.Is(err, ErrBadFormat) {
		t.Fatalf("not JSON: %v", err)
	}
	err = r.g.StartRequest(map[string]interface{}{"messages": hello, "max_tokenz": 3})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "max_tokenz") {
		t.Fatalf("unknown field: %v", err)
	}
	if _, err := r.m.NewContext(&ContextOptions{ContextLength: Int64(0)}); !errors.Is(err, ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "context_length") {
		t.Fatalf("wrong option: %v", err)
	}
	if err := r.g.SetSampler(SamplerTemperature, -1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad temperature: %v", err)
	}
	if err := r.g.Set(99999, 1); !errors.Is(err, ErrUnknownOption) {
		t.Fatalf("unknown generator setting: %v", err)
	}
	c, err := r.m.NewContext(&ContextOptions{Threads: Int64(1), ContextLength: Int64(8)})
	must(t, err)
	defer c.Close()
	s, err := c.NewSession()
	must(t, err)
	defer s.Close()
	err = s.Eval([]int32{1, 2, 3, 4, 5, 6, 7, 8, 9}, false)
	if !errors.Is(err, ErrContextFull) || !errors.As(err, &e) || e.Message == "" {
		t.Fatalf("context full: %v", err)
	}
	if _, err := LoadTokenizer(filepath.Join(t.TempDir(), "none.json")); err == nil {
		t.Fatal("missing tokenizer")
	}
	s.Close()
	if err := s.Eval([]int32{1}, false); err != ErrClosed {
		t.Fatalf("closed session: %v", err)
	}
}

// smallTokenizer writes the V4 tokenizer cut to its first 1000 ids (a tokenizer that loads fast).
func smallTokenizer(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(sharedDir(t), "tokenizers", "deepseek-v4", "tokenizer.json"))
	must(t, err)
	var tj map[string]interface{}
	must(t, json.Unmarshal(b, &tj))
	model := tj["model"].(map[string]interface{})
	vocab := map[string]interface{}{}
	for k, v := range model["vocab"].(map[string]interface{}) {
		if v.(float64) < 1000 {
			vocab[k] = v
		}
	}
	var merges []interface{}
	for _, m := range model["merges"].([]interface{}) {
		var parts []string
		switch x := m.(type) {
		case string:
			parts = strings.SplitN(x, " ", 2)
		case []interface{}:
			for _, p := range x {
				parts = append(parts, p.(string))
			}
		}
		ok := len(parts) == 2
		for _, p := range parts {
			_, in := vocab[p]
			ok = ok && in
		}
		if _, in := vocab[strings.Join(parts, "")]; ok && in {
			merges = append(merges, m)
		}
	}
	model["vocab"], model["merges"] = vocab, merges
	out, err := json.Marshal(tj)
	must(t, err)
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	must(t, os.WriteFile(path, out, 0o644))
	return path
}

func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

func TestCloseInEveryOrder(t *testing.T) {
	tok := smallTokenizer(t)
	ckpt := filepath.Join(sharedDir(t), "golden", "tiny-a", "ckpt")
	for _, order := range permutations(5) {
		r := openRig(t, ckpt, tok, 32)
		closers := []func() error{r.m.Close, r.c.Close, r.s.Close, r.tok.Close, r.g.Close}
		for _, i := range order {
			must(t, closers[i]())
			must(t, closers[i]()) // twice is harmless
		}
	}
	// a closed model's context still makes sessions, and they work
	m2, err := LoadModel(ckpt, nil)
	must(t, err)
	c2, err := m2.NewContext(&ContextOptions{Threads: Int64(1), ContextLength: Int64(16)})
	must(t, err)
	must(t, m2.Close())
	s2, err := c2.NewSession()
	must(t, err)
	must(t, s2.Eval([]int32{1, 2, 3}, false))
	if row, err := s2.Logits(-1); err != nil || len(row) != 512 {
		t.Fatalf("logits after the model was closed: %v", err)
	}
	must(t, c2.Close())
	must(t, s2.Close())
	// a generator outlives its closed parents and still works
	r := openRig(t, ckpt, tok, 32)
	r.m.Close()
	r.c.Close()
	r.s.Close()
	r.tok.Close()
	must(t, r.g.Set(GenMaxTokens, 4))
	must(t, r.g.Start([]int32{0, 10, 20}))
	for {
		ev, err := r.g.Next()
		must(t, err)
		if ev.Kind == EventStop {
			break
		}
	}
	if r.g.NTokens() != 4 {
		t.Fatalf("%d tokens", r.g.NTokens())
	}
	r.g.Close()
	// finalizers, whatever order the collector picks
	for i := 0; i < 6; i++ {
		r := openRig(t, ckpt, tok, 32)
		must(t, r.g.Start([]int32{0, 1}))
		_ = r
	}
	for i := 0; i < 4; i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCancelWithContext(t *testing.T) {
	r := openRig(t, demoDir(t), "", 4096)
	defer r.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := r.g.Stream(ctx, map[string]interface{}{"messages": hello, "max_tokens": 3000,
		"thinking": map[string]string{"type": "disabled"}, "logit_bias": map[string]float64{"1": -100}})
	must(t, err)
	n := 0
	var last Event
	for ev := range ch {
		n++
		if n == 3 {
			go cancel() // from another goroutine
		}
		last = ev
	}
	if last.Kind != EventStop || last.FinishReason != FinishCancelled || r.g.NTokens() >= 3000 {
		t.Fatalf("last %+v after %d tokens", last, r.g.NTokens())
	}
	// Cancel from another goroutine directly, and Chat returning ctx's error
	ctx2, cancel2 := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel2()
	resp, err := r.g.Chat(ctx2, map[string]interface{}{"messages": hello, "max_tokens": 3000,
		"thinking": map[string]string{"type": "disabled"}, "logit_bias": map[string]float64{"1": -100}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("chat after the deadline: %v", err)
	}
	if resp != nil && resp.Choices[0].FinishReason == "" {
		t.Fatal("the partial response has no finish reason")
	}
	// a context already done refuses to start
	if _, err := r.g.Stream(ctx, hello); !errors.Is(err, context.Canceled) {
		t.Fatalf("done context: %v", err)
	}
}

func TestTwoSessionsInTwoGoroutines(t *testing.T) {
	dir := demoDir(t)
	m, err := LoadModel(dir, nil)
	must(t, err)
	defer m.Close()
	tok, err := m.Tokenizer()
	must(t, err)
	defer tok.Close()
	run := func() string {
		c, err := m.NewContext(&ContextOptions{Threads: Int64(1), ContextLength: Int64(512)})
		must(t, err)
		defer c.Close()
		s, err := c.NewSession()
		must(t, err)
		defer s.Close()
		g, err := NewGenerator(s, tok)
		must(t, err)
		defer g.Close()
		resp, err := g.Chat(context.Background(), map[string]interface{}{"messages": hello, "max_tokens": 24,
			"seed": 11, "temperature": 0.8})
		must(t, err)
		return resp.Choices[0].Message.ReasoningContent + "|" + resp.Choices[0].Message.Content
	}
	want := run()
	var wg sync.WaitGroup
	got := make([]string, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); got[i] = run() }(i)
	}
	wg.Wait()
	if got[0] != want || got[1] != want {
		t.Fatalf("parallel %q %q, alone %q", got[0], got[1], want)
	}
}

func TestReadmeExampleRunsAsWritten(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	must(t, err)
	m := regexp.MustCompile("(?s)```go\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("no go block in README.md")
	}
	body := string(m[1])
	body = body[strings.Index(body, "func main() {")+len("func main() {"):]
	lines := 0
	for _, l := range strings.Split(body, "\n") {
		if strings.TrimSpace(l) != "" && strings.TrimSpace(l) != "}" {
			lines++
		}
	}
	if lines > 10 {
		t.Fatalf("the example's main has %d lines", lines)
	}
	dir := t.TempDir()
	here, _ := os.Getwd()
	must(t, os.MkdirAll(filepath.Join(dir, "models"), 0o755))
	demo, _ := filepath.Abs(filepath.Join("..", "..", "models", "tiny-chat")) // the committed demo model
	must(t, os.Symlink(demo, filepath.Join(dir, "models", "tiny-chat")))
	must(t, os.WriteFile(filepath.Join(dir, "main.go"), m[1], 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example\n\ngo 1.19\n\nrequire libdsv4/dsv4 v0.0.0\n\n"+
		"replace libdsv4/dsv4 => "+here+"\n"), 0o644))
	cmd := exec.Command("go", "run", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) < 40 {
		t.Fatalf("go run: %v\n%s", err, out)
	}
}
