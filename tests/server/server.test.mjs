// tests/server/server.test.mjs — dsv4-server driven by the real SDK clients
// (npm openai and @anthropic-ai/sdk) and by raw HTTP for the bad inputs.
// Run by test_server.sh: DSV4_URL (http://127.0.0.1:PORT), DSV4_KEY (the
// server's --api-key), SERVER_NODE_MODULES (where ci-setup.sh installed the
// SDKs), DSV4_PARALLEL (the server's --parallel). The model is a tiny
// synthetic checkpoint with random weights: the checks are about the
// protocol, never about the words.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import net from 'node:net';
import http from 'node:http';
import path from 'node:path';

const req = createRequire(path.join(process.env.SERVER_NODE_MODULES, 'x.js'));
const OpenAI = req('openai').default ?? req('openai');
const AnthropicMod = req('@anthropic-ai/sdk');
const Anthropic = AnthropicMod.default ?? AnthropicMod;

const base = process.env.DSV4_URL;
const key = process.env.DSV4_KEY;
const parallel = Number(process.env.DSV4_PARALLEL || 4);
const oa = new OpenAI({ apiKey: key, baseURL: `${base}/v1`, maxRetries: 0, timeout: 120000 });
const an = new Anthropic({ apiKey: key, baseURL: base, maxRetries: 0, timeout: 120000 });

const user = (text) => [{ role: 'user', content: text }];
const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city'] },
  },
};

async function health() {
  const r = await fetch(`${base}/health`);
  return r.json();
}
async function metric(name) {
  const r = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${key}` } });
  const t = await r.text();
  const m = t.match(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}
async function idle(ms = 5000) {
  const t0 = Date.now();
  for (;;) {
    const h = await health();
    if (h.slots_busy === 0 && h.queue === 0) return true;
    if (Date.now() - t0 > ms) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
}
async function raw(method, url, body, headers = {}) {
  const r = await fetch(`${base}${url}`, {
    method, body,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

test('GET /v1/models lists the model', async () => {
  const list = await oa.models.list();
  assert.ok(list.data.length === 1 && typeof list.data[0].id === 'string');
});

test('GET /health answers without a key', async () => {
  const h = await health();
  assert.equal(h.status, 'ok');
  assert.equal(h.slots_idle + h.slots_busy, parallel);
});

test('chat, not streamed: message, finish reason, usage', async () => {
  const r = await oa.chat.completions.create({ model: 'm', messages: user('Hello'), max_tokens: 8, seed: 1 });
  assert.equal(r.object, 'chat.completion');
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.ok(['stop', 'length'].includes(c.finish_reason));
  assert.ok(r.usage.prompt_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.ok(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
});

test('chat, streamed with include_usage: role first, deltas, finish reason, usage', async () => {
  const s = await oa.chat.completions.create({
    model: 'm', messages: user('Tell me a story'), max_tokens: 10, stream: true,
    stream_options: { include_usage: true }, temperature: 0,
  });
  let n = 0, role = null, finish = null, usage = null, text = '';
  for await (const ch of s) {
    if (n++ === 0) role = ch.choices[0].delta.role;
    const d = ch.choices[0]?.delta ?? {};
    text += (d.content ?? '') + (d.reasoning_content ?? '');
    if (ch.choices[0]?.finish_reason) finish = ch.choices[0].finish_reason;
    if (ch.usage) usage = ch.usage;
  }
  assert.equal(role, 'assistant');
  assert.ok(n >= 3, `${n} chunks`);
  assert.ok(finish === 'length' || finish === 'stop');
  assert.ok(usage && usage.completion_tokens >= 1 && usage.prompt_tokens > 0);
  assert.ok(text.length > 0);
});

test('reasoning: thinking mode streams reasoning_content within the budget', async () => {
  const r = await oa.chat.completions.create({
    model: 'm', messages: user('Think first'), max_tokens: 12, thinking: { type: 'enabled' }, thinking_budget: 4,
    temperature: 0,
  });
  const m = r.choices[0].message;
  assert.equal(typeof m.reasoning_content, 'string');
  const rt = r.usage.completion_tokens_details.reasoning_tokens;
  assert.ok(rt >= 1 && rt <= 5, `reasoning tokens ${rt}`); // budget 4 plus the closing token
});

test('JSON mode: the content parses as a JSON object', async () => {
  const r = await oa.chat.completions.create({
    model: 'm', messages: user('Give JSON'), max_tokens: 24, response_format: { type: 'json_object' },
    reasoning_effort: 'none', seed: 3,
  });
  const v = JSON.parse(r.choices[0].message.content);
  assert.equal(typeof v, 'object');
  assert.ok(v !== null && !Array.isArray(v));
});

test('tools: streamed tool-call arguments assemble into valid JSON', async () => {
  const s = await oa.chat.completions.create({
    model: 'm', messages: user('Weather in Paris?'), max_tokens: 160, stream: true, tools: [weather],
    tool_choice: { type: 'function', function: { name: 'get_weather' } }, reasoning_effort: 'none', seed: 2,
  });
  const calls = {};
  let finish = null, argChunks = 0;
  for await (const ch of s) {
    const c = ch.choices[0];
    for (const tc of c?.delta?.tool_calls ?? []) {
      calls[tc.index] ??= { name: '', args: '', id: null };
      if (tc.id) calls[tc.index].id = tc.id;
      if (tc.function?.name) calls[tc.index].name += tc.function.name;
      if (tc.function?.arguments) { calls[tc.index].args += tc.function.arguments; argChunks++; }
    }
    if (c?.finish_reason) finish = c.finish_reason;
  }
  // random weights: the call may run long and be closed for lack of tokens
  assert.ok(finish === 'tool_calls' || finish === 'length', `finish ${finish}`);
  assert.ok(calls[0], 'a tool call');
  assert.equal(calls[0].name, 'get_weather');
  assert.ok(calls[0].id);
  const a = JSON.parse(calls[0].args);
  assert.equal(typeof a.city, 'string');
  assert.ok(argChunks >= 2, `arguments came in ${argChunks} pieces`);
});

test('FIM: /v1/completions with a suffix', async () => {
  const r = await oa.completions.create({ model: 'm', prompt: 'def add(a, b):\n    ', suffix: '\n    return c\n', max_tokens: 6 });
  assert.equal(r.object, 'text_completion');
  assert.equal(typeof r.choices[0].text, 'string');
  assert.ok(r.usage.completion_tokens >= 1);
  const s = await oa.completions.create({ model: 'm', prompt: 'Once upon', max_tokens: 4, stream: true });
  let n = 0;
  for await (const ch of s) { assert.equal(typeof ch.choices[0].text, 'string'); n++; }
  assert.ok(n >= 2);
});

const wxTool = {
  name: 'get_weather', description: 'Weather of a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
};

test('Anthropic: thinking + tool_use, then the tool_result round trip', async () => {
  const msgs = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const r = await an.messages.create({
    model: 'm', max_tokens: 160, messages: msgs, tools: [wxTool], tool_choice: { type: 'tool', name: 'get_weather' },
    thinking: { type: 'enabled', budget_tokens: 4 }, system: 'You are terse.', temperature: 0,
  });
  assert.equal(r.type, 'message');
  assert.equal(r.role, 'assistant');
  assert.ok(['tool_use', 'max_tokens'].includes(r.stop_reason), r.stop_reason);
  const kinds = r.content.map((b) => b.type);
  assert.equal(kinds[0], 'thinking');
  const tu = r.content.find((b) => b.type === 'tool_use');
  assert.ok(tu && tu.name === 'get_weather' && typeof tu.input.city === 'string' && tu.id);
  assert.ok(r.usage.input_tokens > 0 && r.usage.output_tokens > 0);
  assert.equal(typeof r.usage.cache_read_input_tokens, 'number');
  // the round trip: the answer (thinking and tool_use blocks) goes back with the result
  msgs.push({ role: 'assistant', content: r.content });
  msgs.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: tu.id, content: 'Sunny, 21 C' }] });
  const r2 = await an.messages.create({ model: 'm', max_tokens: 8, messages: msgs, tools: [wxTool], temperature: 0 });
  assert.ok(['end_turn', 'max_tokens', 'tool_use'].includes(r2.stop_reason));
  assert.ok(r2.usage.input_tokens + r2.usage.cache_read_input_tokens > r.usage.input_tokens);
});

test('Anthropic: streamed events make the same message as the whole response (greedy)', async () => {
  const params = {
    model: 'm', max_tokens: 160, messages: [{ role: 'user', content: 'Weather in Rome?' }], tools: [wxTool],
    tool_choice: { type: 'any' }, thinking: { type: 'enabled', budget_tokens: 3 }, temperature: 0,
  };
  const whole = await an.messages.create(params);
  const events = [];
  const st = an.messages.stream(params);
  st.on('streamEvent', (e) => events.push(e.type));
  const fin = await st.finalMessage();
  assert.equal(events[0], 'message_start');
  assert.equal(events.at(-1), 'message_stop');
  assert.ok(events.includes('content_block_start') && events.includes('content_block_delta') && events.includes('message_delta'));
  assert.equal(fin.content[0].type, 'thinking');
  assert.deepEqual(fin.content.map((b) => b.type).sort(), whole.content.map((b) => b.type).sort());
  const tw = whole.content.find((b) => b.type === 'tool_use'), tf = fin.content.find((b) => b.type === 'tool_use');
  assert.ok(tw && tf);
  assert.deepEqual(tf.input, tw.input);
  assert.equal(fin.content[0].thinking, whole.content[0].thinking);
  assert.equal(fin.stop_reason, whole.stop_reason);
});

test('Anthropic: stop_sequences and text blocks', async () => {
  const r = await an.messages.create({ model: 'm', max_tokens: 6, messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi' }] }] });
  assert.equal(r.content[0].type, 'text');
  assert.ok(['end_turn', 'max_tokens', 'stop_sequence'].includes(r.stop_reason));
});

test('Anthropic: errors in the Anthropic form, naming the field', async () => {
  await assert.rejects(an.messages.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 400 && /max_tokens/.test(e.message));
  const r = await raw('POST', '/v1/messages', JSON.stringify({ max_tokens: 4, messages: [{ role: 'user', content: [{ type: 'tool_result' }] }] }));
  assert.equal(r.status, 400);
  assert.equal(r.json.type, 'error');
  assert.equal(r.json.error.type, 'invalid_request_error');
  assert.match(r.json.error.message, /messages\[0\]\.content\[0\]\.tool_use_id/);
});

test('prefix reuse: a prompt that extends a slot\'s tokens feeds only the new ones', async () => {
  assert.ok(await idle());
  const hits = await metric('dsv4_prompt_cache_hits_total');
  const p1 = 'The quick brown fox jumps over the lazy dog. It was a sunny day.';
  const a = await oa.completions.create({ model: 'm', prompt: p1, max_tokens: 1 });
  await oa.chat.completions.create({ model: 'm', messages: user('something else'), max_tokens: 1 }); // another slot
  const b = await oa.completions.create({ model: 'm', prompt: `${p1} And then`, max_tokens: 1 });
  assert.equal(a.usage.prompt_tokens_details?.cached_tokens ?? 0, 0);
  assert.equal(b.usage.prompt_tokens_details.cached_tokens, a.usage.prompt_tokens);
  assert.equal(await metric('dsv4_prompt_cache_hits_total'), hits + 1);
});

test('abort mid-stream cancels the generation and frees the slot', async () => {
  assert.ok(await idle());
  const before = await metric('dsv4_cancelled_total');
  const s = await oa.chat.completions.create({ model: 'm', messages: user('Go on and on'), max_tokens: 4000, stream: true, reasoning_effort: 'none' });
  let n = 0;
  for await (const ch of s) { void ch; if (++n === 3) break; } // leaving the loop aborts the request
  assert.ok(await idle(3000), 'the slot is free within 3 s');
  assert.equal(await metric('dsv4_cancelled_total'), before + 1);
});

test('8 concurrent greedy streams all complete, each equal to its sequential run', async () => {
  const prompts = Array.from({ length: 8 }, (_, i) => `Prompt number ${i}: say something about ${i * 7}`);
  const p = (q) => ({ model: 'm', messages: user(q), max_tokens: 12, temperature: 0, reasoning_effort: 'none' });
  const seq = [];
  for (const q of prompts) seq.push((await oa.chat.completions.create(p(q))).choices[0].message.content);
  const runs = prompts.map(async (q) => {
    const s = await oa.chat.completions.create({ ...p(q), stream: true });
    let t = '';
    for await (const ch of s) t += ch.choices[0]?.delta?.content ?? '';
    return t;
  });
  const par = await Promise.all(runs);
  assert.deepEqual(par, seq);
});

test('TTFT: a short request\'s first token comes while a long prompt is still being prefilled', async () => {
  // an ordering, not a time: the long prompt (~1700 tokens) needs 7 or more
  // engine steps of --prefill-chunk 256 tokens; the short request, sent once
  // the long one holds a slot, is fed beside those chunks (continuous
  // batching) and must have its first token before the long one has any.
  // Without chunked prefill the long prompt would be fed whole first.
  assert.ok(await idle());
  const order = [];
  const first = async (name, stream) => {
    let seen = false;
    for await (const ch of stream) {
      const c = ch.choices[0];
      if (!seen && c && ((c.delta?.content ?? '') !== '' || (c.delta?.reasoning_content ?? '') !== '' || c.finish_reason)) {
        seen = true;
        order.push(name);
      }
    }
  };
  const body = (q, n) => ({ model: 'm', messages: user(q), max_tokens: n, temperature: 0, reasoning_effort: 'none', stream: true });
  const longText = Array.from({ length: 850 }, (_, i) => `w${i % 10}`).join(' '); // ~1700 tokens
  const longRun = oa.chat.completions.create(body(longText, 2)).then((st) => first('long', st));
  const t0 = Date.now();
  while ((await health()).slots_busy < 1 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 2));
  const shortRun = oa.chat.completions.create(body('Hi', 2)).then((st) => first('short', st));
  await Promise.all([longRun, shortRun]);
  assert.deepEqual(order, ['short', 'long'], `first tokens in the order ${order.join(', ')}`);
});

test('more requests than slots and queue: 429 with Retry-After', async () => {
  assert.ok(await idle());
  const u = new URL(base);
  const body = JSON.stringify({ messages: user('long'), max_tokens: 4000, stream: true, reasoning_effort: 'none' });
  const n = parallel + Number(process.env.DSV4_QUEUE || 8) + 4;
  const reqs = [];
  // one connection each (node:http, no pooling), all sent at once
  const rs = await Promise.all(Array.from({ length: n }, () => new Promise((resolve) => {
    const r = http.request({ host: u.hostname, port: u.port, path: '/v1/chat/completions', method: 'POST', agent: false,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } }, (res) => {
      resolve({ status: res.statusCode, retry: res.headers['retry-after'] });
      if (res.statusCode !== 200) res.resume();
    });
    r.on('error', () => resolve({ status: 0 }));
    setTimeout(() => resolve({ status: 'waiting' }), 3000); // queued: no answer until a slot frees
    reqs.push(r);
    r.end(body);
  })));
  for (const r of reqs) r.destroy();
  const limited = rs.filter((r) => r.status === 429);
  assert.ok(limited.length >= 1, `statuses ${rs.map((r) => r.status)}`);
  assert.ok(limited.every((r) => Number(r.retry) >= 1));
  assert.ok(rs.every((r) => [200, 429, 'waiting'].includes(r.status)), `statuses ${rs.map((r) => r.status)}`);
  assert.ok(await idle(8000), 'every slot free after the aborts');
});

test('wrong API key: 401 for both SDKs; /health needs none', async () => {
  const bad = new OpenAI({ apiKey: 'wrong', baseURL: `${base}/v1`, maxRetries: 0 });
  await assert.rejects(bad.chat.completions.create({ model: 'm', messages: user('x'), max_tokens: 2 }), (e) => e.status === 401);
  const badA = new Anthropic({ apiKey: 'wrong', baseURL: base, maxRetries: 0 });
  await assert.rejects(badA.messages.create({ model: 'm', max_tokens: 2, messages: user('x') }),
    (e) => e.status === 401 && e.error?.type === 'error');
  const none = await fetch(`${base}/v1/models`);
  assert.equal(none.status, 401);
  const xk = await fetch(`${base}/v1/models`, { headers: { 'x-api-key': key } });
  assert.equal(xk.status, 200);
});

test('bad inputs: malformed JSON, wrong types, unknown fields', async () => {
  let r = await raw('POST', '/v1/chat/completions', '{"messages": [');
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /not JSON/);
  r = await raw('POST', '/v1/chat/completions', JSON.stringify({ messages: user('x'), temperature: 'hot' }));
  assert.equal(r.status, 400);
  assert.equal(r.json.error.param, 'temperature');
  r = await raw('POST', '/v1/chat/completions', JSON.stringify({ messages: user('x'), frobnicate: 1 }));
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /frobnicate/);
  r = await raw('POST', '/v1/chat/completions', JSON.stringify({ max_tokens: 3 }));
  assert.equal(r.status, 400);
  assert.equal(r.json.error.param, 'messages');
  r = await raw('POST', '/v1/completions', JSON.stringify({ prompt: 7 }));
  assert.equal(r.status, 400);
  r = await raw('POST', '/v1/chat/completions', '[1, 2]');
  assert.equal(r.status, 400);
});

test('bad inputs: a 10 MB body is refused with 413', async () => {
  const big = JSON.stringify({ messages: user('x'.repeat(10 * 1024 * 1024)) });
  const r = await raw('POST', '/v1/chat/completions', big).catch((e) => ({ status: 'reset', e }));
  // the server may answer 413 before reading the body, or close the connection after it
  assert.ok(r.status === 413 || r.status === 'reset', `status ${r.status}`);
  if (r.status === 413) assert.match(r.json.error.message, /max-body/);
  assert.equal((await health()).status, 'ok');
});

test('bad inputs: unknown routes and methods', async () => {
  let r = await raw('GET', '/v1/nothing');
  assert.equal(r.status, 404);
  assert.ok(r.json.error.message.includes('/v1/nothing'));
  r = await raw('GET', '/v1/chat/completions');
  assert.equal(r.status, 405);
  r = await raw('DELETE', '/v1/models');
  assert.equal(r.status, 405);
  r = await raw('POST', '/v1/messages/extra', '{}');
  assert.equal(r.status, 404);
  assert.equal(r.json.type, 'error');
});

test('bad inputs: a client sending its headers slowly is dropped after the timeout', async () => {
  const u = new URL(base);
  const closed = await new Promise((resolve) => {
    const s = net.connect(Number(u.port), u.hostname, () => {
      s.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n');
      let i = 0;
      const t = setInterval(() => { if (i++ < 3) s.write(`X-Slow-${i}: y\r\n`); }, 300);
      const t0 = Date.now();
      s.on('close', () => { clearInterval(t); resolve(Date.now() - t0); });
      s.on('error', () => {});
      setTimeout(() => { clearInterval(t); s.destroy(); resolve(-1); }, 15000);
    });
  });
  assert.ok(closed > 0, 'the server closed the connection');
  assert.equal((await health()).status, 'ok');
});

test('metrics: Prometheus text with the counters', async () => {
  const r = await raw('GET', '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /text\/plain/);
  for (const m of ['dsv4_requests_total{endpoint="chat_completions"}', 'dsv4_completion_tokens_total', 'dsv4_prompt_cache_hits_total',
    'dsv4_queue_length', 'dsv4_tokens_per_second'])
    assert.ok(r.text.includes(m), m);
  assert.ok((await metric('dsv4_completion_tokens_total')) > 0);
});
