// The official Cartesia JavaScript SDK (4.2.0, npm) in Node against Chorus over TLS: the SDK opens its TTS
// WebSocket on wss:// only. Streams one context with word timestamps, then mints an access token with the API key
// and synthesizes with the token. The test CA comes from NODE_EXTRA_CA_CERTS.
//
// Usage: node wss_stream.cjs BASE_URL API_KEY VOICE OUT_JSON
'use strict';
const fs = require('fs');
const { Cartesia } = require('@cartesia/cartesia-js');

async function main() {
  const [baseURL, apiKey, voice, out] = process.argv.slice(2);
  const client = new Cartesia({ apiKey, baseURL, maxRetries: 0 });
  const ws = await client.tts.websocket();
  const result = { url: ws.url.toString() };
  const socket = ws.socket.platformSocket || ws.socket;
  result.extensions = socket.extensions || '';
  const ctx = ws.context({
    model_id: 'sonic-3',
    voice: { mode: 'id', id: voice },
    output_format: { container: 'raw', encoding: 'pcm_s16le', sample_rate: 16000 },
    add_timestamps: true,
  });
  await ctx.push({ transcript: 'Hello from the JavaScript SDK, ' });
  await ctx.push({ transcript: 'streaming over a secure socket.' });
  await ctx.no_more_inputs();
  const chunks = [];
  const types = [];
  result.words = [];
  for await (const ev of ctx.receive()) {
    types.push(ev.type);
    if (ev.type === 'chunk' && ev.data) chunks.push(Buffer.from(ev.data, 'base64'));
    if (ev.type === 'timestamps' && ev.word_timestamps) result.words.push(...ev.word_timestamps.words);
  }
  ws.close();
  result.types = types;
  result.pcm_b64 = Buffer.concat(chunks).toString('base64');

  // An access token, minted with the key, then used alone.
  const minted = await client.accessToken.create({ grants: { tts: true }, expires_in: 60 });
  const withToken = new Cartesia({ token: minted.token, baseURL, maxRetries: 0 });
  const response = await withToken.tts.generate({
    model_id: 'sonic-3',
    transcript: 'Spoken with an access token.',
    voice: { mode: 'id', id: voice },
    output_format: { container: 'wav', encoding: 'pcm_s16le', sample_rate: 16000 },
  });
  result.token_wav_bytes = (await response.arrayBuffer()).byteLength;
  fs.writeFileSync(out, JSON.stringify(result));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
