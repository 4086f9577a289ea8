// tests/server/bench.mjs URL [KEY] — dsv4-server throughput (not a test):
// aggregate decode tokens/s with 1, 2, 4 and 8 concurrent streams, and the
// time to first token of a short request sent while a ~4K-token prompt is
// being fed. Plain fetch, no SDK. Start the server with --parallel 8.
// node tests/server/bench.mjs URL '' ttft: the prefill part only.
const base = process.argv[2] ?? 'http://127.0.0.1:8080';
const key = process.argv[3] ?? '';
const only = process.argv[4] ?? ''; // 'ttft': the prefill part only
const headers = { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) };

async function stream(body, onFirst) {
  const t0 = performance.now();
  const r = await fetch(`${base}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }) });
  const dec = new TextDecoder();
  let first = null, usage = null, rest = '';
  for await (const part of r.body) {
    rest += dec.decode(part, { stream: true });
    let i;
    while ((i = rest.indexOf('\n\n')) >= 0) {
      const ev = rest.slice(0, i);
      rest = rest.slice(i + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      const d = j.choices?.[0]?.delta ?? {};
      if (first === null && (d.content || d.reasoning_content)) { first = performance.now() - t0; onFirst?.(); }
      if (j.usage) usage = j.usage;
    }
  }
  return { first, total: performance.now() - t0, usage };
}

const short = (i) => ({ messages: [{ role: 'user', content: `Stream ${i}: write about the sea.` }], max_tokens: 128, temperature: 0, reasoning_effort: 'none' });
await stream(short(0)); // warm up
for (const n of only === 'ttft' ? [] : [1, 2, 4, 8]) {
  const t0 = performance.now();
  const rs = await Promise.all(Array.from({ length: n }, (_, i) => stream(short(i))));
  const secs = (performance.now() - t0) / 1000;
  const toks = rs.reduce((a, r) => a + (r.usage?.completion_tokens ?? 0), 0);
  console.log(`${n} stream(s): ${toks} tokens in ${secs.toFixed(2)} s = ${(toks / secs).toFixed(1)} tok/s aggregate`);
}
const words = Array.from({ length: 1330 }, (_, i) => `w${(i * 7919) % 100000}`).join(' ');
const long = { messages: [{ role: 'user', content: words }], max_tokens: 4, temperature: 0, reasoning_effort: 'none' };
const alone = await stream(short(99));
const tLong = performance.now();
const longRun = stream(long);
await new Promise((r) => setTimeout(r, 300));
const during = await stream({ ...short(98), max_tokens: 8 });
const lr = await longRun;
console.log(`long prompt: ${lr.usage?.prompt_tokens} tokens, first token after ${(lr.first / 1000).toFixed(2)} s (sent at 0)`);
console.log(`short request alone: first token after ${alone.first.toFixed(0)} ms`);
console.log(`short request sent 0.3 s into the long prompt: first token after ${during.first.toFixed(0)} ms`);
void tLong;
