//! Tests of the safe crate against the libdsv4 just built (bindings/rust/run-tests.sh sets
//! DSV4_SHARED_DIR, DSV4_DEMO_MODEL, PKG_CONFIG_PATH and LD_LIBRARY_PATH).
use dsv4::json::{self, Value};
use dsv4::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn shared() -> PathBuf {
    let d = PathBuf::from(std::env::var("DSV4_SHARED_DIR").unwrap_or_else(|_| "../../../../shared".into()));
    assert!(d.join("golden/index.json").exists(), "shared test material not found at {:?} (DSV4_SHARED_DIR)", d);
    d
}

fn demo() -> PathBuf {
    let d = PathBuf::from(std::env::var("DSV4_DEMO_MODEL").unwrap_or_else(|_| "../../../models/tiny".into()));
    assert!(d.join("tokenizer.json").exists(), "demo model not found at {:?} (DSV4_DEMO_MODEL)", d);
    d
}

fn golden_ckpt() -> PathBuf {
    shared().join("golden/tiny-a/ckpt")
}

fn opts(n_ctx: i64) -> ContextOptions {
    ContextOptions { threads: Some(1), context_length: Some(n_ctx), ..Default::default() }
}

const HELLO: &str = r#"[{"role":"user","content":"Hello!"}]"#;

fn content(resp: &str) -> (String, String, Value) {
    let v = json::parse(resp).expect("response JSON");
    let msg = v.get("choices").and_then(|c| c.at(0)).and_then(|c| c.get("message")).expect("message").clone();
    let c = msg.get("content").and_then(|x| x.as_str()).unwrap_or("").to_string();
    let r = msg.get("reasoning_content").and_then(|x| x.as_str()).unwrap_or("").to_string();
    (r, c, v)
}

#[test]
fn version_and_abi() {
    check_library().unwrap();
    assert_eq!(version(), "0.1.0");
    let e = dsv4::__abi_check_for_tests(7, "7.0.0").unwrap_err();
    assert!(e.message.contains("ABI version 7") && e.message.contains("needs ABI version 0") && e.message.contains("7.0.0"));
}

#[test]
fn load_demo_and_golden() {
    let m = Model::load(demo()).unwrap();
    assert_eq!(m.vocab_size(), 129280);
    let g = Model::load_with(golden_ckpt(), &ModelOptions { resident: Some(false), ..Default::default() }).unwrap();
    assert_eq!(g.vocab_size(), 512);
    assert_eq!(g.info(info::N_LAYERS).unwrap(), 4);
}

#[test]
fn tokenizer_golden_round_trip() {
    let text = std::fs::read_to_string(shared().join("tokenizers/deepseek-v4/golden-ids.jsonl")).unwrap();
    let cases: Vec<(String, Vec<i32>)> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v = json::parse(l).unwrap();
            let ids = v.get("ids").unwrap().as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as i32).collect();
            (v.get("text").unwrap().as_str().unwrap().to_string(), ids)
        })
        .collect();
    assert!(cases.len() > 200);
    for path in [shared().join("tokenizers/deepseek-v4/tokenizer.json"), demo().join("tokenizer.json")] {
        let tok = Tokenizer::load(&path).unwrap();
        let bad: Vec<&String> = cases
            .iter()
            .filter(|(t, ids)| tok.encode(t, 0).unwrap() != *ids || tok.decode(ids).unwrap() != *t)
            .map(|(t, _)| t)
            .collect();
        assert!(bad.is_empty(), "{:?}: {}/{} differ, first {:?}", path, bad.len(), cases.len(), bad.first());
        assert_eq!(tok.vocab_size(), 129280);
        assert!(tok.special_id(TOKEN_EOS).is_some());
    }
}

fn load_npy(path: &Path) -> (usize, usize, Vec<f32>) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let (hlen, start) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&b[start..start + hlen]).unwrap();
    assert!(header.contains("'<f4'") && !header.contains("'fortran_order': True"), "{}", header);
    let shape = &header[header.find("'shape': (").unwrap() + 10..];
    let shape = &shape[..shape.find(')').unwrap()];
    let dims: Vec<usize> = shape.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse().unwrap()).collect();
    let body = &b[start + hlen..];
    let v = (0..dims[0] * dims[1])
        .map(|i| f32::from_le_bytes([body[4 * i], body[4 * i + 1], body[4 * i + 2], body[4 * i + 3]]))
        .collect();
    (dims[0], dims[1], v)
}

#[test]
fn golden_logits_within_1e5() {
    let dir = shared().join("golden/tiny-a");
    let toks: Vec<i32> = json::parse(&std::fs::read_to_string(dir.join("short/tokens.json")).unwrap())
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as i32)
        .collect();
    let (n, vocab, gl) = load_npy(&dir.join("short/noaq/logits_f32_prefill.npy"));
    assert_eq!(n, toks.len());
    let m = Model::load(dir.join("ckpt")).unwrap();
    let c = m.context(&ContextOptions { numerics: Some(NUMERICS_FLOAT), threads: Some(1), ..Default::default() }).unwrap();
    let mut s = c.session().unwrap();
    s.eval(&toks, true).unwrap();
    assert_eq!(s.position(), n as i64);
    let mut worst = 0f64;
    for p in 0..n {
        let row = s.logits(p as i64).unwrap();
        assert_eq!(row.len(), vocab);
        for v in 0..vocab {
            worst = worst.max((row[v] as f64 - gl[p * vocab + v] as f64).abs());
        }
    }
    assert!(worst <= 1e-5, "max |logit - golden| = {}", worst);
    let e = s.logits_into(&mut vec![0f32; vocab - 1], -1).unwrap_err();
    assert_eq!(e.status, status::BUFFER_TOO_SMALL);
    assert_eq!(s.logits(n as i64 + 3).unwrap_err().status, status::NOT_AVAILABLE);
}

fn demo_rig(n_ctx: i64) -> (Model, Context, Session, Tokenizer) {
    let m = Model::load(demo()).unwrap();
    let c = m.context(&opts(n_ctx)).unwrap();
    let s = c.session().unwrap();
    let t = m.tokenizer().unwrap();
    (m, c, s, t)
}

#[test]
fn streamed_chat_concatenates_to_response() {
    let (_m, _c, s, t) = demo_rig(2048);
    let mut g = Generator::new(&s, &t).unwrap();
    let req = format!(r#"{{"messages":{},"max_tokens":48,"seed":3,"thinking_budget":12}}"#, HELLO);
    let (mut reasoning, mut text, mut stops, mut last) = (Vec::new(), Vec::new(), 0, None);
    for ev in g.stream(&req).unwrap() {
        let ev = ev.unwrap();
        match ev.kind {
            EventKind::Reasoning => reasoning.extend_from_slice(&ev.data),
            EventKind::Content => text.extend_from_slice(&ev.data),
            EventKind::Stop => stops += 1,
            _ => {}
        }
        last = Some(ev);
    }
    let last = last.unwrap();
    assert_eq!(stops, 1);
    assert!(matches!(last.finish, Some(FinishReason::Stop) | Some(FinishReason::Length)));
    let resp = g.response_json().unwrap();
    let (r, c, v) = content(&resp);
    assert!(!reasoning.is_empty());
    assert_eq!(String::from_utf8_lossy(&reasoning), r);
    assert_eq!(String::from_utf8_lossy(&text), c);
    let fr = v.get("choices").unwrap().at(0).unwrap().get("finish_reason").unwrap().as_str().unwrap().to_string();
    assert_eq!(fr, last.finish.unwrap().as_str());
    let toks = v.get("usage").unwrap().get("completion_tokens").unwrap().as_f64().unwrap() as i64;
    assert_eq!(toks, g.n_tokens());
    let again = g.chat(&req).unwrap();
    assert_eq!(content(&again).1, c);
    let prompt = render_chat(&format!(r#"{{"messages":{}}}"#, HELLO)).unwrap();
    assert!(prompt.contains("Hello!"));
}

#[test]
fn json_mode_parses() {
    let (_m, _c, s, t) = demo_rig(2048);
    let mut g = Generator::new(&s, &t).unwrap();
    for seed in 0..3 {
        let req = format!(
            r#"{{"messages":{},"seed":{},"max_tokens":{},"response_format":{{"type":"json_object"}},"thinking":{{"type":"disabled"}}}}"#,
            HELLO, seed, 10 + 9 * seed
        );
        let (_, c, _) = content(&g.chat(&req).unwrap());
        assert!(json::parse(&c).map(|v| v.is_object()).unwrap_or(false), "seed {}: {:?}", seed, c);
    }
}

const TOOLS: &str = r#"[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}},{"type":"function","function":{"name":"add","parameters":{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number"}},"required":["x","y"]}}}]"#;

#[test]
fn tool_call_parses() {
    let (_m, _c, s, t) = demo_rig(2048);
    let mut g = Generator::new(&s, &t).unwrap();
    for seed in 0..3 {
        let req = format!(
            r#"{{"messages":[{{"role":"user","content":"Weather in Paris?"}}],"tools":{},"tool_choice":"required","seed":{},"max_tokens":80,"thinking":{{"type":"disabled"}}}}"#,
            TOOLS, seed
        );
        let events: Vec<Event> = g.stream(&req).unwrap().map(|e| e.unwrap()).collect();
        let (_, _, v) = content(&g.response_json().unwrap());
        let calls = v.get("choices").unwrap().at(0).unwrap().get("message").unwrap().get("tool_calls").unwrap();
        let calls = calls.as_array().unwrap();
        assert!(!calls.is_empty());
        for (i, call) in calls.iter().enumerate() {
            let f = call.get("function").unwrap();
            let args = json::parse(f.get("arguments").unwrap().as_str().unwrap()).unwrap();
            assert!(args.is_object());
            let name: Vec<String> = events
                .iter()
                .filter(|e| e.kind == EventKind::ToolCallStart && e.index == i as i32)
                .map(|e| e.text())
                .collect();
            let pieces: String =
                events.iter().filter(|e| e.kind == EventKind::ToolCallArgs && e.index == i as i32).map(|e| e.text()).collect();
            assert_eq!(name, vec![f.get("name").unwrap().as_str().unwrap().to_string()]);
            assert_eq!(json::parse(&pieces).unwrap(), args);
            assert!(events.iter().any(|e| e.kind == EventKind::ToolCallEnd && e.index == i as i32));
        }
    }
}

#[test]
fn errors_keep_the_message() {
    let dir = std::env::temp_dir().join(format!("dsv4-rs-missing-{}", std::process::id()));
    let e = Model::load(dir.join("no-such-model")).err().unwrap();
    assert_eq!(e.status, status::IO);
    assert!(e.message.contains("no-such-model"), "{}", e);
    let (m, _c, s, t) = demo_rig(256);
    let mut g = Generator::new(&s, &t).unwrap();
    assert_eq!(g.start_request("{not json").unwrap_err().status, status::BAD_FORMAT);
    let e = g.start_request(&format!(r#"{{"messages":{},"max_tokenz":3}}"#, HELLO)).unwrap_err();
    assert!(e.status == status::INVALID_ARGUMENT && e.message.contains("max_tokenz") && e.to_string().contains("max_tokenz"));
    let e = m.context(&ContextOptions { context_length: Some(0), ..Default::default() }).err().unwrap();
    assert!(e.status == status::INVALID_ARGUMENT && e.message.contains("context_length"), "{}", e);
    assert_eq!(g.set_sampler_f64(sampler_param::TEMPERATURE, -1.0).unwrap_err().status, status::INVALID_ARGUMENT);
    assert_eq!(g.set(99999, 1).unwrap_err().status, status::UNKNOWN_OPTION);
    let c = m.context(&opts(8)).unwrap();
    let mut s2 = c.session().unwrap();
    let e = s2.eval(&[1, 2, 3, 4, 5, 6, 7, 8, 9], false).unwrap_err();
    assert!(e.status == status::CONTEXT_FULL && !e.message.is_empty());
    assert!(Tokenizer::load(dir.join("none.json")).is_err());
}

/// The V4 tokenizer cut to its first 1000 ids: loads in milliseconds.
fn small_tokenizer() -> PathBuf {
    let mut t = json::parse(&std::fs::read_to_string(shared().join("tokenizers/deepseek-v4/tokenizer.json")).unwrap()).unwrap();
    if let Value::Object(top) = &mut t {
        for (k, model) in top.iter_mut() {
            if k != "model" {
                continue;
            }
            if let Value::Object(mm) = model {
                let mut keep = std::collections::HashSet::new();
                for (mk, mv) in mm.iter_mut() {
                    if mk == "vocab" {
                        if let Value::Object(v) = mv {
                            v.retain(|(_, id)| id.as_f64().unwrap() < 1000.0);
                            keep = v.iter().map(|(k, _)| k.clone()).collect();
                        }
                    }
                }
                for (mk, mv) in mm.iter_mut() {
                    if mk == "merges" {
                        if let Value::Array(a) = mv {
                            a.retain(|m| {
                                let parts: Vec<String> = match m {
                                    Value::String(s) => s.splitn(2, ' ').map(String::from).collect(),
                                    Value::Array(p) => p.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
                                    _ => vec![],
                                };
                                parts.len() == 2 && parts.iter().all(|p| keep.contains(p)) && keep.contains(&parts.concat())
                            });
                        }
                    }
                }
            }
        }
    }
    let path = std::env::temp_dir().join(format!("dsv4-rs-tok-{}.json", std::process::id()));
    std::fs::write(&path, t.to_string()).unwrap();
    path
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

#[allow(dead_code)] // held only to be dropped
enum Obj {
    M(Model),
    C(Context),
    S(Session),
    T(Tokenizer),
    G(Generator),
}

#[test]
fn dropped_in_every_order() {
    let tok = small_tokenizer();
    for order in permutations(5) {
        let m = Model::load(golden_ckpt()).unwrap();
        let c = m.context(&opts(32)).unwrap();
        let s = c.session().unwrap();
        let t = Tokenizer::load(&tok).unwrap();
        let mut g = Generator::new(&s, &t).unwrap();
        g.set(gen_param::MAX_TOKENS, 2).unwrap();
        g.start(&[0, 1, 2]).unwrap();
        let mut objs: Vec<Option<Obj>> = vec![Some(Obj::M(m)), Some(Obj::C(c)), Some(Obj::S(s)), Some(Obj::T(t)), Some(Obj::G(g))];
        for i in order {
            drop(objs[i].take());
        }
    }
    // a dropped model's context still makes sessions, and they work
    let c2 = {
        let m2 = Model::load(golden_ckpt()).unwrap();
        m2.context(&opts(16)).unwrap()
    };
    let mut s2 = c2.session().unwrap();
    drop(c2);
    s2.eval(&[1, 2, 3], false).unwrap();
    assert_eq!(s2.logits(-1).unwrap().len(), 512);
    // a generator outliving its parents still works
    let m = Model::load(golden_ckpt()).unwrap();
    let c = m.context(&opts(32)).unwrap();
    let s = c.session().unwrap();
    let t = Tokenizer::load(&tok).unwrap();
    let mut g = Generator::new(&s, &t).unwrap();
    drop((m, c, s, t));
    g.set(gen_param::MAX_TOKENS, 4).unwrap();
    g.start(&[0, 10, 20]).unwrap();
    let evs: Vec<Event> = g.events().map(|e| e.unwrap()).collect();
    assert_eq!(evs.last().unwrap().kind, EventKind::Stop);
    assert_eq!(g.n_tokens(), 4);
    let _ = std::fs::remove_file(tok);
}

#[test]
fn cancel_from_another_thread() {
    let (_m, _c, s, t) = demo_rig(4096);
    let mut g = Generator::new(&s, &t).unwrap();
    let cancel = g.canceller();
    let req = format!(
        r#"{{"messages":{},"max_tokens":3000,"thinking":{{"type":"disabled"}},"logit_bias":{{"1":-100}}}}"#,
        HELLO
    );
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let th = std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        cancel.cancel();
    });
    let mut last = None;
    for ev in g.stream(&req).unwrap() {
        started.store(true, Ordering::SeqCst);
        last = Some(ev.unwrap());
    }
    th.join().unwrap();
    assert_eq!(last.unwrap().finish, Some(FinishReason::Cancelled));
    assert!(g.n_tokens() < 3000);
    let c2 = g.canceller();
    drop(g);
    c2.cancel(); // harmless once the generator is gone
}

#[test]
fn two_sessions_in_two_threads() {
    let m = Model::load(demo()).unwrap();
    let t = m.tokenizer().unwrap();
    let req = format!(r#"{{"messages":{},"max_tokens":24,"seed":11,"temperature":0.8}}"#, HELLO);
    let run = || {
        let c = m.context(&opts(512)).unwrap();
        let s = c.session().unwrap();
        let mut g = Generator::new(&s, &t).unwrap();
        let (r, c, _) = content(&g.chat(&req).unwrap());
        r + "|" + &c
    };
    let alone = run();
    let (a, b) = std::thread::scope(|sc| {
        let a = sc.spawn(run);
        let b = sc.spawn(run);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a, alone);
    assert_eq!(b, alone);
    // a context and its session moved to another thread together
    let c = m.context(&opts(64)).unwrap();
    let mut s = c.session().unwrap();
    std::thread::spawn(move || {
        s.eval(&[1, 2, 3], false).unwrap();
        drop(c);
        assert_eq!(s.position(), 3);
    })
    .join()
    .unwrap();
}

fn _send_sync_as_threads_md_allows() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Model>();
    send_sync::<Tokenizer>();
    send_sync::<Canceller>();
    send::<Context>();
    send::<Session>();
    send::<Generator>();
}

#[test]
fn readme_example_is_the_example_file() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("```rust\n").expect("rust block") + 8;
    let block = &readme[start..start + readme[start..].find("```").unwrap()];
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/stream.rs")).unwrap();
    assert_eq!(block, example, "README.md's example differs from dsv4/examples/stream.rs");
    let body = &example[example.find("fn main").unwrap()..];
    let lines = body.lines().filter(|l| !l.trim().is_empty() && l.trim() != "}").count() - 1;
    assert!(lines <= 10, "{} lines in main", lines);
}

/// The JSON reader never panics on mutated input and reads back what it writes.
#[test]
fn json_reader_is_robust() {
    let seeds = [
        r#"{"a":[1,2.5e3,-0.25,{"b":null,"c":true,"d":false}],"e":"x\"y\\z\u00e9\ud83c\udf0d\n"}"#,
        r#"[[],{},"",0,[{"k":[["deep"]]}]]"#,
        TOOLS,
    ];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for s in seeds.iter() {
        let v = json::parse(s).unwrap();
        assert_eq!(json::parse(&v.to_string()).unwrap(), v);
        for _ in 0..3000 {
            let mut b = s.as_bytes().to_vec();
            for _ in 0..1 + rnd() % 4 {
                let i = (rnd() as usize) % b.len();
                match rnd() % 3 {
                    0 => b[i] = (rnd() % 256) as u8,
                    1 => {
                        b.remove(i);
                    }
                    _ => b.insert(i, b"{}[]\",:\\0e-"[(rnd() % 11) as usize]),
                }
                if b.is_empty() {
                    break;
                }
            }
            let t = String::from_utf8_lossy(&b);
            if let Ok(v) = json::parse(&t) {
                assert_eq!(json::parse(&v.to_string()).unwrap(), v, "{}", t);
            }
        }
    }
    assert!(json::parse(&"[".repeat(100000)).is_err()); // nesting bounded, no stack overflow
    assert_eq!(json::quote("a\"b\n\u{1}"), r#""a\"b\n\u0001""#);
}
