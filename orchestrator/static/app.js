// Unmute on SLURM browser client: microphone -> /v1/realtime (OpenAI Realtime events)
// -> assistant audio. Capture and playback run in AudioWorklets (capture-processor.js,
// playback-processor.js); this file wires them to the WebSocket and draws the page.
// Every URL is relative to the page, so the UI also works behind a proxy that serves it
// under a path prefix (Open OnDemand's /rnode/<host>/<port>/).

const $ = (sel) => document.querySelector(sel);
const SAMPLE_RATE = 24000;
const SEND_EVERY_MS = 100; // batch 20 ms capture blocks into 100 ms appends

const ui = {
  talk: $('#talk'), state: $('#state'), error: $('#error'), conversation: $('#conversation'),
  hint: $('#hint'), echo: $('#echo-banner'), instructions: $('#instructions'), voice: $('#voice'),
  preemptive: $('#preemptive'), insecure: $('#insecure'),
};

// Browsers give the microphone only to a secure page: https, or http://localhost (the SSH
// tunnel). Anywhere else navigator.mediaDevices is missing, so say how to get one.
const microphoneAllowed = window.isSecureContext && Boolean(navigator.mediaDevices?.getUserMedia);

function explainNoMicrophone() {
  if (window.isSecureContext) {
    ui.insecure.textContent = 'This browser gives pages no microphone (navigator.mediaDevices is missing): '
      + 'use a current Chrome, Edge or Firefox.';
  } else {
    const tunnel = `http://localhost:${location.port || '80'}/`;
    const link = document.createElement('a');
    link.href = tunnel;
    link.textContent = tunnel;
    ui.insecure.replaceChildren(
      'The microphone needs HTTPS or a tunnel: browsers do not let a plain http:// page from another ',
      'machine record. Open the https:// address the job prints, or start the SSH tunnel it prints and ',
      'open ', link, ' (with the ?token=… it prints).',
    );
  }
  ui.insecure.hidden = false;
}

let live = null; // {ws, context, stream, capture, playback}
const turns = new Map(); // item_id -> {el, text, kind}
const played = new Map(); // assistant item_id -> samples played (24 kHz)
window.unmutePlayed = played; // read by the browser tests
let errorTimer = null;
// Client-side voice to voice: from the last microphone block with voice in it to the
// first audible sample of the reply, both on the AudioContext's clock.
const VOICE_RMS = 0.02;
let lastVoiceTime = null;
window.unmuteLatencies = []; // read by the browser tests

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { ui.error.hidden = true; }, 8000);
}

function bubble(itemId, kind) {
  let turn = turns.get(itemId);
  if (!turn) {
    ui.hint.hidden = true;
    const el = document.createElement('div');
    el.className = `turn ${kind} pending`;
    el.textContent = '…';
    el.dataset.item = itemId;
    ui.conversation.appendChild(el);
    turn = { el, text: '', kind };
    turns.set(itemId, turn);
  }
  return turn;
}

function setText(turn, text, tag) {
  turn.text = text;
  turn.el.textContent = text;
  if (tag) {
    const t = document.createElement('span');
    t.className = 'tag';
    t.textContent = tag;
    turn.el.appendChild(t);
  }
  turn.el.scrollIntoView({ block: 'end' });
}

// An interrupted reply: what was heard, then the cut-off rest struck through (once the
// server has mapped the client's playback position onto the words).
function renderInterrupted(turn) {
  const heard = turn.heard !== undefined && turn.text.startsWith(turn.heard) ? turn.heard : null;
  turn.el.textContent = heard ?? turn.text;
  if (heard !== null) {
    const cut = document.createElement('span');
    cut.className = 'unheard';
    cut.textContent = turn.text.slice(heard.length);
    turn.el.appendChild(cut);
  }
  const tag = document.createElement('span');
  tag.className = 'tag';
  tag.textContent = 'interrupted';
  turn.el.appendChild(tag);
}

function base64ToFloat32(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const pcm16 = new Int16Array(bytes.buffer);
  const out = new Float32Array(pcm16.length);
  for (let i = 0; i < pcm16.length; i++) out[i] = pcm16[i] / 32768;
  return out;
}

function int16ToBase64(chunks) {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const bytes = new Uint8Array(total * 2);
  let offset = 0;
  for (const c of chunks) { bytes.set(new Uint8Array(c.buffer), offset); offset += c.byteLength; }
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function send(event) {
  if (live && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify(event));
}

function onServerEvent(event) {
  switch (event.type) {
    case 'input_audio_buffer.speech_started':
      ui.state.textContent = 'listening…';
      bubble(event.item_id, 'user');
      break;
    case 'conversation.item.input_audio_transcription.delta': {
      const turn = bubble(event.item_id, 'user');
      setText(turn, turn.text + event.delta);
      break;
    }
    case 'conversation.item.input_audio_transcription.completed': {
      const turn = bubble(event.item_id, 'user');
      if (!event.transcript) { turn.el.remove(); turns.delete(event.item_id); break; }
      setText(turn, event.transcript);
      turn.el.classList.remove('pending');
      ui.state.textContent = 'thinking…';
      break;
    }
    case 'response.output_audio_transcript.delta': {
      const turn = bubble(event.item_id, 'assistant');
      setText(turn, turn.text + event.delta);
      break;
    }
    case 'session.created':
    case 'session.updated':
      window.unmuteSession = event.session;  // what the tests (and a curious user) can read
      break;
    case 'response.output_audio.delta':
      ui.state.textContent = 'speaking…';
      live.playback.port.postMessage({ type: 'push', item: event.item_id, samples: base64ToFloat32(event.delta) });
      break;
    case 'response.output_audio.done':
      live.playback.port.postMessage({ type: 'end' });
      break;
    case 'unmute_slurm.output_audio.clear': {
      // Barge-in: stop playback now and tell the server what was actually heard.
      live.playback.port.postMessage({ type: 'flush' });
      const samples = played.get(event.item_id) || 0;
      send({ type: 'conversation.item.truncate', item_id: event.item_id, content_index: 0,
             audio_end_ms: Math.round((samples / SAMPLE_RATE) * 1000) });
      const turn = turns.get(event.item_id);
      if (turn) turn.interrupted = true;
      break;
    }
    case 'conversation.item.truncated': {
      const turn = turns.get(event.item_id);
      if (turn && typeof event.transcript === 'string') {
        turn.heard = event.transcript;
        renderInterrupted(turn);
      }
      break;
    }
    case 'response.done': {
      const item = event.response.output[0];
      const turn = item && turns.get(item.id);
      if (turn) {
        turn.el.classList.remove('pending');
        const status = event.response.status;
        if (status === 'cancelled') renderInterrupted(turn);
        else if (status !== 'completed') setText(turn, turn.text, status);
      }
      ui.state.textContent = 'listening';
      break;
    }
    case 'unmute_slurm.latency':
      for (const [stage, ms] of Object.entries(event.stages_ms)) {
        const cell = document.querySelector(`td[data-stage="${stage}"]`);
        if (cell) cell.textContent = ms == null ? '-' : `${Math.round(ms)} ms`;
      }
      break;
    case 'error':
      showError(event.error.message);
      break;
    default:
      break;
  }
}

async function start() {
  if (!microphoneAllowed) {
    showError('Cannot start: this page cannot have the microphone (see above).');
    ui.state.textContent = 'no microphone';
    ui.insecure.scrollIntoView({ block: 'nearest' });
    return;
  }
  ui.talk.disabled = true;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    // The context runs at the device's own rate; the worklets convert to and from 24 kHz.
    const context = new AudioContext();
    await context.audioWorklet.addModule('static/capture-processor.js');
    await context.audioWorklet.addModule('static/playback-processor.js');
    const capture = new AudioWorkletNode(context, 'capture-processor');
    const playback = new AudioWorkletNode(context, 'playback-processor', { outputChannelCount: [1] });
    capture.onprocessorerror = () => showError('microphone processing failed; press Stop and Start');
    playback.onprocessorerror = () => showError('audio playback failed; press Stop and Start');
    context.createMediaStreamSource(stream).connect(capture);
    playback.connect(context.destination);
    await context.resume();

    // This project's own events (latency stages, playback clear) are sent only on request.
    const endpoint = new URL('v1/realtime?extensions=unmute_slurm', document.baseURI);
    endpoint.protocol = endpoint.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(endpoint);
    live = { ws, context, stream, capture, playback };
    let pending = [];
    let lastSend = performance.now();
    capture.port.onmessage = (event) => {
      const block = new Int16Array(event.data);
      let energy = 0;
      for (let i = 0; i < block.length; i++) energy += (block[i] / 32768) ** 2;
      if (Math.sqrt(energy / block.length) > VOICE_RMS) lastVoiceTime = context.currentTime;
      pending.push(block);
      if (performance.now() - lastSend >= SEND_EVERY_MS) {
        send({ type: 'input_audio_buffer.append', audio: int16ToBase64(pending) });
        pending = [];
        lastSend = performance.now();
      }
    };
    playback.port.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === 'played' && msg.item) played.set(msg.item, msg.samples);
      if (msg.type === 'started' && lastVoiceTime !== null) {
        const ms = Math.round((msg.time - lastVoiceTime) * 1000);
        window.unmuteLatencies.push({ item: msg.item, ms });
        const cell = document.querySelector('td[data-stage="browser"]');
        if (cell) cell.textContent = `${ms} ms`;
      }
    };
    ws.onopen = () => {
      const session = { type: 'realtime' };
      if (ui.instructions.value.trim()) session.instructions = ui.instructions.value.trim();
      session.audio = {};
      if (ui.voice.value) session.audio.output = { voice: ui.voice.value };
      if (ui.preemptive.checked) session.audio.input = { turn_detection: { type: 'server_vad', preemptive: true } };
      send({ type: 'session.update', session });
      ui.state.textContent = 'listening';
      ui.talk.textContent = 'Stop';
      ui.talk.classList.add('live');
      ui.talk.disabled = false;
    };
    ws.onmessage = (event) => onServerEvent(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (live && live.ws === ws) {
        stop();
        if (event.code !== 1000) showError(`connection closed (${event.code}${event.reason ? `: ${event.reason}` : ''}); press Start to reconnect`);
      }
    };
  } catch (err) {
    stop();
    showError(err.name === 'NotAllowedError' ? 'microphone access was denied' : `could not start: ${err.message}`);
  }
}

function stop() {
  if (live) {
    const { ws, context, stream } = live;
    live = null;
    if (ws.readyState <= WebSocket.OPEN) ws.close(1000);
    stream.getTracks().forEach((t) => t.stop());
    context.close();
  }
  ui.talk.textContent = 'Start';
  ui.talk.classList.remove('live');
  ui.talk.disabled = false;
  ui.state.textContent = 'idle';
}

ui.talk.addEventListener('click', () => (live ? stop() : start()));

async function refreshStatus() {
  try {
    const response = await fetch('api/status');
    if (response.status === 401) {
      showError('access token required: open the URL printed by the job (…/?token=…)');
      return;
    }
    const { backends } = await response.json();
    for (const [name, s] of Object.entries(backends)) {
      const el = document.querySelector(`#status li[data-service="${name}"]`);
      el.className = s.ready ? 'ready' : 'down';
      el.title = s.ready ? (s.model ? `model ${s.model}` : 'ready') : s.detail;
    }
    ui.echo.hidden = !backends.llm.echo;
  } catch (err) {
    for (const el of document.querySelectorAll('#status li')) { el.className = 'down'; el.title = 'orchestrator unreachable'; }
  }
}

async function loadVoices() {
  try {
    const response = await fetch('api/voices');
    if (!response.ok) return;
    const { voices, default: fallback } = await response.json();
    for (const name of voices) {
      const option = new Option(name, name, false, name === fallback);
      ui.voice.add(option);
    }
  } catch (err) { /* voices are optional */ }
}

if (!microphoneAllowed) explainNoMicrophone();
refreshStatus();
setInterval(refreshStatus, 3000);
loadVoices();
